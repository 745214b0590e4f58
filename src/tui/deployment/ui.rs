//! Draws the watch screen from `WatchApp`; no side effects.

use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Cell, Paragraph, Row, Table},
    Frame,
};

use super::app::WatchApp;
use crate::{
    fleet::view::ProcessRow,
    order::Transition,
    tui::{
        format::{clock_utc, fit, millis, short_id, state_color},
        widgets::panel,
    },
};

pub fn draw(frame: &mut Frame, app: &WatchApp) {
    let processes = app.snapshot.processes.len().clamp(1, 8) as u16 + 3;
    let [header, summary, table, partitions, lower, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Length(processes),
        Constraint::Length(3),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, header, app);
    draw_summary(frame, summary, app);
    draw_processes(frame, table, app);
    draw_partitions(frame, partitions, app);
    let [feed, timeline] =
        Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(lower);
    draw_feed(frame, feed, app);
    draw_timeline(frame, timeline, app);
    frame.render_widget(
        Paragraph::new(
            " ↑↓ pick an order · g follow the newest · q quit · read-only: watching changes nothing",
        )
        .style(Style::new().fg(Color::DarkGray)),
        footer,
    );
}

fn draw_header(frame: &mut Frame, area: Rect, app: &WatchApp) {
    let reading = match &app.reader_error {
        Some(error) => Span::styled(
            format!(" · cannot read: {error}"),
            Style::new().fg(Color::Red),
        ),
        None => Span::styled(" · reading", Style::new().fg(Color::Green)),
    };
    let line = Line::from(vec![
        Span::styled(
            " orderdeck watch ",
            Style::new().add_modifier(Modifier::BOLD).fg(Color::Cyan),
        ),
        Span::raw(app.title.clone()),
        reading,
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_summary(frame: &mut Frame, area: Rect, app: &WatchApp) {
    let orders = &app.snapshot.orders;
    let reconciled = orders.accepted == orders.finished + orders.waiting;
    let twice = if orders.finished_twice == 0 {
        Style::new().fg(Color::Green)
    } else {
        Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
    };
    let first = Line::from(vec![
        Span::raw(format!(
            " accepted {} = finished {} + waiting {} ",
            orders.accepted, orders.finished, orders.waiting
        )),
        Span::styled(
            if reconciled { "✓" } else { "✗" },
            Style::new().fg(if reconciled { Color::Green } else { Color::Red }),
        ),
        Span::raw(" · "),
        Span::styled(format!("finished twice {}", orders.finished_twice), twice),
        Span::raw(orders.repeated_note()),
        Span::raw(format!(
            " · lag {} · {:.1} orders/s",
            app.snapshot.lag, app.snapshot.throughput_per_s
        )),
    ]);
    let latency = &app.snapshot.latency_ms;
    let second = Line::from(format!(
        " from event times: taken up p50 {} p99 {} · completion p50 {} p99 {} · {} transitions read",
        millis(latency.taken_up.p50),
        millis(latency.taken_up.p99),
        millis(latency.completion.p50),
        millis(latency.completion.p99),
        app.transitions_seen,
    ))
    .style(Style::new().fg(Color::Gray));
    frame.render_widget(Paragraph::new(vec![first, second]), area);
}

fn draw_processes(frame: &mut Frame, area: Rect, app: &WatchApp) {
    let header = Row::new([
        "process",
        "role",
        "status",
        "consumers",
        "finished",
        "in flight",
        "/s",
        "lag",
        "seen",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = app.snapshot.processes.iter().map(process_row);
    let table = Table::new(
        rows,
        [
            Constraint::Min(18),
            Constraint::Length(18),
            Constraint::Length(8),
            Constraint::Length(16),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(5),
        ],
    )
    .header(header)
    .block(panel(" Processes of the group ", false));
    frame.render_widget(table, area);
}

fn process_row(process: &ProcessRow) -> Row<'static> {
    let status_color = match process.status.as_str() {
        "up" => Color::Green,
        "stopped" => Color::DarkGray,
        "silent" => Color::Red,
        _ => Color::Yellow,
    };
    let consumers = if process.members.is_empty() {
        "–".to_owned()
    } else {
        process
            .members
            .iter()
            .map(|m| format!("{}:{}", member_suffix(&m.name), m.partitions.len()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let lag: i64 = process.members.iter().map(|m| m.lag).sum();
    Row::new(vec![
        Cell::from(process.by.clone()),
        process.role.clone().into(),
        Cell::from(Span::styled(
            process.status.clone(),
            Style::new().fg(status_color),
        )),
        consumers.into(),
        process.finished.to_string().into(),
        process.in_flight.to_string().into(),
        format!("{:.0}", process.throughput_per_s).into(),
        lag.to_string().into(),
        process
            .last_seen_ms_ago
            .map_or("–".to_owned(), |ms| format!("{}s", ms / 1000))
            .into(),
    ])
}

/// Who wrote an event: `host:pid/c1` (the process, and its consumer when
/// the event says).
fn writer(t: &Transition) -> String {
    match (&t.by, &t.member) {
        (Some(by), Some(member)) => format!("{by}/{member}"),
        (Some(by), None) => by.clone(),
        _ => "?".to_owned(),
    }
}

/// `c1` of `host:pid/c1`.
fn member_suffix(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

fn draw_partitions(frame: &mut Frame, area: Rect, app: &WatchApp) {
    let block = panel(" Lag by partition (committed → end) ", false);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let spans: Vec<Span> = app
        .snapshot
        .partitions
        .iter()
        .flat_map(|p| {
            let owner = p
                .owner
                .as_deref()
                .map_or("unowned".to_owned(), |o| member_suffix(o).to_owned());
            let color = if p.lag == 0 {
                Color::Green
            } else {
                Color::Yellow
            };
            [
                Span::styled(
                    format!("p{} {}", p.partition, p.lag),
                    Style::new().fg(color),
                ),
                Span::styled(format!(" {owner}  "), Style::new().fg(Color::DarkGray)),
            ]
        })
        .collect();
    frame.render_widget(Paragraph::new(Line::from(spans)), inner);
}

fn draw_feed(frame: &mut Frame, area: Rect, app: &WatchApp) {
    let block = panel(" Transitions from the events topic (newest first) ", true);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if app.feed.is_empty() {
        frame.render_widget(
            Paragraph::new("no events yet").style(Style::new().fg(Color::DarkGray)),
            inner,
        );
        return;
    }
    let height = inner.height as usize;
    let offset = app.selected.saturating_sub(height.saturating_sub(1));
    let width = inner.width as usize;
    let lines: Vec<Line> = app
        .feed
        .iter()
        .enumerate()
        .skip(offset)
        .take(height)
        .map(|(row, t)| feed_row(t, width, row == app.selected))
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

fn feed_row(t: &Transition, width: usize, selected: bool) -> Line<'static> {
    let text = format!(
        "{} {} {:<10} {}",
        clock_utc(t.at_unix_ms),
        short_id(t.order_id),
        t.to.name(),
        writer(t),
    );
    let mut style = Style::new().fg(state_color(t.to));
    if selected {
        style = style.add_modifier(Modifier::REVERSED);
    }
    Line::from(Span::styled(fit(&text, width), style))
}

fn draw_timeline(frame: &mut Frame, area: Rect, app: &WatchApp) {
    let title = match app.timeline.first() {
        Some(first) => format!(" Order {} ", short_id(first.order_id)),
        None => " Order ".to_owned(),
    };
    let block = panel(&title, false);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(first) = app.timeline.first() else {
        return;
    };
    let width = inner.width as usize;
    let mut lines = vec![Line::from(fit(
        &format!("{} · {}", first.product, first.region),
        width,
    ))];
    for step in &app.timeline {
        lines.push(Line::from(vec![
            Span::styled(
                format!("{:<10}", step.to.name()),
                Style::new().fg(state_color(step.to)),
            ),
            Span::raw(fit(
                &format!(" {} {}", clock_utc(step.at_unix_ms), writer(step)),
                width.saturating_sub(10),
            )),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}
