//! Reads a deployment from the outside: the orders, events and processes
//! topics from their beginning, and the group's committed offsets. Never
//! joins or commits for the group it watches (its reader is assigned
//! partitions, under a group name of its own that commits nothing), so
//! watching changes nothing.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::{KafkaError, KafkaResult},
    message::{BorrowedMessage, Message},
    types::RDKafkaErrorCode,
    Offset, TopicPartitionList,
};

use super::{
    presence::Presence,
    view::{FleetView, PartitionOffsets},
};
use crate::{
    kafka::{this_process, HealthContext, KafkaConnection},
    order::Transition,
    sync::Locked,
};

/// Every client of the observer reports through the connection's health
/// (warnings in the log, not librdkafka's own error lines on stderr).
type Client = BaseConsumer<HealthContext>;

const SETUP_LIMIT: Duration = Duration::from_secs(10);
/// How often the group's committed offsets and the partitions' ends are read.
const OFFSETS_EVERY: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(100);

/// The running reader; stops when dropped.
pub struct Observer {
    view: Arc<Mutex<FleetView>>,
    /// How far the reader got: the next offset per topic and partition.
    read: Arc<Mutex<BTreeMap<(String, i32), i64>>>,
    reader_error: Arc<Mutex<Option<String>>>,
    /// When the group's offsets were last read.
    offsets_at: Arc<Mutex<Option<Instant>>>,
    watermarks: Client,
    topics: [String; 3],
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Observer {
    /// Connects and starts reading (blocking: call it off the runtime).
    /// Fails with the reason when Kafka or the topics are not there.
    pub fn start(connection: &KafkaConnection) -> KafkaResult<Self> {
        let options = &connection.options;
        let topics = [
            options.topic.clone(),
            options.events_topic.clone(),
            options.processes_topic.clone(),
        ];
        let reader: Client = connection
            .client_config()
            .set(
                "group.id",
                format!("{}-watch-{}", options.group, this_process()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create_with_context(connection.context())?;
        let mut assignment = TopicPartitionList::new();
        for topic in &topics {
            for partition in partitions_of(&reader, topic)? {
                assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
            }
        }
        reader.assign(&assignment)?;
        // The group's own name, only to read its committed offsets.
        let committed: Client = connection
            .client_config()
            .set("group.id", &options.group)
            .set("enable.auto.commit", "false")
            .create_with_context(connection.context())?;
        let watermarks: Client = connection
            .client_config()
            .create_with_context(connection.context())?;
        let orders_partitions = partitions_of(&watermarks, &options.topic)?;

        let view = Arc::new(Mutex::new(FleetView::default()));
        let read = Arc::new(Mutex::new(BTreeMap::new()));
        let reader_error = Arc::new(Mutex::new(None));
        let offsets_at = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Reader {
            reader,
            committed,
            orders_topic: options.topic.clone(),
            group: options.group.clone(),
            orders_partitions,
            topics: topics.clone(),
            view: Arc::clone(&view),
            read: Arc::clone(&read),
            error: Arc::clone(&reader_error),
            offsets_at: Arc::clone(&offsets_at),
            stop: Arc::clone(&stop),
        };
        let thread = std::thread::Builder::new()
            .name("fleet-observer".into())
            .spawn(move || worker.run())
            .map_err(|_| KafkaError::Canceled)?;
        Ok(Self {
            view,
            read,
            reader_error,
            offsets_at,
            watermarks,
            topics,
            stop,
            thread: Some(thread),
        })
    }

    /// Reads the view (briefly: the reader waits meanwhile).
    pub fn with_view<T>(&self, f: impl FnOnce(&FleetView) -> T) -> T {
        f(&self.view.locked())
    }

    /// The last error reading the topics, if the reader is stuck on one.
    pub fn reader_error(&self) -> Option<String> {
        self.reader_error.locked().clone()
    }

    /// Blocks until everything written to the watched topics before this
    /// call has been read, and the group's offsets read after it, or until
    /// `limit`. The events topic's ends are taken before the orders
    /// topic's, so every order with an event read is read too.
    pub fn catch_up(&self, limit: Duration) -> KafkaResult<()> {
        let deadline = Instant::now() + limit;
        let mut ends = Vec::new();
        for topic in [&self.topics[1], &self.topics[0], &self.topics[2]] {
            for partition in partitions_of(&self.watermarks, topic)? {
                let (low, high) =
                    self.watermarks
                        .fetch_watermarks(topic, partition, SETUP_LIMIT)?;
                if low < high {
                    ends.push((topic.clone(), partition, high));
                }
            }
        }
        let asked = Instant::now();
        loop {
            let read = self.read.locked().clone();
            let behind = ends.iter().any(|(topic, partition, high)| {
                read.get(&(topic.clone(), *partition)).copied().unwrap_or(0) < *high
            });
            let offsets_fresh = self.offsets_at.locked().is_some_and(|at| at >= asked);
            if !behind && offsets_fresh {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::OperationTimedOut,
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn partitions_of(consumer: &Client, topic: &str) -> KafkaResult<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), SETUP_LIMIT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopic));
    }
    Ok(partitions)
}

struct Reader {
    reader: Client,
    committed: Client,
    orders_topic: String,
    /// Announcements of other groups sharing the topics are not this
    /// deployment's.
    group: String,
    orders_partitions: Vec<i32>,
    topics: [String; 3],
    view: Arc<Mutex<FleetView>>,
    read: Arc<Mutex<BTreeMap<(String, i32), i64>>>,
    error: Arc<Mutex<Option<String>>>,
    offsets_at: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
}

impl Reader {
    fn run(self) {
        let mut next_offsets = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            if Instant::now() >= next_offsets {
                self.read_offsets();
                next_offsets = Instant::now() + OFFSETS_EVERY;
            }
            match self.reader.poll(POLL) {
                Some(Ok(message)) => {
                    self.take(&message);
                    *self.error.locked() = None;
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "reading the deployment's topics");
                    *self.error.locked() = Some(error.to_string());
                }
                None => {}
            }
        }
    }

