//! The pipeline assembled: broker, producer, gRPC server and consumer group,
//! started together and stopped in the order that loses nothing.

pub mod chaos;
mod presence;

use std::{collections::BTreeSet, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    sync::{broadcast, watch},
    task::JoinSet,
};

use crate::{
    clock::{DelayRange, SimClock, TimeScale},
    grpc::{
        tls::{TlsFiles, TlsSettings},
        Acknowledgements, Dial, GrpcError, GrpcServer, Ingest, ServerLimits,
    },
    kafka::{
        consumer::{Assignment, ConsumerGroup, GroupShared, MemberLoad, PartitionLag, StopMode},
        finished_log::{self, EventAudit, FinishedLog},
        finished_watch::FinishedWatch,
        producer::OrderProducer,
        BrokerHealth, BrokerTarget, EmbeddedBroker, KafkaConnection, KafkaOptions, KafkaSetupError,
    },
    metrics::{Metrics, MetricsSnapshot},
    order::Transition,
    sinks::{
        self,
        mirror::{MirrorError, SPOOL_MAX_BYTES},
        notify::{self, NotifyCounts, NotifyError, NotifySettings, NotifyTask},
        outage::{OutageRelay, OutageRelayError},
        Document, IndexNames, MirrorHandle, MirrorSettings, MirrorStatus, MirrorTarget, MirrorTask,
    },
};
use tokio_util::sync::CancellationToken;

use self::{
    chaos::{Chaos, ChaosError, ChaosLog},
    presence::Announcer,
};
use crate::processing::{
    flow::OrderFlow,
    handler::OrderHandler,
    ledger::{AckLedger, Completions},
    registry::OrderRegistry,
};

#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub kafka: KafkaOptions,
    /// Brokers in the embedded cluster (ignored for external brokers).
    pub embedded_brokers: i32,
    /// Where the gRPC server listens; None runs consumers only (a worker).
    pub listen: Option<SocketAddr>,
    pub limits: ServerLimits,
    pub consumers: usize,
    pub max_in_flight_per_consumer: usize,
    pub clock: SimClock,
    pub stage_delay: DelayRange,
    /// Capacity of the live transition feed; slow watchers skip ahead.
    pub transition_buffer: usize,
    /// Order ids remembered for de-duplicating redeliveries.
    pub dedup_memory: usize,
    /// Where orders and metrics are mirrored.
    pub mirror: MirrorSettings,
    /// E-mail notifications, if any.
    pub notify: Option<NotifySettings>,
    /// TLS for the gRPC server, if any.
    pub tls: Option<TlsFiles>,
    /// Reach Elasticsearch through a relay that `Chaos::ElasticDown` cuts
    /// (for scenarios with Elasticsearch outages; plain http only).
    pub elastic_outages: bool,
}

impl PipelineConfig {
    /// The defaults, on loopback: the gRPC server on an ephemeral port,
    /// three consumers, the original's 1–3 s per state at time-scale 1, a
    /// three-broker embedded cluster (if `kafka` asks for one), documents
    /// to the spool in `./orderdeck-data`. Callers override what differs.
    pub fn loopback(kafka: KafkaOptions) -> Self {
        Self {
            kafka,
            embedded_brokers: 3,
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            limits: ServerLimits {
                max_in_flight: 10_000,
                max_message_bytes: 16 * 1024,
            },
            consumers: 3,
            max_in_flight_per_consumer: 10_000,
            clock: SimClock::new(TimeScale::ORIGINAL),
            stage_delay: DelayRange::new(Duration::from_secs(1), Duration::from_secs(3)),
            transition_buffer: 4096,
            dedup_memory: 200_000,
            mirror: MirrorSettings {
                target: MirrorTarget::Spool,
                data_dir: "orderdeck-data".into(),
                names: IndexNames::default(),
                spool_max_bytes: SPOOL_MAX_BYTES,
            },
            notify: None,
            tls: None,
            elastic_outages: false,
        }
    }
}

