//! One way to take a lock, and one way to wait a bounded time for blocking
//! work that may never return.
//!
//! A panic while a lock is held (an order's run that panicked, say) poisons
//! it; every holder here leaves its data consistent between statements, so
//! the next holder takes the data as it is rather than take the process
//! down too.

use std::{
    sync::{Mutex, MutexGuard},
    time::Duration,
};

pub trait Locked<T> {
    /// The guard, poisoned or not.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Runs blocking `work` on a thread of its own and waits at most `limit`
/// for its result (None past it). librdkafka's synchronous commit and its
/// consumer close have no timeout and can stall for good once a broker is
/// gone; a stalled call is left to end with the process. On tokio's
/// blocking pool it would also hold up the runtime's shutdown forever.
pub async fn bounded_blocking<T: Send + 'static>(
    name: &str,
    limit: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = done.send(work());
        })
        .ok()?;
    tokio::time::timeout(limit, result).await.ok()?.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stalled_call_is_left_behind_at_the_limit() {
        let quick = bounded_blocking("quick", Duration::from_secs(5), || 7).await;
        assert_eq!(quick, Some(7));
        let started = std::time::Instant::now();
        let stalled = bounded_blocking("stalled", Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_secs(3600))
        })
        .await;
        assert_eq!(stalled, None);
        assert!(started.elapsed() < Duration::from_secs(5));
        // The runtime ends at once although the call never returns.
    }
}
