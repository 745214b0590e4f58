//! A stand-in for Elasticsearch (which cannot be installed here): a real
//! HTTP server on loopback answering the endpoints the sink uses — `/`,
//! `_index_template`, `_cluster/health`, `_bulk` — the way Elasticsearch
//! does, with faults on demand. The code under test is the production client.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::{get, post, put},
    Json, Router,
};
use serde_json::{json, Value};
use tokio::{net::TcpListener, task::JoinHandle};

#[derive(Default)]
pub struct Cluster {
    /// (index, id) → source: what a search would find.
    pub documents: HashMap<(String, String), Value>,
    /// Ids in the order they were indexed, overwrites included.
    pub arrivals: Vec<String>,
    /// When the first and the latest document got in.
    pub first_arrival: Option<std::time::Instant>,
    pub last_arrival: Option<std::time::Instant>,
    /// (index, id) → the external version stored, for versioned writes.
    pub versions: HashMap<(String, String), u64>,
    /// Versioned writes answered 409 (the same or a newer version is there).
    pub conflicts: usize,
    /// Every nth `_bulk` request is answered 429 whole.
    pub throttle_every_nth_request: Option<usize>,
    /// Every nth item (counted over all requests) is answered 429.
    pub throttle_every_nth_item: Option<usize>,
    pub items_seen: usize,
    /// Every `_bulk` request is answered with this status (401 after a
    /// credential change, say) until cleared.
    pub refuse_with: Option<u16>,
    /// Bodies larger than this are answered 413.
    pub max_body_bytes: Option<usize>,
    pub too_large_answers: usize,
    pub templates: Vec<String>,
    pub bulk_requests: usize,
    /// Status codes for the next whole `_bulk` requests.
    pub fail_requests: VecDeque<u16>,
    /// Ids answered 429 the first time they come.
    pub throttle_once: HashSet<String>,
    /// Ids refused for good with a mapping error.
    pub reject: HashSet<String>,
    /// Count documents without keeping them (for long measurements).
    pub discard: bool,
    pub received: usize,
    /// Kibana: the saved-objects import requests received (query, body).
    pub kibana_imports: Vec<(String, Vec<u8>)>,
}

pub struct FakeElastic {
    pub addr: SocketAddr,
    pub cluster: Arc<Mutex<Cluster>>,
    server: Option<JoinHandle<()>>,
}

impl FakeElastic {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cluster = Arc::new(Mutex::new(Cluster::default()));
        let server = Some(serve(listener, Arc::clone(&cluster)));
        Self {
            addr,
            cluster,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops answering: connections are refused until `restart`.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    pub async fn restart(&mut self) {
        if self.server.is_some() {
            return;
        }
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.server = Some(serve(listener, Arc::clone(&self.cluster)));
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Cluster) -> T) -> T {
        f(&mut self.cluster.lock().unwrap())
    }

    /// Documents indexed per second between the first and the latest.
    pub fn indexing_rate(&self) -> f64 {
        self.with(|c| match (c.first_arrival, c.last_arrival) {
            (Some(first), Some(last)) if last > first => {
                c.arrivals.len() as f64 / (last - first).as_secs_f64()
            }
            _ => 0.0,
        })
    }

    /// Ids stored in `index`.
    pub fn ids(&self, index: &str) -> HashSet<String> {
        self.with(|c| {
            c.documents
                .keys()
                .filter(|(i, _)| i == index)
                .map(|(_, id)| id.clone())
                .collect()
        })
    }
}

type Shared = Arc<Mutex<Cluster>>;

