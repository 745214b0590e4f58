//! One file per panel. Each draws from `App` and has no side effects.

pub mod board;
pub mod chaos;
pub mod detail;
pub mod footer;
pub mod header;
pub mod help;
pub mod lag;
pub mod latency;
pub mod start;
pub mod states;
pub mod throughput;
pub mod time_chart;
pub mod timeline;
pub mod transitions;

use ratatui::{
    layout::{Constraint, Flex, Layout, Rect},
    style::{Color, Style},
    widgets::{Block, BorderType},
};

/// A panel's frame; the focused one stands out.
pub fn panel(title: &str, focused: bool) -> Block<'_> {
    let style = if focused {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new().fg(Color::DarkGray)
    };
    Block::bordered()
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
        .border_style(style)
        .title(title)
}

/// A box of at most `width` × `height` centred in `area`.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [cell] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    cell
}