    fn take(&self, message: &BorrowedMessage<'_>) {
        let topic = message.topic();
        {
            let mut view = self.view.locked();
            if topic == self.topics[0] {
                if let Some(id) = message
                    .key()
                    .and_then(|key| std::str::from_utf8(key).ok())
                    .and_then(|key| key.parse().ok())
                {
                    view.accepted(id);
                }
            } else if topic == self.topics[1] {
                match message.payload().map(serde_json::from_slice::<Transition>) {
                    Some(Ok(transition)) => view.transition(transition),
                    _ => tracing::debug!(offset = message.offset(), "not an event; skipped"),
                }
            } else if let Some(Ok(presence)) =
                message.payload().map(serde_json::from_slice::<Presence>)
            {
                if presence.group == self.group {
                    view.presence(presence);
                }
            }
        }
        self.read.locked().insert(
            (topic.to_owned(), message.partition()),
            message.offset() + 1,
        );
    }

    /// The group's committed offset and each partition's ends; what cannot
    /// be read now keeps its last value.
    fn read_offsets(&self) {
        let mut wanted = TopicPartitionList::new();
        for &partition in &self.orders_partitions {
            wanted.add_partition(&self.orders_topic, partition);
        }
        let committed = match self.committed.committed_offsets(wanted, SETUP_LIMIT) {
            Ok(list) => list,
            Err(error) => {
                tracing::debug!(%error, "reading the group's committed offsets");
                return;
            }
        };
        let mut partitions = Vec::new();
        for &partition in &self.orders_partitions {
            let Ok((start, end)) =
                self.reader
                    .fetch_watermarks(&self.orders_topic, partition, SETUP_LIMIT)
            else {
                return;
            };
            let committed = committed
                .find_partition(&self.orders_topic, partition)
                .and_then(|element| match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                });
            partitions.push(PartitionOffsets {
                partition,
                committed,
                start,
                end,
            });
        }
        self.view.locked().offsets(partitions);
        *self.offsets_at.locked() = Some(Instant::now());
    }
}
