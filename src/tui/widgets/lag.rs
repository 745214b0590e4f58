//! Consumer lag per member and per partition.

use ratatui::{
    layout::{Constraint, Rect},
    style::{Color, Modifier, Style},
    widgets::{Row, Table},
    Frame,
};

use super::panel;
use crate::tui::app::{App, Focus};

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let block = panel(" Consumer lag ", app.focus == Focus::Lag);
    let Some(status) = &app.status else {
        frame.render_widget(block, area);
        return;
    };
    let header = Row::new(["who", "partitions", "lag", "in flight"]).style(
        Style::new()
            .fg(Color::DarkGray)
            .add_modifier(Modifier::BOLD),
    );
    let members = status.members.iter().map(|m| {
        let partitions: Vec<String> = m.partitions.iter().map(|p| format!("p{p}")).collect();
        Row::new([
            format!("c{}", m.member),
            partitions.join(" "),
            m.lag.to_string(),
            m.in_flight.to_string(),
        ])
    });
    let partitions = status.partitions.iter().map(|p| {
        Row::new([
            format!("p{}", p.partition),
            format!("→ c{}", p.member),
            p.lag.to_string(),
            String::new(),
        ])
        .style(Style::new().fg(Color::DarkGray))
    });
    let rows: Vec<Row> = members.chain(partitions).skip(app.lag_scroll).collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(4),
            Constraint::Min(10),
            Constraint::Length(7),
            Constraint::Length(9),
        ],
    )
    .header(header)
    .block(block);
    frame.render_widget(table, area);
}
