//! Simulated clients: tokio tasks that read orders from a CSV file and send
//! them to the server over real gRPC, each reusing its own channel.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::{transport::Channel, Code};

use crate::{
    clock::SimClock,
    grpc::pb::orders::{order_service_client::OrderServiceClient, MessageRequest},
    metrics::{Counter, Latency, Metrics},
    order::Order,
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
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|source| CsvError::Open {
            file: file.clone(),
            source,
        })?;
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
    let precio = record[1].trim().parse::<f64>().map_err(|_| {
        format!(
            "Precio {:?} is not a number (use a dot for decimals, e.g. 19.99)",
            &record[1]
        )
    })?;
    let order = Order {
        nombre_producto: field(0),
        precio,
        pasarela_pago: field(2),
        marca_tarjeta: field(3),
        banco: field(4),
        region: field(5),
        direccion: field(6),
        correo: field(7),
    };
    order.validate().map_err(|e| e.to_string())?;
    Ok(order)
}

/// How the simulated clients send.
#[derive(Clone, Debug)]
pub struct ClientPlan {
    pub clients: usize,
    /// Total orders per second over all clients; None = as fast as they can.
    pub rate: Option<f64>,
    /// Pacing is a simulated delay too: at time scale 0.5 the rate doubles,
    /// at 0 the clients send as fast as they can.
    pub clock: SimClock,
    /// Orders to send in total; None = until cancelled. Rows repeat in a cycle.
    pub orders: Option<u64>,
    /// Attempts for an order that meets UNAVAILABLE or RESOURCE_EXHAUSTED.
    pub attempts: u32,
}

/// What the clients saw, beyond the shared counters.
#[derive(Debug, Default)]
pub struct ClientsOutcome {
    /// The first few errors, for the report and the screen.
    pub errors: Vec<String>,
}

const KEPT_ERRORS: usize = 10;

/// Sends orders until the plan's total is reached or `cancel` fires.
pub async fn run_clients(
    endpoint: String,
    orders: Arc<[Order]>,
    plan: ClientPlan,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) -> Result<ClientsOutcome, tonic::transport::Error> {
    let schedule = Arc::new(Schedule {
        next: AtomicU64::new(0),
        start: Instant::now(),
        plan: plan.clone(),
    });
    let mut tasks = JoinSet::new();
    for _ in 0..plan.clients.max(1) {
        // One channel per client, opened once and reused for every request.
        let channel = Channel::from_shared(endpoint.clone())
            .expect("endpoint is a valid URI")
            .connect()
            .await?;
        let client = SimulatedClient {
            grpc: OrderServiceClient::new(channel),
            orders: Arc::clone(&orders),
            schedule: Arc::clone(&schedule),
            metrics: Arc::clone(&metrics),
        };
        tasks.spawn(client.run(cancel.clone()));
    }
    let mut outcome = ClientsOutcome::default();
    while let Some(result) = tasks.join_next().await {
        if let Ok(errors) = result {
            let room = KEPT_ERRORS.saturating_sub(outcome.errors.len());
            outcome.errors.extend(errors.into_iter().take(room));
        }
    }
    Ok(outcome)
}

/// Hands out order numbers and, at a fixed rate, the time each is due.
struct Schedule {
    next: AtomicU64,
    start: Instant,
    plan: ClientPlan,
}

impl Schedule {
    fn take(&self) -> Option<(u64, Option<Instant>)> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if self.plan.orders.is_some_and(|total| n >= total) {
            return None;
        }
        let due = self
            .plan
            .rate
            .filter(|rate| *rate > 0.0 && self.plan.clock.scale().factor() > 0.0)
            .map(|rate| {
                self.start
                    + self
                        .plan
                        .clock
                        .scaled(Duration::from_secs_f64(n as f64 / rate))
            });
        Some((n, due))
    }
}

struct SimulatedClient {
    grpc: OrderServiceClient<Channel>,
    orders: Arc<[Order]>,
    schedule: Arc<Schedule>,
    metrics: Arc<Metrics>,
}

impl SimulatedClient {
    async fn run(mut self, cancel: CancellationToken) -> Vec<String> {
        let mut errors = Vec::new();
        while let Some((n, due)) = self.schedule.take() {
            if let Some(due) = due {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep_until(due.into()) => {}
                }
            }
            if cancel.is_cancelled() {
                break;
            }
            let order = Arc::clone(&self.orders);
            let order = &order[(n % order.len() as u64) as usize];
            if let Err(error) = self.send(order).await {
                if errors.len() < KEPT_ERRORS {
                    errors.push(error);
                }
            }
        }
        errors
    }

    /// Sends one order, retrying transient refusals with exponential backoff.
    async fn send(&mut self, order: &Order) -> Result<(), String> {
        self.metrics.incr(Counter::Sent);
        let message = order.to_json();
        let mut backoff = Duration::from_millis(20);
        let attempts = self.schedule.plan.attempts.max(1);
        for attempt in 1..=attempts {
            let started = Instant::now();
            let reply = self
                .grpc
                .send_message(MessageRequest {
                    message: message.clone(),
                })
                .await;
            match reply {
                Ok(_) => {
                    self.metrics.record(Latency::Send, started.elapsed());
                    return Ok(());
                }
                Err(status)
                    if matches!(status.code(), Code::Unavailable | Code::ResourceExhausted)
                        && attempt < attempts =>
                {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
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

/// The project's default data set, relative to the working directory.
pub fn default_csv() -> PathBuf {
    PathBuf::from("orders.csv")
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

    fn schedule(rate: f64, scale: f64, orders: Option<u64>) -> Schedule {
        Schedule {
            next: AtomicU64::new(0),
            start: Instant::now(),
            plan: ClientPlan {
                clients: 1,
                rate: Some(rate),
                clock: SimClock::new(TimeScale::new(scale).unwrap()),
                orders,
                attempts: 1,
            },
        }
    }

    #[test]
    fn the_schedule_spaces_orders_at_the_scaled_rate() {
        let schedule = schedule(10.0, 0.5, Some(3));
        let due: Vec<_> = std::iter::from_fn(|| schedule.take()).collect();
        assert_eq!(due.len(), 3);
        let last = due[2].1.unwrap() - schedule.start;
        assert_eq!(last, Duration::from_millis(100));
    }

    #[test]
    fn time_scale_zero_sends_unpaced() {
        let schedule = schedule(10.0, 0.0, None);
        assert_eq!(schedule.take(), Some((0, None)));
        assert_eq!(schedule.take(), Some((1, None)));
    }
}
