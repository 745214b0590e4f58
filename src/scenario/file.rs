//! Scenario files: TOML, phases in order, each with a duration, the
//! settings it changes and the events it fires. Every error names the line.
//!
//! ```toml
//! name = "broker outage"
//! [slo]
//! gates = ["lost == 0", "e2e.p99 < 2s"]
//! [[phase]]
//! name = "steady"
//! duration = "20s"
//! load = "medium"            # low / medium / high (baja / media / alta)
//! clients = 8                # or "2..32": a linear ramp over the phase
//! rate = "100..800"          # orders/s; "max" = as fast as they can
//! consumers = 3
//! paused = false
//! events = [{ at = "5s", do = "brokers-down" }, { at = "15s", do = "brokers-up" }]
//! ```

use std::{ops::Range, path::Path, time::Duration};

use serde::Deserialize;
use toml::Spanned;

use crate::slo::Gate;
use crate::{clock::parse_duration, load::LoadLevel, pipeline::chaos::Chaos};

/// A story to run: phases in order, and the gates it must pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub phases: Vec<PhasePlan>,
    pub gates: Vec<Gate>,
}

/// One phase. Settings left out carry over from the phase before.
#[derive(Clone, Debug, PartialEq)]
pub struct PhasePlan {
    pub name: String,
    pub duration: Duration,
    /// A level sets clients, rate and state timings; `clients` and `rate`
    /// then override its figures.
    pub load: Option<LoadLevel>,
    pub clients: Option<Ramp>,
    /// Orders per second over all clients; None inside = unlimited.
    pub rate: Option<Option<Ramp>>,
    pub consumers: Option<usize>,
    pub paused: Option<bool>,
    pub events: Vec<TimedEvent>,
}

/// A value held (`from == to`) or moved linearly over the phase.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ramp {
    pub from: f64,
    pub to: f64,
}

impl Ramp {
    /// The value `fraction` (0..=1) of the way through the phase.
    pub fn at(&self, fraction: f64) -> f64 {
        self.from + (self.to - self.from) * fraction.clamp(0.0, 1.0)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TimedEvent {
    /// From the start of its phase.
    pub at: Duration,
    pub action: EventAction,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EventAction {
    Chaos(Chaos),
    Pause,
    Resume,
}

impl EventAction {
    /// Whether it needs the embedded broker (faults injected into the cluster).
    pub fn needs_embedded_broker(&self) -> bool {
        matches!(self, EventAction::Chaos(chaos) if chaos.broker_fault("", 0).is_some())
    }

    /// Whether it cuts Elasticsearch off (a relay in front of `--es`).
    pub fn cuts_elasticsearch(&self) -> bool {
        matches!(
            self,
            EventAction::Chaos(Chaos::ElasticDown | Chaos::ElasticUp)
        )
    }
}

impl Scenario {
    /// The first event that `pass` refuses, if any.
    pub fn event_where(&self, pass: impl Fn(&EventAction) -> bool) -> Option<&TimedEvent> {
        self.phases
            .iter()
            .flat_map(|p| &p.events)
            .find(|e| pass(&e.action))
    }
}

impl std::fmt::Display for EventAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventAction::Chaos(chaos) => chaos.fmt(f),
            EventAction::Pause => f.write_str("consumers paused"),
            EventAction::Resume => f.write_str("consumers resumed"),
        }
    }
}

/// Where a scenario file is wrong.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}:{line}: {message}")]
pub struct ScenarioError {
    pub source_name: String,
    pub line: usize,
    pub message: String,
}

/// The scenarios shipped in `assets/scenarios/`, by name.
pub const BUILT_IN: [(&str, &str); 9] = [
    ("baja", include_str!("../../assets/scenarios/baja.toml")),
    ("media", include_str!("../../assets/scenarios/media.toml")),
    ("alta", include_str!("../../assets/scenarios/alta.toml")),
    (
        "ramp-and-spike",
        include_str!("../../assets/scenarios/ramp-and-spike.toml"),
    ),
    (
        "broker-outage",
        include_str!("../../assets/scenarios/broker-outage.toml"),
    ),
    (
        "consumer-crash",
        include_str!("../../assets/scenarios/consumer-crash.toml"),
    ),
    (
        "elastic-outage",
        include_str!("../../assets/scenarios/elastic-outage.toml"),
    ),
    (
        "chaos-tour",
        include_str!("../../assets/scenarios/chaos-tour.toml"),
    ),
    ("soak", include_str!("../../assets/scenarios/soak.toml")),
];

