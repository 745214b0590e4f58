//! The command line (clap derive): each subcommand takes the groups of
//! flags it uses, under their own headings in its help.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    clients::{BadRowPolicy, ClientApi},
    clock::TimeScale,
    load::LoadLevel,
    order::State,
};

#[derive(Debug, Parser)]
#[command(
    name = "orderdeck",
    version,
    about = "A control center for a gRPC -> Kafka -> consumer order pipeline",
    long_about = "Runs an order pipeline in one process: a gRPC server (wire-compatible with the \
                  original orders.OrderService), simulated clients, a durable Kafka producer, a \
                  consumer group driving each order through Processing -> Preparing -> Shipped -> \
                  Delivered -> Finished. With no --brokers it runs on an embedded Kafka broker."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The control center's flags, for `orderdeck` with no command.
    #[command(flatten)]
    pub tui: CommonArgs,
    /// Log to this file. Default: headless commands log warnings to stderr;
    /// the control center (which owns the screen) logs to `orderdeck.log` in
    /// the state directory.
    #[arg(long, global = true, help_heading = "Logging")]
    pub log_file: Option<PathBuf>,
}

impl Cli {
    /// Parses `args` (the program's name first). A control-center flag
    /// before a command is refused: it would apply to nothing. `--log-file`
    /// goes anywhere.
    pub fn try_parse_checked<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{parser::ValueSource, CommandFactory, FromArgMatches};
        let mut command = Self::command();
        let matches = command.try_get_matches_from_mut(args)?;
        if let Some(name) = matches.subcommand_name() {
            let misplaced = matches.ids().map(|id| id.as_str()).find(|id| {
                *id != "log_file" && matches.value_source(id) == Some(ValueSource::CommandLine)
            });
            if let Some(id) = misplaced {
                let flag = id.replace('_', "-");
                return Err(command.error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("--{flag} goes after the command: orderdeck {name} --{flag} ..."),
                ));
            }
        }
        Self::from_arg_matches(&matches)
    }

    /// The command to run: the control center when none is named.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Tui(self.tui))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The terminal control center (the default when no command is given).
    Tui(CommonArgs),
    /// Headless: the full pipeline with simulated clients; exits when every
    /// acknowledged order has finished.
    Run(RunArgs),
    /// The gRPC server and consumers, no simulated clients.
    Serve(ServeArgs),
    /// Consumers only, joining the group on --brokers to scale out.
    Worker(WorkerArgs),
    /// The embedded Kafka broker on its own, for serve and worker processes
    /// to share: prints its bootstrap list, runs until Ctrl-C.
    Broker(BrokerArgs),
    /// Replay the spool into Elasticsearch (--es) and/or import the Kibana
    /// dashboard (--kibana).
    Export(ExportArgs),
    /// Measure orderdeck against a bare producer, a bare gRPC echo and the
    /// original system's design, on one embedded broker.
    Bench(BenchArgs),
    /// Simulated clients only, against a running server (load from a
    /// process of its own): prints throughput and client-side latency.
    Load(LoadArgs),
    /// Watch a deployment it did not start (every serve, worker and run
    /// process of one group, from Kafka): processes, lag, transitions, and
    /// whether every accepted order finished once. Read-only.
    Watch(WatchArgs),
    /// Print a shell completion script: orderdeck completions bash >
    /// ~/.local/share/bash-completion/completions/orderdeck
    Completions(CompletionsArgs),
}

/// Every setting a command may take, by group. Each command's flags fill
/// the groups it takes; the others keep their defaults, unused by it. The
/// whole pipeline (the control center and `run`) takes every group.
#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    #[command(flatten)]
    pub level: LevelOpts,
    #[command(flatten)]
    pub scenario: ScenarioOpts,
    #[command(flatten)]
    pub sending: SendingOpts,
    #[command(flatten)]
    pub orders_file: OrdersFileOpts,
    #[command(flatten)]
    pub run: RunOpts,
    #[command(flatten)]
    pub report: ReportOpts,
    #[command(flatten)]
    pub kafka: KafkaOpts,
    #[command(flatten)]
    pub consuming: ConsumingOpts,
    #[command(flatten)]
    pub server: ServerOpts,
    #[command(flatten)]
    pub mirror: MirrorOpts,
    #[command(flatten)]
    pub notify: NotifyOpts,
}

