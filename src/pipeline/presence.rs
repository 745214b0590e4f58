//! This process on the processes topic: once a second while it runs, and
//! once more, marked stopped, when it stops (see `fleet::presence`).

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    clock::unix_millis_now,
    fleet::presence::{MemberPresence, Presence, PresenceCounts, PRESENCE_EVERY},
    kafka::{consumer::Assignment, producer::OrderProducer, this_process},
    metrics::{Counter, Metrics},
    processing::registry::OrderRegistry,
};

pub(super) struct Announcer {
    pub producer: Arc<OrderProducer>,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<OrderRegistry>,
    pub assigned: Arc<watch::Sender<Assignment>>,
    pub group: String,
    pub server: Option<String>,
    pub started_at_ms: i64,
}

impl Announcer {
    fn presence(&self, stopped: bool) -> Presence {
        let members = self
            .assigned
            .borrow()
            .iter()
            .map(|(member, partitions)| MemberPresence {
                name: format!("{}/c{member}", this_process()),
                partitions: partitions.iter().copied().collect(),
            })
            .collect();
        Presence {
            by: this_process().to_owned(),
            group: self.group.clone(),
            started_at_ms: self.started_at_ms,
            at_ms: unix_millis_now(),
            stopped,
            server: self.server.clone(),
            members: if stopped { Vec::new() } else { members },
            counts: PresenceCounts {
                acknowledged: self.metrics.get(Counter::Acknowledged),
                finished: self.metrics.get(Counter::Finished),
                in_flight: self.registry.in_flight() as u64,
                redelivered: self.metrics.get(Counter::Redelivered),
                handed_over: self.metrics.get(Counter::HandedOver),
            },
        }
    }

    /// Queues an announcement; never waits (a refused one is followed by
    /// the next a second later).
    pub fn announce(&self, stopped: bool) {
        let presence = self.presence(stopped);
        let value = serde_json::to_vec(&presence).expect("a Presence always serializes");
        if !self.producer.publish_presence(&presence.by, &value) {
            tracing::debug!("the producer's queue refused this process's announcement");
        }
    }

    /// Announces every [`PRESENCE_EVERY`] until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(PRESENCE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => self.announce(false),
            }
        }
    }
}