/// What a stop left behind, for the report.
#[derive(Clone, Debug, Default)]
pub struct StopReport {
    pub sink: MirrorStatus,
    pub notifications: NotifyCounts,
    /// Acknowledged orders that did not finish, and where they are.
    pub unfinished: Unfinished,
    /// How the wait for them ended.
    pub drain: DrainEnd,
    /// The events topic read back at the stop, if asked for (`audit_at_stop`).
    pub audit: Option<EventAudit>,
}

/// Acknowledged orders a stopping process did not finish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unfinished {
    /// Gone with the embedded broker (abandoned, or past the drain deadline).
    pub lost: u64,
    /// Safe in an external Kafka, uncommitted: the group's next consumer runs them.
    pub left_in_kafka: u64,
}

impl Unfinished {
    /// `waiting` acknowledged orders, lost if only the embedded broker held them.
    fn of(waiting: usize, embedded_broker: bool) -> Self {
        let waiting = waiting as u64;
        if embedded_broker {
            Self {
                lost: waiting,
                left_in_kafka: 0,
            }
        } else {
            Self {
                lost: 0,
                left_in_kafka: waiting,
            }
        }
    }
}

/// How a drain ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DrainEnd {
    /// Every acknowledged order finished (or, on an external broker, is in Kafka).
    #[default]
    Complete,
    /// The user asked to stop waiting.
    Abandoned,
    /// The deadline passed first.
    TimedOut,
}

/// How long a stop waits for the gRPC server: open calls and watchers get
/// this long to end before they are cut.
const SERVER_STOP_LIMIT: Duration = Duration::from_secs(5);
/// How a stop is going.
#[derive(Clone, Copy, Debug)]
pub enum StopProgress<'a> {
    /// Acknowledged orders still waiting to finish.
    Orders(usize),
    /// The mirror catching up with Kafka (`lag` records to go).
    Mirror(&'a MirrorStatus),
}

/// Once every partition is owned, how long a start waits for members of
/// this process still joining the group.
const LATE_MEMBER_GRACE: Duration = Duration::from_secs(1);

