//! Counters and fixed-size latency histograms for the original's metric
//! kinds, read by the UI and the report as snapshots.

use std::{
    sync::{
        atomic::{AtomicI64, AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::order::State;
use crate::sync::Locked;

/// Everything the pipeline counts, each in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Orders the simulated clients started sending.
    Sent,
    /// Orders the gRPC server replied OK to, after Kafka's delivery report.
    Acknowledged,
    /// Orders refused as invalid: bad CSV rows and INVALID_ARGUMENT replies.
    Rejected,
    /// Orders a client gave up on after retrying (Kafka unavailable, overload).
    Failed,
    /// Orders a consumer started for the first time.
    Consumed,
    /// Records seen again for an order already in flight or finished.
    Redelivered,
    /// Orders that reached Finished, each counted once.
    Finished,
    /// Every state change, including the entry into Processing.
    Transitions,
    /// Records on the orders topic that were not an order; skipped.
    InvalidRecords,
    /// Transitions that could not be queued for the events topic.
    EventsDropped,
    /// Finished events published again after a failed delivery (the
    /// order's offset waits for one to land).
    FinishedRetries,
    /// Order runs that panicked; each such order is run again.
    Panics,
    /// Runs stopped before Finished because their partition moved to
    /// another member, which runs them instead.
    HandedOver,
}

impl Counter {
    const COUNT: usize = 13;
}

/// Latency percentiles of one metric kind, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct OrderCounts {
    pub sent: u64,
    pub acknowledged: u64,
    pub rejected: u64,
    pub failed: u64,
    pub consumed: u64,
    pub redelivered: u64,
    pub finished: u64,
    pub transitions: u64,
    pub invalid_records: u64,
    pub events_dropped: u64,
    pub finished_retries: u64,
    pub panics: u64,
    pub handed_over: u64,
}

/// A consistent-enough view of all metrics at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsSnapshot {
    pub elapsed: Duration,
    pub counts: OrderCounts,
    /// Orders currently waiting in each state (Finished: total finished).
    pub in_state: [u64; 5],
    /// Client call until the server's reply (after Kafka's ack).
    pub send: LatencySummary,
    /// Server acceptance until a consumer picked the order up.
    pub end_to_end: LatencySummary,
    /// Server acceptance until Finished.
    pub completion: LatencySummary,
    /// Time spent in each timed state, indexed like `State::TIMED`.
    pub per_state: [LatencySummary; 4],
    /// Calls a server refused, by gRPC status code (its number), retried
    /// ones included: what a load process saw.
    pub refused: [u64; GRPC_CODES],
    /// From the start to the last answer a client got.
    pub last_answer: Duration,
}

/// gRPC status codes run from 0 (OK) to 16 (UNAUTHENTICATED).
pub const GRPC_CODES: usize = 17;

pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Which histogram a latency goes to.
#[derive(Clone, Copy, Debug)]
pub enum Latency {
    Send,
    EndToEnd,
    Completion,
    InState(State),
}

/// Upper bounds, in ms, of the latency distribution shown as bars; one more
/// bucket holds everything slower.
pub const LATENCY_BUCKETS_MS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];
pub type BucketCounts = [u64; LATENCY_BUCKETS_MS.len() + 1];

/// Latencies recorded since the previous `take_window`: what a chart plots.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowStats {
    pub send: LatencySummary,
    pub end_to_end: LatencySummary,
    pub end_to_end_buckets: BucketCounts,
}

/// Latencies since the start of a scenario's phase (see `take_phase`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PhaseLatency {
    pub send: LatencySummary,
    pub end_to_end: LatencySummary,
    pub completion: LatencySummary,
}

struct Histograms {
    send: Histogram<u64>,
    end_to_end: Histogram<u64>,
    completion: Histogram<u64>,
    per_state: [Histogram<u64>; 4],
    window_send: Histogram<u64>,
    window_end_to_end: Histogram<u64>,
    /// Send, end to end and completion since the phase began.
    phase: [Histogram<u64>; 3],
}

impl Histograms {
    fn new() -> Self {
        Self {
            send: new_histogram(),
            end_to_end: new_histogram(),
            completion: new_histogram(),
            per_state: std::array::from_fn(|_| new_histogram()),
            window_send: new_histogram(),
            window_end_to_end: new_histogram(),
            phase: std::array::from_fn(|_| new_histogram()),
        }
    }

    fn record(&mut self, kind: Latency, micros: u64) {
        let window = match kind {
            Latency::Send => Some(&mut self.window_send),
            Latency::EndToEnd => Some(&mut self.window_end_to_end),
            _ => None,
        };
        if let Some(window) = window {
            window.saturating_record(micros);
        }
        let phase = match kind {
            Latency::Send => Some(0),
            Latency::EndToEnd => Some(1),
            Latency::Completion => Some(2),
            Latency::InState(_) => None,
        };
        if let Some(phase) = phase {
            self.phase[phase].saturating_record(micros);
        }
        self.select(kind).saturating_record(micros);
    }

