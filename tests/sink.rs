//! The Elasticsearch mirror on its own: real Kafka (a cluster the test
//! owns), the production mirror and client, and a loopback server speaking
//! Elasticsearch's HTTP API with faults on demand. Records go in through the
//! production producer (transitions and metric documents); what counts is
//! what the index holds, by id.
#![allow(clippy::unwrap_used)] // a test stops at the first broken expectation

mod common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use common::{cluster_with_topics, config, elastic::FakeElastic, scratch_dir};
use orderdeck::{
    kafka::{producer::OrderProducer, BrokerTarget, KafkaConnection},
    order::{Order, OrderId, OrderRecord, State, Transition},
    sinks::{
        backfill::backfill,
        elastic::{ElasticClient, ElasticConfig},
        indexer::Indexer,
        mirror, Document, IndexNames, MetricKind, MirrorHandle, MirrorSettings, MirrorState,
        MirrorStatus, MirrorTarget, MirrorTask,
    },
};
use tokio_util::sync::CancellationToken;

const ORDERS_INDEX: &str = "orderdeck-orders";
const METRICS_INDEX: &str = "orderdeck-metrics";

struct Rig {
    _cluster: rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    connection: KafkaConnection,
    producer: Arc<OrderProducer>,
    data_dir: std::path::PathBuf,
}

impl Rig {
    fn new() -> Self {
        let cluster = cluster_with_topics(4);
        let bootstrap = cluster.bootstrap_servers();
        let options = config(BrokerTarget::External(bootstrap.clone()), 0.0).kafka;
        let connection = KafkaConnection::new(bootstrap, options);
        let producer = Arc::new(OrderProducer::new(&connection).unwrap());
        Self {
            _cluster: cluster,
            connection,
            producer,
            data_dir: scratch_dir(),
        }
    }

    fn settings(&self, url: &str) -> MirrorSettings {
        let mut elastic = ElasticConfig::from_env(url.to_owned(), None);
        elastic.timeout = Duration::from_secs(2);
        MirrorSettings {
            target: MirrorTarget::Elastic(elastic),
            data_dir: self.data_dir.clone(),
            names: IndexNames::default(),
            spool_max_bytes: 1 << 30,
        }
    }

    async fn mirror(&self, url: &str) -> (MirrorHandle, MirrorTask) {
        mirror::start(
            &self.connection,
            Arc::clone(&self.producer),
            true,
            self.settings(url),
        )
        .await
        .unwrap()
    }

    /// `orders` orders walked Processing → Finished on the events topic, and
    /// a send-time metric each through the mirror's own handle.
    fn publish(&self, sink: &MirrorHandle, orders: usize) -> Expected {
        let mut expected = Expected::default();
        for n in 0..orders {
            let record = OrderRecord {
                order: Order {
                    product: format!("product {n}"),
                    price: 10.0 + n as f64,
                    payment_gateway: "PayPal".into(),
                    card_brand: "Visa".into(),
                    bank: "Banco".into(),
                    region: "Europa".into(),
                    address: "1 Calle".into(),
                    email: "a@b.c".into(),
                },
                order_id: OrderId::new_random(),
                accepted_at: 1.0e9,
            };
            let mut from = None;
            for to in State::ALL {
                let transition = Transition::new(&record, from, to, Duration::from_millis(3));
                for document in Document::from_event(&transition) {
                    expected.add(&document);
                }
                self.producer.publish_transition(&transition).unwrap();
                from = Some(to);
            }
            let send_time = Document::metric(
                MetricKind::SendTime,
                Some(record.order_id),
                None,
                1.0,
                "ms",
                1,
            );
            expected.add(&send_time);
            sink.publish(&send_time);
        }
        expected
    }

    async fn flush(&self) {
        let producer = Arc::clone(&self.producer);
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10)))
            .await
            .unwrap()
            .unwrap();
    }
}

/// What the index must hold: each metric id, each order at Finished.
#[derive(Default)]
struct Expected {
    metrics: Vec<String>,
    orders: Vec<String>,
    operations: u64,
}

impl Expected {
    fn extend(&mut self, other: Expected) {
        self.metrics.extend(other.metrics);
        self.orders.extend(other.orders);
        self.operations += other.operations;
    }

    fn add(&mut self, document: &Document) {
        self.operations += 1;
        match document.version {
            Some(_) if document.source["state"] == "Finished" => {
                self.orders.push(document.id.clone())
            }
            Some(_) => {}
            None => self.metrics.push(document.id.clone()),
        }
    }

