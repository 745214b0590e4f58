//! Live transitions, newest first, with the filter field.

use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Paragraph, Wrap},
    Frame,
};

use super::panel;
use crate::{
    order::{State, Transition},
    tui::{
        app::{App, Focus},
        format::{clock_utc, fit, millis, short_id, state_color},
    },
};

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let filter = app.filter.value();
    let mut title = if filter.is_empty() {
        " Transitions (newest first) ".to_owned()
    } else {
        format!(" Transitions matching “{filter}” ")
    };
    // The view skips ahead when it falls behind the feed: say by how much.
    if app.missed_transitions() > 0 {
        title.push_str(&format!("· {} skipped ", app.missed_transitions()));
    }
    let block = panel(&title, app.focus == Focus::Transitions);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let list_area = if app.editing_filter {
        let [input, list] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
        let prompt = Line::from(vec![
            Span::styled("/", Style::new().fg(Color::Cyan)),
            Span::raw(filter),
        ]);
        frame.render_widget(Paragraph::new(prompt), input);
        let cursor = input.x + 1 + app.filter.visual_cursor() as u16;
        frame.set_cursor_position((cursor.min(input.right().saturating_sub(1)), input.y));
        list
    } else {
        inner
    };
    let height = list_area.height as usize;
    if height == 0 {
        return;
    }
    let offset = app.selected.saturating_sub(height - 1);
    let width = list_area.width as usize;
    let lines: Vec<Line> = app
        .visible_transitions()
        .enumerate()
        .skip(offset)
        .take(height)
        .map(|(index, t)| {
            row(
                t,
                width,
                index == app.selected && app.focus == Focus::Transitions,
            )
        })
        .collect();
    if lines.is_empty() {
        let hint = if app.recent.is_empty() {
            "waiting for orders…"
        } else {
            "nothing matches the filter"
        };
        frame.render_widget(
            Paragraph::new(hint)
                .style(Style::new().fg(Color::DarkGray))
                .wrap(Wrap { trim: true }),
            list_area,
        );
        return;
    }
    frame.render_widget(Paragraph::new(lines), list_area);
}

/// Four letters per state where space is short.
fn code(state: State) -> &'static str {
    match state {
        State::Processing => "PROC",
        State::Preparing => "PREP",
        State::Shipped => "SHIP",
        State::Delivered => "DLVR",
        State::Finished => "DONE",
    }
}

fn row(t: &Transition, width: usize, selected: bool) -> Line<'static> {
    let wide = width >= 80;
    let name = |state: State| {
        if wide {
            format!("{:<10}", state.name())
        } else {
            code(state).to_owned()
        }
    };
    let from = t.from.map_or_else(
        || {
            if wide {
                format!("{:<10}", "new")
            } else {
                "new ".to_owned()
            }
        },
        name,
    );
    let mut spans = Vec::new();
    if wide {
        spans.push(Span::styled(
            format!("{} ", clock_utc(t.at_unix_ms)),
            Style::new().fg(Color::DarkGray),
        ));
    }
    spans.push(Span::raw(format!("{} ", short_id(t.order_id))));
    spans.push(Span::styled(
        from,
        Style::new().fg(t.from.map_or(Color::DarkGray, state_color)),
    ));
    spans.push(Span::raw("→"));
    spans.push(Span::styled(name(t.to), Style::new().fg(state_color(t.to))));
    let spent = if t.from.is_some() {
        millis(t.previous_state_ms)
    } else {
        String::new()
    };
    spans.push(Span::styled(
        format!(" {spent:>6} "),
        Style::new().fg(Color::DarkGray),
    ));
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    spans.push(Span::raw(fit(
        &format!("{} · {}", t.product, t.region),
        width.saturating_sub(used),
    )));
    let line = Line::from(spans);
    if selected {
        line.style(Style::new().add_modifier(Modifier::REVERSED))
    } else {
        line
    }
}
