//! At-least-once offset bookkeeping for one partition.
//!
//! Orders from one partition finish out of order (each waits its own random
//! time), but a Kafka offset commit means "everything below is done". So we
//! keep only the offsets still running and report the highest offset below
//! which every order has finished. Memory follows the orders in flight, not
//! the orders behind a slow one.

use std::collections::BTreeSet;

/// A partition's last offset whose order, and every one before it,
/// finished: the group may commit past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committable {
    pub partition: i32,
    pub offset: i64,
}

impl Committable {
    /// The offset a commit names: the next one to read.
    pub fn next(self) -> i64 {
        self.offset + 1
    }
}

#[derive(Debug, Default)]
pub struct PartitionOffsets {
    /// Handed to a worker, not finished.
    running: BTreeSet<i64>,
    /// The highest offset handed out since the assignment (or a reset).
    highest: Option<i64>,
    /// Nothing at or below this is ours to commit: it was committed before
    /// this member started reading.
    floor: i64,
    /// The last committable offset reported.
    reported: Option<i64>,
}

impl PartitionOffsets {
    /// Records that `offset` was handed to a worker.
    pub fn received(&mut self, offset: i64) {
        if self.highest.is_some_and(|highest| highest >= offset) {
            // The consumer went back (a reset); what was running will come again.
            *self = Self::default();
        }
        if self.highest.is_none() {
            self.floor = offset - 1;
        }
        self.running.insert(offset);
        self.highest = Some(offset);
    }

    /// Marks `offset` finished. Returns the highest offset that is now safe
    /// to commit, if that moved forward.
    pub fn finished(&mut self, offset: i64) -> Option<i64> {
        if !self.running.remove(&offset) {
            return None;
        }
        let committable = self.committable()?;
        if self
            .reported
            .is_some_and(|reported| reported >= committable)
        {
            return None;
        }
        self.reported = Some(committable);
        Some(committable)
    }

    /// The highest offset below which everything finished, if any did.
    pub fn committable(&self) -> Option<i64> {
        let done_up_to = match self.running.first() {
            Some(first_running) => first_running - 1,
            None => self.highest?,
        };
        (done_up_to > self.floor).then_some(done_up_to)
    }

    /// Offsets handed out and not finished.
    #[cfg(test)]
    fn running(&self) -> usize {
        self.running.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_the_contiguous_prefix() {
        let mut offsets = PartitionOffsets::default();
        for offset in 10..15 {
            offsets.received(offset);
        }
        assert_eq!(offsets.finished(12), None);
        assert_eq!(offsets.finished(11), None);
        assert_eq!(offsets.finished(10), Some(12));
        assert_eq!(offsets.finished(14), None);
        assert_eq!(offsets.running(), 1);
        assert_eq!(offsets.finished(13), Some(14));
        assert_eq!(offsets.running(), 0);
        assert_eq!(offsets.committable(), Some(14));
    }

    #[test]
    fn gaps_are_fine_and_unknown_offsets_are_ignored() {
        let mut offsets = PartitionOffsets::default();
        offsets.received(1);
        offsets.received(5); // offsets need not be consecutive
        assert_eq!(offsets.finished(5), None);
        assert_eq!(offsets.finished(99), None);
        assert_eq!(offsets.finished(1), Some(5));
        // Finishing twice (a redelivery racing the original) changes nothing.
        assert_eq!(offsets.finished(1), None);
    }

    #[test]
    fn nothing_is_committable_before_the_first_finish() {
        let mut offsets = PartitionOffsets::default();
        offsets.received(7);
        offsets.received(8);
        assert_eq!(offsets.committable(), None);
        assert_eq!(offsets.finished(8), None);
        assert_eq!(offsets.committable(), None);
    }

    #[test]
    fn a_reset_starts_over() {
        let mut offsets = PartitionOffsets::default();
        offsets.received(5);
        offsets.received(6);
        offsets.received(3);
        assert_eq!(offsets.running(), 1);
        assert_eq!(offsets.finished(3), Some(3));
    }

    #[test]
    fn one_stuck_offset_keeps_memory_flat() {
        let mut offsets = PartitionOffsets::default();
        offsets.received(0); // never finishes
        for offset in 1..=100_000 {
            offsets.received(offset);
            assert_eq!(offsets.finished(offset), None);
        }
        assert_eq!(offsets.running(), 1, "only the stuck offset is kept");
        assert_eq!(offsets.finished(0), Some(100_000));
    }
}
