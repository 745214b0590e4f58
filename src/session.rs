//! A live pipeline that can be steered while it runs: what the terminal UI
//! drives. It takes commands over a channel and publishes its status as a
//! watch value; it knows nothing about terminals. [`remote`] is the same
//! for clients alone, against a server elsewhere.

pub mod remote;

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{broadcast, mpsc, watch},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use crate::{
    clients::{ClientPool, Pacer},
    clock::{unix_millis_now, DelayRange, SimClock},
    kafka::{
        consumer::{MemberLoad, PartitionLag},
        finished_log::EventAudit,
        BrokerHealth,
    },
    load::{LoadLevel, LoadPreset},
    metrics::{per_second, Metrics, MetricsSnapshot, PhaseLatency, WindowStats},
    order::{Order, Transition},
    pipeline::{
        chaos::{Chaos, ChaosLog},
        Pipeline, PipelineConfig, StopProgress, Unfinished,
    },
    processing::ledger::LedgerTally,
    sinks::{
        elastic::ElasticConfig, kibana::import_saved_objects, spool::dead_letters_named,
        MirrorState, MirrorStatus,
    },
};
use futures::FutureExt;

/// What the user (or a scenario) asked for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Command {
    ToggleClients,
    SetLoad(LoadLevel),
    AddClient,
    RemoveClient,
    /// Clients that run while the simulation is on (at least one).
    SetClients(usize),
    /// Orders per second over all clients; None = as fast as they can.
    SetRate(Option<f64>),
    AddConsumer,
    RemoveConsumer,
    /// Adds or removes members until the group has this many.
    SetConsumers(usize),
    TogglePause,
    SetPaused(bool),
    /// A scenario's phase ends: its latencies are published in
    /// `SessionStatus::closed_phase` and the next phase's begin.
    ClosePhase,
    /// Import the Kibana dashboard (with --kibana).
    ImportDashboard,
    /// Break something on purpose (the chaos menu).
    Inject(Chaos),
    /// Stop clients, drain in-flight orders, commit, flush.
    Shutdown,
    /// During a shutdown: stop waiting for orders (on the embedded broker,
    /// they are lost).
    Abandon,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    Starting,
    Running,
    /// Clients stopped; the acknowledged orders that only the embedded
    /// broker holds are finishing.
    Draining {
        waiting: u64,
    },
    /// Orders in flight finishing, offsets committed, the producer flushed.
    Stopping,
    /// The orders are done; the mirror catches up with Kafka.
    Mirroring {
        behind: u64,
    },
    Stopped,
    Failed(String),
}

/// One second of the pipeline, for charts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Increases by one per sample, so a reader sees each once.
    pub seq: u64,
    pub at_unix_ms: i64,
    pub acknowledged_per_s: f64,
    pub finished_per_s: f64,
    pub window: WindowStats,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SessionStatus {
    pub phase: Phase,
    /// `embedded` or the bootstrap list.
    pub broker: String,
    pub health: BrokerHealth,
    pub load: LoadLevel,
    /// Clients that run while the simulation is on.
    pub clients: usize,
    pub clients_running: bool,
    pub rate: Option<f64>,
    pub stage_delay: DelayRange,
    pub consumers: usize,
    pub consumers_paused: bool,
    pub metrics: MetricsSnapshot,
    pub in_flight: usize,
    pub last_sample: Option<Sample>,
    pub partitions: Vec<PartitionLag>,
    pub members: Vec<MemberLoad>,
    pub sink: MirrorStatus,
    /// Faults injected from the chaos menu, and those in force.
    pub chaos: ChaosLog,
    /// Acknowledged orders: finished, waiting, overdue.
    pub reconciliation: LedgerTally,
    /// The latest thing worth telling the user (an error, a change).
    pub notice: Option<String>,
    /// Once stopped: acknowledged orders that did not finish, and where.
    pub unfinished: Unfinished,
    /// Latencies since the current scenario phase began (kept up to date
    /// once a scenario closed its first phase).
    pub phase_latency: PhaseLatency,
    /// Phases closed so far, and the last one's latencies.
    pub closed_phase: (u64, PhaseLatency),
    /// Once stopped, if asked for: the events topic read back.
    pub audit: Option<EventAudit>,
}

