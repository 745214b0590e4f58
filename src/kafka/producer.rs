//! The durable producer: idempotent, `acks=all`, batched by linger. An order
//! counts as accepted only once its delivery report says it is in Kafka.

use std::{sync::Arc, time::Duration};

use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
};

use super::{
    delivery::{DeliveryFuture, Outgoing, PolledProducer},
    BrokerTarget, HealthContext, KafkaConnection,
};
use crate::{
    order::{OrderRecord, Transition},
    sync::Bell,
};

/// Where an order landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProduceError {
    /// The local queue is full: the caller should slow down.
    #[error("the Kafka producer queue is full; retry later")]
    QueueFull,
    /// Kafka did not take the record within the delivery timeout.
    #[error("Kafka did not accept the order: {0}")]
    Unavailable(String),
}

/// Event header naming the state entered (`Finished`, ...).
pub const STATE_HEADER: &str = "state";
/// Event header naming the process that drove the order (`host:pid`).
pub const BY_HEADER: &str = "by";
/// Event header naming the run that wrote it (see [`RunId`](crate::order::RunId)).
pub const RUN_HEADER: &str = "run";

pub struct OrderProducer {
    producer: PolledProducer,
    context: HealthContext,
    topic: String,
    events_topic: String,
    metrics_topic: String,
    processes_topic: String,
    /// Counts orders written (or attempted): wakes consumers idling on the
    /// embedded broker, where this producer writes every order there is.
    written: Arc<Bell>,
}

/// Producer settings that make an acknowledged order durable, with the
/// batching that keeps it fast.
const DURABILITY: [(&str, &str); 3] = [
    ("enable.idempotence", "true"),
    ("acks", "all"),
    // Short: each gRPC reply waits for its batch. Concurrent orders still
    // share batches, since they queue while a request is in flight.
    ("linger.ms", "1"),
];

/// lz4 saves a real broker's network and disk. The embedded one is in this
/// process, and it keeps 5 MiB per partition: uncompressed batches fill it
/// with fewer of them, so its fetches walk fewer (it finds a batch by
/// walking its log from the oldest).
fn compression(target: &BrokerTarget) -> &'static str {
    match target {
        BrokerTarget::Embedded => "none",
        BrokerTarget::External(_) => "lz4",
    }
}

/// Bounds the producer's memory; past it, callers get `QueueFull`.
const QUEUE_MAX_MESSAGES: &str = "100000";

/// The producer configuration that makes an acknowledged order durable.
pub fn durable_config(connection: &KafkaConnection) -> rdkafka::ClientConfig {
    let mut config = connection.client_config();
    let compression = ("compression.type", compression(&connection.options.target));
    for (key, value) in DURABILITY.into_iter().chain([compression]) {
        // A user's -X setting wins over our defaults.
        if config.get(key).is_none() {
            config.set(key, value);
        }
    }
    config
        .set(
            "message.timeout.ms",
            connection.options.delivery_timeout.as_millis().to_string(),
        )
        .set("queue.buffering.max.messages", QUEUE_MAX_MESSAGES);
    config
}

impl OrderProducer {
    pub fn new(connection: &KafkaConnection) -> Result<Self, KafkaError> {
        let config = durable_config(connection);
        let context = connection.context();
        let producer = PolledProducer::new(&config, context.clone())?;
        Ok(Self {
            producer,
            context,
            topic: connection.options.topic.clone(),
            events_topic: connection.options.events_topic.clone(),
            metrics_topic: connection.options.metrics_topic.clone(),
            processes_topic: connection.options.processes_topic.clone(),
            written: Arc::default(),
        })
    }

