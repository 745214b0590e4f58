//! `orderdeck run --scenario`: a story played on a live session (the one
//! the control center drives), then judged by its gates.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{conclude, lost_problem, run::present, write_report, Judging};
use crate::{
    cli::{CommonArgs, GateOpts},
    clients::orders_from,
    config::{broker_target, load_level, orders_file, session_settings},
    kafka::BrokerTarget,
    order::Order,
    report::{Report, RunContext},
    scenario::{
        self,
        runner::{play, Controls},
        Scenario, Timeline,
    },
    session::{self, Command, Phase, SessionHandle, SessionSettings, SessionStatus},
    signals::{stop_signals, StopSignals},
    slo::{Gate, PhaseOutcome},
    AppError,
};

pub async fn run(
    args: &CommonArgs,
    opts: &GateOpts,
    spec: &str,
    json: bool,
) -> Result<(), AppError> {
    let scenario = scenario::load(spec)?;
    let gates = scenario::gates(&scenario, &opts.slo);
    let csv = orders_from(orders_file(args), args.orders_file.on_bad_row)?;
    let settings = scenario_session(args, &scenario, Arc::from(csv.orders))?;
    let session = session::spawn(settings);
    let signals = stop_signals();

    let (phases, interrupted) = play_headless(&scenario, &gates, &session, &signals).await;

    let _ = session.commands.send(Command::Shutdown).await;
    let commands = session.commands.clone();
    let abandon = signals.abandon.clone();
    tokio::spawn(async move {
        abandon.cancelled().await;
        let _ = commands.send(Command::Abandon).await;
    });
    let mut status = session.status.clone();
    let last = status
        .wait_for(|s| matches!(s.phase, Phase::Stopped | Phase::Failed(_)))
        .await
        .map(|s| s.clone())
        .map_err(|_| AppError::Incomplete("the session ended without stopping".to_owned()))?;
    session.finished().await;
    if let Phase::Failed(reason) = &last.phase {
        return Err(AppError::Incomplete(format!(
            "the pipeline did not start: {reason}"
        )));
    }

    let report = judged_report(args, &scenario, gates, phases, &last, interrupted);
    if let Some(path) = &args.report.report {
        write_report(path, &report.to_json())?;
    }
    for problem in &report.problems {
        eprintln!("problem: {problem}");
    }
    present(&report, opts, json)?;
    conclude(&report, args)
}

/// Plays `scenario` on `session` with a progress line on stderr each
/// second; the first stop signal ends it early (what ran is measured).
/// Returns what each phase measured, and whether a signal cut it short.
pub async fn play_headless(
    scenario: &Scenario,
    gates: &[Gate],
    session: &SessionHandle,
    signals: &StopSignals,
) -> (Vec<PhaseOutcome>, bool) {
    let (timeline, progress) = watch::channel(Timeline::new(scenario));
    // Headless, nothing skips a phase; a stop ends the scenario early.
    let (_skip, skip) = watch::channel(0);
    let stop = CancellationToken::new();
    let controls = Controls {
        commands: &session.commands,
        status: session.status.clone(),
        skip,
        stop: stop.clone(),
        timeline: &timeline,
    };
    let playing = play(scenario, gates, controls);
    tokio::pin!(playing);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut interrupted = false;
    loop {
        tokio::select! {
            phases = &mut playing => return (phases, interrupted),
            _ = signals.stop.cancelled(), if !interrupted => {
                interrupted = true;
                stop.cancel();
                eprintln!("stopping: the scenario ends here; finishing what is in flight (a second signal abandons it)");
            }
            _ = tick.tick() => eprintln!("{}", progress_line(&progress.borrow())),
        }
    }
}

/// The report of a scenario played on a session that has stopped (`last`
/// is its final status), judged by `gates`.
pub fn judged_report(
    args: &CommonArgs,
    scenario: &Scenario,
    gates: Vec<Gate>,
    phases: Vec<PhaseOutcome>,
    last: &SessionStatus,
    interrupted: bool,
) -> Report {
    let problems: Vec<_> = (last.unfinished.lost > 0)
        .then(|| lost_problem(last.unfinished.lost))
        .into_iter()
        .collect();
    let overdue = phases.iter().map(|p| p.measures.overdue).max().unwrap_or(0);
    let mut report = Report::new(
        &last.metrics,
        RunContext {
            elapsed: phases.iter().map(|p| p.elapsed).sum(),
            broker: last.broker.clone(),
            load: format!("scenario {}", scenario.name),
            time_scale: args.run.time_scale.factor(),
            unfinished: last.unfinished,
            finished_elsewhere: last.reconciliation.finished_elsewhere,
            interrupted,
            sink: last.sink.clone(),
            notifications: Default::default(),
            problems,
            audit: last.audit,
        },
    );
    let judging = Judging {
        scenario: Some(scenario.name.clone()),
        gates,
        phases,
        overdue,
    };
    report.slo = Some(judging.judge(&report, &last.metrics, args.mirror.es.is_some()));
    report
}

/// The session a scenario plays on: at its first phase's level, with a relay
/// in front of Elasticsearch if it cuts it off. Refuses what the flags
/// cannot give it.
pub fn scenario_session(
    args: &CommonArgs,
    scenario: &Scenario,
    orders: Arc<[Order]>,
) -> Result<SessionSettings, AppError> {
    let refuse = |event: &scenario::file::TimedEvent, why: &str| {
        AppError::Usage(format!(
            "scenario {:?}: `{}` {why}",
            scenario.name, event.action
        ))
    };
    if broker_target(args) != BrokerTarget::Embedded {
        if let Some(event) = scenario.event_where(|a| a.needs_embedded_broker()) {
            return Err(refuse(
                event,
                "breaks the embedded broker; run it without --brokers",
            ));
        }
    }
    let cuts_elasticsearch = scenario.event_where(|a| a.cuts_elasticsearch());
    if let Some(event) = cuts_elasticsearch {
        if !args
            .mirror
            .es
            .as_deref()
            .is_some_and(|url| url.starts_with("http://"))
        {
            return Err(refuse(
                event,
                "needs --es with an http:// URL (a relay cuts it)",
            ));
        }
    }
    let level = scenario.phases[0].load.unwrap_or(load_level(args));
    let mut settings = session_settings(args, level, orders);
    settings.pipeline.elastic_outages = cuts_elasticsearch.is_some();
    // For `finished_twice`: the events topic is read back at the stop.
    settings.audit_at_stop = true;
    Ok(settings)
}

fn progress_line(timeline: &Timeline) -> String {
    if timeline.done() {
        return timeline.position();
    }
    let next = timeline
        .next_event
        .as_ref()
        .map_or(String::new(), |(within, what)| {
            format!(" · next: {what} in {:.0} s", within.as_secs_f64())
        });
    let failing: Vec<_> = timeline
        .gates
        .iter()
        .filter(|v| !v.passed && v.value.is_some())
        .map(|v| v.gate.as_str())
        .collect();
    let gates = if failing.is_empty() {
        String::new()
    } else {
        format!(" · failing now: {}", failing.join(", "))
    };
    format!("{}{next}{gates}", timeline.position())
}
