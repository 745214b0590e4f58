//! The validated configuration built from the command line.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use crate::{
    cli::{CommonArgs, DeploymentOpts},
    clock::SimClock,
    grpc::tls::TlsFiles,
    grpc::ServerLimits,
    kafka::{BrokerTarget, KafkaConnection, KafkaOptions},
    load::{LoadLevel, LoadPreset},
    order::Order,
    pipeline::PipelineConfig,
    session::SessionSettings,
    sinks::{
        elastic::ElasticConfig, notify::NotifySettings, IndexNames, MirrorSettings, MirrorTarget,
    },
};

/// Where orderdeck keeps what it writes unless told otherwise (the spool, the
/// control center's log): `$XDG_STATE_HOME/orderdeck`, else
/// `~/.local/state/orderdeck`, else `./orderdeck-state` when there is no home.
pub fn state_dir() -> PathBuf {
    if let Some(state) = absolute_env("XDG_STATE_HOME") {
        return state.join("orderdeck");
    }
    if let Some(home) = absolute_env("HOME") {
        return home.join(".local/state/orderdeck");
    }
    PathBuf::from("orderdeck-state")
}

/// Where the start screen looks for scenario files: `./scenarios`, then
/// `$XDG_CONFIG_HOME/orderdeck/scenarios` (else `~/.config/orderdeck/scenarios`).
pub fn scenario_dirs() -> Vec<PathBuf> {
    let config = absolute_env("XDG_CONFIG_HOME")
        .map(|config| config.join("orderdeck"))
        .or_else(|| absolute_env("HOME").map(|home| home.join(".config/orderdeck")));
    std::iter::once(PathBuf::from("scenarios"))
        .chain(config.map(|config| config.join("scenarios")))
        .collect()
}

/// An environment variable holding an absolute path (XDG says to ignore
/// relative ones).
fn absolute_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
}

/// The spool's directory: `--data-dir`, else `data` in the state directory.
pub fn data_dir(args: &CommonArgs) -> PathBuf {
    args.mirror
        .data_dir
        .clone()
        .unwrap_or_else(|| state_dir().join("data"))
}

/// The orders file given with `--csv`, if any.
pub fn orders_file(args: &CommonArgs) -> Option<&Path> {
    args.orders_file.csv.as_deref()
}

pub fn load_level(args: &CommonArgs) -> LoadLevel {
    args.level.load.unwrap_or(LoadLevel::Medium)
}

/// The preset with the user's overrides applied.
pub fn effective_load(args: &CommonArgs) -> LoadPreset {
    let mut preset = load_level(args).preset();
    if let Some(clients) = args.sending.clients {
        preset.clients = clients;
    }
    if let Some(rate) = args.sending.rate {
        preset.rate = (rate > 0.0).then_some(rate);
    }
    preset
}

/// How `watch` and `load --brokers` reach a deployment they did not start
/// (`group`: the deployment's, if it matters to the reader).
pub fn deployment_connection(
    brokers: &str,
    deployment: &DeploymentOpts,
    group: Option<&str>,
) -> KafkaConnection {
    let mut options = KafkaOptions::new(
        BrokerTarget::External(brokers.to_owned()),
        &deployment.topic,
    );
    if let Some(events) = &deployment.events_topic {
        options.events_topic = events.clone();
    }
    if let Some(group) = group {
        options.group = group.to_owned();
    }
    options.extra = deployment.settings.all();
    KafkaConnection::new(brokers.to_owned(), options)
}

pub fn broker_target(args: &CommonArgs) -> BrokerTarget {
    match &args.kafka.brokers {
        Some(list) => BrokerTarget::External(list.clone()),
        None => BrokerTarget::Embedded,
    }
}

pub fn pipeline_config(args: &CommonArgs, listen: Option<SocketAddr>) -> PipelineConfig {
    let mut kafka = KafkaOptions::new(broker_target(args), &args.kafka.topics.topic);
    if let Some(events) = &args.kafka.topics.events_topic {
        kafka.events_topic = events.clone();
    }
    kafka.partitions = args.kafka.topics.partitions;
    kafka.replication = args.kafka.replication;
    kafka.group = args.kafka.group.clone();
    kafka.extra = args.kafka.settings.all();
    kafka.delivery_timeout = args.kafka.delivery_timeout.0;
    PipelineConfig {
        listen,
        limits: ServerLimits {
            max_in_flight: args.server.max_in_flight,
            max_message_bytes: args.server.max_message_bytes,
        },
        consumers: args.consuming.consumers,
        max_in_flight_per_consumer: args.consuming.max_in_flight_per_consumer,
        clock: SimClock::new(args.run.time_scale),
        stage_delay: effective_load(args).stage_delay,
        transition_buffer: args.server.event_buffer,
        mirror: mirror_settings(args),
        notify: args.notify.notify_smtp.as_ref().map(|url| NotifySettings {
            smtp_url: url.clone(),
            from: args.notify.notify_from.clone(),
            on: args.notify.notify_on.clone(),
            per_second: args.notify.notify_rate,
        }),
        tls: match (&args.server.tls_cert, &args.server.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: args.server.tls_ca.clone(),
                domain: args.server.tls_domain.clone(),
            }),
            _ => None,
        },
        ..PipelineConfig::loopback(kafka)
    }
}

pub fn mirror_settings(args: &CommonArgs) -> MirrorSettings {
    MirrorSettings {
        target: match &args.mirror.es {
            Some(url) => MirrorTarget::Elastic(ElasticConfig::from_env(
                url.clone(),
                args.mirror.es_ca.clone(),
            )),
            None => MirrorTarget::Spool,
        },
        data_dir: data_dir(args),
        spool_max_bytes: args.mirror.spool_max_bytes.0,
        names: IndexNames {
            orders: args.mirror.orders_index.clone(),
            metrics: args.mirror.metrics_index.clone(),
        },
    }
}

/// A live session at `level`, as the control center and scenarios start it.
pub fn session_settings(
    args: &CommonArgs,
    level: LoadLevel,
    orders: std::sync::Arc<[Order]>,
) -> SessionSettings {
    let mut args = args.clone();
    args.level.load = Some(level);
    SessionSettings {
        pipeline: pipeline_config(
            &args,
            Some(args.server.listen.unwrap_or(([127, 0, 0, 1], 0).into())),
        ),
        load: level,
        preset: effective_load(&args),
        orders,
        clock: SimClock::new(args.run.time_scale),
        kibana: args
            .mirror
            .kibana
            .clone()
            .map(|url| (url.clone(), ElasticConfig::from_env(url, None))),
        drain_limit: args.run.drain_timeout.0,
        audit_at_stop: false,
    }
}
