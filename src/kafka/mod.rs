//! Kafka: the embedded broker, the durable order producer, the consumer group
//! and the offset bookkeeping that makes it at-least-once.

pub mod consumer;
pub mod delivery;
pub mod embedded;
pub mod finished_log;
pub mod finished_watch;
pub mod offsets;
pub mod producer;

use std::time::Duration;

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::{ClientContext, DefaultClientContext},
    config::{ClientConfig, RDKafkaLogLevel},
    consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance},
    error::{KafkaError, KafkaResult, RDKafkaErrorCode},
    types::RDKafkaErrorCode as Code,
    types::RDKafkaRespErr,
    TopicPartitionList,
};
use tokio::sync::watch;

pub use embedded::EmbeddedBroker;

/// Whether the configuration asks for incremental (cooperative) rebalances.
/// Read from the configuration because asking librdkafka during a close can
/// hang (see [`apply_rebalance`]).
pub fn is_cooperative(config: &ClientConfig) -> bool {
    config
        .get("partition.assignment.strategy")
        .is_some_and(|strategy| strategy.contains("cooperative"))
}

/// What librdkafka's rebalance callback was told, as rdkafka names it.
pub fn rebalance_of(err: RDKafkaRespErr, partitions: &TopicPartitionList) -> Rebalance<'_> {
    match err {
        RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(partitions),
        RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(partitions),
        other => Rebalance::Error(KafkaError::Rebalance(other.into())),
    }
}

/// rdkafka's default rebalance, except that the protocol is given: the
/// default asks librdkafka's main thread, and that request never returned
/// for a revoke during a consumer's close.
pub fn apply_rebalance<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    rebalance: &Rebalance<'_>,
    cooperative: bool,
) -> KafkaResult<()> {
    match (rebalance, cooperative) {
        (Rebalance::Assign(partitions), true) => consumer.incremental_assign(partitions),
        (Rebalance::Assign(partitions), false) => consumer.assign(partitions),
        (Rebalance::Revoke(partitions), true) => consumer.incremental_unassign(partitions),
        (_, _) => consumer.unassign(),
    }
}

/// This process as the events topic names it: `host:pid`.
pub fn this_process() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let mut buffer = [0u8; 256];
        // SAFETY: gethostname writes at most `len` bytes into the buffer.
        let named = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
        let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
        let host = match std::str::from_utf8(&buffer[..end]) {
            Ok(host) if named && !host.is_empty() => host,
            _ => "localhost",
        };
        format!("{host}:{}", std::process::id())
    })
}

/// Where the pipeline's Kafka lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerTarget {
    /// An in-process mock cluster started by orderdeck.
    Embedded,
    /// A real cluster, by bootstrap list.
    External(String),
}

