//! The pipeline end to end on real Kafka clients: the embedded broker, and a
//! broker owned by the test for consumer restarts.
#![allow(clippy::unwrap_used)] // a test stops at the first broken expectation

mod common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use common::*;
use orderdeck::{
    clients::{run_clients, ClientPlan},
    kafka::{consumer::StopMode, BrokerTarget, EmbeddedBroker, KafkaOptions},
    order::State,
};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    ClientConfig, Offset, TopicPartitionList,
};
use tokio_util::sync::CancellationToken;

fn plan(orders: u64) -> ClientPlan {
    ClientPlan {
        clients: 8,
        rate: None,
        clock: orderdeck::clock::SimClock::new(orderdeck::clock::TimeScale::ORIGINAL),
        orders: Some(orders),
        api: orderdeck::clients::ClientApi::Typed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_passes_the_five_states_once_on_the_embedded_broker() {
    let pipeline = start(config(BrokerTarget::Embedded, 0.0)).await;
    let mut feed = pipeline.subscribe_transitions();
    let orders = seed_orders();
    let outcome = run_clients(
        endpoint(&pipeline),
        Arc::clone(&orders),
        plan(orders.len() as u64),
        Arc::clone(pipeline.metrics()),
        CancellationToken::new(),
    )
    .await
    .expect("clients connect");
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    assert_every_acknowledged_order_finishes(&pipeline, Duration::from_secs(30)).await;
    let mut by_order = HashMap::new();
    drain_transitions(&mut feed, &mut by_order);
    let counts = pipeline.snapshot().counts;
    pipeline.shutdown().await;

    assert_eq!(by_order.len(), 500);
    let expected: Vec<(Option<State>, State)> = std::iter::once((None, State::Processing))
        .chain(State::TIMED.iter().map(|s| (Some(*s), s.next().unwrap())))
        .collect();
    for (id, transitions) in &by_order {
        let walked: Vec<_> = transitions.iter().map(|t| (t.from, t.to)).collect();
        assert_eq!(walked, expected, "order {id} walked {walked:?}");
        assert_eq!(transitions.last().unwrap().estado, "Finalizado");
    }
    let products: usize = by_order
        .values()
        .filter(|t| t[0].product == orders[0].product)
        .count();
    assert!(products > 0, "transitions carry the product");
    assert_eq!(counts.sent, 500);
    assert_eq!(counts.acknowledged, 500);
    assert_eq!(counts.consumed, 500);
    assert_eq!(counts.finished, 500);
    assert_eq!(counts.redelivered, 0);
    assert_eq!(counts.rejected + counts.failed + counts.invalid_records, 0);
    assert_eq!(counts.transitions, 500 * 5);
}

/// A new embedded broker's group starts at offset 0 of every orders
/// partition: with no committed offset, librdkafka asks where the log
/// begins only after a fixed 100 ms back-off, which a run's first orders
/// waited out (`run --orders 20 --time-scale 0`: taken up p50 101–135 ms;
/// 6–67 ms with the commit, release — timed by hand, since other start-up
/// pauses of ≈ 50 ms made a timed test flaky).
#[test]
fn a_new_embedded_broker_starts_its_group_at_the_log_start() {
    let options = KafkaOptions::new(BrokerTarget::Embedded, "orders");
    let broker = EmbeddedBroker::with_topics(3, &options).unwrap();
    let consumer = group_client(broker.bootstrap_servers(), &options.group);
    let offsets = committed_offsets(&consumer, &options.topic, options.partitions);
    assert_eq!(
        offsets,
        vec![Offset::Offset(0); options.partitions as usize]
    );
}

/// Every embedded topic has the partitions asked for: the mock keeps 5 MiB
/// per partition, so the events and metrics topics' partitions are how far
/// the mirror may fall behind before records it has not read are deleted
/// (with one partition each, a `--load high` run at time-scale 0 lost
/// nearly all its events; docs/benchmarks.md).
#[test]
fn the_embedded_broker_gives_every_topic_the_partitions_asked_for() {
    let mut options = KafkaOptions::new(BrokerTarget::Embedded, "orders");
    options.partitions = 4;
    let broker = EmbeddedBroker::with_topics(3, &options).unwrap();
    let probe = group_client(broker.bootstrap_servers(), &options.group);
    let metadata = probe.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    let mut partitions: Vec<(String, usize)> = metadata
        .topics()
        .iter()
        .map(|t| (t.name().to_owned(), t.partitions().len()))
        .collect();
    partitions.sort();
    assert_eq!(
        partitions,
        vec![
            ("orders".to_owned(), 4),
            ("orders.events".to_owned(), 4),
            ("orders.metrics".to_owned(), 4),
            ("orders.processes".to_owned(), 4),
        ]
    );
}

/// A client of `group` (which it never joins) on `bootstrap`.
fn group_client(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap()
}

/// The client's group's committed offsets of partitions 0.. of `topic`.
fn committed_offsets(consumer: &BaseConsumer, topic: &str, partitions: i32) -> Vec<Offset> {
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap();
    (0..partitions)
        .map(|p| committed.find_partition(topic, p).unwrap().offset())
        .collect()
}

/// Committed offsets of `group` on the orders topic, and the topic's ends.
fn committed_and_ends(bootstrap: &str, group: &str) -> Vec<(i64, i64)> {
    let consumer = group_client(bootstrap, group);
    committed_offsets(&consumer, "orders", PARTITIONS)
        .into_iter()
        .zip(0..)
        .map(|(committed, p)| {
            let offset = match committed {
                Offset::Offset(o) => o,
                _ => 0,
            };
            let (_, high) = consumer
                .fetch_watermarks("orders", p, Duration::from_secs(10))
                .unwrap();
            (offset, high)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_consumers_are_replaced_and_no_order_is_lost_or_finished_twice() {
    let cluster = cluster_with_topics(PARTITIONS);
    let bootstrap = cluster.bootstrap_servers();
    // 1–3 s per state scaled to 10–30 ms: orders are in flight when killed.
    let mut pipeline = start(config(BrokerTarget::External(bootstrap.clone()), 0.01)).await;
    let mut feed = pipeline.subscribe_transitions();
    let metrics = Arc::clone(pipeline.metrics());
    let clients = tokio::spawn(run_clients(
        endpoint(&pipeline),
        seed_orders(),
        ClientPlan {
            rate: Some(500.0),
            ..plan(1000)
        },
        Arc::clone(&metrics),
        CancellationToken::new(),
    ));
    // The test's broker answers a fetch that found nothing only after the
    // default 500 ms wait, so orders are taken up in waves with idle gaps
    // between them: the kill waits for a wave in progress.
    assert!(
        eventually(Duration::from_secs(30), || metrics
            .get(orderdeck::metrics::Counter::Finished)
            >= 200
            && pipeline.in_flight() > 0)
        .await
    );
    let in_flight_when_killed = pipeline.in_flight();
    pipeline
        .restart_consumers(StopMode::Abort, 3)
        .await
        .unwrap();
    assert!(pipeline.wait_until_consuming(Duration::from_secs(30)).await);

    let outcome = clients.await.unwrap().unwrap();
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    assert_every_acknowledged_order_finishes(&pipeline, Duration::from_secs(60)).await;
    let mut by_order = HashMap::new();
    drain_transitions(&mut feed, &mut by_order);
    let counts = pipeline.snapshot().counts;
    pipeline.shutdown().await;

    assert!(
        in_flight_when_killed > 0,
        "the kill must interrupt work to test anything"
    );
    assert_eq!(counts.acknowledged, 1000);
    assert_eq!(
        counts.finished, 1000,
        "every order finished exactly once: {counts:?}"
    );
    assert_eq!(counts.consumed, 1000, "{counts:?}");
    assert!(
        counts.redelivered > 0,
        "abandoned orders come back: {counts:?}"
    );
    assert_eq!(by_order.len(), 1000);
    assert_each_finished_once(&by_order);
    // At-least-once with nothing left behind: the group committed every record.
    for (partition, (committed, end)) in committed_and_ends(&bootstrap, "orderdeck-test")
        .iter()
        .enumerate()
    {
        assert_eq!(
            committed, end,
            "partition {partition}: committed {committed} of {end}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_clients_complete_without_errors() {
    orderdeck::raise_open_file_limit();
    let pipeline = start(config(BrokerTarget::Embedded, 0.0)).await;
    send_orders_until_finished(&pipeline, endpoint(&pipeline), 1000, 3000).await;
    let counts = pipeline.snapshot().counts;
    pipeline.shutdown().await;
    assert_eq!(counts.sent, 3000);
    assert_eq!(counts.acknowledged, 3000);
    assert_eq!(counts.finished, 3000);
    assert_eq!(counts.failed + counts.rejected, 0);
}

/// The chaos menu's panic: one order's run panics midway. It is logged,
/// counted and run again; it finishes once and its partition keeps
/// committing to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_order_runs_again_finishes_once_and_commits_continue() {
    let cluster = cluster_with_topics(PARTITIONS);
    let bootstrap = cluster.bootstrap_servers();
    let mut pipeline = start(config(BrokerTarget::External(bootstrap.clone()), 0.01)).await;
    let mut feed = pipeline.subscribe_transitions();
    pipeline
        .inject(orderdeck::pipeline::chaos::Chaos::PanicOrder)
        .unwrap();
    send_orders_until_finished(&pipeline, endpoint(&pipeline), 8, 400).await;
    let mut by_order = HashMap::new();
    drain_transitions(&mut feed, &mut by_order);
    let counts = pipeline.snapshot().counts;
    assert_eq!(counts.panics, 1, "{counts:?}");
    assert_eq!(counts.finished, 400, "{counts:?}");
    assert_eq!(by_order.len(), 400);
    assert_each_finished_once(&by_order);
    // Commits caught up to the end of every partition while still running.
    assert!(
        eventually(Duration::from_secs(10), || {
            committed_and_ends(&bootstrap, "orderdeck-test")
                .iter()
                .all(|(committed, end)| committed == end)
        })
        .await,
        "{:?}",
        committed_and_ends(&bootstrap, "orderdeck-test")
    );
    pipeline.shutdown().await;
}
