//! The consumer group: N member tasks in one Kafka group, each running every
//! order it receives as its own task, committing offsets only once the
//! orders below them have finished (at-least-once).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use rdkafka::{
    client::ClientContext,
    config::RDKafkaLogLevel,
    consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::{KafkaError, KafkaResult},
    message::{BorrowedMessage, Message},
    types::RDKafkaErrorCode,
    ClientConfig,
};
use tokio::{
    sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore},
    task::{JoinHandle, JoinSet},
};
use tokio_util::sync::CancellationToken;

use super::{offsets::OffsetTracker, HealthContext, KafkaConnection};
use crate::{
    metrics::{Counter, Metrics},
    order::OrderRecord,
    pipeline::{
        flow::OrderFlow,
        registry::{Claim, OrderRegistry},
    },
};

/// Everything a member needs, shared by all members of the group.
#[derive(Clone)]
pub struct GroupShared {
    pub connection: KafkaConnection,
    pub flow: Arc<OrderFlow>,
    pub registry: Arc<OrderRegistry>,
    pub metrics: Arc<Metrics>,
    /// Orders one member runs at once; past it, the member stops fetching.
    pub max_in_flight_per_member: usize,
    /// Partitions currently assigned over all members.
    pub assigned: Arc<watch::Sender<usize>>,
}

/// Rebalance hooks: forget partitions this member lost.
struct MemberContext {
    health: HealthContext,
    tracker: Arc<Mutex<OffsetTracker>>,
    assigned: Arc<watch::Sender<usize>>,
}

impl ClientContext for MemberContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.health.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.health.error(error, reason);
    }
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let mut tracker = lock(&self.tracker);
            for partition in partitions.elements() {
                tracker.forget(partition.partition());
            }
            self.assigned
                .send_modify(|n| *n = n.saturating_sub(partitions.count()));
            tracing::info!(revoked = partitions.count(), "partitions revoked");
        }
    }

    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if let Rebalance::Assign(partitions) = rebalance {
            self.assigned.send_modify(|n| *n += partitions.count());
            tracing::info!(assigned = partitions.count(), "partitions assigned");
        }
    }
}

fn lock(tracker: &Mutex<OffsetTracker>) -> std::sync::MutexGuard<'_, OffsetTracker> {
    tracker.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a member stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Stop fetching, finish what is in flight, commit, leave the group.
    Drain,
    /// Drop in-flight work uncommitted, as a crash would: Kafka redelivers it.
    Abort,
}

type MemberConsumer = StreamConsumer<MemberContext>;

struct Member {
    stop: CancellationToken,
    abort: CancellationToken,
    /// Hands back its consumer after a drain, so that members leave the group
    /// only once every member has committed (a leave starts a rebalance,
    /// which would fail the others' final commits).
    task: JoinHandle<Option<MemberConsumer>>,
}

impl Member {
    async fn stop(self, mode: StopMode) -> Option<MemberConsumer> {
        match mode {
            StopMode::Drain => self.stop.cancel(),
            StopMode::Abort => self.abort.cancel(),
        }
        self.task.await.unwrap_or_else(|error| {
            tracing::error!(%error, "consumer member task failed");
            None
        })
    }
}

pub struct ConsumerGroup {
    shared: GroupShared,
    members: Vec<Member>,
}

impl ConsumerGroup {
    pub fn start(shared: GroupShared, members: usize) -> KafkaResult<Self> {
        let mut group = Self {
            shared,
            members: Vec::new(),
        };
        for _ in 0..members {
            group.add_member()?;
        }
        Ok(group)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn add_member(&mut self) -> KafkaResult<()> {
        let tracker = Arc::new(Mutex::new(OffsetTracker::default()));
        let context = MemberContext {
            health: self.shared.connection.context(),
            tracker: Arc::clone(&tracker),
            assigned: Arc::clone(&self.shared.assigned),
        };
        let consumer: StreamConsumer<MemberContext> =
            member_config(&self.shared.connection).create_with_context(context)?;
        consumer.subscribe(&[&self.shared.connection.options.topic])?;
        let stop = CancellationToken::new();
        let abort = CancellationToken::new();
        let index = self.members.len();
        let worker = MemberWorker {
            consumer,
            tracker,
            shared: self.shared.clone(),
            permits: Arc::new(Semaphore::new(self.shared.max_in_flight_per_member.max(1))),
        };
        let task = tokio::spawn(worker.run(stop.clone(), abort.clone(), index));
        self.members.push(Member { stop, abort, task });
        Ok(())
    }

    /// Stops the newest member.
    pub async fn remove_member(&mut self, mode: StopMode) {
        if let Some(member) = self.members.pop() {
            close(member.stop(mode).await).await;
        }
    }

    /// Stops every member, all at once; they leave the group together.
    pub async fn stop(self, mode: StopMode) {
        let stopping: Vec<_> = self.members.into_iter().map(|m| m.stop(mode)).collect();
        close(futures::future::join_all(stopping).await).await;
    }
}

/// Closing a consumer blocks while it leaves the group: keep that off the runtime.
async fn close<T: Send + 'static>(consumers: T) {
    tokio::task::spawn_blocking(move || drop(consumers))
        .await
        .unwrap_or_else(|error| tracing::error!(%error, "closing consumers failed"));
}

