//! The scenario's timeline: its phases, where it stands, the next event,
//! and the gates judged on the phase so far (green pass, red fail).

use ratatui::{
    layout::Rect,
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::Paragraph,
    Frame,
};

use super::panel;
use crate::{scenario::Timeline, slo::Verdict};

pub fn render(frame: &mut Frame, area: Rect, timeline: &Timeline) {
    let dim = Style::new().fg(Color::DarkGray);
    let mut phases = Vec::new();
    for (index, (name, duration)) in timeline.phases.iter().enumerate() {
        if index > 0 {
            phases.push(Span::styled(" → ", dim));
        }
        phases.push(match index.cmp(&timeline.current) {
            std::cmp::Ordering::Less => Span::styled(format!("✓ {name}"), dim),
            std::cmp::Ordering::Equal => Span::styled(
                format!(
                    "▶ {name} {:.0}/{:.0} s",
                    timeline.phase_elapsed.as_secs_f64(),
                    duration.as_secs_f64()
                ),
                Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            ),
            std::cmp::Ordering::Greater => Span::raw(name.clone()),
        });
    }
    let status = if timeline.done() {
        Span::styled("   every phase done", dim)
    } else {
        match &timeline.next_event {
            Some((within, what)) => Span::raw(format!(
                "   next: {what} in {:.0} s · n skips the phase",
                within.as_secs_f64()
            )),
            None => Span::styled("   n skips the phase", dim),
        }
    };
    phases.push(status);

    let gates: &[Verdict] = if timeline.done() {
        &timeline.judged
    } else {
        &timeline.gates
    };
    let mut verdicts = vec![Span::styled("gates ", dim)];
    for verdict in gates {
        let color = match (verdict.passed, verdict.value) {
            (true, _) => Color::Green,
            (false, Some(_)) => Color::Red,
            // Nothing measured yet: neither verdict.
            (false, None) => Color::DarkGray,
        };
        verdicts.push(Span::styled(
            format!("{} ({}) ", verdict.gate, verdict.shown),
            Style::new().fg(color),
        ));
    }
    if gates.is_empty() {
        verdicts.push(Span::styled("judged at the end of the run", dim));
    }
    let title = format!(" scenario {} ", timeline.scenario);
    frame.render_widget(
        Paragraph::new(vec![Line::from(phases), Line::from(verdicts)]).block(panel(&title, false)),
        area,
    );
}
