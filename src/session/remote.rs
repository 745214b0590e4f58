//! A session without a pipeline: simulated clients against a server that
//! runs elsewhere (`orderdeck load`), steered by the same commands and
//! publishing the same status as a session, so a scenario's runner plays
//! on it and a screen watches it. With the deployment's Kafka it follows
//! each acknowledged order to its Finished event on the events topic.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{
    steer_clients, Command, Phase, Sampler, SessionHandle, SessionStatus, SAMPLE_PERIOD,
    STATUS_PERIOD,
};
use crate::{
    clients::{ClientApi, ClientPool, Pacer},
    clock::{SimClock, TimeScale},
    grpc::{Acknowledgements, Dial},
    kafka::{finished_watch::FinishedWatch, KafkaConnection},
    load::{LoadLevel, LoadPreset},
    metrics::{Counter, Latency, Metrics, MetricsSnapshot},
    order::{Order, OrderId},
    processing::ledger::{AckLedger, FinishedBy},
    sync::Locked,
};

pub struct RemoteSettings {
    pub target: Dial,
    pub api: ClientApi,
    pub orders: Arc<[Order]>,
    pub load: LoadLevel,
    pub preset: LoadPreset,
    /// Orders to send in all; None = until stopped.
    pub total: Option<u64>,
    /// The deployment's Kafka, to follow orders to Finished.
    pub follow: Option<KafkaConnection>,
    /// Once every order is sent, how long to wait for the followed ones to
    /// finish before ending (the session then ends by itself).
    pub finish_limit: Duration,
    /// End once the total is sent and followed (a scenario ends it instead).
    pub end_when_sent: bool,
}

/// Acknowledged orders followed to their Finished event.
struct Followed {
    ledger: AckLedger,
    acknowledged_at: Mutex<HashMap<OrderId, Instant>>,
    metrics: Arc<Metrics>,
}

impl Acknowledgements for Followed {
    fn acknowledged(&self, id: OrderId) {
        if self.ledger.acknowledged(id) {
            // Its Finished event was read before the reply came back.
            self.metrics.incr(Counter::Finished);
            self.metrics.record(Latency::Completion, Duration::ZERO);
        } else {
            self.acknowledged_at.locked().insert(id, Instant::now());
        }
    }
}

impl Followed {
    fn finished(&self, id: OrderId) {
        if self.ledger.finished_by(id, FinishedBy::Elsewhere) {
            self.metrics.incr(Counter::Finished);
            if let Some(at) = self.acknowledged_at.locked().remove(&id) {
                self.metrics.record(Latency::Completion, at.elapsed());
            }
        }
    }
}

/// How a failure to reach the deployment's Kafka begins (as opposed to the
/// target server's), so the caller can tell them apart.
pub const CANNOT_FOLLOW: &str = "cannot follow the orders on the events topic";

/// A Finished event can be read before the client has the reply; it is
/// kept this long for the reply to claim it.
const EARLY_FINISH_HORIZON: Duration = Duration::from_secs(60);

pub fn spawn(settings: RemoteSettings) -> SessionHandle {
    let describe = match &settings.follow {
        Some(connection) => format!("following {}", connection.bootstrap),
        None => "not followed (no --brokers)".to_owned(),
    };
    let initial = SessionStatus::new(describe, settings.load, settings.preset, 0);
    let (publish, status) = watch::channel(initial.clone());
    let (commands, inbox) = mpsc::channel(64);
    let (transitions, _) = broadcast::channel(16);
    let task = tokio::spawn(run(settings, initial, publish, inbox));
    SessionHandle {
        commands,
        status,
        transitions,
        task,
    }
}

