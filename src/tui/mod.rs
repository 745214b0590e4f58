//! The terminal control center: a full-screen view of the live pipeline.
//!
//! `app` holds the state and is the only place it changes; `action` maps
//! keys to what the user wants; `ui` and `widgets` draw; this module runs
//! the loop: terminal events, a render tick, status and transitions from
//! the session. The pipeline never waits on the UI and the UI never awaits
//! the pipeline: commands go out with `try_send`, status comes in as a
//! watch value, transitions from a bounded broadcast drained per frame.

pub mod action;
pub mod app;
pub mod deployment;
pub mod format;
pub mod keymap;
pub mod monitor;
pub mod ui;
pub mod widgets;

#[cfg(test)]
mod tests;

use std::{io, time::Duration};

use futures::{Stream, StreamExt};
use ratatui::{
    backend::Backend,
    crossterm::event::{Event, EventStream},
    Terminal,
};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use self::{
    action::Action,
    app::{App, Effect, StartInfo},
    keymap::action_for,
};
use crate::{
    load::LoadLevel,
    order::Transition,
    scenario::{
        runner::{play, Controls},
        Scenario, Timeline,
    },
    session::{Command, Phase, SessionHandle, SessionStatus},
    signals::StopSignals,
    slo::{Gate, PhaseOutcome},
    AppError,
};

/// At most this many transitions are taken from the feed per frame; more
/// than that and the UI skips ahead (it is a view, not a record).
const TRANSITIONS_PER_FRAME: usize = 4096;
/// The render tick: at most 30 frames a second, only when something changed.
const FRAME: Duration = Duration::from_millis(33);

/// Restores the terminal however the UI ends: return, error or panic
/// (`ratatui::init` installs the panic hook).
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// What the control center leaves behind: the session's last status, and
/// what each phase of a scenario played measured.
pub type Ended = (Option<SessionStatus>, Option<Vec<PhaseOutcome>>);

/// Takes the screen and runs the control center until the user quits:
/// the start screen (unless `preselected`), then the session that
/// `start_session` starts (or `start_scenario`, for a scenario picked on
/// the start screen; `scenario` plays at once). The terminal is restored
/// however it ends.
pub async fn show(
    start: StartInfo,
    preselected: Option<LoadLevel>,
    scenario: Option<Scenario>,
    start_session: impl Fn(LoadLevel) -> SessionHandle,
    start_scenario: impl Fn(usize) -> Result<(SessionHandle, Scenario), String>,
    signals: StopSignals,
) -> Result<Ended, AppError> {
    let mut terminal = ratatui::init();
    keep_the_screen_on_task_panics();
    let guard = TerminalGuard;
    let app = App::new(start, preselected);
    let last = event_loop(
        &mut terminal,
        app,
        EventStream::new(),
        Starters {
            level: start_session,
            scenario: start_scenario,
        },
        preselected,
        scenario,
        signals,
    )
    .await
    .map_err(|e| AppError::Terminal(e.to_string()));
    drop(guard);
    last
}

/// ratatui's panic hook restores the terminal on any panic; a panic inside
/// one order's task is caught and the order run again, so only a panic on
/// the UI's own thread gives the terminal back.
fn keep_the_screen_on_task_panics() {
    let restore_and_report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some("main") {
            restore_and_report(info);
        } else {
            tracing::error!(%info, "a task panicked");
        }
    }));
}

/// The values a watch channel publishes, each taken once: the last one
/// too, after the sender is gone (tokio then reports the closed channel,
/// not the unseen value).
struct Latest<T> {
    values: watch::Receiver<T>,
    closed: bool,
}

impl<T: Clone> Latest<T> {
    fn new(values: watch::Receiver<T>) -> Self {
        Self {
            values,
            closed: false,
        }
    }

    /// The value, if it is new since the last take.
    fn take(&mut self) -> Option<T> {
        if !self.values.has_changed().unwrap_or(!self.closed) {
            return None;
        }
        self.closed = self.values.has_changed().is_err();
        Some(self.values.borrow_and_update().clone())
    }
}

/// The session the UI is attached to, once a load level is chosen.
struct Attached {
    handle: SessionHandle,
    /// Stopped comes last, after the session has ended.
    status: Latest<SessionStatus>,
    feed: broadcast::Receiver<Transition>,
}

impl Attached {
    fn new(handle: SessionHandle) -> Self {
        let mut status = handle.status.clone();
        status.mark_changed(); // show the initial "starting" status too
        Self {
            status: Latest::new(status),
            feed: handle.transitions.subscribe(),
            handle,
        }
    }

    /// Brings the app up to date; returns whether anything changed.
    fn pull(&mut self, app: &mut App) -> bool {
        let mut changed = false;
        if let Some(status) = self.status.take() {
            app.ingest_status(status);
            changed = true;
        }
        for _ in 0..TRANSITIONS_PER_FRAME {
            match self.feed.try_recv() {
                Ok(transition) => {
                    app.ingest_transition(transition);
                    changed = true;
                }
                Err(broadcast::error::TryRecvError::Lagged(missed)) => app.note_missed(missed),
                Err(_) => break,
            }
        }
        changed
    }
}

