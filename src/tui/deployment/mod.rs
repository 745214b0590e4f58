//! `orderdeck watch` on screen: a deployment read from its Kafka (see
//! `fleet`), refreshed four times a second. Read-only: no key changes the
//! group, so this screen has no session, no commands and no chaos menu.

pub mod app;
pub mod ui;

#[cfg(test)]
mod tests;

use std::{io, time::Duration};

use futures::{Stream, StreamExt};
use ratatui::{backend::Backend, crossterm::event::Event, Terminal};

use self::app::WatchApp;
use super::TerminalGuard;
use crate::{clock::unix_millis_now, fleet::observer::Observer, signals::stop_signals, AppError};

/// How often the screen takes a new snapshot from the observer.
const REFRESH: Duration = Duration::from_millis(250);

/// Takes the screen until the user quits (q, Esc, Ctrl-C, SIGINT, SIGTERM);
/// the terminal is restored however it ends.
pub async fn run(observer: Observer, title: String) -> Result<(), AppError> {
    let signals = stop_signals();
    let mut terminal = ratatui::init();
    let guard = TerminalGuard;
    let ended = tokio::select! {
        ended = event_loop(
            &mut terminal,
            WatchApp::new(title),
            ratatui::crossterm::event::EventStream::new(),
            &observer,
        ) => ended,
        _ = signals.stop.cancelled() => Ok(()),
    };
    drop(guard);
    // Stopping the reader joins its thread (up to one poll).
    tokio::task::spawn_blocking(move || drop(observer))
        .await
        .map_err(|e| AppError::Terminal(e.to_string()))?;
    ended.map_err(|e| AppError::Terminal(e.to_string()))
}

/// The loop, generic over the backend and the key events for tests.
pub async fn event_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    mut app: WatchApp,
    mut events: impl Stream<Item = io::Result<Event>> + Unpin,
    observer: &Observer,
) -> io::Result<()>
where
    B::Error: Send + Sync + 'static,
{
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => app.on_key(&event),
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            },
            _ = refresh.tick() => {}
        }
        if app.quit {
            return Ok(());
        }
        // After a key too, so a picked order's timeline shows at once.
        let error = observer.reader_error();
        observer.with_view(|view| app.refresh(view, unix_millis_now(), error));
        terminal
            .draw(|frame| ui::draw(frame, &app))
            .map_err(|e| io::Error::other(e.to_string()))?;
    }
}
