//! One way to take a lock, one way to wait a bounded time for blocking
//! work that may never return, and a bell threads outside the runtime can
//! wait on.
//!
//! A panic while a lock is held (an order's run that panicked, say) poisons
//! it; every holder here leaves its data consistent between statements, so
//! the next holder takes the data as it is rather than take the process
//! down too.

use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Condvar, Mutex, MutexGuard,
    },
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

/// Counts events; a thread outside the runtime waits for the next one with
/// a timeout (a tokio timer in its place wakes the runtime's workers for
/// every wait, which an idle process cannot afford). Ringing costs an atomic
/// add unless someone waits.
#[derive(Default)]
pub struct Bell {
    rings: AtomicU64,
    waiting: AtomicUsize,
    lock: Mutex<()>,
    rung: Condvar,
}

impl Bell {
    pub fn ring(&self) {
        self.rings.fetch_add(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            // Taken, so a waiter between its check and its wait hears this.
            drop(self.lock.locked());
            self.rung.notify_all();
        }
    }

    /// How many times it rang so far.
    pub fn rings(&self) -> u64 {
        self.rings.load(Ordering::SeqCst)
    }

    /// Waits until it has rung more than `seen` times, at most `limit`;
    /// returns the count.
    pub fn wait_past(&self, seen: u64, limit: Duration) -> u64 {
        let guard = self.lock.locked();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let (guard, _) = self
            .rung
            .wait_timeout_while(guard, limit, |_| self.rings() == seen)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        drop(guard);
        self.rings()
    }
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

    #[test]
    fn a_bell_wakes_its_waiter_at_once_and_times_out_when_silent() {
        let bell = std::sync::Arc::new(Bell::default());
        let started = std::time::Instant::now();
        assert_eq!(bell.wait_past(0, Duration::from_millis(50)), 0);
        assert!(started.elapsed() >= Duration::from_millis(50));

        let ringer = {
            let bell = std::sync::Arc::clone(&bell);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                bell.ring();
            })
        };
        let started = std::time::Instant::now();
        assert_eq!(bell.wait_past(0, Duration::from_secs(30)), 1);
        assert!(started.elapsed() < Duration::from_secs(10));
        ringer.join().unwrap();
        // Rung before the wait: no wait at all.
        bell.ring();
        assert_eq!(bell.wait_past(1, Duration::from_secs(30)), 2);
    }
}
