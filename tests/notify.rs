//! E-mail notifications against a real SMTP server on loopback (Python's
//! aiosmtpd, which `.ci/run` installs), driven by the real binary.
#![allow(clippy::unwrap_used)] // a test stops at the first broken expectation

mod common;

use std::{
    io::Read,
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::workdir::Workdir;

struct SmtpServer {
    child: Child,
    port: u16,
}

impl SmtpServer {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .env("PYTHONUNBUFFERED", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd (pip install aiosmtpd)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, port }
    }

    /// Everything the server printed: one block per message it received.
    fn received(mut self) -> String {
        self.child.kill().unwrap();
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let _ = self.child.wait();
        out
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

    let mail = smtp.received();
    let messages = mail
        .matches("---------- MESSAGE FOLLOWS ----------")
        .count();
    assert_eq!(messages, 40, "{mail}");
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
