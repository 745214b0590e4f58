//! The deployment as its topics tell it, folded record by record: which
//! orders were accepted (the orders topic), where each one is and who drove
//! it (the events topic), who is there (the processes topic), and how far
//! the group's committed offsets trail the orders topic. Pure: the observer
//! feeds it, `snapshot` summarises it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::presence::{Presence, PresenceCounts, SILENT_AFTER_MS};
use crate::{
    metrics::{new_histogram, summarize, LatencySummary},
    order::{OrderId, RunId, State, Transition},
};

/// Transitions kept for the live feed.
const FEED: usize = 500;
/// Orders whose whole timeline is kept (the most recent ones).
const TIMELINES: usize = 2_000;
/// Throughput is Finished events per second over this window.
const THROUGHPUT_WINDOW_MS: i64 = 10_000;

#[derive(Default)]
pub struct FleetView {
    orders: HashMap<OrderId, OrderTrack>,
    processes: BTreeMap<String, ProcessTrack>,
    feed: VecDeque<Transition>,
    /// Transitions seen in all, so a reader of the feed knows what is new.
    transitions_seen: u64,
    timelines: HashMap<OrderId, Vec<Transition>>,
    timeline_order: VecDeque<OrderId>,
    /// Kept as records arrive: summarising never walks every order.
    reconciliation: Reconciliation,
    latency: Latencies,
    partitions: BTreeMap<i32, PartitionOffsets>,
}

struct Latencies {
    taken_up: Histogram<u64>,
    completion: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            taken_up: new_histogram(),
            completion: new_histogram(),
        }
    }
}

#[derive(Clone, Copy, Default)]
struct OrderTrack {
    /// On the orders topic.
    accepted: bool,
    /// The latest state its events reached, and who wrote that event.
    state: Option<(State, ProcessIndex)>,
    finished_events: u32,
    /// The run its latest event named, and the states that run's events
    /// were seen entering (one bit per state).
    run: Option<RunId>,
    states_seen: u8,
}

impl OrderTrack {
    /// Whether `transition` repeats an event already seen from the same run
    /// (a record the broker wrote twice); notes it otherwise. Events of
    /// different runs, or without a run, are never repeats.
    fn repeats(&mut self, transition: &Transition) -> bool {
        let Some(run) = transition.run else {
            return false;
        };
        if self.run != Some(run) {
            self.run = Some(run);
            self.states_seen = 0;
        }
        let state = 1 << transition.to.index();
        let seen = self.states_seen & state != 0;
        self.states_seen |= state;
        seen
    }
}

type ProcessIndex = u32;

#[derive(Default)]
struct ProcessTrack {
    index: ProcessIndex,
    presence: Option<Presence>,
    transitions: u64,
    finished: u64,
    /// Orders whose latest event this process wrote, short of Finished.
    in_flight: u64,
    /// When its recent Finished events were stamped, for its throughput.
    recent_finishes: VecDeque<i64>,
}

/// Where the group stands on one partition of the orders topic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PartitionOffsets {
    pub partition: i32,
    /// The group's committed offset; None before its first commit.
    pub committed: Option<i64>,
    /// The partition's log start and end (high watermark).
    pub start: i64,
    pub end: i64,
}

impl PartitionOffsets {
    /// Records not yet committed by the group.
    pub fn lag(&self) -> i64 {
        (self.end - self.committed.unwrap_or(self.start).max(self.start)).max(0)
    }
}

/// One summary of the deployment: what `watch --once --json` prints.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FleetSnapshot {
    pub at_ms: i64,
    pub orders: Reconciliation,
    pub processes: Vec<ProcessRow>,
    pub partitions: Vec<PartitionRow>,
    /// Records the group has not committed, over every partition.
    pub lag: i64,
    /// Finished events per second over the last ten seconds.
    pub throughput_per_s: f64,
    pub latency_ms: FleetLatency,
}