/// A group's defaults, as its flags declare them (environment included).
fn defaults<T: Args + clap::FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults"));
    T::from_arg_matches(&command.get_matches_from(["defaults"]))
        .expect("every flag of a group has a default or is optional")
}

impl Default for CommonArgs {
    fn default() -> Self {
        defaults()
    }
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub level: LevelOpts,
    #[command(flatten)]
    pub run: RunOpts,
    #[command(flatten)]
    pub report: ReportOpts,
    #[command(flatten)]
    pub kafka: KafkaOpts,
    #[command(flatten)]
    pub consuming: ConsumingOpts,
    #[command(flatten)]
    pub server: ServerOpts,
    #[command(flatten)]
    pub mirror: MirrorOpts,
    #[command(flatten)]
    pub notify: NotifyOpts,
}

impl ServeArgs {
    pub fn common(&self) -> CommonArgs {
        CommonArgs {
            level: self.level.clone(),
            run: self.run.clone(),
            report: self.report.clone(),
            kafka: self.kafka.clone(),
            consuming: self.consuming.clone(),
            server: self.server.clone(),
            mirror: self.mirror.clone(),
            notify: self.notify.clone(),
            ..CommonArgs::default()
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub level: LevelOpts,
    #[command(flatten)]
    pub run: RunOpts,
    #[command(flatten)]
    pub report: ReportOpts,
    #[command(flatten)]
    pub kafka: KafkaOpts,
    #[command(flatten)]
    pub consuming: ConsumingOpts,
    #[command(flatten)]
    pub mirror: MirrorOpts,
    #[command(flatten)]
    pub notify: NotifyOpts,
}

impl WorkerArgs {
    pub fn common(&self) -> CommonArgs {
        CommonArgs {
            level: self.level.clone(),
            run: self.run.clone(),
            report: self.report.clone(),
            kafka: self.kafka.clone(),
            consuming: self.consuming.clone(),
            mirror: self.mirror.clone(),
            notify: self.notify.clone(),
            ..CommonArgs::default()
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct BrokerArgs {
    #[command(flatten)]
    pub topics: TopicOpts,
}

impl BrokerArgs {
    pub fn common(&self) -> CommonArgs {
        let mut common = CommonArgs::default();
        common.kafka.topics = self.topics.clone();
        common
    }
}

#[derive(Debug, Args, Clone)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub pipeline: CommonArgs,
    #[command(flatten)]
    pub gates: GateOpts,
    /// Print the report as JSON on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Finding the knee")]
pub struct KneeOpts {
    /// Instead of the scenarios: offer a fixed rate from another process,
    /// raise it step by step until a gate breaks, and report the highest
    /// rate sustained (finished at 95 % of the offer) with its latencies.
    #[arg(long)]
    pub find_knee: bool,
    /// The first step's rate, orders/s.
    #[arg(long, default_value_t = 500.0, value_parser = number_in(1.0, 1_000_000.0), requires = "find_knee")]
    pub knee_start: f64,
    /// Each step offers this many times the last one's rate.
    #[arg(long, default_value_t = 1.5, value_parser = number_in(1.05, 10.0), requires = "find_knee")]
    pub knee_growth: f64,
    /// Stop climbing past this rate.
    #[arg(long, default_value_t = 100_000.0, value_parser = number_in(1.0, 10_000_000.0), requires = "find_knee")]
    pub knee_max: f64,
    /// How long each step offers its rate (e.g. 5s).
    #[arg(long, default_value = "5s", value_parser = seconds_in(0.5, 3_600.0), requires = "find_knee")]
    pub knee_step: Seconds,
    /// Clients in the load process.
    #[arg(long, default_value_t = 32, value_parser = whole_in(1, 4096), requires = "find_knee")]
    pub knee_clients: usize,
    /// A gate each step must pass (repeatable; default: send.p99 < 100ms,
    /// e2e.p99 < 100ms).
    #[arg(long = "slo", value_name = "EXPR", value_parser = gate, requires = "find_knee")]
    pub slo: Vec<crate::slo::Gate>,
}

#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Scenario and gates")]
pub struct ScenarioOpts {
    /// Play a scenario: a TOML file, or a built-in one by name (baja, media,
    /// alta, ramp-and-spike, broker-outage, consumer-crash, elastic-outage,
    /// chaos-tour, soak).
    /// It lasts its phases (--orders is ignored); `n` skips a phase on screen.
    #[arg(long, value_name = "FILE|NAME")]
    pub scenario: Option<String>,
}

#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Scenario and gates")]
pub struct GateOpts {
    /// A gate the run must pass, e.g. 'e2e.p99 < 250ms', 'lost == 0',
    /// 'throughput >= 900/s' (repeatable; added to the scenario's). A failed
    /// gate exits with code 7.
    #[arg(long = "slo", value_name = "EXPR", value_parser = gate)]
    pub slo: Vec<crate::slo::Gate>,
    /// Write the verdicts as JUnit XML, for CI systems.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

fn gate(text: &str) -> Result<crate::slo::Gate, String> {
    text.parse()
        .map_err(|e: crate::slo::gate::GateError| e.to_string())
}

#[derive(Debug, Args, Clone)]
pub struct LoadArgs {
    /// The server: host:port or http(s)://host:port.
    #[arg(long)]
    pub target: String,
    /// The API to speak: typed (orderdeck.v1) or legacy (the original
    /// orders.OrderService/SendMessage, which any server of the original
    /// system speaks).
    #[arg(long, value_enum, default_value_t = ClientApi::Typed)]
    pub api: ClientApi,
    /// Orders to send (default: one pass over the orders).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub orders: Option<u64>,
    /// Print the summary as JSON on stdout (no screen).
    #[arg(long)]
    pub json: bool,
    /// No screen even on a terminal: a progress line, then the summary.
    #[arg(long)]
    pub no_tui: bool,
    #[command(flatten)]
    pub level: LevelOpts,
    #[command(flatten)]
    pub scenario: ScenarioOpts,
    #[command(flatten)]
    pub gates: GateOpts,
    #[command(flatten)]
    pub sending: SendingOpts,
    #[command(flatten)]
    pub orders_file: OrdersFileOpts,
    #[command(flatten)]
    pub follow: FollowOpts,
}

impl LoadArgs {
    pub fn common(&self) -> CommonArgs {
        let mut common = CommonArgs {
            level: self.level.clone(),
            scenario: self.scenario.clone(),
            sending: self.sending.clone(),
            orders_file: self.orders_file.clone(),
            ..CommonArgs::default()
        };
        common.run.orders = self.orders;
        common
    }
}

/// Where `load` follows its orders to Finished (a server of orderdeck's).
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Following orders to Finished")]
pub struct FollowOpts {
    /// The deployment's Kafka: each acknowledged order is followed to its
    /// Finished event on the events topic (completion latency, orders left).
    #[arg(short = 'b', long, env = "ORDERDECK_BROKERS")]
    pub brokers: Option<String>,
    #[command(flatten)]
    pub deployment: DeploymentOpts,
    /// Once every order is sent, how long to wait for the followed ones to
    /// finish (e.g. 60s).
    #[arg(long, default_value = "60s", value_parser = seconds_in(0.0, 86_400.0))]
    pub finish_timeout: Seconds,
}

/// A deployment orderdeck reads but did not start (`watch`, `load
/// --brokers`): its topics, and how to reach its Kafka.
#[derive(Debug, Args, Clone)]
pub struct DeploymentOpts {
    /// The deployment's orders topic (its events and processes topics are
    /// <topic>.events and <topic>.processes).
    #[arg(long, default_value = "orders")]
    pub topic: String,
    /// The events topic, if not <topic>.events.
    #[arg(long)]
    pub events_topic: Option<String>,
    #[command(flatten)]
    pub settings: KafkaSettingsOpts,
}

#[derive(Debug, Args, Clone)]
pub struct WatchArgs {
    /// The deployment's Kafka bootstrap servers (host:port,...).
    #[arg(short = 'b', long, env = "ORDERDECK_BROKERS")]
    pub brokers: String,
    /// The deployment's consumer group.
    #[arg(long, default_value = "orderdeck")]
    pub group: String,
    #[command(flatten)]
    pub deployment: DeploymentOpts,
    /// Print one snapshot once everything written so far is read, and exit.
    #[arg(long)]
    pub once: bool,
    /// With --once: the snapshot as JSON.
    #[arg(long, requires = "once")]
    pub json: bool,
    /// With --once: how long to read before giving up (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = seconds_in(0.1, 3_600.0))]
    pub read_limit: Seconds,
}

#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    /// Scenarios to run (default: all), comma-separated.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Vec<crate::bench::Scenario>,
    /// Concurrent callers in the throughput phase.
    #[arg(long, default_value_t = 32, value_parser = whole_in(1, 4096))]
    pub callers: usize,
    /// The throughput phase stops after this many orders...
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub max_orders: u64,
    /// ...or after this long (e.g. 10s, 2m).
    #[arg(long, default_value = "10", value_parser = seconds_in(0.001, 86_400.0))]
    pub max_seconds: Seconds,
    /// Orders per second in the latency phase.
    #[arg(long, default_value_t = 1000.0, value_parser = number_in(0.001, 1_000_000.0))]
    pub fixed_rate: f64,
    /// Length of the latency phase (e.g. 10s).
    #[arg(long, default_value = "10", value_parser = seconds_in(0.001, 86_400.0))]
    pub fixed_seconds: Seconds,
    /// Also run this many orders end to end (sink on) and watch memory.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub soak: Option<u64>,
    /// Print JSON instead of the table.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print Markdown (for docs/benchmarks.md) instead of the table.
    #[arg(long)]
    pub markdown: bool,
    /// A real Elasticsearch for the sink scenario (default: a loopback
    /// stand-in speaking its protocol).
    #[arg(long, env = "ORDERDECK_ES")]
    pub es: Option<String>,
    #[command(flatten)]
    pub knee: KneeOpts,
    #[command(flatten)]
    pub orders_file: OrdersFileOpts,
    #[command(flatten)]
    pub report: ReportOpts,
    #[command(flatten)]
    pub kafka_settings: KafkaSettingsOpts,
}

#[derive(Debug, Args, Clone)]
pub struct ExportArgs {
    /// Replay the whole spool, not only what earlier exports did not send.
    #[arg(long)]
    pub restart: bool,
    /// With --brokers: how long to read the mirror's Kafka topics before
    /// spooling what is left (e.g. 2m).
    #[arg(long, default_value = "2m", value_parser = seconds_in(0.0, 86_400.0))]
    pub drain_timeout: Seconds,
    #[command(flatten)]
    pub kafka: KafkaOpts,
    #[command(flatten)]
    pub mirror: MirrorOpts,
}

impl ExportArgs {
    pub fn common(&self) -> CommonArgs {
        let mut common = CommonArgs {
            kafka: self.kafka.clone(),
            mirror: self.mirror.clone(),
            ..CommonArgs::default()
        };
        common.run.drain_timeout = self.drain_timeout;
        common
    }
}

/// One `-X key=value` librdkafka setting.
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaSetting {
    pub key: String,
    pub value: String,
}

impl std::str::FromStr for KafkaSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok(Self {
                key: key.trim().to_owned(),
                value: value.to_owned(),
            }),
            _ => Err(format!(
                "expected key=value (e.g. -X security.protocol=SASL_SSL), got {s:?}"
            )),
        }
    }
}

/// The settings of a `-F` file.
#[derive(Clone, Debug, PartialEq)]
pub struct KafkaProperties(pub Vec<KafkaSetting>);

fn read_kafka_properties(path: &str) -> Result<KafkaProperties, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut settings = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let setting = line
            .parse::<KafkaSetting>()
            .map_err(|e| format!("{path}:{}: {e}", number + 1))?;
        settings.push(KafkaSetting {
            value: setting.value.trim().to_owned(),
            ..setting
        });
    }
    Ok(KafkaProperties(settings))
}

