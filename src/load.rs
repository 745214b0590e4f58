//! Load levels: the simulation's intensity as the original named it, and
//! what each means.

use std::time::Duration;

use crate::clock::DelayRange;

/// The simulation's intensity, as the original named it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadLevel {
    #[value(alias = "baja")]
    Low,
    #[value(alias = "media")]
    Medium,
    #[value(alias = "alta")]
    High,
}

/// What a load level means.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadPreset {
    pub clients: usize,
    /// Orders per second over all clients; None = as fast as they can.
    pub rate: Option<f64>,
    /// Simulated time an order spends in each state.
    pub stage_delay: DelayRange,
}

impl LoadLevel {
    pub const ALL: [LoadLevel; 3] = [LoadLevel::Low, LoadLevel::Medium, LoadLevel::High];

    fn position(self) -> usize {
        self as usize
    }

    pub fn lower(self) -> Option<LoadLevel> {
        Self::ALL.get(self.position().checked_sub(1)?).copied()
    }

    pub fn higher(self) -> Option<LoadLevel> {
        Self::ALL.get(self.position() + 1).copied()
    }

    /// The next level up, from high back to low (the `l` key).
    pub fn cycled(self) -> LoadLevel {
        self.higher().unwrap_or(LoadLevel::Low)
    }

    pub fn preset(self) -> LoadPreset {
        let secs = Duration::from_secs_f64;
        match self {
            // The original's timings: 1–3 s per state.
            LoadLevel::Low => LoadPreset {
                clients: 2,
                rate: Some(10.0),
                stage_delay: DelayRange::new(secs(1.0), secs(3.0)),
            },
            LoadLevel::Medium => LoadPreset {
                clients: 8,
                rate: Some(100.0),
                stage_delay: DelayRange::new(secs(0.5), secs(1.5)),
            },
            LoadLevel::High => LoadPreset {
                clients: 32,
                rate: None,
                stage_delay: DelayRange::new(secs(0.1), secs(0.5)),
            },
        }
    }

    /// The original's name for the level (also accepted on the command line).
    pub fn spanish_name(self) -> &'static str {
        match self {
            LoadLevel::Low => "baja",
            LoadLevel::Medium => "media",
            LoadLevel::High => "alta",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LoadLevel::Low => "low",
            LoadLevel::Medium => "medium",
            LoadLevel::High => "high",
        }
    }
}

impl std::fmt::Display for LoadLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn spanish_names_are_accepted() {
        for (spanish, level) in [
            ("baja", LoadLevel::Low),
            ("media", LoadLevel::Medium),
            ("alta", LoadLevel::High),
            ("high", LoadLevel::High),
        ] {
            assert_eq!(LoadLevel::from_str(spanish, true), Ok(level));
        }
        for level in LoadLevel::ALL {
            assert_eq!(LoadLevel::from_str(level.spanish_name(), true), Ok(level));
        }
        assert!(LoadLevel::from_str("extreme", true).is_err());
    }

    #[test]
    fn levels_step_and_cycle() {
        assert_eq!(LoadLevel::Low.lower(), None);
        assert_eq!(LoadLevel::Medium.higher(), Some(LoadLevel::High));
        assert_eq!(LoadLevel::High.cycled(), LoadLevel::Low);
        assert_eq!(LoadLevel::Low.cycled(), LoadLevel::Medium);
    }

    #[test]
    fn presets_grow_with_the_level() {
        let [low, medium, high] = LoadLevel::ALL.map(LoadLevel::preset);
        assert!(low.clients < medium.clients && medium.clients < high.clients);
        assert!(low.stage_delay.max > high.stage_delay.max);
        assert_eq!(low.stage_delay.min, Duration::from_secs(1));
        assert_eq!(high.rate, None);
    }
}
