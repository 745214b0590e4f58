//! E-mail notifications against a real SMTP server on loopback (an
//! embedded one, in this test process), driven by the real binary.
#![allow(clippy::unwrap_used)] // a test stops at the first broken expectation

mod common;

use std::{
    net::TcpListener,
    sync::{Arc, Mutex},
};

use common::workdir::Workdir;
use mailin_embedded::{response, Handler, Response, Server, SslConfig};

/// Keeps every message the server accepts, headers and body as sent.
#[derive(Clone, Default)]
struct Inbox {
    received: Arc<Mutex<Vec<String>>>,
    message: Vec<u8>,
}

impl Handler for Inbox {
    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        _to: &[String],
    ) -> Response {
        self.message.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.message.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let message = String::from_utf8_lossy(&self.message).into_owned();
        self.received.lock().unwrap().push(message);
        response::OK
    }
}

/// An SMTP server on a free loopback port, serving until the test ends.
struct SmtpServer {
    port: u16,
    inbox: Inbox,
}

impl SmtpServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let inbox = Inbox::default();
        let mut server = Server::new(inbox.clone());
        server
            .with_name("orderdeck.test")
            .with_ssl(SslConfig::None)
            .unwrap()
            .with_num_threads(4)
            .with_tcp_listener(listener);
        std::thread::spawn(move || {
            if let Err(error) = server.serve() {
                panic!("the SMTP server stopped: {error}");
            }
        });
        Self { port, inbox }
    }

    /// Every message received so far.
    fn received(&self) -> Vec<String> {
        self.inbox.received.lock().unwrap().clone()
    }
}

#[test]
fn shipped_and_finished_orders_are_mailed_to_their_customers() {
    let smtp = SmtpServer::start();
    let dir = Workdir::new();
    let smtp_url = format!("smtp://127.0.0.1:{}", smtp.port);
    let report = dir.run_reported(&[
        "run",
        "--orders",
        "20",
        "--load",
        "high",
        "--time-scale",
        "0",
        "--notify-smtp",
        &smtp_url,
        "--notify-rate",
        "200",
    ]);
    assert_eq!(
        report["notifications"]["sent"], 40,
        "{}",
        report["notifications"]
    );
    assert_eq!(report["notifications"]["failed"], 0);

    let messages = smtp.received();
    assert_eq!(messages.len(), 40, "{messages:#?}");
    let mail = messages.concat();
    // The first 20 rows of the data set, each told twice.
    let csv = std::fs::read_to_string(dir.path("orders.csv")).unwrap();
    for row in csv.lines().skip(1).take(20) {
        let correo = row.rsplit(',').next().unwrap();
        assert!(
            mail.contains(&format!("To: {correo}")),
            "{correo} was mailed"
        );
    }
    assert_eq!(
        mail.matches("State: Shipped (Enviado)").count(),
        20,
        "{mail}"
    );
    assert_eq!(mail.matches("State: Finished (Finalizado)").count(), 20);
}

#[test]
fn an_unreachable_mail_server_is_counted_not_fatal() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = Workdir::new();
    let smtp_url = format!("smtp://127.0.0.1:{port}");
    let report = dir.run_reported(&[
        "run",
        "--orders",
        "10",
        "--load",
        "high",
        "--time-scale",
        "0",
        "--notify-smtp",
        &smtp_url,
        "--notify-on",
        "Finalizado",
        "--notify-rate",
        "200",
    ]);
    assert_eq!(report["orders"]["finished"], 10);
    assert_eq!(
        report["notifications"]["failed"], 10,
        "{}",
        report["notifications"]
    );
    assert_eq!(report["notifications"]["sent"], 0);
}
