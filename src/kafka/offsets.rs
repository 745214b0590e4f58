//! At-least-once offset bookkeeping.
//!
//! Orders from one partition finish out of order (each waits its own random
//! time), but a Kafka offset commit means "everything below is done". So per
//! partition we keep the offsets in the order they arrived and only report
//! the highest offset below which every order has finished.

use std::collections::{HashMap, VecDeque};

#[derive(Debug)]
struct Pending {
    offset: i64,
    done: bool,
}

#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, VecDeque<Pending>>,
}

impl OffsetTracker {
    /// Records that `offset` was handed to a worker. Returns true for the
    /// first record of a partition since it was assigned.
    pub fn received(&mut self, partition: i32, offset: i64) -> bool {
        let first = !self.partitions.contains_key(&partition);
        let pending = self.partitions.entry(partition).or_default();
        if pending.back().is_some_and(|last| last.offset >= offset) {
            // The consumer went back (a reset); what was pending will come again.
            pending.clear();
        }
        pending.push_back(Pending {
            offset,
            done: false,
        });
        first
    }

    /// Marks `offset` finished. Returns the highest offset that is now safe to
    /// commit, if that moved forward.
    pub fn finished(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let pending = self.partitions.get_mut(&partition)?;
        let index = pending.binary_search_by_key(&offset, |p| p.offset).ok()?;
        pending[index].done = true;
        let mut committable = None;
        while pending.front().is_some_and(|p| p.done) {
            committable = pending.pop_front().map(|p| p.offset);
        }
        committable
    }

    /// Drops a partition this consumer no longer owns (revoked in a rebalance).
    pub fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// Offsets handed out and not yet committable, over all partitions.
    pub fn outstanding(&self) -> usize {
        self.partitions.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_the_contiguous_prefix() {
        let mut tracker = OffsetTracker::default();
        for offset in 10..15 {
            tracker.received(0, offset);
        }
        assert_eq!(tracker.finished(0, 12), None);
        assert_eq!(tracker.finished(0, 11), None);
        assert_eq!(tracker.finished(0, 10), Some(12));
        assert_eq!(tracker.finished(0, 14), None);
        assert_eq!(tracker.outstanding(), 2);
        assert_eq!(tracker.finished(0, 13), Some(14));
        assert_eq!(tracker.outstanding(), 0);
    }

    #[test]
    fn partitions_are_independent_and_gaps_are_fine() {
        let mut tracker = OffsetTracker::default();
        tracker.received(0, 1);
        tracker.received(1, 7);
        tracker.received(0, 5); // offsets need not be consecutive
        assert_eq!(tracker.finished(1, 7), Some(7));
        assert_eq!(tracker.finished(0, 5), None);
        assert_eq!(tracker.finished(0, 1), Some(5));
    }

    #[test]
    fn forgotten_and_unknown_offsets_are_ignored() {
        let mut tracker = OffsetTracker::default();
        tracker.received(3, 1);
        tracker.forget(3);
        assert_eq!(tracker.finished(3, 1), None);
        tracker.received(3, 1);
        assert_eq!(tracker.finished(3, 99), None);
        assert_eq!(tracker.finished(3, 1), Some(1));
        // Finishing twice (a redelivery racing the original) changes nothing.
        assert_eq!(tracker.finished(3, 1), None);
    }

    #[test]
    fn a_reset_starts_over() {
        let mut tracker = OffsetTracker::default();
        tracker.received(0, 5);
        tracker.received(0, 6);
        tracker.received(0, 3);
        assert_eq!(tracker.outstanding(), 1);
        assert_eq!(tracker.finished(0, 3), Some(3));
    }
}
