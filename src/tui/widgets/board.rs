//! The pipeline board: every stage left to right, with counts and rates.

use ratatui::{
    layout::{Constraint, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Cell, Row, Table},
    Frame,
};

use super::panel;
use crate::{
    order::State,
    session::SessionStatus,
    tui::{
        app::App,
        format::{per_second, state_color},
    },
};

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let Some(status) = &app.status else {
        frame.render_widget(panel("Pipeline", false), area);
        return;
    };
    // Full names with arrows where they fit, short ones otherwise.
    let wide = area.width >= 110;
    let c = status.metrics.counts;
    let r = app.rates;
    let flow = [
        ("Sent", c.sent, r.sent),
        ("Acked", c.acknowledged, r.acknowledged),
        ("Consumed", c.consumed, r.consumed),
    ];
    let mut names: Vec<Cell> = Vec::new();
    let mut counts: Vec<Cell> = Vec::new();
    let mut rates: Vec<Cell> = Vec::new();
    for (name, count, rate) in flow {
        names.push(Cell::from(if wide {
            format!("{name} →")
        } else {
            name.to_owned()
        }));
        counts.push(Cell::from(count.to_string()));
        rates.push(Cell::from(per_second(rate)));
    }
    for state in State::ALL {
        let label = match (wide, state) {
            (true, State::Finished) => state.name().to_owned(),
            (true, _) => format!("{} →", state.name()),
            (false, State::Processing) => "Process".to_owned(),
            (false, State::Preparing) => "Prepare".to_owned(),
            (false, State::Delivered) => "Deliver".to_owned(),
            (false, _) => state.name().to_owned(),
        };
        names.push(Cell::from(label).style(Style::new().fg(state_color(state))));
        counts.push(Cell::from(
            status.metrics.in_state[state.index()].to_string(),
        ));
        rates.push(Cell::from(match state {
            State::Finished => per_second(r.finished),
            _ if wide => state.spanish_name().to_owned(),
            _ => String::new(),
        }));
    }
    let extras = reconciliation(status, area.width.saturating_sub(2) as usize);
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let table = Table::new(
        [
            Row::new(names),
            Row::new(counts).style(bold),
            Row::new(rates).style(Style::new().fg(Color::DarkGray)),
        ],
        [Constraint::Ratio(1, 8); 8],
    )
    .column_spacing(1)
    .block(panel("Pipeline", false).title_bottom(extras.right_aligned()));
    frame.render_widget(table, area);
}

/// `acked = finished + waiting · lost 0` and the other counts, dropping the
/// least important parts first so the line fits `room` columns.
fn reconciliation(status: &SessionStatus, room: usize) -> Line<'static> {
    let ledger = status.reconciliation;
    let c = status.metrics.counts;
    let (risk, risk_color) = match ledger.overdue {
        0 => ("lost 0".to_owned(), Color::Green),
        n => (format!("{n} overdue"), Color::Red),
    };
    let elsewhere = match ledger.finished_elsewhere {
        0 => String::new(),
        n => format!(" ({n} elsewhere)"),
    };
    let balance = format!(
        " acked {} = finished {}{elsewhere} + waiting {}",
        ledger.acknowledged, ledger.finished, ledger.waiting
    );
    let oldest = ledger.oldest_waiting.map_or(String::new(), |age| {
        format!(" (oldest {:.1} s)", age.as_secs_f64())
    });
    let others = format!(
        " · rejected {} · failed {} · redelivered {} ",
        c.rejected, c.failed, c.redelivered
    );
    let width = |parts: &[&str]| parts.iter().map(|p| p.chars().count()).sum::<usize>() + 3;
    let (oldest, others) = if width(&[&balance, &oldest, &risk, &others]) <= room {
        (oldest, others)
    } else if width(&[&balance, &oldest, &risk]) <= room {
        (oldest, " ".to_owned())
    } else {
        (String::new(), " ".to_owned())
    };
    Line::from(vec![
        Span::raw(format!("{balance}{oldest} · ")),
        Span::styled(
            risk,
            Style::new().fg(risk_color).add_modifier(Modifier::BOLD),
        ),
        Span::raw(others),
    ])
}
