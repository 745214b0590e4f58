//! Scenarios and gates through the real binary: a story with faults in
//! flight judged by its gates, exit 7 and a JUnit file when one fails,
//! file errors with their line.
#![allow(clippy::unwrap_used)] // a test stops at the first broken expectation

mod common;

use common::{
    elastic::FakeElastic,
    workdir::{assert_exit, text, Workdir},
};

/// Medium load with orders mid-state (time-scale 0.01: 5–15 ms per state);
/// the brokers go away for two seconds and a consumer dies while orders
/// are in flight.
const SHORT_OUTAGE: &str = r#"
name = "short outage"
description = "brokers away for 2 s, then a consumer killed"

[[phase]]
name = "steady"
duration = "2s"
load = "media"

[[phase]]
name = "outage"
duration = "5s"
rate = "100..300"
events = [
  { at = "1s", do = "brokers-down" },
  { at = "3s", do = "brokers-up" },
  { at = "4s", do = "kill-consumer" },
]
"#;

#[test]
fn a_short_outage_passes_the_default_gates() {
    let dir = Workdir::new();
    std::fs::write(dir.path("outage.toml"), SHORT_OUTAGE).unwrap();
    let output = dir.run(&[
        "run",
        "--scenario",
        "outage.toml",
        "--time-scale",
        "0.01",
        "--report",
        "report.json",
    ]);
    assert_exit(&output, 0);
    let report = dir.report();
    let slo = &report["slo"];
    assert_eq!(slo["passed"], true, "{slo:#}");
    assert_eq!(slo["scenario"], "short outage");
    // No gate in the file: the defaults, judged over the whole run.
    let gates: Vec<_> = slo["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["span"].as_str().unwrap(), v["gate"].as_str().unwrap()))
        .collect();
    for gate in [
        "lost == 0",
        "finished_twice == 0",
        "overdue == 0",
        "sink.left == 0",
    ] {
        assert!(gates.contains(&("overall", gate)), "{gates:?}");
    }
    let phases = slo["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2);
    assert!(
        phases.iter().all(|p| p["finished"].as_u64().unwrap() > 0),
        "{phases:?}"
    );
    // What an outsider sees: the events topic read back, by order id and
    // run. The embedded broker may write a record twice across the outage
    // (counted apart); no order may be run to Finished twice.
    let orders = &report["orders"];
    assert_eq!(orders["finished_twice"], 0, "{orders}");
    assert!(orders["finished_repeated"].is_u64(), "{orders}");
    assert_eq!(orders["lost"], 0);
    assert_eq!(orders["acknowledged"], orders["finished"], "{orders}");
    assert!(orders["acknowledged"].as_u64().unwrap() > 200, "{orders}");
    assert_eq!(report["load"], "scenario short outage");
    let out = text(&output.stdout);
    assert!(
        out.contains("pass  overall      finished_twice == 0"),
        "{out}"
    );
    assert!(
        out.contains("events topic: finished twice 0 · Finished records the broker repeated"),
        "{out}"
    );
}

#[test]
fn an_impossible_gate_exits_7_and_the_junit_file_names_it() {
    let dir = Workdir::new();
    std::fs::write(
        dir.path("quick.toml"),
        "[slo]\ngates = [\"lost == 0\"]\n[[phase]]\nname = \"quick\"\nduration = \"2s\"\nload = \"alta\"\n",
    )
    .unwrap();
    let output = dir.run(&[
        "run",
        "--scenario",
        "quick.toml",
        "--time-scale",
        "0",
        "--slo",
        "e2e.max < 0.001ms",
        "--junit",
        "verdicts.xml",
        "--json",
    ]);
    assert_exit(&output, 7);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("gates failed: `e2e.max < 0.001ms` in quick"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["slo"]["passed"], false);
    assert_eq!(report["complete"], true, "the run itself was fine");
    let junit = std::fs::read_to_string(dir.path("verdicts.xml")).unwrap();
    assert!(
        junit.contains("<testsuite name=\"quick\" tests=\"1\" failures=\"1\">"),
        "{junit}"
    );
    assert!(
        junit.contains("name=\"e2e.max &lt; 0.001ms\"><failure message=\"e2e.max &lt; 0.001ms:"),
        "{junit}"
    );
    assert!(
        junit.contains("name=\"lost == 0\"><system-out>0</system-out>"),
        "{junit}"
    );
}

#[test]
fn gates_judge_a_plain_run_too() {
    let dir = Workdir::new();
    let output = dir.run(&[
        "run",
        "--orders",
        "200",
        "--time-scale",
        "0",
        "--slo",
        "finished == 200",
        "--slo",
        "finished_twice == 0",
        "--slo",
        "throughput >= 1000000/s",
    ]);
    assert_exit(&output, 7);
    let out = text(&output.stdout);
    assert!(out.contains("pass  overall      finished == 200"), "{out}");
    assert!(
        out.contains("pass  overall      finished_twice == 0"),
        "{out}"
    );
    assert!(
        out.contains("FAIL  overall      throughput >= 1000000/s"),
        "{out}"
    );

    // JUnit asked for, no gate named: the default gates judge the run.
    let output = dir.run(&[
        "run",
        "--orders",
        "50",
        "--time-scale",
        "0",
        "--junit",
        "plain.xml",
    ]);
    assert_exit(&output, 0);
    let junit = std::fs::read_to_string(dir.path("plain.xml")).unwrap();
    for gate in [
        "lost == 0",
        "finished_twice == 0",
        "overdue == 0",
        "sink.left == 0",
    ] {
        assert!(
            junit.contains(&format!("name=\"{gate}\"><system-out>")),
            "{junit}"
        );
    }
}

#[test]
fn scenario_mistakes_are_clear_errors() {
    let dir = Workdir::new();
    std::fs::write(
        dir.path("bad.toml"),
        "[[phase]]\nduration = \"5s\"\nevents = [\n  { at = \"1s\", do = \"explode\" },\n]\n",
    )
    .unwrap();
    let output = dir.run(&["run", "--scenario", "bad.toml"]);
    assert_exit(&output, 5);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("bad.toml:4: unknown event \"explode\""),
        "{stderr}"
    );

    let output = dir.run(&["run", "--scenario", "no-such"]);
    assert_exit(&output, 5);
    assert!(text(&output.stderr).contains("broker-outage"));

    let output = dir.run(&["run", "--slo", "e2e.p99 < 250"]);
    assert_exit(&output, 2);
    assert!(text(&output.stderr).contains("needs a unit"));

    // Broker faults need the embedded broker: refused before anything starts.
    let output = dir.run(&[
        "run",
        "--scenario",
        "broker-outage",
        "--brokers",
        "127.0.0.1:9",
    ]);
    assert_exit(&output, 2);
    assert!(
        text(&output.stderr).contains("without --brokers"),
        "{}",
        text(&output.stderr)
    );
}

/// Elasticsearch cut off for 2.5 s (a relay in front of it) while orders
/// flow: the mirror waits and catches up, the orders never wait for it.
const ELASTIC_OUTAGE: &str = r#"
name = "elastic outage"
description = "Elasticsearch unreachable for 2.5 s"
[slo]
gates = ["lost == 0", "finished_twice == 0", "sink.left == 0", "send.p99 < 1s"]
[[phase]]
name = "steady"
duration = "1s"
load = "media"
[[phase]]
name = "outage"
duration = "4s"
events = [{ at = "500ms", do = "es-down" }, { at = "3s", do = "es-up" }]
[[phase]]
name = "after"
duration = "1s"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elasticsearch_outage_holds_back_the_mirror_not_the_orders() {
    let elastic = FakeElastic::start().await;
    let dir = Workdir::new();
    std::fs::write(dir.path("es.toml"), ELASTIC_OUTAGE).unwrap();
    let url = elastic.url();
    let (dir, output) = tokio::task::spawn_blocking(move || {
        let output = dir.run(&[
            "run",
            "--scenario",
            "es.toml",
            "--time-scale",
            "0.01",
            "--es",
            &url,
            "--report",
            "report.json",
        ]);
        (dir, output)
    })
    .await
    .unwrap();
    assert_exit(&output, 0);
    let report = dir.report();
    assert_eq!(report["slo"]["passed"], true, "{:#}", report["slo"]);
    let sink = &report["sink"];
    // Every document made it once Elasticsearch was back; the outage was
    // felt (requests repeated), nothing went to the spool.
    assert_eq!(sink["indexed"], sink["read"], "{sink}");
    assert_eq!(
        (&sink["spooled"], &sink["left"]),
        (&0.into(), &0.into()),
        "{sink}"
    );
    assert!(sink["retries"].as_u64().unwrap() > 0, "{sink}");
    // What Elasticsearch holds: one document per acknowledged order.
    let acknowledged = report["orders"]["acknowledged"].as_u64().unwrap();
    assert!(acknowledged > 100, "{report}");
    assert_eq!(
        elastic.ids("orderdeck-orders").len() as u64,
        acknowledged,
        "{report}"
    );
    let stderr = text(&output.stderr);
    // The progress line, once a second, names the event to come.
    assert!(
        stderr.contains("next: Elasticsearch reachable again in"),
        "{stderr}"
    );

    // Without a plain-http --es, such a scenario is refused before it starts.
    let refused = dir.run(&["run", "--scenario", "es.toml"]);
    assert_exit(&refused, 2);
    assert!(text(&refused.stderr).contains("needs --es with an http:// URL"));
}

/// The runner against a live session (embedded broker, real clients): the
/// load level, the consumer count and a broker outage change when the
/// scenario says, as the session's own status shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_steers_a_live_session_at_the_right_times() {
    use orderdeck::{
        clock::{SimClock, TimeScale},
        kafka::BrokerTarget,
        load::LoadLevel,
        scenario::{
            file::parse,
            runner::{play, Controls},
            Timeline,
        },
        session::{self, Command, Phase, SessionSettings},
    };
    use std::time::{Duration, Instant};
    use tokio::sync::watch;

    let scenario = parse(
        "live.toml",
        r#"
[[phase]]
name = "low"
duration = "1500ms"
load = "low"
[[phase]]
name = "high"
duration = "2s"
load = "high"
consumers = 1
events = [{ at = "500ms", do = "brokers-down" }, { at = "1s", do = "brokers-up" }]
"#,
    )
    .unwrap();
    let mut pipeline = common::config(BrokerTarget::Embedded, 0.0);
    pipeline.embedded_brokers = 3;
    let handle = session::spawn(SessionSettings {
        pipeline,
        load: LoadLevel::Low,
        preset: LoadLevel::Low.preset(),
        orders: common::seed_orders(),
        clock: SimClock::new(TimeScale::new(0.0).unwrap()),
        kibana: None,
        drain_limit: Duration::from_secs(60),
        audit_at_stop: false,
    });
    let (timeline, view) = watch::channel(Timeline::new(&scenario));
    let (_skip, skip) = watch::channel(0);
    let status = handle.status.clone();
    /// What an onlooker sees at one moment.
    #[derive(Debug)]
    struct Seen {
        at: Duration,
        phase: usize,
        load: LoadLevel,
        consumers: usize,
        brokers_down: bool,
    }
    // Every 10 ms: the phase, the load, the group, the fault.
    let watcher = tokio::spawn(async move {
        let started = Instant::now();
        let mut seen = Vec::new();
        while !view.borrow().done() {
            let now = status.borrow().clone();
            seen.push(Seen {
                at: started.elapsed(),
                phase: view.borrow().current,
                load: now.load,
                consumers: now.consumers,
                brokers_down: now.chaos.brokers_down,
            });
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen
    });
    let outcomes = play(
        &scenario,
        &[],
        Controls {
            commands: &handle.commands,
            status: handle.status.clone(),
            skip,
            stop: Default::default(),
            timeline: &timeline,
        },
    )
    .await;
    let seen = watcher.await.unwrap();
    handle.commands.send(Command::Shutdown).await.unwrap();
    let mut status = handle.status.clone();
    let last = status
        .wait_for(|s| s.phase == Phase::Stopped)
        .await
        .unwrap()
        .clone();
    handle.finished().await;

    assert_eq!(outcomes.len(), 2);
    let first = |what: &str, pass: &dyn Fn(&Seen) -> bool| {
        seen.iter()
            .find(|s| pass(s))
            .map(|s| s.at)
            .unwrap_or_else(|| panic!("{what} never seen: {seen:?}"))
    };
    let high = first("phase two", &|s| s.phase == 1);
    let after = |at: Duration| (at - high).as_secs_f64();
    assert!(
        first("load low", &|s| s.load == LoadLevel::Low) < high,
        "low first"
    );
    let loaded = after(first("load high", &|s| {
        s.phase == 1 && s.load == LoadLevel::High
    }));
    assert!(loaded < 0.3, "high load {loaded} s into its phase");
    let shrunk = after(first("one consumer", &|s| s.phase == 1 && s.consumers == 1));
    assert!(shrunk < 0.3, "one consumer {shrunk} s into the phase");
    let down = after(first("brokers down", &|s| s.brokers_down));
    assert!((0.45..0.8).contains(&down), "brokers down at {down} s");
    let up = after(first("brokers up again", &|s| {
        s.phase == 1 && !s.brokers_down && after(s.at) > down
    }));
    assert!((0.95..1.3).contains(&up), "brokers up at {up} s");
    // Nothing lost on the way.
    assert_eq!(last.unfinished.lost, 0);
    assert_eq!(
        last.reconciliation.acknowledged,
        last.reconciliation.finished
    );
}
