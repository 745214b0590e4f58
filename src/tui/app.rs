//! The UI's state and the only places it changes: `update` (the user's
//! actions) and the `ingest_*`/`note_*` methods (what the session reports).
//! No I/O: the runner feeds it events and status, and carries out the
//! effects it returns. Its fields are the TUI's own (`pub(super)`): widgets
//! read them, nothing outside the TUI sees them.

use std::collections::{HashMap, VecDeque};

use tui_input::Input;

use super::action::Action;
use crate::{
    load::LoadLevel,
    metrics::{BucketCounts, OrderCounts},
    order::{Order, OrderId, State, Transition},
    scenario::Timeline,
    session::{Command, Phase, Sample, SessionStatus},
};

/// Transitions kept for the live list.
pub const RECENT_TRANSITIONS: usize = 1_000;
/// Orders whose timelines are kept for the detail view.
pub const TRACKED_ORDERS: usize = 2_000;
/// One sample a second: 15 minutes of chart history.
pub const HISTORY: usize = 900;

/// What the app asks the runner to do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Effect {
    StartSession(LoadLevel),
    /// Play the start screen's scenario at this index.
    StartScenario(usize),
    Send(Command),
    /// End the scenario's current phase.
    SkipPhase,
    /// Leave now (nothing is running, or the session has stopped).
    Exit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    Start,
    Main,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    Detail(OrderId),
    /// The chaos menu.
    Chaos,
}

/// The panel that scroll keys move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    Transitions,
    Charts,
    Lag,
}

impl Focus {
    fn next(self) -> Self {
        match self {
            Focus::Transitions => Focus::Charts,
            Focus::Charts => Focus::Lag,
            Focus::Lag => Focus::Transitions,
        }
    }
}

/// How much history the charts show; `[` and `]` step through these.
pub const CHART_WINDOWS_S: [usize; 4] = [60, 120, 300, 900];

/// What the start screen shows about where data goes.
#[derive(Clone, Debug, PartialEq)]
pub struct StartInfo {
    pub broker: String,
    pub sink: String,
    pub time_scale: f64,
    /// Scenarios to offer beside the levels: name, what it tells.
    pub scenarios: Vec<(String, String)>,
}

/// One order as seen from its transitions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrderTimeline {
    pub order: Option<Order>,
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub state: State,
    pub at_unix_ms: i64,
    /// Time spent in the previous state.
    pub previous_state_ms: f64,
}

/// Rates per stage from two successive status updates.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StageRates {
    pub sent: f64,
    pub acknowledged: f64,
    pub consumed: f64,
    pub finished: f64,
    /// Documents indexed into Elasticsearch per second.
    pub indexed: f64,
}

pub struct App {
    pub(super) screen: Screen,
    pub(super) overlay: Overlay,
    pub(super) focus: Focus,
    pub(super) start: StartInfo,
    /// Highlighted level on the start screen...
    pub(super) start_choice: LoadLevel,
    /// ...unless a scenario below them is.
    pub(super) start_scenario: Option<usize>,
    /// Why the last start from the start screen was refused.
    pub(super) start_refused: Option<String>,
    pub(super) status: Option<SessionStatus>,
    pub(super) history: VecDeque<Sample>,
    pub(super) rates: StageRates,
    pub(super) recent: VecDeque<Transition>,
    pub(super) orders: HashMap<OrderId, OrderTimeline>,
    order_arrivals: VecDeque<OrderId>,
    pub(super) filter: Input,
    pub(super) editing_filter: bool,
    /// Index of the highlighted transition among those matching the filter.
    pub(super) selected: usize,
    pub(super) lag_scroll: usize,
    pub(super) chart_window: usize,
    /// Transitions the UI skipped because it fell behind the feed.
    missed_transitions: u64,
    pub(super) quitting: bool,
    /// The scenario being played, if any.
    pub(super) timeline: Option<Timeline>,
}

