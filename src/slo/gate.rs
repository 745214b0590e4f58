//! Gates: what a run must achieve, written the way people say it
//! (`e2e.p99 < 250ms`, `lost == 0`, `throughput >= 900/s`), judged per phase
//! and over the whole run.

use serde::Serialize;

use crate::metrics::LatencySummary;

/// A figure a gate can judge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// A latency percentile, in milliseconds.
    Latency(LatencyKind, Percentile),
    /// Finished orders per second.
    Throughput,
    Acknowledged,
    Finished,
    /// Orders a client gave up on.
    Failed,
    Rejected,
    /// Acknowledged orders past the longest legitimate trip (the most seen at once).
    Overdue,
    /// Acknowledged orders that never finished (known once the run stopped).
    Lost,
    /// Orders with more than one Finished event in the events topic (read
    /// back at the end).
    FinishedTwice,
    /// Documents the mirror did not deliver (known once the run stopped).
    SinkLeft,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatencyKind {
    Send,
    EndToEnd,
    Completion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Percentile {
    P50,
    P90,
    P99,
    Max,
}

impl Percentile {
    fn of(self, summary: &LatencySummary) -> f64 {
        match self {
            Percentile::P50 => summary.p50,
            Percentile::P90 => summary.p90,
            Percentile::P99 => summary.p99,
            Percentile::Max => summary.max,
        }
    }
}

/// How a figure is read and written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Millis,
    PerSecond,
    Count,
}

impl Metric {
    const NAMES: &'static str = "send|e2e|completion.p50|p90|p99|max, throughput, acknowledged, \
                                 finished, failed, rejected, overdue, lost, finished_twice, sink.left";

    fn parse(name: &str) -> Option<Self> {
        if let Some((kind, percentile)) = name.split_once('.') {
            let kind = match kind {
                "send" => LatencyKind::Send,
                "e2e" | "end_to_end" => LatencyKind::EndToEnd,
                "completion" => LatencyKind::Completion,
                "sink" if percentile == "left" => return Some(Metric::SinkLeft),
                _ => return None,
            };
            let percentile = match percentile {
                "p50" => Percentile::P50,
                "p90" => Percentile::P90,
                "p99" => Percentile::P99,
                "max" => Percentile::Max,
                _ => return None,
            };
            return Some(Metric::Latency(kind, percentile));
        }
        Some(match name {
            "throughput" => Metric::Throughput,
            "acknowledged" => Metric::Acknowledged,
            "finished" => Metric::Finished,
            "failed" => Metric::Failed,
            "rejected" => Metric::Rejected,
            "overdue" => Metric::Overdue,
            "lost" => Metric::Lost,
            "finished_twice" => Metric::FinishedTwice,
            _ => return None,
        })
    }

    fn unit(self) -> Unit {
        match self {
            Metric::Latency(..) => Unit::Millis,
            Metric::Throughput => Unit::PerSecond,
            _ => Unit::Count,
        }
    }

    /// Figures that exist only once the run has stopped are not judged per phase.
    pub fn per_phase(self) -> bool {
        !matches!(
            self,
            Metric::Lost | Metric::FinishedTwice | Metric::SinkLeft
        )
    }

    /// The figure in `measures`, if it was measured there.
    pub fn read(self, measures: &Measures) -> Option<f64> {
        let count = |n: u64| Some(n as f64);
        match self {
            Metric::Latency(kind, percentile) => {
                let summary = match kind {
                    LatencyKind::Send => &measures.send,
                    LatencyKind::EndToEnd => &measures.end_to_end,
                    LatencyKind::Completion => &measures.completion,
                };
                // No sample, no percentile: a gate on it cannot pass.
                (summary.count > 0).then(|| percentile.of(summary))
            }
            Metric::Throughput => Some(measures.throughput),
            Metric::Acknowledged => count(measures.acknowledged),
            Metric::Finished => count(measures.finished),
            Metric::Failed => count(measures.failed),
            Metric::Rejected => count(measures.rejected),
            Metric::Overdue => count(measures.overdue),
            Metric::Lost => measures.lost.map(|n| n as f64),
            Metric::FinishedTwice => measures.finished_twice.map(|n| n as f64),
            Metric::SinkLeft => measures.sink_left.map(|n| n as f64),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
    NotEqual,
}

impl Comparison {
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Less => value < threshold,
            Comparison::LessOrEqual => value <= threshold,
            Comparison::Greater => value > threshold,
            Comparison::GreaterOrEqual => value >= threshold,
            Comparison::Equal => value == threshold,
            Comparison::NotEqual => value != threshold,
        }
    }
}

