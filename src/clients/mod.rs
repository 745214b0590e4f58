//! Simulated clients: tokio tasks that read orders from a CSV file and send
//! them to the server over real gRPC, each reusing its own channel.
//! The orders file (`orders_file`) and the pacing (`pacer`) are their own
//! modules; this one runs the clients.

pub mod orders_file;
pub mod pacer;

pub use orders_file::{
    load_orders, orders_from, read_orders, BadRowPolicy, CsvError, CsvOrders, RowError,
    BUILT_IN_ORDERS,
};
pub use pacer::Pacer;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{
    transport::{Channel, Endpoint},
    Code,
};

use crate::{
    clock::{Backoff, SimClock},
    grpc::{
        pb::{
            orders::{order_service_client::OrderServiceClient, MessageRequest},
            v1::{self, orders_client::OrdersClient, PlaceOrderRequest},
        },
        Acknowledgements, Dial,
    },
    metrics::{Counter, Latency, LatencySummary, Metrics},
    order::{Order, OrderId},
};

/// What `orderdeck load` measured, as `load --json` prints it and the
/// benchmark reads it back from its load process.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoadSummary {
    pub target: String,
    pub clients: usize,
    pub sent: u64,
    pub answered: u64,
    pub failed: u64,
    /// From the start (connecting included) to the last answer.
    pub seconds: f64,
    pub answered_per_s: f64,
    /// Each call, from the request to its answer.
    pub latency_ms: LatencySummary,
    /// Refusals by gRPC code, one line each (`Unavailable: 3 calls refused`).
    pub errors: Vec<String>,
    /// Orders the server acknowledged.
    #[serde(default)]
    pub acknowledged: u64,
    /// Every refused call by gRPC code, retried ones included.
    #[serde(default)]
    pub refused: std::collections::BTreeMap<String, u64>,
    /// With --brokers: the acknowledged orders followed to Finished.
    #[serde(default)]
    pub followed: Option<FollowedSummary>,
}

/// Acknowledged orders followed to their Finished event on the events topic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FollowedSummary {
    pub finished: u64,
    /// Acknowledged, no Finished event seen by the end.
    pub waiting: u64,
    /// Acknowledged without an order id to follow (a server that does not
    /// say it, as the original's free-text reply).
    pub unnamed: u64,
    /// Acknowledgement to the Finished event, as this process saw them.
    pub completion_ms: LatencySummary,
}

impl LoadSummary {
    /// The summary in one line, for people.
    pub fn line(&self) -> String {
        let latency = &self.latency_ms;
        let mut line = format!(
            "load: {} orders to {} by {} clients in {:.2} s: {:.0} orders/s answered · acknowledged {} \
             · failed {} · latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
            self.sent,
            self.target,
            self.clients,
            self.seconds,
            self.answered_per_s,
            self.acknowledged,
            self.failed,
            latency.p50,
            latency.p90,
            latency.p99,
            latency.max,
        );
        if let Some(followed) = &self.followed {
            line.push_str(&format!(
                " · finished {} (waiting {}) · completion ms p50 {:.1} p99 {:.1}",
                followed.finished,
                followed.waiting,
                followed.completion_ms.p50,
                followed.completion_ms.p99
            ));
            if followed.unnamed > 0 {
                line.push_str(&format!(
                    " · {} not followed (the reply named no order id)",
                    followed.unnamed
                ));
            }
        }
        if !self.refused.is_empty() {
            let refused: Vec<String> = self
                .refused
                .iter()
                .map(|(code, calls)| format!("{code} {calls}"))
                .collect();
            line.push_str(&format!(" · refused: {}", refused.join(", ")));
        }
        line
    }
}

/// What the clients saw, beyond the shared counters.
#[derive(Debug, Default)]
pub struct ClientsOutcome {
    /// The first few errors, for the report and the screen.
    pub errors: Vec<String>,
}

const KEPT_ERRORS: usize = 10;

/// Attempts for an order that meets a transient failure.
const ATTEMPTS: u32 = 8;
/// Waits between those attempts.
const RETRY: Backoff = Backoff {
    first: Duration::from_millis(50),
    max: Duration::from_secs(2),
};

