//! What the benchmark drives: orderdeck's server (acknowledged, or finished),
//! the reference limits (a bare producer, a bare gRPC echo), and the
//! original system's design re-created (a channel per request, a producer
//! flush per message).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::{transport::Channel, Request, Response, Status};

use super::driver::{Done, Target};
use crate::{
    grpc::{
        pb::{
            orders::{
                order_service_client::OrderServiceClient,
                order_service_server::{OrderService, OrderServiceServer},
                MessageRequest, MessageResponse,
            },
            v1::{self, orders_client::OrdersClient, PlaceOrderRequest},
        },
        Dial,
    },
    order::{Order, OrderId, OrderRecord, State, Transition},
    sync::Locked,
};

/// Callers share this many channels (HTTP/2 multiplexes the rest).
const CHANNELS: usize = 8;

fn lazy_channel(url: &str) -> Result<Channel, String> {
    Ok(endpoint(url)?.connect_lazy())
}

fn endpoint(url: &str) -> Result<tonic::transport::Endpoint, String> {
    Dial::from(url.to_owned())
        .endpoint()
        .map_err(|e| e.to_string())
}

fn status_text(status: Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// Orders waiting for their Finished transition, woken from the feed.
#[derive(Clone, Default)]
pub struct FinishWatch {
    waiting: Arc<Mutex<HashMap<OrderId, oneshot::Sender<Instant>>>>,
}

impl FinishWatch {
    /// Follows `feed` until `stop`: each Finished wakes its order's waiter.
    pub fn follow(&self, mut feed: broadcast::Receiver<Transition>, stop: CancellationToken) {
        let waiting = Arc::clone(&self.waiting);
        tokio::spawn(async move {
            loop {
                let transition = tokio::select! {
                    _ = stop.cancelled() => return,
                    received = feed.recv() => received,
                };
                match transition {
                    Ok(t) if t.to == State::Finished => {
                        let seen = Instant::now();
                        let waiter = waiting.locked().remove(&t.order_id);
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(seen);
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "benchmark fell behind the transition feed");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    fn expect(&self, id: OrderId) -> oneshot::Receiver<Instant> {
        let (tx, rx) = oneshot::channel();
        self.waiting.locked().insert(id, tx);
        rx
    }

    fn forget(&self, id: &OrderId) {
        self.waiting.locked().remove(id);
    }
}

/// orderdeck's typed API, as the simulated clients call it. Done when
/// acknowledged, or when finished if `finished` is given.
pub struct Orderdeck {
    clients: Vec<OrdersClient<Channel>>,
    orders: Arc<[v1::Order]>,
    finished: Option<FinishWatch>,
}

impl Orderdeck {
    pub fn new(url: &str, orders: &[Order], finished: Option<FinishWatch>) -> Result<Self, String> {
        Ok(Self {
            clients: (0..CHANNELS)
                .map(|_| lazy_channel(url).map(OrdersClient::new))
                .collect::<Result<_, _>>()?,
            orders: orders.iter().map(v1::Order::from).collect(),
            finished,
        })
    }
}

impl Target for Orderdeck {
    async fn send(&self, n: u64, slot: usize) -> Result<Done, String> {
        let id = OrderId::new_random();
        let finished = self.finished.as_ref().map(|watch| watch.expect(id));
        let request = PlaceOrderRequest {
            order: Some(self.orders[n as usize % self.orders.len()].clone()),
            order_id: id.to_string(),
        };
        let mut client = self.clients[slot % self.clients.len()].clone();
        match client.place_order(request).await {
            Ok(_) => Ok(finished.map_or(Done::Now, Done::Later)),
            Err(status) => {
                if let Some(watch) = &self.finished {
                    watch.forget(&id);
                }
                Err(status_text(status))
            }
        }
    }
}

/// The original wire API (`orders.OrderService/SendMessage`), over shared
/// channels or, as the original client did, a new channel per request.
pub struct Legacy {
    url: String,
    shared: Vec<OrderServiceClient<Channel>>,
    channel_per_request: bool,
    messages: Arc<[String]>,
}

impl Legacy {
    pub fn new(url: &str, orders: &[Order], channel_per_request: bool) -> Result<Self, String> {
        Ok(Self {
            url: url.to_owned(),
            shared: (0..CHANNELS)
                .map(|_| lazy_channel(url).map(OrderServiceClient::new))
                .collect::<Result<_, _>>()?,
            channel_per_request,
            messages: orders.iter().map(Order::to_json).collect(),
        })
    }
}

impl Target for Legacy {
    async fn send(&self, n: u64, slot: usize) -> Result<Done, String> {
        let mut client = if self.channel_per_request {
            let channel = endpoint(&self.url)?
                .connect()
                .await
                .map_err(|e| format!("connect: {e}"))?;
            OrderServiceClient::new(channel)
        } else {
            self.shared[slot % self.shared.len()].clone()
        };
        let message = self.messages[n as usize % self.messages.len()].clone();
        client
            .send_message(MessageRequest { message })
            .await
            .map(|_| Done::Now)
            .map_err(status_text)
    }
}

/// The reference limit for Kafka: a producer with orderdeck's durability
/// settings, no gRPC in front.
pub struct BareProducer {
    producer: FutureProducer,
    topic: String,
    orders: Arc<[Order]>,
}

impl BareProducer {
    pub fn new(
        config: &rdkafka::ClientConfig,
        topic: &str,
        orders: &[Order],
    ) -> Result<Self, String> {
        Ok(Self {
            producer: config.create().map_err(|e| e.to_string())?,
            topic: topic.to_owned(),
            orders: orders.into(),
        })
    }
}

impl Target for BareProducer {
    async fn send(&self, n: u64, _slot: usize) -> Result<Done, String> {
        let record = OrderRecord {
            order: self.orders[n as usize % self.orders.len()].clone(),
            order_id: OrderId::new_random(),
            accepted_at: crate::clock::unix_seconds_now(),
        };
        let key = record.order_id.to_string();
        let value = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
        let queued = self
            .producer
            .send_result(FutureRecord::to(&self.topic).key(&key).payload(&value))
            .map_err(|(e, _)| e.to_string())?;
        match queued.await {
            Ok(Ok(_)) => Ok(Done::Now),
            Ok(Err((e, _))) => Err(e.to_string()),
            Err(_) => Err("producer dropped".to_owned()),
        }
    }
}

/// A gRPC server answering `SendMessage` at once: the reference limit for
/// gRPC on loopback.
struct Echo;

#[tonic::async_trait]
impl OrderService for Echo {
    async fn send_message(
        &self,
        request: Request<MessageRequest>,
    ) -> Result<Response<MessageResponse>, Status> {
        let size = request.into_inner().message.len();
        Ok(Response::new(MessageResponse {
            response: format!("received {size} bytes"),
        }))
    }
}

/// The original server's design: parse, produce, flush the producer, reply.
struct FlushEveryMessage {
    producer: Arc<BaseProducer>,
    topic: String,
}

#[tonic::async_trait]
impl OrderService for FlushEveryMessage {
    async fn send_message(
        &self,
        request: Request<MessageRequest>,
    ) -> Result<Response<MessageResponse>, Status> {
        let message = request.into_inner().message;
        Order::from_json(&message).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (producer, topic) = (Arc::clone(&self.producer), self.topic.clone());
        // The original blocked its worker thread on flush; so does this.
        tokio::task::spawn_blocking(move || {
            producer
                .send(BaseRecord::<(), _>::to(&topic).payload(&message))
                .map_err(|(e, _)| e)?;
            producer.flush(Duration::from_secs(10))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(MessageResponse {
            response: "Orden recibida".to_owned(),
        }))
    }
}

/// A reference server on loopback; stops when dropped.
pub struct ReferenceServer {
    pub url: String,
    stop: CancellationToken,
}

impl ReferenceServer {
    /// The bare echo.
    pub async fn echo() -> std::io::Result<Self> {
        Self::serve(OrderServiceServer::new(Echo)).await
    }

    /// The original design, producing to `topic` with librdkafka's defaults
    /// (as the original's client library did).
    pub async fn original(bootstrap: &str, topic: &str) -> std::io::Result<Self> {
        let producer: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .map_err(std::io::Error::other)?;
        Self::serve(OrderServiceServer::new(FlushEveryMessage {
            producer: Arc::new(producer),
            topic: topic.to_owned(),
        }))
        .await
    }

    async fn serve<S: OrderService>(service: OrderServiceServer<S>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    crate::grpc::without_nagle(listener),
                    stopped.cancelled_owned(),
                ),
        );
        Ok(Self { url, stop })
    }
}

impl Drop for ReferenceServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
