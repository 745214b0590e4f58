//! Drives one order through Processing → Preparing → Shipped → Delivered →
//! Finished, timing each state and announcing every transition.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use rdkafka::producer::future_producer::DeliveryFuture;
use tokio::sync::{broadcast, watch};

use super::{ledger::AckLedger, registry::RunGuard};
use crate::{
    clock::{elapsed_since_unix_seconds, unix_millis_now, DelayRange, SimClock},
    kafka::producer::OrderProducer,
    metrics::{Counter, Latency, Metrics},
    order::{OrderRecord, State, Transition},
    sinks::{notify::Notifier, Document, MetricKind, SinkHandle},
};

pub struct OrderFlow {
    pub clock: SimClock,
    /// The simulated time per state; the UI may change it while running.
    pub stage_delay: watch::Receiver<DelayRange>,
    pub metrics: Arc<Metrics>,
    pub transitions: broadcast::Sender<Transition>,
    pub events: Arc<OrderProducer>,
    pub ledger: Arc<AckLedger>,
    /// Mirrors the order and its metrics to Elasticsearch or the spool.
    pub sink: SinkHandle,
    /// E-mails the customer on chosen transitions, if configured.
    pub notifier: Option<Notifier>,
}

/// Keeps the per-state gauges right if a run is cancelled midway.
struct StateGauge<'a> {
    metrics: &'a Metrics,
    current: Option<State>,
}

impl Drop for StateGauge<'_> {
    fn drop(&mut self) {
        if let Some(state) = self.current.filter(|s| *s != State::Finished) {
            self.metrics.leave_state(state);
        }
    }
}

impl OrderFlow {
    /// Runs the whole state machine for a claimed order, then records it as
    /// finished. Cancelling the future abandons the run (the guard frees it).
    pub async fn run(&self, guard: RunGuard, record: &OrderRecord) {
        let end_to_end = elapsed_since_unix_seconds(record.timestamp_envio);
        self.metrics.record(Latency::EndToEnd, end_to_end);
        let consumed = Document::metric(
            MetricKind::EndToEndLatency,
            Some(record.order_id),
            None,
            end_to_end.as_secs_f64() * 1e3,
            "ms",
            unix_millis_now(),
        );
        self.sink.submit(vec![consumed]).await;
        let mut gauge = StateGauge {
            metrics: &self.metrics,
            current: None,
        };
        let mut on_record = self
            .announce(&mut gauge, record, State::Processing, Duration::ZERO)
            .await;
        let mut entered = Instant::now();
        while let Some(state) = gauge.current {
            let Some(next) = state.next() else { break };
            let range = *self.stage_delay.borrow();
            self.clock.wait_stage(range).await;
            let spent = entered.elapsed();
            self.metrics.record(Latency::InState(state), spent);
            on_record = self.announce(&mut gauge, record, next, spent).await;
            entered = Instant::now();
        }
        // The Finished event is in Kafka before the offset can be committed,
        // so a successor reading the events topic knows this order is done.
        if let Some(delivery) = on_record {
            if !matches!(delivery.await, Ok(Ok(_))) {
                self.metrics.incr(Counter::EventsDropped);
            }
        }
        self.metrics.record(
            Latency::Completion,
            elapsed_since_unix_seconds(record.timestamp_envio),
        );
        guard.finish();
        self.metrics.incr(Counter::Finished);
        self.ledger.finished(record.order_id);
    }

    /// Announces a transition everywhere; returns its pending delivery to
    /// the events topic (None if it was dropped and counted).
    async fn announce(
        &self,
        gauge: &mut StateGauge<'_>,
        record: &OrderRecord,
        to: State,
        spent: Duration,
    ) -> Option<DeliveryFuture> {
        let transition = Transition::new(record, gauge.current, to, spent);
        self.metrics.move_state(gauge.current, to);
        gauge.current = Some(to);
        self.metrics.incr(Counter::Transitions);
        let delivery = self.events.publish_transition(&transition);
        if delivery.is_none() {
            self.metrics.incr(Counter::EventsDropped);
        }
        if let Some(notifier) = &self.notifier {
            notifier.transition(record, to);
        }
        let documents = Document::for_transition(record, &transition);
        // No subscriber is fine: nobody is watching.
        let _ = self.transitions.send(transition);
        self.sink.submit(documents).await;
        delivery
    }
}
