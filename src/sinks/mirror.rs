//! The mirror: Kafka into Elasticsearch (or the spool), the way Kafka
//! Connect's Elasticsearch sink does it. A consumer group of its own reads
//! the events topic (every transition, with its order) and the metrics
//! topic, turns each record into documents, and commits its offsets only
//! once those documents are in Elasticsearch, in the dead-letter file, or
//! synced to the spool. The order path never waits on it: when
//! Elasticsearch pushes back or goes away, the mirror's lag grows and Kafka
//! holds the rest; a crash or a second process is handled by the group's
//! offsets; catching up is reading on.

use std::{
    collections::{BTreeSet, HashMap},
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use rdkafka::{
    client::ClientContext,
    config::ClientConfig,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::{KafkaError, KafkaResult},
    message::{BorrowedMessage, Message},
    statistics::Statistics,
    types::RDKafkaRespErr,
    Offset, TopicPartitionList,
};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::{
    document::{Document, IndexNames},
    elastic::{ElasticClient, ElasticConfig, ElasticError},
    indexer::{Indexer, Pressure, Refusal, Stopped, Unsent},
    spool::SpoolWriter,
};
use crate::{
    kafka::{
        apply_rebalance, is_cooperative, producer::OrderProducer, rebalance_of, KafkaConnection,
    },
    order::Transition,
    sync::Locked,
};

/// How long documents gather before they are sent, at most.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Operations per spool write.
const SPOOL_BATCH: usize = 5_000;
/// Reasons of refused documents kept for the screen.
const KEPT_REASONS: usize = 5;
/// Past the drain limit, the rest goes to the spool; this long more at most.
const SPOOL_REST_LIMIT: Duration = Duration::from_secs(30);
const SETUP_LIMIT: Duration = Duration::from_secs(10);
/// The spool's default bound.
pub const SPOOL_MAX_BYTES: u64 = 1 << 30;

#[derive(Clone, Debug)]
pub enum MirrorTarget {
    /// No Elasticsearch: everything goes to the spool, for `orderdeck export`.
    Spool,
    Elastic(ElasticConfig),
    /// Mirror nothing: for measuring the pipeline without its sink.
    Off,
}

#[derive(Clone, Debug)]
pub struct MirrorSettings {
    pub target: MirrorTarget,
    /// The spool lives in `<data_dir>/spool`.
    pub data_dir: PathBuf,
    pub names: IndexNames,
    /// The spool's size on disk at most (all its directories).
    pub spool_max_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(transparent)]
    Elastic(#[from] ElasticError),
    #[error("the Elasticsearch mirror cannot read Kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// How the mirror is doing, as the screen shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MirrorState {
    /// Keeping up (or writing the spool, with no Elasticsearch).
    #[default]
    Running,
    /// Elasticsearch answers 429/5xx: it slows us down, nothing is lost.
    Throttled,
    /// Elasticsearch does not answer; Kafka holds what waits.
    Down(String),
    /// Stopped sending after a refusal retrying cannot fix (401, 403, 404,
    /// a full disk); what follows goes to the spool if it can.
    Stopped(String),
}

/// Counters that reconcile: read = indexed + spooled + dead_lettered + pending.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MirrorStatus {
    /// `spool <dir>` or the Elasticsearch URL.
    pub target: String,
    pub state: MirrorState,
    /// Documents made from the records read from Kafka.
    pub read: u64,
    pub indexed: u64,
    /// Synced to the spool, for `orderdeck export`.
    pub spooled: u64,
    /// Refused for good; in the dead-letter file with their reasons.
    pub dead_lettered: u64,
    /// Read, not yet anywhere.
    pub pending: u64,
    /// Spooled documents deleted, unexported, to keep the spool in bounds.
    pub dropped: u64,
    /// Records in Kafka the mirror has not taken yet.
    pub lag: u64,
    /// Records never mirrored: still in Kafka when the mirror stopped.
    pub left: u64,
    /// Records the broker deleted before the mirror read them (librdkafka's
    /// mock cluster keeps 5 MiB per partition, so a mirror that falls that
    /// far behind on the embedded broker loses what it skipped). Each gap is
    /// in the dead-letter file.
    pub missed: u64,
    /// Metric documents the producer's queue refused (the order path does
    /// not wait for room).
    pub metrics_dropped: u64,
    /// Requests sent again after back-pressure or an outage.
    pub retries: u64,
    /// Why documents were refused (the first few).
    pub failures: Vec<String>,
    /// This process's spool directory, once written.
    pub spool_dir: Option<String>,
    /// Where refused documents are, once there are any.
    pub dead_letter_file: Option<String>,
}

