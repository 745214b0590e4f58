//! The time chart the latency and throughput panels share: series over the
//! chart window, newest at the right.

use ratatui::{
    layout::{Constraint, Rect},
    style::{Color, Style},
    symbols::Marker,
    text::Line,
    widgets::{Axis, Chart, Dataset, GraphType, LegendPosition},
    Frame,
};

use super::panel;
use crate::{
    session::Sample,
    tui::app::{App, Focus},
};

/// Points `(seconds ago, value)` for the chart window, newest at 0.
fn series(app: &App, value: impl Fn(&Sample) -> f64) -> Vec<(f64, f64)> {
    let Some(newest) = app.history.back() else {
        return Vec::new();
    };
    app.history
        .iter()
        .rev()
        .take(app.chart_window_s())
        .map(|s| ((s.at_unix_ms - newest.at_unix_ms) as f64 / 1e3, value(s)))
        .collect()
}

/// One line on a time chart.
pub struct Series {
    name: &'static str,
    color: Color,
    points: Vec<(f64, f64)>,
}

impl Series {
    /// `value` of every sample in the chart window.
    pub fn of(app: &App, name: &'static str, color: Color, value: impl Fn(&Sample) -> f64) -> Self {
        Self {
            name,
            color,
            points: series(app, value),
        }
    }
}

/// Draws named series over the chart window; short panels drop the legend
/// and the time labels to keep their rows for the plot.
pub fn render_time_chart(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    title: String,
    lines: &[Series],
) {
    let roomy = area.height >= 8;
    frame.render_widget(time_chart(app, title, lines, roomy), area);
}

fn time_chart<'a>(app: &App, title: String, lines: &'a [Series], roomy: bool) -> Chart<'a> {
    let focused = app.focus == Focus::Charts;
    let top = lines
        .iter()
        .flat_map(|line| line.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max)
        .max(1.0)
        * 1.1;
    let window = app.chart_window_s() as f64;
    let datasets = lines
        .iter()
        .map(|line| {
            Dataset::default()
                .name(line.name)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(line.color))
                .data(&line.points)
        })
        .collect();
    let mut x_axis = Axis::default()
        .bounds([-window, 0.0])
        .style(Style::new().fg(Color::DarkGray));
    if roomy {
        x_axis = x_axis.labels([Line::from(format!("-{window:.0}s")), Line::from("now")]);
    }
    Chart::new(datasets)
        .block(panel_owned(title, focused))
        .x_axis(x_axis)
        .y_axis(
            Axis::default()
                .bounds([0.0, top])
                .labels([Line::from("0"), Line::from(compact(top))])
                .style(Style::new().fg(Color::DarkGray)),
        )
        .legend_position(roomy.then_some(LegendPosition::TopLeft))
        .hidden_legend_constraints((Constraint::Percentage(60), Constraint::Percentage(60)))
}

/// 950, 9.5k, 95k: axis labels stay four characters wide.
fn compact(value: f64) -> String {
    if value >= 1000.0 {
        format!("{:.1}k", value / 1000.0)
    } else if value >= 10.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn panel_owned(title: String, focused: bool) -> ratatui::widgets::Block<'static> {
    panel("", focused).title(title)
}
