//! The consumer group: N members in one Kafka group. Each member polls Kafka
//! on a thread of its own and runs every order it receives as a task on the
//! runtime; an offset is committed only once every order below it finished
//! and its Finished event is in Kafka (at-least-once, made exactly-once per
//! order by the registry and the events topic).
//!
//! Hand-over: when a partition leaves a member
//! (another process joins, this one stops, the group shrinks), the
//! rebalance callback runs on the member's polling thread: it cancels that
//! partition's orders that have not begun writing their Finished event,
//! waits for those that have, commits what finished, and only then lets the
//! partition go. The next owner runs every order that did not finish here
//! and skips, through the events topic, the ones that finished here but
//! were not committed yet. An order is never run to Finished by both.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicU8, Ordering},
        Arc, Condvar, Mutex,
    },
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use rdkafka::{
    client::ClientContext,
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance},
    error::{KafkaError, KafkaResult},
    message::{BorrowedMessage, Message},
    statistics::Statistics,
    types::{RDKafkaErrorCode, RDKafkaRespErr},
    ClientConfig, Offset, TopicPartitionList,
};
use tokio::{
    runtime::Handle,
    sync::{watch, OwnedSemaphorePermit, Semaphore},
    task::AbortHandle,
};
use tokio_util::sync::CancellationToken;

use super::{
    finished_log::{FinishedLog, CLOCK_SKEW},
    offsets::{Committable, PartitionOffsets},
    BrokerHealth, HealthContext, KafkaConnection,
};
use crate::{
    metrics::{Counter, Metrics},
    order::{OrderId, OrderRecord},
    sync::{Bell, Listener, Locked},
};

/// How a record's run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// Done, its Finished event in Kafka: the offset may be committed.
    Finished,
    /// Stopped before Finished (its partition moved): the next owner runs it.
    Cancelled,
}

/// What the group does with each order record: the consumer knows offsets,
/// partitions and hand-overs; the handler knows what running an order means.
pub trait RecordHandler: Send + Sync + 'static {
    /// Runs the order to its end, or until `cancel` (its partition leaves
    /// `member`). A redelivered record comes here too.
    fn run(
        self: Arc<Self>,
        record: OrderRecord,
        member: MemberId,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, RunOutcome>;

    /// A previous owner of a partition finished these orders.
    fn finished_elsewhere(&self, orders: Vec<OrderId>);
}

/// Everything a member needs, shared by all members of the group.
#[derive(Clone)]
pub struct GroupShared {
    pub connection: KafkaConnection,
    pub handler: Arc<dyn RecordHandler>,
    /// Which orders a previous owner of a partition already finished.
    pub finished_log: Arc<FinishedLog>,
    pub metrics: Arc<Metrics>,
    /// Orders one member runs at once; past it, the member stops fetching.
    pub max_in_flight_per_member: usize,
    /// Partitions currently assigned, by member.
    pub assigned: Arc<watch::Sender<Assignment>>,
    /// While true, members fetch nothing (orders in flight still finish).
    pub paused: Arc<watch::Sender<bool>>,
    /// Set when every order reaches Kafka through this process (the
    /// embedded broker): members then stop fetching after [`IDLE_AFTER`]
    /// without records, and this wakes them.
    pub orders_written: Option<Arc<Bell>>,
    pub lag: Arc<LagBoard>,
}

/// Identifies a member for the screen: c1, c2, ... in start order.
pub type MemberId = u32;

