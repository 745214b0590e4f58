//! Drives one order through Processing → Preparing → Shipped → Delivered →
//! Finished, timing each state and announcing every transition.

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::{ledger::Completions, registry::RunGuard};
use crate::{
    clock::{elapsed_since_unix_seconds, Backoff, DelayRange, SimClock},
    kafka::{
        consumer::{MemberId, RunOutcome},
        delivery::DeliveryFuture,
        producer::OrderProducer,
        this_process,
    },
    metrics::{Counter, Latency, Metrics},
    order::{OrderRecord, RunId, State, Transition},
    sinks::notify::Notifier,
};

pub struct OrderFlow {
    pub clock: SimClock,
    /// The simulated time per state; the UI may change it while running.
    pub stage_delay: watch::Receiver<DelayRange>,
    pub metrics: Arc<Metrics>,
    pub transitions: broadcast::Sender<Transition>,
    pub events: Arc<OrderProducer>,
    pub completions: Completions,
    /// E-mails the customer on chosen transitions, if configured.
    pub notifier: Option<Notifier>,
    /// Panics still to inject (chaos).
    pub injected_panics: AtomicU32,
}

/// Keeps the per-state gauges right if a run is cancelled midway.
struct StateGauge<'a> {
    metrics: &'a Metrics,
    current: Option<State>,
    /// The consumer running the order, named in its events.
    member: MemberId,
    /// This run, named in its events (a repeated record names it again).
    run: RunId,
}

impl Drop for StateGauge<'_> {
    fn drop(&mut self) {
        if let Some(state) = self.current.filter(|s| *s != State::Finished) {
            self.metrics.leave_state(state);
        }
    }
}

/// Waits between attempts to publish a Finished event that did not land.
const FINISHED_RETRY: Backoff = Backoff {
    first: Duration::from_millis(50),
    max: Duration::from_secs(2),
};

impl OrderFlow {
    /// Runs the whole state machine for a claimed order, then records it as
    /// finished. `cancel` stops the run between states, never once its
    /// Finished event is being written. Dropping the future abandons the run
    /// (the guard frees it).
    pub async fn run(
        self: &Arc<Self>,
        guard: RunGuard,
        record: &OrderRecord,
        member: MemberId,
        cancel: &CancellationToken,
    ) -> RunOutcome {
        if cancel.is_cancelled() {
            return RunOutcome::Cancelled;
        }
        let end_to_end = elapsed_since_unix_seconds(record.accepted_at);
        self.metrics.record(Latency::EndToEnd, end_to_end);
        let mut gauge = StateGauge {
            metrics: &self.metrics,
            current: None,
            member,
            run: RunId::new_random(),
        };
        self.announce(&mut gauge, record, State::Processing, Duration::ZERO)
            .await;
        let mut entered = Instant::now();
        let spent_before_finished = loop {
            let Some(state) = gauge.current else {
                return RunOutcome::Cancelled;
            };
            let range = *self.stage_delay.borrow();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return RunOutcome::Cancelled,
                _ = self.clock.wait_stage(range) => {}
            }
            self.panic_if_injected(record);
            let spent = entered.elapsed();
            self.metrics.record(Latency::InState(state), spent);
            match state.next() {
                Some(State::Finished) | None => break spent,
                Some(next) => {
                    self.announce(&mut gauge, record, next, spent).await;
                    entered = Instant::now();
                }
            }
        };
        // The Finished event is in Kafka before the offset can be committed,
        // so a successor reading the events topic knows this order is done.
        let (finished, delivery) = self
            .announce(&mut gauge, record, State::Finished, spent_before_finished)
            .await;
        let finished = finished.expect("a Finished transition is kept for its retries");
        // The delivery and what follows it run on a task of their own: a run
        // killed while it waits (a crashed consumer, simulated) still
        // finishes its order once the event is in Kafka, so a redelivery
        // waits for it and is skipped instead of running the order twice.
        let flow = Arc::clone(self);
        let (order_id, accepted_at) = (record.order_id, record.accepted_at);
        let finishing = tokio::spawn(async move {
            flow.deliver_finished(&finished, delivery).await;
            flow.metrics
                .record(Latency::Completion, elapsed_since_unix_seconds(accepted_at));
            // Counted before the run lets go of the order, so the events
            // topic's echo of this Finished event never counts it again.
            flow.completions.ran_here(order_id);
            guard.finish();
        });
        if let Err(error) = finishing.await {
            // Never aborted: only a panic ends it early; the handler's
            // panic handling takes it from here.
            std::panic::resume_unwind(error.into_panic());
        }
        RunOutcome::Finished
    }

    /// Publishes a Finished event until Kafka has it: its order's offset is
    /// not committed before.
    async fn deliver_finished(
        &self,
        transition: &Transition,
        mut delivery: Option<DeliveryFuture>,
    ) {
        let mut wait = FINISHED_RETRY.first;
        loop {
            if let Some(pending) = delivery.take() {
                match pending.await {
                    Ok(Ok(_)) => return,
                    Ok(Err((error, _))) => tracing::warn!(
                        order = %transition.order_id,
                        %error,
                        "Finished event not delivered; publishing it again"
                    ),
                    Err(_) => tracing::warn!(
                        order = %transition.order_id,
                        "Finished event cancelled; publishing it again"
                    ),
                }
            }
            self.metrics.incr(Counter::FinishedRetries);
            tokio::time::sleep(wait).await;
            wait = FINISHED_RETRY.next(wait);
            delivery = self.events.publish_transition(transition);
        }
    }

    /// Makes the next order run panic (the chaos menu's test of the
    /// consumer's panic handling).
    pub fn inject_panic(&self) {
        self.injected_panics.fetch_add(1, Ordering::Relaxed);
    }

    fn panic_if_injected(&self, record: &OrderRecord) {
        let take = |n: u32| n.checked_sub(1);
        if self
            .injected_panics
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, take)
            .is_ok()
        {
            panic!("chaos: injected panic in order {}", record.order_id);
        }
    }

    /// Announces a transition everywhere; returns its pending delivery to
    /// the events topic (None if the queue refused it, counted) and, for
    /// Finished only, the transition itself, to publish again if need be.
    async fn announce(
        &self,
        gauge: &mut StateGauge<'_>,
        record: &OrderRecord,
        to: State,
        spent: Duration,
    ) -> Announced {
        let mut transition = Transition::new(record, gauge.current, to, spent);
        transition.by = Some(this_process().to_owned());
        transition.member = Some(format!("c{}", gauge.member));
        transition.run = Some(gauge.run);
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
        // No subscriber is fine: nobody is watching.
        let kept = (to == State::Finished).then(|| transition.clone());
        let _ = self.transitions.send(transition);
        (kept, delivery)
    }
}

/// A Finished transition (kept for retries) and a pending delivery.
type Announced = (Option<Transition>, Option<DeliveryFuture>);