impl SessionStatus {
    pub fn new(broker: String, load: LoadLevel, preset: LoadPreset, consumers: usize) -> Self {
        Self {
            phase: Phase::Starting,
            broker,
            health: BrokerHealth::Connecting,
            load,
            clients: preset.clients,
            clients_running: false,
            rate: preset.rate,
            stage_delay: preset.stage_delay,
            consumers,
            consumers_paused: false,
            metrics: MetricsSnapshot::default(),
            in_flight: 0,
            last_sample: None,
            partitions: Vec::new(),
            members: Vec::new(),
            sink: MirrorStatus::default(),
            chaos: ChaosLog::default(),
            reconciliation: LedgerTally::default(),
            notice: None,
            unfinished: Unfinished::default(),
            phase_latency: PhaseLatency::default(),
            closed_phase: (0, PhaseLatency::default()),
            audit: None,
        }
    }
}

pub struct SessionSettings {
    pub pipeline: PipelineConfig,
    pub load: LoadLevel,
    pub preset: LoadPreset,
    pub orders: Arc<[Order]>,
    pub clock: SimClock,
    /// Where `e` imports the dashboard, with the credentials to use.
    pub kibana: Option<(String, ElasticConfig)>,
    /// How long a quit waits for acknowledged orders on the embedded broker.
    pub drain_limit: Duration,
    /// Read the events topic back at the stop (gates on `finished_twice`).
    pub audit_at_stop: bool,
}

pub struct SessionHandle {
    pub commands: mpsc::Sender<Command>,
    pub status: watch::Receiver<SessionStatus>,
    /// Subscribe for the live transition feed.
    pub transitions: broadcast::Sender<Transition>,
    task: JoinHandle<()>,
}

impl SessionHandle {
    /// Waits for the session to end (after a Shutdown command).
    pub async fn finished(self) {
        if let Err(error) = self.task.await {
            tracing::error!(%error, "session task failed");
        }
    }
}

const STATUS_PERIOD: Duration = Duration::from_millis(250);
const SAMPLE_PERIOD: Duration = Duration::from_secs(1);
const GROUP_JOIN_TIMEOUT: Duration = Duration::from_secs(30);

pub fn spawn(settings: SessionSettings) -> SessionHandle {
    let initial = SessionStatus::new(
        settings.pipeline.kafka.target.describe(),
        settings.load,
        settings.preset,
        settings.pipeline.consumers,
    );
    let (status_tx, status) = watch::channel(initial.clone());
    let (commands, inbox) = mpsc::channel(64);
    let (transitions, _) = broadcast::channel(settings.pipeline.transition_buffer.max(16));
    let task = tokio::spawn(run(
        settings,
        initial,
        status_tx,
        inbox,
        transitions.clone(),
    ));
    SessionHandle {
        commands,
        status,
        transitions,
        task,
    }
}

