//! The Elasticsearch mirror as a user meets it: the real binary against a
//! loopback server speaking Elasticsearch's HTTP API, with the faults
//! Elasticsearch really shows (sustained 429s, an outage, a credential
//! change), a crash, and two processes sharing a data directory. Judged by
//! id from what the index holds.
#![allow(clippy::unwrap_used)] // a test stops at the first broken expectation

mod common;

use std::{
    collections::HashMap,
    process::Output,
    time::{Duration, Instant},
};

use common::{
    cluster_with_topics,
    elastic::{spooled, FakeElastic},
    topic_records,
    workdir::{assert_exit, send_signal, text, Workdir},
};
use orderdeck::order::{State, Transition};
use serde_json::Value;

/// Metric documents per order: send time, end-to-end, five transitions,
/// four times in state.
const METRICS_PER_ORDER: usize = 11;

/// The latency test compares runs of its own with each other: no other test
/// of this file runs beside it (they do run beside each other). It failed
/// once when a neighbour's whole-process runs loaded only some of its runs.
static LATENCY_RUNS_ALONE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Checks the index against a run of `orders` orders: each order's
/// document at Finished, each of its metric documents indexed exactly once.
fn assert_mirrored_once(elastic: &FakeElastic, orders: usize) {
    let (documents, arrivals) = elastic.with(|c| (c.documents.clone(), c.arrivals.clone()));
    let finished = documents
        .iter()
        .filter(|((index, _), source)| index == "orderdeck-orders" && source["state"] == "Finished")
        .count();
    assert_eq!(finished, orders, "orders at Finished in the index");
    let mut accepted: HashMap<&str, usize> = HashMap::new();
    for id in &arrivals {
        *accepted.entry(id.as_str()).or_default() += 1;
    }
    let order_metrics: Vec<_> = documents
        .keys()
        .filter(|(index, id)| index == "orderdeck-metrics" && !id.starts_with("throughput"))
        .collect();
    assert_eq!(order_metrics.len(), orders * METRICS_PER_ORDER);
    let twice: Vec<_> = order_metrics
        .iter()
        .filter(|(_, id)| accepted[id.as_str()] != 1)
        .collect();
    assert!(
        twice.is_empty(),
        "indexed more than once: {:?}",
        &twice[..twice.len().min(5)]
    );
}

/// A run paced in real time (orders spend 0.1–0.5 s in each state),
/// reported to report.json.
fn paced_run<'a>(orders: &'a str, rate: &'a str, clients: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--load",
        "high",
        "--orders",
        orders,
        "--rate",
        rate,
        "--clients",
        clients,
        "--time-scale",
        "1",
        "--report",
        "report.json",
    ]
}

fn run_args<'a>(es: &'a str, orders: &'a str, rate: &'a str) -> Vec<&'a str> {
    let mut args = paced_run(orders, rate, "16");
    args.extend(["--es", es]);
    args
}

/// A quarter of the `_bulk` requests and one item in 13 answered 429 for
/// the whole run at 1,000 orders/s: exit 0, every document once, nothing
/// left in the spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_429s_at_1000_orders_per_second_lose_nothing() {
    let _beside = LATENCY_RUNS_ALONE.read().await;
    let elastic = FakeElastic::start().await;
    elastic.with(|c| {
        c.throttle_every_nth_request = Some(4);
        c.throttle_every_nth_item = Some(13);
    });
    let dir = Workdir::new();
    let url = elastic.url();
    let output = dir.run(&run_args(&url, "5000", "1000"));
    assert_exit(&output, 0);
    let report = dir.report();
    let sink = &report["sink"];
    assert_eq!(sink["spooled"], 0, "{sink}");
    assert_eq!(sink["left"], 0, "{sink}");
    assert!(sink["retries"].as_u64().unwrap() > 0, "{sink}");
    assert_eq!(sink["read"], sink["indexed"], "{sink}");
    assert_mirrored_once(&elastic, 5000);
}

/// Elasticsearch away for 30 s in the middle of a run, then back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_down_for_30_s_mid_run_loses_nothing() {
    let _beside = LATENCY_RUNS_ALONE.read().await;
    let mut elastic = FakeElastic::start().await;
    let dir = Workdir::new();
    let url = elastic.url();
    let mut child = dir.command(&run_args(&url, "2400", "50")).spawn().unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = elastic.with(|c| c.arrivals.len());
    assert!(before > 0, "documents arrive before the outage");
    elastic.stop().await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    elastic.restart().await;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let report = dir.report();
    assert_eq!(report["sink"]["spooled"], 0, "{}", report["sink"]);
    assert!(report["sink"]["retries"].as_u64().unwrap() > 0);
    assert_mirrored_once(&elastic, 2400);
}

