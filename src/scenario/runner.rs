//! Plays a scenario on a live session: phase settings and ramps, timed
//! events, and what each phase measured.

use std::time::Duration;

use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::file::{EventAction, PhasePlan, Scenario};
use crate::{
    metrics::{per_second, OrderCounts, PhaseLatency},
    session::{Command, Phase, SessionStatus},
    slo::{Gate, Measures, PhaseOutcome, Verdict},
};

/// How often ramps move and events are looked at.
const TICK: Duration = Duration::from_millis(100);

/// Where a scenario stands, for the screen and the progress line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    pub scenario: String,
    /// Each phase's name and planned duration.
    pub phases: Vec<(String, Duration)>,
    /// The phase running (== `phases.len()` once every phase is done).
    pub current: usize,
    pub phase_elapsed: Duration,
    /// The next event of this phase: in how long, and what.
    pub next_event: Option<(Duration, String)>,
    /// The gates judged on this phase so far.
    pub gates: Vec<Verdict>,
    /// Verdicts of the phases already over.
    pub judged: Vec<Verdict>,
}

impl Timeline {
    pub fn new(scenario: &Scenario) -> Self {
        Self {
            scenario: scenario.name.clone(),
            phases: scenario
                .phases
                .iter()
                .map(|p| (p.name.clone(), p.duration))
                .collect(),
            ..Self::default()
        }
    }

    pub fn done(&self) -> bool {
        self.current >= self.phases.len()
    }

    /// Where it stands, in words: `scenario NAME · phase 2/3 ramp 12/60 s`,
    /// or `scenario NAME: every phase done`.
    pub fn position(&self) -> String {
        match self.phases.get(self.current) {
            Some((name, duration)) => format!(
                "scenario {} · phase {}/{} {name} {:.0}/{:.0} s",
                self.scenario,
                self.current + 1,
                self.phases.len(),
                self.phase_elapsed.as_secs_f64(),
                duration.as_secs_f64()
            ),
            None => format!("scenario {}: every phase done", self.scenario),
        }
    }
}

/// What drives the session, and how the runner is told to move on.
pub struct Controls<'a> {
    pub commands: &'a mpsc::Sender<Command>,
    pub status: watch::Receiver<SessionStatus>,
    /// Each change ends the current phase early.
    pub skip: watch::Receiver<u64>,
    /// Ends the scenario (what ran is still measured).
    pub stop: CancellationToken,
    pub timeline: &'a watch::Sender<Timeline>,
}

/// Plays every phase in order; returns what each measured. Waits for the
/// session to run first.
pub async fn play(
    scenario: &Scenario,
    gates: &[Gate],
    mut controls: Controls<'_>,
) -> Vec<PhaseOutcome> {
    let running = match controls
        .status
        .wait_for(|s| s.phase != Phase::Starting)
        .await
    {
        Ok(status) => status.phase == Phase::Running,
        Err(_) => false,
    };
    if !running {
        return Vec::new();
    }
    let mut outcomes = Vec::new();
    let mut closed = controls.status.borrow().closed_phase.0;
    // Latencies before the first phase (the group forming) belong to none.
    closed = close_phase(&mut controls, closed)
        .await
        .map_or(closed, |(n, _)| n);
    for (index, plan) in scenario.phases.iter().enumerate() {
        // A skip asked for before this phase shows does not end it.
        controls.skip.mark_unchanged();
        controls.timeline.send_modify(|t| {
            t.current = index;
            t.phase_elapsed = Duration::ZERO;
        });
        let start_counts = controls.status.borrow().metrics.counts;
        tracing::info!(phase = plan.name, "scenario phase started");
        let outcome = play_phase(plan, gates, &mut controls, start_counts).await;
        tracing::info!(
            phase = plan.name,
            elapsed_s = outcome.elapsed.as_secs_f64(),
            skipped = outcome.skipped,
            "scenario phase ended"
        );
        let Some((n, latency)) = close_phase(&mut controls, closed).await else {
            break;
        };
        closed = n;
        let end = controls.status.borrow().clone();
        let measures = measures(
            &latency,
            &start_counts,
            &end.metrics.counts,
            outcome.elapsed,
            outcome.overdue,
        );
        let verdicts: Vec<_> = gates
            .iter()
            .filter_map(|gate| gate.judge(&plan.name, &measures, false))
            .collect();
        controls.timeline.send_modify(|t| {
            t.judged.extend(verdicts);
            t.gates.clear();
        });
        outcomes.push(PhaseOutcome {
            name: plan.name.clone(),
            elapsed: outcome.elapsed,
            skipped: outcome.skipped,
            measures,
        });
        if controls.stop.is_cancelled() {
            break;
        }
    }
    controls.timeline.send_modify(|t| {
        t.current = t.phases.len();
        t.next_event = None;
    });
    outcomes
}

struct Played {
    elapsed: Duration,
    skipped: bool,
    /// The most acknowledged orders overdue at once.
    overdue: u64,
}

