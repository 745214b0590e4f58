//! The benchmark report as a terminal table or Markdown (JSON is serde's).

use std::fmt::Write;

use super::{BenchReport, Phase};

const HEADERS: [&str; 12] = [
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
    "× producer",
    "× original",
];

fn cells(phase: &Phase, callers: usize) -> [String; 12] {
    let ratio = |r: Option<f64>| r.map_or("–".to_owned(), |r| format!("{r:.2}"));
    let mut orders = phase.orders.to_string();
    if phase.errors > 0 {
        let _ = write!(orders, " ({} errors)", phase.errors);
    }
    [
        phase.title.clone(),
        match phase.offered_rate {
            None => format!("max, {callers} callers"),
            Some(rate) => format!("fixed {rate:.0}/s"),
        },
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
        ratio(phase.vs_bare_producer),
        ratio(phase.vs_original),
    ]
}

fn rows(report: &BenchReport) -> Vec<[String; 12]> {
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
    let paced: Vec<_> = report
        .phases
        .iter()
        .filter_map(|p| p.pacing_late_ms.as_ref().map(|late| (&p.title, late)))
        .collect();
    if !paced.is_empty() {
        let _ = writeln!(
            out,
            "\n{heading}Fixed rate: calls started after their intended time (in the latencies)"
        );
        for (title, late) in paced {
            let _ = writeln!(
                out,
                "{bullet}{title}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                late.p50, late.p99, late.max
            );
        }
    }
    let errors: Vec<_> = report
        .phases
        .iter()
        .filter_map(|p| p.first_error.as_ref().map(|e| (&p.title, e)))
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(out, "\n{heading}First error per scenario");
        for (title, error) in errors {
            let _ = writeln!(out, "{bullet}{title}: {error}");
        }
    }
    out
}