    /// Sends one order keyed by its id and waits for Kafka's delivery report.
    pub async fn send_order(&self, record: &OrderRecord) -> Result<Delivered, ProduceError> {
        let key = record.order_id.to_string();
        let value = serde_json::to_vec(record).expect("an OrderRecord always serializes");
        let delivery = self
            .producer
            .send(Outgoing {
                topic: &self.topic,
                key: &key,
                payload: &value,
                headers: None,
            })
            .map_err(classify)?;
        let delivered = delivery.await;
        // Even a failed delivery may have reached the log.
        self.written.ring();
        match delivered {
            Ok(Ok(delivery)) => {
                self.context.mark_up();
                Ok(Delivered {
                    partition: delivery.partition,
                    offset: delivery.offset,
                })
            }
            Ok(Err((error, _))) => Err(classify(error)),
            Err(_canceled) => Err(ProduceError::Unavailable(
                "the producer shut down before delivery".to_owned(),
            )),
        }
    }

    /// Rings each time an order has been written (or tried).
    pub fn orders_written(&self) -> Arc<Bell> {
        Arc::clone(&self.written)
    }

    /// Queues a transition for the events topic. The returned delivery can
    /// be awaited or dropped (the record is sent either way); None if the
    /// queue refused it.
    pub fn publish_transition(&self, transition: &Transition) -> Option<DeliveryFuture> {
        let key = transition.order_id.to_string();
        let value = serde_json::to_vec(transition).expect("a Transition always serializes");
        // Headers let readers pick Finished events without parsing each one.
        let mut headers = OwnedHeaders::new().insert(Header {
            key: STATE_HEADER,
            value: Some(transition.to.name()),
        });
        if let Some(by) = &transition.by {
            headers = headers.insert(Header {
                key: BY_HEADER,
                value: Some(by.as_str()),
            });
        }
        if let Some(run) = transition.run {
            headers = headers.insert(Header {
                key: RUN_HEADER,
                value: Some(&run.to_string()),
            });
        }
        self.producer
            .send(Outgoing {
                topic: &self.events_topic,
                key: &key,
                payload: &value,
                headers: Some(headers),
            })
            .ok()
    }

    /// Queues a metric record (never waits); false if the queue refused it.
    pub fn publish_metric(&self, key: &str, value: &[u8]) -> bool {
        self.producer
            .send(Outgoing {
                topic: &self.metrics_topic,
                key,
                payload: value,
                headers: None,
            })
            .is_ok()
    }

    /// Queues this process's announcement (see `fleet::presence`), keyed by
    /// the process so each one's stays in one partition, in order. Never
    /// waits; false if the queue refused it (the next one follows in a second).
    pub fn publish_presence(&self, process: &str, value: &[u8]) -> bool {
        self.producer
            .send(Outgoing {
                topic: &self.processes_topic,
                key: process,
                payload: value,
                headers: None,
            })
            .is_ok()
    }

    /// Waits for everything queued to be delivered.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}

fn classify(error: KafkaError) -> ProduceError {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => ProduceError::QueueFull,
        _ => ProduceError::Unavailable(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::KafkaOptions;

    fn compression_for(target: BrokerTarget, extra: &[(&str, &str)]) -> Option<String> {
        let mut options = KafkaOptions::new(target, "orders");
        options.extra = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let connection = KafkaConnection::new("127.0.0.1:9092".to_owned(), options);
        durable_config(&connection)
            .get("compression.type")
            .map(str::to_owned)
    }

    #[test]
    fn batches_are_compressed_for_a_real_broker_only_unless_the_user_says() {
        let external = || BrokerTarget::External("127.0.0.1:9092".to_owned());
        assert_eq!(compression_for(external(), &[]).as_deref(), Some("lz4"));
        assert_eq!(
            compression_for(BrokerTarget::Embedded, &[]).as_deref(),
            Some("none")
        );
        let zstd = [("compression.type", "zstd")];
        assert_eq!(compression_for(external(), &zstd).as_deref(), Some("zstd"));
        assert_eq!(
            compression_for(BrokerTarget::Embedded, &zstd).as_deref(),
            Some("zstd")
        );
    }
}
