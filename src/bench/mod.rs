//! `orderdeck bench`: orderdeck against the limits of its parts and against
//! the original system's design, all on one embedded broker in one run,
//! under one load driver.

pub mod driver;
pub mod output;
pub mod resources;
pub mod standin;
pub mod targets;

use std::{sync::Arc, time::Duration};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use self::{
    driver::{drive, Load, Outcome, Target},
    resources::Usage,
    standin::ElasticStandIn,
    targets::{BareProducer, FinishWatch, Legacy, Orderdeck, ReferenceServer},
};
use crate::{
    clock::{SimClock, TimeScale},
    kafka::{
        consumer::MOCK_FETCH_WAIT, producer::durable_config, BrokerTarget, EmbeddedBroker,
        KafkaConnection, KafkaOptions,
    },
    metrics::{Counter, LatencySummary},
    order::Order,
    pipeline::{Pipeline, PipelineConfig, PipelineError},
    sinks::{elastic::ElasticConfig, MirrorTarget},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// (d) A producer with orderdeck's durability settings, no gRPC.
    BareProducer,
    /// (d) A gRPC server that answers at once, no Kafka.
    GrpcEcho,
    /// (e) The original design: a channel per request, a flush per message.
    OriginalDesign,
    /// (a) Clients → gRPC → Kafka acknowledgement.
    Ingest,
    /// (b) Clients → gRPC → Kafka → consumers → Finished, no delays.
    EndToEnd,
    /// (c) The same with the Elasticsearch sink on.
    EndToEndSink,
    /// End to end with the original 1–3 s per state, at the fixed rate.
    OriginalTimings,
}

impl Scenario {
    /// References first: the others are reported as ratios to them.
    pub const ALL: [Scenario; 7] = [
        Scenario::BareProducer,
        Scenario::GrpcEcho,
        Scenario::OriginalDesign,
        Scenario::Ingest,
        Scenario::EndToEnd,
        Scenario::EndToEndSink,
        Scenario::OriginalTimings,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Scenario::BareProducer => "(d) bare producer, acks=all",
            Scenario::GrpcEcho => "(d) bare gRPC echo",
            Scenario::OriginalDesign => "(e) original design",
            Scenario::Ingest => "(a) ingest to Kafka ack",
            Scenario::EndToEnd => "(b) end to end, time-scale 0",
            Scenario::EndToEndSink => "(c) end to end + ES sink",
            Scenario::OriginalTimings => "end to end, time-scale 1",
        }
    }

    /// What one order's latency runs to.
    pub fn measured_until(self) -> &'static str {
        match self {
            Scenario::BareProducer => "delivery report",
            Scenario::GrpcEcho => "reply",
            Scenario::OriginalDesign | Scenario::Ingest => "reply after Kafka ack",
            Scenario::EndToEnd | Scenario::EndToEndSink | Scenario::OriginalTimings => "Finished",
        }
    }

    fn key(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Throughput phases are skipped where only a fixed rate means anything.
    fn has_max_phase(self) -> bool {
        self != Scenario::OriginalTimings
    }
}

#[derive(Clone, Debug)]
pub struct BenchPlan {
    pub scenarios: Vec<Scenario>,
    /// Concurrent callers in the throughput phase.
    pub callers: usize,
    /// The throughput phase stops after this many orders or `max_time`.
    pub max_orders: u64,
    pub max_time: Duration,
    /// The latency phase's fixed rate and length.
    pub rate: f64,
    pub rate_time: Duration,
    /// Orders for the memory soak, if any.
    pub soak: Option<u64>,
    /// A real Elasticsearch for the sink scenario; else a loopback stand-in.
    pub es: Option<String>,
    /// `-X` settings for every Kafka client the benchmark creates.
    pub kafka_settings: Vec<(String, String)>,
    pub orders: Arc<[Order]>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub scenario: Scenario,
    pub title: &'static str,
    pub measured_until: &'static str,
    /// None: as fast as `callers` go; Some: the fixed rate.
    pub offered_rate: Option<f64>,
    pub orders: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub orders_per_s: f64,
    pub latency_ms: LatencySummary,
    pub cpu_s: f64,
    pub peak_rss_mib: Option<f64>,
    /// Throughput as a share of the bare producer's / the original design's.
    pub vs_bare_producer: Option<f64>,
    pub vs_original: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Soak {
    pub orders: u64,
    pub seconds: f64,
    pub orders_per_s: f64,
    /// (orders finished, RSS MiB), about once a second.
    pub rss_samples: Vec<(u64, f64)>,
    pub rss_at_10_percent_mib: f64,
    pub rss_at_end_mib: f64,
    pub peak_rss_mib: f64,
    /// The broker process at the end (its retention bounds it).
    pub broker_rss_mib: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub machine: String,
    pub callers: usize,
    pub rate: f64,
    pub phases: Vec<Phase>,
    pub soak: Option<Soak>,
    pub targets: Vec<TargetCheck>,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("could not start the benchmark's broker: {0}")]
    Broker(String),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("could not set up {scenario}: {reason}")]
    Setup { scenario: String, reason: String },
}

