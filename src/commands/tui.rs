//! The control center: reads the orders, then hands the screen to the TUI
//! with a way to start the session the user picks.

use std::sync::Arc;

use crate::{
    cli::CommonArgs,
    clients::orders_from,
    commands::scenario::{judged_report, scenario_session},
    config::{broker_target, data_dir, orders_file, scenario_dirs, session_settings},
    kafka::BrokerTarget,
    order::Order,
    session,
    signals::stop_signals,
    tui::{self, app::StartInfo},
    AppError,
};

pub async fn tui(args: &CommonArgs) -> Result<(), AppError> {
    // Problems with the input are reported before the screen is taken.
    let csv = orders_from(orders_file(args), args.orders_file.on_bad_row)?;
    let orders: Arc<[Order]> = csv.orders.into();
    let data_dir = data_dir(args);
    let offered = crate::scenario::file::offered(&scenario_dirs());
    let start = StartInfo {
        broker: match broker_target(args) {
            BrokerTarget::Embedded => "embedded (in-process Kafka mock cluster)".to_owned(),
            BrokerTarget::External(list) => list,
        },
        sink: match &args.mirror.es {
            Some(url) => format!(
                "Elasticsearch {url} (Kafka holds what waits; the spool in {} keeps what a quit cannot send)",
                data_dir.display()
            ),
            None => format!(
                "spool in {} (orderdeck export --es URL sends it)",
                data_dir.display()
            ),
        },
        time_scale: args.run.time_scale.factor(),
        scenarios: offered
            .iter()
            .map(|o| (o.name.clone(), o.description.clone()))
            .collect(),
    };
    let signals = stop_signals();
    let scenario = args
        .scenario
        .scenario
        .as_deref()
        .map(crate::scenario::load)
        .transpose()?;
    // A scenario starts at once, at its first phase's level, on the session
    // it needs (checked before the screen is taken).
    let (preselected, scenario_settings) = match &scenario {
        Some(played) => {
            let settings = scenario_session(args, played, Arc::clone(&orders))?;
            (Some(settings.load), Some(settings))
        }
        None => (args.level.load, None),
    };
    // Taken by the first session (a scenario's starts at once).
    let scenario_settings = std::sync::Mutex::new(scenario_settings);
    // The scenario played, for its verdict at the end.
    let chosen = std::sync::Mutex::new(scenario.clone());
    let start_session = |level| {
        let prepared = crate::sync::Locked::locked(&scenario_settings).take();
        session::spawn(
            prepared.unwrap_or_else(|| session_settings(args, level, Arc::clone(&orders))),
        )
    };
    let start_scenario = |row: usize| {
        let spec = &offered.get(row).ok_or("no such scenario")?.spec;
        let played = crate::scenario::load(spec).map_err(|e| e.to_string())?;
        let settings =
            scenario_session(args, &played, Arc::clone(&orders)).map_err(|e| e.to_string())?;
        *crate::sync::Locked::locked(&chosen) = Some(played.clone());
        Ok((session::spawn(settings), played))
    };
    let (last, phases) = tui::show(
        start,
        preselected,
        scenario,
        start_session,
        start_scenario,
        signals,
    )
    .await?;
    let chosen = crate::sync::Locked::locked(&chosen).take();
    if let (Some(played), Some(phases), Some(last)) = (chosen, phases, &last) {
        // The screen is gone: the verdict, as `run` gives it.
        let gates = crate::scenario::gates(&played, &[]);
        let report = judged_report(args, &played, gates, phases, last, false);
        if let Some(path) = &args.report.report {
            super::write_report(path, &report.to_json())?;
        }
        if let Some(slo) = &report.slo {
            println!("scenario {}: gates", played.name);
            for line in slo.lines() {
                println!("  {line}");
            }
            if !slo.passed {
                return Err(AppError::Gates(slo.failures().join("; ")));
            }
        }
    }
    match last.map(|status| status.unfinished) {
        Some(unfinished) if unfinished.lost > 0 => Err(AppError::Incomplete(format!(
            "{} acknowledged orders were abandoned at quit and are lost (only the embedded \
             broker held them)",
            unfinished.lost
        ))),
        Some(unfinished) if unfinished.left_in_kafka > 0 => {
            eprintln!(
                "{} acknowledged orders are left in Kafka for group {:?}: its next member runs them",
                unfinished.left_in_kafka, args.kafka.group
            );
            Ok(())
        }
        _ => Ok(()),
    }
}
