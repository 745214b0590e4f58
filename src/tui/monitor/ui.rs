//! Draws the load monitor from `MonitorApp`; no side effects.

use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    symbols::Marker,
    text::{Line, Span},
    widgets::{Axis, Chart, Dataset, GraphType, Paragraph},
    Frame,
};

use super::app::MonitorApp;
use crate::{
    metrics::GRPC_CODES,
    session::Phase,
    tui::{
        format::{millis, per_second},
        widgets::panel,
    },
};

pub fn draw(frame: &mut Frame, app: &MonitorApp) {
    let [header, figures, middle, timeline, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(6),
        Constraint::Min(6),
        Constraint::Length(if app.timeline.is_some() { 1 } else { 0 }),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, header, app);
    draw_figures(frame, figures, app);
    let [chart, refusals] =
        Layout::horizontal([Constraint::Percentage(70), Constraint::Percentage(30)]).areas(middle);
    draw_chart(frame, chart, app);
    draw_refusals(frame, refusals, app);
    if let Some(line) = timeline_line(app) {
        frame.render_widget(Paragraph::new(line), timeline);
    }
    let keys = if matches!(app.status.phase, Phase::Failed(_)) {
        " could not start (see above) · q quit".to_owned()
    } else if app.ended() && app.timeline.is_some() {
        " every phase played · q quit".to_owned()
    } else if app.ended() {
        " every order sent · q quit".to_owned()
    } else if let Phase::Draining { waiting } = app.status.phase {
        format!(
            " clients stopped · waiting for {waiting} orders to reach Finished · q stops waiting"
        )
    } else if app.quits > 0 {
        " stopping…".to_owned()
    } else {
        " space start/stop · +/- clients · 1 2 3 low/medium/high · n skip phase · q quit".to_owned()
    };
    frame.render_widget(
        Paragraph::new(keys).style(Style::new().fg(Color::DarkGray)),
        footer,
    );
}

fn draw_header(frame: &mut Frame, area: Rect, app: &MonitorApp) {
    let status = &app.status;
    let state = match &status.phase {
        Phase::Starting => Span::styled("connecting", Style::new().fg(Color::Yellow)),
        Phase::Failed(reason) => {
            Span::styled(format!("failed: {reason}"), Style::new().fg(Color::Red))
        }
        Phase::Stopped => Span::styled("done", Style::new().fg(Color::Green)),
        Phase::Draining { .. } => {
            Span::styled("following the last orders", Style::new().fg(Color::Yellow))
        }
        _ if status.clients_running => Span::styled("sending", Style::new().fg(Color::Green)),
        _ => Span::styled("paused", Style::new().fg(Color::Yellow)),
    };
    let rate = status
        .rate
        .map_or("unpaced".to_owned(), |rate| format!("{rate:.0}/s offered"));
    let first = Line::from(vec![
        Span::styled(
            " orderdeck load ",
            Style::new().add_modifier(Modifier::BOLD).fg(Color::Cyan),
        ),
        Span::raw(format!("{} · ", app.title)),
        state,
    ]);
    let second = Line::from(format!(
        " load {} · {} clients · {rate} · {}{}",
        status.load,
        status.clients,
        status.broker,
        status
            .notice
            .as_deref()
            .map_or(String::new(), |n| format!(" · {n}")),
    ))
    .style(Style::new().fg(Color::Gray));
    frame.render_widget(Paragraph::new(vec![first, second]), area);
}

fn draw_figures(frame: &mut Frame, area: Rect, app: &MonitorApp) {
    let metrics = &app.status.metrics;
    let counts = metrics.counts;
    let send = &metrics.send;
    let mut lines = vec![
        Line::from(format!(
            " sent {} · answered {} · acknowledged {} · rejected {} · gave up {}",
            counts.sent, send.count, counts.acknowledged, counts.rejected, counts.failed
        )),
        Line::from(format!(
            " reply latency  p50 {}  p90 {}  p99 {}  max {}",
            millis(send.p50),
            millis(send.p90),
            millis(send.p99),
            millis(send.max)
        )),
    ];
    let tally = &app.status.reconciliation;
    if tally.acknowledged > 0 {
        let completion = &metrics.completion;
        lines.push(Line::from(format!(
            " followed to Finished: {} finished · {} waiting",
            tally.finished, tally.waiting
        )));
        lines.push(Line::from(format!(
            " ack → Finished  p50 {}  p99 {}  max {}",
            millis(completion.p50),
            millis(completion.p99),
            millis(completion.max)
        )));
    }
    let block = panel(" Client side ", false);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    frame.render_widget(Paragraph::new(lines), inner);
}

fn draw_chart(frame: &mut Frame, area: Rect, app: &MonitorApp) {
    let points = |value: fn(&crate::session::Sample) -> f64| -> Vec<(f64, f64)> {
        let Some(newest) = app.history.back() else {
            return Vec::new();
        };
        app.history
            .iter()
            .map(|s| ((s.at_unix_ms - newest.at_unix_ms) as f64 / 1e3, value(s)))
            .collect()
    };
    let answered = points(|s| s.acknowledged_per_s);
    let finished = points(|s| s.finished_per_s);
    let top = answered
        .iter()
        .chain(&finished)
        .map(|(_, v)| *v)
        .fold(1.0_f64, f64::max)
        * 1.1;
    let mut datasets = vec![Dataset::default()
        .name("answered/s")
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::new().fg(Color::Blue))
        .data(&answered)];
    if app.status.reconciliation.acknowledged > 0 {
        datasets.push(
            Dataset::default()
                .name("finished/s")
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(Color::Green))
                .data(&finished),
        );
    }
    let window = super::app::CHART_SECONDS as f64;
    let chart = Chart::new(datasets)
        .block(panel(" Throughput, orders/s ", false))
        .x_axis(
            Axis::default()
                .bounds([-window, 0.0])
                .labels(["-60s", "now"])
                .style(Style::new().fg(Color::DarkGray)),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, top])
                .labels(["0".to_owned(), per_second(top)])
                .style(Style::new().fg(Color::DarkGray)),
        );
    frame.render_widget(chart, area);
}

fn draw_refusals(frame: &mut Frame, area: Rect, app: &MonitorApp) {
    let refused = &app.status.metrics.refused;
    let lines: Vec<Line> = (0..GRPC_CODES)
        .filter(|code| refused[*code] > 0)
        .map(|code| {
            Line::from(vec![
                Span::styled(
                    format!(" {:<18}", format!("{:?}", tonic::Code::from(code as i32))),
                    Style::new().fg(Color::Red),
                ),
                Span::raw(refused[code].to_string()),
            ])
        })
        .collect();
    let block = panel(" Errors by gRPC code ", false);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if lines.is_empty() {
        frame.render_widget(
            Paragraph::new(" none").style(Style::new().fg(Color::Green)),
            inner,
        );
    } else {
        frame.render_widget(Paragraph::new(lines), inner);
    }
}

fn timeline_line(app: &MonitorApp) -> Option<Line<'static>> {
    let timeline = app.timeline.as_ref()?;
    Some(Line::from(format!(" {}", timeline.position())).style(Style::new().fg(Color::Cyan)))
}
