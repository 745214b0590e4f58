//! The consumer group: N member tasks in one Kafka group, each running every
//! order it receives as its own task, committing offsets only once the
//! orders below them have finished (at-least-once).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use rdkafka::{
    client::ClientContext,
    config::RDKafkaLogLevel,
    consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::{KafkaError, KafkaResult},
    message::{BorrowedMessage, Message},
    statistics::Statistics,
    types::RDKafkaErrorCode,
    ClientConfig,
};
use tokio::{
    sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore},
    task::{JoinHandle, JoinSet},
};
use tokio_util::sync::CancellationToken;

use super::{
    finished_log::{FinishedLog, CLOCK_SKEW},
    offsets::OffsetTracker,
    HealthContext, KafkaConnection,
};
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
    /// Which orders a previous owner of a partition already finished.
    pub finished_log: Arc<FinishedLog>,
    pub metrics: Arc<Metrics>,
    /// Orders one member runs at once; past it, the member stops fetching.
    pub max_in_flight_per_member: usize,
    /// Partitions currently assigned over all members.
    pub assigned: Arc<watch::Sender<usize>>,
    /// While true, members fetch nothing (orders in flight still finish).
    pub paused: Arc<watch::Sender<bool>>,
    pub lag: Arc<LagBoard>,
}

/// Identifies a member for the screen: c1, c2, ... in start order.
pub type MemberId = u32;

/// Who owns each partition and how far its committed offset trails the end.
#[derive(Default)]
pub struct LagBoard {
    partitions: Mutex<BTreeMap<i32, PartitionLag>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    pub member: MemberId,
    /// Records between the committed offset and the end of the partition:
    /// not yet consumed, or consumed but not finished.
    pub lag: i64,
}

impl LagBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, PartitionLag>> {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn partitions(&self) -> Vec<PartitionLag> {
        self.lock().values().copied().collect()
    }

    fn update(&self, lag: PartitionLag) {
        self.lock().insert(lag.partition, lag);
    }

    fn release(&self, member: MemberId, partition: i32) {
        let mut board = self.lock();
        if board.get(&partition).is_some_and(|p| p.member == member) {
            board.remove(&partition);
        }
    }
}

/// One member's share of the work, for the screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberLoad {
    pub member: MemberId,
    pub partitions: Vec<i32>,
    pub in_flight: usize,
    pub lag: i64,
}

/// Rebalance hooks and statistics: forget partitions this member lost,
/// report lag for those it owns, keep a pause across rebalances.
struct MemberContext {
    id: MemberId,
    topic: String,
    health: HealthContext,
    tracker: Arc<Mutex<OffsetTracker>>,
    assigned: Arc<watch::Sender<usize>>,
    paused: Arc<watch::Sender<bool>>,
    lag: Arc<LagBoard>,
}

impl ClientContext for MemberContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.health.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.health.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        for (partition, stats) in &topic.partitions {
            if *partition >= 0 && stats.desired {
                self.lag.update(PartitionLag {
                    partition: *partition,
                    member: self.id,
                    lag: stats.consumer_lag.max(0),
                });
            }
        }
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
                self.lag.release(self.id, partition.partition());
            }
            self.assigned
                .send_modify(|n| *n = n.saturating_sub(partitions.count()));
            tracing::info!(revoked = partitions.count(), "partitions revoked");
        }
    }

    fn post_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if let Rebalance::Assign(partitions) = rebalance {
            self.assigned.send_modify(|n| *n += partitions.count());
            if *self.paused.borrow() {
                if let Err(error) = consumer.pause(partitions) {
                    tracing::warn!(%error, "could not keep new partitions paused");
                }
            }
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
    id: MemberId,
    permits: Arc<Semaphore>,
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
    next_id: MemberId,
}

