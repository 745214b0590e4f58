//! The benchmark report as a terminal table or Markdown (JSON is serde's).

use std::fmt::Write;

use super::{BenchReport, Phase};

const HEADERS: [&str; 13] = [
    "scenario",
    "load",
    "orders",
    "orders/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "CPU s",
    "peak RSS MiB",
    "steal %",
    "× producer",
    "× original",
];

/// A phase whose host took this much of the machine's CPU (steal) is
/// flagged under the table.
const DISTURBED_STEAL_PCT: f64 = 2.0;

fn load_text(phase: &Phase, callers: usize) -> String {
    match phase.offered_rate {
        None => format!("max, {callers} callers"),
        Some(rate) => format!("fixed {rate:.0}/s"),
    }
}

fn cells(phase: &Phase, callers: usize) -> [String; 13] {
    let ratio = |r: Option<f64>| r.map_or("–".to_owned(), |r| format!("{r:.2}"));
    let mut orders = phase.orders.to_string();
    if phase.errors > 0 {
        let _ = write!(orders, " ({} errors)", phase.errors);
    }
    [
        phase.title.clone(),
        load_text(phase, callers),
        orders,
        format!("{:.0}", phase.orders_per_s),
        format!("{:.2}", phase.latency_ms.p50),
        format!("{:.2}", phase.latency_ms.p90),
        format!("{:.2}", phase.latency_ms.p99),
        format!("{:.2}", phase.latency_ms.max),
        format!("{:.2}", phase.cpu_s),
        phase
            .peak_rss_mib
            .map_or("–".to_owned(), |m| format!("{m:.0}")),
        phase
            .stolen_pct
            .map_or("–".to_owned(), |s| format!("{s:.1}")),
        ratio(phase.vs_bare_producer),
        ratio(phase.vs_original),
    ]
}

fn rows(report: &BenchReport) -> Vec<[String; 13]> {
    report
        .phases
        .iter()
        .map(|phase| cells(phase, report.callers))
        .collect()
}

/// Aligned columns for a terminal.
pub fn table(report: &BenchReport) -> String {
    let rows = rows(report);
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                if i < 2 {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = format!("{}\n", report.machine);
    out.push_str(&line(&HEADERS.map(str::to_owned)));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    out.push_str(&soak_and_targets(report, "", "  "));
    out
}

pub fn markdown(report: &BenchReport) -> String {
    let mut out = format!("Machine: {}\n\n", report.machine);
    let row = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
    out.push_str(&row(&HEADERS.map(str::to_owned)));
    out.push_str(&row(&HEADERS.map(|_| "---".to_owned())));
    for cells in rows(report) {
        out.push_str(&row(&cells));
    }
    out.push('\n');
    out.push_str(&soak_and_targets(report, "### ", "- "));
    out
}

fn soak_and_targets(report: &BenchReport, heading: &str, bullet: &str) -> String {
    let mut out = String::new();
    if let Some(soak) = &report.soak {
        let _ = writeln!(
            out,
            "\n{heading}Memory soak\n{bullet}{} orders end to end with the sink on in {:.0} s ({:.0} orders/s): orderdeck's RSS {:.0} MiB at 10 %, {:.0} MiB at the end, peak {:.0} MiB; the broker process {}",
            soak.orders,
            soak.seconds,
            soak.orders_per_s,
            soak.rss_at_10_percent_mib,
            soak.rss_at_end_mib,
            soak.peak_rss_mib,
            soak.broker_rss_mib
                .map_or("?".to_owned(), |m| format!("{m:.0} MiB"))
        );
    }
    if !report.targets.is_empty() {
        let _ = writeln!(out, "\n{heading}Targets");
        for check in &report.targets {
            let _ = writeln!(
                out,
                "{bullet}{} {}: {}",
                if check.met { "met:" } else { "MISSED:" },
                check.target,
                check.measured
            );
        }
    }
    let disturbed = report.phases.iter().filter_map(|phase| {
        let stolen = phase.stolen_pct.filter(|s| *s >= DISTURBED_STEAL_PCT)?;
        Some(format!(
            "{}, {}: the hypervisor took {stolen:.0} % of the machine's CPU (steal)",
            phase.title,
            load_text(phase, report.callers)
        ))
    });
    section(
        &mut out,
        (heading, bullet),
        "Disturbed by the host (its figures measure the host as much as orderdeck)",
        disturbed,
    );
    let paced = report.phases.iter().filter_map(|phase| {
        let late = phase.pacing_late_ms.as_ref()?;
        Some(format!(
            "{}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            phase.title, late.p50, late.p99, late.max
        ))
    });
    section(
        &mut out,
        (heading, bullet),
        "Fixed rate: calls started after their intended time (in the latencies)",
        paced,
    );
    let errors = report.phases.iter().filter_map(|phase| {
        let error = phase.first_error.as_ref()?;
        Some(format!("{}: {error}", phase.title))
    });
    section(
        &mut out,
        (heading, bullet),
        "First error per scenario",
        errors,
    );
    out
}

/// A titled list under the table, left out when it has nothing to say.
fn section(
    out: &mut String,
    (heading, bullet): (&str, &str),
    title: &str,
    lines: impl Iterator<Item = String>,
) {
    let mut lines = lines.peekable();
    if lines.peek().is_some() {
        let _ = writeln!(out, "\n{heading}{title}");
        for line in lines {
            let _ = writeln!(out, "{bullet}{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Scenario;

    fn phase_stolen(offered_rate: Option<f64>, stolen_pct: Option<f64>) -> Phase {
        Phase {
            scenario: Scenario::EndToEnd,
            title: Scenario::EndToEnd.title().to_owned(),
            measured_until: Scenario::EndToEnd.measured_until().to_owned(),
            offered_rate,
            orders: 100,
            errors: 0,
            first_error: None,
            seconds: 1.0,
            orders_per_s: 100.0,
            latency_ms: Default::default(),
            pacing_late_ms: None,
            cpu_s: 0.5,
            peak_rss_mib: None,
            stolen_pct,
            vs_bare_producer: None,
            vs_original: None,
        }
    }

    #[test]
    fn a_phase_the_host_took_cpu_from_is_flagged() {
        let report = BenchReport {
            machine: "2 cores".to_owned(),
            callers: 32,
            rate: 1000.0,
            phases: vec![
                phase_stolen(Some(1000.0), Some(0.4)),
                phase_stolen(None, Some(23.5)),
            ],
            soak: None,
            targets: Vec::new(),
        };
        let text = markdown(&report);
        assert!(text.contains("| steal % |"), "{text}");
        assert!(
            text.contains("| 0.4 |") && text.contains("| 23.5 |"),
            "{text}"
        );
        assert!(
            text.contains("- (b) end to end, time-scale 0, max, 32 callers: the hypervisor took 24 % of the machine's CPU (steal)"),
            "{text}"
        );
        assert!(!text.contains("fixed 1000/s: the hypervisor"), "{text}");

        let quiet = BenchReport {
            phases: vec![phase_stolen(None, Some(1.9)), phase_stolen(None, None)],
            ..report
        };
        let text = table(&quiet);
        assert!(!text.contains("Disturbed"), "{text}");
    }
}
