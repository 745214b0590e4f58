//! `orderdeck load --target ADDR`: the simulated clients alone, in a process
//! of their own, against any server speaking `orders.OrderService` (or the
//! typed API). Socket effects (Nagle, delayed ACKs) show here as they do for
//! real clients, which a driver in the server's own process can hide. With
//! `--brokers` (a server of orderdeck's) each acknowledged order is followed
//! to its Finished event. On a terminal the screen is its monitor.

use std::{io::IsTerminal, sync::Arc};

use crate::{
    cli::{CommonArgs, LoadArgs},
    clients::{orders_from, FollowedSummary, LoadSummary},
    commands::scenario::play_headless,
    config::{deployment_connection, effective_load, load_level, orders_file},
    grpc::Dial,
    metrics::{per_second, GRPC_CODES},
    order::Order,
    scenario::{self, Scenario},
    session::{
        remote::{self, RemoteSettings},
        Command, Phase, SessionHandle, SessionStatus,
    },
    signals::stop_signals,
    slo::{
        gate::{LatencyKind, Metric},
        Gate, Measures, PhaseOutcome, SloReport,
    },
    AppError,
};

pub async fn load(args: &CommonArgs, load: &LoadArgs) -> Result<(), AppError> {
    let csv = orders_from(orders_file(args), args.orders_file.on_bad_row)?;
    let orders: Arc<[Order]> = csv.orders.into();
    let following = load.follow.brokers.is_some();
    let scenario = args
        .scenario
        .scenario
        .as_deref()
        .map(scenario::load)
        .transpose()?;
    if let Some(scenario) = &scenario {
        refuse_pipeline_parts(scenario)?;
    }
    let gates = gates_for(scenario.as_ref(), &load.gates.slo, following)?;
    let url = if load.target.contains("://") {
        load.target.clone()
    } else {
        format!("http://{}", load.target)
    };
    // A scenario starts at its first phase's level.
    let (level, preset) = match scenario.as_ref().and_then(|s| s.phases[0].load) {
        Some(level) => (level, level.preset()),
        None => (load_level(args), effective_load(args)),
    };
    let total = args.run.orders.unwrap_or(orders.len() as u64);
    let session = remote::spawn(RemoteSettings {
        target: Dial::from(url.clone()),
        api: load.api,
        orders,
        load: level,
        preset,
        total: scenario.is_none().then_some(total),
        follow: load
            .follow
            .brokers
            .as_deref()
            .map(|brokers| deployment_connection(brokers, &load.follow.deployment, None)),
        finish_limit: load.follow.finish_timeout.0,
        end_when_sent: scenario.is_none(),
    });
    let on_screen = !load.json && !load.no_tui && std::io::stdout().is_terminal();
    let (last, phases, interrupted) = if on_screen {
        let title = format!("→ {url} · {:?} API", load.api).to_lowercase();
        let (last, phases) =
            crate::tui::monitor::show(session, title, scenario.clone(), gates.clone()).await?;
        (last, phases, false)
    } else {
        headless(session, scenario.as_ref(), &gates).await?
    };
    if let Phase::Failed(reason) = &last.phase {
        return Err(match &load.follow.brokers {
            Some(brokers) if reason.starts_with(remote::CANNOT_FOLLOW) => AppError::Pipeline(
                crate::pipeline::PipelineError::Kafka(crate::kafka::KafkaSetupError::Unreachable {
                    bootstrap: brokers.clone(),
                    reason: reason.clone(),
                }),
            ),
            _ => AppError::Usage(format!("--target {url}: {reason}")),
        });
    }
    let summary = summarize(&url, &last, following);
    let slo =
        (!gates.is_empty()).then(|| judge(scenario.as_ref(), &gates, &phases, &last, following));
    if load.json {
        println!(
            "{}",
            serde_json::to_string(&summary).expect("the summary serializes")
        );
    } else {
        println!("{}", summary.line());
        for line in slo.iter().flat_map(SloReport::lines) {
            println!("{line}");
        }
    }
    if let (Some(path), Some(slo)) = (&load.gates.junit, &slo) {
        super::write_report(path, &crate::slo::junit::render(slo))?;
    }
    conclude(&summary, slo.as_ref(), interrupted)
}

