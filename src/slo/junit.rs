//! Verdicts as a JUnit XML file, the format CI systems show as test results:
//! one suite per span (each phase, then `overall`), one case per gate.

use super::SloReport;

pub fn render(report: &SloReport) -> String {
    let name = report.scenario.as_deref().unwrap_or("run");
    let failures = report.verdicts.iter().filter(|v| !v.passed).count();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"orderdeck {}\" tests=\"{}\" failures=\"{failures}\">\n",
        escape(name),
        report.verdicts.len()
    );
    let mut spans: Vec<&str> = Vec::new();
    for verdict in &report.verdicts {
        if !spans.contains(&verdict.span.as_str()) {
            spans.push(&verdict.span);
        }
    }
    for span in spans {
        let cases: Vec<_> = report.verdicts.iter().filter(|v| v.span == span).collect();
        let failed = cases.iter().filter(|v| !v.passed).count();
        xml.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\">\n",
            escape(span),
            cases.len()
        ));
        for case in cases {
            let shown = &case.shown;
            xml.push_str(&format!(
                "    <testcase classname=\"{}.{}\" name=\"{}\">",
                escape(name),
                escape(span),
                escape(&case.gate)
            ));
            if case.passed {
                xml.push_str(&format!("<system-out>{}</system-out>", escape(shown)));
            } else {
                xml.push_str(&format!(
                    "<failure message=\"{}: {}\"/>",
                    escape(&case.gate),
                    escape(shown)
                ));
            }
            xml.push_str("</testcase>\n");
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::{Gate, Measures, PhaseOutcome};

    #[test]
    fn failed_gates_become_failures_named_by_span_and_gate() {
        let gates: Vec<Gate> = ["e2e.p99 < 1ms", "lost == 0"]
            .iter()
            .map(|g| g.parse().unwrap())
            .collect();
        let mut measures = Measures::default();
        measures.end_to_end.count = 5;
        measures.end_to_end.p99 = 7.5;
        let phases = [PhaseOutcome {
            name: "spike".to_owned(),
            elapsed: std::time::Duration::from_secs(1),
            skipped: false,
            measures: measures.clone(),
        }];
        measures.lost = Some(0);
        let report = SloReport::judge(Some("s & t"), &gates, &phases, &measures);
        assert!(!report.passed);
        let xml = render(&report);
        assert!(xml.contains("tests=\"3\" failures=\"2\""), "{xml}");
        assert!(xml.contains("<testsuite name=\"spike\" tests=\"1\" failures=\"1\">"));
        assert!(xml.contains(
            "<testcase classname=\"s &amp; t.overall\" name=\"e2e.p99 &lt; 1ms\"><failure message=\"e2e.p99 &lt; 1ms: 7.5 ms\"/>"
        ), "{xml}");
        assert!(
            xml.contains("name=\"lost == 0\"><system-out>0</system-out>"),
            "{xml}"
        );
    }
}
