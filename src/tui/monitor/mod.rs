//! `orderdeck load` on screen: the clients' side of a server elsewhere —
//! reply latency, throughput, errors by gRPC code and, with `--brokers`,
//! orders followed to Finished. Keys steer the clients (and skip a
//! scenario's phases); the server is never touched from here.

pub mod app;
pub mod ui;

#[cfg(test)]
mod tests;

use std::{io, time::Duration};

use futures::{Stream, StreamExt};
use ratatui::{backend::Backend, crossterm::event::Event, Terminal};

use self::app::{MonitorApp, MonitorEffect};
use super::{Latest, Player, TerminalGuard};
use crate::{
    scenario::Scenario,
    session::{Command, Phase, SessionHandle, SessionStatus},
    signals::stop_signals,
    slo::{Gate, PhaseOutcome},
    AppError,
};

const FRAME: Duration = Duration::from_millis(100);

/// Takes the screen until the user quits; the clients stop with it. Returns
/// the clients' last status and what each phase of `scenario` measured.
pub async fn show(
    session: SessionHandle,
    title: String,
    scenario: Option<Scenario>,
    gates: Vec<Gate>,
) -> Result<(SessionStatus, Vec<PhaseOutcome>), AppError> {
    let signals = stop_signals();
    let mut terminal = ratatui::init();
    let guard = TerminalGuard;
    let player = scenario.map(|s| Player::judged_by(s, gates, &session));
    let app = MonitorApp::new(title, session.status.borrow().clone());
    let looped = tokio::select! {
        looped = event_loop(
            &mut terminal,
            app,
            ratatui::crossterm::event::EventStream::new(),
            &session,
            player.as_ref(),
        ) => looped,
        _ = signals.stop.cancelled() => Ok(()),
    };
    drop(guard);
    looped.map_err(|e| AppError::Terminal(e.to_string()))?;
    // Already stopped unless a signal ended the screen: then stop waiting too.
    let _ = session.commands.send(Command::Shutdown).await;
    let _ = session.commands.send(Command::Abandon).await;
    let last = crate::commands::load::ended(&session).await?;
    session.finished().await;
    // The scenario ends with the clients, measuring what ran.
    let phases = match player {
        Some(player) => tokio::time::timeout(Duration::from_secs(10), player.task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    Ok((last, phases))
}

/// The loop, generic over the backend and the key events for tests.
async fn event_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    mut app: MonitorApp,
    mut events: impl Stream<Item = io::Result<Event>> + Unpin,
    session: &SessionHandle,
    player: Option<&Player>,
) -> io::Result<()>
where
    B::Error: Send + Sync + 'static,
{
    let mut status = Latest::new(session.status.clone());
    let mut timeline = player.map(|p| Latest::new(p.timeline.values.clone()));
    let mut frame = tokio::time::interval(FRAME);
    frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => match app.on_key(&event) {
                    // The first quit stops the clients and waits for the
                    // followed orders on screen; the next stops waiting.
                    Some(MonitorEffect::Quit) if app.ended() => return Ok(()),
                    Some(MonitorEffect::Quit) => {
                        let command = if app.quits > 1 { Command::Abandon } else { Command::Shutdown };
                        let _ = session.commands.try_send(command);
                    }
                    Some(MonitorEffect::Send(command)) => {
                        let _ = session.commands.try_send(command);
                    }
                    Some(MonitorEffect::SkipPhase) => {
                        if let Some(player) = player {
                            player.skip.send_modify(|n| *n += 1);
                        }
                    }
                    None => {}
                },
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            },
            _ = frame.tick() => {}
        }
        if let Some(latest) = status.take() {
            app.ingest_status(latest);
        }
        if app.quits > 0 && app.ended() {
            return Ok(());
        }
        if let Some(latest) = timeline.as_mut().and_then(Latest::take) {
            app.ingest_timeline(latest);
        }
        // A scenario played to its end stops the clients.
        if app.timeline.as_ref().is_some_and(|t| t.done())
            && !matches!(app.status.phase, Phase::Stopped)
        {
            let _ = session.commands.try_send(Command::Shutdown);
        }
        terminal
            .draw(|frame| ui::draw(frame, &app))
            .map_err(|e| io::Error::other(e.to_string()))?;
    }
}
