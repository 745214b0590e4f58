//! The real binary in a scratch directory holding the project's orders.csv,
//! which is also its state directory.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use serde_json::Value;

pub struct Workdir(tempfile::TempDir);

impl Workdir {
    /// A fresh directory with the project's orders.csv, as a user would have.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("orders.csv"),
            dir.path().join("orders.csv"),
        )
        .unwrap();
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_orderdeck"));
        command
            .args(args)
            .current_dir(self.0.path())
            .env("XDG_STATE_HOME", self.0.path())
            .stdin(Stdio::null());
        command
    }

    /// The state directory the binary uses here (`XDG_STATE_HOME` is this
    /// directory): its spool is under `data`, the control center's log in
    /// `orderdeck.log`.
    pub fn state(&self, name: &str) -> PathBuf {
        self.0.path().join("orderdeck").join(name)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs with `--report report.json`, expects success, returns the report.
    pub fn run_reported(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["--report", "report.json"]);
        assert_exit(&self.run(&args), 0);
        self.report()
    }

    pub fn report(&self) -> Value {
        let text = std::fs::read_to_string(self.path("report.json")).expect("report written");
        serde_json::from_str(&text).unwrap()
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Sends `signal` (`-TERM`, `-INT`, `-KILL`, ...) to a process, as `kill` does.
pub fn send_signal(child: &std::process::Child, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal} {}", child.id());
}
