//! The embedded default end to end: a run writes its documents to the
//! spool; `orderdeck export` replays them into Elasticsearch (complete,
//! resumable, idempotent) and imports the Kibana dashboard. Plus the real
//! stack's compose file.
#![allow(clippy::unwrap_used)] // a test stops at the first broken expectation

mod common;

use std::{collections::HashSet, path::Path, process::Output};

use common::{
    elastic::{spooled, FakeElastic},
    workdir::{assert_exit, text, Workdir},
};
use serde_json::Value;

/// Asserts success and returns what the command printed.
fn ok(output: &Output) -> String {
    assert_exit(output, 0);
    text(&output.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spooled_run_exports_completely_and_idempotently() {
    let dir = Workdir::new();
    ok(&dir.run(&[
        "run",
        "--load",
        "high",
        "--time-scale",
        "0",
        "--orders",
        "200",
        "--report",
        "report.json",
    ]));
    let report = dir.report();
    let (ids, operations) = spooled(&dir.state("data"));
    assert_eq!(
        report["sink"]["read"], operations as u64,
        "{}",
        report["sink"]
    );
    assert_eq!(report["sink"]["spooled"], operations as u64);
    assert_eq!(report["sink"]["indexed"], 0);
    // 200 orders: 1 order document each, and 11 metric documents each
    // (send, end-to-end, 5 transitions, 4 times in state), plus throughput.
    let orders = ids
        .iter()
        .filter(|(index, _)| index == "orderdeck-orders")
        .count();
    let metrics = ids
        .iter()
        .filter(|(index, id)| index == "orderdeck-metrics" && !id.starts_with("throughput"))
        .count();
    assert_eq!((orders, metrics), (200, 200 * 11));

    let mut elastic = FakeElastic::start().await;
    // Elasticsearch away: the export says so and exits non-zero.
    elastic.stop().await;
    let refused = dir.run(&["export", "--es", &elastic.url()]);
    assert_eq!(
        refused.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unreachable"));
    elastic.restart().await;

    let stdout = ok(&dir.run(&["export", "--es", &elastic.url()]));
    assert!(
        stdout.contains(&format!("exported {operations} documents")),
        "{stdout}"
    );
    let stored = |elastic: &FakeElastic| -> HashSet<(String, String)> {
        elastic.with(|c| c.documents.keys().cloned().collect())
    };
    assert_eq!(
        stored(&elastic),
        ids,
        "every spooled document is in Elasticsearch"
    );
    // Each order document once per state, each metric document once.
    assert_eq!(elastic.with(|c| c.arrivals.len()), operations);

    // Again: the cursor says everything was sent.
    let stdout = ok(&dir.run(&["export", "--es", &elastic.url()]));
    assert!(stdout.contains("exported 0 documents"), "{stdout}");
    // From the start: every document again, the same set.
    let before = elastic.with(|c| c.documents.clone());
    ok(&dir.run(&["export", "--es", &elastic.url(), "--restart"]));
    assert_eq!(
        elastic.with(|c| c.documents.clone()),
        before,
        "a replay changes nothing"
    );
    let orders = 200 * 5;
    assert_eq!(
        elastic.with(|c| c.conflicts),
        orders,
        "older order states are refused as versions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kibana_dashboard_is_imported_with_overwrite() {
    let kibana = FakeElastic::start().await;
    let dir = Workdir::new();
    let stdout = ok(&dir.run(&["export", "--kibana", &kibana.url()]));
    assert!(
        stdout.contains("/app/dashboards#/view/orderdeck-dashboard"),
        "{stdout}"
    );
    let imports = kibana.with(|c| c.kibana_imports.clone());
    assert_eq!(imports.len(), 1);
    let (query, body) = &imports[0];
    assert_eq!(query, "overwrite=true");
    let body = String::from_utf8_lossy(body);
    assert!(
        body.contains("filename=\"orderdeck.ndjson\""),
        "sent as a file upload"
    );
    let assets = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/kibana/orderdeck.ndjson"),
    )
    .unwrap();
    for line in assets.lines() {
        assert!(body.contains(line), "the upload carries every saved object");
    }
}

#[test]
fn compose_runs_the_stack_the_readme_documents() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let compose: Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("compose.yaml")).unwrap()).unwrap();
    let services = &compose["services"];
    for (service, port) in [
        ("kafka", "127.0.0.1:9092:9092"),
        ("elasticsearch", "127.0.0.1:9200:9200"),
        ("kibana", "127.0.0.1:5601:5601"),
        ("kafka-ui", "127.0.0.1:8080:8080"),
    ] {
        let ports: Vec<&str> = services[service]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(ports, [port], "{service} publishes {port} on loopback only");
    }
    for service in ["kafka", "elasticsearch", "kibana"] {
        assert!(
            services[service]["healthcheck"]["test"].is_array(),
            "{service} has a health check"
        );
    }
    let kafka = &services["kafka"]["environment"];
    assert!(kafka["KAFKA_ADVERTISED_LISTENERS"]
        .as_str()
        .unwrap()
        .contains("PLAINTEXT://localhost:9092"));
    // Kafka's log lives in the named volume, not in the container.
    let log_dirs = kafka["KAFKA_LOG_DIRS"].as_str().unwrap();
    let volume_target = |service: &str, volume: &str| -> String {
        let volumes = services[service]["volumes"].as_array().unwrap();
        let mount = volumes
            .iter()
            .map(|v| v.as_str().unwrap())
            .find(|v| v.starts_with(&format!("{volume}:")))
            .unwrap_or_else(|| panic!("{service} mounts {volume}"));
        mount.split(':').nth(1).unwrap().to_owned()
    };
    assert_eq!(volume_target("kafka", "kafka-data"), log_dirs);
    assert!(compose["volumes"]
        .as_object()
        .unwrap()
        .contains_key("kafka-data"));
    // A single node: every internal topic with one replica, one in sync.
    for internal in [
        "OFFSETS_TOPIC_REPLICATION_FACTOR",
        "TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "TRANSACTION_STATE_LOG_MIN_ISR",
        "SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        "SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
    ] {
        assert_eq!(kafka[format!("KAFKA_{internal}")], 1, "{internal}");
    }
    let ui = services["kafka-ui"]["image"].as_str().unwrap();
    assert!(
        ui.starts_with("ghcr.io/kafbat/kafka-ui:v"),
        "the maintained Kafka UI, pinned: {ui}"
    );
    let image = |s: &str| {
        services[s]["image"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        image("elasticsearch"),
        image("kibana"),
        "one Elastic version"
    );
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let major = image("elasticsearch").split('.').next().unwrap().to_owned();
    assert!(
        manifest.contains(&format!("elasticsearch = {{ version = \"={major}.")),
        "the client crate matches the server's major version"
    );
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for command in [
        "docker compose up -d",
        "--brokers localhost:9092 --es http://localhost:9200",
        "export --kibana http://localhost:5601",
    ] {
        assert!(readme.contains(command), "README shows `{command}`");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tui_export_key_imports_the_dashboard_and_says_so() {
    use orderdeck::{
        clock::SimClock,
        load::LoadLevel,
        session::{self, Command, Phase, SessionSettings},
        sinks::elastic::ElasticConfig,
    };
    let kibana = FakeElastic::start().await;
    let handle = session::spawn(SessionSettings {
        pipeline: common::config(orderdeck::kafka::BrokerTarget::Embedded, 0.0),
        load: LoadLevel::Low,
        preset: LoadLevel::Low.preset(),
        orders: common::seed_orders(),
        clock: SimClock::new(orderdeck::clock::TimeScale::new(0.0).unwrap()),
        kibana: Some((kibana.url(), ElasticConfig::from_env(kibana.url(), None))),
        drain_limit: std::time::Duration::from_secs(60),
        audit_at_stop: false,
    });
    let mut status = handle.status.clone();
    let running = status
        .wait_for(|s| s.phase == Phase::Running)
        .await
        .unwrap()
        .clone();
    assert_eq!(running.phase, Phase::Running);
    handle
        .commands
        .send(Command::ImportDashboard)
        .await
        .unwrap();
    let done = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        status.wait_for(|s| {
            s.notice
                .as_deref()
                .is_some_and(|n| n.starts_with("Kibana:"))
        }),
    )
    .await
    .expect("the export finishes")
    .unwrap()
    .clone();
    assert_eq!(
        done.notice.as_deref(),
        Some("Kibana: imported 1 saved objects (dashboard “orderdeck”)")
    );
    assert_eq!(kibana.with(|c| c.kibana_imports.len()), 1);
    handle.commands.send(Command::Shutdown).await.unwrap();
    handle.finished().await;
}