/// The partitions each member of this process holds.
pub type Assignment = BTreeMap<MemberId, BTreeSet<i32>>;

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
    pub fn partitions(&self) -> Vec<PartitionLag> {
        self.partitions.locked().values().copied().collect()
    }

    fn update(&self, lag: PartitionLag) {
        self.partitions.locked().insert(lag.partition, lag);
    }

    fn release(&self, member: MemberId, partition: i32) {
        let mut board = self.partitions.locked();
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

/// Orders a member is running, by partition: what a hand-over waits for.
#[derive(Default)]
struct MemberWork {
    state: Mutex<WorkState>,
    /// Signalled whenever an order ends.
    ended: Condvar,
}

#[derive(Default)]
struct WorkState {
    partitions: HashMap<i32, PartitionWork>,
    running: usize,
    /// Numbers each order's run, so a late end of a killed run cannot be
    /// taken for the end of the same offset's next run.
    next_run: u64,
}

#[derive(Default)]
struct PartitionWork {
    offsets: PartitionOffsets,
    orders: HashMap<i64, OrderControl>,
    /// The newest committable offset, not yet stored for auto-commit.
    to_store: Option<i64>,
    /// Whether the events topic was read for what a previous owner finished.
    caught_up: bool,
}

struct OrderControl {
    run: u64,
    /// Stops the run between states (a hand-over).
    cancel: CancellationToken,
    /// Stops it wherever it is (a crash).
    abort: Option<AbortHandle>,
}

impl OrderControl {
    fn kill(&self) {
        self.cancel.cancel();
        if let Some(abort) = &self.abort {
            abort.abort();
        }
    }
}

impl MemberWork {
    fn running(&self) -> usize {
        self.state.locked().running
    }

    /// Registers an order before its task starts, so a hand-over sees it.
    /// Returns the run's number, and whether the partition still needs its
    /// catch-up read.
    fn begin(&self, partition: i32, offset: i64, cancel: CancellationToken) -> (u64, bool) {
        let mut state = self.state.locked();
        state.running += 1;
        let run = state.next_run;
        state.next_run += 1;
        let work = state.partitions.entry(partition).or_default();
        work.offsets.received(offset);
        work.orders.insert(
            offset,
            OrderControl {
                run,
                cancel,
                abort: None,
            },
        );
        (run, !std::mem::replace(&mut work.caught_up, true))
    }

    fn set_abort(&self, partition: i32, offset: i64, run: u64, abort: AbortHandle) {
        let mut state = self.state.locked();
        match state
            .partitions
            .get_mut(&partition)
            .and_then(|work| work.orders.get_mut(&offset))
            .filter(|control| control.run == run)
        {
            Some(control) => control.abort = Some(abort),
            // Ended already (or handed over and killed): nothing to keep.
            None => abort.abort(),
        }
    }

    /// Run `run` of an order ended: finished (its offset may now be
    /// committed) or not (cancelled, aborted: the next owner runs it).
    fn end(&self, partition: i32, offset: i64, run: u64, finished: bool) {
        let mut state = self.state.locked();
        if let Some(work) = state.partitions.get_mut(&partition) {
            if work.orders.get(&offset).is_some_and(|c| c.run == run) {
                work.orders.remove(&offset);
                if finished {
                    if let Some(committable) = work.offsets.finished(offset) {
                        work.to_store = Some(committable);
                    }
                }
            }
        }
        state.running -= 1;
        drop(state);
        self.ended.notify_all();
    }

    /// Committable offsets not yet stored.
    fn take_to_store(&self) -> Vec<Committable> {
        let mut state = self.state.locked();
        state
            .partitions
            .iter_mut()
            .filter_map(|(partition, work)| {
                let offset = work.to_store.take()?;
                Some(Committable {
                    partition: *partition,
                    offset,
                })
            })
            .collect()
    }

    /// Lets `partitions` go: cancels their orders that have not begun their
    /// Finished event, waits (at most `wait`; not at all without it) for
    /// those that have, and returns what is committable in each. Orders
    /// writing their Finished event are never killed: their
    /// event is queued in the producer either way, and while they run, a
    /// redelivery to another member of this process waits for them.
    fn hand_over(&self, partitions: &[i32], wait: Option<Duration>) -> Vec<Committable> {
        let mut state = self.state.locked();
        let mut cancelled = 0;
        for work in partitions.iter().filter_map(|p| state.partitions.get(p)) {
            for control in work.orders.values() {
                control.cancel.cancel();
                cancelled += 1;
            }
        }
        let busy = |state: &WorkState| {
            partitions
                .iter()
                .filter_map(|p| state.partitions.get(p))
                .map(|work| work.orders.len())
                .sum::<usize>()
        };
        let deadline = Instant::now() + wait.unwrap_or_default();
        while busy(&state) > 0 && wait.is_some() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    orders = busy(&state),
                    "hand-over deadline passed with Finished events undelivered; \
                     the next owner may finish those orders again"
                );
                break;
            }
            state = self
                .ended
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if cancelled > 0 {
            tracing::info!(cancelled, ?partitions, "partitions handed over");
        }
        partitions
            .iter()
            .filter_map(|p| {
                let work = state.partitions.remove(p)?;
                Some(Committable {
                    partition: *p,
                    offset: work.offsets.committable()?,
                })
            })
            .collect()
    }

    /// Stops every order where it is (a crash).
    fn kill_all(&self) {
        let state = self.state.locked();
        for work in state.partitions.values() {
            work.orders.values().for_each(OrderControl::kill);
        }
    }

    /// Waits up to `limit` for every order to end.
    fn wait_idle(&self, limit: Duration) -> bool {
        let state = self.state.locked();
        let (state, _) = self
            .ended
            .wait_timeout_while(state, limit, |s| s.running > 0)
            .unwrap_or_else(|e| e.into_inner());
        state.running == 0
    }
}