/// Every order on the orders topic, by id: finished, or still waiting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    /// Distinct orders on the orders topic.
    pub accepted: u64,
    /// Of those, orders with a Finished event.
    pub finished: u64,
    /// Accepted, no Finished event yet.
    pub waiting: u64,
    /// Orders with more than one Finished event.
    pub finished_twice: u64,
    pub finished_events: u64,
    /// Finished events for orders not (or no longer) on the orders topic.
    pub finished_unaccepted: u64,
    /// Events that repeat one already seen from the same run, left out of
    /// every count: records the broker wrote twice, not orders run twice.
    pub repeated_events: u64,
}

impl Reconciliation {
    /// Records the broker wrote twice, when there were any: said next to
    /// "finished twice", which leaves them out.
    pub fn repeated_note(&self) -> String {
        match self.repeated_events {
            0 => String::new(),
            n => format!(" (+{n} records the broker repeated)"),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProcessRow {
    pub by: String,
    pub role: String,
    /// up, stopped, silent (not heard from lately), or events-only (an
    /// older orderdeck that does not announce itself).
    pub status: String,
    pub members: Vec<MemberRow>,
    /// From its events: Finished events it wrote, transitions, orders whose
    /// latest event it wrote short of Finished, and its recent throughput.
    pub finished: u64,
    pub transitions: u64,
    pub in_flight: u64,
    pub throughput_per_s: f64,
    /// What it says about itself (its last announcement).
    pub reported: Option<PresenceCounts>,
    pub server: Option<String>,
    pub last_seen_ms_ago: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemberRow {
    pub name: String,
    pub partitions: Vec<i32>,
    pub lag: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PartitionRow {
    pub partition: i32,
    pub committed: Option<i64>,
    pub end: i64,
    pub lag: i64,
    /// The member holding it, as its process last announced.
    pub owner: Option<String>,
}

/// Latencies from event timestamps: acknowledged → Processing, and
/// acknowledged → Finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct FleetLatency {
    pub taken_up: LatencySummary,
    pub completion: LatencySummary,
}

impl FleetView {
    /// An order record on the orders topic.
    pub fn accepted(&mut self, id: OrderId) {
        let track = self.orders.entry(id).or_default();
        if track.accepted {
            return; // a client's retry wrote it twice: one order
        }
        track.accepted = true;
        let counts = &mut self.reconciliation;
        counts.accepted += 1;
        if track.finished_events > 0 {
            counts.finished_unaccepted -= 1;
            counts.finished += 1;
        } else {
            counts.waiting += 1;
        }
    }

    /// One record of the events topic.
    pub fn transition(&mut self, transition: Transition) {
        let by = transition.by.clone().unwrap_or_else(|| "unknown".into());
        let index = self.process(&by).index;
        let track = self.orders.entry(transition.order_id).or_default();
        if track.repeats(&transition) {
            self.reconciliation.repeated_events += 1;
            return;
        }
        let previous = track.state;
        track.state = Some((transition.to, index));
        let finished = transition.to == State::Finished;
        if finished {
            track.finished_events += 1;
            let counts = &mut self.reconciliation;
            counts.finished_events += 1;
            match (track.finished_events, track.accepted) {
                (1, true) => {
                    counts.waiting -= 1;
                    counts.finished += 1;
                }
                (1, false) => counts.finished_unaccepted += 1,
                (2, _) => counts.finished_twice += 1,
                _ => {}
            }
        }
        if let Some((state, writer)) = previous {
            if state != State::Finished {
                if let Some(process) = self.processes.values_mut().find(|p| p.index == writer) {
                    process.in_flight = process.in_flight.saturating_sub(1);
                }
            }
        }
        let process = self.processes.get_mut(&by).expect("made above");
        process.transitions += 1;
        if finished {
            process.finished += 1;
            process.recent_finishes.push_back(transition.at_unix_ms);
            while process
                .recent_finishes
                .front()
                .is_some_and(|at| *at < transition.at_unix_ms - THROUGHPUT_WINDOW_MS)
            {
                process.recent_finishes.pop_front();
            }
        } else {
            process.in_flight += 1;
        }
        self.record_latency(&transition);
        self.keep_timeline(&transition);
        self.transitions_seen += 1;
        if self.feed.len() == FEED {
            self.feed.pop_front();
        }
        self.feed.push_back(transition);
    }

    /// One announcement on the processes topic.
    pub fn presence(&mut self, presence: Presence) {
        let by = presence.by.clone();
        let process = self.process(&by);
        // Announcements of one process arrive in order (one key, one partition).
        process.presence = Some(presence);
    }

    /// The group's position on each partition of the orders topic.
    pub fn offsets(&mut self, partitions: impl IntoIterator<Item = PartitionOffsets>) {
        self.partitions = partitions.into_iter().map(|p| (p.partition, p)).collect();
    }

    /// The latest transitions, oldest first, and how many there were in all.
    pub fn feed(&self) -> (impl Iterator<Item = &Transition>, u64) {
        (self.feed.iter(), self.transitions_seen)
    }

    /// Every transition of a recent order, in order.
    pub fn timeline(&self, id: OrderId) -> &[Transition] {
        self.timelines.get(&id).map_or(&[], Vec::as_slice)
    }

    pub fn snapshot(&self, now_ms: i64) -> FleetSnapshot {
        let orders = self.reconciliation;
        let owners = self.owners(now_ms);
        let partitions: Vec<PartitionRow> = self
            .partitions
            .values()
            .map(|p| PartitionRow {
                partition: p.partition,
                committed: p.committed,
                end: p.end,
                lag: p.lag(),
                owner: owners.get(&p.partition).cloned(),
            })
            .collect();
        let lag_of = |name: &str| -> i64 {
            partitions
                .iter()
                .filter(|p| p.owner.as_deref() == Some(name))
                .map(|p| p.lag)
                .sum()
        };
        let processes = self
            .processes
            .iter()
            .map(|(by, track)| {
                let presence = track.presence.as_ref();
                let current = presence.filter(|p| status_of(p, now_ms) == "up");
                ProcessRow {
                    by: by.clone(),
                    role: presence.map_or("–", Presence::role).to_owned(),
                    status: presence
                        .map_or("events-only", |p| status_of(p, now_ms))
                        .to_owned(),
                    members: current
                        .map(|p| {
                            p.members
                                .iter()
                                .map(|m| MemberRow {
                                    name: m.name.clone(),
                                    partitions: m.partitions.clone(),
                                    lag: lag_of(&m.name),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    finished: track.finished,
                    transitions: track.transitions,
                    in_flight: track.in_flight,
                    throughput_per_s: finishes_per_second(&track.recent_finishes, now_ms),
                    reported: presence.map(|p| p.counts),
                    server: presence.and_then(|p| p.server.clone()),
                    last_seen_ms_ago: presence.map(|p| (now_ms - p.at_ms).max(0)),
                }
            })
            .collect::<Vec<_>>();
        FleetSnapshot {
            at_ms: now_ms,
            orders,
            lag: partitions.iter().map(|p| p.lag).sum(),
            throughput_per_s: processes.iter().map(|p| p.throughput_per_s).sum(),
            processes,
            partitions,
            latency_ms: FleetLatency {
                taken_up: summarize(&self.latency.taken_up),
                completion: summarize(&self.latency.completion),
            },
        }
    }

    /// Partition → member, from the announcements of processes still up.
    fn owners(&self, now_ms: i64) -> HashMap<i32, String> {
        self.processes
            .values()
            .filter_map(|track| track.presence.as_ref())
            .filter(|p| status_of(p, now_ms) == "up")
            .flat_map(|p| {
                p.members.iter().flat_map(|member| {
                    member
                        .partitions
                        .iter()
                        .map(|partition| (*partition, member.name.clone()))
                })
            })
            .collect()
    }

    fn process(&mut self, by: &str) -> &mut ProcessTrack {
        let next = self.processes.len() as ProcessIndex;
        self.processes
            .entry(by.to_owned())
            .or_insert_with(|| ProcessTrack {
                index: next,
                ..ProcessTrack::default()
            })
    }

    fn record_latency(&mut self, transition: &Transition) {
        let Some(accepted_s) = transition.accepted_at else {
            return;
        };
        let micros = ((transition.at_unix_ms as f64 - accepted_s * 1e3) * 1e3).max(0.0) as u64;
        let histogram = match (transition.from, transition.to) {
            (None, _) => &mut self.latency.taken_up,
            (_, State::Finished) => &mut self.latency.completion,
            _ => return,
        };
        let _ = histogram.record(micros.max(1));
    }

    fn keep_timeline(&mut self, transition: &Transition) {
        let id = transition.order_id;
        if let Some(timeline) = self.timelines.get_mut(&id) {
            timeline.push(transition.clone());
            return;
        }
        if self.timeline_order.len() == TIMELINES {
            if let Some(oldest) = self.timeline_order.pop_front() {
                self.timelines.remove(&oldest);
            }
        }
        self.timeline_order.push_back(id);
        self.timelines.insert(id, vec![transition.clone()]);
    }
}

fn status_of(presence: &Presence, now_ms: i64) -> &'static str {
    if presence.stopped {
        "stopped"
    } else if now_ms - presence.at_ms > SILENT_AFTER_MS {
        "silent"
    } else {
        "up"
    }
}

fn finishes_per_second(stamps: &VecDeque<i64>, now_ms: i64) -> f64 {
    let since = now_ms - THROUGHPUT_WINDOW_MS;
    let recent = stamps.iter().filter(|at| **at > since).count();
    recent as f64 * 1000.0 / THROUGHPUT_WINDOW_MS as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::presence::MemberPresence;

    fn step(id: OrderId, from: Option<State>, to: State, at: i64, by: &str) -> Transition {
        Transition {
            order_id: id,
            from,
            to,
            estado: to.spanish_name().into(),
            at_unix_ms: at,
            previous_state_ms: 0.0,
            product: "p".into(),
            region: "r".into(),
            order: None,
            accepted_at: Some(1.0),
            by: Some(by.into()),
            member: None,
            run: None,
        }
    }

    #[test]
    fn records_the_broker_repeated_are_left_out_and_second_runs_are_not() {
        let mut view = FleetView::default();
        let [once, twice] = [(); 2].map(|_| OrderId::new_random());
        let run = |n: u64, step: Transition| Transition {
            run: Some(format!("{n:x}").parse().unwrap()),
            ..step
        };
        for id in [once, twice] {
            view.accepted(id);
        }
        // One run whose requests the broker appended twice: the copies
        // come after what was appended meanwhile.
        let processing = run(1, step(once, None, State::Processing, 1_100, "w1"));
        let finished = run(
            1,
            step(once, Some(State::Delivered), State::Finished, 1_500, "w1"),
        );
        for event in [&processing, &finished, &processing, &finished] {
            view.transition(event.clone());
        }
        // Two runs of one order (the first abandoned after writing Finished).
        view.transition(run(
            2,
            step(twice, Some(State::Delivered), State::Finished, 1_200, "w1"),
        ));
        view.transition(run(
            3,
            step(twice, Some(State::Delivered), State::Finished, 1_300, "w2"),
        ));

        let snapshot = view.snapshot(2_000);
        assert_eq!(
            snapshot.orders,
            Reconciliation {
                accepted: 2,
                finished: 2,
                waiting: 0,
                finished_twice: 1,
                finished_events: 3,
                finished_unaccepted: 0,
                repeated_events: 2,
            }
        );
        let w1 = &snapshot.processes[0];
        assert_eq!((w1.finished, w1.transitions, w1.in_flight), (2, 3, 0));
        assert_eq!(view.timeline(once).len(), 2);
    }

    fn presence(by: &str, at_ms: i64, partitions: Vec<i32>) -> Presence {
        Presence {
            by: by.into(),
            group: "g".into(),
            started_at_ms: 0,
            at_ms,
            stopped: false,
            server: None,
            members: vec![MemberPresence {
                name: format!("{by}/c1"),
                partitions,
            }],
            counts: PresenceCounts::default(),
        }
    }

    #[test]
    fn orders_reconcile_by_id_across_processes() {
        let mut view = FleetView::default();
        let [a, b, c, d] = [(); 4].map(|_| OrderId::new_random());
        for id in [a, b, c] {
            view.accepted(id);
        }
        // a finished by w1; b handed over mid-way from w1 to w2, finished
        // twice (what the reconciliation must show); c still running on w2;
        // d finished but its order record is gone.
        view.transition(step(a, None, State::Processing, 1_100, "w1"));
        view.transition(step(
            a,
            Some(State::Processing),
            State::Finished,
            1_500,
            "w1",
        ));
        view.transition(step(b, None, State::Processing, 1_100, "w1"));
        view.transition(step(b, None, State::Processing, 1_200, "w2"));
        view.transition(step(
            b,
            Some(State::Delivered),
            State::Finished,
            2_000,
            "w2",
        ));
        view.transition(step(
            b,
            Some(State::Delivered),
            State::Finished,
            2_100,
            "w2",
        ));
        view.transition(step(c, None, State::Processing, 1_300, "w2"));
        view.transition(step(
            d,
            Some(State::Delivered),
            State::Finished,
            1_300,
            "w1",
        ));

        let snapshot = view.snapshot(3_000);
        assert_eq!(
            snapshot.orders,
            Reconciliation {
                accepted: 3,
                finished: 2,
                waiting: 1,
                finished_twice: 1,
                finished_events: 4,
                finished_unaccepted: 1,
                repeated_events: 0,
            }
        );
        let w1 = &snapshot.processes[0];
        let w2 = &snapshot.processes[1];
        assert_eq!((w1.by.as_str(), w1.finished, w1.in_flight), ("w1", 2, 0));
        assert_eq!((w2.by.as_str(), w2.finished, w2.in_flight), ("w2", 2, 1));
        assert_eq!(w1.status, "events-only");
        // d's order record read after its Finished event; a's written twice.
        view.accepted(d);
        view.accepted(a);
        let later = view.snapshot(3_000).orders;
        assert_eq!(
            (
                later.accepted,
                later.finished,
                later.waiting,
                later.finished_unaccepted
            ),
            (4, 3, 1, 0)
        );
        assert_eq!(view.timeline(b).len(), 4);
        // Taken up 100–300 ms after the ack at 1,000 ms; done at 500–1,100 ms.
        assert_eq!(snapshot.latency_ms.taken_up.count, 4);
        assert_eq!(snapshot.latency_ms.completion.count, 4);
        assert!((snapshot.latency_ms.completion.max - 1_100.0).abs() < 2.0);
    }

    #[test]
    fn lag_goes_to_the_member_that_announced_the_partition() {
        let mut view = FleetView::default();
        view.presence(presence("w1", 10_000, vec![0]));
        view.presence(presence("w2", 10_000, vec![1]));
        view.presence(presence("gone", 1_000, vec![2]));
        view.offsets([
            PartitionOffsets {
                partition: 0,
                committed: Some(90),
                start: 0,
                end: 100,
            },
            PartitionOffsets {
                partition: 1,
                committed: None,
                start: 5,
                end: 8,
            },
            PartitionOffsets {
                partition: 2,
                committed: Some(4),
                start: 0,
                end: 4,
            },
        ]);
        let snapshot = view.snapshot(11_000);
        assert_eq!(snapshot.lag, 13);
        let owners: Vec<_> = snapshot
            .partitions
            .iter()
            .map(|p| p.owner.as_deref())
            .collect();
        assert_eq!(owners, [Some("w1/c1"), Some("w2/c1"), None]);
        let statuses: Vec<_> = snapshot.processes.iter().map(|p| &p.status).collect();
        assert_eq!(statuses, ["silent", "up", "up"]);
        assert_eq!(snapshot.processes[1].members[0].lag, 10);
        assert!(snapshot.processes[0].members.is_empty());
    }

    #[test]
    fn throughput_counts_the_last_ten_seconds_of_finishes() {
        let mut view = FleetView::default();
        for n in 0..30 {
            let id = OrderId::new_random();
            view.transition(step(
                id,
                Some(State::Delivered),
                State::Finished,
                n * 1_000,
                "w",
            ));
        }
        // Finishes stamped 20..=29 s are within ten seconds of 29.5 s.
        assert_eq!(view.snapshot(29_500).throughput_per_s, 1.0);
        assert_eq!(view.snapshot(60_000).throughput_per_s, 0.0);
    }
}