    fn phase_latency(&self) -> PhaseLatency {
        let [send, end_to_end, completion] = &self.phase;
        PhaseLatency {
            send: summarize(send),
            end_to_end: summarize(end_to_end),
            completion: summarize(completion),
        }
    }

    fn select(&mut self, kind: Latency) -> &mut Histogram<u64> {
        match kind {
            Latency::Send => &mut self.send,
            Latency::EndToEnd => &mut self.end_to_end,
            Latency::Completion => &mut self.completion,
            // Finished is terminal and never timed; fold it into the last slot.
            Latency::InState(state) => &mut self.per_state[state.index().min(3)],
        }
    }
}

/// Microseconds from 1 µs to one hour at 3 significant digits: fixed memory.
const HISTOGRAM_MAX_MICROS: u64 = 3_600_000_000;

pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3).expect("valid histogram bounds")
}

pub(crate) fn summarize(histogram: &Histogram<u64>) -> LatencySummary {
    if histogram.is_empty() {
        return LatencySummary::default();
    }
    let ms = |micros: u64| micros as f64 / 1e3;
    LatencySummary {
        count: histogram.len(),
        p50: ms(histogram.value_at_quantile(0.50)),
        p90: ms(histogram.value_at_quantile(0.90)),
        p99: ms(histogram.value_at_quantile(0.99)),
        max: ms(histogram.max()),
    }
}

fn buckets(histogram: &Histogram<u64>) -> BucketCounts {
    let mut counts = BucketCounts::default();
    for value in histogram.iter_recorded() {
        let ms = value.value_iterated_to() as f64 / 1e3;
        let bucket = LATENCY_BUCKETS_MS
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        counts[bucket] += value.count_at_value();
    }
    counts
}

