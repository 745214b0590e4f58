//! Reconciles acknowledgements with completions by order id, so "every
//! acknowledged order finished" is checked on ids, not on two counters.

use std::{
    collections::{HashSet, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::order::OrderId;

#[derive(Default)]
struct Inner {
    awaiting_finish: HashSet<OrderId>,
    /// A consumer can finish an order before the server has processed the
    /// delivery report that acknowledges it; those wait here for their ack.
    finished_early: HashSet<OrderId>,
    early_arrivals: VecDeque<(Instant, OrderId)>,
}

pub struct AckLedger {
    inner: Mutex<Inner>,
    /// An ack can never come later than this after the finish (the delivery
    /// timeout bounds it), so older early finishes were someone else's orders.
    early_horizon: Duration,
}

impl AckLedger {
    pub fn new(early_horizon: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            early_horizon,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn acknowledged(&self, id: OrderId) {
        let mut inner = self.lock();
        if !inner.finished_early.remove(&id) {
            inner.awaiting_finish.insert(id);
        }
    }

    pub fn finished(&self, id: OrderId) {
        let mut inner = self.lock();
        if inner.awaiting_finish.remove(&id) {
            return;
        }
        let now = Instant::now();
        inner.finished_early.insert(id);
        inner.early_arrivals.push_back((now, id));
        while let Some(&(at, old)) = inner.early_arrivals.front() {
            if now.duration_since(at) <= self.early_horizon {
                break;
            }
            inner.early_arrivals.pop_front();
            inner.finished_early.remove(&old);
        }
    }

    /// Acknowledged orders that have not finished yet.
    pub fn unfinished(&self) -> usize {
        self.lock().awaiting_finish.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_acks_and_finishes_in_either_order() {
        let ledger = AckLedger::new(Duration::from_secs(60));
        let (a, b) = (OrderId::new_random(), OrderId::new_random());
        ledger.acknowledged(a);
        assert_eq!(ledger.unfinished(), 1);
        ledger.finished(b); // finished before its ack arrived
        ledger.acknowledged(b);
        assert_eq!(ledger.unfinished(), 1);
        ledger.finished(a);
        assert_eq!(ledger.unfinished(), 0);
    }

    #[test]
    fn forgets_early_finishes_past_the_horizon() {
        let ledger = AckLedger::new(Duration::ZERO);
        let stranger = OrderId::new_random();
        ledger.finished(stranger);
        std::thread::sleep(Duration::from_millis(2));
        ledger.finished(OrderId::new_random());
        ledger.acknowledged(stranger);
        assert_eq!(
            ledger.unfinished(),
            1,
            "an ack after the horizon is a new order"
        );
    }
}
