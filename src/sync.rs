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
        Arc, Condvar, Mutex, MutexGuard,
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
/// add unless someone waits. Each waiter holds a [`Listener`].
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

    /// A listener that has heard every ring so far.
    pub fn listen(self: &Arc<Self>) -> Listener {
        Listener {
            heard: self.rings(),
            bell: Arc::clone(self),
        }
    }

    fn rings(&self) -> u64 {
        self.rings.load(Ordering::SeqCst)
    }
}

/// What one listener has heard of a [`Bell`].
pub struct Listener {
    bell: Arc<Bell>,
    heard: u64,
}

impl Listener {
    /// Whether it rang since this listener last heard it.
    pub fn rang(&mut self) -> bool {
        let rings = self.bell.rings();
        std::mem::replace(&mut self.heard, rings) != rings
    }

    /// Waits at most `limit` for a ring not heard yet; whether one came.
    pub fn wait(&mut self, limit: Duration) -> bool {
        let bell = &self.bell;
        let guard = bell.lock.locked();
        bell.waiting.fetch_add(1, Ordering::SeqCst);
        let (guard, _) = bell
            .rung
            .wait_timeout_while(guard, limit, |_| bell.rings() == self.heard)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        bell.waiting.fetch_sub(1, Ordering::SeqCst);
        drop(guard);
        self.rang()
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
        let bell = Arc::new(Bell::default());
        let mut listener = bell.listen();
        let started = std::time::Instant::now();
        assert!(!listener.wait(Duration::from_millis(50)));
        assert!(started.elapsed() >= Duration::from_millis(50));

        let ringer = {
            let bell = Arc::clone(&bell);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                bell.ring();
            })
        };
        let started = std::time::Instant::now();
        assert!(listener.wait(Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(10));
        ringer.join().unwrap();
        assert!(!listener.rang(), "a ring is heard once");
        // Rung before the wait: no wait at all.
        bell.ring();
        assert!(listener.wait(Duration::from_secs(30)));
        // A listener that came later has not missed it: it starts from now.
        assert!(!bell.listen().rang());
    }
}
