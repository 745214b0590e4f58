//! The control center: reads the orders, then hands the screen to the TUI
//! with a way to start the session the user picks.

use std::sync::Arc;

use crate::{
    cli::CommonArgs,
    clients::orders_from,
    config::{broker_target, data_dir, orders_file, session_settings},
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
    };
    let signals = stop_signals();
    let start_session = |level| session::spawn(session_settings(args, level, Arc::clone(&orders)));
    let scenario = args
        .scenario
        .scenario
        .as_deref()
        .map(crate::scenario::load)
        .transpose()?;
    // A scenario starts at once, at its first phase's level.
    let preselected = match &scenario {
        Some(scenario) => Some(
            scenario.phases[0]
                .load
                .unwrap_or(crate::config::load_level(args)),
        ),
        None => args.level.load,
    };
    let last = tui::show(start, preselected, scenario, start_session, signals).await?;
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