/// Worth another try: Kafka or the server is busy or away, or the call never
/// got through (a connection refused or reset under a burst of connects).
/// Safe to repeat, because the client names the order: a second copy is the
/// same order, which the consumers run once.
fn is_transient(status: &tonic::Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::ResourceExhausted | Code::Cancelled => true,
        Code::Unknown => status.message().contains("transport error"),
        _ => false,
    }
}

struct RunningClient {
    stop: CancellationToken,
    task: JoinHandle<Vec<String>>,
}

/// A resizable set of simulated clients sharing one pacer.
/// Which of the server's APIs the clients speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientApi {
    /// `orderdeck.v1.Orders/PlaceOrder`: typed, and the client names each
    /// order, so a retry is never a second order.
    #[default]
    Typed,
    /// The original `orders.OrderService/SendMessage` (JSON in a string),
    /// which any server of the original system speaks. It cannot name an
    /// order: a retry after a lost reply may place it twice.
    Legacy,
}

/// One client's channel, through the API it speaks.
enum Connection {
    Typed(OrdersClient<Channel>),
    Legacy(OrderServiceClient<Channel>),
}

impl Connection {
    /// Places the order; returns its id when the server tells it (the typed
    /// API always does, orderdeck's `SendMessage` in its JSON reply, the
    /// original server not at all).
    async fn place(
        &mut self,
        order: &Order,
        order_id: OrderId,
    ) -> Result<Option<OrderId>, tonic::Status> {
        match self {
            Connection::Typed(client) => client
                .place_order(PlaceOrderRequest {
                    order: Some(v1::Order::from(order)),
                    order_id: order_id.to_string(),
                })
                .await
                .map(|_| Some(order_id)),
            Connection::Legacy(client) => client
                .send_message(MessageRequest {
                    message: order.to_json(),
                })
                .await
                .map(|reply| {
                    serde_json::from_str::<serde_json::Value>(&reply.into_inner().response)
                        .ok()
                        .and_then(|json| json["order_id"].as_str()?.parse().ok())
                }),
        }
    }
}

pub struct ClientPool {
    endpoint: Endpoint,
    api: ClientApi,
    orders: Arc<[Order]>,
    pacer: Arc<Pacer>,
    metrics: Arc<Metrics>,
    /// Told of each acknowledged order, when something follows them.
    acknowledgements: Option<Arc<dyn Acknowledgements>>,
    /// Cancelling it stops every client, present and future.
    stop: CancellationToken,
    running: Vec<RunningClient>,
}