async fn run(
    settings: SessionSettings,
    mut status: SessionStatus,
    publish: watch::Sender<SessionStatus>,
    mut inbox: mpsc::Receiver<Command>,
    feed: broadcast::Sender<Transition>,
) {
    let pipeline = match Pipeline::start_with_feed(settings.pipeline, feed).await {
        Ok(mut pipeline) => {
            if settings.audit_at_stop {
                pipeline.audit_at_stop();
            }
            pipeline
        }
        Err(error) => {
            status.phase = Phase::Failed(error.to_string());
            publish.send_replace(status);
            // Stay until the user has read it and quits.
            while let Some(command) = inbox.recv().await {
                if command == Command::Shutdown {
                    break;
                }
            }
            return;
        }
    };
    // Clients start once the group consumes, so no order is timed waiting for it.
    if !pipeline.wait_until_consuming(GROUP_JOIN_TIMEOUT).await {
        status.notice = Some("the consumer group has not got every partition yet".to_owned());
    }
    let server = pipeline.dial().expect("the session serves gRPC");
    let stop_clients = CancellationToken::new();
    let pacer = Arc::new(Pacer::new(status.rate, settings.clock, None));
    let pool = ClientPool::new(
        &server,
        settings.orders,
        pacer,
        Arc::clone(pipeline.metrics()),
        stop_clients.clone(),
    )
    .expect("a socket address makes a valid endpoint");
    let mut live = Live {
        pipeline,
        pool,
        status,
        sampler: Sampler::default(),
        kibana: settings.kibana,
        export: None,
    };
    live.status.phase = Phase::Running;
    live.apply(Command::ToggleClients);
    live.refresh();
    publish.send_replace(live.status.clone());

    let mut status_tick = tokio::time::interval(STATUS_PERIOD);
    let mut sample_tick = tokio::time::interval(SAMPLE_PERIOD);
    loop {
        tokio::select! {
            command = inbox.recv() => match command {
                Some(Command::Shutdown) | None => break,
                Some(command) => live.apply(command),
            },
            _ = sample_tick.tick() => live.sample(),
            _ = status_tick.tick() => {}
        }
        live.refresh();
        publish.send_replace(live.status.clone());
    }

    live.pool.stop_all();
    stop_clients.cancel();
    let Live {
        pipeline,
        mut status,
        ..
    } = live;
    // A second quit abandons whatever is still being waited for.
    let abandon = CancellationToken::new();
    let abandon_on_command = abandon.clone();
    tokio::spawn(async move {
        while let Some(command) = inbox.recv().await {
            if command == Command::Abandon {
                abandon_on_command.cancel();
                return;
            }
        }
    });
    let metrics = Arc::clone(pipeline.metrics());
    let ledger = pipeline.ledger();
    let stopped = pipeline
        .stop(settings.drain_limit, &abandon, |progress| {
            status.phase = match progress {
                StopProgress::Orders(0) => Phase::Stopping,
                StopProgress::Orders(waiting) => Phase::Draining {
                    waiting: waiting as u64,
                },
                StopProgress::Mirror(sink) => {
                    status.sink = sink.clone();
                    Phase::Mirroring { behind: sink.lag }
                }
            };
            status.clients_running = false;
            status.metrics = metrics.snapshot();
            publish.send_replace(status.clone());
        })
        .await;
    status.unfinished = stopped.unfinished;
    status.audit = stopped.audit;
    status.metrics = metrics.snapshot();
    status.reconciliation = ledger.tally(Duration::MAX);
    status.in_flight = 0;
    status.clients_running = false;
    status.phase = Phase::Stopped;
    publish.send_replace(status);
}

/// Turns snapshots a second apart into chart samples.
#[derive(Default)]
struct Sampler {
    previous: Option<MetricsSnapshot>,
    seq: u64,
}

impl Sampler {
    /// One sample: rates since the previous snapshot (`now` counts
    /// acknowledgements as its session does) and the latencies of `window`.
    fn sample(&mut self, now: MetricsSnapshot, window: WindowStats) -> Sample {
        let (acknowledged_per_s, finished_per_s) = match &self.previous {
            Some(before) => {
                let span = now.elapsed.saturating_sub(before.elapsed);
                (
                    per_second(now.counts.acknowledged - before.counts.acknowledged, span),
                    per_second(now.counts.finished - before.counts.finished, span),
                )
            }
            None => (0.0, 0.0),
        };
        self.seq += 1;
        self.previous = Some(now);
        Sample {
            seq: self.seq,
            at_unix_ms: unix_millis_now(),
            acknowledged_per_s,
            finished_per_s,
            window,
        }
    }
}

/// The commands only a pipeline in this process can carry out: a load
/// driving a server elsewhere refuses them.
#[derive(Clone, Copy, Debug, PartialEq)]
enum PipelineCommand {
    AddConsumer,
    RemoveConsumer,
    SetConsumers(usize),
    TogglePause,
    SetPaused(bool),
    ImportDashboard,
    Inject(Chaos),
}

