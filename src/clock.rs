//! The one clock every simulated delay goes through, scaled by `--time-scale`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;

/// Multiplies every simulated delay: 1.0 = the original timings, 0 = none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeScale(f64);

impl TimeScale {
    pub const ORIGINAL: TimeScale = TimeScale(1.0);

    /// The largest scale accepted: a thousand times the original's delays.
    pub const MAX: f64 = 1000.0;

    pub fn new(factor: f64) -> Result<Self, String> {
        if (0.0..=Self::MAX).contains(&factor) {
            Ok(Self(factor))
        } else {
            Err(format!(
                "time scale must be a number from 0 to {} (1 = original timings, 0 = no delays), got {factor}",
                Self::MAX
            ))
        }
    }

    pub fn factor(self) -> f64 {
        self.0
    }
}

impl std::str::FromStr for TimeScale {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let factor: f64 = s
            .parse()
            .map_err(|_| format!("time scale must be a number, got {s:?}"))?;
        Self::new(factor)
    }
}

/// A uniform range of simulated durations, e.g. the original's 1–3 s per stage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DelayRange {
    pub min: Duration,
    pub max: Duration,
}

impl DelayRange {
    pub const fn new(min: Duration, max: Duration) -> Self {
        Self { min, max }
    }

    fn draw(self) -> Duration {
        if self.max <= self.min {
            return self.min;
        }
        let seconds = rand::rng().random_range(self.min.as_secs_f64()..self.max.as_secs_f64());
        Duration::from_secs_f64(seconds)
    }
}

impl std::fmt::Display for DelayRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1}–{:.1} s",
            self.min.as_secs_f64(),
            self.max.as_secs_f64()
        )
    }
}

#[derive(Clone, Copy, Debug)]
pub struct SimClock {
    scale: TimeScale,
}

impl SimClock {
    pub fn new(scale: TimeScale) -> Self {
        Self { scale }
    }

    pub fn scale(&self) -> TimeScale {
        self.scale
    }

    /// Draws a delay from `range`, scales it, and waits that long.
    /// With a scale of 0 it returns at once: each order runs in a task of
    /// its own, so nothing waits behind it, and a yield per state sent every
    /// order four times through the scheduler's queue.
    pub async fn wait_stage(&self, range: DelayRange) {
        let delay = self.scaled(range.draw());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    pub fn scaled(&self, simulated: Duration) -> Duration {
        // Saturates rather than panics on an absurd product.
        Duration::try_from_secs_f64(simulated.as_secs_f64() * self.scale.factor())
            .unwrap_or(Duration::MAX)
    }
}

/// Exponential backoff: waits double from `first` up to `max`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after `current`.
    pub fn next(&self, current: Duration) -> Duration {
        current.saturating_mul(2).min(self.max)
    }
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

pub fn unix_millis_now() -> i64 {
    since_epoch().as_millis() as i64
}

pub fn unix_seconds_now() -> f64 {
    since_epoch().as_secs_f64()
}

/// Time elapsed since an epoch-seconds stamp (zero if the clock went back).
pub fn elapsed_since_unix_seconds(stamp: f64) -> Duration {
    Duration::try_from_secs_f64(unix_seconds_now() - stamp).unwrap_or_default()
}

/// A duration as people write it: `30s`, `2m`, `1h`, `250ms`, `1.5s`, or a
/// bare number of seconds. None if it is not one (or is negative).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" => 60.0,
        "h" => 3_600.0,
        _ => return None,
    };
    let seconds = number.trim().parse::<f64>().ok()? * scale;
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_rejects_negative_nan_and_absurd() {
        assert!(TimeScale::new(-1.0).is_err());
        assert!(TimeScale::new(f64::NAN).is_err());
        assert!(TimeScale::new(1e19).is_err());
        assert!(TimeScale::new(f64::INFINITY).is_err());
        assert!("abc".parse::<TimeScale>().is_err());
        assert_eq!("0.5".parse::<TimeScale>().unwrap().factor(), 0.5);
    }

    #[test]
    fn draws_stay_in_range_and_scale() {
        let range = DelayRange::new(Duration::from_secs(1), Duration::from_secs(3));
        for _ in 0..1000 {
            let d = range.draw();
            assert!(d >= range.min && d < range.max, "{d:?}");
        }
        let clock = SimClock::new(TimeScale::new(0.001).unwrap());
        assert_eq!(
            clock.scaled(Duration::from_secs(2)),
            Duration::from_millis(2)
        );
    }

    #[test]
    fn wait_stage_at_scale_zero_is_ready_at_once() {
        use futures::FutureExt;
        let clock = SimClock::new(TimeScale::new(0.0).unwrap());
        let range = DelayRange::new(Duration::from_secs(1), Duration::from_secs(3));
        assert_eq!(clock.wait_stage(range).now_or_never(), Some(()));
    }

    #[tokio::test(start_paused = true)]
    async fn wait_stage_sleeps_the_scaled_time() {
        let clock = SimClock::new(TimeScale::new(0.5).unwrap());
        let start = tokio::time::Instant::now();
        clock
            .wait_stage(DelayRange::new(
                Duration::from_secs(2),
                Duration::from_secs(2),
            ))
            .await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
