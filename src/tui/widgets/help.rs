//! The help overlay: every key, grouped.

use ratatui::{
    layout::{Constraint, Rect},
    style::{Color, Modifier, Style},
    widgets::{Clear, Row, Table},
    Frame,
};

use super::{centered, panel};
use crate::tui::action::KEYMAP_HELP;

pub fn render(frame: &mut Frame, area: Rect) {
    let mut rows = Vec::new();
    let mut group = "";
    for key in KEYMAP_HELP {
        if key.group != group {
            group = key.group;
            rows.push(Row::new([group, "", ""]).style(Style::new().add_modifier(Modifier::BOLD)));
        }
        rows.push(Row::new(["", key.keys, key.does]).style(Style::new().fg(Color::Gray)));
    }
    let height = rows.len() as u16 + 2;
    let area = centered(area, 72, height);
    let table = Table::new(
        rows,
        [
            Constraint::Length(11),
            Constraint::Length(16),
            Constraint::Min(20),
        ],
    )
    .block(panel(" Keys (Esc closes) ", true));
    frame.render_widget(Clear, area);
    frame.render_widget(table, area);
}
