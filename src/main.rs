//! The orderdeck binary: parse the command line, set up logging, run.

use std::{path::PathBuf, process::ExitCode};

use orderdeck::{
    cli::{Cli, Command},
    config::state_dir,
};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::try_parse_checked(std::env::args_os()).unwrap_or_else(|error| error.exit());
    let log = LogTarget::of(&cli);
    let _log_guard = match init_logging(&log) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("error: cannot open log file {log}: {error}");
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

/// Where the logs go.
enum LogTarget {
    /// A file: the one given, or the control center's (it owns the screen).
    File(PathBuf),
    /// Headless commands without `--log-file`: warnings and errors.
    Stderr,
}

impl LogTarget {
    fn of(cli: &Cli) -> Self {
        match (&cli.log_file, &cli.command) {
            (Some(file), _) => Self::File(file.clone()),
            (None, None | Some(Command::Tui(_))) => Self::File(state_dir().join("orderdeck.log")),
            (None, Some(_)) => Self::Stderr,
        }
    }
}

impl std::fmt::Display for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Stderr => f.write_str("stderr"),
        }
    }
}

fn init_logging(target: &LogTarget) -> std::io::Result<WorkerGuard> {
    let filter = |default: &str| {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
    };
    match target {
        LogTarget::File(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            let (writer, guard) = tracing_appender::non_blocking(file);
            tracing_subscriber::fmt()
                .with_env_filter(filter("info"))
                .with_writer(writer)
                .with_ansi(false)
                .init();
            Ok(guard)
        }
        LogTarget::Stderr => {
            let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
            tracing_subscriber::fmt()
                .with_env_filter(filter("warn"))
                .with_writer(writer)
                .init();
            Ok(guard)
        }
    }
}
