//! Running one order record exactly once in this process: what the consumer
//! group hands each record to. A redelivery waits for the run in flight or
//! is skipped once the order finished; a panic is logged, counted and the
//! order run again.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures::{future::BoxFuture, FutureExt};
use tokio_util::sync::CancellationToken;

use super::{
    flow::OrderFlow,
    registry::{Claim, OrderRegistry},
};
use crate::{
    clock::Backoff,
    kafka::consumer::{MemberId, RecordHandler, RunOutcome},
    metrics::{Counter, Metrics},
    order::{OrderId, OrderRecord},
};

/// Waits before running a panicked order again.
const PANIC_RETRY: Backoff = Backoff {
    first: Duration::from_millis(100),
    max: Duration::from_secs(5),
};

/// The consumer group's handler: claims each order in the registry, runs
/// it through the flow.
pub struct OrderHandler {
    pub flow: Arc<OrderFlow>,
    pub registry: Arc<OrderRegistry>,
    pub metrics: Arc<Metrics>,
}

impl RecordHandler for OrderHandler {
    fn run(
        self: Arc<Self>,
        record: OrderRecord,
        member: MemberId,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, RunOutcome> {
        async move { self.run_order(&record, member, &cancel).await }.boxed()
    }

    fn finished_elsewhere(&self, orders: Vec<OrderId>) {
        self.registry.finished_elsewhere(orders);
    }
}

impl OrderHandler {
    /// Runs an order; a panic is logged with the order id, counted, and the
    /// order run again, so its partition never stalls in silence.
    async fn run_order(
        &self,
        record: &OrderRecord,
        member: MemberId,
        cancel: &CancellationToken,
    ) -> RunOutcome {
        let mut counted = false;
        let mut wait = PANIC_RETRY.first;
        loop {
            let attempt = AssertUnwindSafe(self.settle(record, member, cancel, &mut counted));
            match attempt.catch_unwind().await {
                Ok(outcome) => return outcome,
                Err(panic) => {
                    let reason = panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or("unknown");
                    tracing::error!(order = %record.order_id, reason, "an order's run panicked; running it again");
                    self.metrics.incr(Counter::Panics);
                    tokio::select! {
                        _ = cancel.cancelled() => return RunOutcome::Cancelled,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = PANIC_RETRY.next(wait);
                }
            }
        }
    }

    /// Runs an order unless it already ran here: redeliveries wait for the
    /// run in flight, or are skipped once it finished. Returns Finished once
    /// the order is finished (by this record or another), Cancelled if
    /// handed over first.
    async fn settle(
        &self,
        record: &OrderRecord,
        member: MemberId,
        cancel: &CancellationToken,
        counted: &mut bool,
    ) -> RunOutcome {
        loop {
            let claim = self.registry.claim(record.order_id);
            if !*counted {
                *counted = true;
                let first_run = matches!(
                    claim,
                    Claim::Run {
                        first_time: true,
                        ..
                    }
                );
                self.metrics.incr(if first_run {
                    Counter::Consumed
                } else {
                    Counter::Redelivered
                });
            }
            match claim {
                Claim::Run { guard, .. } => {
                    return self.flow.run(guard, record, member, cancel).await
                }
                Claim::Finished => {
                    self.flow.completions.finished_again(record.order_id);
                    return RunOutcome::Finished;
                }
                Claim::InFlight(mut running) => {
                    tokio::select! {
                        _ = cancel.cancelled() => return RunOutcome::Cancelled,
                        done = running.wait_for(|done| *done) => if done.is_ok() {
                            return RunOutcome::Finished;
                        },
                    }
                    // The other run was abandoned: claim it again.
                }
            }
        }
    }
}
