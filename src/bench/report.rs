//! What the benchmark reports: each phase, the soak, the targets checked,
//! and the machine it ran on.

use serde::{Deserialize, Serialize};

use super::{
    driver::{Load, Outcome},
    resources::PhaseUsage,
    Scenario,
};
use crate::metrics::LatencySummary;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Phase {
    pub scenario: Scenario,
    pub title: String,
    pub measured_until: String,
    /// None: as fast as `callers` go; Some: the fixed rate.
    pub offered_rate: Option<f64>,
    pub orders: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub orders_per_s: f64,
    pub latency_ms: LatencySummary,
    /// Fixed rate: how late the driver started each call after its
    /// intended time (included in `latency_ms`).
    #[serde(default)]
    pub pacing_late_ms: Option<LatencySummary>,
    pub cpu_s: f64,
    pub peak_rss_mib: Option<f64>,
    /// The share of the machine's CPU the host took during the phase (steal
    /// time, percent; None where the OS does not say).
    #[serde(default)]
    pub stolen_pct: Option<f64>,
    /// Throughput as a share of the bare producer's / the original design's.
    pub vs_bare_producer: Option<f64>,
    pub vs_original: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Soak {
    pub orders: u64,
    pub seconds: f64,
    pub orders_per_s: f64,
    /// (orders finished, RSS MiB), about once a second.
    pub rss_samples: Vec<(u64, f64)>,
    pub rss_at_10_percent_mib: f64,
    pub rss_at_end_mib: f64,
    pub peak_rss_mib: f64,
    /// The broker process at the end (its retention bounds it).
    pub broker_rss_mib: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub machine: String,
    pub callers: usize,
    pub rate: f64,
    pub phases: Vec<Phase>,
    pub soak: Option<Soak>,
    pub targets: Vec<TargetCheck>,
}

pub(super) fn phase(scenario: Scenario, load: Load, outcome: Outcome, usage: PhaseUsage) -> Phase {
    Phase {
        scenario,
        title: scenario.title().to_owned(),
        measured_until: scenario.measured_until().to_owned(),
        offered_rate: match load {
            Load::Closed { .. } => None,
            Load::Open { rate, .. } => Some(rate),
        },
        orders: outcome.completed,
        errors: outcome.errors,
        first_error: outcome.first_error.clone(),
        seconds: outcome.elapsed.as_secs_f64(),
        orders_per_s: outcome.per_second(),
        latency_ms: outcome.latency,
        pacing_late_ms: outcome.pacing,
        cpu_s: usage.cpu_s,
        peak_rss_mib: usage.peak_rss_mib,
        stolen_pct: usage.stolen_pct,
        vs_bare_producer: None,
        vs_original: None,
    }
}

/// Throughput phases as a share of the bare producer's and the original's.
pub(super) fn add_ratios(phases: &mut [Phase]) {
    let max_rate = |phases: &[Phase], scenario| {
        phases
            .iter()
            .find(|p| p.scenario == scenario && p.offered_rate.is_none())
            .map(|p| p.orders_per_s)
            .filter(|rate| *rate > 0.0)
    };
    let producer = max_rate(phases, Scenario::BareProducer);
    let original = max_rate(phases, Scenario::OriginalDesign);
    for phase in phases.iter_mut().filter(|p| p.offered_rate.is_none()) {
        phase.vs_bare_producer = producer.map(|r| phase.orders_per_s / r);
        phase.vs_original = original.map(|r| phase.orders_per_s / r);
    }
}

/// The machine, as the report names it: cores and CPU model.
pub(super) fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cores} cores, {model}")
}