fn setup_error(scenario: Scenario) -> impl Fn(String) -> BenchError {
    move |reason| BenchError::Setup {
        scenario: scenario.key(),
        reason,
    }
}

/// Runs every scenario of the plan; `progress` hears what runs now.
pub async fn run(plan: &BenchPlan, progress: impl Fn(&str)) -> Result<BenchReport, BenchError> {
    // The soak first, while this process holds nothing else.
    let soak = match plan.soak {
        Some(orders) => {
            progress("memory soak");
            Some(soak(plan, orders).await?)
        }
        None => None,
    };
    let broker = EmbeddedBroker::start(3).map_err(|e| BenchError::Broker(e.to_string()))?;
    let mut phases = Vec::new();
    for &scenario in &plan.scenarios {
        progress(scenario.title());
        phases.extend(run_scenario(plan, &broker, scenario).await?);
    }
    add_ratios(&mut phases);
    let targets = check_targets(plan, &phases, soak.as_ref());
    Ok(BenchReport {
        machine: machine(),
        callers: plan.callers,
        rate: plan.rate,
        phases,
        soak,
        targets,
    })
}

async fn run_scenario(
    plan: &BenchPlan,
    broker: &EmbeddedBroker,
    scenario: Scenario,
) -> Result<Vec<Phase>, BenchError> {
    let fail = setup_error(scenario);
    let topic = format!("bench-{}", scenario.key());
    broker
        .create_topic(&topic, PARTITIONS, 1)
        .map_err(|e| fail(e.to_string()))?;
    let orders = &plan.orders;
    match scenario {
        Scenario::BareProducer => {
            let connection = KafkaConnection::new(
                broker.bootstrap_servers().to_owned(),
                kafka_options(plan, broker.bootstrap_servers(), &topic),
            );
            let target =
                BareProducer::new(&durable_config(&connection), &topic, orders).map_err(&fail)?;
            Ok(phases_of(plan, scenario, Arc::new(target)).await)
        }
        Scenario::GrpcEcho => {
            let server = ReferenceServer::echo()
                .await
                .map_err(|e| fail(e.to_string()))?;
            let target = Legacy::new(&server.url, orders, false).map_err(&fail)?;
            Ok(phases_of(plan, scenario, Arc::new(target)).await)
        }
        Scenario::OriginalDesign => {
            let server = ReferenceServer::original(broker.bootstrap_servers(), &topic)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let target = Legacy::new(&server.url, orders, true).map_err(&fail)?;
            Ok(phases_of(plan, scenario, Arc::new(target)).await)
        }
        Scenario::Ingest
        | Scenario::EndToEnd
        | Scenario::EndToEndSink
        | Scenario::OriginalTimings => {
            let standin;
            let sink = match scenario {
                Scenario::EndToEndSink => match &plan.es {
                    Some(url) => MirrorTarget::Elastic(ElasticConfig::from_env(url.clone(), None)),
                    None => {
                        standin = ElasticStandIn::start()
                            .await
                            .map_err(|e| fail(e.to_string()))?;
                        MirrorTarget::Elastic(ElasticConfig::from_env(standin.url.clone(), None))
                    }
                },
                _ => MirrorTarget::Off,
            };
            let consumers = if scenario == Scenario::Ingest { 0 } else { 3 };
            let scale = if scenario == Scenario::OriginalTimings {
                1.0
            } else {
                0.0
            };
            broker
                .create_topic(&format!("{topic}.events"), PARTITIONS, 1)
                .map_err(|e| fail(e.to_string()))?;
            let pipeline = bench_pipeline(
                plan,
                broker.bootstrap_servers(),
                &topic,
                consumers,
                scale,
                sink,
            )
            .await?;
            let url = pipeline.dial().expect("the bench runs a server").url;
            let stop_watching = CancellationToken::new();
            let finished = (consumers > 0).then(|| {
                let watch = FinishWatch::default();
                watch.follow(pipeline.subscribe_transitions(), stop_watching.clone());
                watch
            });
            let target = Orderdeck::new(&url, orders, finished).map_err(&fail)?;
            let phases = phases_of(plan, scenario, Arc::new(target)).await;
            stop_watching.cancel();
            let shutdown = pipeline.shutdown().await;
            let sink = shutdown.sink;
            if sink.read != sink.indexed + sink.spooled + sink.dead_lettered {
                tracing::warn!(?sink, "benchmark sink counters do not reconcile");
            }
            Ok(phases)
        }
    }
}

