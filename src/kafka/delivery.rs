//! A producer whose delivery reports complete futures, polled by a thread of
//! its own. rdkafka's `FutureProducer` polls every 100 ms through a loop that
//! rounds the time left down to whole milliseconds, so it spins through the
//! last fraction of each period (`poll(0)` until the deadline): ≈1 % of a
//! core with nothing to do. Asking for slightly more than whole milliseconds
//! ends each wait just past its deadline instead of just before it.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    thread::JoinHandle,
    time::Duration,
};

use futures::channel::oneshot;
use rdkafka::{
    error::{KafkaError, KafkaResult},
    message::{Message, OwnedHeaders, ToBytes},
    producer::{
        future_producer::{Delivery, OwnedDeliveryResult},
        BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext,
    },
    ClientConfig,
};

use super::HealthContext;

/// How long one poll waits: 100 ms and a little, so the last wait of the
/// poll loop (whole milliseconds) ends after the deadline, not before.
const POLL: Duration = Duration::from_micros(100_050);

impl ProducerContext for HealthContext {
    type DeliveryOpaque = Box<oneshot::Sender<OwnedDeliveryResult>>;

    fn delivery(&self, result: &DeliveryResult<'_>, done: Self::DeliveryOpaque) {
        let owned = match result {
            Ok(message) => Ok(Delivery {
                partition: message.partition(),
                offset: message.offset(),
                timestamp: message.timestamp(),
            }),
            Err((error, message)) => Err((error.clone(), message.detach())),
        };
        // Nobody waiting is fine: the record was sent either way.
        let _ = done.send(owned);
    }
}

/// Completes with the record's delivery report (or `Canceled` if the
/// producer went away first).
pub struct DeliveryFuture(oneshot::Receiver<OwnedDeliveryResult>);

impl std::future::Future for DeliveryFuture {
    type Output = Result<OwnedDeliveryResult, oneshot::Canceled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

/// One record to send.
pub struct Outgoing<'a, K: ToBytes + ?Sized, P: ToBytes + ?Sized> {
    pub topic: &'a str,
    pub key: &'a K,
    pub payload: &'a P,
    pub headers: Option<OwnedHeaders>,
}

pub struct PolledProducer {
    producer: Arc<BaseProducer<HealthContext>>,
    stop: Arc<AtomicBool>,
    poller: Option<JoinHandle<()>>,
}

impl PolledProducer {
    pub fn new(config: &ClientConfig, context: HealthContext) -> KafkaResult<Self> {
        let producer: Arc<BaseProducer<HealthContext>> =
            Arc::new(config.create_with_context(context)?);
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let (producer, stop) = (Arc::clone(&producer), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("producer-poll".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        producer.poll(POLL);
                    }
                })
                .map_err(|_| KafkaError::Canceled)?
        };
        Ok(Self {
            producer,
            stop,
            poller: Some(poller),
        })
    }

    /// Queues a record; its future completes with the delivery report.
    pub fn send<K: ToBytes + ?Sized, P: ToBytes + ?Sized>(
        &self,
        outgoing: Outgoing<'_, K, P>,
    ) -> Result<DeliveryFuture, KafkaError> {
        let (done, report) = oneshot::channel();
        let mut record = BaseRecord::with_opaque_to(outgoing.topic, Box::new(done))
            .key(outgoing.key)
            .payload(outgoing.payload);
        if let Some(headers) = outgoing.headers {
            record = record.headers(headers);
        }
        self.producer.send(record).map_err(|(error, _)| error)?;
        Ok(DeliveryFuture(report))
    }

    /// Waits for everything queued to be delivered.
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.producer.flush(timeout)
    }
}

impl Drop for PolledProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(poller) = self.poller.take() {
            let _ = poller.join();
        }
    }
}
