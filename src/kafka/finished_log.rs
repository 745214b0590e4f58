//! The events topic as the durable record of which orders finished.
//!
//! Offsets are committed a little after orders finish, so a process that
//! dies hands its successor some orders that already finished. Before a
//! member runs records from a newly assigned partition, it reads the Finished
//! events produced since the first of those records was written; the
//! registry then skips those orders instead of finishing them twice. The
//! read is incremental: members share one position in the events topic.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::Duration,
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::{KafkaError, KafkaResult},
    message::Message,
    Offset, TopicPartitionList,
};

use super::{
    finished_watch::{finished_event, FinishedEvent},
    KafkaConnection,
};
use crate::order::{OrderId, RunId};
use crate::sync::Locked;

/// How far before a record's timestamp its order's events may be stamped:
/// producers on other machines may run slightly behind this one's clock.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5);

/// Gives up on a catch-up read after this long (processing then proceeds
/// at-least-once, as without the log).
const READ_LIMIT: Duration = Duration::from_secs(30);

/// Where the shared read of the events topic has got to.
struct Position {
    /// Every Finished event stamped at or after this was read.
    since_ms: i64,
    /// The next offset to read, per events partition.
    next: BTreeMap<i32, i64>,
}

pub struct FinishedLog {
    connection: KafkaConnection,
    /// One read at a time: members share the position and the reader.
    state: Mutex<ReadState>,
}

#[derive(Default)]
struct ReadState {
    position: Option<Position>,
    /// Kept between reads: connecting costs more than reading.
    reader: Option<BaseConsumer>,
}

impl FinishedLog {
    pub fn new(connection: KafkaConnection) -> Self {
        Self {
            connection,
            state: Mutex::new(ReadState::default()),
        }
    }

    /// Orders with a Finished event stamped at or after `since_ms` that the
    /// shared position had not read yet. Blocks: members call it from their
    /// polling thread, before they run a newly assigned partition's records.
    pub fn finished_since(&self, since_ms: i64) -> KafkaResult<Vec<OrderId>> {
        let mut state = self.state.locked();
        if state.reader.is_none() {
            state.reader = Some(reader(&self.connection)?);
        }
        let start = match state.position.as_ref() {
            Some(read) if read.since_ms <= since_ms => Start::Offsets(read.next.clone()),
            _ => Start::Time(since_ms),
        };
        let reader = state.reader.as_ref().expect("created above");
        let topic = &self.connection.options.events_topic;
        let read = read(reader, topic, start);
        // An idle reader must not keep fetching (and buffering) events.
        reader.unassign()?;
        let (finished, next) = read?;
        let finished = finished.into_iter().map(|event| event.order_id).collect();
        let since_ms = state
            .position
            .as_ref()
            .map_or(since_ms, |read| read.since_ms.min(since_ms));
        state.position = Some(Position { since_ms, next });
        Ok(finished)
    }
}

/// What the events topic says, read from its start: how many orders have a
/// Finished event, how many were run to Finished more than once (finished
/// twice), and how many Finished records repeat a run's event (a record the
/// broker wrote twice: the order ran once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventAudit {
    pub finished_events: u64,
    pub orders: u64,
    pub finished_twice: u64,
    pub repeated: u64,
}

impl EventAudit {
    /// Folds Finished events by order and run. An event without a run (an
    /// older writer) counts as a run of its own.
    fn of(events: &[FinishedEvent]) -> Self {
        let mut runs = HashMap::<OrderId, Vec<Option<RunId>>>::with_capacity(events.len());
        let mut repeated = 0;
        for event in events {
            let seen = runs.entry(event.order_id).or_default();
            if event.run.is_some() && seen.contains(&event.run) {
                repeated += 1;
            } else {
                seen.push(event.run);
            }
        }
        Self {
            finished_events: events.len() as u64,
            orders: runs.len() as u64,
            finished_twice: runs.values().filter(|runs| runs.len() > 1).count() as u64,
            repeated,
        }
    }
}

/// Reads every Finished event in the events topic (what an outsider sees),
/// counting them by order id and run. Blocks; bounded by [`READ_LIMIT`].
pub fn audit(connection: &KafkaConnection) -> KafkaResult<EventAudit> {
    let consumer = reader(connection)?;
    let (finished, _) = read(
        &consumer,
        &connection.options.events_topic,
        Start::Beginning,
    )?;
    Ok(EventAudit::of(&finished))
}