impl KafkaSettingsOpts {
    /// Every librdkafka setting given: the `-F` file's, then `-X` (later wins).
    pub fn all(&self) -> Vec<(String, String)> {
        let from_file = self.kafka_config.iter().flat_map(|file| file.0.iter());
        from_file
            .chain(&self.kafka_settings)
            .map(|s| (s.key.clone(), s.value.clone()))
            .collect()
    }
}

/// The load level: clients and rate for the simulated clients, and the
/// time each order spends in a state for the consumers.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Load")]
pub struct LevelOpts {
    /// Load level: low, medium or high (baja, media, alta). Default medium;
    /// in the TUI, given means the start screen is skipped.
    #[arg(long, value_enum)]
    pub load: Option<LoadLevel>,
}

#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Simulated clients")]
pub struct SendingOpts {
    /// Simulated clients (overrides the load level's).
    #[arg(long, value_parser = whole_in(1, 10_000))]
    pub clients: Option<usize>,
    /// Target orders per second over all clients, 0 = unlimited (overrides the load level's).
    #[arg(long, value_parser = number_in(0.0, 1_000_000.0))]
    pub rate: Option<f64>,
}

#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Running")]
pub struct RunOpts {
    /// Orders to send (run) or to finish before stopping (serve, worker).
    /// Default for run: one pass over the CSV.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub orders: Option<u64>,
    /// Multiplies every simulated delay: 1 = the original's timings, 0 = none.
    #[arg(long, default_value = "1")]
    pub time_scale: TimeScale,
    /// Give up after this long (e.g. 90s, 5m; exit code 3) instead of waiting for every order.
    #[arg(long, value_parser = seconds_in(0.001, 30.0 * 86_400.0))]
    pub timeout: Option<Seconds>,
    /// On the embedded broker, how long a stop waits for the acknowledged
    /// orders it holds to finish; past it they are abandoned (and lost).
    #[arg(long, default_value = "2m", value_parser = seconds_in(0.0, 86_400.0))]
    pub drain_timeout: Seconds,
}

