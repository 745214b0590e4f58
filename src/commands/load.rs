//! `orderdeck load --target ADDR`: the simulated clients alone, in a process
//! of their own, against a server that runs elsewhere. Socket effects (Nagle,
//! delayed ACKs) show here as they do for real clients, which a driver in
//! the server's own process can hide.

use std::{sync::Arc, time::Instant};

use crate::{
    cli::{CommonArgs, LoadArgs},
    clients::{orders_from, run_clients, ClientPlan, LoadSummary},
    clock::{SimClock, TimeScale},
    config::{effective_load, orders_file},
    grpc::Dial,
    metrics::{per_second, Metrics},
    order::Order,
    signals::stop_signals,
    AppError,
};

pub async fn load(args: &CommonArgs, load: &LoadArgs) -> Result<(), AppError> {
    let csv = orders_from(orders_file(args), args.orders_file.on_bad_row)?;
    let orders: Arc<[Order]> = csv.orders.into();
    let preset = effective_load(args);
    let total = args.run.orders.unwrap_or(orders.len() as u64);
    let plan = ClientPlan {
        clients: preset.clients,
        rate: preset.rate,
        // The rate is real orders per second: --time-scale is the server's.
        clock: SimClock::new(TimeScale::ORIGINAL),
        orders: Some(total),
        api: load.api,
    };
    let url = if load.target.contains("://") {
        load.target.clone()
    } else {
        format!("http://{}", load.target)
    };
    let metrics = Arc::new(Metrics::new());
    let signals = stop_signals();
    let started = Instant::now();
    let outcome = run_clients(
        Dial::from(url.clone()),
        orders,
        plan,
        Arc::clone(&metrics),
        signals.stop.clone(),
    )
    .await
    .map_err(|e| AppError::Usage(format!("--target {url}: {e}")))?;
    let elapsed = started.elapsed();
    let snapshot = metrics.snapshot();
    let summary = LoadSummary {
        target: url,
        clients: preset.clients,
        sent: snapshot.counts.sent,
        answered: snapshot.send.count,
        failed: snapshot.counts.failed,
        seconds: elapsed.as_secs_f64(),
        answered_per_s: per_second(snapshot.send.count, elapsed),
        latency_ms: snapshot.send,
        errors: outcome.errors,
    };
    if load.json {
        println!(
            "{}",
            serde_json::to_string(&summary).expect("the summary serializes")
        );
    } else {
        let latency = &summary.latency_ms;
        println!(
            "load: {} orders to {} by {} clients in {:.2} s: {:.0} orders/s answered · failed {} \
             · latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
            summary.sent,
            summary.target,
            summary.clients,
            summary.seconds,
            summary.answered_per_s,
            summary.failed,
            latency.p50,
            latency.p90,
            latency.p99,
            latency.max,
        );
    }
    if !summary.errors.is_empty() {
        return Err(AppError::Incomplete(format!(
            "clients gave up: {}",
            summary.errors.join("; ")
        )));
    }
    Ok(())
}
