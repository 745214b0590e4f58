//! The Elasticsearch sink, production client against a loopback server that
//! speaks Elasticsearch's HTTP API: normal flow, 429 bursts, 500s, per-item
//! failures, and Elasticsearch away for a while then back.

mod common;

use std::{collections::HashSet, time::Duration};

use common::{elastic::FakeElastic, scratch_dir};
use orderdeck::{
    order::OrderId,
    sinks::{
        elastic::ElasticConfig, mirror, Document, IndexNames, MetricKind, SinkSettings, SinkStatus,
        SinkTarget,
    },
};

fn settings(url: &str) -> SinkSettings {
    let mut elastic = ElasticConfig::from_env(url.to_owned(), None);
    elastic.timeout = Duration::from_secs(2);
    SinkSettings {
        target: SinkTarget::Elastic(elastic),
        data_dir: scratch_dir(),
        names: IndexNames::default(),
    }
}

/// `n` metric documents with distinct ids, in submission order.
fn documents(n: usize, tag: i64) -> Vec<Document> {
    (0..n)
        .map(|i| {
            Document::metric(
                MetricKind::SendTime,
                Some(OrderId::new_random()),
                None,
                i as f64,
                "ms",
                tag,
            )
        })
        .collect()
}

fn ids(documents: &[Document]) -> Vec<String> {
    documents.iter().map(|d| d.id.clone()).collect()
}

