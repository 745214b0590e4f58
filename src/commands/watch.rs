//! `orderdeck watch --brokers LIST`: a deployment orderdeck did not start,
//! read from its Kafka. On screen by default; `--once` prints one snapshot.

use std::time::Duration;

use serde::Serialize;

use crate::{
    cli::WatchArgs,
    clock::unix_millis_now,
    config::deployment_connection,
    fleet::{observer::Observer, view::FleetSnapshot},
    kafka::KafkaSetupError,
    pipeline::PipelineError,
    AppError,
};

/// What `watch --once --json` prints.
#[derive(Serialize)]
pub struct WatchReport {
    pub brokers: String,
    pub group: String,
    pub topic: String,
    #[serde(flatten)]
    pub snapshot: FleetSnapshot,
}

pub async fn watch(args: &WatchArgs) -> Result<(), AppError> {
    let connection = deployment_connection(&args.brokers, &args.deployment, Some(&args.group));
    let bootstrap = args.brokers.clone();
    let observer = tokio::task::spawn_blocking(move || Observer::start(&connection))
        .await
        .map_err(|e| AppError::Terminal(e.to_string()))?
        .map_err(|error| {
            AppError::Pipeline(PipelineError::Kafka(KafkaSetupError::Unreachable {
                bootstrap,
                reason: format!("{error} (is this the deployment's --brokers and --topic?)"),
            }))
        })?;
    if !args.once {
        return crate::tui::deployment::run(observer, describe(args)).await;
    }
    let limit = args.read_limit.0;
    let (observer, read) = tokio::task::spawn_blocking(move || {
        let read = observer.catch_up(limit);
        (observer, read)
    })
    .await
    .map_err(|e| AppError::Terminal(e.to_string()))?;
    if let Err(error) = read {
        return Err(AppError::Incomplete(format!(
            "could not read the deployment's topics within {limit:?}: {error}"
        )));
    }
    let report = WatchReport {
        brokers: args.brokers.clone(),
        group: args.group.clone(),
        topic: args.deployment.topic.clone(),
        snapshot: observer.with_view(|view| view.snapshot(unix_millis_now())),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the snapshot serializes")
        );
    } else {
        print!("{}", as_text(&report));
    }
    drop_off_runtime(observer).await;
    Ok(())
}

/// The header line of the screen: where it looks.
pub fn describe(args: &WatchArgs) -> String {
    format!(
        "{} · group {} · topic {}",
        args.brokers, args.group, args.deployment.topic
    )
}

/// Stopping the reader joins its thread (up to one poll).
async fn drop_off_runtime(observer: Observer) {
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::task::spawn_blocking(move || drop(observer)),
    )
    .await;
}

fn as_text(report: &WatchReport) -> String {
    let snapshot = &report.snapshot;
    let orders = &snapshot.orders;
    let mut text = format!(
        "{} · group {} · topic {}\n\
         orders: accepted {} = finished {} + waiting {} · finished twice {}{} · lag {} · {:.1} orders/s\n\
         latency ms (from event times): taken up p50 {:.1} p99 {:.1} · completion p50 {:.1} p99 {:.1}\n",
        report.brokers,
        report.group,
        report.topic,
        orders.accepted,
        orders.finished,
        orders.waiting,
        orders.finished_twice,
        orders.repeated_note(),
        snapshot.lag,
        snapshot.throughput_per_s,
        snapshot.latency_ms.taken_up.p50,
        snapshot.latency_ms.taken_up.p99,
        snapshot.latency_ms.completion.p50,
        snapshot.latency_ms.completion.p99,
    );
    for process in &snapshot.processes {
        let members: Vec<String> = process
            .members
            .iter()
            .map(|m| format!("{} {:?} lag {}", m.name, m.partitions, m.lag))
            .collect();
        text.push_str(&format!(
            "{} ({}, {}): finished {} · in flight {} · {:.1}/s · {}\n",
            process.by,
            process.role,
            process.status,
            process.finished,
            process.in_flight,
            process.throughput_per_s,
            if members.is_empty() {
                "no consumers".to_owned()
            } else {
                members.join(", ")
            }
        ));
    }
    text
}
