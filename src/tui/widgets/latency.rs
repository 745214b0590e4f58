//! Send and end-to-end latency over time, and the current window's
//! end-to-end distribution.

use ratatui::{
    layout::{Direction, Rect},
    style::{Color, Style},
    text::Line,
    widgets::{Bar, BarChart, BarGroup},
    Frame,
};

use super::{
    panel,
    time_chart::{render_time_chart, Series},
};
use crate::{metrics::LATENCY_BUCKETS_MS, tui::app::App};

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let lines = [
        Series::of(app, "send p50", Color::Blue, |s| s.window.send.p50),
        Series::of(app, "send p99", Color::Cyan, |s| s.window.send.p99),
        Series::of(app, "e2e p50", Color::Yellow, |s| s.window.end_to_end.p50),
        Series::of(app, "e2e p99", Color::Red, |s| s.window.end_to_end.p99),
    ];
    let title = format!(" Latency ms · last {}s ", app.chart_window_s());
    render_time_chart(frame, area, app, title, &lines);
}

/// End-to-end latencies of the chart window by bucket, one bar per line.
pub fn render_histogram(frame: &mut Frame, area: Rect, app: &App) {
    let counts = app.window_histogram();
    let label = |i: usize| match LATENCY_BUCKETS_MS.get(i) {
        Some(bound) if *bound >= 1000.0 => format!("≤{:.0}s", bound / 1000.0),
        Some(bound) => format!("≤{bound:.0}ms"),
        None => ">5s".to_owned(),
    };
    // Only the span that has data, so the bars get the room.
    let first = counts.iter().position(|c| *c > 0).unwrap_or(0);
    let last = counts.iter().rposition(|c| *c > 0).unwrap_or(0);
    let bars: Vec<Bar> = (first..=last)
        .map(|i| Bar::default().value(counts[i]).label(Line::from(label(i))))
        .collect();
    let chart = BarChart::default()
        .direction(Direction::Horizontal)
        .block(panel(" e2e latency, window ", false))
        .data(BarGroup::default().bars(&bars))
        .bar_width(1)
        .bar_gap(0)
        .bar_style(Style::new().fg(Color::Yellow))
        .value_style(Style::new().fg(Color::Black).bg(Color::Yellow));
    frame.render_widget(chart, area);
}