fn member_config(connection: &KafkaConnection) -> ClientConfig {
    let mut config = connection.client_config();
    for (key, value) in [
        ("group.id", connection.options.group.as_str()),
        ("enable.auto.commit", "true"),
        ("auto.commit.interval.ms", "1000"),
        // Offsets are stored by hand, only for finished orders.
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        // Kafka's minimum: a crashed member is noticed, and a group that
        // grows or shrinks settles, within seconds rather than 45 s.
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "1500"),
    ] {
        if config.get(key).is_none() {
            config.set(key, value);
        }
    }
    // The mock cluster answers a fetch only after the full wait, even when
    // records are ready; real brokers answer as soon as data arrives.
    if connection.options.target == super::BrokerTarget::Embedded
        && config.get("fetch.wait.max.ms").is_none()
    {
        config.set("fetch.wait.max.ms", "5");
    }
    config
}

type Finished = (i32, i64);

struct MemberWorker {
    consumer: StreamConsumer<MemberContext>,
    tracker: Arc<Mutex<OffsetTracker>>,
    shared: GroupShared,
    permits: Arc<Semaphore>,
}

impl MemberWorker {
    async fn run(
        self,
        stop: CancellationToken,
        abort: CancellationToken,
        index: usize,
    ) -> Option<MemberConsumer> {
        let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<Finished>();
        let mut work = JoinSet::new();
        tracing::info!(member = index, "consumer member started");
        loop {
            tokio::select! {
                biased;
                _ = abort.cancelled() => {
                    self.abandon(work).await;
                    return None;
                }
                Some((partition, offset)) = finished_rx.recv() => self.commit_up_to(partition, offset),
                _ = stop.cancelled() => break,
                Some(_) = work.join_next(), if !work.is_empty() => {}
                (permit, received) = next_message(&self.consumer, &self.permits) => match received {
                    Ok(message) => self.dispatch(&message, permit, &mut work, &finished_tx),
                    Err(error) => {
                        tracing::warn!(member = index, %error, "consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        // Draining: no new records, but every order in flight finishes.
        while !work.is_empty() {
            tokio::select! {
                biased;
                _ = abort.cancelled() => {
                    self.abandon(work).await;
                    return None;
                }
                Some((partition, offset)) = finished_rx.recv() => self.commit_up_to(partition, offset),
                Some(_) = work.join_next() => {}
            }
        }
        while let Ok((partition, offset)) = finished_rx.try_recv() {
            self.commit_up_to(partition, offset);
        }
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => {}
            Err(error) => tracing::warn!(member = index, %error, "final commit failed"),
        }
        tracing::info!(member = index, "consumer member drained");
        Some(self.consumer)
    }

    /// Drops in-flight work; dropping the consumer afterwards leaves the
    /// group, having stored only the offsets of finished prefixes.
    async fn abandon(self, mut work: JoinSet<()>) {
        work.abort_all();
        while work.join_next().await.is_some() {}
        close(self.consumer).await;
    }

    fn dispatch(
        &self,
        message: &BorrowedMessage<'_>,
        permit: OwnedSemaphorePermit,
        work: &mut JoinSet<()>,
        finished: &mpsc::UnboundedSender<Finished>,
    ) {
        let (partition, offset) = (message.partition(), message.offset());
        lock(&self.tracker).received(partition, offset);
        let record = message.payload().map(serde_json::from_slice::<OrderRecord>);
        match record {
            Some(Ok(record)) => {
                let shared = self.shared.clone();
                let finished = finished.clone();
                work.spawn(async move {
                    settle(&shared, &record).await;
                    let _ = finished.send((partition, offset));
                    drop(permit);
                });
            }
            other => {
                let reason = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => "empty payload".to_owned(),
                };
                tracing::warn!(
                    partition,
                    offset,
                    reason,
                    "skipping a record that is not an order"
                );
                self.shared.metrics.incr(Counter::InvalidRecords);
                self.commit_up_to(partition, offset);
            }
        }
    }

    /// Marks one offset finished and stores the new committable position.
    fn commit_up_to(&self, partition: i32, offset: i64) {
        let Some(committable) = lock(&self.tracker).finished(partition, offset) else {
            return;
        };
        let topic = &self.shared.connection.options.topic;
        // Stores committable + 1 (the next offset to read); auto-commit sends it.
        if let Err(error) = self.consumer.store_offset(topic, partition, committable) {
            // The partition was revoked meanwhile; its new owner redelivers.
            tracing::debug!(partition, committable, %error, "offset not stored");
        }
    }
}

/// Runs an order unless it already ran here: redeliveries wait for the run in
/// flight, or are skipped once it finished. Returns when the order is finished.
async fn settle(shared: &GroupShared, record: &OrderRecord) {
    let mut counted = false;
    loop {
        match shared.registry.claim(record.order_id) {
            Claim::Run { guard, first_time } => {
                if !counted {
                    let counter = if first_time {
                        Counter::Consumed
                    } else {
                        Counter::Redelivered
                    };
                    shared.metrics.incr(counter);
                }
                shared.flow.run(guard, record).await;
                return;
            }
            Claim::Finished => {
                if !counted {
                    shared.metrics.incr(Counter::Redelivered);
                }
                return;
            }
            Claim::InFlight(mut running) => {
                if !counted {
                    shared.metrics.incr(Counter::Redelivered);
                    counted = true;
                }
                if running.wait_for(|done| *done).await.is_ok() {
                    return;
                }
                // The other run was abandoned: claim it again.
            }
        }
    }
}

/// Waits for room to run one more order, then for the next record.
async fn next_message<'a>(
    consumer: &'a StreamConsumer<MemberContext>,
    permits: &Arc<Semaphore>,
) -> (OwnedSemaphorePermit, KafkaResult<BorrowedMessage<'a>>) {
    let permit = Arc::clone(permits)
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    (permit, consumer.recv().await)
}
