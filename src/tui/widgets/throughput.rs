//! Orders per second acknowledged and finished, over time.

use ratatui::{layout::Rect, style::Color, Frame};

use super::time_chart::{render_time_chart, Series};
use crate::tui::app::App;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let lines = [
        Series::of(app, "acked/s", Color::Blue, |s| s.acknowledged_per_s),
        Series::of(app, "finished/s", Color::Green, |s| s.finished_per_s),
    ];
    let title = format!(" Throughput orders/s · last {}s ", app.chart_window_s());
    render_time_chart(frame, area, app, title, &lines);
}
