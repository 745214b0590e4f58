//! Lays the panels out and draws them; reads `App`, changes nothing.

use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Style},
    text::Line,
    widgets::{Clear, Paragraph, Wrap},
    Frame,
};

use super::{
    app::{App, Overlay, Screen},
    widgets::{self, centered, panel},
};
use crate::session::Phase;

/// Below this the panels cannot say anything useful.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let message = format!(
            "The terminal is {}×{}; orderdeck needs at least {MIN_WIDTH}×{MIN_HEIGHT}. Enlarge it, or q to quit.",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(message).wrap(Wrap { trim: true }), area);
        return;
    }
    match app.screen {
        Screen::Start => {
            widgets::start::render(frame, area, app);
            let [_, footer] =
                Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(area);
            widgets::footer::render(frame, footer, app);
        }
        Screen::Main => main_screen(frame, area, app),
    }
    match &app.overlay {
        Overlay::None => {}
        Overlay::Help => widgets::help::render(frame, area),
        Overlay::Detail(id) => widgets::detail::render(frame, area, app, *id),
        Overlay::Chaos => widgets::chaos::render(frame, area, app),
    }
    match app.phase() {
        Some(Phase::Failed(reason)) => message_box(
            frame,
            area,
            " Cannot run the pipeline ",
            &format!("{reason}\n\nCheck --brokers and the log file, then start again. q quits."),
            Color::Red,
        ),
        Some(Phase::Draining { waiting }) => message_box(
            frame,
            area,
            " Draining ",
            &format!(
                "Clients stopped. Draining {waiting} orders: acknowledged, held only by the \
                 embedded broker, finishing now.\n\nq again to abandon them (they will be lost)."
            ),
            Color::Yellow,
        ),
        Some(Phase::Mirroring { behind }) => message_box(
            frame,
            area,
            " Mirroring ",
            &format!(
                "Orders done. Mirroring the last {behind} records to {}; what is not sent \
                 within the drain limit goes to the spool.\n\nq again to stop now (what is left \
                 is counted).",
                app.status.as_ref().map_or("Elasticsearch", |s| s.sink.target.as_str())
            ),
            Color::Yellow,
        ),
        Some(Phase::Stopping) => message_box(
            frame,
            area,
            " Stopping ",
            "Finishing the orders in flight, committing offsets, flushing…\n\nq again to stop at once.",
            Color::Yellow,
        ),
        Some(Phase::Starting) => message_box(
            frame,
            area,
            " Starting ",
            "Starting Kafka, the gRPC server and the consumer group…",
            Color::Cyan,
        ),
        _ => {}
    }
}

fn main_screen(frame: &mut Frame, area: Rect, app: &App) {
    let timeline_height = if app.timeline.is_some() { 4 } else { 0 };
    let [header, timeline, board, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(timeline_height),
        Constraint::Length(5),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    widgets::header::render(frame, header, app);
    if let Some(played) = &app.timeline {
        widgets::timeline::render(frame, timeline, played);
    }
    widgets::board::render(frame, board, app);
    widgets::footer::render(frame, footer, app);

    let [left, right] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(body);
    let lag_height = (left.height / 3).clamp(6, 14);
    let [transitions, lag] =
        Layout::vertical([Constraint::Min(5), Constraint::Length(lag_height)]).areas(left);
    widgets::transitions::render(frame, transitions, app);
    widgets::lag::render(frame, lag, app);

    // With room, the bottom row also holds the latency distribution.
    let roomy = right.width >= 60 && right.height >= 30;
    let bottom_height = if roomy { 15 } else { 7 };
    let [latency, throughput, bottom] = Layout::vertical([
        Constraint::Percentage(55),
        Constraint::Percentage(45),
        Constraint::Length(bottom_height),
    ])
    .areas(right);
    widgets::latency::render(frame, latency, app);
    widgets::throughput::render(frame, throughput, app);
    if roomy {
        let [states, histogram] =
            Layout::horizontal([Constraint::Length(36), Constraint::Min(20)]).areas(bottom);
        widgets::states::render(frame, states, app);
        widgets::latency::render_histogram(frame, histogram, app);
    } else {
        widgets::states::render(frame, bottom, app);
    }
}

fn message_box(frame: &mut Frame, area: Rect, title: &str, text: &str, color: Color) {
    let area = centered(area, 64, 7);
    frame.render_widget(Clear, area);
    let paragraph = Paragraph::new(text.lines().map(Line::from).collect::<Vec<_>>())
        .wrap(Wrap { trim: true })
        .style(Style::new().fg(color))
        .block(panel(title, true));
    frame.render_widget(paragraph, area);
}
