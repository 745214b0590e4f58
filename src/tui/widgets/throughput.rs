//! Orders per second acknowledged and finished, over time.

use ratatui::{layout::Rect, style::Color, Frame};

use super::latency::{series, time_chart, Series};
use crate::tui::app::{App, Focus};

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let lines = [
        Series {
            name: "acked/s",
            color: Color::Blue,
            points: series(app, |s| s.acknowledged_per_s),
        },
        Series {
            name: "finished/s",
            color: Color::Green,
            points: series(app, |s| s.finished_per_s),
        },
    ];
    let title = format!(" Throughput orders/s · last {}s ", app.chart_window_s());
    let chart = time_chart(
        app,
        title,
        app.focus == Focus::Charts,
        &lines,
        area.height >= 8,
    );
    frame.render_widget(chart, area);
}
