//! Follows the events topic from the moment the process starts, so a
//! process learns that an order it acknowledged finished in another process
//! of the group (a worker that took over its partition, say).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::{KafkaError, KafkaResult},
    message::{BorrowedMessage, Headers, Message},
    Offset, TopicPartitionList,
};

use super::{
    producer::{BY_HEADER, RUN_HEADER, STATE_HEADER},
    this_process, KafkaConnection,
};
use crate::order::{OrderId, RunId, State, Transition};

const SETUP_LIMIT: Duration = Duration::from_secs(10);
/// How often the follower looks at its stop flag while the topic is quiet.
const POLL: Duration = Duration::from_millis(250);

/// A Finished event: which order, whether this process wrote it, and which
/// run (None from writers older than run ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FinishedEvent {
    pub order_id: OrderId,
    pub here: bool,
    pub run: Option<RunId>,
}

/// The running follower; stops when dropped.
pub struct FinishedWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FinishedWatch {
    /// Positions at the current end of every events partition (blocking:
    /// call it off the runtime), then reports each Finished event after it.
    pub fn start(
        connection: &KafkaConnection,
        on_finished: impl Fn(FinishedEvent) + Send + 'static,
    ) -> KafkaResult<Self> {
        let consumer: BaseConsumer = connection
            .client_config()
            .set(
                "group.id",
                format!("{}-finished-watch", connection.options.group),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()?;
        let topic = connection.options.events_topic.clone();
        let metadata = consumer.fetch_metadata(Some(&topic), SETUP_LIMIT)?;
        let mut assignment = TopicPartitionList::new();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (_, high) = consumer.fetch_watermarks(&topic, partition.id(), SETUP_LIMIT)?;
            assignment.add_partition_offset(&topic, partition.id(), Offset::Offset(high))?;
        }
        if assignment.count() == 0 {
            return Err(KafkaError::MetadataFetch(
                rdkafka::types::RDKafkaErrorCode::UnknownTopic,
            ));
        }
        consumer.assign(&assignment)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("finished-watch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    match consumer.poll(POLL) {
                        Some(Ok(message)) => {
                            if let Some(event) = finished_event(&message) {
                                on_finished(event);
                            }
                        }
                        Some(Err(error)) => {
                            tracing::debug!(%error, "events topic read failed; retrying")
                        }
                        None => {}
                    }
                }
            })
            .map_err(|_| KafkaError::Canceled)?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for FinishedWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The Finished event in `message`, if it is one. Events carry their state
/// and writer in headers; an event without them is parsed whole.
pub fn finished_event(message: &BorrowedMessage<'_>) -> Option<FinishedEvent> {
    let header = |name: &str| {
        message
            .headers()
            .and_then(|headers| headers.iter().find(|h| h.key == name))
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    match header(STATE_HEADER) {
        Some(state) if state != State::Finished.name() => None,
        Some(_) => {
            let key = std::str::from_utf8(message.key()?).ok()?;
            Some(FinishedEvent {
                order_id: key.parse().ok()?,
                here: header(BY_HEADER) == Some(this_process()),
                run: header(RUN_HEADER).and_then(|run| run.parse().ok()),
            })
        }
        None => {
            let transition: Transition = serde_json::from_slice(message.payload()?).ok()?;
            (transition.to == State::Finished).then(|| FinishedEvent {
                order_id: transition.order_id,
                here: transition.by.as_deref() == Some(this_process()),
                run: transition.run,
            })
        }
    }
}
