//! One order: its fields and its timeline through the states.

use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Clear, Paragraph, Row, Table},
    Frame,
};

use super::{centered, panel};
use crate::{
    order::OrderId,
    tui::{
        app::App,
        format::{clock_utc, millis, state_color},
    },
};

pub fn render(frame: &mut Frame, area: Rect, app: &App, id: OrderId) {
    let area = centered(area, 76, 20);
    frame.render_widget(Clear, area);
    let block = panel(" Order (Esc closes) ", true);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(timeline) = app.orders.get(&id) else {
        frame.render_widget(
            Paragraph::new(format!("{id}: no longer in the recent orders")),
            inner,
        );
        return;
    };
    let field = |name: &str, value: String| {
        Line::from(vec![
            ratatui::text::Span::styled(format!("{name:>9} "), Style::new().fg(Color::DarkGray)),
            ratatui::text::Span::raw(value),
        ])
    };
    let mut fields = vec![field("id", id.to_string())];
    if let Some(order) = &timeline.order {
        fields.extend([
            field("product", order.product.clone()),
            field("price", format!("{:.2}", order.price)),
            field(
                "payment",
                format!("{} · {}", order.payment_gateway, order.card_brand),
            ),
            field("bank", order.bank.clone()),
            field("ship to", format!("{}, {}", order.address, order.region)),
            field("email", order.email.clone()),
        ]);
    }
    let [top, bottom] = Layout::vertical([
        Constraint::Length(fields.len() as u16 + 1),
        Constraint::Min(3),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(fields), top);
    let header = Row::new(["state", "at (UTC)", "time in previous"]).style(
        Style::new()
            .fg(Color::DarkGray)
            .add_modifier(Modifier::BOLD),
    );
    let rows: Vec<Row> = timeline
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            Row::new([
                format!("{} / {}", step.state.name(), step.state.spanish_name()),
                clock_utc(step.at_unix_ms),
                if i == 0 {
                    String::new()
                } else {
                    millis(step.previous_state_ms)
                },
            ])
            .style(Style::new().fg(state_color(step.state)))
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(26),
            Constraint::Length(14),
            Constraint::Min(10),
        ],
    )
    .header(header);
    frame.render_widget(table, bottom);
}