impl ClientPool {
    pub fn new(
        server: &Dial,
        orders: Arc<[Order]>,
        pacer: Arc<Pacer>,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Result<Self, tonic::transport::Error> {
        Ok(Self {
            endpoint: server.endpoint()?,
            api: ClientApi::Typed,
            orders,
            pacer,
            metrics,
            acknowledgements: None,
            stop,
            running: Vec::new(),
        })
    }

    /// Clients started from now on report each acknowledged order's id.
    pub fn acknowledging(mut self, acknowledgements: Arc<dyn Acknowledgements>) -> Self {
        self.acknowledgements = Some(acknowledgements);
        self
    }

    /// The total has been sent: every order handed out, every client ended.
    pub fn sent_all(&self) -> bool {
        self.pacer.exhausted() && self.running.iter().all(|client| client.task.is_finished())
    }

    /// Clients started from now on speak `api`.
    pub fn speaking(mut self, api: ClientApi) -> Self {
        self.api = api;
        self
    }

    pub fn pacer(&self) -> &Arc<Pacer> {
        &self.pacer
    }

    /// Grows or shrinks to `clients`; the newest stop first.
    pub fn resize(&mut self, clients: usize) {
        if self.running.is_empty() && clients > 0 {
            self.pacer.restart();
        }
        while self.running.len() > clients {
            if let Some(client) = self.running.pop() {
                client.stop.cancel();
            }
        }
        while self.running.len() < clients {
            // One channel per client, connected on first use and reused.
            let channel = self.endpoint.connect_lazy();
            let client = SimulatedClient {
                grpc: match self.api {
                    ClientApi::Typed => Connection::Typed(OrdersClient::new(channel)),
                    ClientApi::Legacy => Connection::Legacy(OrderServiceClient::new(channel)),
                },
                orders: Arc::clone(&self.orders),
                pacer: Arc::clone(&self.pacer),
                metrics: Arc::clone(&self.metrics),
                acknowledgements: self.acknowledgements.clone(),
            };
            let stop = self.stop.child_token();
            let task = tokio::spawn(client.run(stop.clone()));
            self.running.push(RunningClient { stop, task });
        }
    }

    /// Waits until every client has stopped (the total was sent, or stop).
    pub async fn join(mut self) -> ClientsOutcome {
        let mut outcome = ClientsOutcome::default();
        for client in self.running.drain(..) {
            if let Ok(errors) = client.task.await {
                let room = KEPT_ERRORS.saturating_sub(outcome.errors.len());
                outcome.errors.extend(errors.into_iter().take(room));
            }
        }
        outcome
    }

    pub fn stop_all(&mut self) {
        self.resize(0);
    }
}

/// How `run_clients` sends.
#[derive(Clone, Debug)]
pub struct ClientPlan {
    pub clients: usize,
    /// Total orders per second over all clients; None = as fast as they can.
    pub rate: Option<f64>,
    pub clock: SimClock,
    /// Orders to send in total; None = until cancelled. Rows repeat in a cycle.
    pub orders: Option<u64>,
    pub api: ClientApi,
}

/// Sends orders until the plan's total is reached or `cancel` fires.
pub async fn run_clients(
    server: impl Into<Dial>,
    orders: Arc<[Order]>,
    plan: ClientPlan,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) -> Result<ClientsOutcome, tonic::transport::Error> {
    let pacer = Arc::new(Pacer::new(plan.rate, plan.clock, plan.orders));
    let mut pool =
        ClientPool::new(&server.into(), orders, pacer, metrics, cancel)?.speaking(plan.api);
    pool.resize(plan.clients.max(1));
    Ok(pool.join().await)
}

struct SimulatedClient {
    grpc: Connection,
    orders: Arc<[Order]>,
    pacer: Arc<Pacer>,
    metrics: Arc<Metrics>,
    acknowledgements: Option<Arc<dyn Acknowledgements>>,
}

impl SimulatedClient {
    async fn run(mut self, stop: CancellationToken) -> Vec<String> {
        let mut errors = Vec::new();
        while let Some((n, due)) = self.pacer.take() {
            if let Some(due) = due {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep_until(due.into()) => {}
                }
            }
            if stop.is_cancelled() {
                break;
            }
            let orders = Arc::clone(&self.orders);
            let order = &orders[(n % orders.len() as u64) as usize];
            if let Err(error) = self.send(order).await {
                if errors.len() < KEPT_ERRORS {
                    errors.push(error);
                }
            }
        }
        errors
    }

    /// Sends one order, retrying transient refusals with exponential backoff.
    /// The client names the order, so a retry after a failure that Kafka may
    /// have persisted anyway is the same order, not a second one.
    async fn send(&mut self, order: &Order) -> Result<(), String> {
        self.metrics.incr(Counter::Sent);
        let order_id = OrderId::new_random();
        let mut backoff = RETRY.first;
        for attempt in 1..=ATTEMPTS {
            let started = Instant::now();
            let reply = self.grpc.place(order, order_id).await;
            self.metrics.answered();
            if let Err(status) = &reply {
                self.metrics.refused(status.code() as i32);
            }
            match reply {
                Ok(placed) => {
                    self.metrics.record(Latency::Send, started.elapsed());
                    if let (Some(id), Some(acknowledgements)) = (placed, &self.acknowledgements) {
                        acknowledgements.acknowledged(id);
                    }
                    return Ok(());
                }
                Err(status) if is_transient(&status) && attempt < ATTEMPTS => {
                    tokio::time::sleep(backoff).await;
                    backoff = RETRY.next(backoff);
                }
                Err(status) => {
                    // The server counts its own rejections; a give-up is ours.
                    if status.code() != Code::InvalidArgument {
                        self.metrics.incr(Counter::Failed);
                    }
                    return Err(format!("{:?}: {}", status.code(), status.message()));
                }
            }
        }
        unreachable!("the last attempt always returns")
    }
}
