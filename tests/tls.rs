//! The gRPC server over TLS, with certificates made in the test.
#![allow(clippy::unwrap_used)] // a test stops at the first broken expectation

mod common;

use std::time::Duration;

use common::*;
use orderdeck::{
    grpc::{
        pb::v1::{orders_client::OrdersClient, PlaceOrderRequest},
        tls::TlsFiles,
        Dial,
    },
    kafka::BrokerTarget,
};

/// A self-signed certificate for `localhost`, written as PEM files.
fn certificate(dir: &std::path::Path, name: &str) -> TlsFiles {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    TlsFiles {
        cert: cert_path,
        key: key_path,
        ca: None,
        domain: "localhost".to_owned(),
    }
}

async fn place_one(dial: &Dial) -> Result<(), String> {
    let channel = dial.endpoint().map_err(|e| e.to_string())?;
    let channel = tokio::time::timeout(Duration::from_secs(10), channel.connect())
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e:?}"))?;
    OrdersClient::new(channel)
        .place_order(PlaceOrderRequest {
            order: Some((&seed_orders()[0]).into()),
            order_id: String::new(),
        })
        .await
        .map(|_| ())
        .map_err(|status| format!("{status:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_flow_over_tls_and_plain_text_or_untrusted_clients_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let served = certificate(dir.path(), "server");
    let stranger = certificate(dir.path(), "stranger");
    let mut config = config(BrokerTarget::Embedded, 0.0);
    config.tls = Some(served);
    let pipeline = start(config).await;
    let dial = pipeline.dial().unwrap();
    assert!(dial.url.starts_with("https://"), "{}", dial.url);

    // The simulated clients trust the server's certificate: 50 orders finish.
    send_orders_until_finished(&pipeline, dial.clone(), 4, 50).await;

    // Plain text to a TLS port: refused.
    let plain = Dial::from(dial.url.replace("https://", "http://"));
    assert!(place_one(&plain).await.is_err(), "plain text must not work");
    // A client trusting some other certificate: the handshake fails.
    let untrusted = Dial {
        url: dial.url.clone(),
        tls: Some(stranger.load().unwrap().client()),
    };
    let refused = place_one(&untrusted).await.unwrap_err();
    assert!(
        refused.to_lowercase().contains("certificate") || refused.contains("connect"),
        "{refused}"
    );
    // And a trusting one still gets through.
    place_one(&dial).await.unwrap();
    pipeline.shutdown().await;
}

#[test]
fn a_missing_key_file_is_named_and_fails_the_run() {
    let dir = common::workdir::Workdir::new();
    let files = certificate(&dir.path(""), "server");
    let output = dir.run(&[
        "run",
        "--orders",
        "5",
        "--time-scale",
        "0",
        "--tls-cert",
        files.cert.to_str().unwrap(),
        "--tls-key",
        "missing.key",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = common::workdir::text(&output.stderr);
    assert!(stderr.contains("TLS key missing.key"), "{stderr}");
}