#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Orders")]
pub struct OrdersFileOpts {
    /// Orders file (the original's CSV format); default: the original
    /// system's 500 orders, built in.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// What to do with a malformed CSV row.
    #[arg(long, value_enum, default_value_t = BadRowPolicy::Skip)]
    pub on_bad_row: BadRowPolicy,
}

#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Report")]
pub struct ReportOpts {
    /// Write the JSON report here when the run ends.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// librdkafka settings for every Kafka client orderdeck creates.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaSettingsOpts {
    /// A librdkafka properties file (key=value lines, # comments), as kcat's
    /// -F; -X settings win over it.
    #[arg(short = 'F', long = "kafka-config", value_name = "FILE", value_parser = read_kafka_properties)]
    pub kafka_config: Option<KafkaProperties>,
    /// Extra librdkafka setting, repeatable (as kcat): -X security.protocol=SASL_SSL
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    pub kafka_settings: Vec<KafkaSetting>,
}

/// The topics: what the broker creates and every process uses.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Topics")]
pub struct TopicOpts {
    /// Topic the orders go to.
    #[arg(long, default_value = "orders")]
    pub topic: String,
    /// Topic the state transitions go to (default: <topic>.events).
    #[arg(long)]
    pub events_topic: Option<String>,
    /// Partitions for topics orderdeck creates.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,
}

