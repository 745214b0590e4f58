//! The gRPC front door: the original `orders.OrderService` (JSON in a
//! string), orderdeck's typed `orderdeck.v1.Orders`, health and reflection.

pub mod ingest;
pub mod legacy;
pub mod tls;
pub mod typed;

use std::{net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, sync::broadcast, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

pub use ingest::{Acknowledgements, Ingest, ServerLimits};

use crate::order::Transition;

/// Code generated from `proto/`.
pub mod pb {
    pub mod orders {
        tonic::include_proto!("orders");
    }
    pub mod v1 {
        tonic::include_proto!("orderdeck.v1");
    }
    /// Lets reflection describe both services without the proto files.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("orderdeck_descriptor");
}

use pb::{orders::order_service_server::OrderServiceServer, v1::orders_server::OrdersServer};

/// How a client reaches the server: its URL, and TLS settings if it speaks TLS.
#[derive(Clone, Debug)]
pub struct Dial {
    pub url: String,
    pub tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Dial {
    pub fn endpoint(&self) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
        // tonic's default, stated: requests go out at once, not after an ACK.
        let endpoint = tonic::transport::Endpoint::from_shared(self.url.clone())?.tcp_nodelay(true);
        match &self.tls {
            Some(tls) => endpoint.tls_config(tls.clone()),
            None => Ok(endpoint),
        }
    }
}

/// Accepted connections with `TCP_NODELAY`: a small reply must not wait
/// for the client's delayed ACK (tonic ignores its own default when given
/// a listener, and that wait put 40 ms in the p99).
pub fn without_nagle(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// A plain-text server's URL.
impl From<String> for Dial {
    fn from(url: String) -> Self {
        Self { url, tls: None }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("invalid TLS setup: {0}")]
    Tls(#[from] tonic::transport::Error),
    #[error(transparent)]
    TlsFiles(#[from] tls::TlsError),
}

/// A running server; `shutdown` stops it gracefully (in-flight calls finish).
pub struct GrpcServer {
    addr: SocketAddr,
    tls: bool,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl GrpcServer {
    pub async fn start(
        listen: SocketAddr,
        ingest: Arc<Ingest>,
        transitions: broadcast::Sender<Transition>,
        tls: Option<&tls::TlsSettings>,
    ) -> Result<Self, GrpcError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| GrpcError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| GrpcError::Bind {
            addr: listen,
            source,
        })?;

        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<OrderServiceServer<legacy::LegacyService>>()
            .await;
        health_reporter
            .set_serving::<OrdersServer<typed::TypedService>>()
            .await;
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        // v1 for current grpcurl, v1alpha for older tools such as ghz.
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        // Oversized orders must reach our own check (INVALID_ARGUMENT with the
        // limit); tonic's cap only guards against absurd sizes.
        let decode_cap = ingest
            .limits()
            .max_message_bytes
            .saturating_mul(4)
            .max(4 << 20);
        let legacy = OrderServiceServer::new(legacy::LegacyService::new(Arc::clone(&ingest)))
            .max_decoding_message_size(decode_cap);
        let shutdown = CancellationToken::new();
        let typed = OrdersServer::new(typed::TypedService::new(
            ingest,
            transitions,
            shutdown.clone(),
        ))
        .max_decoding_message_size(decode_cap);

        let stop = shutdown.clone();
        let mut builder = Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls.server())?;
        }
        let task = tokio::spawn(
            builder
                .add_service(health)
                .add_service(reflection_v1)
                .add_service(reflection_v1alpha)
                .add_service(legacy)
                .add_service(typed)
                .serve_with_incoming_shutdown(without_nagle(listener), async move {
                    stop.cancelled().await
                }),
        );
        tracing::info!(%addr, tls = tls.is_some(), "gRPC server listening");
        Ok(Self {
            addr,
            tls: tls.is_some(),
            shutdown,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL clients dial: https when the server speaks TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting calls and ends open watch streams (with UNAVAILABLE);
    /// calls still open after `limit` are cut.
    pub async fn shutdown(mut self, limit: std::time::Duration) {
        self.shutdown.cancel();
        match tokio::time::timeout(limit, &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::error!(%error, "gRPC server stopped with an error"),
            Ok(Err(error)) => tracing::error!(%error, "gRPC server task failed"),
            Err(_) => {
                tracing::warn!(?limit, "gRPC calls still open at shutdown were cut");
                self.task.abort();
            }
        }
    }
}