    /// Every metric document indexed exactly once by id, every order's
    /// document at its last state; nothing else.
    fn assert_in(&self, elastic: &FakeElastic) {
        let accepted: HashMap<String, usize> = elastic.with(|c| {
            let mut counts = HashMap::new();
            for id in &c.arrivals {
                *counts.entry(id.clone()).or_default() += 1;
            }
            counts
        });
        let mut missing = 0;
        for id in &self.metrics {
            match accepted.get(id) {
                None => missing += 1,
                Some(1) => {}
                Some(n) => panic!("metric {id} indexed {n} times"),
            }
        }
        assert_eq!(missing, 0, "metric documents missing from the index");
        assert_eq!(elastic.ids(METRICS_INDEX).len(), self.metrics.len());
        let stored = elastic.with(|c| c.documents.clone());
        for id in &self.orders {
            let document = &stored[&(ORDERS_INDEX.to_owned(), id.clone())];
            assert_eq!(document["state"], "Finished", "order {id}: {document}");
        }
        assert_eq!(elastic.ids(ORDERS_INDEX).len(), self.orders.len());
    }
}

async fn close(task: MirrorTask, limit: Duration) -> MirrorStatus {
    task.close(limit, &CancellationToken::new(), |_| {}).await
}

fn assert_reconciles(status: &MirrorStatus, expected: &Expected) {
    assert_eq!(status.read, expected.operations, "{status:?}");
    assert_eq!(
        status.read,
        status.indexed + status.spooled + status.dead_lettered + status.pending,
        "{status:?}"
    );
    assert_eq!((status.pending, status.left), (0, 0), "{status:?}");
}

