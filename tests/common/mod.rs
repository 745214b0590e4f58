//! Shared test setup: real pipelines on loopback, real Kafka clients.
#![allow(dead_code)] // each test binary uses a different part of this

use std::{collections::HashMap, sync::Arc, time::Duration};

use orderdeck::{
    clients::{load_orders, BadRowPolicy},
    clock::{SimClock, TimeScale},
    kafka::{BrokerTarget, KafkaOptions},
    order::{Order, OrderId, Transition},
    pipeline::{Pipeline, PipelineConfig},
};
use tokio::sync::broadcast;

pub mod elastic;
pub mod processes;
pub mod workdir;

pub const PARTITIONS: i32 = 4;

pub fn config(target: BrokerTarget, time_scale: f64) -> PipelineConfig {
    let mut config = PipelineConfig::loopback(KafkaOptions {
        partitions: PARTITIONS,
        group: "orderdeck-test".into(),
        ..KafkaOptions::new(target, "orders")
    });
    config.embedded_brokers = 1;
    config.consumers = 2;
    config.clock = SimClock::new(TimeScale::new(time_scale).unwrap());
    config.transition_buffer = 1 << 16;
    config.dedup_memory = 100_000;
    config.mirror.data_dir = scratch_dir();
    config
}

/// A broker the test owns (it outlives every process under test), reached
/// over TCP on loopback, with the orders, events, metrics and processes
/// topics made.
pub fn cluster_with_topics(
    partitions: i32,
) -> rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    for topic in [
        "orders",
        "orders.events",
        "orders.metrics",
        "orders.processes",
    ] {
        cluster.create_topic(topic, partitions, 1).unwrap();
    }
    cluster
}

/// A fresh directory under the system's temporary one.
pub fn scratch_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("orderdeck-test-{}", uuid::Uuid::new_v4()))
}

pub async fn start(config: PipelineConfig) -> Pipeline {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let pipeline = Pipeline::start(config).await.expect("pipeline starts");
    assert!(
        pipeline.wait_until_consuming(Duration::from_secs(30)).await,
        "consumer group never got its partitions"
    );
    pipeline
}

/// The original 500 orders shipped with the project.
pub fn seed_orders() -> Arc<[Order]> {
    load_orders(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("orders.csv")
            .as_path(),
        BadRowPolicy::Stop,
    )
    .expect("orders.csv loads")
    .orders
    .into()
}

pub fn endpoint(pipeline: &Pipeline) -> String {
    format!("http://{}", pipeline.grpc_addr().expect("server runs"))
}

/// Waits until every acknowledged order (by id) has finished.
pub async fn assert_every_acknowledged_order_finishes(pipeline: &Pipeline, limit: Duration) {
    assert!(
        eventually(limit, || pipeline.unfinished_acknowledged() == 0).await,
        "{} acknowledged orders never finished",
        pipeline.unfinished_acknowledged()
    );
}

/// `orders` orders from `clients` simulated clients, as fast as they go;
/// asserts none gave up and every one finished.
pub async fn send_orders_until_finished(
    pipeline: &Pipeline,
    server: impl Into<orderdeck::grpc::Dial>,
    clients: usize,
    orders: u64,
) {
    let outcome = orderdeck::clients::run_clients(
        server,
        seed_orders(),
        orderdeck::clients::ClientPlan {
            clients,
            rate: None,
            clock: SimClock::new(TimeScale::ORIGINAL),
            orders: Some(orders),
            api: orderdeck::clients::ClientApi::Typed,
        },
        Arc::clone(pipeline.metrics()),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("clients connect");
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    assert_every_acknowledged_order_finishes(pipeline, Duration::from_secs(60)).await;
    assert_eq!(pipeline.snapshot().counts.finished, orders);
}

/// Polls `condition` every 20 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

/// Each order's transitions end in its one Finished.
pub fn assert_each_finished_once(by_order: &HashMap<OrderId, Vec<Transition>>) {
    for (id, transitions) in by_order {
        let finishes = transitions
            .iter()
            .filter(|t| t.to == orderdeck::order::State::Finished)
            .count();
        assert_eq!(finishes, 1, "order {id} finished {finishes} times");
        assert_eq!(
            transitions.last().map(|t| t.to),
            Some(orderdeck::order::State::Finished),
            "order {id} did not end Finished"
        );
    }
}

/// Every transition received so far, grouped by order, in arrival order.
pub fn drain_transitions(
    feed: &mut broadcast::Receiver<Transition>,
    into: &mut HashMap<OrderId, Vec<Transition>>,
) {
    loop {
        match feed.try_recv() {
            Ok(t) => into.entry(t.order_id).or_default().push(t),
            Err(broadcast::error::TryRecvError::Empty) => return,
            Err(e) => panic!("transition feed failed: {e}"),
        }
    }
}

/// Writes `count` accepted orders (the seed rows, cycled) straight into the
/// orders topic, as a server would have; returns their ids.
pub async fn produce_orders(bootstrap: &str, count: usize) -> Vec<OrderId> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let orders = seed_orders();
    let deliveries: Vec<_> = (0..count)
        .map(|n| {
            let record = orderdeck::order::OrderRecord {
                order: orders[n % orders.len()].clone(),
                order_id: OrderId::new_random(),
                accepted_at: orderdeck::clock::unix_seconds_now(),
            };
            let key = record.order_id.to_string();
            let value = serde_json::to_vec(&record).unwrap();
            let delivery = producer
                .send_result(FutureRecord::to("orders").key(&key).payload(&value))
                .expect("queued");
            (record.order_id, delivery)
        })
        .collect();
    let mut ids = Vec::with_capacity(count);
    for (id, delivery) in deliveries {
        delivery.await.unwrap().expect("delivered");
        ids.push(id);
    }
    ids
}

/// Every record of `topic`, from the beginning up to its end now: (key, payload).
pub fn topic_records(bootstrap: &str, topic: &str) -> Vec<(String, Vec<u8>)> {
    use rdkafka::{
        consumer::{BaseConsumer, Consumer},
        Message, Offset, TopicPartitionList,
    };
    let limit = Duration::from_secs(10);
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("test-reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), limit).unwrap();
    let mut assignment = TopicPartitionList::new();
    let mut unread = HashMap::new();
    for partition in metadata.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition.id(), limit)
            .unwrap();
        if high > low {
            assignment
                .add_partition_offset(topic, partition.id(), Offset::Beginning)
                .unwrap();
            unread.insert(partition.id(), high);
        }
    }
    let mut records = Vec::new();
    if unread.is_empty() {
        return records;
    }
    consumer.assign(&assignment).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !unread.is_empty() {
        assert!(std::time::Instant::now() < deadline, "{topic} unread");
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.unwrap();
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        records.push((key, message.payload().unwrap_or_default().to_vec()));
        if unread
            .get(&message.partition())
            .is_some_and(|high| message.offset() + 1 >= *high)
        {
            unread.remove(&message.partition());
        }
    }
    records
}

/// The Finished events on the events topic, counted per order.
pub fn finishes_on_record(bootstrap: &str) -> HashMap<OrderId, usize> {
    let mut finishes = HashMap::new();
    for (_, payload) in topic_records(bootstrap, "orders.events") {
        let transition: Transition = serde_json::from_slice(&payload).unwrap();
        if transition.to == orderdeck::order::State::Finished {
            *finishes.entry(transition.order_id).or_default() += 1;
        }
    }
    finishes
}
