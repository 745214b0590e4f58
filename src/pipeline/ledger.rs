//! Reconciles acknowledgements with completions by order id, so "every
//! acknowledged order finished" is checked on ids, not on two counters.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::order::OrderId;

#[derive(Default)]
struct Inner {
    /// Acknowledged, not finished: when each was acknowledged.
    awaiting_finish: HashMap<OrderId, Instant>,
    /// Acknowledgements in order, for the oldest one still waiting; entries
    /// already finished are dropped lazily from the front.
    ack_order: VecDeque<(Instant, OrderId)>,
    /// A consumer can finish an order before the server has processed the
    /// delivery report that acknowledges it; those wait here for their ack.
    finished_early: HashSet<OrderId>,
    early_arrivals: VecDeque<(Instant, OrderId)>,
    acknowledged: u64,
    /// Acknowledged orders that finished (matched by id).
    finished: u64,
}

/// The ledger at one moment, for a live reconciliation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LedgerTally {
    pub acknowledged: u64,
    pub finished: u64,
    /// Acknowledged, not finished yet.
    pub waiting: u64,
    /// How long the oldest waiting order has waited.
    pub oldest_waiting: Option<Duration>,
    /// Waiting orders older than the limit asked for.
    pub overdue: u64,
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
        inner.acknowledged += 1;
        if inner.finished_early.remove(&id) {
            inner.finished += 1;
        } else {
            let now = Instant::now();
            inner.awaiting_finish.insert(id, now);
            inner.ack_order.push_back((now, id));
        }
    }

    pub fn finished(&self, id: OrderId) {
        let mut inner = self.lock();
        if inner.take_awaited(id) {
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

    /// Records the finish of an order this process acknowledged but whose
    /// run was cut short after its Finished event was written (a consumer
    /// killed at that moment): returns whether it was waiting here.
    pub fn finished_if_awaited(&self, id: OrderId) -> bool {
        self.lock().take_awaited(id)
    }

    /// Acknowledged orders that have not finished yet.
    pub fn unfinished(&self) -> usize {
        self.lock().awaiting_finish.len()
    }

    /// Everything at once, consistently; orders waiting longer than
    /// `overdue_after` count as overdue.
    pub fn tally(&self, overdue_after: Duration) -> LedgerTally {
        let mut inner = self.lock();
        inner.drop_finished_from_front();
        let overdue = inner
            .ack_order
            .iter()
            .take_while(|(at, _)| at.elapsed() > overdue_after)
            .filter(|(at, id)| inner.awaiting_finish.get(id) == Some(at))
            .count() as u64;
        LedgerTally {
            acknowledged: inner.acknowledged,
            finished: inner.finished,
            waiting: inner.awaiting_finish.len() as u64,
            oldest_waiting: inner.ack_order.front().map(|(at, _)| at.elapsed()),
            overdue,
        }
    }
}

impl Inner {
    /// Counts `id` finished if it was waiting; returns whether it was.
    fn take_awaited(&mut self, id: OrderId) -> bool {
        if self.awaiting_finish.remove(&id).is_none() {
            return false;
        }
        self.finished += 1;
        self.drop_finished_from_front();
        true
    }

    fn drop_finished_from_front(&mut self) {
        while let Some((at, id)) = self.ack_order.front() {
            if self.awaiting_finish.get(id) == Some(at) {
                break;
            }
            self.ack_order.pop_front();
        }
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
        assert!(ledger.tally(Duration::MAX).oldest_waiting.is_some());
        ledger.finished(a);
        assert_eq!(ledger.unfinished(), 0);
        let tally = ledger.tally(Duration::MAX);
        assert_eq!(
            (tally.acknowledged, tally.finished, tally.waiting),
            (2, 2, 0)
        );
        assert_eq!(tally.oldest_waiting, None);
    }

    #[test]
    fn the_oldest_waiting_is_the_earliest_ack_still_unfinished() {
        let ledger = AckLedger::new(Duration::from_secs(60));
        let (first, second) = (OrderId::new_random(), OrderId::new_random());
        ledger.acknowledged(first);
        std::thread::sleep(Duration::from_millis(30));
        ledger.acknowledged(second);
        let tally = ledger.tally(Duration::from_millis(20));
        assert!(tally.oldest_waiting.unwrap() >= Duration::from_millis(30));
        assert_eq!(tally.overdue, 1, "only the first waited past 20 ms");
        ledger.finished(first);
        let tally = ledger.tally(Duration::from_millis(20));
        assert!(tally.oldest_waiting.unwrap() < Duration::from_millis(30));
        assert_eq!(tally.overdue, 0);
    }

    #[test]
    fn a_finish_learned_later_counts_only_for_orders_waiting_here() {
        let ledger = AckLedger::new(Duration::from_secs(60));
        let (mine, elsewhere) = (OrderId::new_random(), OrderId::new_random());
        ledger.acknowledged(mine);
        assert!(ledger.finished_if_awaited(mine));
        assert!(!ledger.finished_if_awaited(mine), "counted once");
        assert!(!ledger.finished_if_awaited(elsewhere));
        assert_eq!(ledger.unfinished(), 0);
        assert_eq!(ledger.tally(Duration::MAX).finished, 1);
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