/// Every state the mirror reported while `until` ran.
async fn states_while<T>(
    sink: &MirrorHandle,
    until: impl std::future::Future<Output = T>,
) -> (T, Vec<MirrorState>) {
    let mut status = sink.status();
    let mut seen = Vec::new();
    tokio::pin!(until);
    loop {
        tokio::select! {
            done = &mut until => return (done, seen),
            changed = status.changed() => {
                if changed.is_err() {
                    return ((&mut until).await, seen);
                }
                let state = status.borrow_and_update().state.clone();
                if seen.last() != Some(&state) {
                    seen.push(state);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_arrive_once_by_id_with_templates_first() {
    let rig = Rig::new();
    let elastic = FakeElastic::start().await;
    let (sink, task) = rig.mirror(&elastic.url()).await;
    let expected = rig.publish(&sink, 300);
    rig.flush().await;
    let status = close(task, Duration::from_secs(60)).await;

    assert_eq!(
        elastic.with(|c| c.templates.clone()),
        [ORDERS_INDEX, METRICS_INDEX]
    );
    expected.assert_in(&elastic);
    assert!(
        elastic.with(|c| c.bulk_requests) <= 30,
        "bulk, not one request per document"
    );
    assert_eq!((status.spooled, status.dead_lettered), (0, 0));
    assert_eq!(status.state, MirrorState::Running);
    assert_reconciles(&status, &expected);
}

/// A quarter of the requests and one item in 13 answered 429, all along:
/// nothing is lost, nothing goes twice, nothing is left for the spool.
/// Without retries this fails (documents missing or spooled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_429s_are_back_pressure_and_every_document_arrives_once() {
    let rig = Rig::new();
    let elastic = FakeElastic::start().await;
    elastic.with(|c| {
        c.throttle_every_nth_request = Some(4);
        c.throttle_every_nth_item = Some(13);
    });
    let (sink, task) = rig.mirror(&elastic.url()).await;
    let expected = rig.publish(&sink, 500);
    rig.flush().await;
    let (status, states) = states_while(&sink, close(task, Duration::from_secs(60))).await;

    expected.assert_in(&elastic);
    assert_eq!(status.spooled, 0, "{status:?}");
    assert!(status.retries > 0, "{status:?}");
    assert!(
        states.contains(&MirrorState::Throttled),
        "the mirror says it is throttled: {states:?}"
    );
    assert!(
        !states.iter().any(|s| matches!(s, MirrorState::Down(_))),
        "429 is not an outage: {states:?}"
    );
    assert_reconciles(&status, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_items_go_to_the_dead_letter_file_with_their_reason() {
    let rig = Rig::new();
    let elastic = FakeElastic::start().await;
    let (sink, task) = rig.mirror(&elastic.url()).await;
    // Mapping errors for some send-time metrics, known by id in advance.
    let rejected: Vec<String> = (0..7)
        .map(|n| {
            let document = Document::metric(MetricKind::Throughput, None, None, n as f64, "x", n);
            sink.publish(&document);
            document.id
        })
        .collect();
    elastic.with(|c| c.reject.extend(rejected.iter().cloned()));
    let expected = rig.publish(&sink, 100);
    rig.flush().await;
    let status = close(task, Duration::from_secs(60)).await;

    assert_eq!(status.dead_lettered, 7, "{status:?}");
    assert!(
        status.failures[0].contains("mapper_parsing_exception"),
        "{status:?}"
    );
    let file = status.dead_letter_file.clone().expect("a dead-letter file");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    for line in &lines {
        assert!(line["reason"].as_str().unwrap().contains("failed to parse"));
        let operation = line["operation"].as_str().unwrap();
        assert!(rejected.iter().any(|id| operation.contains(id.as_str())));
    }
    expected.assert_in_with_extra(&elastic, 0);
    assert_eq!(status.read, expected.operations + 7);
}

impl Expected {
    fn assert_in_with_extra(&self, elastic: &FakeElastic, extra_metrics: usize) {
        let stored = elastic.ids(METRICS_INDEX);
        assert_eq!(stored.len(), self.metrics.len() + extra_metrics);
        assert!(self.metrics.iter().all(|id| stored.contains(id)));
        assert_eq!(elastic.ids(ORDERS_INDEX).len(), self.orders.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_too_large_is_split() {
    let rig = Rig::new();
    let elastic = FakeElastic::start().await;
    elastic.with(|c| c.max_body_bytes = Some(40_000));
    let (sink, task) = rig.mirror(&elastic.url()).await;
    let expected = rig.publish(&sink, 200);
    rig.flush().await;
    let status = close(task, Duration::from_secs(60)).await;
    expected.assert_in(&elastic);
    assert_eq!((status.spooled, status.dead_lettered), (0, 0), "{status:?}");
    assert!(
        elastic.with(|c| c.too_large_answers) > 0,
        "requests were too large, then split"
    );
    assert_reconciles(&status, &expected);
}

/// A credential change: every request answered 401. The mirror stops
/// sending, says why, and keeps every document in the spool; an export
/// with working credentials completes the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_stops_the_mirror_loudly_and_the_documents_are_kept() {
    let rig = Rig::new();
    let elastic = FakeElastic::start().await;
    let (sink, task) = rig.mirror(&elastic.url()).await;
    let early = rig.publish(&sink, 50);
    rig.flush().await;
    assert!(
        common::eventually(Duration::from_secs(20), || sink.status().borrow().indexed
            == early.operations)
        .await
    );
    elastic.with(|c| c.refuse_with = Some(401));
    let late = rig.publish(&sink, 100);
    rig.flush().await;
    let status = close(task, Duration::from_secs(60)).await;
    let MirrorState::Stopped(reason) = &status.state else {
        panic!("the mirror stopped: {status:?}");
    };
    assert!(reason.contains("401"), "{reason}");
    assert_eq!(status.indexed, early.operations);
    assert_eq!(status.spooled, late.operations, "{status:?}");

    elastic.with(|c| c.refuse_with = None);
    let client = ElasticClient::new(
        &ElasticConfig::from_env(elastic.url(), None),
        IndexNames::default(),
    )
    .unwrap();
    let exported = backfill(&rig.data_dir, &mut Indexer::new(client), false, |_, _| {})
        .await
        .unwrap();
    assert_eq!(exported.indexed, late.operations);
    let mut all = early;
    all.extend(late);
    all.assert_in(&elastic);
}

/// Elasticsearch down for a while mid-stream: the mirror waits (Kafka holds
/// the records), says it is down, and catches up once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_elasticsearch_is_down_kafka_holds_the_documents() {
    let rig = Rig::new();
    let mut elastic = FakeElastic::start().await;
    let (sink, task) = rig.mirror(&elastic.url()).await;
    let mut expected = rig.publish(&sink, 50);
    rig.flush().await;
    assert!(
        common::eventually(Duration::from_secs(20), || sink.status().borrow().indexed
            == expected.operations)
        .await
    );
    elastic.stop().await;
    let during = rig.publish(&sink, 100);
    rig.flush().await;
    assert!(
        common::eventually(Duration::from_secs(20), || matches!(
            sink.status().borrow().state,
            MirrorState::Down(_)
        ))
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sink.status().borrow().spooled,
        0,
        "nothing spooled while running"
    );
    elastic.restart().await;
    let status = close(task, Duration::from_secs(60)).await;
    expected.extend(during);
    expected.assert_in(&elastic);
    assert_eq!(status.spooled, 0, "{status:?}");
    assert_eq!(status.state, MirrorState::Running);
    assert_reconciles(&status, &expected);
}

/// A stop while Elasticsearch is down: the mirror waits at most its limit,
/// then spools what is left, and an export later completes the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_down_spools_the_rest_within_the_limit() {
    let rig = Rig::new();
    let mut elastic = FakeElastic::start().await;
    elastic.stop().await;
    let (sink, task) = rig.mirror(&elastic.url()).await;
    let expected = rig.publish(&sink, 100);
    rig.flush().await;
    let started = std::time::Instant::now();
    let status = close(task, Duration::from_secs(2)).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status.spooled, expected.operations, "{status:?}");
    assert_reconciles(&status, &expected);

    elastic.restart().await;
    let client = ElasticClient::new(
        &ElasticConfig::from_env(elastic.url(), None),
        IndexNames::default(),
    )
    .unwrap();
    backfill(&rig.data_dir, &mut Indexer::new(client), false, |_, _| {})
        .await
        .unwrap();
    expected.assert_in(&elastic);
}
