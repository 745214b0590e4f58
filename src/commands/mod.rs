//! One file per subcommand, plus what they share: progress and the report.

pub mod bench;
pub mod completions;
pub mod export;
pub mod load;
pub mod progress;
pub mod run;
pub mod scenario;
pub mod serve;
pub mod tui;
pub mod watch;

use std::time::Duration;

use crate::{
    cli::CommonArgs,
    metrics::MetricsSnapshot,
    pipeline::{DrainEnd, Pipeline, StopProgress},
    report::{Report, RunContext},
    signals::StopSignals,
    sinks::MirrorStatus,
    slo::{Gate, Measures, PhaseOutcome, SloReport},
    AppError,
};

/// What a command adds to the report besides the pipeline's own figures.
pub struct Closing {
    pub elapsed: Duration,
    pub problems: Vec<String>,
    /// Stopped by a signal (or a key) rather than by reaching its goal.
    pub interrupted: bool,
    /// Orders left in an external Kafka count as a problem (for `run`,
    /// whose job is to finish them; not for `serve`, whose group will).
    pub left_in_kafka_is_a_problem: bool,
    /// Gates to judge the run by, if any.
    pub judging: Option<Judging>,
}

/// What the gates judge besides the report's figures.
pub struct Judging {
    pub scenario: Option<String>,
    pub gates: Vec<Gate>,
    pub phases: Vec<PhaseOutcome>,
    /// The most acknowledged orders overdue at once during the run.
    pub overdue: u64,
}

impl Judging {
    /// Judges the finished run: each phase as measured, and the whole run
    /// from the report (what only the end knows: lost, finished twice, the
    /// mirror's leftovers).
    pub fn judge(self, report: &Report, totals: &MetricsSnapshot, elastic: bool) -> SloReport {
        let c = totals.counts;
        let measured = self.phases.iter().map(|p| p.elapsed).sum::<Duration>();
        let sink = &report.sink;
        let overall = Measures {
            send: totals.send,
            end_to_end: totals.end_to_end,
            completion: totals.completion,
            throughput: if self.phases.is_empty() {
                report.throughput.orders_per_s
            } else {
                crate::metrics::per_second(c.finished, measured)
            },
            acknowledged: c.acknowledged,
            finished: c.finished,
            failed: c.failed,
            rejected: c.rejected,
            overdue: self.overdue,
            lost: Some(report.orders.lost),
            finished_twice: report.orders.finished_twice,
            sink_left: Some(sink.left + sink.pending + if elastic { sink.spooled } else { 0 }),
        };
        SloReport::judge(
            self.scenario.as_deref(),
            &self.gates,
            &self.phases,
            &overall,
        )
    }
}

/// Stops the pipeline, then reports. On the embedded broker every
/// acknowledged order is finished first (a second signal, or the drain
/// deadline, abandons them and the report counts them lost).
pub async fn finish(
    pipeline: Pipeline,
    args: &CommonArgs,
    signals: &StopSignals,
    mut closing: Closing,
) -> Result<Report, AppError> {
    let broker = pipeline.broker().describe();
    let metrics = std::sync::Arc::clone(pipeline.metrics());
    let ledger = pipeline.ledger();
    let mut told = None::<std::time::Instant>;
    let stopped = pipeline
        .stop(args.run.drain_timeout.0, &signals.abandon, |progress| {
            let line = match progress {
                StopProgress::Orders(0) | StopProgress::Mirror(MirrorStatus { lag: 0, .. }) => {
                    return
                }
                StopProgress::Orders(waiting) => format!(
                    "draining: {waiting} acknowledged orders exist only in the embedded broker; \
                     finishing them (Ctrl-C again abandons them)"
                ),
                StopProgress::Mirror(sink) => format!(
                    "mirroring: {} records to {} (Ctrl-C again stops; what is left is counted)",
                    sink.lag, sink.target
                ),
            };
            if told.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                told = Some(std::time::Instant::now());
                eprintln!("{line}");
            }
        })
        .await;
    if stopped.drain == DrainEnd::TimedOut {
        closing.problems.push(format!(
            "the drain deadline ({}) passed with orders unfinished",
            args.run.drain_timeout
        ));
    }
    let unfinished = stopped.unfinished;
    if unfinished.lost > 0 {
        closing.problems.push(lost_problem(unfinished.lost));
    }
    if unfinished.left_in_kafka > 0 {
        let left = format!(
            "{} acknowledged orders are left in Kafka for consumer group {:?}: its next member \
             runs them",
            unfinished.left_in_kafka, args.kafka.group
        );
        if closing.left_in_kafka_is_a_problem {
            closing.problems.push(left);
        } else {
            eprintln!("note: {left}");
        }
    }
    let tally = ledger.tally(Duration::MAX);
    let mut report = Report::new(
        &metrics.snapshot(),
        RunContext {
            elapsed: closing.elapsed,
            broker,
            load: crate::config::load_level(args).to_string(),
            time_scale: args.run.time_scale.factor(),
            unfinished,
            finished_elsewhere: tally.finished_elsewhere,
            interrupted: closing.interrupted,
            sink: stopped.sink,
            notifications: stopped.notifications,
            problems: closing.problems,
            audit: stopped.audit,
        },
    );
    if let Some(judging) = closing.judging {
        report.slo = Some(judging.judge(&report, &metrics.snapshot(), args.mirror.es.is_some()));
    }
    if let Some(path) = &args.report.report {
        write_report(path, &report.to_json())?;
    }
    for problem in &report.problems {
        eprintln!("problem: {problem}");
    }
    Ok(report)
}

/// What a report says of acknowledged orders lost at a stop.
pub fn lost_problem(lost: u64) -> String {
    format!(
        "{lost} acknowledged orders were abandoned and are lost: only the embedded broker held \
         them, and it stopped with this process"
    )
}

/// Maps an incomplete report, or a failed gate, to its exit status.
pub fn conclude(report: &Report, args: &CommonArgs) -> Result<(), AppError> {
    if let Some(slo) = report.slo.as_ref().filter(|slo| !slo.passed) {
        return Err(AppError::Gates(slo.failures().join("; ")));
    }
    if !report.complete {
        return Err(AppError::Incomplete(report.problems.join("; ")));
    }
    if let Some(problem) = report.sink.incomplete(args.mirror.es.is_some()) {
        return Err(AppError::SinkIncomplete(problem));
    }
    Ok(())
}

/// Writes a report where `--report` asked for it.
pub fn write_report(path: &std::path::Path, json: &str) -> Result<(), AppError> {
    std::fs::write(path, json).map_err(|source| AppError::Report {
        path: path.display().to_string(),
        source,
    })
}
