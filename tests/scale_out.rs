//! Several orderdeck processes in one consumer group, against a broker that
//! outlives them all (owned by the test), with orders mid-state whenever
//! partitions move: a worker joins mid-run, another joins, the first leaves
//! gracefully (SIGTERM), the second is killed (SIGKILL). Judged from what
//! an outsider sees, by order id: every order on the orders topic (each one
//! acknowledged) has exactly one Finished event.
#![allow(clippy::unwrap_used)] // a test stops at the first broken expectation

mod common;

use std::time::Duration;

use common::{
    cluster_with_topics, finishes_on_record,
    processes::{report_of, stderr_of, wait_until_consuming, Process},
    topic_records,
    workdir::Workdir,
};

const ORDERS: u64 = 1500;
const PARTITIONS: i32 = 6;
/// Medium load's 0.5–1.5 s per state, scaled to 100–300 ms: at 150 orders/s
/// about a hundred orders are mid-state at any moment.
const TIME_SCALE: &str = "0.2";

fn scale_out_and_in(seed: u64) {
    let cluster = cluster_with_topics(PARTITIONS);
    let bootstrap = cluster.bootstrap_servers();
    let dir = Workdir::new();
    let common = [
        "--brokers",
        &bootstrap,
        "--time-scale",
        TIME_SCALE,
        "--load",
        "medium",
        "--consumers",
        "1",
    ];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(common.iter().copied());
        args
    };
    // The seed shifts every move by up to a second, so repeated runs catch
    // orders at different points of their lives.
    let jitter = |step: u64| Duration::from_millis((seed * 7919 + step * 104_729) % 1000);

    let mut run = Process::start(
        &dir,
        "run",
        &with(&["run", "--orders", "1500", "--rate", "150"]),
    );
    wait_until_consuming(&dir, "run");
    std::thread::sleep(Duration::from_secs(1) + jitter(1));
    let mut joins_then_leaves = Process::start(&dir, "leaver", &with(&["worker"]));
    wait_until_consuming(&dir, "leaver");
    std::thread::sleep(jitter(2));
    let mut joins_then_dies = Process::start(&dir, "victim", &with(&["worker"]));
    wait_until_consuming(&dir, "victim");
    std::thread::sleep(Duration::from_secs(1) + jitter(3));
    joins_then_leaves.signal("-TERM");
    let leaver_exit = joins_then_leaves.wait(&dir, Duration::from_secs(60));
    std::thread::sleep(jitter(4));
    joins_then_dies.signal("-KILL");
    joins_then_dies.wait(&dir, Duration::from_secs(10));

    let run_exit = run.wait(&dir, Duration::from_secs(120));
    assert_eq!(run_exit, Some(0), "run: {}", stderr_of(&dir, "run"));
    assert_eq!(
        leaver_exit,
        Some(0),
        "the worker that left: {}",
        stderr_of(&dir, "leaver")
    );

    // Judged from the topics, by order id.
    let acknowledged: std::collections::HashSet<String> = topic_records(&bootstrap, "orders")
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let finishes = finishes_on_record(&bootstrap);
    assert_eq!(acknowledged.len() as u64, ORDERS);
    let lost = acknowledged
        .iter()
        .filter(|id| !finishes.contains_key(&id.parse().unwrap()))
        .count();
    let twice = finishes.values().filter(|n| **n > 1).count();
    let unknown = finishes
        .keys()
        .filter(|id| !acknowledged.contains(&id.to_string()))
        .count();
    assert_eq!(
        (lost, twice, unknown),
        (0, 0, 0),
        "orders never finished, finished twice, finished but never acknowledged"
    );

    // What the processes say reconciles with that.
    let run = report_of(&dir, "run");
    let leaver = report_of(&dir, "leaver");
    let orders = &run["orders"];
    assert_eq!(orders["acknowledged"], ORDERS, "{orders}");
    assert_eq!(orders["unfinished"], 0, "{orders}");
    let here = orders["finished"].as_u64().unwrap();
    let elsewhere = orders["finished_elsewhere"].as_u64().unwrap();
    assert_eq!(here + elsewhere, ORDERS, "{orders}");
    assert!(elsewhere > 0, "the workers finished some: {orders}");
    let moved =
        orders["handed_over"].as_u64().unwrap() + leaver["orders"]["handed_over"].as_u64().unwrap();
    assert!(
        moved > 0,
        "partitions moved with orders mid-state: {orders}"
    );
    eprintln!(
        "seed {seed}: {ORDERS} orders, 3 processes, finished by run {here}, by workers \
         {elsewhere}; runs stopped mid-state at hand-over {moved}; run redelivered {}; \
         Finished per order: exactly 1",
        orders["redelivered"]
    );
}

#[test]
fn processes_join_leave_and_die_mid_run_and_each_order_finishes_once_seed_1() {
    scale_out_and_in(1);
}

#[test]
fn processes_join_leave_and_die_mid_run_and_each_order_finishes_once_seed_2() {
    scale_out_and_in(2);
}
