//! Service-level gates: what a run must achieve (`gate`), judged per
//! phase and over the whole run, with verdicts for people, scripts (the
//! report's `slo`) and CI (`junit`).

pub mod gate;
pub mod junit;

use std::time::Duration;

use serde::Serialize;

pub use gate::{default_gates, Gate, Measures, Verdict};

/// What one phase of a scenario measured.
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseOutcome {
    pub name: String,
    pub elapsed: Duration,
    /// Cut short by the user (`n`) or a stop.
    pub skipped: bool,
    pub measures: Measures,
}

/// Every gate's verdict, per phase and over the whole run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SloReport {
    /// The scenario played, if any (gates can judge a plain run too).
    pub scenario: Option<String>,
    pub passed: bool,
    pub phases: Vec<PhaseSummary>,
    pub verdicts: Vec<Verdict>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseSummary {
    pub name: String,
    pub elapsed_s: f64,
    pub skipped: bool,
    pub finished: u64,
    pub throughput: f64,
    pub e2e_p99_ms: f64,
}

/// The span name of verdicts over the whole run.
pub const OVERALL: &str = "overall";

impl SloReport {
    /// Judges every gate on each phase (where it applies) and on the run.
    pub fn judge(
        scenario: Option<&str>,
        gates: &[Gate],
        phases: &[PhaseOutcome],
        overall: &Measures,
    ) -> Self {
        let mut verdicts: Vec<Verdict> = phases
            .iter()
            .flat_map(|phase| {
                gates
                    .iter()
                    .filter_map(|gate| gate.judge(&phase.name, &phase.measures, false))
            })
            .collect();
        verdicts.extend(
            gates
                .iter()
                .filter_map(|gate| gate.judge(OVERALL, overall, true)),
        );
        Self {
            scenario: scenario.map(str::to_owned),
            passed: verdicts.iter().all(|v| v.passed),
            phases: phases
                .iter()
                .map(|phase| PhaseSummary {
                    name: phase.name.clone(),
                    elapsed_s: phase.elapsed.as_secs_f64(),
                    skipped: phase.skipped,
                    finished: phase.measures.finished,
                    throughput: phase.measures.throughput,
                    e2e_p99_ms: phase.measures.end_to_end.p99,
                })
                .collect(),
            verdicts,
        }
    }

    /// The failed verdicts, one line each, for the terminal.
    pub fn failures(&self) -> Vec<String> {
        self.verdicts
            .iter()
            .filter(|v| !v.passed)
            .map(|v| format!("`{}` in {}: {}", v.gate, v.span, v.shown))
            .collect()
    }

    /// One line per verdict, for the summary.
    pub fn lines(&self) -> Vec<String> {
        self.verdicts
            .iter()
            .map(|v| {
                let mark = if v.passed { "pass" } else { "FAIL" };
                format!("{mark}  {:<12} {:<26} {}", v.span, v.gate, v.shown)
            })
            .collect()
    }
}
