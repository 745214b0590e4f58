//! Load from another process: `orderdeck load` run as a child against the
//! server under test, so the sockets between them are real ones (Nagle,
//! delayed ACKs, the kernel's loopback) and the driver's CPU is not the
//! server's.

use std::{path::Path, process::Stdio, time::Duration};

use crate::clients::LoadSummary;

/// How long a load process may outlive the time the phase allows.
const GRACE: Duration = Duration::from_secs(60);

/// Runs `orderdeck load` with `clients` unpaced clients sending `orders`
/// orders from `csv` (else the built-in ones) to `url`, and returns what it measured.
pub(super) async fn load_from_another_process(
    url: &str,
    csv: Option<&Path>,
    clients: usize,
    orders: u64,
    limit: Duration,
) -> Result<LoadSummary, String> {
    let exe = std::env::current_exe().map_err(|e| format!("no path to this program: {e}"))?;
    let mut command = tokio::process::Command::new(exe);
    command
        .args(["load", "--json", "--rate", "0", "--target", url])
        .args(["--clients", &clients.to_string()])
        .args(["--orders", &orders.to_string()]);
    if let Some(csv) = csv {
        command.arg("--csv").arg(csv);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("could not start the load process: {e}"))?;
    let output = tokio::time::timeout(limit + GRACE, child.wait_with_output())
        .await
        .map_err(|_| format!("the load process ran past {:?}", limit + GRACE))?
        .map_err(|e| format!("the load process failed: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .find_map(|line| serde_json::from_str::<LoadSummary>(line).ok());
    match summary {
        Some(summary) => Ok(summary),
        None => Err(format!(
            "the load process ({}) printed no summary: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}