/// One gate: `metric comparison threshold`.
#[derive(Clone, Debug, PartialEq)]
pub struct Gate {
    pub metric: Metric,
    pub comparison: Comparison,
    pub threshold: f64,
    /// As the user wrote it, for reports.
    pub text: String,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    #[error("{0:?}: expected `METRIC OP VALUE`, e.g. `e2e.p99 < 250ms` (OP: < <= > >= == !=)")]
    Shape(String),
    #[error("{0:?}: unknown metric (known: {names})", names = Metric::NAMES)]
    Metric(String),
    #[error("{text:?}: {why}")]
    Value { text: String, why: String },
}

impl std::str::FromStr for Gate {
    type Err = GateError;

    fn from_str(text: &str) -> Result<Self, GateError> {
        let text = text.trim();
        let shape = || GateError::Shape(text.to_owned());
        // Two-character operators first, so `<=` is not read as `<`.
        let (at, comparison, width) = [
            ("<=", Comparison::LessOrEqual),
            (">=", Comparison::GreaterOrEqual),
            ("==", Comparison::Equal),
            ("!=", Comparison::NotEqual),
            ("<", Comparison::Less),
            (">", Comparison::Greater),
        ]
        .iter()
        .find_map(|(op, comparison)| text.find(op).map(|at| (at, *comparison, op.len())))
        .ok_or_else(shape)?;
        let name = text[..at].trim();
        let value = text[at + width..].trim();
        if name.is_empty() || value.is_empty() {
            return Err(shape());
        }
        let metric = Metric::parse(name).ok_or_else(|| GateError::Metric(name.to_owned()))?;
        let threshold = parse_value(value, metric.unit()).map_err(|why| GateError::Value {
            text: text.to_owned(),
            why,
        })?;
        Ok(Gate {
            metric,
            comparison,
            threshold,
            text: text.to_owned(),
        })
    }
}

/// `250ms`, `2s`, `1.5m` for latencies (in ms); `900/s` or `900` for
/// throughput; plain integers for counts.
fn parse_value(value: &str, unit: Unit) -> Result<f64, String> {
    let number = |digits: &str| {
        digits
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| format!("{value:?} is not a non-negative number"))
    };
    match unit {
        Unit::Millis => {
            if !value.ends_with(|c: char| c.is_ascii_alphabetic()) {
                return Err(format!("{value:?} needs a unit: ms, s or m (e.g. 250ms)"));
            }
            crate::clock::parse_duration(value)
                .map(|d| d.as_secs_f64() * 1e3)
                .ok_or_else(|| format!("{value:?} is not a duration (e.g. 250ms, 2s, 1m)"))
        }
        Unit::PerSecond => number(value.strip_suffix("/s").unwrap_or(value)),
        Unit::Count => {
            let n = number(value)?;
            if n.fract() != 0.0 {
                return Err(format!("{value:?} is a count: a whole number"));
            }
            Ok(n)
        }
    }
}

/// What one span of a run measured (a phase, or the whole run).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measures {
    pub send: LatencySummary,
    pub end_to_end: LatencySummary,
    pub completion: LatencySummary,
    pub throughput: f64,
    pub acknowledged: u64,
    pub finished: u64,
    pub failed: u64,
    pub rejected: u64,
    pub overdue: u64,
    pub lost: Option<u64>,
    pub finished_twice: Option<u64>,
    pub sink_left: Option<u64>,
}

/// A gate's verdict over one span.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub gate: String,
    /// The phase's name, or `overall`.
    pub span: String,
    /// None: not measured in this span (no sample, or only known at the end).
    pub value: Option<f64>,
    /// The value in the gate's unit, for people.
    pub shown: String,
    pub passed: bool,
}