/// On the embedded broker Kafka holds only 5 MiB per partition: a mirror
/// that falls further behind loses what the broker deletes. Never
/// silently: each gap is counted and listed in the dead-letter file, the
/// run exits 6 saying so, and every order whose Finished document is not
/// in the index is covered by a counted gap. Elasticsearch answers 429 to
/// everything while the orders run, one partition per topic keeps the log
/// small, and the mirror's read-ahead is cut so it cannot hold the backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_broker_deleted_before_the_mirror_read_them_are_counted_and_listed() {
    const ORDERS: usize = 4000;
    let _beside = LATENCY_RUNS_ALONE.read().await;
    let elastic = FakeElastic::start().await;
    elastic.with(|c| c.throttle_every_nth_request = Some(1));
    let dir = Workdir::new();
    let url = elastic.url();
    let orders = ORDERS.to_string();
    let mut command = dir.command(&[
        "run",
        "--time-scale",
        "0",
        "--orders",
        &orders,
        "--partitions",
        "1",
        "--es",
        &url,
        "-X",
        "queued.max.messages.kbytes=1024",
        "-X",
        "queued.min.messages=1000",
        "--report",
        "report.json",
    ]);
    let child = tokio::task::spawn_blocking(move || command.output());
    let recover = async {
        // 20,000 events of about 500 bytes: twice one partition's 5 MiB.
        tokio::time::sleep(Duration::from_secs(12)).await;
        elastic.with(|c| c.throttle_every_nth_request = None);
    };
    let (output, ()) = tokio::join!(child, recover);
    let output: Output = output.unwrap().unwrap();
    let report = dir.report();
    let sink = &report["sink"];
    assert_eq!(report["orders"]["finished"], ORDERS, "{}", report["orders"]);
    assert_eq!(
        sink["spooled"], 0,
        "Elasticsearch took everything once back: {sink}"
    );
    let missed = sink["missed"]
        .as_u64()
        .expect("the report counts missed records");
    assert!(
        missed > 0,
        "the mirror fell behind by more than the broker keeps: {sink}"
    );
    assert_exit(&output, 6);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("deleted by the broker before the mirror read them"),
        "{stderr}"
    );

    // The gaps listed in the dead-letter file are the records counted.
    let dead_letters = sink["dead_letter_file"].as_str().expect("gaps are listed");
    let listed: u64 = std::fs::read_to_string(dead_letters)
        .unwrap()
        .lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line).unwrap();
            let operation: Value =
                serde_json::from_str(entry["operation"].as_str().unwrap()).unwrap();
            let gap = &operation["missed"];
            gap["to"].as_u64().unwrap() - gap["from"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(listed, missed, "{sink}");

    // By order: every one missing its Finished document is a counted loss,
    // and nothing the mirror read went astray.
    let at_finished = elastic.with(|c| {
        c.documents
            .iter()
            .filter(|((index, _), doc)| index == "orderdeck-orders" && doc["state"] == "Finished")
            .count()
    });
    assert!(
        at_finished < ORDERS,
        "some Finished events were lost: {sink}"
    );
    assert!(
        (ORDERS - at_finished) as u64 <= missed,
        "{} orders not at Finished, {missed} records counted missed",
        ORDERS - at_finished
    );
    assert_eq!(
        sink["read"],
        sink["indexed"].as_u64().unwrap() + sink["dead_lettered"].as_u64().unwrap(),
        "{sink}"
    );
}