fn assert_reconciles(status: &SinkStatus) {
    assert_eq!(
        status.produced,
        status.indexed + status.spooled + status.failed + status.queued,
        "{status:?}"
    );
    assert_eq!(
        status.queued, 0,
        "closing writes everything out: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_arrive_once_by_id_with_templates_first() {
    let elastic = FakeElastic::start().await;
    let (sink, task) = mirror::start(settings(&elastic.url())).await.unwrap();
    let sent = documents(3_000, 1);
    sink.submit(sent.clone()).await;
    let status = task.close().await;

    assert_eq!(
        elastic.with(|c| c.templates.clone()),
        ["orderdeck-orders", "orderdeck-metrics"]
    );
    assert_eq!(
        elastic.ids("orderdeck-metrics"),
        ids(&sent).into_iter().collect::<HashSet<_>>()
    );
    assert_eq!(
        elastic.with(|c| c.arrivals.len()),
        3_000,
        "each exactly once"
    );
    assert!(
        elastic.with(|c| c.bulk_requests) <= 10,
        "bulk, not one request per document"
    );
    assert_eq!(
        (status.indexed, status.spooled, status.failed),
        (3_000, 0, 0)
    );
    assert_reconciles(&status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_429_and_500_are_retried_with_backoff() {
    let elastic = FakeElastic::start().await;
    elastic.with(|c| c.fail_requests.extend([429, 429, 500, 503]));
    let (sink, task) = mirror::start(settings(&elastic.url())).await.unwrap();
    let sent = documents(2_500, 2);
    sink.submit(sent.clone()).await;
    let status = task.close().await;

    assert_eq!(elastic.ids("orderdeck-metrics").len(), 2_500);
    assert_eq!(status.indexed + status.spooled, 2_500, "{status:?}");
    assert_eq!(status.failed, 0);
    assert!(
        elastic.with(|c| c.fail_requests.is_empty()),
        "every injected fault was met"
    );
    assert_reconciles(&status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_items_are_retried_alone_and_mapping_errors_are_counted_with_their_reason() {
    let elastic = FakeElastic::start().await;
    let sent = documents(1_000, 3);
    let throttled: Vec<String> = sent.iter().step_by(10).map(|d| d.id.clone()).collect();
    let rejected: Vec<String> = sent
        .iter()
        .skip(5)
        .step_by(100)
        .map(|d| d.id.clone())
        .collect();
    elastic.with(|c| {
        c.throttle_once.extend(throttled.iter().cloned());
        c.reject.extend(rejected.iter().cloned());
    });
    let (sink, task) = mirror::start(settings(&elastic.url())).await.unwrap();
    sink.submit(sent.clone()).await;
    let status = task.close().await;

    let stored = elastic.ids("orderdeck-metrics");
    assert_eq!(stored.len(), 1_000 - rejected.len());
    assert!(
        throttled.iter().all(|id| stored.contains(id)),
        "throttled items got in on retry"
    );
    assert!(rejected.iter().all(|id| !stored.contains(id)));
    assert_eq!(
        elastic.with(|c| c.arrivals.len()),
        stored.len(),
        "retries resent only the failed items"
    );
    assert_eq!(status.failed, rejected.len() as u64);
    assert!(
        status.failures[0].contains("mapper_parsing_exception"),
        "{:?}",
        status.failures
    );
    assert_reconciles(&status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_elasticsearch_is_away_documents_spool_and_replay_in_order() {
    let mut elastic = FakeElastic::start().await;
    elastic.stop().await;
    let (sink, task) = mirror::start(settings(&elastic.url())).await.unwrap();
    let before = documents(1_500, 4);
    sink.submit(before.clone()).await;
    let down = wait_for(&sink, |s| s.spooled >= 1_500).await;
    assert!(
        down.down.is_some(),
        "the sink says Elasticsearch is down: {down:?}"
    );
    assert_eq!(down.indexed, 0);

    elastic.restart().await;
    let after = documents(500, 5);
    sink.submit(after.clone()).await;
    let back = wait_for(&sink, |s| s.indexed == 2_000).await;
    assert_eq!(back.spooled, 0);
    assert!(back.down.is_none());
    let status = task.close().await;

    let expected: Vec<String> = ids(&before).into_iter().chain(ids(&after)).collect();
    let mut seen = HashSet::new();
    let first_arrivals: Vec<String> = elastic
        .with(|c| c.arrivals.clone())
        .into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect();
    assert_eq!(
        first_arrivals, expected,
        "the spool is replayed in order, before newer documents"
    );
    assert_eq!(elastic.ids("orderdeck-metrics").len(), 2_000);
    assert_reconciles(&status);
}

async fn wait_for(
    sink: &orderdeck::sinks::SinkHandle,
    condition: impl Fn(&SinkStatus) -> bool,
) -> SinkStatus {
    let mut status = sink.status();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = status.borrow_and_update().clone();
        if condition(&now) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sink never reached the state: {now:?}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), status.changed()).await;
    }
}

/// Resident memory of this process, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024.0
}

/// A measurement, not a check of speed: run it by hand with
/// `cargo test --release --test sink -- --ignored --nocapture`.
/// Feeds the documents of 5,000 orders/s (16 each, as the pipeline makes)
/// into the loopback server for 10 s, with the server down for 60 s, then
/// back for 30 s, printing progress, spool size and memory; asserts only
/// that nothing is lost. The stand-in server runs in this process and
/// holds on to memory per request (not the sink's: a client-only run
/// against an external server stays flat), so read RSS as a difference
/// while the server is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_sink_throughput_and_memory_while_down() {
    const ORDERS_PER_S: usize = 5_000;
    const DOCS_PER_ORDER: usize = 16;
    let mut elastic = FakeElastic::start().await;
    elastic.with(|c| c.discard = true);
    let chosen = settings(&elastic.url());
    let spool = chosen.data_dir.clone();
    let (sink, task) = mirror::start(chosen).await.unwrap();
    let mut status = sink.status();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut submitted = 0usize;
    let phase =
        |name: &str, seconds: u64| println!("-- {name} for {seconds} s at {ORDERS_PER_S} orders/s");
    for (name, seconds, up) in [("up", 10u64, true), ("down", 60, false), ("back", 30, true)] {
        if up {
            elastic.restart().await;
        } else {
            elastic.stop().await;
        }
        phase(name, seconds);
        for tenth in 0..seconds * 10 {
            tick.tick().await;
            sink.submit(documents(ORDERS_PER_S * DOCS_PER_ORDER / 10, tenth as i64))
                .await;
            submitted += ORDERS_PER_S * DOCS_PER_ORDER / 10;
            if tenth % 50 == 49 {
                let s = status.borrow_and_update().clone();
                let on_disk = std::fs::read_dir(spool.join("spool"))
                    .map(|d| {
                        d.flatten()
                            .filter_map(|e| e.metadata().ok())
                            .map(|m| m.len())
                            .sum::<u64>()
                    })
                    .unwrap_or(0);
                println!(
                    "{name} t={:>3}s submitted {submitted} indexed {} spooled {} ({} MiB on disk) queued {} rss {:.0} MiB",
                    (tenth + 1) / 10,
                    s.indexed,
                    s.spooled,
                    on_disk >> 20,
                    s.queued,
                    rss_mib()
                );
            }
        }
    }
    let started = std::time::Instant::now();
    let last = task.close().await;
    println!(
        "closed in {:.1} s: {last:?}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(last.produced, submitted as u64);
    assert_eq!(last.indexed + last.spooled + last.failed, submitted as u64);
    let _ = std::fs::remove_dir_all(spool);
}
