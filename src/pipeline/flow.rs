//! Drives one order through Processing → Preparing → Shipped → Delivered →
//! Finished, timing each state and announcing every transition.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{broadcast, watch};

use super::{ledger::AckLedger, registry::RunGuard};
use crate::{
    clock::{elapsed_since_unix_seconds, DelayRange, SimClock},
    kafka::producer::OrderProducer,
    metrics::{Counter, Latency, Metrics},
    order::{OrderRecord, State, Transition},
};

pub struct OrderFlow {
    pub clock: SimClock,
    /// The simulated time per state; the UI may change it while running.
    pub stage_delay: watch::Receiver<DelayRange>,
    pub metrics: Arc<Metrics>,
    pub transitions: broadcast::Sender<Transition>,
    pub events: Arc<OrderProducer>,
    pub ledger: Arc<AckLedger>,
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
        self.metrics.record(
            Latency::EndToEnd,
            elapsed_since_unix_seconds(record.timestamp_envio),
        );
        let mut gauge = StateGauge {
            metrics: &self.metrics,
            current: None,
        };
        self.announce(&mut gauge, record, State::Processing, Duration::ZERO);
        let mut entered = Instant::now();
        while let Some(state) = gauge.current {
            let Some(next) = state.next() else { break };
            let range = *self.stage_delay.borrow();
            self.clock.wait_stage(range).await;
            let spent = entered.elapsed();
            self.metrics.record(Latency::InState(state), spent);
            self.announce(&mut gauge, record, next, spent);
            entered = Instant::now();
        }
        self.metrics.record(
            Latency::Completion,
            elapsed_since_unix_seconds(record.timestamp_envio),
        );
        guard.finish();
        self.metrics.incr(Counter::Finished);
        self.ledger.finished(record.order_id);
    }

    fn announce(
        &self,
        gauge: &mut StateGauge<'_>,
        record: &OrderRecord,
        to: State,
        spent: Duration,
    ) {
        let transition = Transition::new(record, gauge.current, to, spent);
        self.metrics.move_state(gauge.current, to);
        gauge.current = Some(to);
        self.metrics.incr(Counter::Transitions);
        if !self.events.publish_transition(&transition) {
            self.metrics.incr(Counter::EventsDropped);
        }
        // No subscriber is fine: nobody is watching.
        let _ = self.transitions.send(transition);
    }
}
