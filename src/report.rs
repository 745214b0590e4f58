//! The run report: stable JSON keys for scripts and CI.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    kafka::finished_log::EventAudit,
    metrics::{per_second, LatencySummary, MetricsSnapshot},
    order::State,
    pipeline::Unfinished,
    sinks::notify::NotifyCounts,
    sinks::spool::dead_letters_named,
    sinks::{MirrorState, MirrorStatus},
    slo::SloReport,
};

#[derive(Debug, Serialize)]
pub struct Report {
    pub orders: OrderTotals,
    pub latency_ms: Latencies,
    pub per_state_ms: BTreeMap<&'static str, StateTime>,
    pub throughput: Throughput,
    pub elapsed_s: f64,
    pub broker: String,
    pub load: String,
    pub time_scale: f64,
    /// What the Elasticsearch mirror did.
    pub sink: SinkTotals,
    /// E-mails on transitions (all zero unless --notify-smtp).
    pub notifications: NotifyCounts,
    /// True when no acknowledged order was lost and nothing went wrong:
    /// each finished (here or in another process of the group, checked by
    /// order id) or, on an external broker, waits in Kafka for the group.
    pub complete: bool,
    /// Stopped on request (a signal, a key) before reaching its goal.
    pub interrupted: bool,
    /// The gates' verdicts (with `--slo` or a scenario).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slo: Option<SloReport>,
    /// Why the run is not complete, or what went wrong along the way.
    pub problems: Vec<String>,
}

/// What the mirror did: read = indexed + spooled + dead_lettered + pending.
#[derive(Debug, Serialize)]
pub struct SinkTotals {
    /// `spool <dir>` or the Elasticsearch URL.
    pub target: String,
    /// `running`, `throttled`, `down: …` or `stopped: …` at the end.
    pub state: String,
    /// Documents made from what the mirror read from Kafka.
    pub read: u64,
    pub indexed: u64,
    /// Written to the spool (for `orderdeck export`).
    pub spooled: u64,
    /// Refused by Elasticsearch for good, kept in the dead-letter file.
    pub dead_lettered: u64,
    /// Read but written nowhere when the mirror stopped (an abandon).
    pub pending: u64,
    /// Spooled documents deleted unexported to keep the spool in bounds.
    pub dropped: u64,
    /// Kafka records not mirrored when the mirror stopped.
    pub left: u64,
    /// Records the broker deleted before the mirror read them; each gap is
    /// in the dead-letter file.
    pub missed: u64,
    /// Metric documents the producer's full queue refused.
    pub metrics_dropped: u64,
    /// Requests repeated after back-pressure or an outage.
    pub retries: u64,
    pub failures: Vec<String>,
    pub spool_dir: Option<String>,
    pub dead_letter_file: Option<String>,
}

