//! What both APIs share: limits, backpressure and the durable hand-off to Kafka.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tonic::Status;

use crate::{
    clock::{unix_millis_now, unix_seconds_now},
    kafka::producer::{Delivered, OrderProducer, ProduceError},
    metrics::{Counter, Metrics},
    order::{Order, OrderError, OrderId, OrderRecord},
    sinks::{Document, MetricKind, MirrorHandle},
};

#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// Orders being handed to Kafka at once; past it, RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    /// Largest order JSON accepted.
    pub max_message_bytes: usize,
}

pub struct Accepted {
    pub order_id: OrderId,
    pub delivered: Delivered,
}

/// Who hears of each acknowledged order (the ledger that reconciles them
/// with finished ones, by id).
pub trait Acknowledgements: Send + Sync {
    fn acknowledged(&self, order: OrderId);
}

pub struct Ingest {
    producer: Arc<OrderProducer>,
    metrics: Arc<Metrics>,
    acknowledgements: Arc<dyn Acknowledgements>,
    in_flight: Semaphore,
    limits: ServerLimits,
    sink: MirrorHandle,
}

impl Ingest {
    pub fn new(
        producer: Arc<OrderProducer>,
        metrics: Arc<Metrics>,
        acknowledgements: Arc<dyn Acknowledgements>,
        limits: ServerLimits,
        sink: MirrorHandle,
    ) -> Self {
        Self {
            producer,
            metrics,
            acknowledgements,
            in_flight: Semaphore::new(limits.max_in_flight.max(1)),
            limits,
            sink,
        }
    }

    pub fn limits(&self) -> ServerLimits {
        self.limits
    }

    /// Counts a refused order and turns the reason into INVALID_ARGUMENT.
    pub fn reject(&self, error: OrderError) -> Status {
        self.metrics.incr(Counter::Rejected);
        Status::invalid_argument(error.to_string())
    }

    pub fn check_size(&self, size: usize) -> Result<(), Status> {
        let limit = self.limits.max_message_bytes;
        if size > limit {
            return Err(self.reject(OrderError::TooLarge { size, limit }));
        }
        Ok(())
    }

    /// Hands a valid order to Kafka and returns once it is durable there.
    pub async fn accept(
        &self,
        order: Order,
        order_id: Option<OrderId>,
    ) -> Result<Accepted, Status> {
        let _slot = self.in_flight.try_acquire().map_err(|_| {
            Status::resource_exhausted(format!(
                "server is at its limit of {} orders in flight; retry with backoff",
                self.limits.max_in_flight
            ))
        })?;
        let received = std::time::Instant::now();
        let record = OrderRecord {
            order,
            order_id: order_id.unwrap_or_else(OrderId::new_random),
            accepted_at: unix_seconds_now(),
        };
        match self.producer.send_order(&record).await {
            Ok(delivered) => {
                self.metrics.incr(Counter::Acknowledged);
                self.acknowledgements.acknowledged(record.order_id);
                // The server's share of the send time: receipt until durable.
                let send_time = Document::metric(
                    MetricKind::SendTime,
                    Some(record.order_id),
                    None,
                    received.elapsed().as_secs_f64() * 1e3,
                    "ms",
                    unix_millis_now(),
                );
                self.sink.publish(&send_time);
                Ok(Accepted {
                    order_id: record.order_id,
                    delivered,
                })
            }
            Err(error @ ProduceError::QueueFull) => {
                Err(Status::resource_exhausted(error.to_string()))
            }
            Err(error @ ProduceError::Unavailable(_)) => {
                Err(Status::unavailable(error.to_string()))
            }
        }
    }
}
