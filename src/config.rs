//! Load levels and the validated configuration built from the command line.

use std::{net::SocketAddr, time::Duration};

use crate::{
    cli::CommonArgs,
    clock::{DelayRange, SimClock},
    grpc::tls::TlsFiles,
    grpc::ServerLimits,
    kafka::{BrokerTarget, KafkaOptions},
    pipeline::PipelineConfig,
    sinks::{elastic::ElasticConfig, notify::NotifySettings, IndexNames, SinkSettings, SinkTarget},
};

/// The simulation's intensity, as the original named it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadLevel {
    #[value(alias = "baja")]
    Low,
    #[value(alias = "media")]
    Medium,
    #[value(alias = "alta")]
    High,
}

/// What a load level means.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadPreset {
    pub clients: usize,
    /// Orders per second over all clients; None = as fast as they can.
    pub rate: Option<f64>,
    /// Simulated time an order spends in each state.
    pub stage_delay: DelayRange,
}

impl LoadLevel {
    pub const ALL: [LoadLevel; 3] = [LoadLevel::Low, LoadLevel::Medium, LoadLevel::High];

    pub fn preset(self) -> LoadPreset {
        let secs = Duration::from_secs_f64;
        match self {
            // The original's timings: 1–3 s per state.
            LoadLevel::Low => LoadPreset {
                clients: 2,
                rate: Some(10.0),
                stage_delay: DelayRange::new(secs(1.0), secs(3.0)),
            },
            LoadLevel::Medium => LoadPreset {
                clients: 8,
                rate: Some(100.0),
                stage_delay: DelayRange::new(secs(0.5), secs(1.5)),
            },
            LoadLevel::High => LoadPreset {
                clients: 32,
                rate: None,
                stage_delay: DelayRange::new(secs(0.1), secs(0.5)),
            },
        }
    }

    /// The original's name for the level (also accepted on the command line).
    pub fn spanish_name(self) -> &'static str {
        match self {
            LoadLevel::Low => "baja",
            LoadLevel::Medium => "media",
            LoadLevel::High => "alta",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LoadLevel::Low => "low",
            LoadLevel::Medium => "medium",
            LoadLevel::High => "high",
        }
    }
}

impl std::fmt::Display for LoadLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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
    let events_topic = args
        .events_topic
        .clone()
        .unwrap_or_else(|| format!("{}.events", args.topic));
    PipelineConfig {
        kafka: KafkaOptions {
            target: broker_target(args),
            topic: args.topic.clone(),
            events_topic,
            metrics_topic: format!("{}.metrics", args.topic),
            partitions: args.partitions,
            replication: args.replication,
            group: args.group.clone(),
            extra: args
                .kafka_settings
                .iter()
                .map(|s| (s.key.clone(), s.value.clone()))
                .collect(),
            delivery_timeout: args.delivery_timeout.0,
        },
        embedded_brokers: 3,
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
        dedup_memory: 200_000,
        sink: sink_settings(args),
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
    }
}

pub fn sink_settings(args: &CommonArgs) -> SinkSettings {
    SinkSettings {
        target: match &args.es {
            Some(url) => {
                SinkTarget::Elastic(ElasticConfig::from_env(url.clone(), args.es_ca.clone()))
            }
            None => SinkTarget::Spool,
        },
        data_dir: args.data_dir.clone(),
        spool_max_bytes: args.spool_max_bytes.0,
        names: IndexNames {
            orders: args.orders_index.clone(),
            metrics: args.metrics_index.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn spanish_names_are_accepted() {
        for (spanish, level) in [
            ("baja", LoadLevel::Low),
            ("media", LoadLevel::Medium),
            ("alta", LoadLevel::High),
            ("high", LoadLevel::High),
        ] {
            assert_eq!(LoadLevel::from_str(spanish, true), Ok(level));
        }
        for level in LoadLevel::ALL {
            assert_eq!(LoadLevel::from_str(level.spanish_name(), true), Ok(level));
        }
        assert!(LoadLevel::from_str("extreme", true).is_err());
    }

    #[test]
    fn presets_grow_with_the_level() {
        let [low, medium, high] = LoadLevel::ALL.map(LoadLevel::preset);
        assert!(low.clients < medium.clients && medium.clients < high.clients);
        assert!(low.stage_delay.max > high.stage_delay.max);
        assert_eq!(low.stage_delay.min, Duration::from_secs(1));
        assert_eq!(high.rate, None);
    }
}
