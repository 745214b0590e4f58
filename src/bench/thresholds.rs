//! The targets a benchmark run is held to, checked against what it measured.

use super::{
    report::{Phase, Soak, TargetCheck},
    BenchPlan, Scenario,
};

pub(super) fn check_targets(
    plan: &BenchPlan,
    phases: &[Phase],
    soak: Option<&Soak>,
) -> Vec<TargetCheck> {
    let find = |scenario: Scenario, fixed: bool| {
        phases
            .iter()
            .find(|p| p.scenario == scenario && p.offered_rate.is_some() == fixed)
    };
    let mut checks = Vec::new();
    let ingest = find(Scenario::Ingest, false);
    if let Some(ratio) = ingest.and_then(|i| i.vs_original) {
        checks.push(TargetCheck {
            target: "ingest ≥ 10× the original design".to_owned(),
            measured: format!("{ratio:.1}×"),
            met: ratio >= 10.0,
        });
    }
    if let Some(remote) = find(Scenario::IngestFromProcess, false) {
        if let Some(ratio) = remote.vs_bare_producer {
            checks.push(TargetCheck {
                target: "ingest, load from another process, ≥ 70 % of the bare producer".to_owned(),
                measured: format!("{:.0} %", ratio * 100.0),
                met: remote.errors == 0 && ratio >= 0.7,
            });
        }
        checks.push(TargetCheck {
            target: "ingest, load from another process: p99 ≤ 10 ms at the maximum throughput"
                .to_owned(),
            measured: format!(
                "p99 {:.1} ms at {:.0} orders/s",
                remote.latency_ms.p99, remote.orders_per_s
            ),
            met: remote.errors == 0 && remote.latency_ms.p99 <= 10.0,
        });
    }
    if let (Some(ingest), Some(e2e)) = (ingest, find(Scenario::EndToEnd, false)) {
        let share = e2e.orders_per_s / ingest.orders_per_s.max(f64::MIN_POSITIVE);
        checks.push(TargetCheck {
            target: "end to end (time-scale 0) ≥ 50 % of ingest throughput".to_owned(),
            measured: format!(
                "{:.0} % ({:.0} of {:.0} orders/s)",
                share * 100.0,
                e2e.orders_per_s,
                ingest.orders_per_s
            ),
            met: e2e.errors == 0 && share >= 0.5,
        });
    }
    if let Some(e2e) = find(Scenario::EndToEnd, true) {
        checks.push(TargetCheck {
            target: format!(
                "end-to-end p99 ≤ 5 ms at {:.0} orders/s, no delays",
                plan.rate
            ),
            measured: format!("p99 {:.1} ms", e2e.latency_ms.p99),
            met: e2e.errors == 0 && e2e.latency_ms.p99 <= 5.0,
        });
    }
    if let Some(timed) = find(Scenario::OriginalTimings, true) {
        let offered = (plan.rate * plan.rate_time.as_secs_f64()).round() as u64;
        // Four states of 1–3 s each: the sleeps alone take 4–12 s.
        let bounded_by_sleeps = timed.latency_ms.max <= 13_000.0;
        checks.push(TargetCheck {
            target: format!(
                "original timings at {:.0} orders/s: every order finishes, each within its sleeps",
                plan.rate
            ),
            measured: format!(
                "{} of {} finished, p50 {:.1} s, max {:.1} s",
                timed.orders,
                offered,
                timed.latency_ms.p50 / 1e3,
                timed.latency_ms.max / 1e3
            ),
            met: timed.errors == 0 && timed.orders == offered && bounded_by_sleeps,
        });
    }
    if let Some(soak) = soak {
        let growth = soak.rss_at_end_mib - soak.rss_at_10_percent_mib;
        checks.push(TargetCheck {
            target: format!(
                "RSS flat (±5 MiB from 10 % to the end) and < 200 MB over {} orders",
                soak.orders
            ),
            measured: format!(
                "{:.0} MiB at 10 %, {:.0} MiB at the end ({growth:+.1} MiB), peak {:.0} MiB \
                 (broker process: {})",
                soak.rss_at_10_percent_mib,
                soak.rss_at_end_mib,
                soak.peak_rss_mib,
                soak.broker_rss_mib
                    .map_or("?".to_owned(), |m| format!("{m:.0} MiB"))
            ),
            met: soak.peak_rss_mib < 200.0 && growth.abs() <= 5.0,
        });
    }
    checks
}