/// A credential change mid-run: every request answered 401. The run says
/// so loudly and exits 6; the documents are kept, and an export with
/// working credentials completes the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_mid_run_keeps_the_documents_for_an_export() {
    let _beside = LATENCY_RUNS_ALONE.read().await;
    let elastic = FakeElastic::start().await;
    let dir = Workdir::new();
    let url = elastic.url();
    let mut command = dir.command(&run_args(&url, "600", "100"));
    let child = tokio::task::spawn_blocking(move || command.output());
    let refuse = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        elastic.with(|c| c.refuse_with = Some(401));
    };
    let (output, ()) = tokio::join!(child, refuse);
    let output: Output = output.unwrap().unwrap();
    assert_exit(&output, 6);
    let stderr = text(&output.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    let report = dir.report();
    let sink = &report["sink"];
    assert!(
        sink["state"].as_str().unwrap().starts_with("stopped"),
        "{sink}"
    );
    assert!(sink["spooled"].as_u64().unwrap() > 0, "{sink}");
    assert_eq!(
        sink["read"],
        sink["indexed"].as_u64().unwrap() + sink["spooled"].as_u64().unwrap()
    );

    elastic.with(|c| c.refuse_with = None);
    assert_exit(&dir.run(&["export", "--es", &url]), 0);
    assert_mirrored_once(&elastic, 600);
}

/// kill -9 in the middle of a run on a broker that outlives it, orders
/// mid-state: `export --brokers` mirrors what the dead process had not,
/// and the index matches the events topic order by order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_an_export_from_kafka_completes_the_index() {
    let _beside = LATENCY_RUNS_ALONE.read().await;
    let cluster = cluster_with_topics(4);
    let brokers = cluster.bootstrap_servers();
    let elastic = FakeElastic::start().await;
    let url = elastic.url();
    let dir = Workdir::new();
    let mut child = dir
        .command(&[
            "run",
            "--brokers",
            &brokers,
            "--orders",
            "5000",
            "--rate",
            "400",
            "--load",
            "high",
            "--time-scale",
            "1",
            "--es",
            &url,
        ])
        .spawn()
        .unwrap();
    let started = Instant::now();
    while elastic.with(|c| c.arrivals.len()) < 2_000 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "documents arrive"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    send_signal(&child, "-KILL");
    child.wait().unwrap();

    let export = dir.run(&["export", "--brokers", &brokers, "--es", &url]);
    assert_exit(&export, 0);
    eprintln!("{}", text(&export.stdout));

    // What an outsider sees: each order's last state on the events topic.
    let mut last_state: HashMap<String, State> = HashMap::new();
    let mut events = 0;
    for (_, payload) in topic_records(&brokers, "orders.events") {
        let transition: Transition = serde_json::from_slice(&payload).unwrap();
        events += 1;
        let state = last_state
            .entry(transition.order_id.to_string())
            .or_insert(transition.to);
        *state = (*state).max(transition.to);
    }
    assert!(events > 0);
    let documents = elastic.with(|c| c.documents.clone());
    let mut unfinished = 0;
    for (order, state) in &last_state {
        let document = documents
            .get(&("orderdeck-orders".to_owned(), order.clone()))
            .unwrap_or_else(|| panic!("order {order} is in the index"));
        assert_eq!(document["state"], state.name(), "order {order}");
        unfinished += usize::from(*state != State::Finished);
        let transition_metric = format!("{order}:state_transition:{}", state.name());
        assert!(
            documents.contains_key(&("orderdeck-metrics".to_owned(), transition_metric.clone())),
            "{transition_metric}"
        );
    }
    assert!(unfinished > 0, "the kill caught orders mid-state");
    let metric_records = topic_records(&brokers, "orders.metrics").len();
    let metrics_indexed = documents
        .keys()
        .filter(|(index, id)| {
            index == "orderdeck-metrics"
                && (id.ends_with(":send_time") || id.starts_with("throughput"))
        })
        .count();
    assert_eq!(
        metrics_indexed, metric_records,
        "every metric record is in the index"
    );
}

/// Two processes with one data directory, no Elasticsearch: each writes a
/// spool directory of its own; an export sends both runs whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_a_data_directory_without_harm() {
    let _beside = LATENCY_RUNS_ALONE.read().await;
    let dir = Workdir::new();
    let args = [
        "run",
        "--orders",
        "300",
        "--time-scale",
        "0",
        "--data-dir",
        "shared",
    ];
    let first = dir.command(&args).spawn().unwrap();
    let second = dir.command(&args).spawn().unwrap();
    for child in [first, second] {
        assert_exit(&child.wait_with_output().unwrap(), 0);
    }
    let processes = std::fs::read_dir(dir.path("shared/spool")).unwrap().count();
    assert_eq!(processes, 2, "a spool directory per process");
    let (_, operations) = spooled(&dir.path("shared"));
    let elastic = FakeElastic::start().await;
    let stdout = text(
        &dir.run(&["export", "--es", &elastic.url(), "--data-dir", "shared"])
            .stdout,
    );
    assert!(
        stdout.contains(&format!("exported {operations} documents")),
        "{stdout}"
    );
    assert_mirrored_once(&elastic, 600);
}