const PARTITIONS: i32 = 6;
const WARM_UP_ORDERS: u64 = 200;

fn kafka_options(plan: &BenchPlan, bootstrap: &str, topic: &str) -> KafkaOptions {
    // The broker is the mock cluster reached as "external": give its
    // consumers the embedded default. The user's -X settings come after, and win.
    let (key, value) = MOCK_FETCH_WAIT;
    let mut extra = vec![(key.to_owned(), value.to_owned())];
    extra.extend(plan.kafka_settings.iter().cloned());
    KafkaOptions {
        partitions: PARTITIONS,
        group: topic.to_owned(),
        extra,
        ..KafkaOptions::new(BrokerTarget::External(bootstrap.to_owned()), topic)
    }
}

/// A pipeline on `bootstrap`, whose topics `topic` and `topic.events` exist.
async fn bench_pipeline(
    plan: &BenchPlan,
    bootstrap: &str,
    topic: &str,
    consumers: usize,
    time_scale: f64,
    sink: MirrorTarget,
) -> Result<Pipeline, BenchError> {
    let kafka = kafka_options(plan, bootstrap, topic);
    let mut config = PipelineConfig::loopback(kafka);
    config.consumers = consumers;
    config.clock = SimClock::new(TimeScale::new(time_scale).expect("a valid scale"));
    config.transition_buffer = 1 << 16;
    config.mirror.target = sink;
    config.mirror.data_dir =
        std::env::temp_dir().join(format!("orderdeck-bench-{}", std::process::id()));

    let pipeline = Pipeline::start(config).await?;
    if !pipeline.wait_until_consuming(Duration::from_secs(60)).await {
        return Err(BenchError::Setup {
            scenario: topic.to_owned(),
            reason: "the consumer group never got its partitions".to_owned(),
        });
    }
    Ok(pipeline)
}

async fn phases_of<T: Target>(plan: &BenchPlan, scenario: Scenario, target: Arc<T>) -> Vec<Phase> {
    // The fixed rate first, on young topics: the mock broker finds a fetch
    // offset by walking its log from the start, so its cost per fetch grows
    // with what earlier phases wrote (real brokers index offsets).
    let mut loads = vec![Load::Open {
        rate: plan.rate,
        duration: plan.rate_time,
    }];
    if scenario.has_max_phase() {
        loads.push(Load::Closed {
            callers: plan.callers,
            orders: plan.max_orders,
            limit: plan.max_time,
        });
    }
    // Warm up: connections, the group's first fetches, and each partition's
    // one-time read of the events topic happen before anything is timed.
    drive(
        Arc::clone(&target),
        Load::Closed {
            callers: 4,
            orders: WARM_UP_ORDERS,
            limit: Duration::from_secs(30),
        },
    )
    .await;
    let mut phases = Vec::new();
    for load in loads {
        let usage = Usage::start();
        let outcome = drive(Arc::clone(&target), load).await;
        let (cpu_s, peak_rss_mib) = usage.finish();
        phases.push(phase(scenario, load, outcome, cpu_s, peak_rss_mib));
    }
    phases
}

