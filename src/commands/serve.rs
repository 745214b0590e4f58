//! `orderdeck serve` (server + consumers) and `orderdeck worker` (consumers
//! only): run until Ctrl-C or until `--orders` orders have finished.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use super::{conclude, finish, Closing};
use crate::signals::{stop_signals, StopSignals};
use crate::{
    cli::CommonArgs,
    config::{broker_target, pipeline_config},
    kafka::{BrokerTarget, EmbeddedBroker},
    pipeline::Pipeline,
    AppError,
};

const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 50051);

pub async fn serve(args: &CommonArgs) -> Result<(), AppError> {
    let signals = stop_signals();
    let listen = args.server.listen.unwrap_or(DEFAULT_LISTEN);
    let pipeline = Pipeline::start(pipeline_config(args, Some(listen))).await?;
    eprintln!(
        "orderdeck serving orders.OrderService and orderdeck.v1.Orders on {} (broker: {}); Ctrl-C or SIGTERM stops",
        pipeline.dial().expect("serve starts a server").url,
        pipeline.broker().describe(),
    );
    keep_running(pipeline, args, signals).await
}

pub async fn worker(args: &CommonArgs) -> Result<(), AppError> {
    let signals = stop_signals();
    if broker_target(args) == BrokerTarget::Embedded {
        return Err(AppError::Usage(
            "worker joins an existing consumer group: give the cluster with --brokers host:port"
                .to_owned(),
        ));
    }
    let pipeline = Pipeline::start(pipeline_config(args, None)).await?;
    eprintln!(
        "orderdeck worker: {} consumers in group {:?} on {}; Ctrl-C or SIGTERM stops",
        pipeline.consumer_count(),
        args.kafka.group,
        pipeline.bootstrap_servers(),
    );
    keep_running(pipeline, args, signals).await
}

pub async fn broker(args: &CommonArgs) -> Result<(), AppError> {
    let signals = stop_signals();
    let config = pipeline_config(args, None);
    let kafka = &config.kafka;
    let broker = EmbeddedBroker::with_topics(config.embedded_brokers, kafka)
        .map_err(|e| AppError::Pipeline(e.into()))?;
    // The bootstrap list alone on stdout, for scripts; the rest on stderr.
    println!("{}", broker.bootstrap_servers());
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // The mock cluster holds a fetch that finds nothing for the whole
    // fetch.wait.max.ms (librdkafka's default 500 ms, right for Kafka), so
    // its clients are told how to take orders up in milliseconds. 5, not the
    // in-process 1 ms (`MOCK_FETCH_WAIT`): members in other processes never
    // rest, so every idle fetch costs (3 % of a core idle at 5 ms on tansu).
    eprintln!(
        "orderdeck broker: topics {}, {}, {} and {} ({} partitions each); \
         use --brokers {} -X fetch.wait.max.ms=5 (without it, orders wait up to 500 ms to be taken up); \
         Ctrl-C or SIGTERM stops",
        kafka.topic,
        kafka.events_topic,
        kafka.metrics_topic,
        kafka.processes_topic,
        kafka.partitions,
        broker.bootstrap_servers()
    );
    signals.stop.cancelled().await;
    Ok(())
}

async fn keep_running(
    pipeline: Pipeline,
    args: &CommonArgs,
    signals: StopSignals,
) -> Result<(), AppError> {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut interrupted = false;
    loop {
        tokio::select! {
            _ = signals.stop.cancelled() => {
                interrupted = true;
                break;
            }
            _ = tick.tick() => {}
        }
        let c = pipeline.snapshot().counts;
        let acknowledged = pipeline.ledger().tally(Duration::MAX);
        eprintln!(
            "acknowledged {} · consumed {} · finished {} here, {} elsewhere · in flight {} · redelivered {}",
            c.acknowledged,
            c.consumed,
            c.finished,
            acknowledged.finished_elsewhere,
            pipeline.in_flight(),
            c.redelivered
        );
        // Orders this process ran, or (for a server) orders it acknowledged
        // that finished anywhere in the group.
        let done = c.finished.max(acknowledged.finished);
        if args.run.orders.is_some_and(|n| done >= n) {
            break;
        }
    }
    let closing = Closing {
        judging: None,
        elapsed: started.elapsed(),
        problems: Vec::new(),
        interrupted,
        left_in_kafka_is_a_problem: false,
    };
    let report = finish(pipeline, args, &signals, closing).await?;
    println!("{}", report.summary());
    conclude(&report, args)
}