/// How long a graceful [`Pipeline::shutdown`] lets the mirror catch up
/// before the rest goes to the spool.
pub const MIRROR_DRAIN_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Kafka(#[from] KafkaSetupError),
    #[error("could not create a Kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    #[error(transparent)]
    Sink(#[from] MirrorError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error(transparent)]
    Relay(#[from] OutageRelayError),
}

pub struct Pipeline {
    connection: KafkaConnection,
    producer: Arc<OrderProducer>,
    metrics: Arc<Metrics>,
    ledger: Arc<AckLedger>,
    registry: Arc<OrderRegistry>,
    transitions: broadcast::Sender<Transition>,
    stage_delay: watch::Sender<DelayRange>,
    /// The state machine, for injecting a panic into the next order.
    flow: Arc<OrderFlow>,
    group_shared: GroupShared,
    server: Option<GrpcServer>,
    tls: Option<TlsSettings>,
    consumers: Option<ConsumerGroup>,
    /// Partitions of the orders topic.
    partitions: usize,
    /// Members leaving the group, finishing their orders.
    draining: JoinSet<()>,
    sink: MirrorHandle,
    sink_task: Option<MirrorTask>,
    notify_task: Option<NotifyTask>,
    /// Ends the once-a-second tasks (throughput, announcements).
    stop_periodic: CancellationToken,
    /// None when the processes topic could not be made.
    announcer: Option<Arc<Announcer>>,
    chaos: ChaosLog,
    /// Learns from the events topic which acknowledged orders finished in
    /// other processes (only while this process acknowledges orders).
    finished_watch: Option<FinishedWatch>,
    /// Read the events topic back at the stop (see [`Pipeline::audit_at_stop`]).
    audit_at_stop: bool,
    /// In front of Elasticsearch, to cut it (with `elastic_outages`).
    elastic_relay: Option<OutageRelay>,
    // Declared last so it is dropped after every client that talks to it.
    embedded_broker: Option<EmbeddedBroker>,
}

impl Pipeline {
    pub async fn start(config: PipelineConfig) -> Result<Self, PipelineError> {
        let (feed, _) = broadcast::channel(config.transition_buffer.max(16));
        Self::start_with_feed(config, feed).await
    }

    /// Starts, announcing transitions on `feed` (subscribe before starting
    /// to see every one).
    pub async fn start_with_feed(
        config: PipelineConfig,
        transitions: broadcast::Sender<Transition>,
    ) -> Result<Self, PipelineError> {
        // Unreadable certificates fail the start before anything runs.
        let tls = match &config.tls {
            Some(files) => Some(files.load().map_err(GrpcError::from)?),
            None => None,
        };
        let (broker, bootstrap) = match &config.kafka.target {
            BrokerTarget::Embedded => {
                let broker = EmbeddedBroker::with_topics(config.embedded_brokers, &config.kafka)?;
                let bootstrap = broker.bootstrap_servers().to_owned();
                (Some(broker), bootstrap)
            }
            BrokerTarget::External(list) => (None, list.clone()),
        };
        let connection = KafkaConnection::new(bootstrap, config.kafka.clone());
        let topics = connection.ensure_topics().await?;
        let partitions = topics.partitions;

        let metrics = Arc::new(Metrics::new());
        let producer = Arc::new(OrderProducer::new(&connection)?);
        let mut mirror = config.mirror.clone();
        let elastic_relay = match &mut mirror.target {
            MirrorTarget::Elastic(elastic) if config.elastic_outages => {
                let (relay, url) = OutageRelay::start(&elastic.url).await?;
                elastic.url = url;
                Some(relay)
            }
            _ => None,
        };
        let (sink, sink_task) =
            sinks::mirror::start(&connection, Arc::clone(&producer), broker.is_some(), mirror)
                .await?;
        let (notifier, notify_task) = match config.notify.clone() {
            Some(settings) => {
                let (notifier, task) = notify::start(settings)?;
                (Some(notifier), Some(task))
            }
            None => (None, None),
        };
        let stop_periodic = CancellationToken::new();
        tokio::spawn(report_throughput(
            Arc::clone(&metrics),
            sink.clone(),
            stop_periodic.clone(),
        ));
        // An ack cannot trail its order's finish by more than a delivery timeout.
        let ledger = Arc::new(AckLedger::new(config.kafka.delivery_timeout * 2));
        let registry = OrderRegistry::new(config.dedup_memory);
        let completions = Completions {
            metrics: Arc::clone(&metrics),
            ledger: Arc::clone(&ledger),
        };
        let (stage_delay, stage_delay_rx) = watch::channel(config.stage_delay);
        let flow = Arc::new(OrderFlow {
            clock: config.clock,
            stage_delay: stage_delay_rx,
            metrics: Arc::clone(&metrics),
            transitions: transitions.clone(),
            events: Arc::clone(&producer),
            completions: completions.clone(),
            notifier,
            injected_panics: Default::default(),
        });
        let handler = Arc::new(OrderHandler {
            flow: Arc::clone(&flow),
            registry: Arc::clone(&registry),
            metrics: Arc::clone(&metrics),
        });
        let group_shared = GroupShared {
            connection: connection.clone(),
            handler,
            finished_log: Arc::new(FinishedLog::new(connection.clone())),
            metrics: Arc::clone(&metrics),
            max_in_flight_per_member: config.max_in_flight_per_consumer,
            assigned: Arc::new(watch::channel(Assignment::new()).0),
            paused: Arc::new(watch::channel(false).0),
            lag: Arc::default(),
            orders_written: broker.is_some().then(|| producer.orders_written()),
        };
        let consumers = ConsumerGroup::start(group_shared.clone(), config.consumers)?;
        // On the embedded broker this process is the whole group: every
        // Finished event is its own, so there is nothing to follow.
        let finished_watch = match config.listen {
            Some(_) if broker.is_none() => {
                Some(watch_finished_orders(&connection, completions, Arc::clone(&registry)).await?)
            }
            _ => None,
        };
        let server = match config.listen {
            Some(listen) => {
                let ingest = Arc::new(Ingest::new(
                    Arc::clone(&producer),
                    Arc::clone(&metrics),
                    Arc::clone(&ledger) as Arc<dyn Acknowledgements>,
                    config.limits,
                    sink.clone(),
                ));
                Some(GrpcServer::start(listen, ingest, transitions.clone(), tls.as_ref()).await?)
            }
            None => None,
        };
        let announcer = Arc::new(Announcer {
            producer: Arc::clone(&producer),
            metrics: Arc::clone(&metrics),
            registry: Arc::clone(&registry),
            assigned: Arc::clone(&group_shared.assigned),
            group: connection.options.group.clone(),
            server: server.as_ref().map(|s| s.local_addr().to_string()),
            started_at_ms: crate::clock::unix_millis_now(),
        });
        let announcer = topics.announce.then(|| {
            tokio::spawn(Arc::clone(&announcer).run(stop_periodic.clone()));
            announcer
        });
        Ok(Self {
            connection,
            producer,
            metrics,
            ledger,
            registry,
            transitions,
            stage_delay,
            flow,
            group_shared,
            server,
            tls,
            consumers: Some(consumers),
            partitions,
            draining: JoinSet::new(),
            sink,
            sink_task: Some(sink_task),
            notify_task,
            stop_periodic,
            announcer,
            chaos: ChaosLog::default(),
            finished_watch,
            audit_at_stop: false,
            elastic_relay,
            embedded_broker: broker,
        })
    }

    /// Waits until the consumer group owns every partition of the orders
    /// topic, so the first orders are not timed waiting for a group join.
    /// Returns false if that did not happen within `timeout`.
    pub async fn wait_until_consuming(&self, timeout: Duration) -> bool {
        if self.consumer_count() == 0 {
            return true;
        }
        let mut assigned = self.group_shared.assigned.subscribe();
        let mut owned_since = None;
        let waited = tokio::time::timeout(timeout, async {
            loop {
                let now = assigned.borrow_and_update().clone();
                if now.values().map(BTreeSet::len).sum::<usize>() < self.partitions {
                    owned_since = None;
                } else if self.group_complete(&now)
                    || owned_since
                        .get_or_insert_with(tokio::time::Instant::now)
                        .elapsed()
                        >= LATE_MEMBER_GRACE
                {
                    // A member still joining after the grace rebalances the
                    // group later, safely (hand-over), rather than hold the start.
                    return true;
                }
                tokio::select! {
                    changed = assigned.changed() => if changed.is_err() { return false },
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        });
        waited.await.unwrap_or(false)
    }

    /// With every partition owned: on the embedded broker (where this
    /// process is the whole group), every member owns some, so the group
    /// has formed and no member joining late will rebalance it under load.
    fn group_complete(&self, assigned: &Assignment) -> bool {
        let members = self.consumer_count();
        let owning = assigned.values().filter(|p| !p.is_empty()).count();
        !self.broker_is_embedded() || owning >= members.min(self.partitions)
    }

    /// The gRPC server's address, if this pipeline runs one.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(GrpcServer::local_addr)
    }

    /// How clients reach this pipeline's server (https with TLS), if it runs one.
    pub fn dial(&self) -> Option<Dial> {
        self.server.as_ref().map(|server| Dial {
            url: server.url(),
            tls: self.tls.as_ref().map(TlsSettings::client),
        })
    }

    pub fn broker(&self) -> BrokerTarget {
        self.connection.options.target.clone()
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.connection.bootstrap
    }

    pub fn broker_health(&self) -> watch::Receiver<BrokerHealth> {
        self.connection.health.subscribe()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// A live feed of every transition this process drives.
    pub fn subscribe_transitions(&self) -> broadcast::Receiver<Transition> {
        self.transitions.subscribe()
    }

    pub fn ledger(&self) -> Arc<AckLedger> {
        Arc::clone(&self.ledger)
    }

    /// The longest an acknowledged order can legitimately take: a delivery
    /// timeout, the slowest trip through the states, and a margin for a
    /// consumer restart. Past it an order is overdue (at risk of being lost).
    pub fn overdue_after(&self) -> Duration {
        let slowest_trip = self
            .flow
            .clock
            .scaled(self.stage_delay.borrow().max * crate::order::State::TIMED.len() as u32);
        self.connection.options.delivery_timeout + slowest_trip + Duration::from_secs(30)
    }

    /// Acknowledged orders (by id) that have not finished yet.
    pub fn unfinished_acknowledged(&self) -> usize {
        self.ledger.unfinished()
    }

    /// Orders running the state machine in this process right now.
    pub fn in_flight(&self) -> usize {
        self.registry.in_flight()
    }

    /// The sink's counters and health.
    pub fn sink_status(&self) -> MirrorStatus {
        self.sink.status().borrow().clone()
    }

    pub fn set_stage_delay(&self, delay: DelayRange) {
        self.stage_delay.send_replace(delay);
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.as_ref().map_or(0, ConsumerGroup::len)
    }

    /// Each consumer member's partitions, lag and orders in flight.
    pub fn consumer_loads(&self) -> Vec<MemberLoad> {
        self.consumers
            .as_ref()
            .map(ConsumerGroup::loads)
            .unwrap_or_default()
    }

    /// Lag of every partition the group owns.
    pub fn partition_lag(&self) -> Vec<PartitionLag> {
        self.group_shared.lag.partitions()
    }

    pub fn add_consumer(&mut self) -> Result<(), PipelineError> {
        match &mut self.consumers {
            Some(group) => group.add_member()?,
            None => self.consumers = Some(ConsumerGroup::start(self.group_shared.clone(), 1)?),
        }
        Ok(())
    }

    /// Drains the newest consumer member out of the group, in the
    /// background; shutdown waits for it.
    pub fn remove_consumer(&mut self) {
        if let Some(drain) = self
            .consumers
            .as_mut()
            .and_then(|group| group.remove_member(StopMode::Drain))
        {
            self.draining.spawn(drain);
        }
    }

    /// Stops or restarts fetching; orders in flight finish either way.
    pub fn pause_consumers(&self, paused: bool) {
        self.group_shared.paused.send_replace(paused);
    }

    pub fn consumers_paused(&self) -> bool {
        *self.group_shared.paused.borrow()
    }

    /// Injects a fault: broker faults need the embedded broker; a consumer
    /// kill works anywhere (a replacement member joins at once, as a
    /// supervisor would restart a crashed task).
    pub fn inject(&mut self, chaos: Chaos) -> Result<(), ChaosError> {
        let fault = chaos.broker_fault(&self.connection.options.topic, self.partitions as i32);
        match (chaos, fault) {
            (_, Some(fault)) => self
                .embedded_broker
                .as_ref()
                .ok_or(ChaosError::NeedsEmbeddedBroker)?
                .inject(fault)
                .map_err(|e| ChaosError::Kafka(e.to_string()))?,
            (Chaos::PanicOrder, None) => self.flow.inject_panic(),
            (Chaos::ElasticDown | Chaos::ElasticUp, None) => self
                .elastic_relay
                .as_ref()
                .ok_or(ChaosError::NeedsElasticRelay)?
                .set_cut(chaos == Chaos::ElasticDown),
            (_, None) => {
                let crash = self
                    .consumers
                    .as_mut()
                    .and_then(|group| group.remove_member(StopMode::Abort))
                    .ok_or(ChaosError::NoConsumers)?;
                self.draining.spawn(crash);
                self.add_consumer()
                    .map_err(|e| ChaosError::Kafka(e.to_string()))?;
            }
        }
        self.chaos.record(chaos);
        Ok(())
    }

    /// The faults in force and how many were injected.
    pub fn chaos(&self) -> ChaosLog {
        self.chaos.clone()
    }

    /// Stops every consumer, then starts `members` fresh ones in the same group.
    pub async fn restart_consumers(
        &mut self,
        mode: StopMode,
        members: usize,
    ) -> Result<(), PipelineError> {
        if let Some(group) = self.consumers.take() {
            group.stop(mode).await;
        }
        self.consumers = Some(ConsumerGroup::start(self.group_shared.clone(), members)?);
        Ok(())
    }

    /// Stops the gRPC server: no new orders are acknowledged. Open calls
    /// and watch streams get a short while to end, then are cut.
    async fn stop_accepting(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown(SERVER_STOP_LIMIT).await;
        }
    }

    /// Whether orders left in Kafka die with this process.
    fn broker_is_embedded(&self) -> bool {
        self.embedded_broker.is_some()
    }

    /// Before a stop: on the embedded broker, every acknowledged order
    /// exists only in this process, so consumers resume (one joins if none
    /// runs) and the drain waits until each has finished, `abandon` is
    /// cancelled, or `limit` passes. `progress` hears the count still
    /// waiting. On an external broker the orders are safe in Kafka and
    /// nothing is waited for here.
    async fn drain_acknowledged(
        &mut self,
        limit: Duration,
        abandon: &CancellationToken,
        mut progress: impl FnMut(usize),
    ) -> DrainEnd {
        self.stop_accepting().await;
        if !self.broker_is_embedded() {
            progress(0);
            return DrainEnd::Complete;
        }
        self.pause_consumers(false);
        if self.consumer_count() == 0 {
            if let Err(error) = self.add_consumer() {
                tracing::error!(%error, "no consumer could join to drain the orders");
            }
        }
        let deadline = tokio::time::Instant::now() + limit;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            let waiting = self.ledger.unfinished();
            progress(waiting);
            if waiting == 0 {
                return DrainEnd::Complete;
            }
            tokio::select! {
                _ = abandon.cancelled() => return DrainEnd::Abandoned,
                _ = tokio::time::sleep_until(deadline) => return DrainEnd::TimedOut,
                _ = tick.tick() => {}
            }
        }
    }

    /// Stops in the order that loses nothing: no new orders, then every
    /// in-flight order finishes and is committed, then the producer flushes,
    /// then the mirror catches up with Kafka (for up to `mirror_limit`, then
    /// the rest goes to the spool). With `StopMode::Abort` no order is
    /// waited for (a second signal). `abandon` stops the mirror at once.
    /// Returns what the sink and the notifications did, and what is left.
    async fn shutdown_with(
        mut self,
        mode: StopMode,
        mirror_limit: Duration,
        abandon: &CancellationToken,
        mirror_progress: impl FnMut(&MirrorStatus),
    ) -> StopReport {
        self.stop_accepting().await;
        if let Some(group) = self.consumers.take() {
            group.stop(mode).await;
            tracing::info!("consumers stopped");
        }
        match mode {
            StopMode::Drain => while self.draining.join_next().await.is_some() {},
            StopMode::Abort => self.draining.abort_all(),
        }
        self.finished_watch.take();
        self.stop_periodic.cancel();
        // Rides on the flush below: watchers see this process stopped.
        if let Some(announcer) = &self.announcer {
            announcer.announce(true);
        }
        let notifications = match self.notify_task.take() {
            Some(task) => task.close().await,
            None => NotifyCounts::default(),
        };
        let producer = Arc::clone(&self.producer);
        let flush_limit = match mode {
            StopMode::Drain => Duration::from_secs(10),
            StopMode::Abort => Duration::from_secs(1),
        };
        let flushed = tokio::task::spawn_blocking(move || producer.flush(flush_limit)).await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(%error, "producer flush incomplete at shutdown");
        }
        // Everything is in Kafka now: the mirror's last records are known.
        tracing::info!("producer flushed; the mirror catches up");
        let sink = match self.sink_task.take() {
            Some(task) => task.close(mirror_limit, abandon, mirror_progress).await,
            None => self.sink_status(),
        };
        tracing::info!(left = sink.left, "mirror stopped");
        let unfinished = Unfinished::of(self.ledger.unfinished(), self.broker_is_embedded());
        let audit = if self.audit_at_stop {
            self.audit_events().await
        } else {
            None
        };
        drop(self);
        StopReport {
            sink,
            notifications,
            unfinished,
            drain: DrainEnd::Complete,
            audit,
        }
    }

    /// At the stop, once every event is in Kafka (and before the embedded
    /// broker goes), read the events topic back and count Finished events
    /// by order id: what an outsider sees, for `finished_twice` gates.
    pub fn audit_at_stop(&mut self) {
        self.audit_at_stop = true;
    }

    async fn audit_events(&self) -> Option<EventAudit> {
        let connection = self.connection.clone();
        match tokio::task::spawn_blocking(move || finished_log::audit(&connection)).await {
            Ok(Ok(audit)) => Some(audit),
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not read the events topic back");
                None
            }
            Err(error) => {
                tracing::warn!(%error, "the events audit failed");
                None
            }
        }
    }

    /// The whole stop as a user asks for it: drain (see
    /// `Pipeline::drain_acknowledged`), then shut down; gracefully if the
    /// drain completed, abandoning otherwise. `abandon` during the final
    /// stop ends the wait too, with the orders still waiting counted.
    /// `progress` hears the orders still waiting, then the mirror catching up.
    pub async fn stop(
        mut self,
        limit: Duration,
        abandon: &CancellationToken,
        mut progress: impl FnMut(StopProgress<'_>),
    ) -> StopReport {
        let drain = self
            .drain_acknowledged(limit, abandon, |waiting| {
                progress(StopProgress::Orders(waiting))
            })
            .await;
        let mode = match drain {
            DrainEnd::Complete => StopMode::Drain,
            DrainEnd::Abandoned | DrainEnd::TimedOut => StopMode::Abort,
        };
        // Orders abandoned: the mirror only spools what is in Kafka.
        let mirror_limit = match mode {
            StopMode::Drain => limit,
            StopMode::Abort => Duration::ZERO,
        };
        let (ledger, embedded, sink) =
            (self.ledger(), self.broker_is_embedded(), self.sink.status());
        let stopped = tokio::select! {
            stopped = self.shutdown_with(mode, mirror_limit, abandon, |sink| {
                progress(StopProgress::Mirror(sink))
            }) => stopped,
            _ = abandon.cancelled(), if mode == StopMode::Drain => {
                let mut sink = sink.borrow().clone();
                sink.left = sink.lag;
                StopReport {
                    sink,
                    unfinished: Unfinished::of(ledger.unfinished(), embedded),
                    ..StopReport::default()
                }
            }
        };
        StopReport { drain, ..stopped }
    }

    /// A graceful stop: see `Pipeline::shutdown_with`; the mirror gets
    /// [`MIRROR_DRAIN_LIMIT`] to catch up.
    pub async fn shutdown(self) -> StopReport {
        self.shutdown_with(
            StopMode::Drain,
            MIRROR_DRAIN_LIMIT,
            &CancellationToken::new(),
            |_| {},
        )
        .await
    }
}

/// Follows the events topic: an order read back as finished is skipped if
/// redelivered here, and counted where it belongs (see
/// [`Completions::seen`]); one still running here counts itself.
async fn watch_finished_orders(
    connection: &KafkaConnection,
    completions: Completions,
    registry: Arc<OrderRegistry>,
) -> Result<FinishedWatch, PipelineError> {
    let connection = connection.clone();
    tokio::task::spawn_blocking(move || {
        FinishedWatch::start(&connection, move |event| {
            if registry.note_finished(event.order_id) {
                completions.seen(event);
            }
        })
    })
    .await
    .map_err(|_| PipelineError::Client(rdkafka::error::KafkaError::Canceled))?
    .map_err(PipelineError::Client)
}

/// Once a second, the pipeline's throughput as a metric document.
async fn report_throughput(metrics: Arc<Metrics>, sink: MirrorHandle, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = metrics.get(crate::metrics::Counter::Finished);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = metrics.get(crate::metrics::Counter::Finished);
        sink.publish(&Document::throughput((now - last) as f64));
        last = now;
    }
}