impl BrokerTarget {
    /// How the report and the screen name it: `embedded` or the bootstrap list.
    pub fn describe(&self) -> String {
        match self {
            BrokerTarget::Embedded => "embedded".to_owned(),
            BrokerTarget::External(list) => list.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct KafkaOptions {
    pub target: BrokerTarget,
    pub topic: String,
    pub events_topic: String,
    /// Metric documents for the Elasticsearch mirror (send times, throughput).
    pub metrics_topic: String,
    /// Where each process announces itself once a second (who it is, its
    /// consumers and their partitions, its own counts), for `watch`.
    pub processes_topic: String,
    pub partitions: i32,
    pub replication: i32,
    pub group: String,
    /// librdkafka settings passed through as given (`-X key=value`).
    pub extra: Vec<(String, String)>,
    /// How long the producer tries to deliver before giving up.
    pub delivery_timeout: Duration,
}

impl KafkaOptions {
    /// The defaults for `topic`: `<topic>.events`, `<topic>.metrics` and
    /// `<topic>.processes` beside it, 6 partitions, replication 1, group `orderdeck`, a 10 s
    /// delivery timeout.
    pub fn new(target: BrokerTarget, topic: &str) -> Self {
        Self {
            target,
            topic: topic.to_owned(),
            events_topic: format!("{topic}.events"),
            metrics_topic: format!("{topic}.metrics"),
            processes_topic: format!("{topic}.processes"),
            partitions: 6,
            replication: 1,
            group: "orderdeck".to_owned(),
            extra: Vec::new(),
            delivery_timeout: Duration::from_secs(10),
        }
    }

    /// Every topic orderdeck uses: orders, events, metrics, processes.
    pub fn topics(&self) -> [&String; 4] {
        [
            &self.topic,
            &self.events_topic,
            &self.metrics_topic,
            &self.processes_topic,
        ]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("could not start the embedded Kafka broker: {0}")]
    Embedded(#[from] embedded::EmbeddedError),
    #[error("cannot reach Kafka at {bootstrap}: {reason}")]
    Unreachable { bootstrap: String, reason: String },
    #[error("could not create topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("invalid Kafka client setting: {0}")]
    Config(KafkaError),
}

/// What the screen shows about the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerHealth {
    Connecting,
    Up,
    Down(String),
}

/// Shared by every client so a broker failure anywhere shows up in one place.
#[derive(Clone)]
pub struct HealthContext {
    health: watch::Sender<BrokerHealth>,
}

impl HealthContext {
    pub fn new(health: watch::Sender<BrokerHealth>) -> Self {
        Self { health }
    }

    pub fn mark_up(&self) {
        self.health.send_if_modified(|h| {
            let changed = *h != BrokerHealth::Up;
            *h = BrokerHealth::Up;
            changed
        });
    }
}

/// A consumer that only reads (assigned partitions, no group of its own to
/// serve) needs no rebalance handling.
impl rdkafka::consumer::ConsumerContext for HealthContext {}

impl ClientContext for HealthContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "{facility} {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", "{facility} {message}")
            }
            _ => tracing::debug!(target: "librdkafka", "{facility} {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client error");
        if error.rdkafka_error_code() == Some(Code::AllBrokersDown) {
            let _ = self.health.send(BrokerHealth::Down(reason.to_owned()));
        }
    }
}

impl EmbeddedBroker {
    /// Starts the embedded cluster with every topic made, each with the
    /// partitions asked for. Not fewer for the events and metrics topics:
    /// the mock keeps 5 MiB per partition and deletes the oldest beyond, so
    /// their partitions are how far the mirror may fall behind before it
    /// loses records. With one partition each, `run --time-scale 0 --load
    /// high --orders 100000` lost 485,195 of 491,850 events (docs/benchmarks.md).
    pub fn with_topics(brokers: i32, options: &KafkaOptions) -> Result<Self, KafkaSetupError> {
        let broker = Self::start(brokers)?;
        for topic in options.topics() {
            broker
                .create_topic(topic, options.partitions, options.replication)
                .map_err(|e| KafkaSetupError::Topic {
                    topic: topic.clone(),
                    reason: e.to_string(),
                })?;
        }
        if let Err(error) = broker.start_group_at_log_start(options) {
            // Only costs the first orders 0.1 s; the group still reads from
            // the earliest offset.
            tracing::warn!(%error, "could not commit the group's starting offsets");
        }
        Ok(broker)
    }

    /// Commits offset 0 of the new, empty orders topic for the consumer
    /// group. With no committed offset, librdkafka asks where the log
    /// begins only after a fixed 100 ms back-off (`rdkafka_offset.c`: a
    /// reset caused by an error waits 100 ms, and "no offset" counts as
    /// one), so every member's first fetch, and the first orders of every
    /// `run`, waited 0.1 s.
    fn start_group_at_log_start(&self, options: &KafkaOptions) -> KafkaResult<()> {
        let connection = KafkaConnection::new(self.bootstrap_servers().to_owned(), options.clone());
        let committer: BaseConsumer = connection
            .client_config()
            .set("group.id", &options.group)
            .create()?;
        let mut start = TopicPartitionList::new();
        for partition in 0..options.partitions {
            start.add_partition_offset(&options.topic, partition, rdkafka::Offset::Offset(0))?;
        }
        committer.commit(&start, rdkafka::consumer::CommitMode::Sync)
    }
}

/// What `ensure_topics` found or made.
#[derive(Clone, Copy, Debug)]
pub struct Topics {
    /// Partitions of the orders topic.
    pub partitions: usize,
    /// The processes topic exists: this process can announce itself.
    pub announce: bool,
}

/// A resolved connection: the bootstrap list plus the options every client uses.
#[derive(Clone)]
pub struct KafkaConnection {
    pub bootstrap: String,
    pub options: KafkaOptions,
    pub health: watch::Sender<BrokerHealth>,
}

