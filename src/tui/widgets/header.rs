//! Top line: where the pipeline runs and whether it is healthy.

use ratatui::{
    layout::Rect,
    style::{Color, Modifier, Style, Stylize},
    text::{Line, Span},
    widgets::Paragraph,
    Frame,
};

use crate::{
    kafka::BrokerHealth,
    session::Phase,
    sinks::{MirrorState, MirrorStatus},
    tui::{
        app::App,
        format::{hms, per_second},
    },
};

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let separator = || Span::raw(" │ ").dark_gray();
    let title = Span::styled(" orderdeck", Style::new().add_modifier(Modifier::BOLD));
    let Some(status) = &app.status else {
        frame.render_widget(Paragraph::new(Line::from(title)), area);
        return;
    };
    // Narrow screens drop words (and the name), never facts.
    let wide = area.width >= 100;
    let mut spans = Vec::new();
    if wide {
        spans.extend([title, separator()]);
    } else {
        spans.push(Span::raw(" "));
    }
    spans.push(Span::raw(status.broker.clone()));
    spans.push(Span::raw(" "));
    spans.push(match (&status.phase, &status.health) {
        (Phase::Failed(_), _) => Span::styled("✗ failed", Style::new().fg(Color::Red)),
        (_, BrokerHealth::Up) => Span::styled("● up", Style::new().fg(Color::Green)),
        (_, BrokerHealth::Connecting) => {
            Span::styled("◌ connecting", Style::new().fg(Color::Yellow))
        }
        (_, BrokerHealth::Down(_)) => Span::styled("✗ down", Style::new().fg(Color::Red)),
    });
    if status.chaos.degraded() {
        spans.push(Span::styled(
            format!(" ⚡ {}", status.chaos.in_force().join(", ")),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    spans.push(separator());
    spans.push(Span::raw(if wide {
        format!("load {}", status.load)
    } else {
        status.load.to_string()
    }));
    spans.push(separator());
    spans.push(running(
        status.clients,
        "clients",
        status.clients_running,
        "■",
    ));
    spans.push(separator());
    spans.push(running(
        status.consumers,
        "consumers",
        !status.consumers_paused,
        "‖",
    ));
    spans.push(separator());
    spans.push(sink(&status.sink, app.rates.indexed, wide));
    spans.push(separator());
    spans.push(Span::raw(match status.phase {
        Phase::Starting => "starting…".to_owned(),
        Phase::Draining { waiting } => format!("draining {waiting} orders…"),
        Phase::Stopping => "stopping…".to_owned(),
        Phase::Mirroring { behind } => format!("mirroring {behind} records…"),
        _ => hms(status.metrics.elapsed),
    }));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// `8 clients ▶` in green when running, with `stopped_mark` in yellow when not.
fn running(count: usize, what: &str, on: bool, stopped_mark: &str) -> Span<'static> {
    let (mark, color) = if on {
        ("▶", Color::Green)
    } else {
        (stopped_mark, Color::Yellow)
    };
    Span::styled(format!("{count} {what} {mark}"), Style::new().fg(color))
}

/// Where documents go and how that is going: `es ● 1200/s · lag 30`,
/// `es throttled · lag 900`, `es ✗ down · lag 4000`, `spool 1500`;
/// refusals and a stopped mirror in red.
fn sink(sink: &MirrorStatus, indexed_per_s: f64, wide: bool) -> Span<'static> {
    let elastic = !sink.target.starts_with("spool");
    let lag = if wide {
        format!(" · lag {}", sink.lag)
    } else {
        String::new()
    };
    let (text, color) = match (&sink.state, elastic) {
        (MirrorState::Stopped(_), _) => (format!("mirror stopped{lag}"), Color::Red),
        (_, false) => (format!("spool {}", sink.spooled), Color::DarkGray),
        (MirrorState::Down(_), true) => (format!("es ✗ down{lag}"), Color::Red),
        (MirrorState::Throttled, true) => (
            format!("es throttled {}{lag}", per_second(indexed_per_s)),
            Color::Yellow,
        ),
        (MirrorState::Running, true) => (
            format!("es ● {}{lag}", per_second(indexed_per_s)),
            Color::Green,
        ),
    };
    if sink.missed > 0 {
        return Span::styled(
            format!("{text} · {} missed", sink.missed),
            Style::new().fg(Color::Red),
        );
    }
    if sink.dead_lettered > 0 {
        return Span::styled(
            format!("{text} · {} refused", sink.dead_lettered),
            Style::new().fg(Color::Red),
        );
    }
    Span::styled(text, Style::new().fg(color))
}
