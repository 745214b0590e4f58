//! Scenarios: load stories with timed faults (`file`), played on a live
//! session (`runner`) and judged by the gates of [`crate::slo`].

pub mod file;
pub mod runner;

pub use file::{load, Scenario, ScenarioError};
pub use runner::Timeline;
