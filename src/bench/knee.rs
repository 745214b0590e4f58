//! `orderdeck bench --find-knee`: offers a fixed rate from another process
//! (`orderdeck load`), raises it step by step until a gate breaks, and
//! reports the highest rate the pipeline sustained, with its latencies.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{
    remote::load_from_another_process,
    setup::{bench_pipeline, WARM_UP_ORDERS},
    BenchError, BenchPlan,
};
use crate::{
    kafka::BrokerTarget,
    metrics::{per_second, Counter, LatencySummary, Metrics},
    sinks::MirrorTarget,
    slo::{Gate, Measures, Verdict},
};

/// How the rate climbs.
#[derive(Clone, Debug)]
pub struct KneePlan {
    pub start_rate: f64,
    /// Each step offers this many times the last one's rate.
    pub growth: f64,
    pub max_rate: f64,
    pub step: Duration,
    pub clients: usize,
    /// Besides "the offered rate is sustained" (see [`SUSTAINED`]).
    pub gates: Vec<Gate>,
}

/// A step is sustained when orders finish at this share of the offered rate.
pub const SUSTAINED: f64 = 0.95;

/// The gates a knee search uses when the user names none.
pub fn default_gates() -> Vec<Gate> {
    ["send.p99 < 100ms", "e2e.p99 < 100ms"]
        .iter()
        .map(|text| text.parse().expect("the knee's default gates parse"))
        .collect()
}