fn phase(
    scenario: Scenario,
    load: Load,
    outcome: Outcome,
    cpu_s: f64,
    peak_rss_mib: Option<f64>,
) -> Phase {
    Phase {
        scenario,
        title: scenario.title(),
        measured_until: scenario.measured_until(),
        offered_rate: match load {
            Load::Closed { .. } => None,
            Load::Open { rate, .. } => Some(rate),
        },
        orders: outcome.completed,
        errors: outcome.errors,
        first_error: outcome.first_error.clone(),
        seconds: outcome.elapsed.as_secs_f64(),
        orders_per_s: outcome.per_second(),
        latency_ms: outcome.latency,
        cpu_s,
        peak_rss_mib,
        vs_bare_producer: None,
        vs_original: None,
    }
}

/// Throughput phases as a share of the bare producer's and the original's.
fn add_ratios(phases: &mut [Phase]) {
    let max_rate = |phases: &[Phase], scenario| {
        phases
            .iter()
            .find(|p| p.scenario == scenario && p.offered_rate.is_none())
            .map(|p| p.orders_per_s)
            .filter(|rate| *rate > 0.0)
    };
    let producer = max_rate(phases, Scenario::BareProducer);
    let original = max_rate(phases, Scenario::OriginalDesign);
    for phase in phases.iter_mut().filter(|p| p.offered_rate.is_none()) {
        phase.vs_bare_producer = producer.map(|r| phase.orders_per_s / r);
        phase.vs_original = original.map(|r| phase.orders_per_s / r);
    }
}

/// End to end with the sink on for `orders` orders, sampling memory. The
/// broker runs in a child process (`orderdeck broker`), so the figures are
/// orderdeck's own; the broker's are reported beside them.
async fn soak(plan: &BenchPlan, orders: u64) -> Result<Soak, BenchError> {
    let fail = setup_error(Scenario::EndToEndSink);
    let topic = "bench-soak";
    let broker = ChildBroker::start(topic).map_err(|e| fail(e.to_string()))?;
    let standin = ElasticStandIn::start()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let sink = MirrorTarget::Elastic(ElasticConfig::from_env(standin.url.clone(), None));
    let pipeline = bench_pipeline(plan, &broker.bootstrap, topic, 3, 0.0, sink).await?;
    let url = pipeline.dial().expect("the bench runs a server").url;
    let stop = CancellationToken::new();
    let watch = FinishWatch::default();
    watch.follow(pipeline.subscribe_transitions(), stop.clone());
    let target = Arc::new(Orderdeck::new(&url, &plan.orders, Some(watch)).map_err(&fail)?);

    let metrics = Arc::clone(pipeline.metrics());
    let sampling = stop.clone();
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = sampling.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Some(rss) = resources::rss_mib() {
                samples.push((metrics.get(Counter::Finished), rss));
            }
        }
        samples
    });
    let usage = Usage::start();
    let outcome = drive(
        target,
        Load::Closed {
            callers: plan.callers,
            orders,
            limit: Duration::MAX,
        },
    )
    .await;
    let (_, peak) = usage.finish();
    stop.cancel();
    let samples = sampler.await.unwrap_or_default();
    pipeline.shutdown().await;
    let broker_rss_mib = broker.rss_mib();
    let rss_at = |share: f64| {
        samples
            .iter()
            .find(|(finished, _)| *finished as f64 >= share * orders as f64)
            .or(samples.last())
            .map_or(0.0, |(_, rss)| *rss)
    };
    Ok(Soak {
        orders: outcome.completed,
        seconds: outcome.elapsed.as_secs_f64(),
        orders_per_s: outcome.per_second(),
        rss_at_10_percent_mib: rss_at(0.1),
        rss_at_end_mib: samples.last().map_or(0.0, |(_, rss)| *rss),
        peak_rss_mib: peak.unwrap_or(0.0),
        broker_rss_mib,
        rss_samples: samples,
    })
}

