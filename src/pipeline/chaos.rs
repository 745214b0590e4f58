//! Faults injected on purpose, to watch the pipeline lose nothing.

use std::time::Duration;

use crate::kafka::embedded::Fault;

/// What can be broken while the pipeline runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chaos {
    BrokersDown,
    BrokersUp,
    /// The next produce requests fail with retriable errors.
    ProduceErrors(usize),
    /// Added to every broker round trip; zero removes it.
    RoundTripTime(Duration),
    /// Every orders partition changes leader.
    MoveLeaders,
    /// One consumer member dies with its orders in flight; a new one joins.
    KillConsumer,
    /// The next order's run panics midway (and is run again).
    PanicOrder,
    /// Elasticsearch becomes unreachable (the relay in front of it is cut).
    ElasticDown,
    ElasticUp,
}

impl Chaos {
    /// The broker fault this is, for the orders topic; None for faults in
    /// the consumers.
    pub fn broker_fault(&self, topic: &str, partitions: i32) -> Option<Fault> {
        Some(match self {
            Chaos::BrokersDown => Fault::BrokersDown,
            Chaos::BrokersUp => Fault::BrokersUp,
            Chaos::ProduceErrors(count) => Fault::ProduceErrors { count: *count },
            Chaos::RoundTripTime(rtt) => Fault::RoundTripTime(*rtt),
            Chaos::MoveLeaders => Fault::MoveLeaders {
                topic: topic.to_owned(),
                partitions,
            },
            Chaos::KillConsumer | Chaos::PanicOrder | Chaos::ElasticDown | Chaos::ElasticUp => {
                return None
            }
        })
    }
}

impl std::fmt::Display for Chaos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Chaos::KillConsumer => write!(f, "consumer killed"),
            Chaos::PanicOrder => write!(f, "an order's run panicked"),
            Chaos::MoveLeaders => write!(f, "partition leaders moved"),
            Chaos::ElasticDown => write!(f, "Elasticsearch unreachable"),
            Chaos::ElasticUp => write!(f, "Elasticsearch reachable again"),
            other => match other.broker_fault("", 0) {
                Some(fault) => fault.fmt(f),
                None => Ok(()),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("broker faults need the embedded broker (run without --brokers)")]
    NeedsEmbeddedBroker,
    #[error("no consumer is running")]
    NoConsumers,
    #[error("Elasticsearch outages need --es with an http:// URL, and a scenario that uses them")]
    NeedsElasticRelay,
    #[error("the broker refused the fault: {0}")]
    Kafka(String),
}

/// The faults in force now, and a count of everything injected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChaosLog {
    pub brokers_down: bool,
    pub elastic_down: bool,
    pub round_trip: Duration,
    pub injected: u64,
    pub last: Option<Chaos>,
}

impl ChaosLog {
    pub fn record(&mut self, chaos: Chaos) {
        match chaos {
            Chaos::BrokersDown => self.brokers_down = true,
            Chaos::BrokersUp => self.brokers_down = false,
            Chaos::ElasticDown => self.elastic_down = true,
            Chaos::ElasticUp => self.elastic_down = false,
            Chaos::RoundTripTime(rtt) => self.round_trip = rtt,
            _ => {}
        }
        self.injected += 1;
        self.last = Some(chaos);
    }

    /// The lasting faults in force, as the screen names them.
    pub fn in_force(&self) -> Vec<String> {
        let mut faults = Vec::new();
        if self.brokers_down {
            faults.push("brokers down".to_owned());
        }
        if self.elastic_down {
            faults.push("Elasticsearch cut".to_owned());
        }
        if !self.round_trip.is_zero() {
            faults.push(format!("+{} ms round trip", self.round_trip.as_millis()));
        }
        faults
    }

    /// True while a lasting fault (brokers down, added latency, Elasticsearch
    /// cut) is in force.
    pub fn degraded(&self) -> bool {
        self.brokers_down || self.elastic_down || !self.round_trip.is_zero()
    }
}
