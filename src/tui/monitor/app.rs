//! The load monitor's state: the clients' latest status, a minute of
//! per-second samples for the chart, the scenario's timeline if one plays.
//! Changed only by `ingest_*` and `on_key`; keys become session commands.

use std::collections::VecDeque;

use ratatui::crossterm::event::{Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::{
    load::LoadLevel,
    scenario::Timeline,
    session::{Command, Phase, Sample, SessionStatus},
};

/// Samples kept for the chart: one a second.
pub const CHART_SECONDS: usize = 60;

pub struct MonitorApp {
    /// Where the orders go, and how.
    pub title: String,
    pub status: SessionStatus,
    pub history: VecDeque<Sample>,
    pub timeline: Option<Timeline>,
    /// Quit keys pressed so far.
    pub quits: u32,
}

/// What a key asks of the outside.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MonitorEffect {
    Send(Command),
    SkipPhase,
    Quit,
}

impl MonitorApp {
    pub fn new(title: String, status: SessionStatus) -> Self {
        Self {
            title,
            status,
            history: VecDeque::with_capacity(CHART_SECONDS),
            timeline: None,
            quits: 0,
        }
    }

    pub fn ingest_status(&mut self, status: SessionStatus) {
        if let Some(sample) = &status.last_sample {
            if self
                .history
                .back()
                .is_none_or(|last| last.seq != sample.seq)
            {
                if self.history.len() == CHART_SECONDS {
                    self.history.pop_front();
                }
                self.history.push_back(sample.clone());
            }
        }
        self.status = status;
    }

    pub fn ingest_timeline(&mut self, timeline: Timeline) {
        self.timeline = Some(timeline);
    }

    /// Whether the clients have stopped for good (sent everything, or failed).
    pub fn ended(&self) -> bool {
        matches!(self.status.phase, Phase::Stopped | Phase::Failed(_))
    }

    pub fn on_key(&mut self, event: &Event) -> Option<MonitorEffect> {
        let Event::Key(key) = event else {
            return None;
        };
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let quit = matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
            || (key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL));
        if quit {
            self.quits += 1;
            return Some(MonitorEffect::Quit);
        }
        if self.ended() || self.quits > 0 {
            return None;
        }
        let command = match key.code {
            KeyCode::Char(' ') => Command::ToggleClients,
            KeyCode::Char('+') | KeyCode::Right => Command::AddClient,
            KeyCode::Char('-') | KeyCode::Left => Command::RemoveClient,
            KeyCode::Char('1') => Command::SetLoad(LoadLevel::Low),
            KeyCode::Char('2') => Command::SetLoad(LoadLevel::Medium),
            KeyCode::Char('3') => Command::SetLoad(LoadLevel::High),
            KeyCode::Char('n') if self.timeline.as_ref().is_some_and(|t| !t.done()) => {
                return Some(MonitorEffect::SkipPhase)
            }
            _ => return None,
        };
        Some(MonitorEffect::Send(command))
    }
}
