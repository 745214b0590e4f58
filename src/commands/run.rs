//! `orderdeck run`: the whole pipeline with simulated clients, headless.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use super::{conclude, finish, progress::Progress, Closing, Judging};
use crate::signals::stop_signals;
use crate::{
    cli::{CommonArgs, GateOpts},
    clients::{orders_from, run_clients, ClientApi, ClientPlan},
    clock::SimClock,
    config::{effective_load, orders_file, pipeline_config},
    metrics::Counter,
    pipeline::Pipeline,
    report::Report,
    AppError,
};

const GROUP_JOIN_TIMEOUT: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_millis(100);

/// `json`: the report as JSON on stdout instead of the summary.
pub async fn run(args: &CommonArgs, gates: &GateOpts, json: bool) -> Result<(), AppError> {
    if let Some(spec) = &args.scenario.scenario {
        return super::scenario::run(args, gates, spec, json).await;
    }
    let signals = stop_signals();
    let csv = orders_from(orders_file(args), args.orders_file.on_bad_row)?;
    for row in &csv.rejected {
        eprintln!("skipped row {row}");
    }
    let load = effective_load(args);
    let plan = ClientPlan {
        clients: load.clients,
        rate: load.rate,
        clock: SimClock::new(args.run.time_scale),
        orders: Some(args.run.orders.unwrap_or(csv.orders.len() as u64)),
        api: ClientApi::Typed,
    };
    let listen = args
        .server
        .listen
        .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let mut pipeline = Pipeline::start(pipeline_config(args, Some(listen))).await?;
    // Asking for JUnit verdicts asks for the default gates at least.
    let judged = !gates.slo.is_empty() || gates.junit.is_some();
    if judged {
        pipeline.audit_at_stop();
    }
    let mut overdue = 0;
    let metrics = Arc::clone(pipeline.metrics());
    metrics.add(Counter::Rejected, csv.rejected.len() as u64);
    let mut problems = Vec::new();
    if !pipeline.wait_until_consuming(GROUP_JOIN_TIMEOUT).await {
        problems.push("the consumer group did not get every partition within 30 s".to_owned());
    }

    let server = pipeline.dial().expect("run starts a server");
    let stop_clients = CancellationToken::new();
    let started = Instant::now();
    tracing::info!(clients = plan.clients, "simulated clients started");
    let mut clients = tokio::spawn(run_clients(
        server,
        csv.orders.into(),
        plan.clone(),
        Arc::clone(&metrics),
        stop_clients.clone(),
    ));
    let deadline = args.run.timeout.map(|limit| started + limit.0);
    let progress = Progress::new(plan.orders);
    let mut clients_done = false;
    let mut interrupted = false;
    loop {
        tokio::select! {
            _ = signals.stop.cancelled(), if !interrupted => {
                interrupted = true;
                stop_clients.cancel();
                eprintln!("stopping: clients stopped; finishing the acknowledged orders (Ctrl-C again abandons them)");
            }
            joined = &mut clients, if !clients_done => {
                clients_done = true;
                match joined {
                    Ok(Ok(outcome)) => problems.extend(outcome.errors.into_iter().map(|e| format!("client error: {e}"))),
                    Ok(Err(error)) => problems.push(format!("clients could not connect to the server: {error}")),
                    Err(error) => problems.push(format!("client task failed: {error}")),
                }
            }
            _ = tokio::time::sleep(TICK) => {}
        }
        progress.update(&metrics.snapshot(), pipeline.in_flight());
        if judged {
            overdue = overdue.max(pipeline.ledger().tally(pipeline.overdue_after()).overdue);
        }
        // Done when every acknowledged order finished, here or in another
        // process of the group; an interrupt leaves the rest to the drain.
        if clients_done && (interrupted || pipeline.unfinished_acknowledged() == 0) {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            problems.push(format!(
                "timed out after {:.1} s with {} acknowledged orders unfinished",
                started.elapsed().as_secs_f64(),
                pipeline.unfinished_acknowledged()
            ));
            stop_clients.cancel();
            if !clients_done {
                let _ = clients.await;
            }
            break;
        }
    }
    let elapsed = started.elapsed();
    progress.done();
    let failed = metrics.get(Counter::Failed);
    if failed > 0 {
        problems.push(format!(
            "{failed} orders were never acknowledged (see client errors)"
        ));
    }
    let closing = Closing {
        elapsed,
        problems,
        interrupted,
        left_in_kafka_is_a_problem: true,
        judging: judged.then(|| Judging {
            scenario: None,
            gates: if gates.slo.is_empty() {
                crate::slo::default_gates()
            } else {
                gates.slo.clone()
            },
            phases: Vec::new(),
            overdue,
        }),
    };
    let report = finish(pipeline, args, &signals, closing).await?;
    present(&report, gates, json)?;
    conclude(&report, args)
}

/// Prints the report (and the gates' verdicts), and writes `--junit`.
pub fn present(report: &Report, gates: &GateOpts, json: bool) -> Result<(), AppError> {
    if json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.summary());
        if let Some(slo) = &report.slo {
            println!("gates:");
            for line in slo.lines() {
                println!("  {line}");
            }
        }
    }
    if let (Some(path), Some(slo)) = (&gates.junit, &report.slo) {
        super::write_report(path, &crate::slo::junit::render(slo))?;
    }
    Ok(())
}