/// Rebalance hooks and statistics: hand over partitions this member loses,
/// report lag for those it owns, keep fetching paused across rebalances.
struct MemberContext {
    id: MemberId,
    topic: String,
    health: HealthContext,
    work: Arc<MemberWork>,
    assigned: Arc<watch::Sender<Assignment>>,
    fetching_paused: Arc<AtomicBool>,
    lag: Arc<LagBoard>,
    /// How long a hand-over waits for Finished events being written.
    hand_over_limit: Duration,
    /// Set once the member stopped and committed, before its consumer closes.
    closing: Arc<AtomicBool>,
    /// Whether the group assigns incrementally (cooperative-sticky), read
    /// from the configuration: asking librdkafka during a close can hang.
    cooperative: bool,
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
    /// rdkafka's default, except that the protocol comes from the
    /// configuration: the default asks librdkafka's main thread, and that
    /// request never returned when a revoke came during a consumer's close.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let rebalance = super::rebalance_of(err, partitions);
        self.pre_rebalance(consumer, &rebalance);
        if let Err(error) = super::apply_rebalance(consumer, &rebalance, self.cooperative) {
            tracing::warn!(member = self.id, %error, "could not apply the rebalance");
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            if let Rebalance::Error(error) = rebalance {
                tracing::warn!(member = self.id, %error, "rebalance failed");
            }
            return;
        };
        let partitions: Vec<i32> = revoked
            .elements_for_topic(&self.topic)
            .iter()
            .map(|p| p.partition())
            .collect();
        let lost = consumer.assignment_lost();
        // Nothing can be committed for lost partitions, and a closing member
        // committed when it stopped: a commit during the close stalled it.
        let settle = !lost && !self.closing.load(Ordering::Relaxed);
        let committable = self
            .work
            .hand_over(&partitions, settle.then_some(self.hand_over_limit));
        if settle && !committable.is_empty() {
            let mut offsets = TopicPartitionList::new();
            for done in &committable {
                let next = Offset::Offset(done.next());
                if let Err(error) = offsets.add_partition_offset(&self.topic, done.partition, next)
                {
                    tracing::warn!(%error, done.partition, "cannot name the offset to commit");
                }
            }
            if let Err(error) = consumer.commit(&offsets, CommitMode::Sync) {
                // The next owner redelivers; the events topic makes it skip
                // what finished here.
                tracing::warn!(member = self.id, %error, "commit at hand-over failed");
            }
        }
        for partition in &partitions {
            self.lag.release(self.id, *partition);
        }
        self.assigned.send_modify(|owned| {
            let mine = owned.entry(self.id).or_default();
            for partition in &partitions {
                mine.remove(partition);
            }
        });
        tracing::info!(member = self.id, ?partitions, lost, "partitions revoked");
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            let added = partitions.elements_for_topic(&self.topic);
            self.assigned.send_modify(|owned| {
                owned
                    .entry(self.id)
                    .or_default()
                    .extend(added.iter().map(|p| p.partition()))
            });
            if self.fetching_paused.load(Ordering::Relaxed) {
                if let Err(error) = consumer.pause(partitions) {
                    tracing::warn!(%error, "could not keep new partitions paused");
                }
            }
            tracing::info!(
                member = self.id,
                assigned = partitions.count(),
                "partitions assigned"
            );
        }
    }
}

