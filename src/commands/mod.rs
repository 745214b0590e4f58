//! One file per subcommand, plus what they share: progress and the report.

pub mod bench;
pub mod completions;
pub mod export;
pub mod load;
pub mod progress;
pub mod run;
pub mod serve;
pub mod tui;

use std::time::Duration;

use crate::{
    cli::CommonArgs,
    pipeline::{DrainEnd, Pipeline, StopProgress},
    report::{Report, RunContext},
    signals::StopSignals,
    sinks::MirrorStatus,
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
        closing.problems.push(format!(
            "{} acknowledged orders were abandoned and are lost: only the embedded broker held \
             them, and it stopped with this process",
            unfinished.lost
        ));
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
    let report = Report::new(
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
        },
    );
    if let Some(path) = &args.report.report {
        write_report(path, &report.to_json())?;
    }
    for problem in &report.problems {
        eprintln!("problem: {problem}");
    }
    Ok(report)
}

/// Maps an incomplete report to its exit status.
pub fn conclude(report: &Report, args: &CommonArgs) -> Result<(), AppError> {
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