async fn play_phase(
    plan: &PhasePlan,
    gates: &[Gate],
    controls: &mut Controls<'_>,
    start_counts: OrderCounts,
) -> Played {
    let send = |command| {
        // The session reads commands at once; a full inbox means it is stopping.
        let _ = controls.commands.try_send(command);
    };
    if let Some(level) = plan.load {
        send(Command::SetLoad(level));
    }
    if let Some(consumers) = plan.consumers {
        send(Command::SetConsumers(consumers));
    }
    if let Some(paused) = plan.paused {
        send(Command::SetPaused(paused));
    }
    let mut ramps = Ramps::default();
    ramps.apply(plan, 0.0, &send);
    let started = Instant::now();
    let mut fired = 0;
    let mut overdue = 0;
    let mut skipped = false;
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = controls.skip.changed() => skipped = true,
            _ = controls.stop.cancelled() => skipped = true,
        }
        let elapsed = started.elapsed();
        // A session stopping (the user quit) ends the scenario too.
        skipped |= controls.status.borrow().phase != Phase::Running;
        if skipped || elapsed >= plan.duration {
            return Played {
                elapsed: elapsed.min(plan.duration),
                skipped,
                overdue,
            };
        }
        while let Some(event) = plan.events.get(fired).filter(|e| e.at <= elapsed) {
            send(match event.action {
                EventAction::Chaos(chaos) => Command::Inject(chaos),
                EventAction::Pause => Command::SetPaused(true),
                EventAction::Resume => Command::SetPaused(false),
            });
            tracing::info!(phase = plan.name, event = %event.action, "scenario event");
            fired += 1;
        }
        ramps.apply(
            plan,
            elapsed.as_secs_f64() / plan.duration.as_secs_f64(),
            &send,
        );
        let status = controls.status.borrow().clone();
        overdue = overdue.max(status.reconciliation.overdue);
        let so_far = measures(
            &status.phase_latency,
            &start_counts,
            &status.metrics.counts,
            elapsed,
            overdue,
        );
        controls.timeline.send_modify(|t| {
            t.phase_elapsed = elapsed;
            t.next_event = plan
                .events
                .get(fired)
                .map(|e| (e.at.saturating_sub(elapsed), e.action.to_string()));
            t.gates = gates
                .iter()
                .filter_map(|gate| gate.judge(&plan.name, &so_far, false))
                .collect();
        });
    }
}

/// The last clients and rate a ramp asked for, so only changes are sent.
#[derive(Default)]
struct Ramps {
    clients: Option<usize>,
    rate: Option<Option<f64>>,
}

impl Ramps {
    fn apply(&mut self, plan: &PhasePlan, fraction: f64, send: &impl Fn(Command)) {
        if let Some(ramp) = plan.clients {
            let clients = ramp.at(fraction).round() as usize;
            if self.clients != Some(clients) {
                self.clients = Some(clients);
                send(Command::SetClients(clients));
            }
        }
        if let Some(rate) = plan.rate {
            let rate = rate.map(|ramp| ramp.at(fraction));
            // A ramp moves the pacer in steps of 1 %, not every tick.
            let moved = match (self.rate, rate) {
                (Some(Some(was)), Some(now)) => (now - was).abs() > was * 0.01,
                (was, now) => was != Some(now),
            };
            if moved {
                self.rate = Some(rate);
                send(Command::SetRate(rate));
            }
        }
    }
}

/// Ends the phase in the session; returns the count of closed phases and
/// the latencies of the one just closed (None if the session stopped).
async fn close_phase(controls: &mut Controls<'_>, closed: u64) -> Option<(u64, PhaseLatency)> {
    controls.commands.send(Command::ClosePhase).await.ok()?;
    let status = controls
        .status
        .wait_for(|s| s.closed_phase.0 > closed || matches!(s.phase, Phase::Stopped))
        .await
        .ok()?;
    (status.closed_phase.0 > closed).then(|| status.closed_phase.clone())
}