impl App {
    pub fn new(start: StartInfo, preselected: Option<LoadLevel>) -> Self {
        Self {
            screen: Screen::Start,
            overlay: Overlay::None,
            focus: Focus::Transitions,
            start,
            start_choice: preselected.unwrap_or(LoadLevel::Medium),
            start_scenario: None,
            start_refused: None,
            status: None,
            history: VecDeque::with_capacity(HISTORY),
            rates: StageRates::default(),
            recent: VecDeque::with_capacity(RECENT_TRANSITIONS),
            orders: HashMap::new(),
            order_arrivals: VecDeque::new(),
            filter: Input::default(),
            editing_filter: false,
            selected: 0,
            lag_scroll: 0,
            chart_window: 0,
            missed_transitions: 0,
            quitting: false,
            timeline: None,
        }
    }

    /// The scenario picked on the start screen could not start: back to it,
    /// saying why.
    pub fn refuse_start(&mut self, why: String) {
        self.screen = Screen::Start;
        self.start_refused = Some(why);
    }

    /// The app as it is right after the user picked `level` (the runner
    /// starts the session).
    pub fn started(mut self, level: LoadLevel) -> Self {
        self.start_choice = level;
        self.screen = Screen::Main;
        self
    }

    pub fn chart_window_s(&self) -> usize {
        CHART_WINDOWS_S[self.chart_window]
    }

    /// The live feed skipped `missed` transitions (the UI fell behind).
    pub fn note_missed(&mut self, missed: u64) {
        self.missed_transitions += missed;
    }

    pub fn missed_transitions(&self) -> u64 {
        self.missed_transitions
    }

    /// Takes a status update from the session.
    /// The scenario being played, if any.
    pub fn ingest_timeline(&mut self, timeline: Timeline) {
        self.timeline = Some(timeline);
    }

    pub fn ingest_status(&mut self, status: SessionStatus) {
        if let Some(previous) = &self.status {
            let span = status
                .metrics
                .elapsed
                .saturating_sub(previous.metrics.elapsed)
                .as_secs_f64();
            if span > 0.0 {
                let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / span;
                let (now, before): (&OrderCounts, &OrderCounts) =
                    (&status.metrics.counts, &previous.metrics.counts);
                self.rates = StageRates {
                    sent: rate(now.sent, before.sent),
                    acknowledged: rate(now.acknowledged, before.acknowledged),
                    consumed: rate(now.consumed, before.consumed),
                    finished: rate(now.finished, before.finished),
                    indexed: rate(status.sink.indexed, previous.sink.indexed),
                };
            }
        }
        if let Some(sample) = &status.last_sample {
            if self.history.back().is_none_or(|last| last.seq < sample.seq) {
                if self.history.len() == HISTORY {
                    self.history.pop_front();
                }
                self.history.push_back(sample.clone());
            }
        }
        self.status = Some(status);
    }

    /// Takes one transition from the live feed.
    pub fn ingest_transition(&mut self, transition: Transition) {
        let timeline = match self.orders.get_mut(&transition.order_id) {
            Some(timeline) => timeline,
            None => {
                if self.order_arrivals.len() == TRACKED_ORDERS {
                    if let Some(oldest) = self.order_arrivals.pop_front() {
                        self.orders.remove(&oldest);
                    }
                }
                self.order_arrivals.push_back(transition.order_id);
                self.orders.entry(transition.order_id).or_default()
            }
        };
        if transition.from.is_none() {
            // A redelivered order starts over: show its latest run.
            timeline.steps.clear();
            timeline.order = transition.order.clone();
        }
        timeline.steps.push(Step {
            state: transition.to,
            at_unix_ms: transition.at_unix_ms,
            previous_state_ms: transition.previous_state_ms,
        });
        // Keep the highlighted row on the same transition as new ones arrive.
        if self.selected > 0 && self.matches(&transition) {
            self.selected += 1;
        }
        if self.recent.len() == RECENT_TRANSITIONS {
            self.recent.pop_back();
        }
        self.recent.push_front(transition);
        self.selected = self.selected.min(self.recent.len().saturating_sub(1));
    }