#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaOpts {
    #[command(flatten)]
    pub settings: KafkaSettingsOpts,
    /// Kafka bootstrap servers (host:port,...). Without it, an embedded broker runs in-process.
    #[arg(short = 'b', long, env = "ORDERDECK_BROKERS")]
    pub brokers: Option<String>,
    #[command(flatten)]
    pub topics: TopicOpts,
    /// Replication factor for topics orderdeck creates.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=32))]
    pub replication: i32,
    /// Consumer group id.
    #[arg(long, default_value = "orderdeck")]
    pub group: String,
    /// How long the producer keeps trying to deliver an order before the
    /// server answers UNAVAILABLE (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = seconds_in(0.001, 3_600.0))]
    pub delivery_timeout: Seconds,
}

#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Consumers")]
pub struct ConsumingOpts {
    /// Consumer tasks in the group (in this process).
    #[arg(long, default_value_t = 3, value_parser = whole_in(0, 256))]
    pub consumers: usize,
    /// Orders one consumer task runs at once before it stops fetching.
    #[arg(long, default_value_t = 10_000, value_parser = whole_in(1, 1_000_000))]
    pub max_in_flight_per_consumer: usize,
}

#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "gRPC server")]
pub struct ServerOpts {
    /// gRPC listen address (run: an ephemeral loopback port; serve: 127.0.0.1:50051).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Orders the server hands to Kafka at once before answering RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 10_000, value_parser = whole_in(1, 1_000_000))]
    pub max_in_flight: usize,
    /// Largest order JSON accepted, in bytes.
    #[arg(long, default_value_t = 16 * 1024, value_parser = whole_in(64, 64 << 20))]
    pub max_message_bytes: usize,
    /// Transitions buffered for each live watcher (the screen, WatchTransitions);
    /// one that falls further behind skips ahead (and is told so).
    #[arg(long, default_value_t = 4096, value_parser = whole_in(16, 1 << 20))]
    pub event_buffer: usize,
    /// Serve gRPC over TLS with this certificate (PEM; with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The CA that issued --tls-cert, for the simulated clients to trust
    /// (default: the certificate itself, for a self-signed one).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// The name the simulated clients expect in the certificate.
    #[arg(long, default_value = "localhost")]
    pub tls_domain: String,
}