impl ConsumerGroup {
    pub fn start(shared: GroupShared, members: usize) -> KafkaResult<Self> {
        let mut group = Self {
            shared,
            members: Vec::new(),
            next_id: 1,
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
        let id = self.next_id;
        self.next_id += 1;
        let tracker = Arc::new(Mutex::new(OffsetTracker::default()));
        let context = MemberContext {
            id,
            topic: self.shared.connection.options.topic.clone(),
            health: self.shared.connection.context(),
            tracker: Arc::clone(&tracker),
            assigned: Arc::clone(&self.shared.assigned),
            paused: Arc::clone(&self.shared.paused),
            lag: Arc::clone(&self.shared.lag),
        };
        let consumer: StreamConsumer<MemberContext> =
            member_config(&self.shared.connection).create_with_context(context)?;
        consumer.subscribe(&[&self.shared.connection.options.topic])?;
        let stop = CancellationToken::new();
        let abort = CancellationToken::new();
        let permits = Arc::new(Semaphore::new(self.shared.max_in_flight_per_member.max(1)));
        let worker = MemberWorker {
            consumer,
            tracker,
            shared: self.shared.clone(),
            permits: Arc::clone(&permits),
        };
        let task = tokio::spawn(worker.run(stop.clone(), abort.clone(), id));
        self.members.push(Member {
            id,
            permits,
            stop,
            abort,
            task,
        });
        Ok(())
    }

    /// Each member's partitions, lag and orders in flight.
    pub fn loads(&self) -> Vec<MemberLoad> {
        let partitions = self.shared.lag.partitions();
        let capacity = self.shared.max_in_flight_per_member.max(1);
        self.members
            .iter()
            .map(|member| {
                let owned: Vec<_> = partitions
                    .iter()
                    .filter(|p| p.member == member.id)
                    .collect();
                MemberLoad {
                    member: member.id,
                    partitions: owned.iter().map(|p| p.partition).collect(),
                    in_flight: capacity - member.permits.available_permits(),
                    lag: owned.iter().map(|p| p.lag).sum(),
                }
            })
            .collect()
    }

    /// Takes the newest member out of the group; the returned future stops
    /// it (a drain can take as long as its slowest order) and can run on
    /// its own while the group carries on.
    pub fn remove_member(
        &mut self,
        mode: StopMode,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let member = self.members.pop()?;
        Some(async move { close(member.stop(mode).await).await })
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
        // Feeds the lag board.
        ("statistics.interval.ms", "1000"),
    ] {
        if config.get(key).is_none() {
            config.set(key, value);
        }
    }
    if connection.options.target == super::BrokerTarget::Embedded
        && config.get(MOCK_FETCH_WAIT.0).is_none()
    {
        config.set(MOCK_FETCH_WAIT.0, MOCK_FETCH_WAIT.1);
    }
    config
}

/// For consumers of librdkafka's mock cluster: it answers a fetch only after
/// the full wait, even when records are ready (real brokers answer as soon
/// as data arrives), so the wait is kept short.
pub const MOCK_FETCH_WAIT: (&str, &str) = ("fetch.wait.max.ms", "5");

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
        index: MemberId,
    ) -> Option<MemberConsumer> {
        let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<Finished>();
        let mut work = JoinSet::new();
        let mut paused = self.shared.paused.subscribe();
        self.apply_pause(*paused.borrow_and_update());
        tracing::info!(member = index, "consumer member started");
        loop {
            tokio::select! {
                biased;
                Ok(()) = paused.changed() => self.apply_pause(*paused.borrow_and_update()),
                _ = abort.cancelled() => {
                    self.abandon(work).await;
                    return None;
                }
                Some((partition, offset)) = finished_rx.recv() => self.commit_up_to(partition, offset),
                _ = stop.cancelled() => break,
                Some(_) = work.join_next(), if !work.is_empty() => {}
                (permit, received) = next_message(&self.consumer, &self.permits) => match received {
                    Ok(message) => self.dispatch(&message, permit, &mut work, &finished_tx).await,
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

    /// Pauses or resumes fetching on every partition this member owns.
    fn apply_pause(&self, pause: bool) {
        let assignment = match self.consumer.assignment() {
            Ok(assignment) => assignment,
            Err(error) => return tracing::warn!(%error, "no assignment to pause"),
        };
        let applied = if pause {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        if let Err(error) = applied {
            tracing::warn!(%error, pause, "could not change the pause");
        }
    }

    /// Drops in-flight work; dropping the consumer afterwards leaves the
    /// group, having stored only the offsets of finished prefixes.
    async fn abandon(self, mut work: JoinSet<()>) {
        work.abort_all();
        while work.join_next().await.is_some() {}
        close(self.consumer).await;
    }

    async fn dispatch(
        &self,
        message: &BorrowedMessage<'_>,
        permit: OwnedSemaphorePermit,
        work: &mut JoinSet<()>,
        finished: &mpsc::UnboundedSender<Finished>,
    ) {
        let (partition, offset) = (message.partition(), message.offset());
        let newly_assigned = lock(&self.tracker).received(partition, offset);
        if newly_assigned {
            self.learn_finished_since(message).await;
        }
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

    /// Before the first order of a newly assigned partition runs: which of
    /// its uncommitted orders did a previous owner finish?
    async fn learn_finished_since(&self, first: &BorrowedMessage<'_>) {
        let Some(written_ms) = first.timestamp().to_millis() else {
            return;
        };
        let since = written_ms - CLOCK_SKEW.as_millis() as i64;
        let started = std::time::Instant::now();
        match self.shared.finished_log.finished_since(since).await {
            Ok(finished) => {
                tracing::debug!(
                    partition = first.partition(),
                    found = finished.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "read which orders a previous owner finished"
                );
                self.shared.registry.finished_elsewhere(finished)
            }
            Err(error) => tracing::warn!(
                %error,
                "could not read the events topic; orders a previous owner \
                 finished may finish again"
            ),
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
                // Known finished from the events topic, though this process
                // acknowledged it and its run here was cut short after the
                // Finished event: its finish is this process's to count.
                if shared.flow.ledger.finished_if_awaited(record.order_id) {
                    shared.metrics.incr(Counter::Finished);
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
