//! A loopback stand-in for Elasticsearch that accepts every bulk request
//! and keeps nothing, so the sink scenario measures orderdeck's side: the
//! production client renders, batches and sends real `_bulk` requests.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use axum::{
    body::Bytes,
    extract::State,
    response::IntoResponse,
    routing::{get, post, put},
    Json, Router,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub struct ElasticStandIn {
    pub url: String,
    documents: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl ElasticStandIn {
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let documents = Arc::new(AtomicU64::new(0));
        let app = Router::new()
            .route("/", get(info).head(info))
            .route("/_cluster/health", get(health))
            .route("/_index_template/{name}", put(acknowledged))
            .route("/_bulk", post(bulk).put(bulk))
            .with_state(Arc::clone(&documents));
        let stop = CancellationToken::new();
        let stopped = stop.clone().cancelled_owned();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await;
        });
        Ok(Self {
            url,
            documents,
            stop,
        })
    }

    /// Documents accepted so far.
    pub fn documents(&self) -> u64 {
        self.documents.load(Ordering::Relaxed)
    }
}

impl Drop for ElasticStandIn {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

const PRODUCT: [(&str, &str); 1] = [("X-Elastic-Product", "Elasticsearch")];

async fn info() -> impl IntoResponse {
    (
        PRODUCT,
        Json(
            json!({"name": "orderdeck-bench", "version": {"number": "9.1.5"}, "tagline": "You Know, for Search"}),
        ),
    )
}

async fn health() -> impl IntoResponse {
    (PRODUCT, Json(json!({"status": "green"})))
}

async fn acknowledged() -> impl IntoResponse {
    (PRODUCT, Json(json!({"acknowledged": true})))
}

/// Every operation is an action line plus a source line: one item each.
async fn bulk(State(documents): State<Arc<AtomicU64>>, body: Bytes) -> impl IntoResponse {
    let lines = body
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .count();
    let operations = lines / 2;
    documents.fetch_add(operations as u64, Ordering::Relaxed);
    let items = vec![json!({"index": {"status": 201, "result": "created"}}); operations];
    (
        PRODUCT,
        Json(json!({"took": 1, "errors": false, "items": items})),
    )
}
