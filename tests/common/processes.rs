//! orderdeck processes started side by side in one scratch directory, each
//! with its report, log and stderr kept under its name.

use std::{
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::workdir::{send_signal, text, Workdir};

pub struct Process {
    pub name: &'static str,
    pub child: Child,
}

impl Process {
    pub fn start(dir: &Workdir, name: &'static str, args: &[&str]) -> Self {
        let report = format!("{name}.json");
        let log = format!("{name}.log");
        let mut all = args.to_vec();
        all.extend(["--report", &report, "--log-file", &log]);
        let child = dir
            .command(&all)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path(&format!("{name}.err"))).unwrap())
            .spawn()
            .unwrap();
        Self { name, child }
    }

    pub fn signal(&self, signal: &str) {
        send_signal(&self.child, signal);
    }

    /// Waits for the exit; returns its code.
    pub fn wait(&mut self, dir: &Workdir, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "{} did not exit within {limit:?}: {}",
                    self.name,
                    stderr_of(dir, self.name)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A test that fails before stopping its processes leaves none behind: an
/// orphan would keep retrying its dead broker, and could join a later
/// test's broker that gets the same port.
impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn stderr_of(dir: &Workdir, name: &str) -> String {
    text(&std::fs::read(dir.path(&format!("{name}.err"))).unwrap_or_default())
}

pub fn report_of(dir: &Workdir, name: &str) -> Value {
    let json = std::fs::read_to_string(dir.path(&format!("{name}.json")))
        .unwrap_or_else(|_| panic!("{name} wrote no report: {}", stderr_of(dir, name)));
    serde_json::from_str(&json).unwrap()
}

/// Waits until `name`'s log says the consumer group gave it partitions.
pub fn wait_until_consuming(dir: &Workdir, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(dir.path(&format!("{name}.log")))
        .unwrap_or_default()
        .contains("partitions assigned")
    {
        assert!(Instant::now() < deadline, "{name} never got partitions");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback address nothing listens on yet.
pub fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// `serve` on `brokers` at a free loopback address (`extra`: its other
/// flags), once its consumers have partitions; with its address.
pub fn serve_on(dir: &Workdir, brokers: &str, extra: &[&str]) -> (Process, String) {
    let address = free_address();
    let mut args = vec!["serve", "--listen", &address, "--brokers", brokers];
    args.extend(extra);
    let serve = Process::start(dir, "serve", &args);
    wait_until_consuming(dir, "serve");
    (serve, address)
}
