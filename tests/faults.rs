//! Faults injected into the embedded broker and the consumer group while a
//! few thousand orders run: none lost, none finished twice, counters that
//! reconcile, and a gRPC side that answers rather than hangs.
#![allow(clippy::unwrap_used)] // a test stops at the first broken expectation

mod common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use common::*;
use orderdeck::{
    clients::{run_clients, ClientPlan, ClientsOutcome},
    clock::{SimClock, TimeScale},
    grpc::pb::v1::{orders_client::OrdersClient, PlaceOrderRequest},
    kafka::BrokerTarget,
    metrics::{Counter, OrderCounts},
    pipeline::{chaos::Chaos, Pipeline, PipelineConfig},
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Code;

const ORDERS: u64 = 3000;

/// Three brokers (so leaders can move), a short delivery timeout (so an
/// outage shows up as UNAVAILABLE within seconds), no simulated delays.
fn chaos_config(time_scale: f64) -> PipelineConfig {
    let mut config = config(BrokerTarget::Embedded, time_scale);
    config.embedded_brokers = 3;
    config.kafka.delivery_timeout = Duration::from_secs(2);
    config
}

/// 8 clients sending `ORDERS` at 1,000 orders/s: a fault lands mid-run.
fn send_orders(pipeline: &Pipeline) -> JoinHandle<ClientsOutcome> {
    let plan = ClientPlan {
        clients: 8,
        rate: Some(1000.0),
        clock: SimClock::new(TimeScale::ORIGINAL),
        orders: Some(ORDERS),
        api: orderdeck::clients::ClientApi::Typed,
    };
    let clients = run_clients(
        endpoint(pipeline),
        seed_orders(),
        plan,
        Arc::clone(pipeline.metrics()),
        CancellationToken::new(),
    );
    tokio::spawn(async move { clients.await.expect("clients connect") })
}

async fn wait_for_finished(pipeline: &Pipeline, at_least: u64) {
    let metrics = Arc::clone(pipeline.metrics());
    assert!(
        eventually(Duration::from_secs(30), || metrics.get(Counter::Finished)
            >= at_least)
        .await,
        "only {} orders finished",
        metrics.get(Counter::Finished)
    );
}

/// Waits for the clients and for every acknowledged order to finish, then
/// checks, order by order, that nothing was lost or finished twice.
async fn assert_nothing_lost(
    pipeline: Pipeline,
    mut feed: tokio::sync::broadcast::Receiver<orderdeck::order::Transition>,
    clients: JoinHandle<ClientsOutcome>,
) -> OrderCounts {
    let outcome = clients.await.unwrap();
    assert!(
        outcome.errors.is_empty(),
        "clients gave up: {:?}",
        outcome.errors
    );
    assert_every_acknowledged_order_finishes(&pipeline, Duration::from_secs(60)).await;
    let mut by_order = HashMap::new();
    drain_transitions(&mut feed, &mut by_order);
    let counts = pipeline.snapshot().counts;
    let shutdown = pipeline.shutdown().await;

    assert_eq!(counts.sent, ORDERS, "{counts:?}");
    assert_eq!(counts.acknowledged, ORDERS, "{counts:?}");
    assert_eq!(counts.failed, 0, "{counts:?}");
    assert_eq!(counts.consumed, ORDERS, "{counts:?}");
    assert_eq!(counts.finished, ORDERS, "{counts:?}");
    assert_eq!(by_order.len() as u64, ORDERS);
    assert_each_finished_once(&by_order);
    let sink = shutdown.sink;
    assert_eq!(sink.read, sink.indexed + sink.spooled, "{sink:?}");
    assert_eq!(
        (sink.dead_lettered, sink.pending, sink.left),
        (0, 0, 0),
        "{sink:?}"
    );
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_down_then_up_loses_nothing_and_grpc_answers_unavailable_meanwhile() {
    let mut config = chaos_config(0.0);
    config.limits.max_in_flight = 64;
    let mut pipeline = start(config).await;
    let feed = pipeline.subscribe_transitions();
    let clients = send_orders(&pipeline);
    wait_for_finished(&pipeline, ORDERS / 3).await;

    pipeline.inject(Chaos::BrokersDown).unwrap();
    assert!(pipeline.chaos().brokers_down);
    // 200 callers at once while Kafka takes no writes: each gets an answer
    // (within the 2 s delivery timeout plus librdkafka's 1 s timeout scan;
    // 2.5 s alone, up to 7 s beside another test on 2 cores), those past the
    // in-flight limit at once. A hang would last until the brokers return,
    // which they do only after every call has its answer.
    let channel = tonic::transport::Endpoint::from_shared(endpoint(&pipeline))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let mut client = OrdersClient::new(channel.clone());
            let order = (&seed_orders()[0]).into();
            tokio::spawn(async move {
                client
                    .place_order(PlaceOrderRequest {
                        order: Some(order),
                        order_id: String::new(),
                    })
                    .await
                    .map(|_| ())
                    .unwrap_err()
                    .code()
            })
        })
        .collect();
    let mut codes: HashMap<Code, usize> = HashMap::new();
    for call in calls {
        *codes.entry(call.await.unwrap()).or_default() += 1;
    }
    let answered_in = started.elapsed();
    // Up before judging: a pipeline dropped with its brokers down takes a
    // minute to close, which would bury the failure.
    pipeline.inject(Chaos::BrokersUp).unwrap();
    assert!(!pipeline.chaos().brokers_down);
    assert!(
        answered_in < Duration::from_secs(15),
        "answers took {answered_in:?}"
    );
    assert_eq!(codes.keys().len(), 2, "{codes:?}");
    assert!(codes[&Code::Unavailable] > 0 && codes[&Code::ResourceExhausted] > 0);
    let counts = assert_nothing_lost(pipeline, feed, clients).await;
    assert_eq!(counts.rejected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_produce_errors_are_retried_without_loss_or_duplicates() {
    let mut pipeline = start(chaos_config(0.0)).await;
    let feed = pipeline.subscribe_transitions();
    let clients = send_orders(&pipeline);
    wait_for_finished(&pipeline, ORDERS / 3).await;
    pipeline.inject(Chaos::ProduceErrors(50)).unwrap();
    assert_nothing_lost(pipeline, feed, clients).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_round_trip_time_slows_but_loses_nothing() {
    let mut pipeline = start(chaos_config(0.0)).await;
    let feed = pipeline.subscribe_transitions();
    let clients = send_orders(&pipeline);
    wait_for_finished(&pipeline, ORDERS / 3).await;
    pipeline
        .inject(Chaos::RoundTripTime(Duration::from_millis(200)))
        .unwrap();
    let before = pipeline.snapshot().send.max;
    let metrics = Arc::clone(pipeline.metrics());
    let slowed = eventually(Duration::from_secs(10), || {
        metrics.snapshot().send.max >= 200.0
    })
    .await;
    pipeline
        .inject(Chaos::RoundTripTime(Duration::ZERO))
        .unwrap();
    assert!(
        slowed,
        "sends never felt the delay (max before: {before} ms)"
    );
    assert!(!pipeline.chaos().degraded());
    assert_nothing_lost(pipeline, feed, clients).await;
}

/// The leader broker of each orders partition, as metadata reports it.
fn leaders(bootstrap: &str) -> Vec<i32> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let metadata = client
        .fetch_metadata(Some("orders"), Duration::from_secs(5))
        .unwrap();
    let mut partitions: Vec<_> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| (p.id(), p.leader()))
        .collect();
    partitions.sort();
    partitions.into_iter().map(|(_, leader)| leader).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_leader_change_loses_nothing() {
    let mut pipeline = start(chaos_config(0.0)).await;
    let feed = pipeline.subscribe_transitions();
    let clients = send_orders(&pipeline);
    wait_for_finished(&pipeline, ORDERS / 4).await;
    let before = leaders(pipeline.bootstrap_servers());
    pipeline.inject(Chaos::MoveLeaders).unwrap();
    let after = leaders(pipeline.bootstrap_servers());
    assert!(
        before.iter().zip(&after).all(|(b, a)| b != a),
        "every partition changes leader: {before:?} -> {after:?}"
    );
    wait_for_finished(&pipeline, ORDERS / 2).await;
    pipeline.inject(Chaos::MoveLeaders).unwrap();
    assert_eq!(pipeline.chaos().injected, 2);
    assert_nothing_lost(pipeline, feed, clients).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consumer_task_is_replaced_and_its_orders_finish_once() {
    // 1–3 s per state scaled to 10–30 ms: orders are in flight when killed.
    let mut pipeline = start(chaos_config(0.01)).await;
    let feed = pipeline.subscribe_transitions();
    let clients = send_orders(&pipeline);
    wait_for_finished(&pipeline, ORDERS / 3).await;
    let members = pipeline.consumer_count();
    pipeline.inject(Chaos::KillConsumer).unwrap();
    assert_eq!(pipeline.consumer_count(), members, "a replacement joined");
    let counts = assert_nothing_lost(pipeline, feed, clients).await;
    assert!(
        counts.redelivered > 0,
        "the killed member's orders came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_faults_need_the_embedded_broker() {
    let cluster = cluster_with_topics(PARTITIONS);
    let mut pipeline = start(config(
        BrokerTarget::External(cluster.bootstrap_servers()),
        0.0,
    ))
    .await;
    let refused = pipeline.inject(Chaos::BrokersDown).unwrap_err();
    assert!(refused.to_string().contains("embedded broker"), "{refused}");
    assert_eq!(pipeline.chaos().injected, 0);
    pipeline.shutdown().await;
}

fn finished_on_record(bootstrap: &str) -> usize {
    finishes_on_record(bootstrap).values().sum()
}

/// A worker killed outright (SIGKILL) with orders in flight and finished
/// orders not yet committed; a new process in the same group, against the
/// broker that outlived it, finishes the rest. The events topic must show
/// every order finished exactly once.
#[test]
fn a_killed_worker_process_is_replaced_without_loss_or_double_finishes() {
    use common::workdir::{text, Workdir};
    const TOTAL: usize = 3000;
    let cluster = cluster_with_topics(PARTITIONS);
    let bootstrap = cluster.bootstrap_servers();
    let ids = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(produce_orders(&bootstrap, TOTAL));

    let dir = Workdir::new();
    // 50–150 ms per state, 400 orders at once: ≈3 s of work in all.
    let worker = |report: &str| {
        dir.command(&[
            "worker",
            "--brokers",
            &bootstrap,
            "--time-scale",
            "0.05",
            "--consumers",
            "2",
            "--max-in-flight-per-consumer",
            "200",
            "--report",
            report,
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
    };
    let mut first = worker("first.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while finished_on_record(&bootstrap) < TOTAL / 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first worker never got going"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    first.kill().unwrap(); // SIGKILL: no drain, no final commit
    first.wait().unwrap();
    let finished_by_first = finished_on_record(&bootstrap);
    assert!(finished_by_first < TOTAL, "killed before the end");

    let second = worker("second.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while finished_on_record(&bootstrap) < TOTAL {
        assert!(
            std::time::Instant::now() < deadline,
            "the second worker never finished"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let duplicates, if any, reach the topic before judging.
    std::thread::sleep(Duration::from_secs(2));
    common::workdir::send_signal(&second, "-INT");
    let output = second.wait_with_output().unwrap();
    assert!(output.status.code().is_some(), "{}", text(&output.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path("second.json")).unwrap()).unwrap();

    let finishes = finishes_on_record(&bootstrap);
    let lost = ids.iter().filter(|id| !finishes.contains_key(id)).count();
    let twice: Vec<_> = finishes.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(lost, 0, "orders never finished");
    assert!(twice.is_empty(), "{} orders finished twice", twice.len());
    assert_eq!(finishes.len(), TOTAL);
    // The successor did see records the first process had already finished.
    let skipped = report["orders"]["redelivered"].as_u64().unwrap();
    assert!(skipped > 0, "{report}");
}

/// Waits (up to 30 s) for a session status that satisfies `condition`.
async fn until(
    status: &tokio::sync::watch::Receiver<orderdeck::session::SessionStatus>,
    what: &str,
    condition: impl FnMut(&orderdeck::session::SessionStatus) -> bool,
) -> orderdeck::session::SessionStatus {
    let mut status = status.clone();
    let seen = tokio::time::timeout(Duration::from_secs(30), status.wait_for(condition))
        .await
        .unwrap_or_else(|_| panic!("never saw: {what}"))
        .unwrap()
        .clone();
    seen
}

/// The chaos menu's path: commands to a live session, the fault and the
/// recovery in its status, and the reconciliation back to nothing waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_shows_a_fault_and_the_recovery_live() {
    use orderdeck::{
        load::LoadLevel,
        session::{self, Command, Phase, SessionSettings},
    };
    let mut pipeline = chaos_config(0.0);
    pipeline.kafka.delivery_timeout = Duration::from_secs(1);
    let handle = session::spawn(SessionSettings {
        pipeline,
        load: LoadLevel::Medium,
        preset: LoadLevel::Medium.preset(),
        orders: seed_orders(),
        clock: SimClock::new(TimeScale::new(0.0).unwrap()),
        kibana: None,
        drain_limit: std::time::Duration::from_secs(60),
        audit_at_stop: false,
    });
    let status = handle.status.clone();
    until(&status, "orders finishing", |s| {
        s.phase == Phase::Running && s.reconciliation.finished > 200
    })
    .await;

    handle
        .commands
        .send(Command::Inject(Chaos::BrokersDown))
        .await
        .unwrap();
    let down = until(&status, "the fault in force", |s| s.chaos.brokers_down).await;
    // The screen says so: the fault, or (it is the newest news once a client
    // has tried a broker) what it did.
    let notice = down.notice.unwrap_or_default();
    assert!(
        notice == "chaos: brokers down" || notice.starts_with("Kafka is unreachable"),
        "{notice}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked_while_down = status.borrow().reconciliation.acknowledged;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        status.borrow().reconciliation.acknowledged,
        acked_while_down,
        "nothing is acknowledged while Kafka takes no writes"
    );

    handle
        .commands
        .send(Command::Inject(Chaos::BrokersUp))
        .await
        .unwrap();
    handle
        .commands
        .send(Command::Inject(Chaos::KillConsumer))
        .await
        .unwrap();
    let recovered = until(&status, "the recovery", |s| {
        !s.chaos.brokers_down && s.chaos.injected == 3
    })
    .await;
    let before = recovered.reconciliation.finished;
    let resumed = until(&status, "orders flowing again", |s| {
        s.reconciliation.finished > before + 500
    })
    .await;
    assert_eq!(resumed.reconciliation.overdue, 0);

    handle.commands.send(Command::ToggleClients).await.unwrap();
    let drained = until(&status, "nothing left waiting", |s| {
        !s.clients_running && s.reconciliation.waiting == 0
    })
    .await;
    let tally = drained.reconciliation;
    assert_eq!(tally.acknowledged, tally.finished, "{tally:?}");
    handle.commands.send(Command::Shutdown).await.unwrap();
    handle.finished().await;
}
