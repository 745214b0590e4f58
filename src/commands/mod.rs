//! One file per subcommand, plus what they share: progress and the report.

pub mod bench;
pub mod export;
pub mod progress;
pub mod run;
pub mod serve;

use std::time::Duration;

use crate::{
    cli::CommonArgs,
    pipeline::Pipeline,
    report::{Report, RunContext},
    AppError,
};

/// Stops the pipeline (draining in-flight orders), then reports.
pub async fn finish(
    pipeline: Pipeline,
    args: &CommonArgs,
    elapsed: Duration,
    mut problems: Vec<String>,
) -> Result<Report, AppError> {
    let broker = pipeline.broker().describe();
    let metrics = std::sync::Arc::clone(pipeline.metrics());
    let ledger = pipeline.ledger();
    let stopped = pipeline.shutdown().await;
    // Read after the drain: orders in flight got to finish.
    let unfinished = ledger.unfinished();
    if unfinished > 0 {
        problems.push(format!(
            "{unfinished} acknowledged orders did not finish here (they are safe in Kafka and \
             will be processed when a consumer of group {:?} next runs)",
            args.group
        ));
    }
    let report = Report::new(
        &metrics.snapshot(),
        RunContext {
            elapsed,
            broker,
            load: crate::config::load_level(args).to_string(),
            time_scale: args.time_scale.factor(),
            unfinished: unfinished as u64,
            sink: stopped.sink,
            notifications: stopped.notifications,
            problems,
        },
    );
    if let Some(path) = &args.report {
        write_report(path, &report.to_json())?;
    }
    println!("{}", report.summary());
    for problem in &report.problems {
        eprintln!("problem: {problem}");
    }
    Ok(report)
}

/// A token cancelled by Ctrl-C (SIGINT). The handler is registered before
/// this returns, so an interrupt during start-up is a graceful stop too.
pub fn interrupted_by_ctrl_c() -> tokio_util::sync::CancellationToken {
    use tokio::signal::unix::{signal, SignalKind};
    let token = tokio_util::sync::CancellationToken::new();
    match signal(SignalKind::interrupt()) {
        Ok(mut interrupts) => {
            let cancel = token.clone();
            tokio::spawn(async move {
                if interrupts.recv().await.is_some() {
                    cancel.cancel();
                }
            });
        }
        Err(error) => tracing::warn!(%error, "Ctrl-C will end the process without draining"),
    }
    token
}

/// Maps an incomplete report to its exit status.
pub fn conclude(report: &Report, args: &CommonArgs) -> Result<(), AppError> {
    if !report.complete {
        return Err(AppError::Incomplete(report.problems.join("; ")));
    }
    let sink = &report.sink;
    if sink.failed > 0 {
        return Err(AppError::SinkIncomplete(format!(
            "{} documents rejected by Elasticsearch: {}",
            sink.failed,
            sink.failures.join("; ")
        )));
    }
    if args.es.is_some() && sink.spooled > 0 {
        return Err(AppError::SinkIncomplete(format!(
            "{} documents are still in the spool in {}; replay them with `orderdeck export --es URL`",
            sink.spooled,
            args.data_dir.display()
        )));
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
