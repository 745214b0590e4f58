//! Simulated clients: tokio tasks that read orders from a CSV file and send
//! them to the server over real gRPC, each reusing its own channel.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{
    transport::{Channel, Endpoint},
    Code,
};

use crate::{
    clock::{Backoff, SimClock},
    grpc::{
        pb::v1::{self, orders_client::OrdersClient, PlaceOrderRequest},
        Dial,
    },
    metrics::{Counter, Latency, Metrics},
    order::{Order, OrderId},
    sync::Locked,
};

/// The original data set's header, in order.
pub const CSV_HEADER: [&str; 8] = [
    "NombreProducto",
    "Precio",
    "PasarelaPago",
    "MarcaTarjeta",
    "Banco",
    "Region",
    "Direccion",
    "Correo",
];

/// A row that could not become an order, located for a person to fix.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct RowError {
    pub file: String,
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("cannot read orders from {file}: {source}")]
    Open { file: String, source: csv::Error },
    #[error("{file}: header must be {expected}, found {found}")]
    Header {
        file: String,
        expected: String,
        found: String,
    },
    #[error("{0}")]
    Row(RowError),
    #[error("{file} has no valid orders")]
    Empty { file: String },
}

/// What to do with a malformed row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BadRowPolicy {
    /// Report it, count it as rejected, go on.
    Skip,
    /// Stop with its file and line.
    Stop,
}

#[derive(Debug)]
pub struct CsvOrders {
    pub orders: Vec<Order>,
    pub rejected: Vec<RowError>,
}

/// Reads every row of `path` into orders; bad rows are located by line.
pub fn load_orders(path: &Path, policy: BadRowPolicy) -> Result<CsvOrders, CsvError> {
    let file = path.display().to_string();
    let opened = std::fs::File::open(path).map_err(|error| CsvError::Open {
        file: file.clone(),
        source: error.into(),
    })?;
    read_orders(opened, &file, policy)
}

/// Reads CSV text into orders; `file` names it in errors.
pub fn read_orders(
    input: impl std::io::Read,
    file: &str,
    policy: BadRowPolicy,
) -> Result<CsvOrders, CsvError> {
    let file = file.to_owned();
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let header = reader
        .headers()
        .map_err(|source| CsvError::Open {
            file: file.clone(),
            source,
        })?
        .clone();
    if header.iter().map(str::trim).ne(CSV_HEADER) {
        return Err(CsvError::Header {
            file,
            expected: CSV_HEADER.join(","),
            found: header.iter().collect::<Vec<_>>().join(","),
        });
    }
    let mut loaded = CsvOrders {
        orders: Vec::new(),
        rejected: Vec::new(),
    };
    for record in reader.records() {
        let row = match record {
            Ok(record) => {
                let line = record.position().map_or(0, csv::Position::line);
                parse_row(&record).map_err(|reason| RowError {
                    file: file.clone(),
                    line,
                    reason,
                })
            }
            Err(error) => Err(RowError {
                file: file.clone(),
                line: error.position().map_or(0, csv::Position::line),
                reason: error.to_string(),
            }),
        };
        match row {
            Ok(order) => loaded.orders.push(order),
            Err(error) if policy == BadRowPolicy::Stop => return Err(CsvError::Row(error)),
            Err(error) => {
                tracing::warn!(%error, "skipping a malformed CSV row");
                loaded.rejected.push(error);
            }
        }
    }
    if loaded.orders.is_empty() {
        return Err(CsvError::Empty { file });
    }
    Ok(loaded)
}

fn parse_row(record: &csv::StringRecord) -> Result<Order, String> {
    if record.len() != CSV_HEADER.len() {
        return Err(format!(
            "expected {} fields ({}), found {}",
            CSV_HEADER.len(),
            CSV_HEADER.join(","),
            record.len()
        ));
    }
    let field = |i: usize| record[i].trim().to_owned();
    let price = record[1].trim().parse::<f64>().map_err(|_| {
        format!(
            "Precio {:?} is not a number (use a dot for decimals, e.g. 19.99)",
            &record[1]
        )
    })?;
    let order = Order {
        product: field(0),
        price,
        payment_gateway: field(2),
        card_brand: field(3),
        bank: field(4),
        region: field(5),
        address: field(6),
        email: field(7),
    };
    order.validate().map_err(|e| e.to_string())?;
    Ok(order)
}

/// Hands out order numbers and, at a target rate, the time each is due.
/// The rate can change while clients run (the UI's load keys).
pub struct Pacer {
    state: Mutex<PacerState>,
    clock: SimClock,
    total: Option<u64>,
}

struct PacerState {
    issued: u64,
    rate: Option<f64>,
    next_due: Option<Instant>,
}

impl Pacer {
    /// `rate` in orders/s over all clients (None = unpaced); pacing is a
    /// simulated delay, so it scales with the clock (time scale 0 = unpaced).
    pub fn new(rate: Option<f64>, clock: SimClock, total: Option<u64>) -> Self {
        Self {
            state: Mutex::new(PacerState {
                issued: 0,
                rate,
                next_due: None,
            }),
            clock,
            total,
        }
    }

    pub fn set_rate(&self, rate: Option<f64>) {
        let mut state = self.state.locked();
        state.rate = rate;
        state.next_due = None;
    }

    /// Forgets the schedule, so clients that start again do not burst to
    /// catch up on the time they were stopped.
    pub fn restart(&self) {
        self.state.locked().next_due = None;
    }