/// Carries out the commands that steer the clients, the same wherever they
/// run (a session, a load), and returns what is left for a pipeline. A new
/// load level sets the clients and the rate here; the caller adds what else
/// it means. Shutdown and Abandon are the session loop's: nothing here.
fn steer_clients(
    status: &mut SessionStatus,
    pool: &mut ClientPool,
    metrics: &Metrics,
    command: Command,
) -> Option<PipelineCommand> {
    match command {
        Command::ToggleClients => {
            status.clients_running = !status.clients_running;
            let clients = if status.clients_running {
                status.clients
            } else {
                0
            };
            pool.resize(clients);
        }
        Command::SetLoad(level) => {
            let preset = level.preset();
            status.load = level;
            status.clients = preset.clients;
            status.rate = preset.rate;
            pool.pacer().set_rate(preset.rate);
            if status.clients_running {
                pool.resize(preset.clients);
            }
        }
        Command::AddClient | Command::RemoveClient | Command::SetClients(_) => {
            status.clients = match command {
                Command::AddClient => status.clients + 1,
                Command::SetClients(clients) => clients.max(1),
                _ => status.clients.saturating_sub(1).max(1),
            };
            if status.clients_running {
                pool.resize(status.clients);
            }
        }
        Command::SetRate(rate) => {
            status.rate = rate;
            pool.pacer().set_rate(rate);
        }
        Command::ClosePhase => {
            let closed = metrics.take_phase();
            status.closed_phase = (status.closed_phase.0 + 1, closed);
        }
        Command::AddConsumer => return Some(PipelineCommand::AddConsumer),
        Command::RemoveConsumer => return Some(PipelineCommand::RemoveConsumer),
        Command::SetConsumers(wanted) => return Some(PipelineCommand::SetConsumers(wanted)),
        Command::TogglePause => return Some(PipelineCommand::TogglePause),
        Command::SetPaused(paused) => return Some(PipelineCommand::SetPaused(paused)),
        Command::ImportDashboard => return Some(PipelineCommand::ImportDashboard),
        Command::Inject(chaos) => return Some(PipelineCommand::Inject(chaos)),
        Command::Shutdown | Command::Abandon => {}
    }
    None
}

struct Live {
    pipeline: Pipeline,
    pool: ClientPool,
    status: SessionStatus,
    sampler: Sampler,
    kibana: Option<(String, ElasticConfig)>,
    /// A dashboard import in progress; its result becomes a notice.
    export: Option<JoinHandle<String>>,
}

impl Live {
    fn apply(&mut self, command: Command) {
        let status = &mut self.status;
        let Some(for_pipeline) =
            steer_clients(status, &mut self.pool, self.pipeline.metrics(), command)
        else {
            if let Command::SetLoad(level) = command {
                status.stage_delay = level.preset().stage_delay;
                self.pipeline.set_stage_delay(status.stage_delay);
                status.notice = Some(format!("load set to {level}"));
            }
            return;
        };
        match for_pipeline {
            PipelineCommand::SetConsumers(wanted) => {
                while self.pipeline.consumer_count() > wanted {
                    self.pipeline.remove_consumer();
                }
                while self.pipeline.consumer_count() < wanted {
                    if let Err(error) = self.pipeline.add_consumer() {
                        status.notice = Some(format!("could not add a consumer: {error}"));
                        break;
                    }
                }
            }
            PipelineCommand::SetPaused(paused) => self.pipeline.pause_consumers(paused),
            PipelineCommand::AddConsumer => {
                if let Err(error) = self.pipeline.add_consumer() {
                    status.notice = Some(format!("could not add a consumer: {error}"));
                }
            }
            PipelineCommand::RemoveConsumer => self.pipeline.remove_consumer(),
            PipelineCommand::TogglePause => {
                let paused = !self.pipeline.consumers_paused();
                self.pipeline.pause_consumers(paused);
                status.notice = Some(if paused {
                    "consumers paused: orders wait in Kafka".to_owned()
                } else {
                    "consumers resumed".to_owned()
                });
            }
            PipelineCommand::ImportDashboard => match (&self.kibana, &self.export) {
                (_, Some(_)) => status.notice = Some("an export is already running".to_owned()),
                (None, None) => {
                    status.notice =
                        Some("start orderdeck with --kibana URL to export the dashboard".to_owned())
                }
                (Some((url, auth)), None) => {
                    let (url, auth) = (url.clone(), auth.clone());
                    status.notice = Some(format!("exporting the dashboard to {url}…"));
                    self.export = Some(tokio::spawn(async move {
                        match import_saved_objects(&url, &auth).await {
                            Ok(n) => format!(
                                "Kibana: imported {n} saved objects (dashboard “orderdeck”)"
                            ),
                            Err(error) => format!("Kibana export failed: {error}"),
                        }
                    }));
                }
            },
            PipelineCommand::Inject(chaos) => {
                status.notice = Some(match self.pipeline.inject(chaos) {
                    Ok(()) => format!("chaos: {chaos}"),
                    Err(error) => format!("chaos refused: {error}"),
                });
            }
        }
    }

    /// One chart sample: rates over the last period and the latencies
    /// recorded in it.
    fn sample(&mut self) {
        let now = self.pipeline.snapshot();
        let window = self.pipeline.metrics().take_window();
        self.status.last_sample = Some(self.sampler.sample(now, window));
    }