impl Gate {
    /// None when the gate is not judged over a phase (see [`Metric::per_phase`]).
    pub fn judge(&self, span: &str, measures: &Measures, whole_run: bool) -> Option<Verdict> {
        if !whole_run && !self.metric.per_phase() {
            return None;
        }
        let value = self.metric.read(measures);
        Some(Verdict {
            gate: self.text.clone(),
            span: span.to_owned(),
            value,
            shown: self.show(value),
            passed: value.is_some_and(|v| self.comparison.holds(v, self.threshold)),
        })
    }

    /// The value as the gate's unit writes it.
    pub fn show(&self, value: Option<f64>) -> String {
        match (value, self.metric.unit()) {
            (None, _) => "not measured".to_owned(),
            (Some(v), Unit::Millis) => format!("{v:.1} ms"),
            (Some(v), Unit::PerSecond) => format!("{v:.0}/s"),
            (Some(v), Unit::Count) => format!("{v:.0}"),
        }
    }
}

/// The gates a run uses when the user names none: nothing lost, nothing
/// twice, nothing overdue, the mirror complete.
pub fn default_gates() -> Vec<Gate> {
    [
        "lost == 0",
        "finished_twice == 0",
        "overdue == 0",
        "sink.left == 0",
    ]
    .iter()
    .map(|text| text.parse().expect("the default gates parse"))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_read_as_people_write_them() {
        let gate: Gate = "e2e.p99 < 250ms".parse().unwrap();
        assert_eq!(
            gate.metric,
            Metric::Latency(LatencyKind::EndToEnd, Percentile::P99)
        );
        assert_eq!(gate.comparison, Comparison::Less);
        assert_eq!(gate.threshold, 250.0);
        let gate: Gate = "completion.p99<15s".parse().unwrap();
        assert_eq!(gate.threshold, 15_000.0);
        let gate: Gate = "throughput >= 900/s".parse().unwrap();
        assert_eq!(
            (gate.metric, gate.comparison, gate.threshold),
            (Metric::Throughput, Comparison::GreaterOrEqual, 900.0)
        );
        let gate: Gate = "sink.left == 0".parse().unwrap();
        assert_eq!(gate.metric, Metric::SinkLeft);
        assert_eq!(default_gates().len(), 4);
    }

    #[test]
    fn bad_gates_say_what_is_wrong() {
        let error = |text: &str| text.parse::<Gate>().unwrap_err().to_string();
        assert!(error("e2e.p99 250ms").contains("expected `METRIC OP VALUE`"));
        assert!(error("latency < 5ms").contains("unknown metric"));
        assert!(error("e2e.p99 < 250").contains("needs a unit"));
        assert!(error("lost == 0.5").contains("whole number"));
        assert!(error("lost == -1").contains("non-negative"));
        assert!(error("< 3").contains("expected"));
    }

    #[test]
    fn verdicts_follow_the_comparison_and_what_was_measured() {
        let measures = Measures {
            end_to_end: LatencySummary {
                count: 10,
                p99: 120.0,
                ..LatencySummary::default()
            },
            throughput: 950.0,
            lost: Some(0),
            ..Measures::default()
        };
        let judge = |text: &str, whole_run| {
            text.parse::<Gate>()
                .unwrap()
                .judge("ramp", &measures, whole_run)
        };
        assert!(judge("e2e.p99 < 250ms", false).unwrap().passed);
        assert!(!judge("e2e.p99 < 100ms", false).unwrap().passed);
        assert!(judge("throughput >= 900/s", false).unwrap().passed);
        // Not sampled: a gate on it fails rather than pass unseen.
        let unsampled = judge("send.p99 < 1s", false).unwrap();
        assert_eq!((unsampled.value, unsampled.passed), (None, false));
        // Known only at the end: not judged per phase.
        assert_eq!(judge("lost == 0", false), None);
        assert!(judge("lost == 0", true).unwrap().passed);
        assert!(!judge("finished_twice == 0", true).unwrap().passed);
    }
}
