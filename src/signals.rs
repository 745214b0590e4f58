//! Stopping on request: SIGINT (Ctrl-C) and SIGTERM, the first asking for
//! a graceful stop and the second to stop waiting.

use tokio_util::sync::CancellationToken;

/// SIGINT and SIGTERM (as `docker stop`, systemd and Kubernetes send): the
/// first asks for a graceful stop, the second to stop waiting at once.
#[derive(Clone, Default)]
pub struct StopSignals {
    pub stop: CancellationToken,
    pub abandon: CancellationToken,
}

/// Listens for SIGINT and SIGTERM. The handlers are registered before this
/// returns, so a signal during start-up is a graceful stop too.
pub fn stop_signals() -> StopSignals {
    use tokio::signal::unix::{signal, SignalKind};
    let signals = StopSignals::default();
    let (mut interrupts, mut terminations) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(interrupts), Ok(terminations)) => (interrupts, terminations),
        (Err(error), _) | (_, Err(error)) => {
            tracing::warn!(%error, "signals will end the process without draining");
            return signals;
        }
    };
    let heard = signals.clone();
    tokio::spawn(async move {
        for nth in 1.. {
            tokio::select! {
                Some(()) = interrupts.recv() => {}
                Some(()) = terminations.recv() => {}
                else => return,
            }
            if nth == 1 {
                tracing::info!("stop requested: draining");
                heard.stop.cancel();
            } else {
                tracing::warn!("second stop request: abandoning what is left");
                heard.stop.cancel();
                heard.abandon.cancel();
                return;
            }
        }
    });
    signals
}