#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Elasticsearch and the spool")]
pub struct MirrorOpts {
    /// Elasticsearch URL to mirror orders and metrics to (credentials from
    /// ORDERDECK_ES_USER/ORDERDECK_ES_PASSWORD or ORDERDECK_ES_API_KEY).
    /// Without it, everything goes to the spool in --data-dir.
    #[arg(long, env = "ORDERDECK_ES")]
    pub es: Option<String>,
    /// Kibana URL: `export` (and `e` in the TUI) imports the data views and
    /// the dashboard there, overwriting older versions.
    #[arg(long, env = "ORDERDECK_KIBANA")]
    pub kibana: Option<String>,
    /// CA certificate (PEM) for Elasticsearch over TLS.
    #[arg(long)]
    pub es_ca: Option<PathBuf>,
    /// Index for orders (their latest state).
    #[arg(long, default_value = "orderdeck-orders")]
    pub orders_index: String,
    /// Index for metrics.
    #[arg(long, default_value = "orderdeck-metrics")]
    pub metrics_index: String,
    /// Where the spool lives (NDJSON in Elasticsearch's bulk format; a
    /// directory per process). Default: `data` in the state directory
    /// ($XDG_STATE_HOME/orderdeck, else ~/.local/state/orderdeck).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The spool's size on disk at most, all its directories together
    /// (e.g. 512MiB, 2GiB); past it the oldest documents are deleted and
    /// counted as dropped.
    #[arg(long, default_value = "1GiB")]
    pub spool_max_bytes: Bytes,
}

#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "E-mail notifications")]
pub struct NotifyOpts {
    /// SMTP server for e-mails to each order's `correo` on --notify-on
    /// transitions: smtp://host:port, smtps://user:pass@host, ...
    #[arg(long, env = "ORDERDECK_NOTIFY_SMTP")]
    pub notify_smtp: Option<String>,
    /// Transitions that send an e-mail (English or Spanish names).
    #[arg(long, value_delimiter = ',', default_value = "Shipped,Finished")]
    pub notify_on: Vec<State>,
    /// Sender address of the e-mails.
    #[arg(long, default_value = "orderdeck <orders@orderdeck.invalid>")]
    pub notify_from: String,
    /// E-mails per second at most.
    #[arg(long, default_value_t = 20.0, value_parser = number_in(0.01, 10_000.0))]
    pub notify_rate: f64,
}

/// A size in bytes from the command line: `4096`, `64KiB`, `512MiB`, `2GiB`
/// (or KB/MB/GB for powers of ten); between 1 MiB and 1 TiB.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bytes(pub u64);