/// `orderdeck broker` as a child process, killed when dropped.
struct ChildBroker {
    child: std::process::Child,
    bootstrap: String,
}

impl ChildBroker {
    fn start(topic: &str) -> std::io::Result<Self> {
        use std::io::BufRead;
        let log =
            std::env::temp_dir().join(format!("orderdeck-bench-broker-{}.log", std::process::id()));
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .args([
                "broker",
                "--topic",
                topic,
                "--partitions",
                &PARTITIONS.to_string(),
            ])
            .arg("--log-file")
            .arg(log)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let mut line = String::new();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let bootstrap = line.trim().to_owned();
        if bootstrap.is_empty() {
            let _ = child.kill();
            return Err(std::io::Error::other(
                "the broker process printed no address",
            ));
        }
        Ok(Self { child, bootstrap })
    }

    fn rss_mib(&self) -> Option<f64> {
        resources::rss_mib_of(self.child.id())
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn check_targets(plan: &BenchPlan, phases: &[Phase], soak: Option<&Soak>) -> Vec<TargetCheck> {
    let find = |scenario: Scenario, fixed: bool| {
        phases
            .iter()
            .find(|p| p.scenario == scenario && p.offered_rate.is_some() == fixed)
    };
    let mut checks = Vec::new();
    if let Some(ingest) = find(Scenario::Ingest, false) {
        if let Some(ratio) = ingest.vs_original {
            checks.push(TargetCheck {
                target: "ingest ≥ 10× the original design".to_owned(),
                measured: format!("{ratio:.1}×"),
                met: ratio >= 10.0,
            });
        }
        if let Some(ratio) = ingest.vs_bare_producer {
            checks.push(TargetCheck {
                target: "ingest ≥ 50 % of the bare producer".to_owned(),
                measured: format!("{:.0} %", ratio * 100.0),
                met: ratio >= 0.5,
            });
        }
    }
    if let Some(e2e) = find(Scenario::EndToEnd, true) {
        checks.push(TargetCheck {
            target: format!(
                "end-to-end p99 < 10 ms at {:.0} orders/s, no delays",
                plan.rate
            ),
            measured: format!("p99 {:.1} ms", e2e.latency_ms.p99),
            met: e2e.errors == 0 && e2e.latency_ms.p99 < 10.0,
        });
    }
    if let Some(timed) = find(Scenario::OriginalTimings, true) {
        let offered = (plan.rate * plan.rate_time.as_secs_f64()).round() as u64;
        // Four states of 1–3 s each: the sleeps alone take 4–12 s.
        let bounded_by_sleeps = timed.latency_ms.max <= 13_000.0;
        checks.push(TargetCheck {
            target: format!(
                "original timings at {:.0} orders/s: every order finishes, each within its sleeps",
                plan.rate
            ),
            measured: format!(
                "{} of {} finished, p50 {:.1} s, max {:.1} s",
                timed.orders,
                offered,
                timed.latency_ms.p50 / 1e3,
                timed.latency_ms.max / 1e3
            ),
            met: timed.errors == 0 && timed.orders == offered && bounded_by_sleeps,
        });
    }
    if let Some(soak) = soak {
        let growth = soak.rss_at_end_mib - soak.rss_at_10_percent_mib;
        checks.push(TargetCheck {
            target: format!("RSS flat and < 200 MB over {} orders", soak.orders),
            measured: format!(
                "{:.0} MiB at 10 %, {:.0} MiB at the end, peak {:.0} MiB (broker process: {})",
                soak.rss_at_10_percent_mib,
                soak.rss_at_end_mib,
                soak.peak_rss_mib,
                soak.broker_rss_mib
                    .map_or("?".to_owned(), |m| format!("{m:.0} MiB"))
            ),
            met: soak.peak_rss_mib < 200.0 && growth <= 0.1 * soak.rss_at_10_percent_mib.max(50.0),
        });
    }
    checks
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cores} cores, {model}")
}