/// A scenario the start screen offers: built in, or a file found on disk.
#[derive(Clone, Debug, PartialEq)]
pub struct Offered {
    pub name: String,
    /// What it tells; for a file that does not parse, why.
    pub description: String,
    /// What [`load`] takes: the built-in's name or the file's path.
    pub spec: String,
}

/// The built-in scenarios, then the `*.toml` files in `dirs` (each folder by
/// file name; a folder that does not exist adds nothing).
pub fn offered(dirs: &[std::path::PathBuf]) -> Vec<Offered> {
    let mut offered: Vec<Offered> = BUILT_IN
        .iter()
        .map(|(name, text)| Offered {
            name: (*name).to_owned(),
            description: parse(name, text)
                .map(|s| s.description)
                .unwrap_or_else(|e| e.to_string()),
            spec: (*name).to_owned(),
        })
        .collect();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        for path in files {
            let spec = path.display().to_string();
            let stem = path
                .file_stem()
                .map_or_else(|| spec.clone(), |s| s.to_string_lossy().into_owned());
            let (name, description) = match load(&spec) {
                Ok(scenario) => (scenario.name, scenario.description),
                Err(error) => (stem, format!("cannot be played: {error}")),
            };
            offered.push(Offered {
                name,
                description,
                spec,
            });
        }
    }
    offered
}

/// Reads `spec`: a file, or the name of a built-in scenario.
pub fn load(spec: &str) -> Result<Scenario, ScenarioError> {
    let path = Path::new(spec);
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|error| ScenarioError {
            source_name: spec.to_owned(),
            line: 0,
            message: format!("cannot read it: {error}"),
        })?;
        return parse(spec, &text);
    }
    match BUILT_IN.iter().find(|(name, _)| *name == spec) {
        Some((name, text)) => parse(name, text),
        None => Err(ScenarioError {
            source_name: spec.to_owned(),
            line: 0,
            message: format!(
                "no such file, nor a built-in scenario (built in: {})",
                BUILT_IN.map(|(name, _)| name).join(", ")
            ),
        }),
    }
}

const MAX_PHASE: Duration = Duration::from_secs(24 * 3_600);
const MAX_CLIENTS: f64 = 1_000.0;
const MAX_RATE: f64 = 1_000_000.0;
const MAX_CONSUMERS: i64 = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    description: Option<String>,
    slo: Option<RawSlo>,
    #[serde(default)]
    phase: Vec<Spanned<RawPhase>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlo {
    gates: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    name: Option<String>,
    duration: Spanned<String>,
    load: Option<Spanned<String>>,
    clients: Option<Spanned<toml::Value>>,
    rate: Option<Spanned<toml::Value>>,
    consumers: Option<Spanned<i64>>,
    paused: Option<bool>,
    #[serde(default)]
    events: Vec<Spanned<RawEvent>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at: Spanned<String>,
    #[serde(rename = "do")]
    action: Spanned<String>,
    /// For `produce-errors`.
    count: Option<Spanned<i64>>,
    /// For `round-trip`.
    delay: Option<Spanned<String>>,
}

const ACTIONS: &str = "brokers-down, brokers-up, produce-errors (count), round-trip (delay), \
                       move-leaders, kill-consumer, panic-order, es-down, es-up, pause, resume";