/// How a member stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Stop fetching, finish what is in flight, commit, leave the group.
    Drain,
    /// Drop in-flight work uncommitted, as a crash would: Kafka redelivers it.
    Abort,
}

const RUNNING: u8 = 0;
const DRAINING: u8 = 1;
const ABORTING: u8 = 2;

type MemberConsumer = BaseConsumer<MemberContext>;

struct Member {
    id: MemberId,
    permits: Arc<Semaphore>,
    mode: Arc<AtomicU8>,
    /// Hands back its consumer after a drain, so that members leave the group
    /// only once every member has committed.
    thread: std::thread::JoinHandle<Option<MemberConsumer>>,
}

impl Member {
    async fn stop(self, mode: StopMode) -> Option<MemberConsumer> {
        let code = match mode {
            StopMode::Drain => DRAINING,
            StopMode::Abort => ABORTING,
        };
        // Never downgrade an abort to a drain.
        self.mode.fetch_max(code, Ordering::Relaxed);
        let id = self.id;
        tokio::task::spawn_blocking(move || self.thread.join())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| {
                tracing::error!(member = id, "consumer member thread failed");
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

    /// Starts a member; call it from the runtime (its orders run there).
    pub fn add_member(&mut self) -> KafkaResult<()> {
        let id = self.next_id;
        self.next_id += 1;
        let work = Arc::new(MemberWork::default());
        let fetching_paused = Arc::new(AtomicBool::new(false));
        let closing = Arc::new(AtomicBool::new(false));
        let config = member_config(&self.shared.connection);
        let options = &self.shared.connection.options;
        let context = MemberContext {
            id,
            topic: options.topic.clone(),
            health: self.shared.connection.context(),
            work: Arc::clone(&work),
            assigned: Arc::clone(&self.shared.assigned),
            fetching_paused: Arc::clone(&fetching_paused),
            lag: Arc::clone(&self.shared.lag),
            hand_over_limit: (options.delivery_timeout * 2).max(Duration::from_secs(5)),
            closing: Arc::clone(&closing),
            cooperative: super::is_cooperative(&config),
        };
        let consumer: MemberConsumer = config.create_with_context(context)?;
        consumer.subscribe(&[&options.topic])?;
        let permits = Arc::new(Semaphore::new(self.shared.max_in_flight_per_member.max(1)));
        let mode = Arc::new(AtomicU8::new(RUNNING));
        let poller = MemberPoller {
            id,
            consumer,
            work,
            fetching_paused,
            shared: self.shared.clone(),
            permits: Arc::clone(&permits),
            mode: Arc::clone(&mode),
            closing,
            runtime: Handle::current(),
            wakers: Wakers::of(&self.shared),
            last_activity: Instant::now(),
            resting_since: None,
        };
        let thread = std::thread::Builder::new()
            .name(format!("consumer-{id}"))
            .spawn(move || poller.run())
            .map_err(|_| KafkaError::Canceled)?;
        self.members.push(Member {
            id,
            permits,
            mode,
            thread,
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
    pub fn remove_member(&mut self, mode: StopMode) -> Option<impl Future<Output = ()> + Send> {
        let member = self.members.pop()?;
        let assigned = Arc::clone(&self.shared.assigned);
        Some(async move {
            let id = member.id;
            close(member.stop(mode).await).await;
            // Gone from the group: no longer listed (as holding nothing).
            assigned.send_modify(|owned| {
                owned.remove(&id);
            });
        })
    }

    /// Stops every member, all at once; they leave the group together.
    pub async fn stop(self, mode: StopMode) {
        let stopping: Vec<_> = self.members.into_iter().map(|m| m.stop(mode)).collect();
        close(futures::future::join_all(stopping).await).await;
    }
}

/// Closing a consumer blocks while it leaves the group: keep that off the
/// runtime, and bounded (librdkafka's close can stall; the group then
/// notices the member gone at its session timeout).
async fn close<T: Send + 'static>(consumers: T) {
    let closed =
        crate::sync::bounded_blocking("consumers-close", CLOSE_LIMIT, move || drop(consumers))
            .await;
    if closed.is_none() {
        tracing::warn!(?CLOSE_LIMIT, "consumers still closing; not waiting longer");
    }
}

/// How long a stop waits for consumers to leave the group.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);
/// How long one poll waits: the member looks at its stop mode and its
/// capacity at least this often.
const POLL: Duration = Duration::from_millis(100);
/// How long waking a partition's fetcher may take (see `wake_fetchers`):
/// the embedded broker answers in microseconds, and a broker that is down
/// must not hold the member up.
const WAKE_LIMIT: Duration = Duration::from_millis(100);
/// A crashed member's orders end at their next await; this bounds the wait.
const ABORT_LIMIT: Duration = Duration::from_secs(5);

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

/// How long a member on the embedded broker fetches without getting a
/// record before it stops fetching until orders are written again: the mock
/// cluster answers each fetch only after the full wait, so an idle member
/// would keep it busy 200 times a second.
pub const IDLE_AFTER: Duration = Duration::from_secs(2);

/// For consumers of librdkafka's mock cluster: it holds a fetch that found
/// nothing for the full wait, even when records arrive meanwhile (a real
/// broker answers as soon as data arrives), so the wait is kept short. An
/// idle member stops fetching (see [`IDLE_AFTER`]), so the short wait costs
/// nothing at rest. 1 ms instead of 5: end-to-end p99 at 1,000 orders/s
/// 5.6–6.2 ms instead of 9.4–9.7 (docs/benchmarks.md).
pub const MOCK_FETCH_WAIT: (&str, &str) = ("fetch.wait.max.ms", "1");

/// One member's polling thread.
struct MemberPoller {
    id: MemberId,
    consumer: MemberConsumer,
    work: Arc<MemberWork>,
    fetching_paused: Arc<AtomicBool>,
    shared: GroupShared,
    permits: Arc<Semaphore>,
    mode: Arc<AtomicU8>,
    closing: Arc<AtomicBool>,
    runtime: Handle,
    /// None when orders may come from elsewhere (no idle pause then).
    wakers: Option<Wakers>,
    /// The last record, order written, rebalance or pause change.
    last_activity: Instant,
    /// Since when this member has rested without a look for records.
    resting_since: Option<Instant>,
}

/// What ends a member's idle pause: an order written, a rebalance, the user
/// pausing or resuming, the brokers going away or coming back.
struct Wakers {
    written: Listener,
    assigned: watch::Receiver<Assignment>,
    paused: watch::Receiver<bool>,
    health: watch::Receiver<BrokerHealth>,
}

impl Wakers {
    fn of(shared: &GroupShared) -> Option<Self> {
        Some(Self {
            written: shared.orders_written.as_ref()?.listen(),
            assigned: shared.assigned.subscribe(),
            paused: shared.paused.subscribe(),
            health: shared.connection.health.subscribe(),
        })
    }

    /// Whether anything happened since the last look.
    fn woken(&mut self) -> bool {
        let changed = |r: Result<bool, _>| r.unwrap_or(false);
        let woken = self.written.rang()
            | changed(self.assigned.has_changed())
            | changed(self.paused.has_changed())
            | changed(self.health.has_changed());
        self.assigned.mark_unchanged();
        self.paused.mark_unchanged();
        self.health.mark_unchanged();
        woken
    }
}

/// What a member's look at its partitions decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Look {
    Fetch,
    /// Fetch once, briefly, while resting.
    Probe,
    Rest,
}

/// How long a resting member's probe waits for a record.
const PROBE_POLL: Duration = Duration::from_millis(10);

/// How often a resting member fetches anyway, briefly (see [`PROBE_POLL`]):
/// the lag it rests on comes from statistics, which a member that does not
/// fetch no longer refreshes and a broker outage can leave unknown (read as
/// 0). A fetch that finds a record is the only sure sign.
const IDLE_PROBE_EVERY: Duration = Duration::from_secs(10);

impl MemberPoller {
    /// Whether to fetch: on the embedded broker a member rests after
    /// [`IDLE_AFTER`] without activity and with nothing left to read in its
    /// partitions, and takes a short look every [`IDLE_PROBE_EVERY`].
    fn look(&mut self) -> Look {
        let Some(wakers) = self.wakers.as_mut() else {
            return Look::Fetch;
        };
        if wakers.woken() {
            self.last_activity = Instant::now();
        }
        // Under load this runs for every record: look at the lag only once
        // the member has been quiet long enough to rest.
        if self.last_activity.elapsed() < IDLE_AFTER {
            self.resting_since = None;
            return Look::Fetch;
        }
        let behind: i64 = self
            .shared
            .lag
            .partitions()
            .iter()
            .filter(|p| p.member == self.id)
            .map(|p| p.lag)
            .sum();
        if behind != 0 {
            self.resting_since = None;
            return Look::Fetch;
        }
        let resting = *self.resting_since.get_or_insert_with(Instant::now);
        if resting.elapsed() >= IDLE_PROBE_EVERY {
            // The next look rests again unless this one found a record.
            self.resting_since = None;
            return Look::Probe;
        }
        Look::Rest
    }

    fn run(mut self) -> Option<MemberConsumer> {
        tracing::info!(member = self.id, "consumer member started");
        while self.mode.load(Ordering::Relaxed) == RUNNING {
            // Fetch only while the user allows it, there is room to run
            // more orders, and (embedded broker) orders keep coming; a
            // paused partition still serves the group.
            let full = self.permits.available_permits() == 0;
            let was_resting = self.resting_since.is_some();
            let look = self.look();
            let resting = look == Look::Rest;
            let resumed = self.set_fetching_paused(*self.shared.paused.borrow() || full || resting);
            if resumed && was_resting {
                self.wake_fetchers();
            }
            self.store_offsets();
            let wait = match look {
                // Waited on the bell instead; the poll only serves the
                // consumer's events (a rebalance, statistics).
                Look::Rest => {
                    self.rest();
                    Duration::ZERO
                }
                // A probe's fetch is under way once its fetcher is woken: a
                // record, if any, arrives within milliseconds, and its
                // answer refreshes the lag the next look rests on.
                Look::Probe => PROBE_POLL,
                Look::Fetch => POLL,
            };
            match self.consumer.poll(wait) {
                Some(Ok(message)) => {
                    self.last_activity = Instant::now();
                    self.dispatch(&message)
                }
                Some(Err(error)) => {
                    tracing::warn!(member = self.id, %error, "consumer error");
                    if !resting {
                        std::thread::sleep(POLL);
                    }
                }
                None => {}
            }
        }
        if self.mode.load(Ordering::Relaxed) == DRAINING {
            // No new records; every order in flight finishes.
            self.set_fetching_paused(true);
            while self.work.running() > 0 && self.mode.load(Ordering::Relaxed) == DRAINING {
                self.store_offsets();
                if let Some(Ok(message)) = self.consumer.poll(POLL) {
                    // Fetched before the pause took hold: left uncommitted,
                    // so the next owner gets it.
                    tracing::debug!(offset = message.offset(), "record left for the next owner");
                }
            }
        }
        if self.mode.load(Ordering::Relaxed) == ABORTING {
            self.work.kill_all();
            self.work.wait_idle(ABORT_LIMIT);
            // Closing the consumer leaves the group with only the
            // offsets of finished prefixes stored.
            self.closing.store(true, Ordering::Relaxed);
            return Some(self.consumer);
        }
        self.store_offsets();
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => {}
            Err(error) => tracing::warn!(member = self.id, %error, "final commit failed"),
        }
        tracing::info!(member = self.id, "consumer member drained");
        self.closing.store(true, Ordering::Relaxed);
        Some(self.consumer)
    }

    /// Waits, without fetching, for an order written or [`POLL`] (what else
    /// ends a rest is seen at the next look). Polling the consumer instead
    /// would see the order only when its wait ran out.
    fn rest(&mut self) {
        if let Some(wakers) = self.wakers.as_mut() {
            if wakers.written.wait(POLL) {
                self.last_activity = Instant::now();
            }
        }
    }

    /// After a rest: librdkafka's broker threads, with every partition
    /// paused, sleep up to a second and a resume does not wake them, so an
    /// order written after a quiet spell waited 0.5 s (p50) to be taken up.
    /// Any request to a partition's leader wakes its thread, which then
    /// fetches at once; a watermark query is the cheapest at hand.
    fn wake_fetchers(&self) {
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        for element in assignment.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            if let Err(error) = self.consumer.fetch_watermarks(topic, partition, WAKE_LIMIT) {
                tracing::debug!(partition, %error, "could not wake the partition's fetcher");
            }
        }
    }

    /// Pauses or resumes fetching on every partition this member owns;
    /// true if it resumed.
    fn set_fetching_paused(&self, pause: bool) -> bool {
        if self.fetching_paused.swap(pause, Ordering::Relaxed) == pause {
            return false;
        }
        let assignment = match self.consumer.assignment() {
            Ok(assignment) => assignment,
            Err(error) => {
                tracing::warn!(%error, "no assignment to pause");
                return false;
            }
        };
        let applied = if pause {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        if let Err(error) = applied {
            tracing::warn!(%error, pause, "could not change the pause");
        }
        !pause
    }

    /// Stores the offsets that became committable; auto-commit sends them.
    fn store_offsets(&self) {
        let topic = &self.shared.connection.options.topic;
        for done in self.work.take_to_store() {
            // librdkafka stores `offset + 1` itself (the next one to read).
            if let Err(error) = self
                .consumer
                .store_offset(topic, done.partition, done.offset)
            {
                // The partition was revoked meanwhile; it was committed then.
                tracing::debug!(?done, %error, "offset not stored");
            }
        }
    }

    fn dispatch(&self, message: &BorrowedMessage<'_>) {
        let (partition, offset) = (message.partition(), message.offset());
        let record = message.payload().map(serde_json::from_slice::<OrderRecord>);
        let record = match record {
            Some(Ok(record)) => record,
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
                let (run, _) = self.work.begin(partition, offset, CancellationToken::new());
                self.work.end(partition, offset, run, true);
                return;
            }
        };
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => permit,
            // Fetching pauses before the permits run out; should a record
            // slip through, wait for room rather than run past the bound.
            Err(_) => match self
                .runtime
                .block_on(Arc::clone(&self.permits).acquire_owned())
            {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let cancel = CancellationToken::new();
        let (run, catch_up) = self.work.begin(partition, offset, cancel.clone());
        if catch_up {
            self.learn_finished_since(message);
        }
        let task = OrderTask {
            shared: self.shared.clone(),
            member: self.id,
            work: Arc::clone(&self.work),
            partition,
            offset,
            run,
            record,
            cancel,
            _permit: permit,
        };
        let handle = self.runtime.spawn(task.run());
        self.work
            .set_abort(partition, offset, run, handle.abort_handle());
    }

    /// Before the first order of a newly assigned partition runs: which of
    /// its uncommitted orders did a previous owner finish?
    fn learn_finished_since(&self, first: &BorrowedMessage<'_>) {
        let Some(written_ms) = first.timestamp().to_millis() else {
            return;
        };
        let since = written_ms - CLOCK_SKEW.as_millis() as i64;
        let started = Instant::now();
        match self.shared.finished_log.finished_since(since) {
            Ok(finished) => {
                tracing::debug!(
                    partition = first.partition(),
                    found = finished.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "read which orders a previous owner finished"
                );
                self.shared.handler.finished_elsewhere(finished)
            }
            Err(error) => tracing::warn!(
                %error,
                "could not read the events topic; orders a previous owner \
                 finished may finish again"
            ),
        }
    }
}

/// One order's task: runs it (again after a panic), then tells the member.
struct OrderTask {
    shared: GroupShared,
    member: MemberId,
    work: Arc<MemberWork>,
    partition: i32,
    offset: i64,
    run: u64,
    record: OrderRecord,
    cancel: CancellationToken,
    _permit: OwnedSemaphorePermit,
}

/// Tells the member an order ended, however its task ends (an abort included).
struct Ending<'a> {
    work: &'a MemberWork,
    partition: i32,
    offset: i64,
    run: u64,
    finished: bool,
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        self.work
            .end(self.partition, self.offset, self.run, self.finished);
    }
}

impl OrderTask {
    async fn run(self) {
        let mut ending = Ending {
            work: &self.work,
            partition: self.partition,
            offset: self.offset,
            run: self.run,
            finished: false,
        };
        let handler = Arc::clone(&self.shared.handler);
        let outcome = handler.run(self.record, self.member, self.cancel).await;
        if outcome == RunOutcome::Cancelled {
            self.shared.metrics.incr(Counter::HandedOver);
        }
        ending.finished = outcome == RunOutcome::Finished;
    }
}
