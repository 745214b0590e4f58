//! Pacing: orders spread over time at a target rate, through the scaled
//! clock.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{clock::SimClock, sync::Locked};

/// Hands out order numbers and, at a target rate, the time each is due.
/// The rate can change while clients run (the UI's load keys).
pub struct Pacer {
    state: Mutex<PacerState>,
    clock: SimClock,
    total: Option<u64>,
}

struct PacerState {
    issued: u64,
    rate: Option<f64>,
    next_due: Option<Instant>,
}

impl Pacer {
    /// `rate` in orders/s over all clients (None = unpaced); pacing is a
    /// simulated delay, so it scales with the clock (time scale 0 = unpaced).
    pub fn new(rate: Option<f64>, clock: SimClock, total: Option<u64>) -> Self {
        Self {
            state: Mutex::new(PacerState {
                issued: 0,
                rate,
                next_due: None,
            }),
            clock,
            total,
        }
    }

    pub fn set_rate(&self, rate: Option<f64>) {
        let mut state = self.state.locked();
        state.rate = rate;
        state.next_due = None;
    }

    /// Forgets the schedule, so clients that start again do not burst to
    /// catch up on the time they were stopped.
    pub fn restart(&self) {
        self.state.locked().next_due = None;
    }

    /// Every order of the total has been handed out.
    pub fn exhausted(&self) -> bool {
        self.total
            .is_some_and(|total| self.state.locked().issued >= total)
    }

    /// The next order number and when it is due (None = now), or None when
    /// the total has been handed out.
    pub(super) fn take(&self) -> Option<(u64, Option<Instant>)> {
        let mut state = self.state.locked();
        if self.total.is_some_and(|total| state.issued >= total) {
            return None;
        }
        let n = state.issued;
        state.issued += 1;
        let interval = state
            .rate
            .filter(|rate| *rate > 0.0)
            .map(|rate| self.clock.scaled(Duration::from_secs_f64(1.0 / rate)))
            .filter(|interval| !interval.is_zero());
        let Some(interval) = interval else {
            return Some((n, None));
        };
        // A fixed schedule: a slow reply does not push later orders back.
        let due = state.next_due.unwrap_or_else(Instant::now);
        state.next_due = Some(due + interval);
        Some((n, Some(due)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TimeScale;

    fn pacer(rate: f64, scale: f64, orders: Option<u64>) -> Pacer {
        Pacer::new(
            Some(rate),
            SimClock::new(TimeScale::new(scale).unwrap()),
            orders,
        )
    }

    #[test]
    fn the_pacer_spaces_orders_at_the_scaled_rate() {
        let pacer = pacer(10.0, 0.5, Some(3));
        let due: Vec<_> = std::iter::from_fn(|| pacer.take()).collect();
        assert_eq!(due.len(), 3);
        let first = due[0].1.unwrap();
        assert_eq!(due[2].1.unwrap() - first, Duration::from_millis(100));
    }

    #[test]
    fn time_scale_zero_sends_unpaced() {
        let pacer = pacer(10.0, 0.0, None);
        assert_eq!(pacer.take(), Some((0, None)));
        assert_eq!(pacer.take(), Some((1, None)));
    }

    #[test]
    fn a_new_rate_starts_a_new_schedule() {
        let pacer = pacer(1.0, 1.0, None);
        pacer.take();
        pacer.take(); // due a second from now
        pacer.set_rate(Some(1000.0));
        let (_, due) = pacer.take().unwrap();
        assert!(
            due.unwrap() <= Instant::now(),
            "no wait inherited from the old rate"
        );
    }
}
