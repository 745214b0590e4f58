//! What the scenarios run on: the Kafka options, the pipeline under test,
//! and the broker in a child process for the soak.

use std::time::Duration;

use super::{BenchError, BenchPlan};
use crate::{
    clock::{SimClock, TimeScale},
    kafka::{consumer::MOCK_FETCH_WAIT, BrokerTarget, KafkaOptions},
    pipeline::{Pipeline, PipelineConfig},
    sinks::MirrorTarget,
};

pub(super) const PARTITIONS: i32 = 6;
/// Brokers in every mock cluster of the run, the reference's included.
pub(super) const EMBEDDED_BROKERS: i32 = 3;
pub(super) const WARM_UP_ORDERS: u64 = 200;

pub(super) fn kafka_options(plan: &BenchPlan, target: BrokerTarget, topic: &str) -> KafkaOptions {
    // A mock cluster reached as "external" gets the embedded default for its
    // consumers. The user's -X settings come after, and win.
    let mut extra = Vec::new();
    if matches!(target, BrokerTarget::External(_)) {
        let (key, value) = MOCK_FETCH_WAIT;
        extra.push((key.to_owned(), value.to_owned()));
    }
    extra.extend(plan.kafka_settings.iter().cloned());
    KafkaOptions {
        partitions: PARTITIONS,
        group: topic.to_owned(),
        extra,
        ..KafkaOptions::new(target, topic)
    }
}

/// A pipeline on `target`: an embedded broker of its own (what `run` uses),
/// or a broker elsewhere whose topics `topic`, `topic.events` and
/// `topic.metrics` exist.
pub(super) async fn bench_pipeline(
    plan: &BenchPlan,
    target: BrokerTarget,
    topic: &str,
    consumers: usize,
    time_scale: f64,
    sink: MirrorTarget,
) -> Result<Pipeline, BenchError> {
    let kafka = kafka_options(plan, target, topic);
    let mut config = PipelineConfig::loopback(kafka);
    config.embedded_brokers = EMBEDDED_BROKERS;
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

/// `orderdeck broker` as a child process, killed when dropped.
pub(super) struct ChildBroker {
    child: std::process::Child,
    pub(super) bootstrap: String,
}

impl ChildBroker {
    pub(super) fn start(topic: &str) -> std::io::Result<Self> {
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

    pub(super) fn rss_mib(&self) -> Option<f64> {
        super::resources::rss_mib_of(self.child.id())
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
