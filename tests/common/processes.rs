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
