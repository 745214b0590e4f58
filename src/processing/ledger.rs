//! Reconciles acknowledgements with completions by order id, so "every
//! acknowledged order finished" is checked on ids, not on two counters.
//! Finishes come from this process's own runs and, through the events
//! topic, from every other process of the group.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::sync::Locked;
use crate::{
    grpc::Acknowledgements,
    kafka::finished_watch::FinishedEvent,
    metrics::{Counter, Metrics},
    order::OrderId,
};

/// Which process finished an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishedBy {
    /// This process ran it to Finished.
    Here,
    /// Another process of the group did (learned from the events topic).
    Elsewhere,
}

#[derive(Default)]
struct Inner {
    /// Acknowledged, not finished: the ack's sequence number.
    awaiting_finish: HashMap<OrderId, u64>,
    /// The same orders by sequence, for the oldest and the overdue: only
    /// orders still waiting are kept, so a stuck one costs one entry.
    by_age: BTreeMap<u64, (Instant, OrderId)>,
    next_seq: u64,
    /// A consumer can finish an order before the server has processed the
    /// delivery report that acknowledges it; those wait here for their ack.
    finished_early: HashMap<OrderId, FinishedBy>,
    early_arrivals: VecDeque<(Instant, OrderId)>,
    acknowledged: u64,
    finished_here: u64,
    finished_elsewhere: u64,
}

/// The ledger at one moment, for a live reconciliation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LedgerTally {
    pub acknowledged: u64,
    /// Acknowledged orders that finished, here or elsewhere.
    pub finished: u64,
    /// Of those, the ones another process of the group finished.
    pub finished_elsewhere: u64,
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

impl Acknowledgements for AckLedger {
    fn acknowledged(&self, id: OrderId) {
        AckLedger::acknowledged(self, id);
    }
}

impl AckLedger {
    pub fn new(early_horizon: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            early_horizon,
        }
    }

    /// Records the ack; true when the order's finish was already seen
    /// (it finished before its ack was processed).
    pub fn acknowledged(&self, id: OrderId) -> bool {
        let mut inner = self.inner.locked();
        inner.acknowledged += 1;
        if let Some(by) = inner.finished_early.remove(&id) {
            inner.count(by);
            return true;
        }
        if !inner.awaiting_finish.contains_key(&id) {
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner.awaiting_finish.insert(id, seq);
            inner.by_age.insert(seq, (Instant::now(), id));
        }
        false
    }

    /// This process ran `id` to Finished.
    pub fn finished(&self, id: OrderId) {
        self.finished_by(id, FinishedBy::Here);
    }

    /// `id` reached Finished (seen here or on the events topic). Counted
    /// once, whichever report comes first; returns whether this one counted
    /// an acknowledged order.
    pub fn finished_by(&self, id: OrderId, by: FinishedBy) -> bool {
        let mut inner = self.inner.locked();
        if let Some(seq) = inner.awaiting_finish.remove(&id) {
            inner.by_age.remove(&seq);
            inner.count(by);
            return true;
        }
        let now = Instant::now();
        if inner.finished_early.insert(id, by).is_none() {
            inner.early_arrivals.push_back((now, id));
        }
        while let Some(&(at, old)) = inner.early_arrivals.front() {
            if now.duration_since(at) <= self.early_horizon {
                break;
            }
            inner.early_arrivals.pop_front();
            inner.finished_early.remove(&old);
        }
        false
    }

    /// Acknowledged orders that have not finished yet.
    pub fn unfinished(&self) -> usize {
        self.inner.locked().awaiting_finish.len()
    }

    /// Entries kept in all, for checking the bookkeeping stays bounded.
    #[cfg(test)]
    fn entries(&self) -> usize {
        let inner = self.inner.locked();
        inner.awaiting_finish.len()
            + inner.by_age.len()
            + inner.finished_early.len()
            + inner.early_arrivals.len()
    }

    /// Everything at once, consistently; orders waiting longer than
    /// `overdue_after` count as overdue.
    pub fn tally(&self, overdue_after: Duration) -> LedgerTally {
        let inner = self.inner.locked();
        let overdue = inner
            .by_age
            .values()
            .take_while(|(at, _)| at.elapsed() > overdue_after)
            .count() as u64;
        LedgerTally {
            acknowledged: inner.acknowledged,
            finished: inner.finished_here + inner.finished_elsewhere,
            finished_elsewhere: inner.finished_elsewhere,
            waiting: inner.awaiting_finish.len() as u64,
            oldest_waiting: inner.by_age.values().next().map(|(at, _)| at.elapsed()),
            overdue,
        }
    }
}

