//! One load driver for every scenario, so their numbers compare: a closed
//! loop (N callers as fast as they can) for throughput, and an open loop at
//! a fixed rate for latency, timed from each order's intended send time so a
//! stall shows up in the percentiles instead of hiding (coordinated omission).

use std::{
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use tokio::{
    sync::{mpsc, oneshot, Semaphore},
    task::JoinSet,
};

use crate::metrics::{self, LatencySummary};
use crate::sync::Locked;

/// When an order counts as done.
pub enum Done {
    /// When the call returned.
    Now,
    /// At the instant this sends (an order finishing after its
    /// acknowledgement): the moment it was seen, not when the waiting task
    /// next ran.
    Later(oneshot::Receiver<Instant>),
}

/// Something the driver sends orders to.
pub trait Target: Send + Sync + 'static {
    /// Sends order number `n` on caller `slot`.
    fn send(&self, n: u64, slot: usize) -> impl Future<Output = Result<Done, String>> + Send;
}

#[derive(Clone, Copy, Debug)]
pub enum Load {
    /// `callers` loops, each sending its next order once the previous one is
    /// acknowledged, until `orders` were sent or `limit` passed.
    Closed {
        callers: usize,
        orders: u64,
        limit: Duration,
    },
    /// `rate` orders per second for `duration`, whatever the replies do.
    Open { rate: f64, duration: Duration },
}

/// What one phase measured.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub completed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the first send until the last completion.
    pub elapsed: Duration,
    pub latency: LatencySummary,
    /// Open loop: how late each call started after its intended time (a
    /// part of every latency, since they are timed from the intended time).
    pub pacing: Option<LatencySummary>,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        crate::metrics::per_second(self.completed, self.elapsed)
    }
}

/// Requests in flight at once in an open loop; past it the schedule slips,
/// and the slip is counted in the latencies.
const OPEN_LOOP_IN_FLIGHT: usize = 4096;
/// Turns the pacer may hand out before the loop takes them.
const PACED_AHEAD: usize = 64;
/// How long completions may trail the last send.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

struct Tally {
    latencies: Mutex<Histogram<u64>>,
    /// Open loop only: intended send time to the call.
    lateness: Mutex<Histogram<u64>>,
    completed: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    last_completion: Mutex<Option<Instant>>,
}

impl Tally {
    fn new() -> Self {
        Self {
            latencies: Mutex::new(metrics::new_histogram()),
            lateness: Mutex::new(metrics::new_histogram()),
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            last_completion: Mutex::new(None),
        }
    }

    fn done(&self, since: Instant) {
        self.done_at(since, Instant::now());
    }

    fn done_at(&self, since: Instant, now: Instant) {
        record(&self.latencies, now.saturating_duration_since(since));
        self.completed.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last_completion.locked();
        if last.is_none_or(|l| l < now) {
            *last = Some(now);
        }
    }

    fn failed(&self, error: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error.locked().get_or_insert(error);
    }

    fn outcome(&self, started: Instant, paced: bool) -> Outcome {
        Outcome {
            completed: self.completed.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            first_error: self.first_error.locked().clone(),
            elapsed: self
                .last_completion
                .locked()
                .map_or(Duration::ZERO, |last| {
                    last.saturating_duration_since(started)
                }),
            latency: metrics::summarize(&self.latencies.locked()),
            pacing: paced.then(|| metrics::summarize(&self.lateness.locked())),
        }
    }
}

fn record(histogram: &Mutex<Histogram<u64>>, took: Duration) {
    let _ = histogram.locked().record((took.as_micros() as u64).max(1));
}

/// Hands out the open loop's turns at their intended times from a thread of
/// its own. tokio's timer fires on whole-millisecond ticks, and later while
/// the workers are busy: paced by it, calls at 1,000/s started 1.1 ms (p50)
/// to 1.9 ms (p99) after their intended time, and every latency carried
/// that. The OS's sleep wakes within tens of microseconds.
fn pace(started: Instant, interval: Duration, total: u64) -> mpsc::Receiver<u64> {
    let (turns, receiver) = mpsc::channel(PACED_AHEAD);
    std::thread::Builder::new()
        .name("bench-pacer".into())
        .spawn(move || {
            for n in 0..total {
                let intended = started + interval.mul_f64(n as f64);
                if let Some(wait) = intended.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if turns.blocking_send(n).is_err() {
                    return;
                }
            }
        })
        .expect("the OS gives the bench a thread");
    receiver
}