fn measures(
    latency: &PhaseLatency,
    start: &OrderCounts,
    end: &OrderCounts,
    elapsed: Duration,
    overdue: u64,
) -> Measures {
    let finished = end.finished.saturating_sub(start.finished);
    Measures {
        send: latency.send,
        end_to_end: latency.end_to_end,
        completion: latency.completion,
        throughput: per_second(finished, elapsed),
        acknowledged: end.acknowledged.saturating_sub(start.acknowledged),
        finished,
        failed: end.failed.saturating_sub(start.failed),
        rejected: end.rejected.saturating_sub(start.rejected),
        overdue,
        lost: None,
        finished_twice: None,
        sink_left: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{load::LoadLevel, pipeline::chaos::Chaos, scenario::file::parse};

    /// A session stand-in: records each command with the (paused) time it
    /// arrived, and closes phases as the real one does.
    async fn fake_session(
        mut inbox: mpsc::Receiver<Command>,
        status: watch::Sender<SessionStatus>,
        started: Instant,
    ) -> Vec<(u64, Command)> {
        let mut seen = Vec::new();
        while let Some(command) = inbox.recv().await {
            if command == Command::ClosePhase {
                status.send_modify(|s| {
                    s.closed_phase.0 += 1;
                    s.metrics.counts.finished += 100;
                });
            }
            seen.push((started.elapsed().as_millis() as u64, command));
        }
        seen
    }

    /// Plays `scenario` (judged by its own gates) on a running stand-in
    /// session; returns the outcomes, every command with the time it came
    /// (ms from the start), and the last timeline.
    async fn play_on_a_stand_in(
        scenario: &Scenario,
        skip: watch::Receiver<u64>,
    ) -> (Vec<PhaseOutcome>, Vec<(u64, Command)>, Timeline) {
        let started = Instant::now();
        let mut initial = SessionStatus::new(
            "embedded".into(),
            LoadLevel::Low,
            LoadLevel::Low.preset(),
            3,
        );
        initial.phase = Phase::Running;
        let (status_tx, status) = watch::channel(initial);
        let (commands, inbox) = mpsc::channel(64);
        let session = tokio::spawn(fake_session(inbox, status_tx, started));
        let (timeline, _view) = watch::channel(Timeline::new(scenario));
        let outcomes = play(
            scenario,
            &scenario.gates,
            Controls {
                commands: &commands,
                status,
                skip,
                stop: CancellationToken::new(),
                timeline: &timeline,
            },
        )
        .await;
        drop(commands);
        let seen = session.await.unwrap();
        let last = timeline.borrow().clone();
        (outcomes, seen, last)
    }

    #[tokio::test(start_paused = true)]
    async fn phases_set_the_load_ramp_and_fire_events_on_time() {
        let scenario = parse(
            "t",
            r#"
[slo]
gates = ["throughput >= 1/s", "lost == 0"]
[[phase]]
name = "one"
duration = "10s"
load = "alta"
consumers = 2
events = [{ at = "4s", do = "brokers-down" }, { at = "6s", do = "brokers-up" }]
[[phase]]
name = "two"
duration = "10s"
clients = "2..12"
rate = "max"
events = [{ at = "5s", do = "pause" }]
"#,
        )
        .unwrap();
        let (_skip, skip) = watch::channel(0);
        let (outcomes, seen, timeline) = play_on_a_stand_in(&scenario, skip).await;
        let at = |wanted: Command| {
            seen.iter()
                .find(|(_, c)| *c == wanted)
                .map(|(t, _)| *t)
                .unwrap_or_else(|| panic!("{wanted:?} never sent: {seen:?}"))
        };
        assert_eq!(at(Command::SetLoad(LoadLevel::High)), 0);
        assert_eq!(at(Command::SetConsumers(2)), 0);
        // Events fire within one tick of their time.
        let down = at(Command::Inject(Chaos::BrokersDown));
        assert!((4_000..=4_100).contains(&down), "{down}");
        let up = at(Command::Inject(Chaos::BrokersUp));
        assert!((6_000..=6_100).contains(&up), "{up}");
        let pause = at(Command::SetPaused(true));
        assert!((15_000..=15_100).contains(&pause), "{pause}");
        // Phase two ramps clients from 2 to 12 over its ten seconds.
        assert_eq!(at(Command::SetRate(None)), 10_000);
        let clients: Vec<_> = seen
            .iter()
            .filter_map(|(t, c)| match c {
                Command::SetClients(n) => Some((*t, *n)),
                _ => None,
            })
            .collect();
        assert_eq!(clients.first(), Some(&(10_000, 2)));
        assert_eq!(clients.last().map(|(_, n)| *n), Some(12));
        assert_eq!(clients.len(), 11, "one command per step: {clients:?}");
        // 7 clients from 6.5 on: 45 % of the way.
        let (t, _) = clients.iter().find(|(_, n)| *n == 7).unwrap();
        assert!((14_500..=14_600).contains(t), "7 clients at {t}");
        // Each phase closed once, at its end, and measured there.
        let closes: Vec<_> = seen
            .iter()
            .filter(|(_, c)| *c == Command::ClosePhase)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(closes, [0, 10_000, 20_000]);
        assert_eq!(outcomes.len(), 2);
        assert_eq!(outcomes[1].name, "two");
        assert_eq!(outcomes[0].measures.finished, 100);
        assert!((outcomes[0].measures.throughput - 10.0).abs() < 0.01);
        assert!(timeline.done());
        assert_eq!(timeline.judged.len(), 2, "one per-phase gate, twice");
    }

    #[tokio::test(start_paused = true)]
    async fn a_skip_ends_the_phase_early() {
        let scenario = parse(
            "t",
            "[[phase]]\nduration = \"1h\"\n[[phase]]\nname = \"b\"\nduration = \"2s\"\n",
        )
        .unwrap();
        let started = Instant::now();
        let (skip_tx, skip) = watch::channel(0);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            skip_tx.send_modify(|n| *n += 1);
            std::future::pending::<()>().await;
        });
        let (outcomes, _, _) = play_on_a_stand_in(&scenario, skip).await;
        assert!(outcomes[0].skipped);
        assert!(outcomes[0].elapsed < Duration::from_millis(3_200));
        assert!(!outcomes[1].skipped);
        assert_eq!(outcomes[1].elapsed, Duration::from_secs(2));
        assert!(started.elapsed() < Duration::from_secs(6));
    }
}
