//! Makes processing idempotent per order id within a process: a record seen
//! again (a Kafka redelivery after a rebalance or restart) waits for the run
//! already in flight, or is skipped if that order already finished.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    hash::Hash,
    sync::{Arc, Mutex},
};

use tokio::sync::watch;

use crate::order::OrderId;
use crate::sync::Locked;

/// A set that remembers only the most recent `capacity` members, so memory
/// stays flat however long the pipeline runs. Redeliveries only ever concern
/// recent orders (those not yet committed), so an old id falling out is safe.
#[derive(Debug)]
pub struct RecentSet<T> {
    members: HashSet<T>,
    order: VecDeque<T>,
    capacity: usize,
}

impl<T: Copy + Eq + Hash> RecentSet<T> {
    /// Sized for `capacity` up front: the memory a long run needs is taken
    /// at the start, so the footprint does not step up (a hash table
    /// doubling) hundreds of thousands of orders in.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            // One over: an insert lands before the oldest leaves. Twice
            // that for the table: removals leave tombstones, and a table
            // cleans them in place (instead of doubling) only while at most
            // half full.
            members: HashSet::with_capacity(2 * (capacity + 1)),
            order: VecDeque::with_capacity(capacity + 1),
            capacity,
        }
    }

    /// Returns true if `value` was not already a member.
    pub fn insert(&mut self, value: T) -> bool {
        if !self.members.insert(value) {
            return false;
        }
        self.order.push_back(value);
        if self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.members.remove(&oldest);
            }
        }
        true
    }

    pub fn contains(&self, value: &T) -> bool {
        self.members.contains(value)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// What to do with a record for an order.
pub enum Claim {
    /// Run it. `first_time` is false when an earlier run was abandoned.
    Run { guard: RunGuard, first_time: bool },
    /// Another worker is running it; wait for that run to end.
    InFlight(watch::Receiver<bool>),
    /// It already finished: nothing to do but commit.
    Finished,
}

struct Inner {
    in_flight: HashMap<OrderId, watch::Receiver<bool>>,
    seen: RecentSet<OrderId>,
    finished: RecentSet<OrderId>,
}

pub struct OrderRegistry {
    inner: Mutex<Inner>,
}

impl OrderRegistry {
    pub fn new(memory: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                in_flight: HashMap::new(),
                seen: RecentSet::new(memory),
                finished: RecentSet::new(memory),
            }),
        })
    }

    /// Records orders that finished elsewhere (a previous owner of their
    /// partition), so their redeliveries are skipped.
    pub fn finished_elsewhere(&self, ids: impl IntoIterator<Item = OrderId>) {
        let mut inner = self.inner.locked();
        for id in ids {
            if !inner.in_flight.contains_key(&id) {
                inner.finished.insert(id);
            }
        }
    }

    /// Records that `id` finished (its Finished event was read back) unless
    /// it is running here; returns whether it was not running here.
    pub fn note_finished(&self, id: OrderId) -> bool {
        let mut inner = self.inner.locked();
        if inner.in_flight.contains_key(&id) {
            return false;
        }
        inner.finished.insert(id);
        true
    }

    pub fn claim(self: &Arc<Self>, id: OrderId) -> Claim {
        let mut inner = self.inner.locked();
        if inner.finished.contains(&id) {
            return Claim::Finished;
        }
        if let Some(running) = inner.in_flight.get(&id) {
            return Claim::InFlight(running.clone());
        }
        let (done, running) = watch::channel(false);
        inner.in_flight.insert(id, running);
        let first_time = inner.seen.insert(id);
        Claim::Run {
            guard: RunGuard {
                registry: Arc::clone(self),
                id,
                done: Some(done),
            },
            first_time,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.inner.locked().in_flight.len()
    }
}

/// Held while an order runs. `finish` records success; dropping it without
/// (a cancelled or crashed worker) frees the order for the next delivery.
pub struct RunGuard {
    registry: Arc<OrderRegistry>,
    id: OrderId,
    done: Option<watch::Sender<bool>>,
}

impl RunGuard {
    pub fn finish(mut self) {
        let mut inner = self.registry.inner.locked();
        inner.in_flight.remove(&self.id);
        inner.finished.insert(self.id);
        drop(inner);
        if let Some(done) = self.done.take() {
            let _ = done.send(true);
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if self.done.is_some() {
            // Abandoned: waiters see the sender close and claim it again.
            self.registry.inner.locked().in_flight.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_set_forgets_the_oldest() {
        let mut set = RecentSet::new(2);
        assert!(set.insert(1));
        assert!(!set.insert(1));
        set.insert(2);
        set.insert(3);
        assert!(!set.contains(&1));
        assert!(set.contains(&2) && set.contains(&3));
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn recent_set_takes_its_memory_once() {
        let mut set = RecentSet::new(1000);
        let (table, queue) = (set.members.capacity(), set.order.capacity());
        for n in 0..20_000 {
            set.insert(n);
            // A table that grew would report about twice the room;
            // tombstones only lower what is left of it.
            assert!(set.members.capacity() <= table, "grew at {n}");
        }
        assert_eq!(set.order.capacity(), queue);
        assert_eq!(set.len(), 1000);
    }

    #[tokio::test]
    async fn a_second_claim_waits_for_the_first_run() {
        let registry = OrderRegistry::new(100);
        let id = OrderId::new_random();
        let Claim::Run { guard, first_time } = registry.claim(id) else {
            panic!("first claim must run");
        };
        assert!(first_time);
        let Claim::InFlight(mut waiting) = registry.claim(id) else {
            panic!("second claim must wait");
        };
        guard.finish();
        assert!(waiting.wait_for(|done| *done).await.is_ok());
        assert!(matches!(registry.claim(id), Claim::Finished));
        assert_eq!(registry.in_flight(), 0);
    }

    #[tokio::test]
    async fn an_abandoned_run_can_be_claimed_again() {
        let registry = OrderRegistry::new(100);
        let id = OrderId::new_random();
        let Claim::Run { guard, .. } = registry.claim(id) else {
            panic!("first claim must run");
        };
        let Claim::InFlight(mut waiting) = registry.claim(id) else {
            panic!("second claim must wait");
        };
        drop(guard);
        assert!(waiting.wait_for(|done| *done).await.is_err());
        let Claim::Run { first_time, .. } = registry.claim(id) else {
            panic!("abandoned order must run again");
        };
        assert!(!first_time);
    }
}
