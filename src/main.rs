//! The orderdeck binary: parse the command line, log to a file, run.

use std::process::ExitCode;

use clap::Parser;
use orderdeck::cli::Cli;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The terminal belongs to the progress display (and later the UI): logs go to a file.
    let _log_guard = match init_logging(&cli.common.log_file) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!(
                "error: cannot open log file {}: {error}",
                cli.common.log_file.display()
            );
            return ExitCode::from(1);
        }
    };
    let report_panic = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(%info, "panic");
        report_panic(info);
    }));
    if let Some(limit) = orderdeck::raise_open_file_limit().filter(|l| *l < 4096) {
        tracing::warn!(
            limit,
            "few open files allowed: many clients may fail to connect"
        );
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(orderdeck::run(cli));
    // A stop that was abandoned may leave blocking work behind (a Kafka
    // client still closing): the exit does not wait for it.
    runtime.shutdown_timeout(BLOCKING_WORK_AT_EXIT);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "orderdeck failed");
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// How long the exit waits for blocking work still running.
const BLOCKING_WORK_AT_EXIT: std::time::Duration = std::time::Duration::from_secs(2);

fn init_logging(
    path: &std::path::Path,
) -> std::io::Result<tracing_appender::non_blocking::WorkerGuard> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let (writer, guard) = tracing_appender::non_blocking(file);
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(writer)
        .with_ansi(false)
        .init();
    Ok(guard)
}
