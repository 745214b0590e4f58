//! orderdeck: a control center for an e-commerce order pipeline.
//!
//! How an order flows, and where each step lives:
//!
//! ```text
//! clients ──gRPC──▶ grpc ──produce, await ack──▶ kafka (orders topic)
//!   (CSV rows)      (validate, backpressure;          │
//!                    acknowledgements → ledger)       ▼
//!                     kafka::consumer (a group of members; offsets, hand-overs)
//!                                        │ each record to a RecordHandler
//!                                        ▼
//!      processing: handler (once per process) → flow: Processing → Preparing
//!                  → Shipped → Delivered → Finished; ledger: acked = finished, by id
//!                                        │
//!        transitions ──▶ broadcast feed (UI, gRPC watchers) + events topic ─┐
//!        metric documents (send time, throughput) ──▶ metrics topic ────────┤
//!                                                                           ▼
//!                    sinks::mirror (a consumer group of its own) ──▶ Elasticsearch / spool
//!        metrics ──▶ counters + histograms ──▶ snapshots, report
//! ```
//!
//! Layers, each importing only those above it in this list:
//! - [`clock`], [`order`], [`metrics`], [`load`], [`slo`], [`sync`]: the core
//!   (pure types, the one scaled clock, counters and histograms, load levels,
//!   gates and their verdicts, locking).
//! - [`kafka`]: embedded broker, durable producer, consumer group, offsets.
//! - [`fleet`]: the whole deployment read back from Kafka (every process of
//!   the group, its announcements, lag, the reconciliation by order id).
//! - [`sinks`]: documents, the Elasticsearch mirror and its spool, Kibana,
//!   e-mail notifications.
//! - [`grpc`]: the original `orders.OrderService` and the typed `orderdeck.v1` API.
//! - [`processing`]: running each order exactly once per process.
//! - [`pipeline`]: everything assembled, started and stopped in order.
//! - [`clients`]: simulated clients reading the orders CSV.
//! - [`report`], [`session`]: the run's report; a live pipeline steered by
//!   commands, publishing its status.
//! - [`scenario`]: load stories with timed faults, played on a session and
//!   judged by gates.
//! - [`bench`](mod@bench): the benchmark's scenarios and references.
//! - [`cli`], [`config`], [`signals`]: the command line, the configuration it
//!   builds, Ctrl-C and SIGTERM.
//! - [`tui`]: the terminal control center on top of a session.
//! - [`commands`]: one entry per command (the TUI included).

pub mod bench;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod commands;
pub mod config;
pub mod fleet;
pub mod grpc;
pub mod kafka;
pub mod load;
pub mod metrics;
pub mod order;
pub mod pipeline;
pub mod processing;
pub mod report;
pub mod scenario;
pub mod session;
pub mod signals;
pub mod sinks;
pub mod slo;
pub mod sync;
pub mod tui;

use cli::{Cli, Command};

/// Why a command did not succeed; each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Csv(#[from] clients::CsvError),
    #[error(transparent)]
    Pipeline(#[from] pipeline::PipelineError),
    #[error("not every acknowledged order finished: {0}")]
    Incomplete(String),
    #[error("the mirror is incomplete: {0}")]
    SinkIncomplete(String),
    #[error(transparent)]
    Elastic(#[from] sinks::elastic::ElasticError),
    #[error(transparent)]
    Backfill(#[from] sinks::backfill::BackfillError),
    #[error(transparent)]
    Kibana(#[from] sinks::kibana::KibanaError),
    #[error(transparent)]
    Bench(#[from] bench::BenchError),
    #[error("terminal error: {0}")]
    Terminal(String),
    #[error(transparent)]
    Scenario(#[from] scenario::ScenarioError),
    #[error("gates failed: {0}")]
    Gates(String),
    #[error("cannot write the report to {path}: {source}")]
    Report {
        path: String,
        source: std::io::Error,
    },
}

impl AppError {
    /// 2 usage, 3 incomplete run, 4 Kafka unreachable or unusable, 5 bad
    /// input, 6 Elasticsearch/spool problem, 7 a gate failed, 1 other.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Usage(_) => 2,
            AppError::Incomplete(_) => 3,
            AppError::Pipeline(
                pipeline::PipelineError::Kafka(_) | pipeline::PipelineError::Client(_),
            )
            | AppError::Bench(bench::BenchError::Broker(_)) => 4,
            AppError::Csv(_) | AppError::Scenario(_) => 5,
            AppError::Gates(_) => 7,
            AppError::Pipeline(
                pipeline::PipelineError::Sink(_)
                | pipeline::PipelineError::Notify(_)
                | pipeline::PipelineError::Relay(_),
            )
            | AppError::SinkIncomplete(_)
            | AppError::Elastic(_)
            | AppError::Backfill(_)
            | AppError::Kibana(_) => 6,
            AppError::Pipeline(pipeline::PipelineError::Grpc(_))
            | AppError::Bench(_)
            | AppError::Report { .. }
            | AppError::Terminal(_) => 1,
        }
    }
}

/// Raises this process's open-file limit to the hard limit: a thousand
/// simulated clients on loopback need two sockets each. Returns the limit.
pub fn raise_open_file_limit() -> Option<u64> {
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return None;
            }
        }
        Some(limit.rlim_cur as u64)
    }
}

/// Runs the command the user asked for.
pub async fn run(cli: Cli) -> Result<(), AppError> {
    match cli.into_command() {
        Command::Tui(tui) => commands::tui::tui(&tui).await,
        Command::Run(run) => commands::run::run(&run.pipeline, &run.gates, run.json).await,
        Command::Serve(serve) => commands::serve::serve(&serve.common()).await,
        Command::Worker(worker) => commands::serve::worker(&worker.common()).await,
        Command::Broker(broker) => commands::serve::broker(&broker.common()).await,
        Command::Export(export) => commands::export::export(&export.common(), &export).await,
        Command::Bench(bench) => commands::bench::bench(&bench).await,
        Command::Load(load) => commands::load::load(&load.common(), &load).await,
        Command::Watch(watch) => commands::watch::watch(&watch).await,
        Command::Completions(shell) => {
            commands::completions::completions(&shell);
            Ok(())
        }
    }
}