fn reader(connection: &KafkaConnection) -> KafkaResult<BaseConsumer> {
    connection
        .client_config()
        .set(
            "group.id",
            format!("{}-finished-log", connection.options.group),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Each timestamp probe is one fetch: answer it at once.
        .set("fetch.wait.max.ms", "5")
        .create()
}

enum Start {
    Beginning,
    Time(i64),
    Offsets(BTreeMap<i32, i64>),
}

fn read(
    consumer: &BaseConsumer,
    topic: &str,
    start: Start,
) -> KafkaResult<(Vec<FinishedEvent>, BTreeMap<i32, i64>)> {
    let metadata = consumer.fetch_metadata(Some(topic), READ_LIMIT)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();

    let mut watermarks = BTreeMap::new();
    for &partition in &partitions {
        watermarks.insert(
            partition,
            consumer.fetch_watermarks(topic, partition, READ_LIMIT)?,
        );
    }
    let from = match start {
        Start::Beginning => watermarks.iter().map(|(p, (low, _))| (*p, *low)).collect(),
        Start::Offsets(next) => next,
        Start::Time(since_ms) => first_offsets_since(consumer, topic, &watermarks, since_ms)?,
    };

    let mut next = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for (&partition, &(low, high)) in &watermarks {
        let first = from.get(&partition).copied().unwrap_or(high).max(low);
        next.insert(partition, high);
        if first < high {
            assignment.add_partition_offset(topic, partition, Offset::Offset(first))?;
        }
    }
    let mut unread: BTreeMap<i32, i64> = next
        .iter()
        .filter(|(p, _)| assignment.find_partition(topic, **p).is_some())
        .map(|(p, high)| (*p, *high))
        .collect();
    if unread.is_empty() {
        return Ok((Vec::new(), next));
    }
    consumer.assign(&assignment)?;

    let mut finished = Vec::new();
    let deadline = std::time::Instant::now() + READ_LIMIT;
    while !unread.is_empty() {
        let remaining = deadline.saturating_duration_since(std::time::Instant::now());
        if remaining.is_zero() {
            return Err(KafkaError::MessageConsumption(
                rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        let Some(message) = consumer.poll(remaining.min(Duration::from_millis(200))) else {
            continue;
        };
        let message = message?;
        if let Some(event) = finished_event(&message) {
            finished.push(event);
        }
        if unread
            .get(&message.partition())
            .is_some_and(|high| message.offset() + 1 >= *high)
        {
            unread.remove(&message.partition());
        }
    }
    Ok((finished, next))
}

/// The first offset of each partition stamped at or after `since_ms`. Asks
/// the broker, and checks its answer: a broker that cannot look up by time
/// (librdkafka's mock cluster) says "none" even when there are some, and is
/// then searched by reading timestamps.
fn first_offsets_since(
    consumer: &BaseConsumer,
    topic: &str,
    watermarks: &BTreeMap<i32, (i64, i64)>,
    since_ms: i64,
) -> KafkaResult<BTreeMap<i32, i64>> {
    let mut wanted = TopicPartitionList::new();
    for &partition in watermarks.keys() {
        wanted.add_partition_offset(topic, partition, Offset::Offset(since_ms))?;
    }
    let answered = consumer.offsets_for_times(wanted, READ_LIMIT)?;
    let mut first = BTreeMap::new();
    for (&partition, &(low, high)) in watermarks {
        let found = answered
            .find_partition(topic, partition)
            .and_then(|element| match element.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            });
        let offset = match found {
            Some(offset) => offset,
            None if low == high => high,
            None => {
                let last = timestamp_at(consumer, topic, partition, high - 1)?;
                if last < since_ms {
                    high
                } else {
                    search_by_timestamp(consumer, topic, partition, low, high - 1, since_ms)?
                }
            }
        };
        first.insert(partition, offset);
    }
    Ok(first)
}

/// Binary search for the first offset in `low..=high` stamped at or after
/// `since_ms`, given that `high` is.
fn search_by_timestamp(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    mut low: i64,
    mut high: i64,
    since_ms: i64,
) -> KafkaResult<i64> {
    while low < high {
        let middle = low + (high - low) / 2;
        if timestamp_at(consumer, topic, partition, middle)? < since_ms {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    Ok(low)
}

/// The timestamp of the record at `offset` (or the next one present).
fn timestamp_at(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> KafkaResult<i64> {
    let mut at = TopicPartitionList::new();
    at.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.assign(&at)?;
    let deadline = std::time::Instant::now() + READ_LIMIT;
    loop {
        let remaining = deadline.saturating_duration_since(std::time::Instant::now());
        if remaining.is_zero() {
            return Err(KafkaError::MessageConsumption(
                rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        if let Some(message) = consumer.poll(remaining.min(Duration::from_millis(200))) {
            let message = message?;
            if message.partition() == partition && message.offset() >= offset {
                return Ok(message.timestamp().to_millis().unwrap_or(i64::MAX));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(order_id: OrderId, run: Option<u64>) -> FinishedEvent {
        FinishedEvent {
            order_id,
            here: true,
            run: run.map(|n| format!("{n:x}").parse().unwrap()),
        }
    }

    #[test]
    fn a_repeated_record_is_not_a_second_run() {
        let (once, repeated, twice, older) = (
            OrderId::new_random(),
            OrderId::new_random(),
            OrderId::new_random(),
            OrderId::new_random(),
        );
        let events = [
            event(once, Some(1)),
            // The broker wrote this run's event three times.
            event(repeated, Some(2)),
            event(repeated, Some(2)),
            event(repeated, Some(2)),
            // Two runs, one of them repeated: finished twice all the same.
            event(twice, Some(3)),
            event(twice, Some(4)),
            event(twice, Some(3)),
            // Without run ids nothing can be told apart: two runs.
            event(older, None),
            event(older, None),
        ];
        assert_eq!(
            EventAudit::of(&events),
            EventAudit {
                finished_events: 9,
                orders: 4,
                finished_twice: 2,
                repeated: 3,
            }
        );
    }
}