impl KafkaConnection {
    pub fn new(bootstrap: String, options: KafkaOptions) -> Self {
        let (health, _) = watch::channel(BrokerHealth::Connecting);
        Self {
            bootstrap,
            options,
            health,
        }
    }

    pub fn context(&self) -> HealthContext {
        HealthContext::new(self.health.clone())
    }

    /// The base configuration of every client: bootstrap list, then the
    /// user's pass-through settings, which win.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            // TCP_NODELAY, as on the gRPC sockets: librdkafka batches by
            // linger itself, and Nagle only held small requests (acks,
            // fetches) back. Three A/B pairs on the embedded broker: ingest
            // p99 at 1,000 orders/s 3.4–3.7 → 2.9–3.2 ms (docs/benchmarks.md).
            .set("socket.nagle.disable", "true")
            .set_log_level(RDKafkaLogLevel::Warning);
        // The user's -X settings come after, and win.
        for (key, value) in &self.options.extra {
            config.set(key, value);
        }
        config
    }

    /// Checks the cluster answers, then creates the orders, events, metrics
    /// and processes topics unless they exist. Fails with a clear reason when Kafka is unreachable.
    /// Returns the orders topic's partition count, and whether the
    /// processes topic is there to announce this process on.
    pub async fn ensure_topics(&self) -> Result<Topics, KafkaSetupError> {
        let existing = self.existing_topics().await?;
        let partitions_of = |name: &str| {
            existing
                .iter()
                .find(|(topic, _)| topic == name)
                .map(|(_, partitions)| *partitions)
        };
        let timeout = self.options.delivery_timeout.max(Duration::from_secs(1));
        let mut announce = true;
        let missing: Vec<NewTopic<'_>> = self
            .options
            .topics()
            .into_iter()
            .filter(|name| partitions_of(name).is_none())
            .map(|name| {
                NewTopic::new(
                    name,
                    self.options.partitions,
                    TopicReplication::Fixed(self.options.replication),
                )
            })
            .collect();
        if !missing.is_empty() {
            let admin: AdminClient<DefaultClientContext> = self
                .client_config()
                .create()
                .map_err(KafkaSetupError::Config)?;
            let options = AdminOptions::new().request_timeout(Some(timeout));
            let results = admin
                .create_topics(missing.iter(), &options)
                .await
                .map_err(|e| self.unreachable(e.to_string()))?;
            for result in results {
                match result {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    // Only `watch` reads it: a cluster that refuses it (ACLs)
                    // still runs the pipeline, unlisted.
                    Err((topic, code)) if topic == self.options.processes_topic => {
                        announce = false;
                        tracing::warn!(
                            %topic, %code,
                            "cannot create the processes topic: `orderdeck watch` will not list this process"
                        );
                    }
                    Err((topic, code)) => {
                        return Err(KafkaSetupError::Topic {
                            topic,
                            reason: code.to_string(),
                        })
                    }
                }
            }
        }
        self.context().mark_up();
        Ok(Topics {
            partitions: partitions_of(&self.options.topic)
                .unwrap_or(self.options.partitions as usize),
            announce,
        })
    }

    /// The cluster's topics and their partition counts; doubles as the
    /// reachability check.
    async fn existing_topics(&self) -> Result<Vec<(String, usize)>, KafkaSetupError> {
        let probe: BaseConsumer = self
            .client_config()
            .create()
            .map_err(KafkaSetupError::Config)?;
        let timeout = self.options.delivery_timeout.max(Duration::from_secs(1));
        let metadata = tokio::task::spawn_blocking(move || {
            probe.fetch_metadata(None, timeout).map(|metadata| {
                metadata
                    .topics()
                    .iter()
                    .map(|topic| (topic.name().to_owned(), topic.partitions().len()))
                    .collect::<Vec<_>>()
            })
        })
        .await
        .map_err(|e| self.unreachable(e.to_string()))?;
        metadata.map_err(|e| self.unreachable(e.to_string()))
    }

    fn unreachable(&self, reason: String) -> KafkaSetupError {
        KafkaSetupError::Unreachable {
            bootstrap: self.bootstrap.clone(),
            reason,
        }
    }
}