/// The order path's p99 (send, end-to-end) in ms and the report, for a run
/// at `rate` orders/s against `es` (None: the spool).
fn order_path_p99(es: Option<&str>, orders: &str, rate: &str) -> ((f64, f64), Value) {
    let dir = Workdir::new();
    let mut args = paced_run(orders, rate, "32");
    args.extend(["--drain-timeout", "5"]);
    if let Some(url) = es {
        args.extend(["--es", url]);
    }
    let output = dir.run(&args);
    assert!(
        matches!(output.status.code(), Some(0 | 6)),
        "{}",
        text(&output.stderr)
    );
    let report = dir.report();
    let latency = &report["latency_ms"];
    let p99 = |name: &str| latency[name]["p99"].as_f64().unwrap();
    ((p99("send"), p99("end_to_end")), report)
}

/// The order path's p99 at `rate` without Elasticsearch, then with it
/// healthy, throttling (half the requests, one item in five) and down.
async fn order_path_under_elasticsearch(orders: &str, rate: &str) -> [(f64, f64); 4] {
    let mut elastic = FakeElastic::start().await;
    let url = elastic.url();
    let (without, _) = order_path_p99(None, orders, rate);
    let (healthy, _) = order_path_p99(Some(&url), orders, rate);
    eprintln!(
        "indexed {:.0} documents/s at {rate} orders/s",
        elastic.indexing_rate()
    );
    elastic.with(|c| {
        c.throttle_every_nth_request = Some(2);
        c.throttle_every_nth_item = Some(5);
    });
    let (throttled, _) = order_path_p99(Some(&url), orders, rate);
    elastic.stop().await;
    let (down, _) = order_path_p99(Some(&url), orders, rate);
    eprintln!(
        "order path p99 (send, end-to-end) ms at {rate} orders/s: no Elasticsearch {without:?} · \
         healthy {healthy:?} · throttling {throttled:?} · down {down:?}"
    );
    [without, healthy, throttled, down]
}

/// The order path never waits on Elasticsearch: its latency at 1,000
/// orders/s with Elasticsearch throttling or down stays within a bound of
/// the run with it healthy, and that run within a bound of the run without
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_path_latency_ignores_elasticsearch() {
    let _alone = LATENCY_RUNS_ALONE.write().await;
    let first = order_path_under_elasticsearch("4000", "1000").await;
    let Err(slow) = within_bound(first) else {
        return;
    };
    // One timing run on a shared two-core machine can be slow by itself;
    // an order path that waits on Elasticsearch is slow every time, so all
    // four are measured again and must all hold.
    eprintln!("measuring again: {slow}");
    if let Err(slow) = within_bound(order_path_under_elasticsearch("4000", "1000").await) {
        panic!("{slow}");
    }
}

/// Throttling and down within twice the healthy run plus 10 ms: a path
/// that waited on Elasticsearch would wait out its retries there. The
/// healthy run within four times the run without Elasticsearch plus 10 ms:
/// it shares the two cores with the stand-in, which parses thousands of
/// documents a second in this debug-built test process (measured there:
/// an end-to-end p99 2.5–3.2 times the run without it).
fn within_bound([without, healthy, throttled, down]: [(f64, f64); 4]) -> Result<(), String> {
    let over = |(send, end_to_end): (f64, f64), (base_send, base_e2e): (f64, f64), times: f64| {
        send > base_send * times + 10.0 || end_to_end > base_e2e * times + 10.0
    };
    if over(healthy, without, 4.0) {
        return Err(format!(
            "healthy: p99 {healthy:?} ms against {without:?} without Elasticsearch"
        ));
    }
    for (name, run) in [("throttled", throttled), ("down", down)] {
        if over(run, healthy, 2.0) {
            return Err(format!(
                "{name}: p99 {run:?} ms against {healthy:?} with Elasticsearch healthy"
            ));
        }
    }
    Ok(())
}

/// The figures for the README: documents/s indexed at 5,000 orders/s and
/// the order path's p99 with Elasticsearch healthy, throttling and down.
/// `cargo test --release --test mirror -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by hand in release mode"]
async fn measure_the_mirror_at_5000_orders_per_second() {
    let _alone = LATENCY_RUNS_ALONE.write().await;
    order_path_under_elasticsearch("50000", "5000").await;
}
