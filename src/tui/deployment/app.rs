//! The watch screen's state: the latest snapshot of the deployment, the
//! newest transitions, the order picked and its timeline. Changed only by
//! `refresh` (from the observer's view) and `on_key`.

use ratatui::crossterm::event::{Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::{
    fleet::view::{FleetSnapshot, FleetView},
    order::{OrderId, Transition},
};

/// Transitions shown, newest first.
const FEED_SHOWN: usize = 200;

#[derive(Default)]
pub struct WatchApp {
    /// Where it looks: brokers, group, topic.
    pub title: String,
    pub snapshot: FleetSnapshot,
    /// Newest first.
    pub feed: Vec<Transition>,
    pub transitions_seen: u64,
    /// The row highlighted in the feed, and the order it stands for.
    pub selected: usize,
    pub picked: Option<OrderId>,
    /// Every transition of the picked order (or the newest one's), in order.
    pub timeline: Vec<Transition>,
    pub reader_error: Option<String>,
    pub quit: bool,
}

impl WatchApp {
    pub fn new(title: String) -> Self {
        Self {
            title,
            ..Self::default()
        }
    }

    /// Takes what the observer has read so far.
    pub fn refresh(&mut self, view: &FleetView, now_ms: i64, reader_error: Option<String>) {
        self.snapshot = view.snapshot(now_ms);
        let (feed, seen) = view.feed();
        let mut newest: Vec<Transition> = feed.cloned().collect();
        newest.reverse();
        newest.truncate(FEED_SHOWN);
        self.feed = newest;
        self.transitions_seen = seen;
        self.reader_error = reader_error;
        // The picked order stays picked while the feed moves under it.
        if let Some(picked) = self.picked {
            if let Some(row) = self.feed.iter().position(|t| t.order_id == picked) {
                self.selected = row;
            }
        }
        self.selected = self.selected.min(self.feed.len().saturating_sub(1));
        let shown = self
            .picked
            .or_else(|| self.feed.get(self.selected).map(|t| t.order_id));
        self.timeline = shown
            .map(|id| view.timeline(id).to_vec())
            .unwrap_or_default();
    }

    pub fn on_key(&mut self, event: &Event) {
        let Event::Key(key) = event else {
            return;
        };
        if key.kind == KeyEventKind::Release {
            return;
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => self.quit = true,
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => self.quit = true,
            KeyCode::Down | KeyCode::Char('j') => self.pick(self.selected + 1),
            KeyCode::Up | KeyCode::Char('k') => self.pick(self.selected.saturating_sub(1)),
            KeyCode::Home | KeyCode::Char('g') => {
                // Back to following the newest order.
                self.selected = 0;
                self.picked = None;
            }
            _ => {}
        }
    }

    fn pick(&mut self, row: usize) {
        if self.feed.is_empty() {
            return;
        }
        self.selected = row.min(self.feed.len() - 1);
        self.picked = Some(self.feed[self.selected].order_id);
    }
}