impl Inner {
    fn count(&mut self, by: FinishedBy) {
        match by {
            FinishedBy::Here => self.finished_here += 1,
            FinishedBy::Elsewhere => self.finished_elsewhere += 1,
        }
    }
}

/// Where finished orders are counted: the Finished counter (orders this
/// process ran) and the ledger that reconciles acknowledgements by id.
#[derive(Clone)]
pub struct Completions {
    pub metrics: Arc<Metrics>,
    pub ledger: Arc<AckLedger>,
}

impl Completions {
    /// This process ran `order` to Finished (its event is in Kafka).
    pub fn ran_here(&self, order: OrderId) {
        self.metrics.incr(Counter::Finished);
        self.ledger.finished(order);
    }

    /// A record of an order that already finished here: a client's retry
    /// (same order id) after a failure that Kafka had persisted anyway. Its
    /// ack may come after the first record finished and the early finish
    /// was forgotten; this settles that ack. Not a second finish: the
    /// Finished counter is not touched.
    pub fn finished_again(&self, order: OrderId) {
        self.ledger.finished_by(order, FinishedBy::Here);
    }

    /// A Finished event read back from the events topic. A run here counts
    /// itself before it lets go of its order, so an echo of this process's
    /// own event counts only a run cut short after writing it (a consumer
    /// killed at that moment).
    pub fn seen(&self, event: FinishedEvent) {
        let by = if event.here {
            FinishedBy::Here
        } else {
            FinishedBy::Elsewhere
        };
        if self.ledger.finished_by(event.order_id, by) && event.here {
            self.metrics.incr(Counter::Finished);
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
    fn a_late_ack_of_a_retried_order_is_settled_by_its_second_record() {
        // A client retry persisted twice: the first record finishes before
        // the (only) ack, which comes after the early horizon.
        let ledger = AckLedger::new(Duration::from_millis(10));
        let completions = Completions {
            metrics: Arc::new(Metrics::new()),
            ledger: Arc::new(ledger),
        };
        let id = OrderId::new_random();
        completions.ran_here(id);
        std::thread::sleep(Duration::from_millis(30));
        completions.ledger.finished(OrderId::new_random()); // expires the early finish
        completions.ledger.acknowledged(id);
        assert_eq!(completions.ledger.unfinished(), 1, "the ack waits");
        // The second record is skipped as already finished, and says so.
        completions.finished_again(id);
        assert_eq!(completions.ledger.unfinished(), 0);
        assert_eq!(completions.metrics.get(Counter::Finished), 1, "one finish");
        let tally = completions.ledger.tally(Duration::MAX);
        assert_eq!((tally.acknowledged, tally.finished), (1, 1));
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
    fn a_finish_is_counted_once_with_where_it_happened() {
        let ledger = AckLedger::new(Duration::from_secs(60));
        let (mine, theirs) = (OrderId::new_random(), OrderId::new_random());
        ledger.acknowledged(mine);
        ledger.acknowledged(theirs);
        ledger.finished(mine);
        ledger.finished_by(mine, FinishedBy::Elsewhere); // the same event, read back
        ledger.finished_by(theirs, FinishedBy::Elsewhere);
        ledger.finished(theirs); // cannot happen twice, but must not count twice
        let tally = ledger.tally(Duration::MAX);
        assert_eq!((tally.finished, tally.finished_elsewhere), (2, 1));
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

    #[test]
    fn one_stuck_order_among_a_hundred_thousand_keeps_the_ledger_small() {
        let ledger = AckLedger::new(Duration::from_millis(50));
        let stuck = OrderId::new_random();
        ledger.acknowledged(stuck);
        std::thread::sleep(Duration::from_millis(20));
        for _ in 0..100_000 {
            let id = OrderId::new_random();
            ledger.acknowledged(id);
            ledger.finished(id);
        }
        assert_eq!(ledger.entries(), 2, "the stuck order, twice indexed");
        let tally = ledger.tally(Duration::from_millis(10));
        assert_eq!((tally.waiting, tally.overdue), (1, 1), "{tally:?}");
        assert_eq!(tally.finished, 100_000);
    }
}