impl std::str::FromStr for Bytes {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("expected a size like 512MiB or 2GiB, got {s:?}"))?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" | "k" => 1 << 10,
            "mib" | "m" => 1 << 20,
            "gib" | "g" => 1 << 30,
            "tib" | "t" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            other => return Err(format!("unknown size unit {other:?} in {s:?}")),
        };
        let bytes = number
            .checked_mul(scale)
            .ok_or_else(|| format!("{s:?} is too large"))?;
        if !(1 << 20..=1 << 40).contains(&bytes) {
            return Err(format!("{s:?} is outside 1MiB..1TiB"));
        }
        Ok(Bytes(bytes))
    }
}

/// A duration from the command line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Seconds(pub Duration);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} s", self.0.as_secs_f64())
    }
}

/// A parser for a duration within `min..=max` seconds: `30s`, `2m`, `1h`,
/// `250ms`, or a bare number of seconds.
fn seconds_in(min: f64, max: f64) -> impl Fn(&str) -> Result<Seconds, String> + Clone {
    move |text| {
        let explain = || {
            format!(
                "expected a duration from {min}s to {max}s (e.g. 30s, 2m, 250ms; \
                 a bare number is seconds), got {text:?}"
            )
        };
        let seconds = crate::clock::parse_duration(text)
            .ok_or_else(explain)?
            .as_secs_f64();
        if !(min..=max).contains(&seconds) {
            return Err(explain());
        }
        Ok(Seconds(Duration::from_secs_f64(seconds)))
    }
}

/// A parser for a finite number within `min..=max`.
fn number_in(min: f64, max: f64) -> impl Fn(&str) -> Result<f64, String> + Clone {
    move |text| match text.trim().parse::<f64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(format!(
            "expected a number from {min} to {max}, got {text:?}"
        )),
    }
}

