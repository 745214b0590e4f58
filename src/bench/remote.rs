//! The benchmark's other processes, all this same program: `orderdeck load`
//! as the load from another process (real sockets between it and the server,
//! its CPU not the server's), and a scenario run on its own.

use std::{ffi::OsString, path::Path, process::Stdio, time::Duration};

use crate::clients::LoadSummary;

/// How long a child may outlive the time its work should take.
const GRACE: Duration = Duration::from_secs(60);

/// Runs this program with `args`; returns its stdout once it exits with
/// success, or what went wrong (its stderr included).
pub(super) async fn this_program(args: Vec<OsString>, limit: Duration) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("no path to this program: {e}"))?;
    let child = tokio::process::Command::new(exe)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("could not start a child process: {e}"))?;
    let output = tokio::time::timeout(limit + GRACE, child.wait_with_output())
        .await
        .map_err(|_| format!("a child process ran past {:?}", limit + GRACE))?
        .map_err(|e| format!("a child process failed: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "a child process ended with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `orderdeck load` with `clients` clients sending `orders` orders
/// from `csv` (else the built-in ones) to `url`, at `rate` orders/s over
/// all (None: as fast as they can), and returns what it measured.
pub(super) async fn load_from_another_process(
    url: &str,
    csv: Option<&Path>,
    (clients, rate): (usize, Option<f64>),
    orders: u64,
    limit: Duration,
) -> Result<LoadSummary, String> {
    let rate = rate.map_or("0".to_owned(), |r| r.to_string());
    let mut args: Vec<OsString> = ["load", "--json", "--rate", &rate, "--target", url]
        .into_iter()
        .map(OsString::from)
        .collect();
    args.extend(["--clients".into(), clients.to_string().into()]);
    args.extend(["--orders".into(), orders.to_string().into()]);
    if let Some(csv) = csv {
        args.extend(["--csv".into(), csv.into()]);
    }
    let stdout = this_program(args, limit).await?;
    stdout
        .lines()
        .find_map(|line| serde_json::from_str::<LoadSummary>(line).ok())
        .ok_or_else(|| format!("the load process printed no summary: {stdout}"))
}