    /// The next order number and when it is due (None = now), or None when
    /// the total has been handed out.
    fn take(&self) -> Option<(u64, Option<Instant>)> {
        let mut state = self.state.locked();
        if self.total.is_some_and(|total| state.issued >= total) {
            return None;
        }
        let n = state.issued;
        state.issued += 1;
        let interval = state
            .rate
            .filter(|rate| *rate > 0.0)
            .map(|rate| self.clock.scaled(Duration::from_secs_f64(1.0 / rate)))
            .filter(|interval| !interval.is_zero());
        let Some(interval) = interval else {
            return Some((n, None));
        };
        // A fixed schedule: a slow reply does not push later orders back.
        let due = state.next_due.unwrap_or_else(Instant::now);
        state.next_due = Some(due + interval);
        Some((n, Some(due)))
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
pub struct ClientPool {
    endpoint: Endpoint,
    orders: Arc<[Order]>,
    pacer: Arc<Pacer>,
    metrics: Arc<Metrics>,
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
            orders,
            pacer,
            metrics,
            stop,
            running: Vec::new(),
        })
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
            let client = SimulatedClient {
                grpc: OrdersClient::new(self.endpoint.connect_lazy()),
                orders: Arc::clone(&self.orders),
                pacer: Arc::clone(&self.pacer),
                metrics: Arc::clone(&self.metrics),
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
    let mut pool = ClientPool::new(&server.into(), orders, pacer, metrics, cancel)?;
    pool.resize(plan.clients.max(1));
    Ok(pool.join().await)
}

struct SimulatedClient {
    grpc: OrdersClient<Channel>,
    orders: Arc<[Order]>,
    pacer: Arc<Pacer>,
    metrics: Arc<Metrics>,
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
        let request = PlaceOrderRequest {
            order: Some(v1::Order::from(order)),
            order_id: OrderId::new_random().to_string(),
        };
        let mut backoff = RETRY.first;
        for attempt in 1..=ATTEMPTS {
            let started = Instant::now();
            let reply = self.grpc.place_order(request.clone()).await;
            match reply {
                Ok(_) => {
                    self.metrics.record(Latency::Send, started.elapsed());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TimeScale;

    fn write_csv(body: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, body.as_bytes()).unwrap();
        file
    }

    const HEADER: &str =
        "NombreProducto,Precio,PasarelaPago,MarcaTarjeta,Banco,Region,Direccion,Correo\n";
    const GOOD: &str = "Cámara,10.5,PayPal,Visa,Banco X,Europa,1 Calle,a@b.c\n";

    #[test]
    fn reads_the_shipped_data_set() {
        let loaded = load_orders(Path::new("orders.csv"), BadRowPolicy::Stop).unwrap();
        assert_eq!(loaded.orders.len(), 500);
        assert!(loaded.rejected.is_empty());
    }

    #[test]
    fn a_bad_price_names_file_and_line() {
        let file = write_csv(&format!(
            "{HEADER}{GOOD}{GOOD}Reloj,abc,PayPal,Visa,B,R,D,c@d.e\n"
        ));
        let err = load_orders(file.path(), BadRowPolicy::Stop).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("{}:4: ", file.path().display())),
            "{text}"
        );
        assert!(text.contains("\"abc\" is not a number"), "{text}");
    }

    #[test]
    fn skipping_counts_the_bad_rows() {
        let file = write_csv(&format!(
            "{HEADER}{GOOD}too,few,fields\n{GOOD}Reloj,-3,PayPal,Visa,B,R,D,c@d.e\n"
        ));
        let loaded = load_orders(file.path(), BadRowPolicy::Skip).unwrap();
        assert_eq!(loaded.orders.len(), 2);
        let lines: Vec<u64> = loaded.rejected.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 5]);
        assert!(loaded.rejected[0].reason.contains("expected 8 fields"));
        assert!(loaded.rejected[1].reason.contains("precio"));
    }

    #[test]
    fn a_wrong_header_is_refused() {
        let file = write_csv("product,price\nx,1\n");
        let err = load_orders(file.path(), BadRowPolicy::Skip).unwrap_err();
        assert!(
            err.to_string()
                .contains("header must be NombreProducto,Precio"),
            "{err}"
        );
    }

    fn pacer(rate: f64, scale: f64, orders: Option<u64>) -> Pacer {
        Pacer::new(
            Some(rate),
            SimClock::new(TimeScale::new(scale).unwrap()),
            orders,
        )
    }

    #[test]
    fn the_pacer_spaces_orders_at_the_scaled_rate() {
        let pacer = pacer(10.0, 0.5, Some(3));
        let due: Vec<_> = std::iter::from_fn(|| pacer.take()).collect();
        assert_eq!(due.len(), 3);
        let first = due[0].1.unwrap();
        assert_eq!(due[2].1.unwrap() - first, Duration::from_millis(100));
    }

    #[test]
    fn time_scale_zero_sends_unpaced() {
        let pacer = pacer(10.0, 0.0, None);
        assert_eq!(pacer.take(), Some((0, None)));
        assert_eq!(pacer.take(), Some((1, None)));
    }

    #[test]
    fn a_new_rate_starts_a_new_schedule() {
        let pacer = pacer(1.0, 1.0, None);
        pacer.take();
        pacer.take(); // due a second from now
        pacer.set_rate(Some(1000.0));
        let (_, due) = pacer.take().unwrap();
        assert!(
            due.unwrap() <= Instant::now(),
            "no wait inherited from the old rate"
        );
    }
}
