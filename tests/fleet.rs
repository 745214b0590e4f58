//! A deployment seen from outside: `serve` and two `worker` processes in one
//! group on a broker the test owns (it outlives them), orders driven by
//! `orderdeck load` from a process of its own, and `orderdeck watch --once
//! --json` reading it all back from Kafka. What watch says must match what
//! each process reports about itself.
#![allow(clippy::unwrap_used)] // a test stops at the first broken expectation

mod common;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use common::{
    cluster_with_topics,
    processes::{report_of, serve_on, stderr_of, wait_until_consuming, Process},
    workdir::{assert_exit, Workdir},
};
use serde_json::Value;

const ORDERS: u64 = 400;

/// Each test here runs a broker, a server and more processes and judges
/// latencies; run side by side on two cores they starve each other (a
/// scenario's phase once saw no order finish within it). One at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one still runs alone.
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
const PARTITIONS: i32 = 6;

/// `watch --once --json` against `brokers`.
fn watch_once(dir: &Workdir, brokers: &str) -> Value {
    let output = dir.run(&["watch", "--brokers", brokers, "--once", "--json"]);
    assert_exit(&output, 0);
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Watches until `done` holds for a snapshot (or panics after `limit`).
fn watch_until(
    dir: &Workdir,
    brokers: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let snapshot = watch_once(dir, brokers);
        if done(&snapshot) {
            return snapshot;
        }
        assert!(Instant::now() < deadline, "never got there: {snapshot:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn process_of(snapshot: &Value, pid: u32) -> &Value {
    snapshot["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["by"].as_str().unwrap().ends_with(&format!(":{pid}")))
        .unwrap_or_else(|| panic!("process {pid} not listed: {snapshot:#}"))
}

#[test]
fn watch_lists_every_process_of_the_group_and_reconciles_with_what_they_report() {
    let _alone = one_at_a_time();
    let cluster = cluster_with_topics(PARTITIONS);
    let brokers = cluster.bootstrap_servers();
    let dir = Workdir::new();
    let common = [
        "--brokers",
        &brokers,
        "--time-scale",
        "0.1",
        "--consumers",
        "1",
    ];
    let with = |head: &[&'static str]| -> Vec<&str> {
        let mut args = head.to_vec();
        args.extend(common.iter().copied());
        args
    };
    let (mut serve, address) = serve_on(&dir, &brokers, &common[2..]);
    let mut first = Process::start(&dir, "first", &with(&["worker"]));
    let mut second = Process::start(&dir, "second", &with(&["worker"]));
    wait_until_consuming(&dir, "first");
    wait_until_consuming(&dir, "second");

    // Orders from another process; at time-scale 0.1 each takes 0.2–0.6 s,
    // so some are mid-state when the first look is taken.
    let load = dir.run(&[
        "load", "--target", &address, "--orders", "400", "--rate", "200", "--json",
    ]);
    assert_exit(&load, 0);
    let sent: Value = serde_json::from_slice(&load.stdout).unwrap();
    assert_eq!(sent["answered"], ORDERS, "{sent}");

    // Running: all three listed and up, the partitions shared among their
    // consumers, every order finished once, nothing left to commit.
    let running = watch_until(&dir, &brokers, Duration::from_secs(60), |s| {
        s["orders"]["finished"] == ORDERS && s["lag"] == 0 && members_of(s).len() == 3
    });
    let pids = [serve.child.id(), first.child.id(), second.child.id()];
    for pid in pids {
        let process = process_of(&running, pid);
        assert_eq!(process["status"], "up", "{process}");
        assert_eq!(process["members"].as_array().unwrap().len(), 1, "{process}");
    }
    assert_eq!(process_of(&running, pids[0])["role"], "server + consumers");
    assert_eq!(process_of(&running, pids[1])["role"], "worker");
    let owned: Vec<i64> = members_of(&running)
        .iter()
        .flat_map(|m| m["partitions"].as_array().unwrap().clone())
        .map(|p| p.as_i64().unwrap())
        .collect();
    let distinct: BTreeSet<i64> = owned.iter().copied().collect();
    assert_eq!(
        owned.len(),
        PARTITIONS as usize,
        "each partition once: {owned:?}"
    );
    assert_eq!(distinct, (0..PARTITIONS as i64).collect(), "{owned:?}");
    let orders = &running["orders"];
    assert_eq!(
        (
            &orders["accepted"],
            &orders["waiting"],
            &orders["finished_twice"]
        ),
        (&Value::from(ORDERS), &Value::from(0), &Value::from(0)),
        "{orders}"
    );
    assert!(
        running["latency_ms"]["completion"]["count"]
            .as_u64()
            .unwrap()
            >= ORDERS
    );

    // Read-only: watching again and again moves no partition in the group.
    let moves = || {
        ["serve", "first", "second"].map(|name| {
            let log = std::fs::read_to_string(dir.path(&format!("{name}.log"))).unwrap();
            log.matches("partitions assigned").count() + log.matches("partitions revoked").count()
        })
    };
    let before = moves();
    for _ in 0..3 {
        watch_once(&dir, &brokers);
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(moves(), before, "watching rebalanced the group");

    // Stopped: each one's own report says what watch read from its events.
    for process in [&mut serve, &mut first, &mut second] {
        process.signal("-TERM");
    }
    for process in [&mut serve, &mut first, &mut second] {
        let name = process.name;
        assert_eq!(
            process.wait(&dir, Duration::from_secs(60)),
            Some(0),
            "{}",
            stderr_of(&dir, name)
        );
    }
    let stopped = watch_until(&dir, &brokers, Duration::from_secs(20), |s| {
        s["processes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["status"] == "stopped")
            .count()
            == 3
    });
    let mut finished_by_events = 0;
    for (name, pid) in ["serve", "first", "second"].into_iter().zip(pids) {
        let report = report_of(&dir, name);
        let process = process_of(&stopped, pid);
        let reported = &report["orders"]["finished"];
        assert_eq!(
            &process["finished"], reported,
            "{name}: {process} vs {report}"
        );
        assert_eq!(
            &process["reported"]["finished"], reported,
            "{name}: {process}"
        );
        assert_eq!(process["in_flight"], 0, "{name}: {process}");
        finished_by_events += process["finished"].as_u64().unwrap();
    }
    assert_eq!(finished_by_events, ORDERS);
    // Each event names its writer: the process (host:pid) and its consumer.
    let events = common::topic_records(&brokers, "orders.events");
    assert!(events.len() as u64 >= ORDERS * 5, "{} events", events.len());
    for (_, payload) in &events {
        let event: Value = serde_json::from_slice(payload).unwrap();
        let by = event["by"].as_str().unwrap();
        assert!(
            pids.iter().any(|pid| by.ends_with(&format!(":{pid}"))),
            "{event}"
        );
        assert_eq!(event["member"], "c1", "{event}");
    }
    let served = report_of(&dir, "serve");
    assert_eq!(served["orders"]["acknowledged"], ORDERS);
    assert_eq!(
        &process_of(&stopped, pids[0])["reported"]["acknowledged"],
        &served["orders"]["acknowledged"]
    );
    assert_eq!(stopped["orders"]["accepted"], ORDERS);
    assert_eq!(stopped["orders"]["finished"], ORDERS);
    assert_eq!(stopped["orders"]["finished_twice"], 0);
    eprintln!(
        "watch: {ORDERS} orders, finished by serve/first/second: {}",
        pids.iter()
            .map(|pid| process_of(&stopped, *pid)["finished"].to_string())
            .collect::<Vec<_>>()
            .join("/")
    );
}

fn members_of(snapshot: &Value) -> Vec<Value> {
    snapshot["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == "up")
        .flat_map(|p| p["members"].as_array().unwrap().clone())
        .collect()
}

/// `load` drives a `serve` in another process and follows each order it
/// sent to its Finished event; with nobody consuming, it says how many
/// never finished and exits 3.
#[test]
fn load_follows_its_orders_to_finished_through_a_serve_elsewhere() {
    let _alone = one_at_a_time();
    let cluster = cluster_with_topics(PARTITIONS);
    let brokers = cluster.bootstrap_servers();
    let dir = Workdir::new();
    let (mut serve, address) = serve_on(&dir, &brokers, &["--time-scale", "0.05"]);
    let load = |extra: &[&str]| {
        let mut args = vec![
            "load",
            "--target",
            &address,
            "--brokers",
            &brokers,
            "--rate",
            "100",
            "--json",
        ];
        args.extend(extra);
        let output = dir.run(&args);
        let summary: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("no summary: {}", common::workdir::text(&output.stderr)));
        (output, summary)
    };
    let (output, summary) = load(&["--orders", "200"]);
    assert_exit(&output, 0);
    assert_eq!(summary["acknowledged"], 200, "{summary}");
    assert_eq!(summary["followed"]["finished"], 200, "{summary}");
    assert_eq!(summary["followed"]["waiting"], 0, "{summary}");
    let completion = &summary["followed"]["completion_ms"];
    // Four states of 25–75 ms each at this time scale, plus Kafka's trips.
    assert!(completion["p50"].as_f64().unwrap() >= 100.0, "{completion}");
    assert_eq!(completion["count"], 200, "{completion}");
    serve.signal("-TERM");
    assert_eq!(serve.wait(&dir, Duration::from_secs(60)), Some(0));
    assert_eq!(report_of(&dir, "serve")["orders"]["acknowledged"], 200);

    // The same server with no consumer anywhere: acknowledged, never finished.
    let mut idle = Process::start(
        &dir,
        "idle",
        &[
            "serve",
            "--listen",
            &address,
            "--brokers",
            &brokers,
            "--consumers",
            "0",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&address).is_err() {
        assert!(Instant::now() < deadline, "the second serve listens");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (output, summary) = load(&["--orders", "50", "--finish-timeout", "2s"]);
    assert_exit(&output, 3);
    assert_eq!(summary["acknowledged"], 50, "{summary}");
    assert_eq!(summary["followed"]["finished"], 0, "{summary}");
    assert_eq!(summary["followed"]["waiting"], 50, "{summary}");
    idle.signal("-TERM");
    idle.wait(&dir, Duration::from_secs(30));
}

/// `load --scenario` plays a scenario's load phases against a server
/// elsewhere and judges the gates it can measure from the client side;
/// faults it cannot inject are refused before anything is sent.
#[test]
fn load_plays_a_scenario_against_a_server_elsewhere_and_judges_its_gates() {
    let _alone = one_at_a_time();
    let cluster = cluster_with_topics(PARTITIONS);
    let brokers = cluster.bootstrap_servers();
    let dir = Workdir::new();
    let (mut serve, address) = serve_on(&dir, &brokers, &["--time-scale", "0"]);
    // Each phase long enough for a Finished event to be read within it:
    // load sees an order finish only when it reads the event, up to a
    // second later here (this broker holds empty fetches for their whole
    // wait), and a phase with no completion seen is judged "not measured".
    // "busier" lasts 6 s: a clean-clone CI run saw completions take up to
    // 5.2 s when it lasted 3 s. That was not the whole story: another saw
    // none within 6 s either (see the log printed on failure below).
    std::fs::write(
        dir.path("two-steps.toml"),
        r#"name = "two-steps"
description = "two quiet seconds, then more clients at a higher rate"
[slo]
gates = ["send.p99 < 2s", "failed == 0", "completion.p99 < 30s", "lost == 0", "sink.left == 0"]
[[phase]]
name = "quiet"
duration = "2s"
clients = 2
rate = 40
[[phase]]
name = "busier"
duration = "6s"
clients = "2..6"
rate = "40..120"
"#,
    )
    .unwrap();
    let play = |extra: &[&str]| {
        let mut args = vec![
            "load",
            "--target",
            &address,
            "--brokers",
            &brokers,
            "--scenario",
            "two-steps.toml",
        ];
        args.extend(extra);
        dir.run(&args)
    };
    let passed = play(&[]);
    if passed.status.code() != Some(0) {
        // Completions were once seen only after the phase's sending ended
        // (a clean-clone CI run, cause not found): say what serve did.
        let log = std::fs::read_to_string(dir.path("serve.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        eprintln!(
            "serve's log, last lines:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    assert_exit(&passed, 0);
    let out = common::workdir::text(&passed.stdout);
    let err = common::workdir::text(&passed.stderr);
    for line in [
        "pass  quiet        send.p99 < 2s",
        "pass  busier       send.p99 < 2s",
        "pass  overall      lost == 0",
        "pass  overall      completion.p99 < 30s",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    assert!(
        err.contains("sink.left == 0 are the deployment's to judge"),
        "{err}"
    );
    assert!(out.contains("(waiting 0)"), "{out}");

    let failed = play(&["--slo", "send.p50 < 0.001ms", "--junit", "verdicts.xml"]);
    assert_exit(&failed, 7);
    let junit = std::fs::read_to_string(dir.path("verdicts.xml")).unwrap();
    assert!(junit.contains("send.p50 &lt; 0.001ms"), "{junit}");

    std::fs::write(
        dir.path("outage.toml"),
        "name = \"outage\"\ndescription = \"d\"\n[[phase]]\nname = \"p\"\nduration = \"2s\"\n\
         events = [{ at = \"1s\", do = \"brokers-down\" }]\n",
    )
    .unwrap();
    let refused = dir.run(&["load", "--target", &address, "--scenario", "outage.toml"]);
    assert_exit(&refused, 2);
    let why = common::workdir::text(&refused.stderr);
    assert!(why.contains("needs orderdeck's own pipeline"), "{why}");
    let unmeasurable = dir.run(&["load", "--target", &address, "--slo", "e2e.p99 < 1s"]);
    assert_exit(&unmeasurable, 2);

    serve.signal("-TERM");
    serve.wait(&dir, Duration::from_secs(30));
}