/// Clients only, the progress on stderr; the first signal stops sending
/// (and, with a scenario, ends it), the second stops waiting.
async fn headless(
    session: SessionHandle,
    scenario: Option<&Scenario>,
    gates: &[Gate],
) -> Result<(SessionStatus, Vec<PhaseOutcome>, bool), AppError> {
    let signals = stop_signals();
    // The first signal stops the clients (and ends a scenario), the second
    // stops waiting for the orders followed to Finished.
    let commands = session.commands.clone();
    let (stop, abandon) = (signals.stop.clone(), signals.abandon.clone());
    let on_signals = tokio::spawn(async move {
        stop.cancelled().await;
        let _ = commands.send(Command::Shutdown).await;
        abandon.cancelled().await;
        let _ = commands.send(Command::Abandon).await;
    });
    let phases = match scenario {
        Some(scenario) => {
            let (phases, _) = play_headless(scenario, gates, &session, &signals).await;
            let _ = session.commands.send(Command::Shutdown).await;
            phases
        }
        None => Vec::new(),
    };
    let last = ended(&session).await;
    on_signals.abort();
    let (last, interrupted) = (last?, signals.stop.is_cancelled());
    // A session that failed to start waits to be told before it ends.
    let _ = session.commands.send(Command::Shutdown).await;
    session.finished().await;
    Ok((last, phases, interrupted))
}

/// Waits for the session's last status.
pub async fn ended(session: &SessionHandle) -> Result<SessionStatus, AppError> {
    let mut status = session.status.clone();
    status
        .wait_for(|s| matches!(s.phase, Phase::Stopped | Phase::Failed(_)))
        .await
        .map(|s| s.clone())
        .map_err(|_| AppError::Incomplete("the clients ended without a summary".to_owned()))
}

/// A load drives only clients: a scenario's faults and consumer settings
/// belong to the deployment it drives.
fn refuse_pipeline_parts(scenario: &Scenario) -> Result<(), AppError> {
    if let Some(event) = scenario.event_where(|_| true) {
        return Err(AppError::Usage(format!(
            "scenario {:?}: `{}` needs orderdeck's own pipeline; load drives a server \
             elsewhere (play it with `orderdeck run --scenario`)",
            scenario.name, event.action
        )));
    }
    if let Some(phase) = scenario
        .phases
        .iter()
        .find(|p| p.consumers.is_some() || p.paused.is_some())
    {
        return Err(AppError::Usage(format!(
            "scenario {:?}: phase {:?} sets the consumers, which belong to the server's \
             deployment, not to load",
            scenario.name, phase.name
        )));
    }
    Ok(())
}

/// The gates a load is judged by: `--slo` (refused if the client side
/// cannot measure it), and a scenario's own, less those only the deployment
/// sees (named on stderr); `failed == 0` for a scenario left with none.
fn gates_for(
    scenario: Option<&Scenario>,
    slo: &[Gate],
    following: bool,
) -> Result<Vec<Gate>, AppError> {
    for gate in slo {
        if let Some(why) = unmeasurable(gate, following) {
            return Err(AppError::Usage(format!("gate `{}`: {why}", gate.text)));
        }
    }
    let Some(scenario) = scenario else {
        return Ok(slo.to_vec());
    };
    let (kept, left): (Vec<Gate>, Vec<Gate>) = scenario
        .gates
        .iter()
        .cloned()
        .partition(|gate| unmeasurable(gate, following).is_none());
    if !left.is_empty() {
        let names: Vec<&str> = left.iter().map(|g| g.text.as_str()).collect();
        eprintln!(
            "load: the scenario's gates {} are the deployment's to judge (watch, run); \
             not judged here",
            names.join(", ")
        );
    }
    let gates: Vec<Gate> = kept.into_iter().chain(slo.iter().cloned()).collect();
    Ok(if gates.is_empty() {
        default_gates()
    } else {
        gates
    })
}