    pub fn filter_text(&self) -> String {
        self.filter.value().trim().to_lowercase()
    }

    /// Whether a transition matches the filter: id, product, region or state.
    pub fn matches(&self, transition: &Transition) -> bool {
        let wanted = self.filter_text();
        if wanted.is_empty() {
            return true;
        }
        let state_names = |state: Option<State>| {
            state.map_or(String::new(), |s| {
                format!("{} {}", s.name(), s.spanish_name()).to_lowercase()
            })
        };
        transition.order_id.to_string().contains(&wanted)
            || transition.product.to_lowercase().contains(&wanted)
            || transition.region.to_lowercase().contains(&wanted)
            || state_names(Some(transition.to)).contains(&wanted)
            || state_names(transition.from).contains(&wanted)
    }

    /// The transitions the list shows, newest first.
    pub fn visible_transitions(&self) -> impl Iterator<Item = &Transition> {
        self.recent.iter().filter(|t| self.matches(t))
    }

    fn selected_order(&self) -> Option<OrderId> {
        self.visible_transitions()
            .nth(self.selected)
            .map(|t| t.order_id)
    }

    pub fn phase(&self) -> Option<&Phase> {
        self.status.as_ref().map(|s| &s.phase)
    }

    /// Latency buckets summed over the chart window.
    pub fn window_histogram(&self) -> BucketCounts {
        let mut total = BucketCounts::default();
        for sample in self.history.iter().rev().take(self.chart_window_s()) {
            for (sum, count) in total.iter_mut().zip(sample.window.end_to_end_buckets) {
                *sum += count;
            }
        }
        total
    }

    /// The one place UI state changes.
    pub fn update(&mut self, action: Action) -> Option<Effect> {
        if action == Action::Quit {
            return self.quit();
        }
        match self.screen {
            Screen::Start => self.update_start(action),
            Screen::Main => self.update_main(action),
        }
    }

    fn quit(&mut self) -> Option<Effect> {
        if self.screen == Screen::Start
            || matches!(self.phase(), None | Some(Phase::Stopped | Phase::Failed(_)))
        {
            return Some(Effect::Exit);
        }
        if self.quitting {
            // Asked again while stopping: stop waiting.
            return Some(Effect::Send(Command::Abandon));
        }
        self.quitting = true;
        self.overlay = Overlay::None;
        Some(Effect::Send(Command::Shutdown))
    }

    fn update_start(&mut self, action: Action) -> Option<Effect> {
        let choice = self.start_choice;
        let scenarios = self.start.scenarios.len();
        match (&action, self.start_scenario) {
            // The rows run from the levels down into the scenarios.
            (Action::Up, Some(0)) => self.start_scenario = None,
            (Action::Up, Some(row)) => self.start_scenario = Some(row - 1),
            (Action::Down, Some(row)) => {
                self.start_scenario = Some((row + 1).min(scenarios.saturating_sub(1)))
            }
            (Action::Down, None) if choice.higher().is_none() && scenarios > 0 => {
                self.start_scenario = Some(0)
            }
            (Action::Confirm, Some(row)) => {
                self.screen = Screen::Main;
                self.start_refused = None;
                return Some(Effect::StartScenario(row));
            }
            _ => return self.update_start_level(action),
        }
        None
    }

    fn update_start_level(&mut self, action: Action) -> Option<Effect> {
        let choice = self.start_choice;
        match action {
            Action::Up => self.start_choice = choice.lower().unwrap_or(choice),
            Action::Down => self.start_choice = choice.higher().unwrap_or(choice),
            Action::CycleLoad => self.start_choice = choice.cycled(),
            Action::SetLoad(level) => {
                self.start_choice = level;
                self.screen = Screen::Main;
                return Some(Effect::StartSession(level));
            }
            Action::Confirm => {
                self.screen = Screen::Main;
                return Some(Effect::StartSession(self.start_choice));
            }
            Action::Back => return Some(Effect::Exit),
            Action::ToggleHelp => self.toggle_help(),
            _ => {}
        }
        None
    }