/// A scenario played on the session, and the way to skip its phases.
struct Player {
    /// Every phase done (the verdicts) comes last, after the scenario ended.
    timeline: Latest<Timeline>,
    skip: watch::Sender<u64>,
    /// Ends with the session, with what each phase measured.
    task: tokio::task::JoinHandle<Vec<PhaseOutcome>>,
}

impl Player {
    /// Plays `scenario` on the session in a task of its own, judged by its
    /// gates (the default ones if it has none).
    fn start(scenario: Scenario, session: &SessionHandle) -> Self {
        let gates = crate::scenario::gates(&scenario, &[]);
        Self::judged_by(scenario, gates, session)
    }

    fn judged_by(scenario: Scenario, gates: Vec<Gate>, session: &SessionHandle) -> Self {
        let (timeline, view) = watch::channel(Timeline::new(&scenario));
        let (skip, skipped) = watch::channel(0);
        let commands = session.commands.clone();
        let status = session.status.clone();
        let task = tokio::spawn(async move {
            let controls = Controls {
                commands: &commands,
                status,
                skip: skipped,
                stop: CancellationToken::new(),
                timeline: &timeline,
            };
            play(&scenario, &gates, controls).await
        });
        Self {
            timeline: Latest::new(view),
            skip,
            task,
        }
    }

    fn pull(&mut self, app: &mut App) -> bool {
        match self.timeline.take() {
            Some(timeline) => {
                app.ingest_timeline(timeline);
                true
            }
            None => false,
        }
    }
}

/// How the UI starts a session: at a load level, or playing the start
/// screen's scenario at an index (refused with a reason).
pub struct Starters<L, S> {
    pub level: L,
    pub scenario: S,
}

/// The UI loop, generic over the backend so tests can drive it.
pub async fn event_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    mut app: App,
    mut events: impl Stream<Item = io::Result<Event>> + Unpin,
    starters: Starters<
        impl Fn(LoadLevel) -> SessionHandle,
        impl Fn(usize) -> Result<(SessionHandle, Scenario), String>,
    >,
    preselected: Option<LoadLevel>,
    mut scenario: Option<Scenario>,
    signals: StopSignals,
) -> io::Result<Ended>
where
    B::Error: Send + Sync + 'static,
{
    let mut session: Option<Attached> = None;
    let mut player: Option<Player> = None;
    let mut attach = |level, player: &mut Option<Player>| {
        let handle = (starters.level)(level);
        *player = scenario.take().map(|s| Player::start(s, &handle));
        Attached::new(handle)
    };
    if let Some(level) = preselected {
        app = app.started(level);
        session = Some(attach(level, &mut player));
    }
    let mut frame = tokio::time::interval(FRAME);
    frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    let mut abandoned = false;
    loop {
        let action = tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => {
                    dirty |= matches!(event, Event::Resize(..));
                    action_for(&app, &event)
                }
                Some(Err(error)) => return Err(error),
                None => Some(Action::Quit),
            },
            // SIGINT/SIGTERM: the first quits as q does, the second abandons.
            _ = signals.stop.cancelled(), if !app.quitting => Some(Action::Quit),
            _ = signals.abandon.cancelled(), if app.quitting && !abandoned => {
                abandoned = true;
                Some(Action::Quit)
            }
            _ = frame.tick() => None,
        };
        if let Some(action) = action {
            dirty = true;
            match app.update(action) {
                Some(Effect::StartSession(level)) => session = Some(attach(level, &mut player)),
                Some(Effect::StartScenario(row)) => match (starters.scenario)(row) {
                    Ok((handle, played)) => {
                        player = Some(Player::start(played, &handle));
                        session = Some(Attached::new(handle));
                    }
                    Err(why) => app.refuse_start(why),
                },
                Some(Effect::SkipPhase) => {
                    if let Some(player) = &player {
                        player.skip.send_modify(|n| *n += 1);
                    }
                }
                Some(Effect::Send(command)) => {
                    if let Some(attached) = &session {
                        // Never wait on the pipeline: a full inbox drops the key press.
                        let _ = attached.handle.commands.try_send(command);
                    }
                }
                Some(Effect::Exit) => break,
                None => {}
            }
        }
        if let Some(attached) = &mut session {
            dirty |= attached.pull(&mut app);
        }
        if let Some(player) = &mut player {
            dirty |= player.pull(&mut app);
        }
        if app.quitting && app.phase() == Some(&Phase::Stopped) {
            break;
        }
        if dirty {
            terminal
                .draw(|frame| ui::draw(frame, &app))
                .map_err(io::Error::other)?;
            dirty = false;
        }
    }
    let Some(attached) = session else {
        return Ok((None, None));
    };
    let _ = attached.handle.commands.try_send(Command::Shutdown);
    let last = attached.handle.status.clone();
    attached.handle.finished().await;
    let last = last.borrow().clone();
    // The scenario ends with the session.
    let played = match player {
        Some(player) => tokio::time::timeout(Duration::from_secs(10), player.task)
            .await
            .ok()
            .and_then(Result::ok),
        None => None,
    };
    Ok((Some(last), played))
}
