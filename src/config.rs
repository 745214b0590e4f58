//! The validated configuration built from the command line.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use crate::{
    cli::CommonArgs,
    clock::SimClock,
    grpc::tls::TlsFiles,
    grpc::ServerLimits,
    kafka::{BrokerTarget, KafkaOptions},
    load::{LoadLevel, LoadPreset},
    pipeline::PipelineConfig,
    sinks::{
        elastic::ElasticConfig, notify::NotifySettings, IndexNames, MirrorSettings, MirrorTarget,
    },
};

/// Where orderdeck keeps what it writes unless told otherwise (the spool, the
/// control center's log): `$XDG_STATE_HOME/orderdeck`, else
/// `~/.local/state/orderdeck`, else `./orderdeck-state` when there is no home.
pub fn state_dir() -> PathBuf {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    if let Some(state) = absolute("XDG_STATE_HOME") {
        return state.join("orderdeck");
    }
    if let Some(home) = absolute("HOME") {
        return home.join(".local/state/orderdeck");
    }
    PathBuf::from("orderdeck-state")
}

/// The spool's directory: `--data-dir`, else `data` in the state directory.
pub fn data_dir(args: &CommonArgs) -> PathBuf {
    args.data_dir
        .clone()
        .unwrap_or_else(|| state_dir().join("data"))
}

/// The orders file given with `--csv`, if any.
pub fn orders_file(args: &CommonArgs) -> Option<&Path> {
    args.csv.as_deref()
}

pub fn load_level(args: &CommonArgs) -> LoadLevel {
    args.load.unwrap_or(LoadLevel::Medium)
}

/// The preset with the user's overrides applied.
pub fn effective_load(args: &CommonArgs) -> LoadPreset {
    let mut preset = load_level(args).preset();
    if let Some(clients) = args.clients {
        preset.clients = clients;
    }
    if let Some(rate) = args.rate {
        preset.rate = (rate > 0.0).then_some(rate);
    }
    preset
}

pub fn broker_target(args: &CommonArgs) -> BrokerTarget {
    match &args.brokers {
        Some(list) => BrokerTarget::External(list.clone()),
        None => BrokerTarget::Embedded,
    }
}

pub fn pipeline_config(args: &CommonArgs, listen: Option<SocketAddr>) -> PipelineConfig {
    let mut kafka = KafkaOptions::new(broker_target(args), &args.topic);
    if let Some(events) = &args.events_topic {
        kafka.events_topic = events.clone();
    }
    kafka.partitions = args.partitions;
    kafka.replication = args.replication;
    kafka.group = args.group.clone();
    kafka.extra = args.kafka_settings();
    kafka.delivery_timeout = args.delivery_timeout.0;
    PipelineConfig {
        listen,
        limits: ServerLimits {
            max_in_flight: args.max_in_flight,
            max_message_bytes: args.max_message_bytes,
        },
        consumers: args.consumers,
        max_in_flight_per_consumer: args.max_in_flight_per_consumer,
        clock: SimClock::new(args.time_scale),
        stage_delay: effective_load(args).stage_delay,
        transition_buffer: args.event_buffer,
        mirror: mirror_settings(args),
        notify: args.notify_smtp.as_ref().map(|url| NotifySettings {
            smtp_url: url.clone(),
            from: args.notify_from.clone(),
            on: args.notify_on.clone(),
            per_second: args.notify_rate,
        }),
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: args.tls_ca.clone(),
                domain: args.tls_domain.clone(),
            }),
            _ => None,
        },
        ..PipelineConfig::loopback(kafka)
    }
}

pub fn mirror_settings(args: &CommonArgs) -> MirrorSettings {
    MirrorSettings {
        target: match &args.es {
            Some(url) => {
                MirrorTarget::Elastic(ElasticConfig::from_env(url.clone(), args.es_ca.clone()))
            }
            None => MirrorTarget::Spool,
        },
        data_dir: data_dir(args),
        spool_max_bytes: args.spool_max_bytes.0,
        names: IndexNames {
            orders: args.orders_index.clone(),
            metrics: args.metrics_index.clone(),
        },
    }
}
