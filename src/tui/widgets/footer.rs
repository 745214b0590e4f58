//! Bottom line: the keys that matter now, and the latest notice.

use ratatui::{
    layout::Rect,
    style::{Color, Style},
    text::{Line, Span},
    widgets::Paragraph,
    Frame,
};

use crate::tui::app::{App, Overlay, Screen};

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let keys: &[(&str, &str)] = match (app.screen, &app.overlay) {
        (_, Overlay::Help | Overlay::Detail(_)) => &[("Esc", "close"), ("Ctrl-C", "quit")],
        (_, Overlay::Chaos) => &[("d u e l n m k", "inject"), ("Esc", "close")],
        (Screen::Start, _) => &[
            ("↑↓", "choose"),
            ("Enter", "start"),
            ("1 2 3", "start at level"),
            ("q", "quit"),
        ],
        (Screen::Main, _) if app.editing_filter => {
            &[("Enter", "keep filter"), ("Esc", "clear filter")]
        }
        (Screen::Main, _) => &[
            ("s", "clients"),
            ("space", "pause"),
            ("1 2 3", "load"),
            ("+-", "clients"),
            ("cC", "consumers"),
            ("x", "chaos"),
            ("/", "filter"),
            ("⏎", "detail"),
            ("Tab", "focus"),
            ("?", "help"),
            ("q", "quit"),
        ],
    };
    let mut spans = Vec::new();
    for (key, does) in keys {
        spans.push(Span::styled(
            format!(" {key}"),
            Style::new().fg(Color::Cyan),
        ));
        spans.push(Span::styled(
            format!(" {does} "),
            Style::new().fg(Color::DarkGray),
        ));
    }
    if let Some(notice) = app.status.as_ref().and_then(|s| s.notice.as_ref()) {
        spans.push(Span::styled(
            format!(" │ {notice}"),
            Style::new().fg(Color::Yellow),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