/// Without gates, a scenario played by load is judged on its clients.
fn default_gates() -> Vec<Gate> {
    vec!["failed == 0".parse().expect("the default load gate parses")]
}

/// Why load cannot judge `gate` from the client side, if it cannot.
fn unmeasurable(gate: &Gate, following: bool) -> Option<&'static str> {
    match gate.metric {
        Metric::Latency(LatencyKind::EndToEnd, _)
        | Metric::Overdue
        | Metric::FinishedTwice
        | Metric::SinkLeft => Some(
            "load measures the clients' side (send.*, acknowledged, failed, rejected; with \
             --brokers also completion.*, finished, throughput, lost); `orderdeck watch` and \
             `run` see the rest",
        ),
        Metric::Latency(LatencyKind::Completion, _)
        | Metric::Finished
        | Metric::Throughput
        | Metric::Lost
            if !following =>
        {
            Some("needs --brokers: load follows its orders to Finished on the events topic")
        }
        _ => None,
    }
}

fn summarize(url: &str, last: &SessionStatus, following: bool) -> LoadSummary {
    let metrics = &last.metrics;
    let seconds = metrics.last_answer.as_secs_f64();
    let tally = &last.reconciliation;
    let refused: std::collections::BTreeMap<String, u64> = (0..GRPC_CODES)
        .filter(|code| metrics.refused[*code] > 0)
        .map(|code| {
            (
                format!("{:?}", tonic::Code::from(code as i32)),
                metrics.refused[code],
            )
        })
        .collect();
    LoadSummary {
        target: url.to_owned(),
        clients: last.clients,
        sent: metrics.counts.sent,
        answered: metrics.send.count,
        failed: metrics.counts.failed,
        seconds,
        answered_per_s: per_second(metrics.send.count, metrics.last_answer),
        latency_ms: metrics.send,
        errors: refused
            .iter()
            .map(|(code, calls)| format!("{code}: {calls} calls refused"))
            .collect(),
        acknowledged: metrics.counts.acknowledged,
        refused,
        followed: following.then_some(FollowedSummary {
            finished: tally.finished,
            waiting: tally.waiting,
            unnamed: metrics
                .counts
                .acknowledged
                .saturating_sub(tally.acknowledged),
            completion_ms: metrics.completion,
        }),
    }
}

fn judge(
    scenario: Option<&Scenario>,
    gates: &[Gate],
    phases: &[PhaseOutcome],
    last: &SessionStatus,
    following: bool,
) -> SloReport {
    let metrics = &last.metrics;
    let elapsed = metrics.elapsed;
    let overall = Measures {
        send: metrics.send,
        completion: metrics.completion,
        throughput: per_second(metrics.counts.finished, elapsed),
        acknowledged: metrics.counts.acknowledged,
        finished: metrics.counts.finished,
        failed: metrics.counts.failed,
        rejected: metrics.counts.rejected,
        lost: following.then_some(last.reconciliation.waiting),
        ..Measures::default()
    };
    SloReport::judge(scenario.map(|s| s.name.as_str()), gates, phases, &overall)
}

fn conclude(
    summary: &LoadSummary,
    slo: Option<&SloReport>,
    interrupted: bool,
) -> Result<(), AppError> {
    if let Some(followed) = &summary.followed {
        if followed.waiting > 0 && !interrupted {
            return Err(AppError::Incomplete(format!(
                "{} acknowledged orders did not reach Finished on the events topic in time",
                followed.waiting
            )));
        }
    }
    if summary.failed > 0 && slo.is_none() {
        return Err(AppError::Incomplete(format!(
            "clients gave up on {} orders",
            summary.failed
        )));
    }
    match slo {
        Some(slo) if !slo.passed => Err(AppError::Gates(slo.failures().join("; "))),
        _ => Ok(()),
    }
}