#[derive(Clone, Debug, Serialize)]
pub struct KneeStep {
    /// Orders per second the load process was asked for.
    pub offered: f64,
    /// Answers per second it got.
    pub answered_per_s: f64,
    /// Orders finished per second, from the step's start to its last order.
    pub finished_per_s: f64,
    /// Client side, in the load process.
    pub send: LatencySummary,
    pub end_to_end: LatencySummary,
    pub completion: LatencySummary,
    pub verdicts: Vec<Verdict>,
    pub passed: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct KneeReport {
    pub gates: Vec<String>,
    pub steps: Vec<KneeStep>,
    /// The highest offered rate that passed every gate.
    pub knee: Option<f64>,
}

/// Climbs until a step fails a gate (or the maximum rate); `progress`
/// hears each step.
pub async fn find_knee(
    plan: &BenchPlan,
    knee: &KneePlan,
    progress: impl Fn(&KneeStep),
) -> Result<KneeReport, BenchError> {
    let setup = |reason: String| BenchError::Setup {
        scenario: "find-knee".to_owned(),
        reason,
    };
    // Orders finish at once (time-scale 0): the knee is the pipeline's, not
    // the simulated states'.
    let pipeline = bench_pipeline(
        plan,
        BrokerTarget::Embedded,
        "orders",
        3,
        0.0,
        MirrorTarget::Off,
    )
    .await?;
    let url = pipeline.dial().expect("the bench pipeline serves gRPC").url;
    let metrics = std::sync::Arc::clone(pipeline.metrics());
    load_from_another_process(
        &url,
        plan.csv.as_deref(),
        (4, None),
        WARM_UP_ORDERS,
        knee.step * 4,
    )
    .await
    .map_err(setup)?;
    // The warm-up's orders finish before the first step, which would count
    // them and their latencies otherwise.
    let acknowledged = metrics.get(Counter::Acknowledged);
    finished_by(&metrics, acknowledged, Instant::now() + knee.step * 4).await;

    let mut steps: Vec<KneeStep> = Vec::new();
    let mut rate = knee.start_rate;
    while rate <= knee.max_rate {
        metrics.take_phase();
        let before = metrics.get(Counter::Finished);
        let orders = (rate * knee.step.as_secs_f64()).ceil().max(1.0) as u64;
        let summary = load_from_another_process(
            &url,
            plan.csv.as_deref(),
            (knee.clients, Some(rate)),
            orders,
            knee.step * 4,
        )
        .await
        .map_err(setup)?;
        // The step ends when its last order finished, or a step's time after
        // the load did: what is still running then was not sustained. Its
        // time is the load's own (from its first connection, not counting
        // the process starting) and the wait after it.
        let load_ended = Instant::now();
        finished_by(&metrics, before + summary.answered, load_ended + knee.step).await;
        let finished = metrics.get(Counter::Finished) - before;
        let latency = metrics.take_phase();
        let measures = Measures {
            send: summary.latency_ms,
            end_to_end: latency.end_to_end,
            completion: latency.completion,
            throughput: per_second(
                finished,
                Duration::from_secs_f64(summary.seconds) + load_ended.elapsed(),
            ),
            acknowledged: summary.answered,
            finished,
            failed: summary.failed,
            ..Measures::default()
        };
        let sustained: Gate = format!("throughput >= {:.1}/s", rate * SUSTAINED)
            .parse()
            .expect("a throughput gate parses");
        let verdicts: Vec<Verdict> = knee
            .gates
            .iter()
            .chain([&sustained])
            .filter_map(|gate| gate.judge(&format!("{rate:.0}/s"), &measures, false))
            .collect();
        let step = KneeStep {
            offered: rate,
            answered_per_s: summary.answered_per_s,
            finished_per_s: measures.throughput,
            send: measures.send,
            end_to_end: measures.end_to_end,
            completion: measures.completion,
            passed: verdicts.iter().all(|v| v.passed),
            verdicts,
        };
        progress(&step);
        let passed = step.passed;
        steps.push(step);
        if !passed {
            break;
        }
        rate *= knee.growth;
    }
    pipeline.shutdown().await;
    Ok(KneeReport {
        gates: knee
            .gates
            .iter()
            .map(|g| g.text.clone())
            .chain([format!(
                "throughput >= {:.0} % of the offered rate",
                SUSTAINED * 100.0
            )])
            .collect(),
        knee: steps
            .iter()
            .filter(|s| s.passed)
            .map(|s| s.offered)
            .reduce(f64::max),
        steps,
    })
}

/// Waits until `finished` orders in all have finished, or `deadline`. Reads
/// the counter, not a snapshot: this looks every 10 ms.
async fn finished_by(metrics: &Metrics, finished: u64, deadline: Instant) {
    while metrics.get(Counter::Finished) < finished && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The steps as a table, then p99 latencies as bars: where the curve bends.
pub fn render(report: &KneeReport) -> String {
    let mut out = format!("gates: {}\n\n", report.gates.join(" · "));
    out.push_str(
        "offered/s  answered/s  finished/s  send p99 ms  e2e p99 ms  completion p99 ms  verdict\n",
    );
    for step in &report.steps {
        let failed: Vec<_> = step
            .verdicts
            .iter()
            .filter(|v| !v.passed)
            .map(|v| format!("{} ({})", v.gate, v.shown))
            .collect();
        out.push_str(&format!(
            "{:>9.0}  {:>10.0}  {:>10.0}  {:>11.2}  {:>10.2}  {:>17.2}  {}\n",
            step.offered,
            step.answered_per_s,
            step.finished_per_s,
            step.send.p99,
            step.end_to_end.p99,
            step.completion.p99,
            if step.passed {
                "pass".to_owned()
            } else {
                format!("FAIL {}", failed.join(", "))
            }
        ));
    }
    let widest = report
        .steps
        .iter()
        .map(|s| s.end_to_end.p99.max(s.send.p99))
        .fold(1.0_f64, f64::max);
    out.push_str("\np99 (send ▒, end to end █), scaled to the largest\n");
    for step in &report.steps {
        let bar = |ms: f64, glyph: &str| glyph.repeat(((ms / widest) * 50.0).round() as usize);
        out.push_str(&format!(
            "{:>9.0}/s ▏{}\n            ▏{}\n",
            step.offered,
            bar(step.send.p99, "▒"),
            bar(step.end_to_end.p99, "█")
        ));
    }
    out.push_str(&match report.knee {
        Some(rate) => format!("\nknee: {rate:.0} orders/s sustained with every gate passed\n"),
        None => "\nknee: not found — the first step already failed; start lower (--knee-start)\n"
            .to_owned(),
    });
    out
}