async fn run(
    settings: RemoteSettings,
    mut status: SessionStatus,
    publish: watch::Sender<SessionStatus>,
    mut inbox: mpsc::Receiver<Command>,
) {
    let metrics = Arc::new(Metrics::new());
    let followed = settings.follow.as_ref().map(|_| {
        Arc::new(Followed {
            ledger: AckLedger::new(EARLY_FINISH_HORIZON),
            acknowledged_at: Mutex::default(),
            metrics: Arc::clone(&metrics),
        })
    });
    // Following starts at the events topic's end, before the first order.
    let _watch = match (&settings.follow, &followed) {
        (Some(connection), Some(followed)) => {
            let (connection, followed) = (connection.clone(), Arc::clone(followed));
            let started = tokio::task::spawn_blocking(move || {
                FinishedWatch::start(&connection, move |event| followed.finished(event.order_id))
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|started| started.map_err(|e| e.to_string()));
            match started {
                Ok(watch) => Some(watch),
                Err(reason) => {
                    let reason = format!("{CANNOT_FOLLOW}: {reason}");
                    return fail(status, &publish, &mut inbox, reason).await;
                }
            }
        }
        _ => None,
    };
    // The rate is real orders per second: the time scale is the server's.
    let pacer = Arc::new(Pacer::new(
        status.rate,
        SimClock::new(TimeScale::ORIGINAL),
        settings.total,
    ));
    let stop_clients = CancellationToken::new();
    let pool = match ClientPool::new(
        &settings.target,
        settings.orders,
        pacer,
        Arc::clone(&metrics),
        stop_clients.clone(),
    ) {
        Ok(pool) => match &followed {
            Some(followed) => pool
                .speaking(settings.api)
                .acknowledging(Arc::clone(followed) as Arc<dyn Acknowledgements>),
            None => pool.speaking(settings.api),
        },
        Err(error) => return fail(status, &publish, &mut inbox, error.to_string()).await,
    };
    status.phase = Phase::Running;
    let mut live = Remote {
        pool,
        metrics,
        followed,
        status,
        sampler: Sampler::default(),
        sent_all_at: None,
    };
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
        if settings.end_when_sent && live.settled(settings.finish_limit) {
            break;
        }
    }
    live.pool.stop_all();
    stop_clients.cancel();
    live.status.clients_running = false;
    // What is left of the wait once every order was sent.
    let limit = live.sent_all_at.map_or(settings.finish_limit, |at| {
        settings.finish_limit.saturating_sub(at.elapsed())
    });
    live.wait_for_followed(limit, &publish, &mut inbox).await;
    live.refresh();
    live.status.phase = Phase::Stopped;
    publish.send_replace(live.status);
}

/// Publishes why the session could not start and waits to be shut down.
async fn fail(
    mut status: SessionStatus,
    publish: &watch::Sender<SessionStatus>,
    inbox: &mut mpsc::Receiver<Command>,
    reason: String,
) {
    status.phase = Phase::Failed(reason);
    publish.send_replace(status);
    while let Some(command) = inbox.recv().await {
        if command == Command::Shutdown {
            return;
        }
    }
}

struct Remote {
    pool: ClientPool,
    metrics: Arc<Metrics>,
    followed: Option<Arc<Followed>>,
    status: SessionStatus,
    sampler: Sampler,
    /// When the clients had sent every order.
    sent_all_at: Option<Instant>,
}

impl Remote {
    fn apply(&mut self, command: Command) {
        let status = &mut self.status;
        if steer_clients(status, &mut self.pool, &self.metrics, command).is_some() {
            status.notice = Some(
                "not from here: load drives a server elsewhere (its consumers, broker \
                 and sink are that deployment's)"
                    .to_owned(),
            );
        } else if let Command::SetLoad(level) = command {
            status.notice = Some(format!(
                "load set to {level} (clients and rate; the server keeps its own delays)"
            ));
        }
    }

    /// The clients' figures; every answered call is an acknowledgement
    /// here (the server's own count is the server's).
    fn snapshot(&self) -> MetricsSnapshot {
        let mut now = self.metrics.snapshot();
        now.counts.acknowledged = now.send.count;
        now
    }

    fn sample(&mut self) {
        let now = self.snapshot();
        let window = self.metrics.take_window();
        self.status.last_sample = Some(self.sampler.sample(now, window));
    }

    fn refresh(&mut self) {
        let now = self.snapshot();
        let status = &mut self.status;
        status.metrics = now;
        if status.closed_phase.0 > 0 {
            status.phase_latency = self.metrics.phase_latency();
        }
        if let Some(followed) = &self.followed {
            status.reconciliation = followed.ledger.tally(Duration::MAX);
            status.in_flight = status.reconciliation.waiting as usize;
        }
        if self.sent_all_at.is_none() && self.pool.sent_all() {
            self.sent_all_at = Some(Instant::now());
            status.clients_running = false;
        }
    }

    /// Once the clients have stopped: waits for the followed orders still
    /// on their way to Finished, up to `limit` (a second Shutdown or an
    /// Abandon stops waiting), publishing the count as it goes.
    async fn wait_for_followed(
        &mut self,
        limit: Duration,
        publish: &watch::Sender<SessionStatus>,
        inbox: &mut mpsc::Receiver<Command>,
    ) {
        if self.followed.is_none() {
            return;
        }
        let deadline = tokio::time::Instant::now() + limit;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            self.refresh();
            let waiting = self.status.reconciliation.waiting;
            if waiting == 0 {
                return;
            }
            self.status.phase = Phase::Draining { waiting };
            publish.send_replace(self.status.clone());
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                command = inbox.recv() => match command {
                    Some(Command::Shutdown | Command::Abandon) | None => return,
                    Some(_) => {}
                },
                _ = tick.tick() => {}
            }
        }
    }

    /// Every order sent, and every followed one finished (or `limit` passed).
    fn settled(&self, limit: Duration) -> bool {
        let Some(at) = self.sent_all_at else {
            return false;
        };
        self.status.reconciliation.waiting == 0 || at.elapsed() >= limit
    }
}
