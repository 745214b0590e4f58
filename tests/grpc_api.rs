//! The gRPC surface on loopback: the original wire format, validation, the
//! typed API, health, reflection, and Kafka failures as gRPC status codes.
#![allow(clippy::unwrap_used)] // a test stops at the first broken expectation

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use orderdeck::{
    grpc::pb::{
        orders::{order_service_client::OrderServiceClient, MessageRequest},
        v1::{self, orders_client::OrdersClient, PlaceOrderRequest, WatchRequest},
    },
    kafka::BrokerTarget,
};
use tonic::{transport::Channel, Code};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest as ReflectionQuery,
    server_reflection_response::MessageResponse as ReflectionAnswer, ServerReflectionRequest,
};

/// Exactly what the original Python client sent: json.dumps of a CSV row.
const ORIGINAL_JSON: &str = r#"{"nombre_producto": "Reloj inteligente", "precio": 514.2, "pasarela_pago": "Authorize.net", "marca_tarjeta": "MasterCard", "banco": "Banco del Pueblo", "region": "Norteamérica", "direccion": "901 Vía Antigua", "correo": "user309@ficticio.com"}"#;

async fn channel(pipeline: &orderdeck::pipeline::Pipeline) -> Channel {
    Channel::from_shared(endpoint(pipeline))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn send(
    client: &mut OrderServiceClient<Channel>,
    message: String,
) -> Result<String, tonic::Status> {
    client
        .send_message(MessageRequest { message })
        .await
        .map(|r| r.into_inner().response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_client_works_and_bad_orders_get_invalid_argument() {
    let pipeline = start(config(BrokerTarget::Embedded, 0.0)).await;
    let mut client = OrderServiceClient::new(channel(&pipeline).await);

    let response = send(&mut client, ORIGINAL_JSON.to_owned())
        .await
        .expect("accepted");
    let reply: serde_json::Value = serde_json::from_str(&response).unwrap();
    assert_eq!(reply["status"], "accepted");
    let id = reply["order_id"].as_str().unwrap().to_owned();
    assert!(id.parse::<uuid::Uuid>().is_ok(), "{response}");

    let oversized = ORIGINAL_JSON.replace("901 Vía Antigua", &"x".repeat(20_000));
    let cases = [
        ("{not json".to_owned(), "not valid JSON"),
        (
            r#"{"nombre_producto": "Cámara", "precio": 3}"#.to_owned(),
            "missing field `pasarela_pago`",
        ),
        (
            ORIGINAL_JSON.replace("514.2", "-5"),
            "`precio` must not be negative",
        ),
        (
            ORIGINAL_JSON.replace("514.2", "\"gratis\""),
            "invalid type: string",
        ),
        (ORIGINAL_JSON.replace("514.2", "1e999"), "not valid JSON"),
        (
            ORIGINAL_JSON.replace("MasterCard", ""),
            "`marca_tarjeta` must not be empty",
        ),
        (oversized, "above the limit of 16384 bytes"),
    ];
    for (message, reason) in cases {
        let status = send(&mut client, message.clone())
            .await
            .expect_err(&message[..40.min(message.len())]);
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().contains(reason),
            "{:?} lacks {reason:?}",
            status.message()
        );
    }
    assert!(
        eventually(Duration::from_secs(20), || pipeline
            .snapshot()
            .counts
            .finished
            == 1)
        .await
    );
    let counts = pipeline.snapshot().counts;
    assert_eq!((counts.acknowledged, counts.rejected), (1, 7));
    pipeline.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn place_order_and_watch_it_to_finished() {
    let pipeline = start(config(BrokerTarget::Embedded, 0.001)).await;
    let mut typed = OrdersClient::new(channel(&pipeline).await);
    let id = uuid::Uuid::new_v4().to_string();
    // Watch first, by the id we are about to use as idempotency key.
    let mut watch = typed
        .watch_transitions(WatchRequest {
            order_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let order = v1::Order {
        product: "Cámara".into(),
        price: 10.0,
        payment_gateway: "PayPal".into(),
        card_brand: "Visa".into(),
        bank: "Banco Ficticio".into(),
        region: "Europa".into(),
        address: "1 Calle".into(),
        email: "a@b.c".into(),
    };
    let placed = typed
        .place_order(PlaceOrderRequest {
            order: Some(order.clone()),
            order_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(placed.order_id, id);
    let mut seen = Vec::new();
    while let Some(t) = tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("transitions arrive")
    {
        let t = t.unwrap();
        assert_eq!(t.order_id, id);
        seen.push((t.from_state(), t.to_state()));
    }
    use v1::State::*;
    assert_eq!(
        seen,
        [
            (Unspecified, Processing),
            (Processing, Preparing),
            (Preparing, Shipped),
            (Shipped, Delivered),
            (Delivered, Finished)
        ],
        "the stream ends after Finished"
    );

    let missing = typed
        .place_order(PlaceOrderRequest {
            order: None,
            order_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    let bad_id = typed
        .place_order(PlaceOrderRequest {
            order: Some(order.clone()),
            order_id: "42".into(),
        })
        .await
        .unwrap_err();
    assert!(
        bad_id.message().contains("not a UUID"),
        "{}",
        bad_id.message()
    );
    let nan = typed
        .place_order(PlaceOrderRequest {
            order: Some(v1::Order {
                price: f64::NAN,
                ..order
            }),
            order_id: String::new(),
        })
        .await
        .unwrap_err();
    assert!(nan.message().contains("finite"), "{}", nan.message());
    pipeline.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_describe_the_services() {
    let pipeline = start(config(BrokerTarget::Embedded, 0.0)).await;
    let channel = channel(&pipeline).await;
    let mut health = HealthClient::new(channel.clone());
    for service in ["orders.OrderService", "orderdeck.v1.Orders"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service}");
    }
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(ReflectionQuery::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(ReflectionAnswer::ListServicesResponse(list)) =
        answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for wanted in [
        "orders.OrderService",
        "orderdeck.v1.Orders",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} missing from {names:?}"
        );
    }
    pipeline.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_down_is_unavailable_and_overload_is_resource_exhausted() {
    let cluster = cluster_with_topics(PARTITIONS);
    let mut settings = config(BrokerTarget::External(cluster.bootstrap_servers()), 0.0);
    settings.kafka.delivery_timeout = Duration::from_secs(2);
    settings.limits.max_in_flight = 1;
    let pipeline = start(settings).await;
    let mut client = OrderServiceClient::new(channel(&pipeline).await);
    send(&mut client, ORIGINAL_JSON.to_owned())
        .await
        .expect("accepted while Kafka is up");

    // A slow broker holds one order in flight; a second one at the same time is refused.
    cluster
        .broker_round_trip_time(1, Duration::from_millis(800))
        .unwrap();
    let mut second = client.clone();
    let slow = tokio::spawn(async move { send(&mut second, ORIGINAL_JSON.to_owned()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = send(&mut client, ORIGINAL_JSON.to_owned())
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::ResourceExhausted,
        "{}",
        refused.message()
    );
    slow.await.unwrap().expect("the slow order still lands");
    cluster.broker_round_trip_time(1, Duration::ZERO).unwrap();

    cluster.broker_down(1).unwrap();
    let started = std::time::Instant::now();
    let down = send(&mut client, ORIGINAL_JSON.to_owned())
        .await
        .unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{}", down.message());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered within the delivery timeout, not a hang"
    );
    cluster.broker_up(1).unwrap();
    assert_eq!(pipeline.snapshot().counts.acknowledged, 2);
    pipeline.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_enforced_on_the_typed_api_and_on_slow_watchers() {
    let mut settings = config(BrokerTarget::Embedded, 0.0);
    settings.transition_buffer = 16;
    let pipeline = start(settings).await;
    let mut typed = OrdersClient::new(channel(&pipeline).await);

    let mut huge: v1::Order = (&seed_orders()[0]).into();
    huge.address = "x".repeat(20_000);
    let refused = typed
        .place_order(PlaceOrderRequest {
            order: Some(huge),
            order_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("above the limit of 16384 bytes"),
        "{}",
        refused.message()
    );

    // A watcher that reads nothing while 2,000 orders pass (10,000
    // transitions, more than its buffers and HTTP/2 window hold) falls more
    // than the 16-transition feed behind: it is told so, and its stream ends.
    // Its connection keeps HTTP/2's standard 64 KiB windows (hyper's client
    // default of 2–5 MiB would hold all 10,000, and nothing would lag).
    let small_windows = Channel::from_shared(endpoint(&pipeline))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut watch = OrdersClient::new(small_windows)
        .watch_transitions(WatchRequest {
            order_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    send_orders_until_finished(&pipeline, endpoint(&pipeline), 8, 2000).await;
    let lost = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(item) = watch.next().await {
            if let Err(status) = item {
                return Some(status);
            }
        }
        None
    })
    .await
    .expect("the stream ends rather than hangs");
    let lost = lost.expect("the slow watcher is told it missed transitions");
    assert_eq!(lost.code(), Code::DataLoss);
    assert!(lost.message().contains("fell"), "{}", lost.message());
    pipeline.shutdown().await;
}

/// Open watchers (all orders, and one for an id that never comes) must not
/// keep a stop waiting: they end with UNAVAILABLE within the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_watch_streams_and_does_not_hang() {
    let pipeline = start(config(BrokerTarget::Embedded, 0.0)).await;
    let mut typed = OrdersClient::new(channel(&pipeline).await);
    let mut everything = typed
        .watch_transitions(WatchRequest {
            order_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut never = typed
        .watch_transitions(WatchRequest {
            order_id: uuid::Uuid::new_v4().to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(15), pipeline.shutdown())
        .await
        .expect("shutdown finished with watchers open");
    assert!(started.elapsed() < Duration::from_secs(10));
    for stream in [&mut everything, &mut never] {
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match stream.next().await {
                    Some(Ok(_)) => continue,
                    Some(Err(status)) => return Some(status.code()),
                    None => return None,
                }
            }
        })
        .await
        .expect("the stream ended");
        assert_eq!(ended, Some(Code::Unavailable));
    }
}

/// This process's connected TCP sockets: (local port, peer port, whether
/// TCP_NODELAY is set). Both ends of a loopback connection live here.
fn tcp_sockets() -> Vec<(u16, u16, bool)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let Ok(fd) = entry.unwrap().file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: getsockname/getsockopt only write into the buffers given;
        // a descriptor that is not a TCP socket makes them fail, and is skipped.
        unsafe {
            let mut address: libc::sockaddr_in = std::mem::zeroed();
            let mut length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            if libc::getsockname(fd, (&raw mut address).cast(), &mut length) != 0
                || i32::from(address.sin_family) != libc::AF_INET
            {
                continue;
            }
            let mut peer: libc::sockaddr_in = std::mem::zeroed();
            let mut peer_length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            if libc::getpeername(fd, (&raw mut peer).cast(), &mut peer_length) != 0 {
                continue; // the listener itself
            }
            let mut nodelay: libc::c_int = 0;
            let mut size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            if libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&raw mut nodelay).cast(),
                &mut size,
            ) == 0
            {
                found.push((
                    u16::from_be(address.sin_port),
                    u16::from_be(peer.sin_port),
                    nodelay != 0,
                ));
            }
        }
    }
    found
}

/// Small replies are not held back by Nagle's algorithm waiting for the
/// client's delayed ACK (a 40 ms p99 before): every connection the server
/// accepts has TCP_NODELAY, as has the client's side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_connections_have_tcp_nodelay() {
    let pipeline = start(config(BrokerTarget::Embedded, 0.0)).await;
    let port = pipeline.grpc_addr().unwrap().port();
    let mut client = OrderServiceClient::new(channel(&pipeline).await);
    send(&mut client, ORIGINAL_JSON.to_owned()).await.unwrap();
    let sockets = tcp_sockets();
    let accepted: Vec<_> = sockets.iter().filter(|s| s.0 == port).collect();
    let dialled: Vec<_> = sockets.iter().filter(|s| s.1 == port).collect();
    assert!(!accepted.is_empty() && !dialled.is_empty(), "{sockets:?}");
    assert!(
        accepted
            .iter()
            .chain(&dialled)
            .all(|(_, _, nodelay)| *nodelay),
        "sockets without TCP_NODELAY (local, peer, nodelay): {sockets:?}"
    );
    pipeline.shutdown().await;
}