    fn refresh(&mut self) {
        let status = &mut self.status;
        status.metrics = self.pipeline.snapshot();
        // Only a scenario reads it (its first ClosePhase starts the phases).
        if status.closed_phase.0 > 0 {
            status.phase_latency = self.pipeline.metrics().phase_latency();
        }
        let health = self.pipeline.broker_health().borrow().clone();
        if let (BrokerHealth::Down(reason), false) = (&health, status.health == health) {
            status.notice = Some(format!("Kafka is unreachable: {reason}"));
        }
        status.health = health;
        status.consumers = self.pipeline.consumer_count();
        status.consumers_paused = self.pipeline.consumers_paused();
        status.in_flight = self.pipeline.in_flight();
        status.reconciliation = self.pipeline.ledger().tally(self.pipeline.overdue_after());
        status.chaos = self.pipeline.chaos();
        status.partitions = self.pipeline.partition_lag();
        status.members = self.pipeline.consumer_loads();
        let sink = self.pipeline.sink_status();
        if sink.dead_lettered > status.sink.dead_lettered {
            // Refused documents are news: say why, and where they are.
            status.notice = Some(format!(
                "Elasticsearch refused {} documents: {} (kept in {})",
                sink.dead_lettered,
                sink.failures.first().map_or("", String::as_str),
                dead_letters_named(sink.dead_letter_file.as_deref())
            ));
        }
        if sink.missed > status.sink.missed {
            status.notice = Some(format!(
                "The broker deleted {} records before the mirror read them: the mirror fell \
                 more than 5 MiB behind on the embedded broker (listed in {})",
                sink.missed,
                dead_letters_named(sink.dead_letter_file.as_deref())
            ));
        }
        if let (MirrorState::Stopped(reason), false) = (
            &sink.state,
            matches!(status.sink.state, MirrorState::Stopped(_)),
        ) {
            status.notice = Some(format!("The mirror stopped: {reason}"));
        }
        status.sink = sink;
        if self.export.as_ref().is_some_and(JoinHandle::is_finished) {
            if let Some(outcome) = self.export.take().and_then(|task| task.now_or_never()) {
                status.notice =
                    Some(outcome.unwrap_or_else(|e| format!("Kibana export failed: {e}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TimeScale;

    /// Pipeline commands pass through untouched, for a pipeline to carry
    /// out (or a load to refuse); the clients' own are carried out here.
    #[tokio::test]
    async fn the_clients_take_their_commands_and_leave_the_pipelines() {
        let metrics = Arc::new(Metrics::new());
        let pacer = Arc::new(Pacer::new(
            None,
            SimClock::new(TimeScale::new(0.0).unwrap()),
            None,
        ));
        let mut pool = ClientPool::new(
            &"http://127.0.0.1:9".to_owned().into(),
            Arc::from(Vec::new()),
            pacer,
            Arc::clone(&metrics),
            CancellationToken::new(),
        )
        .unwrap();
        let level = LoadLevel::Low;
        let mut status = SessionStatus::new("embedded".to_owned(), level, level.preset(), 3);
        let before = status.clone();
        for (command, left) in [
            (Command::AddConsumer, PipelineCommand::AddConsumer),
            (Command::RemoveConsumer, PipelineCommand::RemoveConsumer),
            (Command::SetConsumers(5), PipelineCommand::SetConsumers(5)),
            (Command::TogglePause, PipelineCommand::TogglePause),
            (Command::SetPaused(true), PipelineCommand::SetPaused(true)),
            (Command::ImportDashboard, PipelineCommand::ImportDashboard),
            (
                Command::Inject(Chaos::KillConsumer),
                PipelineCommand::Inject(Chaos::KillConsumer),
            ),
        ] {
            assert_eq!(
                steer_clients(&mut status, &mut pool, &metrics, command),
                Some(left)
            );
        }
        assert_eq!(status, before, "the clients' side is untouched");

        for command in [
            Command::SetRate(Some(250.0)),
            Command::SetClients(4),
            Command::Shutdown,
            Command::Abandon,
        ] {
            assert_eq!(
                steer_clients(&mut status, &mut pool, &metrics, command),
                None
            );
        }
        assert_eq!((status.rate, status.clients), (Some(250.0), 4));
    }
}