/// A parser for a whole number within `min..=max`.
fn whole_in(min: usize, max: usize) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |text| match text.trim().parse::<usize>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(format!(
            "expected a whole number from {min} to {max}, got {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "orderdeck",
            "run",
            "--load",
            "alta",
            "--orders",
            "7",
            "--time-scale",
            "0",
            "-X",
            "linger.ms=1",
        ])
        .unwrap();
        let args = run_args(cli);
        assert_eq!(args.level.load, Some(LoadLevel::High));
        assert_eq!(args.run.orders, Some(7));
        assert_eq!(args.run.time_scale.factor(), 0.0);
        assert_eq!(args.kafka.settings.kafka_settings[0].key, "linger.ms");
    }

    /// The settings of a parsed `run`.
    fn run_args(cli: Cli) -> CommonArgs {
        match cli.into_command() {
            Command::Run(run) => run.pipeline,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn flags_before_the_command_are_refused_except_the_log_file() {
        let err = Cli::try_parse_checked(["orderdeck", "--load", "high", "run"]).unwrap_err();
        assert!(
            err.to_string().contains("--load goes after the command"),
            "{err}"
        );
        let cli =
            Cli::try_parse_checked(["orderdeck", "--log-file", "x.log", "completions", "bash"])
                .unwrap();
        assert_eq!(cli.log_file, Some(PathBuf::from("x.log")));
        let cli =
            Cli::try_parse_checked(["orderdeck", "run", "--log-file", "y.log", "--load", "high"])
                .unwrap();
        assert_eq!(cli.log_file, Some(PathBuf::from("y.log")));
    }

    #[test]
    fn bare_orderdeck_takes_the_control_centers_flags() {
        let cli = Cli::try_parse_from(["orderdeck", "--load", "high", "-b", "k:9092"]).unwrap();
        let Command::Tui(tui) = cli.into_command() else {
            panic!("the control center is the default");
        };
        assert_eq!(tui.level.load, Some(LoadLevel::High));
        assert_eq!(tui.kafka.brokers.as_deref(), Some("k:9092"));
    }

    #[test]
    fn each_command_takes_only_the_flags_it_uses() {
        for (command, foreign) in [
            ("broker", "--notify-smtp=smtp://x"),
            ("broker", "--tls-cert=c.pem"),
            ("broker", "--load=high"),
            ("broker", "--brokers=k:9092"),
            ("export", "--notify-smtp=smtp://x"),
            ("export", "--clients=4"),
            ("export", "--listen=127.0.0.1:1"),
            ("worker", "--listen=127.0.0.1:1"),
            ("worker", "--clients=4"),
            ("serve", "--clients=4"),
            ("worker", "--csv=o.csv"),
            ("load", "--consumers=2"),
            ("watch", "--clients=4"),
            ("watch", "--consumers=2"),
            ("bench", "--notify-smtp=smtp://x"),
        ] {
            let err = Cli::try_parse_from(["orderdeck", command, foreign]).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{command} {foreign}"
            );
        }
        // What they do take still parses.
        for args in [
            &["broker", "--partitions", "12"][..],
            &["export", "--es", "http://es:9200", "-b", "k:9092"],
            &[
                "worker",
                "-b",
                "k:9092",
                "--consumers",
                "4",
                "--es",
                "http://es:9200",
            ],
            &[
                "load",
                "--target",
                "h:1",
                "--clients",
                "4",
                "--orders",
                "10",
            ],
        ] {
            let mut line = vec!["orderdeck"];
            line.extend(args);
            Cli::try_parse_from(line).unwrap();
        }
    }

    #[test]
    fn a_properties_file_is_read_and_x_wins_over_it() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(
            &mut file,
            b"# cluster\nsecurity.protocol=SASL_SSL\n\nlinger.ms = 5\n",
        )
        .unwrap();
        let path = file.path().to_str().unwrap().to_owned();
        let path = path.as_str();
        let cli = Cli::try_parse_from([
            "orderdeck",
            "run",
            "-b",
            "k1:9092",
            "-F",
            path,
            "-X",
            "linger.ms=1",
        ])
        .unwrap();
        let args = run_args(cli);
        assert_eq!(args.kafka.brokers.as_deref(), Some("k1:9092"));
        let settings = args.kafka.settings.all();
        assert_eq!(settings[0], ("security.protocol".into(), "SASL_SSL".into()));
        assert_eq!(settings[1], ("linger.ms".into(), "5".into()));
        assert_eq!(settings.last().unwrap(), &("linger.ms".into(), "1".into()));

        std::io::Write::write_all(&mut file, b"no equals sign\n").unwrap();
        let err = Cli::try_parse_from(["orderdeck", "run", "-F", path]).unwrap_err();
        assert!(err.to_string().contains(&format!("{path}:5:")), "{err}");
    }

    #[test]
    fn bad_values_are_explained() {
        let err = Cli::try_parse_from(["orderdeck", "run", "--time-scale=-2"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("time scale must be a number from 0 to 1000"),
            "{err}"
        );
        let err = Cli::try_parse_from(["orderdeck", "run", "-X", "nonsense"]).unwrap_err();
        assert!(err.to_string().contains("expected key=value"), "{err}");
    }

    #[test]
    fn numbers_out_of_range_are_usage_errors_naming_the_range() {
        for (flag, value, range) in [
            ("--delivery-timeout", "-1", "from 0.001s to 3600s"),
            ("--delivery-timeout", "NaN", "from 0.001s to 3600s"),
            ("--delivery-timeout", "0", "from 0.001s to 3600s"),
            ("--delivery-timeout", "2d", "from 0.001s to 3600s"),
            ("--timeout", "-1", "from 0.001s to"),
            ("--notify-rate", "inf", "from 0.01 to 10000"),
            ("--time-scale", "1e19", "from 0 to 1000"),
            ("--clients", "0", "from 1 to 10000"),
            ("--rate", "-5", "from 0 to 1000000"),
            ("--partitions", "0", "1..=10000"),
            ("--max-in-flight", "0", "from 1 to 1000000"),
            ("--drain-timeout", "-3", "from 0s to 86400s"),
        ] {
            let given = format!("{flag}={value}");
            let err = Cli::try_parse_from(["orderdeck", "run", &given]).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{flag}"
            );
            assert_eq!(err.exit_code(), 2, "{flag}");
            assert!(err.to_string().contains(range), "{flag}: {err}");
        }
        for (given, meant) in [
            ("2.5", Duration::from_millis(2500)),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("250ms", Duration::from_millis(250)),
        ] {
            let ok =
                Cli::try_parse_from(["orderdeck", "run", "--delivery-timeout", given]).unwrap();
            assert_eq!(run_args(ok).kafka.delivery_timeout.0, meant, "{given}");
        }
    }
}