/// Parses a scenario's text; `source_name` names it in errors.
pub fn parse(source_name: &str, text: &str) -> Result<Scenario, ScenarioError> {
    let error_at = |span: Range<usize>, message: String| ScenarioError {
        source_name: source_name.to_owned(),
        line: text[..span.start.min(text.len())].matches('\n').count() + 1,
        message,
    };
    let raw: RawScenario = toml::from_str(text).map_err(|error| {
        error_at(
            error.span().unwrap_or(0..0),
            error.message().trim().to_owned(),
        )
    })?;
    if raw.phase.is_empty() {
        return Err(error_at(
            0..0,
            "no phase: add at least one [[phase]] with a duration".to_owned(),
        ));
    }
    let mut phases = Vec::new();
    for (index, phase) in raw.phase.into_iter().enumerate() {
        let span = phase.span();
        let raw = phase.into_inner();
        let name = raw.name.unwrap_or_else(|| format!("phase {}", index + 1));
        if phases.iter().any(|p: &PhasePlan| p.name == name) {
            return Err(error_at(span, format!("a second phase named {name:?}")));
        }
        let duration = duration_of(&raw.duration)
            .filter(|d| !d.is_zero() && *d <= MAX_PHASE)
            .ok_or_else(|| {
                error_at(
                    raw.duration.span(),
                    format!(
                        "duration {:?}: expected 1ms to 24h (e.g. 30s, 2m)",
                        raw.duration.get_ref()
                    ),
                )
            })?;
        let load = raw
            .load
            .map(|load| {
                <LoadLevel as clap::ValueEnum>::from_str(load.get_ref(), true).map_err(|_| {
                    error_at(
                        load.span(),
                        format!(
                            "load {:?}: expected low, medium or high (baja, media, alta)",
                            load.get_ref()
                        ),
                    )
                })
            })
            .transpose()?;
        let clients = raw
            .clients
            .map(|value| {
                ramp(value.get_ref(), 1.0, MAX_CLIENTS)
                    .and_then(|ramp| ramp.ok_or_else(|| "clients cannot be unlimited".to_owned()))
                    .map_err(|why| error_at(value.span(), format!("clients: {why}")))
            })
            .transpose()?;
        let rate = raw
            .rate
            .map(|value| {
                ramp(value.get_ref(), 0.1, MAX_RATE)
                    .map_err(|why| error_at(value.span(), format!("rate: {why}")))
            })
            .transpose()?;
        let consumers = raw
            .consumers
            .map(|value| {
                let n = *value.get_ref();
                (0..=MAX_CONSUMERS)
                    .contains(&n)
                    .then_some(n as usize)
                    .ok_or_else(|| {
                        error_at(
                            value.span(),
                            format!("consumers {n}: expected 0 to {MAX_CONSUMERS}"),
                        )
                    })
            })
            .transpose()?;
        let mut events = Vec::new();
        for event in raw.events {
            let span = event.span();
            let event = event.into_inner();
            let at = duration_of(&event.at)
                .filter(|at| *at <= duration)
                .ok_or_else(|| {
                    error_at(
                        event.at.span(),
                        format!(
                            "at {:?}: expected a time within the phase's {:?}",
                            event.at.get_ref(),
                            duration
                        ),
                    )
                })?;
            let action = action(&event).map_err(|why| error_at(span.clone(), why))?;
            events.push(TimedEvent { at, action });
        }
        events.sort_by_key(|event| event.at);
        phases.push(PhasePlan {
            name,
            duration,
            load,
            clients,
            rate,
            consumers,
            paused: raw.paused,
            events,
        });
    }
    let gates = raw
        .slo
        .map(|slo| {
            slo.gates
                .into_iter()
                .map(|gate| {
                    gate.get_ref()
                        .parse::<Gate>()
                        .map_err(|why| error_at(gate.span(), format!("gate {why}")))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok(Scenario {
        name: raw.name.unwrap_or_else(|| source_name.to_owned()),
        description: raw.description.unwrap_or_default(),
        phases,
        gates,
    })
}

fn duration_of(text: &Spanned<String>) -> Option<Duration> {
    parse_duration(text.get_ref())
}

/// `8`, `"8"`, `"2..32"`, or for rates `"max"`/`"unlimited"` (Ok(None)).
fn ramp(value: &toml::Value, min: f64, max: f64) -> Result<Option<Ramp>, String> {
    let explain = || format!("expected a number from {min} to {max}, or a ramp like \"10..100\"");
    let number = |text: &str| {
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(explain)
    };
    let (from, to) = match value {
        toml::Value::Integer(n) => (number(&n.to_string())?, number(&n.to_string())?),
        toml::Value::Float(n) => (number(&n.to_string())?, number(&n.to_string())?),
        toml::Value::String(text) if matches!(text.trim(), "max" | "unlimited") => return Ok(None),
        toml::Value::String(text) => match text.split_once("..") {
            Some((from, to)) => (number(from)?, number(to)?),
            None => (number(text)?, number(text)?),
        },
        _ => return Err(explain()),
    };
    Ok(Some(Ramp { from, to }))
}

fn action(event: &RawEvent) -> Result<EventAction, String> {
    let name = event.action.get_ref().as_str();
    let needs = |what: &str| format!("{name}: needs {what}");
    if event.count.is_some() && name != "produce-errors" {
        return Err(format!("{name}: `count` is only for produce-errors"));
    }
    if event.delay.is_some() && name != "round-trip" {
        return Err(format!("{name}: `delay` is only for round-trip"));
    }
    Ok(match name {
        "brokers-down" => EventAction::Chaos(Chaos::BrokersDown),
        "brokers-up" => EventAction::Chaos(Chaos::BrokersUp),
        "produce-errors" => {
            let count = event
                .count
                .as_ref()
                .map(|count| *count.get_ref())
                .filter(|n| (1..=100_000).contains(n))
                .ok_or_else(|| needs("count = 1 to 100000"))?;
            EventAction::Chaos(Chaos::ProduceErrors(count as usize))
        }
        "round-trip" => {
            let delay = event
                .delay
                .as_ref()
                .and_then(|delay| parse_duration(delay.get_ref()))
                .filter(|d| *d <= Duration::from_secs(60))
                .ok_or_else(|| needs("delay = \"0ms\" to \"60s\" (0 restores)"))?;
            EventAction::Chaos(Chaos::RoundTripTime(delay))
        }
        "move-leaders" => EventAction::Chaos(Chaos::MoveLeaders),
        "kill-consumer" => EventAction::Chaos(Chaos::KillConsumer),
        "panic-order" => EventAction::Chaos(Chaos::PanicOrder),
        "es-down" => EventAction::Chaos(Chaos::ElasticDown),
        "es-up" => EventAction::Chaos(Chaos::ElasticUp),
        "pause" => EventAction::Pause,
        "resume" => EventAction::Resume,
        other => return Err(format!("unknown event {other:?} (known: {ACTIONS})")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "outage"
description = "the brokers go away"

[slo]
gates = ["lost == 0", "e2e.p99 < 2s"]

[[phase]]
name = "warm-up"
duration = "10s"
load = "media"

[[phase]]
duration = "1m"
clients = "2..32"
rate = "100..800"
consumers = 4
events = [
  { at = "30s", do = "brokers-up" },
  { at = "5s", do = "brokers-down" },
  { at = "40s", do = "round-trip", delay = "50ms" },
  { at = "41s", do = "produce-errors", count = 20 },
]

[[phase]]
name = "flat out"
duration = "5s"
rate = "max"
paused = true
"#;

    #[test]
    fn a_good_file_reads_into_phases_events_and_gates() {
        let scenario = parse("outage.toml", GOOD).unwrap();
        assert_eq!(scenario.name, "outage");
        assert_eq!(scenario.gates.len(), 2);
        let [warm, ramp, flat] = &scenario.phases[..] else {
            panic!("three phases: {scenario:?}")
        };
        assert_eq!(warm.load, Some(LoadLevel::Medium));
        assert_eq!(warm.duration, Duration::from_secs(10));
        assert_eq!(ramp.name, "phase 2");
        assert_eq!(
            ramp.clients,
            Some(Ramp {
                from: 2.0,
                to: 32.0
            })
        );
        assert_eq!(ramp.rate.unwrap().unwrap().at(0.5), 450.0);
        assert_eq!(ramp.consumers, Some(4));
        // In time order, whatever the file's order.
        let actions: Vec<_> = ramp
            .events
            .iter()
            .map(|e| (e.at.as_secs(), e.action))
            .collect();
        assert_eq!(
            actions,
            [
                (5, EventAction::Chaos(Chaos::BrokersDown)),
                (30, EventAction::Chaos(Chaos::BrokersUp)),
                (
                    40,
                    EventAction::Chaos(Chaos::RoundTripTime(Duration::from_millis(50)))
                ),
                (41, EventAction::Chaos(Chaos::ProduceErrors(20))),
            ]
        );
        assert_eq!(flat.rate, Some(None), "max is unlimited");
        assert_eq!(flat.paused, Some(true));
    }

    #[test]
    fn every_error_names_its_line() {
        let line_of = |text: &str| parse("s.toml", text).unwrap_err();
        let phase = |body: &str| format!("name = \"x\"\n\n[[phase]]\n{body}\n");
        for (text, line, words) in [
            (phase("duration = \"ten\""), 4, "duration \"ten\""),
            (phase("duration = \"0s\""), 4, "1ms to 24h"),
            (
                phase("duration = \"5s\"\nload = \"extreme\""),
                5,
                "low, medium or high",
            ),
            (phase("duration = \"5s\"\nclients = 0"), 5, "clients"),
            (
                phase("duration = \"5s\"\nclients = \"max\""),
                5,
                "unlimited",
            ),
            (phase("duration = \"5s\"\nrate = \"5..x\""), 5, "ramp"),
            (phase("duration = \"5s\"\nconsumers = 99"), 5, "0 to 64"),
            (
                phase(
                    "duration = \"5s\"\nevents = [\n  { at = \"9s\", do = \"brokers-down\" },\n]",
                ),
                6,
                "within the phase",
            ),
            (
                phase("duration = \"5s\"\nevents = [\n\n  { at = \"1s\", do = \"explode\" },\n]"),
                7,
                "unknown event \"explode\"",
            ),
            (
                phase("duration = \"5s\"\nevents = [{ at = \"1s\", do = \"produce-errors\" }]"),
                5,
                "needs count",
            ),
            (
                phase("duration = \"5s\"\ncolour = \"red\""),
                5,
                "unknown field",
            ),
            (phase("duration = 5"), 4, "invalid type"),
            ("name = \"x\"\n".to_owned(), 1, "no phase"),
            (
                format!(
                    "{}[slo]\ngates = [\"lost = 0\"]\n",
                    phase("duration = \"5s\"")
                ),
                6,
                "METRIC OP VALUE",
            ),
            (
                format!(
                    "{}\n[[phase]]\nname = \"x\"\nduration = \"1s\"\n",
                    phase("name = \"x\"\nduration = \"5s\"")
                ),
                7,
                "second phase",
            ),
            ("name = \"x\n".to_owned(), 1, ""),
        ] {
            let error = line_of(&text);
            assert_eq!(error.line, line, "{text}\n→ {error}");
            assert!(error.message.contains(words), "{text}\n→ {error}");
            assert!(error.to_string().starts_with(&format!("s.toml:{line}: ")));
        }
    }

    #[test]
    fn every_built_in_scenario_parses_and_names_are_found() {
        for (name, text) in BUILT_IN {
            let scenario = parse(name, text).unwrap_or_else(|e| panic!("{e}"));
            assert!(!scenario.description.is_empty(), "{name} says what it is");
            assert!(!scenario.gates.is_empty(), "{name} has gates");
            assert_eq!(load(name).unwrap(), scenario);
        }
        let missing = load("no-such-scenario").unwrap_err();
        assert!(missing.message.contains("broker-outage"), "{missing}");
    }

    #[test]
    fn files_on_disk_are_offered_after_the_built_in_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("b-mine.toml"),
            "name = \"mine\"\ndescription = \"my story\"\n[[phase]]\nduration = \"1s\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("a-broken.toml"), "[[phase]]\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a scenario").unwrap();
        let offered = offered(&[dir.path().to_owned(), dir.path().join("missing")]);
        assert_eq!(offered.len(), BUILT_IN.len() + 2);
        let [broken, mine] = &offered[BUILT_IN.len()..] else {
            panic!("{offered:?}")
        };
        assert_eq!(broken.name, "a-broken");
        assert!(
            broken.description.contains("a-broken.toml:1:"),
            "{broken:?}"
        );
        assert_eq!(
            (mine.name.as_str(), mine.description.as_str()),
            ("mine", "my story")
        );
        assert_eq!(load(&mine.spec).unwrap().name, "mine");
    }

    #[test]
    fn the_original_levels_are_stories_at_those_levels() {
        for (name, level) in [
            ("baja", LoadLevel::Low),
            ("media", LoadLevel::Medium),
            ("alta", LoadLevel::High),
        ] {
            let scenario = load(name).unwrap();
            assert_eq!(scenario.phases[0].load, Some(level), "{name}");
        }
    }
}
