//! Scenarios: load stories with timed faults (`file`), played on a live
//! session (`runner`) and judged by the gates of [`crate::slo`].

pub mod file;
pub mod runner;

pub use file::{load, Scenario, ScenarioError};
pub use runner::Timeline;

/// The scenario's gates and `extra` ones (the command line's); the default
/// gates if neither has any.
pub fn gates(scenario: &Scenario, extra: &[crate::slo::Gate]) -> Vec<crate::slo::Gate> {
    let gates: Vec<_> = scenario.gates.iter().chain(extra).cloned().collect();
    if gates.is_empty() {
        crate::slo::default_gates()
    } else {
        gates
    }
}
