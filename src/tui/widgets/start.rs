//! The start screen: choose a load level, see where the data goes.

use ratatui::{
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::Paragraph,
    Frame,
};

use super::{centered, panel};
use crate::{load::LoadLevel, tui::app::App};

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let dim = Style::new().fg(Color::DarkGray);
    let mut lines = vec![Line::from("Choose a load level"), Line::from("")];
    for (key, level) in LoadLevel::ALL.iter().enumerate() {
        let preset = level.preset();
        let spanish = level.spanish_name();
        let rate = preset
            .rate
            .map_or("unlimited".to_owned(), |r| format!("{r:.0} orders/s"));
        let chosen = *level == app.start_choice && app.start_scenario.is_none();
        let style = if chosen {
            Style::new()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new()
        };
        lines.push(Line::from(vec![
            Span::styled(
                format!(" {} {:<7} ({spanish:<5}) ", key + 1, level.name()),
                style,
            ),
            Span::raw(format!(
                "  {:>2} clients · {rate:<14} · {} per state",
                preset.clients, preset.stage_delay
            )),
        ]));
    }
    let highlight = Style::new()
        .fg(Color::Black)
        .bg(Color::Cyan)
        .add_modifier(Modifier::BOLD);
    // As many scenario rows as the screen holds besides the rest (levels,
    // where data goes, keys, borders, footer), scrolled to the highlight.
    let scenarios = &app.start.scenarios;
    let room = usize::from(area.height)
        .saturating_sub(lines.len() + 9)
        .max(3);
    let first = app
        .start_scenario
        .map_or(0, |row| (row + 1).saturating_sub(room));
    let hidden = scenarios.len().saturating_sub(room);
    lines.push(Line::from(if hidden > 0 {
        format!(
            "or play a scenario (phases, faults, gates) · {} of {}, ↓ for more",
            room,
            scenarios.len()
        )
    } else {
        "or play a scenario (phases, faults, gates)".to_owned()
    }));
    for (row, (name, description)) in scenarios.iter().enumerate().skip(first).take(room) {
        let (style, mark) = if app.start_scenario == Some(row) {
            (highlight, "▶")
        } else {
            (Style::new(), " ")
        };
        let mut description = description.clone();
        if description.chars().count() > 56 {
            description = description.chars().take(55).collect::<String>() + "…";
        }
        lines.push(Line::from(vec![
            Span::styled(format!("{mark}{name:<15}"), style),
            Span::styled(format!(" {description}"), dim),
        ]));
    }
    if let Some(why) = &app.start_refused {
        lines.push(Line::from(Span::styled(
            why.clone(),
            Style::new().fg(Color::Red),
        )));
    }
    lines.extend([
        Line::from(""),
        Line::from(vec![
            Span::styled("broker      ", dim),
            Span::raw(app.start.broker.clone()),
        ]),
        Line::from(vec![
            Span::styled("sink        ", dim),
            Span::raw(app.start.sink.clone()),
        ]),
        Line::from(vec![
            Span::styled("time scale  ", dim),
            Span::raw(format!(
                "{} (1 = the original's timings)",
                app.start.time_scale
            )),
        ]),
        Line::from(Span::styled(
            "↑↓ choose · Enter start · 1 2 3 start at that level · q quit",
            dim,
        )),
    ]);
    let area = centered(area, 78, lines.len() as u16 + 2);
    frame.render_widget(
        Paragraph::new(lines).block(panel(" orderdeck ", true)),
        area,
    );
}
