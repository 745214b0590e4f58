//! What each process says about itself on the processes topic, once a
//! second and once more when it stops: who it is, its consumers and their
//! partitions, and its own counts. The events topic says what happened to
//! each order; this says who is there, even while no order moves.

use serde::{Deserialize, Serialize};

/// How often a running process announces itself.
pub const PRESENCE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A process not heard from for this long is shown as silent (killed, or
/// cut off from Kafka): five announcements missed.
pub const SILENT_AFTER_MS: i64 = 5_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    /// `host:pid`, as in the `by` of its events.
    pub by: String,
    pub group: String,
    pub started_at_ms: i64,
    pub at_ms: i64,
    /// Its last announcement: it stopped (gracefully).
    #[serde(default)]
    pub stopped: bool,
    /// Where its gRPC server listens, if it runs one.
    #[serde(default)]
    pub server: Option<String>,
    /// Its consumers, with the partitions of the orders topic each holds.
    #[serde(default)]
    pub members: Vec<MemberPresence>,
    pub counts: PresenceCounts,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberPresence {
    /// `host:pid/c1`: unique in the group, readable on a screen.
    pub name: String,
    pub partitions: Vec<i32>,
}

/// A process's own counters, as its report would give them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceCounts {
    pub acknowledged: u64,
    pub finished: u64,
    pub in_flight: u64,
    pub redelivered: u64,
    pub handed_over: u64,
}

impl Presence {
    /// What the process does: serves orders, runs them, or both.
    pub fn role(&self) -> &'static str {
        match (self.server.is_some(), self.members.is_empty()) {
            (true, true) => "server",
            (true, false) => "server + consumers",
            (false, _) => "worker",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_reads_back_and_older_fields_default() {
        let presence = Presence {
            by: "host:1".into(),
            group: "orderdeck".into(),
            started_at_ms: 1,
            at_ms: 2,
            stopped: false,
            server: Some("0.0.0.0:50051".into()),
            members: vec![MemberPresence {
                name: "host:1/c1".into(),
                partitions: vec![0, 3],
            }],
            counts: PresenceCounts {
                finished: 7,
                ..PresenceCounts::default()
            },
        };
        let json = serde_json::to_vec(&presence).unwrap();
        assert_eq!(serde_json::from_slice::<Presence>(&json).unwrap(), presence);
        assert_eq!(presence.role(), "server + consumers");

        let minimal: Presence = serde_json::from_str(
            r#"{"by":"h:2","group":"g","started_at_ms":0,"at_ms":0,"counts":{"acknowledged":0,"finished":0,"in_flight":0,"redelivered":0,"handed_over":0}}"#,
        )
        .unwrap();
        assert_eq!(minimal.role(), "worker");
        assert!(!minimal.stopped);
    }
}