impl SinkTotals {
    /// What keeps the mirror from being complete: documents not sent to
    /// Elasticsearch (with one configured), refused, or never mirrored.
    pub fn incomplete(&self, elastic: bool) -> Option<String> {
        let mut problems = Vec::new();
        if elastic && self.spooled > 0 {
            problems.push(format!(
                "{} documents not sent to Elasticsearch, kept in the spool {} (send them with `orderdeck export --es URL`)",
                self.spooled,
                self.spool_dir.as_deref().unwrap_or(&self.target)
            ));
        }
        if self.dead_lettered > 0 {
            problems.push(format!(
                "{} documents refused by Elasticsearch ({}), kept in {}",
                self.dead_lettered,
                self.failures.join("; "),
                dead_letters_named(self.dead_letter_file.as_deref())
            ));
        }
        if self.missed > 0 {
            problems.push(format!(
                "{} records were deleted by the broker before the mirror read them (the \
                 embedded broker keeps 5 MiB per partition; the mirror fell further behind), \
                 listed in {}",
                self.missed,
                dead_letters_named(self.dead_letter_file.as_deref())
            ));
        }
        if self.left + self.pending > 0 {
            problems.push(format!(
                "{} records were not mirrored when the mirror stopped",
                self.left + self.pending
            ));
        }
        if self.state.starts_with("stopped") {
            problems.push(format!("the mirror {}", self.state));
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }
}

impl From<MirrorStatus> for SinkTotals {
    fn from(s: MirrorStatus) -> Self {
        Self {
            target: s.target,
            state: match s.state {
                MirrorState::Running => "running".to_owned(),
                MirrorState::Throttled => "throttled".to_owned(),
                MirrorState::Down(reason) => format!("down: {reason}"),
                MirrorState::Stopped(reason) => format!("stopped: {reason}"),
            },
            read: s.read,
            indexed: s.indexed,
            spooled: s.spooled,
            dead_lettered: s.dead_lettered,
            pending: s.pending,
            dropped: s.dropped,
            left: s.left,
            missed: s.missed,
            metrics_dropped: s.metrics_dropped,
            retries: s.retries,
            failures: s.failures,
            spool_dir: s.spool_dir,
            dead_letter_file: s.dead_letter_file,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct OrderTotals {
    pub sent: u64,
    pub acknowledged: u64,
    pub rejected: u64,
    pub failed: u64,
    pub consumed: u64,
    /// Orders this process ran to Finished.
    pub finished: u64,
    /// Orders this process acknowledged that another process of the group
    /// finished (learned from the events topic).
    pub finished_elsewhere: u64,
    pub redelivered: u64,
    /// Acknowledged orders that did not finish: lost + left_in_kafka.
    pub unfinished: u64,
    /// Gone with the embedded broker (abandoned at a stop).
    pub lost: u64,
    /// In an external Kafka, uncommitted: the group's next member runs them.
    pub left_in_kafka: u64,
    /// Runs stopped when their partition moved; the new owner ran them.
    pub handed_over: u64,
    /// Runs that panicked (each order was run again).
    pub panics: u64,
    /// Finished events published again after a failed delivery.
    pub finished_retries: u64,
    /// Orders with more than one Finished event in the events topic, read
    /// back at the stop (null when it was not read: no gate asked).
    pub finished_twice: Option<u64>,
    /// Finished records that repeat one run's event, read back with
    /// `finished_twice`: the broker wrote a record twice, the order ran
    /// once. Only the embedded broker does (it does not enforce the
    /// producer's idempotence), after a brokers-down.
    pub finished_repeated: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl From<LatencySummary> for Percentiles {
    fn from(s: LatencySummary) -> Self {
        Self {
            p50: s.p50,
            p90: s.p90,
            p99: s.p99,
            max: s.max,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Latencies {
    /// Client call until the reply (which comes after Kafka's ack).
    pub send: Percentiles,
    /// Server acceptance until a consumer picked the order up.
    pub end_to_end: Percentiles,
    /// Server acceptance until Finished.
    pub completion: Percentiles,
}

#[derive(Debug, Serialize)]
pub struct StateTime {
    pub p50: f64,
    pub p99: f64,
}

#[derive(Debug, Serialize)]
pub struct Throughput {
    /// Finished orders per second over the run.
    pub orders_per_s: f64,
    pub acknowledged_per_s: f64,
}

/// What the report needs besides the metrics.
pub struct RunContext {
    /// The measured span: first order sent until the last one finished.
    pub elapsed: std::time::Duration,
    pub broker: String,
    pub load: String,
    pub time_scale: f64,
    pub unfinished: Unfinished,
    pub finished_elsewhere: u64,
    pub interrupted: bool,
    pub sink: MirrorStatus,
    pub notifications: NotifyCounts,
    pub problems: Vec<String>,
    pub audit: Option<EventAudit>,
}

impl Report {
    pub fn new(snapshot: &MetricsSnapshot, context: RunContext) -> Self {
        let c = snapshot.counts;
        let per_state_ms = State::TIMED
            .iter()
            .map(|state| {
                let time = snapshot.per_state[state.index()];
                (
                    state.name(),
                    StateTime {
                        p50: time.p50,
                        p99: time.p99,
                    },
                )
            })
            .collect();
        Self {
            orders: OrderTotals {
                sent: c.sent,
                acknowledged: c.acknowledged,
                rejected: c.rejected,
                failed: c.failed,
                consumed: c.consumed,
                finished: c.finished,
                finished_elsewhere: context.finished_elsewhere,
                redelivered: c.redelivered,
                unfinished: context.unfinished.lost + context.unfinished.left_in_kafka,
                lost: context.unfinished.lost,
                left_in_kafka: context.unfinished.left_in_kafka,
                handed_over: c.handed_over,
                panics: c.panics,
                finished_retries: c.finished_retries,
                finished_twice: context.audit.map(|audit| audit.finished_twice),
                finished_repeated: context.audit.map(|audit| audit.repeated),
            },
            latency_ms: Latencies {
                send: snapshot.send.into(),
                end_to_end: snapshot.end_to_end.into(),
                completion: snapshot.completion.into(),
            },
            per_state_ms,
            throughput: Throughput {
                orders_per_s: per_second(c.finished, context.elapsed),
                acknowledged_per_s: per_second(c.acknowledged, context.elapsed),
            },
            elapsed_s: context.elapsed.as_secs_f64(),
            broker: context.broker,
            load: context.load,
            time_scale: context.time_scale,
            sink: context.sink.into(),
            notifications: context.notifications,
            complete: context.unfinished.lost == 0 && context.problems.is_empty(),
            interrupted: context.interrupted,
            slo: None,
            problems: context.problems,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a Report always serializes")
    }

    /// A few lines for a person at the end of a run.
    pub fn summary(&self) -> String {
        let o = &self.orders;
        let l = &self.latency_ms;
        let mut summary = format!(
            "orders: sent {} · acknowledged {} · rejected {} · failed {} · consumed {} · finished {} (+{} elsewhere) · redelivered {} · unfinished {}\n\
             throughput: {:.0} orders/s finished over {:.1} s (broker: {})\n\
             latency ms: send p50 {:.2} p99 {:.2} · end-to-end p50 {:.2} p99 {:.2} · completion p50 {:.2} p99 {:.2}\n\
             documents: read {} · indexed {} · spooled {} · dead-lettered {} · left {} · missed {} ({})",
            o.sent, o.acknowledged, o.rejected, o.failed, o.consumed, o.finished, o.finished_elsewhere, o.redelivered, o.unfinished,
            self.throughput.orders_per_s, self.elapsed_s, self.broker,
            l.send.p50, l.send.p99, l.end_to_end.p50, l.end_to_end.p99, l.completion.p50, l.completion.p99,
            self.sink.read, self.sink.indexed, self.sink.spooled, self.sink.dead_lettered, self.sink.left, self.sink.missed, self.sink.target,
        );
        if let (Some(twice), Some(repeated)) = (o.finished_twice, o.finished_repeated) {
            summary.push_str(&format!(
                "\nevents topic: finished twice {twice} · Finished records the broker repeated {repeated}"
            ));
        }
        summary
    }
}