    fn toggle_help(&mut self) {
        self.overlay = match self.overlay {
            Overlay::Help => Overlay::None,
            _ => Overlay::Help,
        };
    }

    fn update_main(&mut self, action: Action) -> Option<Effect> {
        if self.overlay != Overlay::None {
            match action {
                Action::Inject(chaos) => {
                    self.overlay = Overlay::None;
                    return Some(Effect::Send(Command::Inject(chaos)));
                }
                Action::Back | Action::Confirm | Action::ToggleHelp => self.overlay = Overlay::None,
                _ => {}
            }
            return None;
        }
        if self.editing_filter {
            match action {
                Action::FilterInput(event) => {
                    tui_input::backend::crossterm::EventHandler::handle_event(
                        &mut self.filter,
                        &event,
                    );
                    self.selected = 0;
                }
                Action::Confirm => self.editing_filter = false,
                Action::Back => {
                    self.editing_filter = false;
                    self.filter.reset();
                    self.selected = 0;
                }
                _ => {}
            }
            return None;
        }
        let command = match action {
            Action::ToggleClients => Command::ToggleClients,
            Action::TogglePause => Command::TogglePause,
            Action::SetLoad(level) => Command::SetLoad(level),
            Action::CycleLoad => {
                let current = self.status.as_ref().map_or(self.start_choice, |s| s.load);
                Command::SetLoad(current.cycled())
            }
            Action::AddClient => Command::AddClient,
            Action::RemoveClient => Command::RemoveClient,
            Action::AddConsumer => Command::AddConsumer,
            Action::RemoveConsumer => Command::RemoveConsumer,
            Action::ImportDashboard => Command::ImportDashboard,
            Action::SkipPhase => {
                return self
                    .timeline
                    .as_ref()
                    .filter(|t| !t.done())
                    .map(|_| Effect::SkipPhase)
            }
            other => {
                self.navigate(other);
                return None;
            }
        };
        Some(Effect::Send(command))
    }

    fn navigate(&mut self, action: Action) {
        match action {
            Action::FocusNext => self.focus = self.focus.next(),
            Action::StartFilter => {
                self.focus = Focus::Transitions;
                self.editing_filter = true;
            }
            Action::Back => {
                self.filter.reset();
                self.selected = 0;
            }
            Action::Confirm => {
                if let Some(id) = self.selected_order() {
                    self.overlay = Overlay::Detail(id);
                }
            }
            Action::ToggleHelp => self.toggle_help(),
            Action::OpenChaos => self.overlay = Overlay::Chaos,
            Action::WiderWindow => {
                self.chart_window = (self.chart_window + 1).min(CHART_WINDOWS_S.len() - 1)
            }
            Action::NarrowerWindow => self.chart_window = self.chart_window.saturating_sub(1),
            Action::Up
            | Action::Down
            | Action::PageUp
            | Action::PageDown
            | Action::Top
            | Action::Bottom => self.scroll(action),
            _ => {}
        }
    }

    /// Moves within the focused panel: the transition list, the lag
    /// table, or (on the charts) the time window.
    fn scroll(&mut self, action: Action) {
        const PAGE: usize = 10;
        let rows = match self.focus {
            Focus::Transitions => self.visible_transitions().count(),
            Focus::Lag => self
                .status
                .as_ref()
                .map_or(0, |s| s.members.len() + s.partitions.len()),
            Focus::Charts => CHART_WINDOWS_S.len(),
        };
        let last = rows.saturating_sub(1);
        let position = match self.focus {
            Focus::Transitions => &mut self.selected,
            Focus::Lag => &mut self.lag_scroll,
            Focus::Charts => &mut self.chart_window,
        };
        *position = match action {
            Action::Up => position.saturating_sub(1),
            Action::Down => (*position + 1).min(last),
            Action::PageUp => position.saturating_sub(PAGE),
            Action::PageDown => (*position + PAGE).min(last),
            Action::Top => 0,
            _ => last,
        };
    }
}