fn serve(listener: TcpListener, cluster: Shared) -> JoinHandle<()> {
    let app = Router::new()
        .route("/", get(info).head(info))
        .route("/_cluster/health", get(health))
        .route("/_index_template/{name}", put(template))
        .route("/_bulk", post(bulk).put(bulk))
        .route("/api/saved_objects/_import", post(kibana_import))
        .with_state(cluster);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

fn product_headers() -> [(&'static str, &'static str); 1] {
    [("X-Elastic-Product", "Elasticsearch")]
}

async fn info() -> impl IntoResponse {
    (
        product_headers(),
        Json(
            json!({"name": "fake", "cluster_name": "orderdeck-test", "version": {"number": "9.1.5"}, "tagline": "You Know, for Search"}),
        ),
    )
}

async fn health() -> impl IntoResponse {
    (
        product_headers(),
        Json(json!({"cluster_name": "orderdeck-test", "status": "green"})),
    )
}

async fn template(
    State(cluster): State<Shared>,
    Path(name): Path<String>,
    body: Bytes,
) -> impl IntoResponse {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if parsed["index_patterns"].is_null() || parsed["template"]["mappings"].is_null() {
        return (
            StatusCode::BAD_REQUEST,
            product_headers(),
            Json(json!({"error": "template without mappings"})),
        );
    }
    cluster.lock().unwrap().templates.push(name);
    (
        StatusCode::OK,
        product_headers(),
        Json(json!({"acknowledged": true})),
    )
}

async fn bulk(State(cluster): State<Shared>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let mut cluster = cluster.lock().unwrap();
    cluster.bulk_requests += 1;
    let too_large = cluster.max_body_bytes.is_some_and(|max| body.len() > max);
    let throttled = cluster
        .throttle_every_nth_request
        .is_some_and(|n| cluster.bulk_requests % n == 0);
    let injected = if too_large {
        cluster.too_large_answers += 1;
        Some(413)
    } else if throttled {
        Some(429)
    } else {
        cluster.refuse_with
    };
    if let Some(status) = injected.or_else(|| cluster.fail_requests.pop_front()) {
        let code = StatusCode::from_u16(status).unwrap();
        return (
            code,
            product_headers(),
            Json(
                json!({"error": {"type": "injected", "reason": "injected fault"}, "status": status}),
            ),
        );
    }
    assert!(
        headers
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().contains("x-ndjson")
                || v.to_str().unwrap().contains("json")),
        "bulk bodies are NDJSON"
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let mut items = Vec::new();
    let mut errors = false;
    while let Some(action) = lines.next() {
        let action: Value = serde_json::from_str(action).expect("action line is JSON");
        let source: Value =
            serde_json::from_str(lines.next().expect("a source follows each action"))
                .expect("source is JSON");
        let meta = &action["index"];
        let index = meta["_index"].as_str().expect("_index").to_owned();
        let id = meta["_id"].as_str().expect("_id").to_owned();
        let version = meta["version"].as_u64();
        assert!(
            version.is_none() || meta["version_type"] == "external",
            "versions are external"
        );
        cluster.items_seen += 1;
        let item_throttled = cluster
            .throttle_every_nth_item
            .is_some_and(|n| cluster.items_seen % n == 0);
        let key = (index.clone(), id.clone());
        let stale =
            version.is_some_and(|v| cluster.versions.get(&key).is_some_and(|had| *had >= v));
        let item = if item_throttled {
            errors = true;
            json!({"_index": index, "_id": id, "status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "rejected execution (queue capacity 200)"}})
        } else if stale {
            errors = true;
            cluster.conflicts += 1;
            json!({"_index": index, "_id": id, "status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "version conflict, current version is higher or equal"}})
        } else if cluster.reject.contains(&id) {
            errors = true;
            json!({"_index": index, "_id": id, "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [value]"}})
        } else if cluster.throttle_once.remove(&id) {
            errors = true;
            json!({"_index": index, "_id": id, "status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}})
        } else {
            if let Some(version) = version {
                cluster.versions.insert(key, version);
            }
            let created = cluster
                .documents
                .insert((index.clone(), id.clone()), source)
                .is_none();
            cluster.arrivals.push(id.clone());
            let now = std::time::Instant::now();
            cluster.first_arrival.get_or_insert(now);
            cluster.last_arrival = Some(now);
            json!({"_index": index, "_id": id, "status": if created { 201 } else { 200 }, "result": if created { "created" } else { "updated" }})
        };
        items.push(json!({ "index": item }));
    }
    (
        StatusCode::OK,
        product_headers(),
        Json(json!({"took": 1, "errors": errors, "items": items})),
    )
}

async fn kibana_import(
    State(cluster): State<Shared>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    if headers.get("kbn-xsrf").is_none() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "Request must contain a kbn-xsrf header."})),
        );
    }
    cluster
        .lock()
        .unwrap()
        .kibana_imports
        .push((query.unwrap_or_default(), body.to_vec()));
    (
        StatusCode::OK,
        Json(json!({"success": true, "successCount": 1})),
    )
}

/// Every (index, id) in the spool under `data_dir` (a directory per
/// process), and how many operations it holds.
pub fn spooled(data_dir: &std::path::Path) -> (HashSet<(String, String)>, usize) {
    let mut ids = HashSet::new();
    let mut operations = 0;
    for process in std::fs::read_dir(data_dir.join("spool")).unwrap() {
        for entry in std::fs::read_dir(process.unwrap().path()).unwrap() {
            let path = entry.unwrap().path();
            let segment = path.file_name().unwrap().to_str().unwrap().to_owned();
            if !segment.ends_with(".ndjson") || segment.starts_with("dead-letter") {
                continue;
            }
            for (n, line) in std::fs::read_to_string(path).unwrap().lines().enumerate() {
                if n % 2 == 0 {
                    let action: Value = serde_json::from_str(line).unwrap();
                    let meta = &action["index"];
                    ids.insert((
                        meta["_index"].as_str().unwrap().into(),
                        meta["_id"].as_str().unwrap().into(),
                    ));
                    operations += 1;
                }
            }
        }
    }
    (ids, operations)
}