/// Sends the whole load and waits (bounded) for every completion.
pub async fn drive<T: Target>(target: Arc<T>, load: Load) -> Outcome {
    let tally = Arc::new(Tally::new());
    let mut completions = JoinSet::new();
    let started = Instant::now();
    match load {
        Load::Closed {
            callers,
            orders,
            limit,
        } => {
            let next = Arc::new(AtomicU64::new(0));
            let mut loops = JoinSet::new();
            for slot in 0..callers.max(1) {
                let (target, tally, next) =
                    (Arc::clone(&target), Arc::clone(&tally), Arc::clone(&next));
                loops.spawn(async move {
                    let mut waiting = JoinSet::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= orders || started.elapsed() >= limit {
                            break;
                        }
                        let sent = Instant::now();
                        settle(&*target, n, slot, sent, &tally, &mut waiting).await;
                        // Reap what completed, so a long run holds no more
                        // than its orders in flight.
                        while waiting.try_join_next().is_some() {}
                    }
                    waiting
                });
            }
            while let Some(waiting) = loops.join_next().await {
                if let Ok(mut waiting) = waiting {
                    completions.spawn(async move { while waiting.join_next().await.is_some() {} });
                }
            }
        }
        Load::Open { rate, duration } => {
            let total = (rate * duration.as_secs_f64()).round() as u64;
            let room = Arc::new(Semaphore::new(OPEN_LOOP_IN_FLIGHT));
            let interval = Duration::from_secs_f64(1.0 / rate.max(f64::MIN_POSITIVE));
            let mut turns = pace(started, interval, total);
            while let Some(n) = turns.recv().await {
                let intended = started + interval.mul_f64(n as f64);
                let permit = Arc::clone(&room)
                    .acquire_owned()
                    .await
                    .expect("never closed");
                let (target, tally) = (Arc::clone(&target), Arc::clone(&tally));
                completions.spawn(async move {
                    record(&tally.lateness, intended.elapsed());
                    let mut waiting = JoinSet::new();
                    settle(&*target, n, n as usize, intended, &tally, &mut waiting).await;
                    // The cap is on requests in flight; waiting for an order
                    // to finish costs nothing.
                    drop(permit);
                    while waiting.join_next().await.is_some() {}
                });
            }
        }
    }
    let drained = tokio::time::timeout(DRAIN_LIMIT, async {
        while completions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        let missing = completions.len() as u64;
        completions.abort_all();
        tally.errors.fetch_add(missing, Ordering::Relaxed);
        tally.first_error.locked().get_or_insert_with(|| {
            format!(
                "orders still incomplete {} s after the last send",
                DRAIN_LIMIT.as_secs()
            )
        });
    }
    tally.outcome(started, matches!(load, Load::Open { .. }))
}

/// Sends one order; an order completing later is awaited on `waiting`, so
/// the caller can go on sending.
async fn settle<T: Target>(
    target: &T,
    n: u64,
    slot: usize,
    since: Instant,
    tally: &Arc<Tally>,
    waiting: &mut JoinSet<()>,
) {
    match target.send(n, slot).await {
        Ok(Done::Now) => tally.done(since),
        Ok(Done::Later(finished)) => {
            let tally = Arc::clone(tally);
            waiting.spawn(async move {
                match finished.await {
                    Ok(at) => tally.done_at(since, at),
                    Err(_) => tally.failed("the order never finished".to_owned()),
                }
            });
        }
        Err(error) => tally.failed(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers after a fixed pause; one in 100 orders stalls much longer.
    struct Sleepy;

    impl Target for Sleepy {
        async fn send(&self, n: u64, _slot: usize) -> Result<Done, String> {
            let pause = if n == 10 { 200 } else { 1 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
            Ok(Done::Now)
        }
    }

    #[tokio::test]
    async fn a_closed_loop_sends_exactly_the_orders_asked_for() {
        let outcome = drive(
            Arc::new(Sleepy),
            Load::Closed {
                callers: 4,
                orders: 100,
                limit: Duration::from_secs(30),
            },
        )
        .await;
        assert_eq!(outcome.completed, 100);
        assert_eq!(outcome.errors, 0);
        assert!(outcome.pacing.is_none(), "a closed loop has no schedule");
        assert!(outcome.latency.max >= 200.0, "{:?}", outcome.latency);
    }

    #[tokio::test]
    async fn an_open_loop_reports_how_late_its_calls_started() {
        struct AtOnce;
        impl Target for AtOnce {
            async fn send(&self, _n: u64, _slot: usize) -> Result<Done, String> {
                Ok(Done::Now)
            }
        }
        let outcome = drive(
            Arc::new(AtOnce),
            Load::Open {
                rate: 1000.0,
                duration: Duration::from_millis(300),
            },
        )
        .await;
        assert_eq!(outcome.completed, 300);
        let pacing = outcome.pacing.expect("an open loop times its schedule");
        assert!(pacing.p50 <= outcome.latency.p50, "{pacing:?} {outcome:?}");
        assert!(
            outcome.elapsed >= Duration::from_millis(299),
            "the last call waited for its turn: {:?}",
            outcome.elapsed
        );
    }

    /// One caller at 500/s with a 200 ms stall: a closed loop would record
    /// one slow order; timing from the intended send also charges the
    /// orders scheduled behind the stall.
    #[tokio::test]
    async fn an_open_loop_charges_a_stall_to_the_orders_behind_it() {
        struct OneAtATime(tokio::sync::Mutex<()>);
        impl Target for OneAtATime {
            async fn send(&self, n: u64, slot: usize) -> Result<Done, String> {
                let _one = self.0.lock().await;
                Sleepy.send(n, slot).await
            }
        }
        let outcome = drive(
            Arc::new(OneAtATime(tokio::sync::Mutex::new(()))),
            Load::Open {
                rate: 500.0,
                duration: Duration::from_millis(400),
            },
        )
        .await;
        assert_eq!(outcome.completed, 200);
        assert!(
            outcome.latency.p90 >= 20.0,
            "orders queued behind the stall count their wait: {:?}",
            outcome.latency
        );
    }
}
