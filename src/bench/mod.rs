//! `orderdeck bench`: orderdeck against the limits of its parts and against
//! the original system's design in one run, under one load driver: the
//! references on one embedded broker, each orderdeck pipeline on an embedded
//! broker of its own (as `run` has).

pub mod driver;
mod isolated;
pub mod knee;
pub mod output;
mod remote;
pub mod report;
pub mod resources;
mod setup;
mod soak;
pub mod standin;
pub mod targets;
mod thresholds;

pub use report::{BenchReport, Phase, Soak, TargetCheck};

use self::{
    report::{add_ratios, machine, phase},
    setup::{bench_pipeline, kafka_options, EMBEDDED_BROKERS, PARTITIONS, WARM_UP_ORDERS},
    thresholds::check_targets,
};

use std::{path::PathBuf, sync::Arc, time::Duration};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use self::{
    driver::{drive, Load, Outcome, Target},
    remote::load_from_another_process,
    resources::Usage,
    standin::ElasticStandIn,
    targets::{BareProducer, FinishWatch, Legacy, Orderdeck, ReferenceServer},
};
use crate::{
    kafka::{producer::durable_config, BrokerTarget, EmbeddedBroker, KafkaConnection},
    order::Order,
    pipeline::PipelineError,
    sinks::{elastic::ElasticConfig, MirrorTarget},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, serde::Deserialize)]
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
    /// (a) The same with the clients in another process (`orderdeck load`),
    /// over real sockets; throughput only.
    IngestFromProcess,
    /// (b) Clients → gRPC → Kafka → consumers → Finished, no delays.
    EndToEnd,
    /// (c) The same with the Elasticsearch sink on.
    EndToEndSink,
    /// End to end with the original 1–3 s per state, at the fixed rate.
    OriginalTimings,
}

impl Scenario {
    /// References first: the others are reported as ratios to them.
    pub const ALL: [Scenario; 8] = [
        Scenario::BareProducer,
        Scenario::GrpcEcho,
        Scenario::OriginalDesign,
        Scenario::Ingest,
        Scenario::IngestFromProcess,
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
            Scenario::IngestFromProcess => "(a) ingest, load from another process",
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
            Scenario::OriginalDesign | Scenario::Ingest | Scenario::IngestFromProcess => {
                "reply after Kafka ack"
            }
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
    /// Where `orders` came from, for a load process to read (None: the
    /// built-in orders).
    pub csv: Option<PathBuf>,
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
            Some(soak::soak(plan, orders).await?)
        }
        None => None,
    };
    let mut phases = Vec::new();
    if let [scenario] = plan.scenarios[..] {
        progress(scenario.title());
        let broker = EmbeddedBroker::start(EMBEDDED_BROKERS)
            .map_err(|e| BenchError::Broker(e.to_string()))?;
        phases = run_scenario(plan, &broker, scenario).await?;
    } else {
        // Each scenario in a process of its own: what one leaves behind
        // (threads, a broker's log, a fragmented heap) cost the next ones
        // up to a third of their throughput when they shared this one.
        for &scenario in &plan.scenarios {
            progress(scenario.title());
            phases.extend(isolated::run_scenario(plan, scenario).await?);
        }
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
    let orders = &plan.orders;
    match scenario {
        Scenario::BareProducer => {
            broker
                .create_topic(&topic, PARTITIONS, 1)
                .map_err(|e| fail(e.to_string()))?;
            let bootstrap = broker.bootstrap_servers();
            let connection = KafkaConnection::new(
                bootstrap.to_owned(),
                kafka_options(plan, BrokerTarget::External(bootstrap.to_owned()), &topic),
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
            broker
                .create_topic(&topic, PARTITIONS, 1)
                .map_err(|e| fail(e.to_string()))?;
            let server = ReferenceServer::original(broker.bootstrap_servers(), &topic)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let target = Legacy::new(&server.url, orders, true).map_err(&fail)?;
            Ok(phases_of(plan, scenario, Arc::new(target)).await)
        }
        Scenario::Ingest
        | Scenario::IngestFromProcess
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
            let ingest_only = matches!(scenario, Scenario::Ingest | Scenario::IngestFromProcess);
            let consumers = if ingest_only { 0 } else { 3 };
            let scale = if scenario == Scenario::OriginalTimings {
                1.0
            } else {
                0.0
            };
            // An embedded broker of its own, as `run` has: this process is
            // then the whole group, as it is here.
            let pipeline =
                bench_pipeline(plan, BrokerTarget::Embedded, &topic, consumers, scale, sink)
                    .await?;
            let url = pipeline.dial().expect("the bench runs a server").url;
            if scenario == Scenario::IngestFromProcess {
                let phase = phase_from_another_process(plan, &url).await.map_err(&fail);
                pipeline.shutdown().await;
                return Ok(vec![phase?]);
            }
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
            if sink.read != sink.indexed + sink.spooled + sink.dead_lettered || sink.missed > 0 {
                tracing::error!(?sink, "the benchmark's mirror is incomplete");
            }
            Ok(phases)
        }
    }
}

/// The throughput phase with `orderdeck load` as the driver.
async fn phase_from_another_process(plan: &BenchPlan, url: &str) -> Result<Phase, String> {
    // Warm up the server's side: the producer's first batches, the
    // partitions' leaders found.
    load_from_another_process(
        url,
        plan.csv.as_deref(),
        (4, None),
        WARM_UP_ORDERS,
        plan.max_time,
    )
    .await?;
    let usage = Usage::start();
    let summary = load_from_another_process(
        url,
        plan.csv.as_deref(),
        (plan.callers, None),
        plan.max_orders,
        plan.max_time,
    )
    .await?;
    let usage = usage.finish();
    let outcome = Outcome {
        completed: summary.answered,
        errors: summary.failed,
        first_error: summary.errors.first().cloned(),
        elapsed: Duration::from_secs_f64(summary.seconds),
        latency: summary.latency_ms,
        pacing: None,
    };
    let load = Load::Closed {
        callers: plan.callers,
        orders: plan.max_orders,
        limit: plan.max_time,
    };
    Ok(phase(Scenario::IngestFromProcess, load, outcome, usage))
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
        phases.push(phase(scenario, load, outcome, usage.finish()));
    }
    phases
}