pub struct Metrics {
    started: Instant,
    counters: [AtomicU64; Counter::COUNT],
    in_state: [AtomicI64; 5],
    refused: [AtomicU64; GRPC_CODES],
    /// When the last call was answered (µs after `started`).
    last_answer_micros: AtomicU64,
    histograms: Mutex<Histograms>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            in_state: std::array::from_fn(|_| AtomicI64::new(0)),
            refused: std::array::from_fn(|_| AtomicU64::new(0)),
            last_answer_micros: AtomicU64::new(0),
            histograms: Mutex::new(Histograms::new()),
        }
    }

    /// A client got its answer (or gave up) now.
    pub fn answered(&self) {
        let micros = self.started.elapsed().as_micros() as u64;
        self.last_answer_micros.fetch_max(micros, Ordering::Relaxed);
    }

    /// A call refused with gRPC status `code` (out-of-range codes count as
    /// UNKNOWN, 2).
    pub fn refused(&self, code: i32) {
        let index = usize::try_from(code)
            .ok()
            .filter(|c| *c < GRPC_CODES)
            .unwrap_or(2);
        self.refused[index].fetch_add(1, Ordering::Relaxed);
    }

    pub fn incr(&self, counter: Counter) {
        self.add(counter, 1);
    }

    pub fn add(&self, counter: Counter, n: u64) {
        self.counters[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].load(Ordering::Relaxed)
    }

    pub fn record(&self, kind: Latency, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, HISTOGRAM_MAX_MICROS);
        self.histograms.locked().record(kind, micros);
    }

    /// Latencies since the last call, then starts a new window. One reader
    /// (the status monitor) calls this on a fixed period.
    pub fn take_window(&self) -> WindowStats {
        let mut histograms = self.histograms.locked();
        let stats = WindowStats {
            send: summarize(&histograms.window_send),
            end_to_end: summarize(&histograms.window_end_to_end),
            end_to_end_buckets: buckets(&histograms.window_end_to_end),
        };
        histograms.window_send.reset();
        histograms.window_end_to_end.reset();
        stats
    }

    /// Latencies since the phase began, so far.
    pub fn phase_latency(&self) -> PhaseLatency {
        self.histograms.locked().phase_latency()
    }

    /// Latencies since the phase began; the next phase begins now.
    pub fn take_phase(&self) -> PhaseLatency {
        let mut histograms = self.histograms.locked();
        let latency = histograms.phase_latency();
        histograms.phase.iter_mut().for_each(Histogram::reset);
        latency
    }

    /// Moves one order's gauge from `from` to `to`.
    pub fn move_state(&self, from: Option<State>, to: State) {
        if let Some(from) = from {
            self.in_state[from.index()].fetch_sub(1, Ordering::Relaxed);
        }
        self.in_state[to.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes an order out of the gauges without finishing it (abandoned work).
    pub fn leave_state(&self, state: State) {
        self.in_state[state.index()].fetch_sub(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let histograms = self.histograms.locked();
        let c = |counter| self.get(counter);
        MetricsSnapshot {
            elapsed: self.started.elapsed(),
            counts: OrderCounts {
                sent: c(Counter::Sent),
                acknowledged: c(Counter::Acknowledged),
                rejected: c(Counter::Rejected),
                failed: c(Counter::Failed),
                consumed: c(Counter::Consumed),
                redelivered: c(Counter::Redelivered),
                finished: c(Counter::Finished),
                transitions: c(Counter::Transitions),
                invalid_records: c(Counter::InvalidRecords),
                events_dropped: c(Counter::EventsDropped),
                finished_retries: c(Counter::FinishedRetries),
                panics: c(Counter::Panics),
                handed_over: c(Counter::HandedOver),
            },
            in_state: std::array::from_fn(|i| {
                self.in_state[i].load(Ordering::Relaxed).max(0) as u64
            }),
            send: summarize(&histograms.send),
            end_to_end: summarize(&histograms.end_to_end),
            completion: summarize(&histograms.completion),
            per_state: std::array::from_fn(|i| summarize(&histograms.per_state[i])),
            refused: std::array::from_fn(|i| self.refused[i].load(Ordering::Relaxed)),
            last_answer: Duration::from_micros(self.last_answer_micros.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentiles() {
        let metrics = Metrics::new();
        metrics.incr(Counter::Sent);
        metrics.add(Counter::Sent, 2);
        for ms in 1..=100 {
            metrics.record(Latency::Send, Duration::from_millis(ms));
        }
        metrics.record(Latency::InState(State::Shipped), Duration::from_secs(2));
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.counts.sent, 3);
        assert_eq!(snapshot.send.count, 100);
        assert!(
            (snapshot.send.p50 - 50.0).abs() < 0.1,
            "{:?}",
            snapshot.send
        );
        assert!(
            (snapshot.send.p99 - 99.0).abs() < 0.1,
            "{:?}",
            snapshot.send
        );
        assert!(
            (snapshot.send.max - 100.0).abs() < 0.1,
            "{:?}",
            snapshot.send
        );
        assert_eq!(snapshot.per_state[State::Shipped.index()].count, 1);
        assert_eq!(snapshot.end_to_end, LatencySummary::default());
    }

    #[test]
    fn windows_restart_and_bucket_the_distribution() {
        let metrics = Metrics::new();
        metrics.record(Latency::EndToEnd, Duration::from_micros(500));
        metrics.record(Latency::EndToEnd, Duration::from_millis(30));
        metrics.record(Latency::EndToEnd, Duration::from_secs(9));
        let window = metrics.take_window();
        assert_eq!(window.end_to_end.count, 3);
        let mut expected = BucketCounts::default();
        expected[0] = 1; // <= 1 ms
        expected[5] = 1; // 20–50 ms
        expected[12] = 1; // > 5 s
        assert_eq!(window.end_to_end_buckets, expected);
        assert_eq!(metrics.take_window(), WindowStats::default());
        assert_eq!(
            metrics.snapshot().end_to_end.count,
            3,
            "totals keep everything"
        );
    }

    #[test]
    fn phases_restart_while_totals_keep_everything() {
        let metrics = Metrics::new();
        metrics.record(Latency::Completion, Duration::from_secs(3));
        metrics.record(Latency::InState(State::Shipped), Duration::from_secs(1));
        let first = metrics.take_phase();
        assert_eq!(first.completion.count, 1);
        assert_eq!(first.send.count, 0);
        metrics.record(Latency::Send, Duration::from_millis(2));
        assert_eq!(metrics.phase_latency().send.count, 1);
        assert_eq!(metrics.phase_latency().completion.count, 0);
        assert_eq!(metrics.snapshot().completion.count, 1);
    }

    #[test]
    fn out_of_range_latencies_are_clamped_not_lost() {
        let metrics = Metrics::new();
        metrics.record(Latency::EndToEnd, Duration::ZERO);
        metrics.record(Latency::EndToEnd, Duration::from_secs(100_000));
        assert_eq!(metrics.snapshot().end_to_end.count, 2);
    }

    #[test]
    fn state_gauges_follow_moves() {
        let metrics = Metrics::new();
        metrics.move_state(None, State::Processing);
        metrics.move_state(Some(State::Processing), State::Preparing);
        metrics.move_state(None, State::Processing);
        metrics.leave_state(State::Processing);
        assert_eq!(metrics.snapshot().in_state, [0, 1, 0, 0, 0]);
    }
}
