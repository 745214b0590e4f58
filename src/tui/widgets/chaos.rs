//! The chaos menu: what can be broken, and what is broken now.

use ratatui::{
    layout::{Constraint, Rect},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Clear, Row, Table},
    Frame,
};

use super::{centered, panel};
use crate::tui::{action::CHAOS_MENU, app::App};

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let mut rows: Vec<Row> = CHAOS_MENU
        .iter()
        .map(|(key, _, does)| {
            Row::new([key.to_string(), (*does).to_owned()]).style(Style::new().fg(Color::Gray))
        })
        .collect();
    let in_force = app.status.as_ref().map(|status| {
        let faults = status.chaos.in_force();
        if faults.is_empty() {
            "nothing in force".to_owned()
        } else {
            faults.join(", ")
        }
    });
    rows.push(Row::new(["", ""]));
    rows.push(
        Row::new([
            "now".to_owned(),
            in_force.unwrap_or_else(|| "not running".to_owned()),
        ])
        .style(Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)),
    );
    let area = centered(area, 64, rows.len() as u16 + 3);
    let table = Table::new(rows, [Constraint::Length(5), Constraint::Min(20)]).block(
        panel(" Chaos: break something (Esc closes) ", true)
            .title_bottom(Line::from(" broker faults need the embedded broker ").right_aligned()),
    );
    frame.render_widget(Clear, area);
    frame.render_widget(table, area);
}
