//! Time spent in each state, and how many orders are in it now.

use ratatui::{
    layout::{Constraint, Rect},
    style::{Color, Modifier, Style},
    widgets::{Row, Table},
    Frame,
};

use super::panel;
use crate::{
    order::State,
    tui::{
        app::App,
        format::{millis, state_color},
    },
};

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let header = Row::new(["state", "now", "p50", "p99"]).style(
        Style::new()
            .fg(Color::DarkGray)
            .add_modifier(Modifier::BOLD),
    );
    let rows: Vec<Row> = app
        .status
        .iter()
        .flat_map(|status| {
            State::TIMED.iter().map(move |state| {
                let time = status.metrics.per_state[state.index()];
                Row::new([
                    state.name().to_owned(),
                    status.metrics.in_state[state.index()].to_string(),
                    millis(time.p50),
                    millis(time.p99),
                ])
                .style(Style::new().fg(state_color(*state)))
            })
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(11),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(7),
        ],
    )
    .header(header)
    .block(panel(" Time per state ", false));
    frame.render_widget(table, area);
}