/// The order path's side of the mirror: metric documents go to Kafka
/// without waiting; cheap to clone.
#[derive(Clone)]
pub struct MirrorHandle {
    producer: Option<Arc<OrderProducer>>,
    metrics_dropped: Arc<AtomicU64>,
    status: watch::Receiver<MirrorStatus>,
}

impl MirrorHandle {
    /// Queues a metric document for the mirror; never waits.
    pub fn publish(&self, document: &Document) {
        if let Some(producer) = &self.producer {
            if !producer.publish_metric(&document.id, &document.to_record()) {
                self.metrics_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn status(&self) -> watch::Receiver<MirrorStatus> {
        self.status.clone()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Control {
    Run,
    /// Catch up with everything in Kafka now, then stop.
    Drain,
    /// Stop now; what is unread stays in Kafka (and is counted).
    Abandon,
}

/// The running mirror; `close` drains it.
pub struct MirrorTask {
    control: watch::Sender<Control>,
    /// Ends waiting for Elasticsearch: the rest goes to the spool.
    give_up: CancellationToken,
    status: watch::Receiver<MirrorStatus>,
    task: Option<JoinHandle<()>>,
}

impl MirrorTask {
    /// Catches up with everything in Kafka (call once nothing produces):
    /// into Elasticsearch for up to `limit`, then what is left into the
    /// spool. `abandon` stops at once, counting what is left. `progress`
    /// hears the status as the mirror catches up.
    pub async fn close(
        mut self,
        limit: Duration,
        abandon: &CancellationToken,
        mut progress: impl FnMut(&MirrorStatus),
    ) -> MirrorStatus {
        let Some(mut task) = self.task.take() else {
            return self.status.borrow().clone();
        };
        let mut status = self.status.clone();
        self.control.send_replace(Control::Drain);
        let give_up_at = tokio::time::Instant::now() + limit;
        let (mut gave_up, mut stopped) = (false, false);
        loop {
            tokio::select! {
                ended = &mut task => {
                    if let Err(error) = ended {
                        tracing::error!(%error, "the mirror task failed");
                    }
                    break;
                }
                _ = tokio::time::sleep_until(give_up_at), if !gave_up => {
                    tracing::warn!("the mirror did not catch up in time; the rest goes to the spool");
                    gave_up = true;
                    self.give_up.cancel();
                }
                _ = tokio::time::sleep_until(give_up_at + SPOOL_REST_LIMIT), if !stopped => {
                    stopped = true;
                    self.control.send_replace(Control::Abandon);
                }
                _ = abandon.cancelled(), if !stopped => {
                    stopped = true;
                    self.give_up.cancel();
                    self.control.send_replace(Control::Abandon);
                }
                Ok(()) = status.changed() => progress(&status.borrow_and_update()),
            }
        }
        let last = self.status.borrow().clone();
        last
    }
}

impl Drop for MirrorTask {
    fn drop(&mut self) {
        self.give_up.cancel();
        self.control.send_replace(Control::Abandon);
    }
}

/// Starts the mirror's consumer (nothing with `MirrorTarget::Off`).
pub async fn start(
    connection: &KafkaConnection,
    producer: Arc<OrderProducer>,
    embedded: bool,
    settings: MirrorSettings,
) -> Result<(MirrorHandle, MirrorTask), MirrorError> {
    let spool = SpoolWriter::new(&settings.data_dir, settings.spool_max_bytes);
    let (indexer, target) = match &settings.target {
        MirrorTarget::Off => return Ok(switched_off()),
        MirrorTarget::Spool => (None, format!("spool {}", spool.root().display())),
        MirrorTarget::Elastic(config) => {
            let client = ElasticClient::new(config, settings.names.clone())?;
            (Some(Indexer::new(client)), config.url.clone())
        }
    };
    let assigned = Arc::new(Mutex::new(BTreeSet::new()));
    let lag = Arc::new(Mutex::new(HashMap::new()));
    let mut config = connection.client_config();
    config
        .set("group.id", format!("{}-mirror", connection.options.group))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // A member waiting for Elasticsearch does not poll: it stays in the
        // group for five minutes of that. A member that died leaves within
        // ten seconds (heartbeats come from librdkafka's own thread).
        .set("max.poll.interval.ms", "300000")
        .set("session.timeout.ms", "10000")
        .set("statistics.interval.ms", "1000");
    let rebalances = Arc::new(AtomicU64::new(0));
    let context = MirrorContext {
        assigned: Arc::clone(&assigned),
        lag: Arc::clone(&lag),
        cooperative: is_cooperative(&config),
        rebalances: Arc::clone(&rebalances),
    };
    let consumer: StreamConsumer<MirrorContext> = config.create_with_context(context)?;
    let topics = Topics {
        events: connection.options.events_topic.clone(),
        metrics: connection.options.metrics_topic.clone(),
    };
    consumer.subscribe(&[&topics.events, &topics.metrics])?;
    let metrics_dropped = Arc::new(AtomicU64::new(0));
    let status_now = MirrorStatus {
        target,
        ..MirrorStatus::default()
    };
    let (status_tx, status) = watch::channel(status_now.clone());
    let (control, control_rx) = watch::channel(Control::Run);
    let give_up = CancellationToken::new();
    let mirror = Mirror {
        consumer: Arc::new(consumer),
        assigned,
        lag,
        topics,
        names: settings.names,
        embedded,
        indexer,
        spool,
        counts: status_now,
        metrics_dropped: Arc::clone(&metrics_dropped),
        published: status_tx,
        committed: HashMap::new(),
        read_to: ReadTo {
            next: HashMap::new(),
            rebalances,
            seen_rebalances: 0,
        },
        give_up: give_up.clone(),
        probe_config: connection.client_config(),
        halted: false,
    };
    let task = tokio::spawn(mirror.run(control_rx));
    Ok((
        MirrorHandle {
            producer: Some(producer),
            metrics_dropped,
            status: status.clone(),
        },
        MirrorTask {
            control,
            give_up,
            status,
            task: Some(task),
        },
    ))
}

fn switched_off() -> (MirrorHandle, MirrorTask) {
    let (_, status) = watch::channel(MirrorStatus {
        target: "off".to_owned(),
        ..MirrorStatus::default()
    });
    let handle = MirrorHandle {
        producer: None,
        metrics_dropped: Arc::default(),
        status: status.clone(),
    };
    let task = MirrorTask {
        control: watch::channel(Control::Run).0,
        give_up: CancellationToken::new(),
        status,
        task: None,
    };
    (handle, task)
}

/// Keeps the assignment where the mirror can read it without asking
/// librdkafka, and applies rebalances itself (see [`apply_rebalance`]).
struct MirrorContext {
    assigned: Arc<Mutex<BTreeSet<(String, i32)>>>,
    /// Each partition's lag, from librdkafka's statistics.
    lag: Arc<Mutex<HashMap<PartitionKey, i64>>>,
    cooperative: bool,
    /// Counts rebalances: where the mirror read up to is only known within
    /// one assignment.
    rebalances: Arc<AtomicU64>,
}

impl ClientContext for MirrorContext {
    fn stats(&self, statistics: Statistics) {
        let mut lag = self.lag.locked();
        for (name, topic) in &statistics.topics {
            for (partition, stats) in &topic.partitions {
                if *partition >= 0 && stats.desired {
                    lag.insert((name.clone(), *partition), stats.consumer_lag.max(0));
                }
            }
        }
    }
}

impl ConsumerContext for MirrorContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let rebalance = rebalance_of(err, partitions);
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = apply_rebalance(consumer, &rebalance, self.cooperative) {
            tracing::warn!(%error, "the mirror could not apply a rebalance");
        }
        let mut assigned = self.assigned.locked();
        let named = |list: &TopicPartitionList| -> Vec<(String, i32)> {
            list.elements()
                .iter()
                .map(|p| (p.topic().to_owned(), p.partition()))
                .collect()
        };
        match (&rebalance, self.cooperative) {
            (Rebalance::Assign(list), true) => assigned.extend(named(list)),
            (Rebalance::Assign(list), false) => *assigned = named(list).into_iter().collect(),
            (Rebalance::Revoke(list), true) => {
                for partition in named(list) {
                    assigned.remove(&partition);
                }
            }
            (Rebalance::Revoke(_), false) => assigned.clear(),
            (Rebalance::Error(error), _) => tracing::warn!(%error, "mirror rebalance failed"),
        }
    }
}

struct Topics {
    events: String,
    metrics: String,
}

type PartitionKey = (String, i32);

/// Documents read and not yet delivered, with the offsets they cover.
#[derive(Default)]
struct Batch {
    operations: Vec<String>,
    next_offsets: HashMap<PartitionKey, i64>,
}

struct Mirror {
    consumer: Arc<StreamConsumer<MirrorContext>>,
    assigned: Arc<Mutex<BTreeSet<PartitionKey>>>,
    lag: Arc<Mutex<HashMap<PartitionKey, i64>>>,
    topics: Topics,
    names: IndexNames,
    /// On the embedded broker this process is the whole group.
    embedded: bool,
    /// None: the spool is the destination (no Elasticsearch, or it was
    /// given up on).
    indexer: Option<Indexer>,
    spool: SpoolWriter,
    counts: MirrorStatus,
    metrics_dropped: Arc<AtomicU64>,
    published: watch::Sender<MirrorStatus>,
    /// The next offset to read per partition, as committed by this mirror.
    committed: HashMap<PartitionKey, i64>,
    read_to: ReadTo,
    give_up: CancellationToken,
    /// For a short-lived client that reads where the partitions end.
    probe_config: ClientConfig,
    /// Nothing can be written anywhere (spool or dead-letter file): the
    /// mirror reads no more, and what it has not read stays in Kafka.
    halted: bool,
}

impl Mirror {
    async fn run(mut self, mut control: watch::Receiver<Control>) {
        let mut drain: Option<HashMap<PartitionKey, i64>> = None;
        loop {
            let now = *control.borrow_and_update();
            match now {
                Control::Abandon => break,
                Control::Drain if drain.is_none() => match self.drain_targets().await {
                    Ok(targets) => {
                        tracing::info!(behind = self.behind(&targets), "the mirror drains");
                        drain = Some(targets)
                    }
                    Err(error) => {
                        tracing::error!(%error, "the mirror cannot see how far Kafka goes; stopping it");
                        break;
                    }
                },
                _ => {}
            }
            if let Some(targets) = &drain {
                let behind = self.behind(targets);
                self.counts.lag = behind;
                if behind == 0 {
                    break;
                }
            }
            if self.halted {
                self.publish();
                let _ = control.changed().await;
                continue;
            }
            let batch = self.gather(&mut control).await;
            if !batch.operations.is_empty() {
                self.deliver(batch).await;
            }
            if drain.is_none() {
                self.counts.lag = self.lag();
            }
            self.publish();
        }
        self.finish(drain).await;
    }

    /// Reads records for up to [`FLUSH_EVERY`], or until a request's worth.
    async fn gather(&mut self, control: &mut watch::Receiver<Control>) -> Batch {
        let limit = self.indexer.as_ref().map_or(SPOOL_BATCH, Indexer::batch);
        let mut batch = Batch::default();
        let linger = tokio::time::sleep(FLUSH_EVERY);
        tokio::pin!(linger);
        let consumer = Arc::clone(&self.consumer);
        while batch.operations.len() < limit {
            tokio::select! {
                received = consumer.recv() => match received {
                    Ok(message) => self.take(&message, &mut batch),
                    Err(error) => tracing::debug!(%error, "mirror read failed; retrying"),
                },
                _ = &mut linger => break,
                _ = control.changed() => break,
            }
        }
        batch
    }

    fn take(&mut self, message: &BorrowedMessage<'_>, batch: &mut Batch) {
        let key = (message.topic().to_owned(), message.partition());
        if let Some(expected) = self.read_to.expect(&key, message.offset()) {
            self.record_gap(&key, expected, message.offset());
        }
        let documents = match self.documents(message) {
            Ok(documents) => documents,
            Err(reason) => {
                tracing::warn!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    reason,
                    "the mirror skips an unreadable record"
                );
                self.note_failure(format!("unreadable record: {reason}"));
                Vec::new()
            }
        };
        self.counts.read += documents.len() as u64;
        batch
            .operations
            .extend(documents.iter().map(|d| d.bulk_lines(&self.names)));
        batch.next_offsets.insert(key, message.offset() + 1);
    }

    /// Records `from..to` of a partition were gone before the mirror read
    /// them: a loss the counters and the dead-letter file must show, since
    /// librdkafka only logs its jump to the log's new start.
    fn record_gap(&mut self, (topic, partition): &PartitionKey, from: i64, to: i64) {
        let missed = (to - from) as u64;
        self.counts.missed += missed;
        let reason = format!(
            "{missed} records of {topic} [{partition}] (offsets {from}..{to}) were deleted by \
             the broker before the mirror read them"
        );
        tracing::error!(%topic, partition, from, to, "{reason}");
        let gap = Refusal {
            operation: serde_json::json!({
                "missed": { "topic": topic, "partition": partition, "from": from, "to": to }
            })
            .to_string(),
            reason,
        };
        self.write_dead_letters(&[gap]);
    }

    fn documents(&self, message: &BorrowedMessage<'_>) -> Result<Vec<Document>, String> {
        let payload = message.payload().unwrap_or_default();
        if message.topic() == self.topics.events {
            let transition: Transition =
                serde_json::from_slice(payload).map_err(|e| e.to_string())?;
            Ok(Document::from_event(&transition))
        } else {
            Ok(vec![
                Document::from_record(payload).map_err(|e| e.to_string())?
            ])
        }
    }

    /// Puts a batch where it belongs, then commits the offsets it covers.
    async fn deliver(&mut self, batch: Batch) {
        let Batch {
            operations,
            next_offsets,
        } = batch;
        let rest = match self.indexer.as_mut() {
            None => operations,
            Some(indexer) => {
                let (published, counts) = (&self.published, &mut self.counts);
                let result = indexer
                    .send(operations, &self.give_up, |pressure| {
                        counts.state = match pressure {
                            Pressure::Clear => MirrorState::Running,
                            Pressure::Throttled => MirrorState::Throttled,
                            Pressure::Down(reason) => MirrorState::Down(reason.clone()),
                        };
                        published.send_replace(counts.clone());
                    })
                    .await;
                match result {
                    Ok(sent) => {
                        self.counts.retries += sent.retries;
                        self.counts.indexed += sent.indexed as u64;
                        if !self.dead_letter(&sent.refused) {
                            return;
                        }
                        Vec::new()
                    }
                    Err(stopped) => self.stop_sending(stopped),
                }
            }
        };
        if !rest.is_empty() {
            match self.spool.append(&rest) {
                Ok(dropped) => {
                    self.counts.spooled += rest.len() as u64;
                    self.counts.dropped += dropped;
                    self.counts.spool_dir = self.spool.dir().map(|d| d.display().to_string());
                }
                Err(error) => {
                    let reason = format!(
                        "cannot write the spool in {}: {error}",
                        self.spool.root().display()
                    );
                    self.halt(reason);
                    return;
                }
            }
        }
        self.commit(next_offsets);
    }

    /// Elasticsearch will not take more for now: count what it did take,
    /// say why loudly, and hand back what is left for the spool.
    fn stop_sending(&mut self, stopped: Stopped) -> Vec<String> {
        let Stopped { sent, rest, why } = stopped;
        self.counts.retries += sent.retries;
        self.counts.indexed += sent.indexed as u64;
        self.dead_letter(&sent.refused);
        if let Unsent::Refused { error } = why {
            let reason = format!("Elasticsearch refused the mirror's requests: {error}");
            tracing::error!(
                reason,
                "the mirror stops sending; documents go to the spool"
            );
            self.counts.state = MirrorState::Stopped(reason);
        }
        self.indexer = None;
        rest
    }

    /// Keeps refused documents in the dead-letter file; false (and the
    /// mirror stopped) if that file cannot be written.
    fn dead_letter(&mut self, refused: &[Refusal]) -> bool {
        if refused.is_empty() {
            return true;
        }
        if !self.write_dead_letters(refused) {
            return false;
        }
        self.counts.dead_lettered += refused.len() as u64;
        for refusal in refused {
            tracing::warn!(reason = refusal.reason, "document refused by Elasticsearch");
            self.note_failure(refusal.reason.clone());
        }
        true
    }

    /// Appends to the dead-letter file and names it in the counts; false
    /// (and the mirror stopped) if it cannot be written.
    fn write_dead_letters(&mut self, entries: &[Refusal]) -> bool {
        if let Err(error) = self.spool.dead_letter(entries) {
            self.halt(format!("cannot write the dead-letter file: {error}"));
            return false;
        }
        self.counts.dead_letter_file = self
            .spool
            .dir()
            .map(|d| d.join(super::spool::DEAD_LETTERS).display().to_string());
        true
    }

    fn halt(&mut self, reason: String) {
        tracing::error!(
            reason,
            "the mirror stops: what it has not written stays in Kafka"
        );
        self.counts.state = MirrorState::Stopped(reason);
        self.halted = true;
    }

    fn note_failure(&mut self, reason: String) {
        let reasons = &mut self.counts.failures;
        if reasons.len() < KEPT_REASONS && !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }

    fn commit(&mut self, next_offsets: HashMap<PartitionKey, i64>) {
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in next_offsets {
            if offsets
                .add_partition_offset(&topic, partition, Offset::Offset(next))
                .is_ok()
            {
                self.committed.insert((topic, partition), next);
            }
        }
        // A failed commit (a partition moved away) only repeats documents,
        // which their ids make overwrites.
        if let Err(error) = self.consumer.commit(&offsets, CommitMode::Async) {
            tracing::debug!(%error, "mirror commit failed");
        }
    }

    fn publish(&mut self) {
        let c = &self.counts;
        self.counts.pending = c
            .read
            .saturating_sub(c.indexed + c.spooled + c.dead_lettered);
        self.counts.metrics_dropped = self.metrics_dropped.load(Ordering::Relaxed);
        self.published.send_replace(self.counts.clone());
    }

    /// Records not yet mirrored in the partitions this member holds, as
    /// librdkafka's last statistics saw them.
    fn lag(&self) -> u64 {
        let assigned = self.assigned.locked();
        let lag = self.lag.locked();
        assigned
            .iter()
            .filter_map(|partition| lag.get(partition))
            .map(|records| *records as u64)
            .sum()
    }

    /// How far each partition must be mirrored before a stop: its end now.
    /// On the embedded broker that is every partition (this process is the
    /// whole group); elsewhere, the partitions this member holds.
    async fn drain_targets(&mut self) -> KafkaResult<HashMap<PartitionKey, i64>> {
        let consumer = Arc::clone(&self.consumer);
        let topics = [self.topics.events.clone(), self.topics.metrics.clone()];
        let assigned = self.assigned.locked().clone();
        let everything = self.embedded;
        let probe_config = self.probe_config.clone();
        let (targets, committed) = tokio::task::spawn_blocking(move || {
            // A client of its own for the ends of the partitions: on the
            // mirror's connections each request queues behind a fetch that
            // the mock cluster holds for the whole fetch wait.
            let probe: BaseConsumer = probe_config.create()?;
            let partitions: Vec<PartitionKey> = if everything {
                let mut all = Vec::new();
                for topic in &topics {
                    let metadata = probe.fetch_metadata(Some(topic), SETUP_LIMIT)?;
                    for t in metadata.topics() {
                        all.extend(t.partitions().iter().map(|p| (topic.clone(), p.id())));
                    }
                }
                all
            } else {
                assigned.into_iter().collect()
            };
            let mut targets = HashMap::new();
            let mut list = TopicPartitionList::new();
            for (topic, partition) in partitions {
                let (_, high) = probe.fetch_watermarks(&topic, partition, SETUP_LIMIT)?;
                list.add_partition(&topic, partition);
                targets.insert((topic, partition), high);
            }
            let committed = consumer.committed_offsets(list, SETUP_LIMIT)?;
            Ok::<_, KafkaError>((targets, committed))
        })
        .await
        .map_err(|_| KafkaError::Canceled)??;
        for element in committed.elements() {
            if let Offset::Offset(next) = element.offset() {
                let key = (element.topic().to_owned(), element.partition());
                let done = self.committed.entry(key).or_insert(next);
                *done = (*done).max(next);
            }
        }
        Ok(targets)
    }

    fn behind(&self, targets: &HashMap<PartitionKey, i64>) -> u64 {
        targets
            .iter()
            .map(|(key, high)| {
                let done = self.committed.get(key).copied().unwrap_or(0);
                (high - done).max(0) as u64
            })
            .sum()
    }

    /// Commits for good and leaves the group; counts what was not mirrored.
    async fn finish(mut self, drain: Option<HashMap<PartitionKey, i64>>) {
        self.counts.left = drain
            .as_ref()
            .map_or_else(|| self.lag(), |t| self.behind(t));
        self.counts.lag = self.counts.left;
        self.publish();
        let consumer = Arc::clone(&self.consumer);
        let committed = self.committed.clone();
        drop(self);
        let closed = crate::sync::bounded_blocking("mirror-close", SETUP_LIMIT, move || {
            let mut offsets = TopicPartitionList::new();
            for ((topic, partition), next) in committed {
                let _ = offsets.add_partition_offset(&topic, partition, Offset::Offset(next));
            }
            if offsets.count() > 0 {
                if let Err(error) = consumer.commit(&offsets, CommitMode::Sync) {
                    tracing::warn!(%error, "the mirror's last commit failed");
                }
            }
            consumer.unsubscribe();
            drop(consumer);
        });
        if closed.await.is_none() {
            // Uncommitted documents are read again next time; their ids
            // make that harmless.
            tracing::warn!("the mirror's consumer did not close in time");
        }
    }
}

/// Where the mirror has read each partition to, to notice records it never
/// saw: the events and metrics topics' offsets have no gaps of their own
/// (no compaction, no transactions), so a jump means the broker deleted
/// what lay between.
struct ReadTo {
    next: HashMap<PartitionKey, i64>,
    rebalances: Arc<AtomicU64>,
    seen_rebalances: u64,
}

impl ReadTo {
    /// Notes a record at `offset`; returns the offset it should have been
    /// if records were skipped. After a rebalance the position is unknown
    /// (another member may have read on), so the first record sets it.
    fn expect(&mut self, key: &PartitionKey, offset: i64) -> Option<i64> {
        let rebalances = self.rebalances.load(Ordering::Relaxed);
        if rebalances != self.seen_rebalances {
            self.seen_rebalances = rebalances;
            self.next.clear();
        }
        // Every record passes here: the key is copied once per partition.
        let Some(next) = self.next.get_mut(key) else {
            self.next.insert(key.clone(), offset + 1);
            return None;
        };
        let expected = std::mem::replace(next, offset + 1);
        (offset > expected).then_some(expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_to_reports_skipped_records_within_one_assignment_only() {
        let rebalances = Arc::new(AtomicU64::new(0));
        let mut read_to = ReadTo {
            next: HashMap::new(),
            rebalances: Arc::clone(&rebalances),
            seen_rebalances: 0,
        };
        let events = ("orders.events".to_owned(), 0);
        let metrics = ("orders.metrics".to_owned(), 0);
        assert_eq!(
            read_to.expect(&events, 10),
            None,
            "the first record sets the position"
        );
        assert_eq!(read_to.expect(&events, 11), None);
        assert_eq!(read_to.expect(&metrics, 500), None, "partitions are apart");
        assert_eq!(read_to.expect(&events, 40), Some(12), "12..40 were skipped");
        assert_eq!(read_to.expect(&events, 41), None);
        assert_eq!(
            read_to.expect(&events, 41),
            None,
            "a record read again is no gap"
        );
        rebalances.fetch_add(1, Ordering::Relaxed);
        assert_eq!(
            read_to.expect(&events, 900),
            None,
            "after a rebalance another member may have read on"
        );
        assert_eq!(read_to.expect(&events, 902), Some(901));
    }
}
