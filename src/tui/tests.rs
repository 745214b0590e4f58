//! What a user sees (TestBackend snapshots) and what each key does, with a
//! fixed, deterministic pipeline status.

use std::time::Duration;

use ratatui::{
    backend::TestBackend,
    crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers},
    Terminal,
};

use super::{
    action::Action,
    app::{App, Effect, Focus, Overlay, Screen, StartInfo},
    keymap::action_for,
    ui,
};
use crate::{
    kafka::{
        consumer::{MemberLoad, PartitionLag},
        BrokerHealth,
    },
    load::LoadLevel,
    metrics::{LatencySummary, MetricsSnapshot, OrderCounts, WindowStats},
    order::{Order, OrderId, State, Transition},
    pipeline::chaos::Chaos,
    processing::ledger::LedgerTally,
    scenario::Timeline,
    session::{Command, Phase, Sample, SessionStatus},
    sinks::{MirrorState, MirrorStatus},
};

const T0: i64 = 1_764_201_600_000; // 2025-11-27 00:00:00 UTC

fn start_info() -> StartInfo {
    StartInfo {
        broker: "embedded (in-process Kafka mock cluster)".into(),
        sink: "none (Elasticsearch mirror not configured)".into(),
        time_scale: 1.0,
        scenarios: crate::scenario::file::BUILT_IN
            .iter()
            .map(|(name, text)| {
                let scenario = crate::scenario::file::parse(name, text).unwrap();
                (name.to_string(), scenario.description)
            })
            .collect(),
    }
}

fn latency(p50: f64, p99: f64) -> LatencySummary {
    LatencySummary {
        count: 100,
        p50,
        p90: p99 * 0.8,
        p99,
        max: p99 * 1.5,
    }
}

fn status() -> SessionStatus {
    let mut status = SessionStatus::new(
        "embedded".into(),
        LoadLevel::Medium,
        LoadLevel::Medium.preset(),
        3,
    );
    status.phase = Phase::Running;
    status.health = BrokerHealth::Up;
    status.clients_running = true;
    status.metrics = MetricsSnapshot {
        elapsed: Duration::from_secs(100),
        counts: OrderCounts {
            sent: 1_204,
            acknowledged: 1_200,
            rejected: 4,
            failed: 0,
            consumed: 1_190,
            redelivered: 2,
            finished: 1_150,
            transitions: 5_900,
            invalid_records: 0,
            events_dropped: 0,
            finished_retries: 0,
            panics: 0,
            handed_over: 0,
        },
        in_state: [12, 10, 9, 9, 1_150],
        send: latency(1.9, 4.2),
        end_to_end: latency(4.6, 60.0),
        completion: latency(3_900.0, 8_200.0),
        per_state: [
            latency(1_010.0, 1_480.0),
            latency(990.0, 1_490.0),
            latency(1_002.0, 1_470.0),
            latency(1_020.0, 1_495.0),
        ],
        ..MetricsSnapshot::default()
    };
    status.in_flight = 40;
    status.reconciliation = LedgerTally {
        acknowledged: 1_200,
        finished: 1_150,
        finished_elsewhere: 0,
        waiting: 50,
        oldest_waiting: Some(Duration::from_millis(8_400)),
        overdue: 0,
    };
    status.sink = MirrorStatus {
        target: "spool orderdeck-data/spool".into(),
        read: 15_000,
        spooled: 15_000,
        ..MirrorStatus::default()
    };
    status.partitions = (0..6)
        .map(|p| PartitionLag {
            partition: p,
            member: (p / 2 + 1) as u32,
            lag: p as i64 * 2,
        })
        .collect();
    status.members = (1..=3)
        .map(|m| MemberLoad {
            member: m,
            partitions: vec![(m as i32 - 1) * 2, (m as i32 - 1) * 2 + 1],
            in_flight: 13,
            lag: m as i64 * 4,
        })
        .collect();
    status
}

fn order(i: u128) -> Order {
    Order {
        product: ["Cámara", "Laptop", "Reloj inteligente"][(i % 3) as usize].into(),
        price: 100.0 + i as f64,
        payment_gateway: "PayPal".into(),
        card_brand: "Visa".into(),
        bank: "Banco del Pueblo".into(),
        region: ["Europa", "África", "Sudamérica"][(i % 3) as usize].into(),
        address: "901 Vía Antigua".into(),
        email: format!("user{i}@ejemplo.com"),
    }
}

fn id(i: u128) -> OrderId {
    format!("{:08x}-0000-4000-8000-{:012x}", i, i)
        .parse()
        .unwrap()
}

/// Six orders, each walked through every state, 1 s per state.
fn transitions() -> Vec<Transition> {
    let mut all = Vec::new();
    for i in 1..=6u128 {
        let o = order(i);
        let mut from = None;
        for (step, to) in State::ALL.into_iter().enumerate() {
            all.push(Transition {
                order_id: id(i),
                from,
                to,
                estado: to.spanish_name().into(),
                at_unix_ms: T0 + i as i64 * 250 + step as i64 * 1000,
                previous_state_ms: if from.is_some() {
                    1000.0 + i as f64
                } else {
                    0.0
                },
                product: o.product.clone(),
                region: o.region.clone(),
                order: from.is_none().then(|| o.clone()),
                accepted_at: None,
                by: None,
                member: None,
                run: None,
            });
            from = Some(to);
        }
    }
    all.sort_by_key(|t| t.at_unix_ms);
    all
}

fn samples() -> Vec<Sample> {
    (1..=90u64)
        .map(|s| Sample {
            seq: s,
            at_unix_ms: T0 + s as i64 * 1000,
            acknowledged_per_s: 100.0 + (s % 10) as f64,
            finished_per_s: 95.0 + (s % 7) as f64,
            window: WindowStats {
                send: latency(1.5 + (s % 5) as f64 * 0.1, 4.0 + (s % 4) as f64),
                end_to_end: latency(4.0 + (s % 3) as f64, 40.0 + (s % 9) as f64 * 5.0),
                end_to_end_buckets: [0, 2, 10, 40, 30, 10, 5, 2, 1, 0, 0, 0, 0],
            },
        })
        .collect()
}

/// The main screen with a fixed pipeline state.
fn running_app() -> App {
    let mut app = App::new(start_info(), None).started(LoadLevel::Medium);
    for sample in samples() {
        // One status a second with steady traffic, ending at status()'s totals.
        let behind = 90 - sample.seq;
        let mut status = status();
        let counts = &mut status.metrics.counts;
        counts.sent -= behind * 10;
        counts.acknowledged -= behind * 10;
        counts.consumed -= behind * 10;
        counts.finished -= behind * 9;
        status.metrics.elapsed -= Duration::from_secs(behind);
        status.last_sample = Some(sample);
        app.ingest_status(status);
    }
    for transition in transitions() {
        app.ingest_transition(transition);
    }
    app
}

fn render(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::draw(frame, app)).unwrap();
    terminal.backend().to_string()
}

fn key(app: &mut App, code: KeyCode) -> Option<Effect> {
    key_with(app, code, KeyModifiers::NONE)
}

fn key_with(app: &mut App, code: KeyCode, modifiers: KeyModifiers) -> Option<Effect> {
    let event = Event::Key(KeyEvent::new(code, modifiers));
    let action = action_for(app, &event)?;
    app.update(action)
}

#[test]
fn start_screen() {
    insta::assert_snapshot!(render(&App::new(start_info(), None), 80, 24));
}

#[test]
fn main_screen_80x24() {
    insta::assert_snapshot!(render(&running_app(), 80, 24));
}

#[test]
fn main_screen_160x48() {
    insta::assert_snapshot!(render(&running_app(), 160, 48));
}

#[test]
fn help_overlay() {
    let mut app = running_app();
    key(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!(render(&app, 100, 30));
}

#[test]
fn order_detail() {
    let mut app = running_app();
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Enter);
    assert!(matches!(app.overlay, Overlay::Detail(_)));
    insta::assert_snapshot!(render(&app, 100, 30));
}

#[test]
fn filtered_list_while_typing() {
    let mut app = running_app();
    key(&mut app, KeyCode::Char('/'));
    for c in "áfrica".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    insta::assert_snapshot!(render(&app, 100, 30));
}

#[test]
fn a_too_small_terminal_says_so() {
    let screen = render(&running_app(), 60, 20);
    assert!(
        screen.contains("The terminal is 60×20; orderdeck needs at least 80×24"),
        "{screen}"
    );
}

#[test]
fn a_failed_start_is_explained() {
    let mut app = running_app();
    let mut failed = status();
    failed.phase =
        Phase::Failed("cannot reach Kafka at 127.0.0.1:1: Local: Broker transport failure".into());
    app.ingest_status(failed);
    let screen = render(&app, 80, 24);
    assert!(screen.contains("Cannot run the pipeline"), "{screen}");
    assert!(
        screen.contains("cannot reach Kafka at 127.0.0.1:1"),
        "{screen}"
    );
    assert!(screen.contains("✗ failed"), "{screen}");
    assert_eq!(
        key(&mut app, KeyCode::Char('q')),
        Some(Effect::Exit),
        "nothing to drain"
    );
}

#[test]
fn start_screen_keys_choose_and_start() {
    let mut app = App::new(start_info(), None);
    assert_eq!(app.start_choice, LoadLevel::Medium);
    assert_eq!(key(&mut app, KeyCode::Down), None);
    assert_eq!(app.start_choice, LoadLevel::High);
    key(&mut app, KeyCode::Up);
    key(&mut app, KeyCode::Up);
    assert_eq!(app.start_choice, LoadLevel::Low);
    assert_eq!(
        key(&mut app, KeyCode::Enter),
        Some(Effect::StartSession(LoadLevel::Low))
    );
    assert_eq!(app.screen, Screen::Main);

    let mut app = App::new(start_info(), None);
    assert_eq!(
        key(&mut app, KeyCode::Char('3')),
        Some(Effect::StartSession(LoadLevel::High))
    );
    let mut app = App::new(start_info(), None);
    assert_eq!(key(&mut app, KeyCode::Char('q')), Some(Effect::Exit));
}

#[test]
fn simulation_keys_send_commands() {
    let mut app = running_app();
    let expected = [
        (KeyCode::Char('s'), Command::ToggleClients),
        (KeyCode::Char(' '), Command::TogglePause),
        (KeyCode::Char('1'), Command::SetLoad(LoadLevel::Low)),
        (KeyCode::Char('2'), Command::SetLoad(LoadLevel::Medium)),
        (KeyCode::Char('3'), Command::SetLoad(LoadLevel::High)),
        // The status says medium: l goes to the next level.
        (KeyCode::Char('l'), Command::SetLoad(LoadLevel::High)),
        (KeyCode::Char('+'), Command::AddClient),
        (KeyCode::Char('-'), Command::RemoveClient),
        (KeyCode::Char('c'), Command::AddConsumer),
        (KeyCode::Char('C'), Command::RemoveConsumer),
        (KeyCode::Char('e'), Command::ImportDashboard),
    ];
    for (code, command) in expected {
        assert_eq!(key(&mut app, code), Some(Effect::Send(command)), "{code:?}");
    }
}

#[test]
fn quitting_drains_first_and_exits_when_stopped() {
    let mut app = running_app();
    assert_eq!(
        key(&mut app, KeyCode::Char('q')),
        Some(Effect::Send(Command::Shutdown))
    );
    assert!(app.quitting);
    assert_eq!(
        key_with(&mut app, KeyCode::Char('c'), KeyModifiers::CONTROL),
        Some(Effect::Send(Command::Abandon)),
        "asked again: stop waiting"
    );
    let mut stopped = status();
    stopped.phase = Phase::Stopped;
    app.ingest_status(stopped);
    assert_eq!(key(&mut app, KeyCode::Char('q')), Some(Effect::Exit));
}

#[test]
fn ctrl_c_quits_from_anywhere() {
    let mut app = running_app();
    key(&mut app, KeyCode::Char('/'));
    assert_eq!(
        key_with(&mut app, KeyCode::Char('c'), KeyModifiers::CONTROL),
        Some(Effect::Send(Command::Shutdown))
    );
}

#[test]
fn filter_matches_id_product_region_and_state_in_both_languages() {
    let mut app = running_app();
    let all = app.visible_transitions().count();
    assert_eq!(all, 30);
    key(&mut app, KeyCode::Char('/'));
    assert!(app.editing_filter);
    for c in "enviado".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    // Enviado = Shipped: each order's entry into it and exit from it.
    assert_eq!(app.visible_transitions().count(), 12);
    key(&mut app, KeyCode::Enter);
    assert!(!app.editing_filter, "Enter keeps the filter");
    assert_eq!(app.visible_transitions().count(), 12);
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.visible_transitions().count(), all, "Esc clears it");

    for (text, expected) in [("00000003", 5), ("laptop", 10), ("sudamérica", 10)] {
        key(&mut app, KeyCode::Char('/'));
        for c in text.chars() {
            key(&mut app, KeyCode::Char(c));
        }
        assert_eq!(app.visible_transitions().count(), expected, "{text}");
        key(&mut app, KeyCode::Esc);
    }
}

#[test]
fn scrolling_moves_the_selection_and_detail_opens_it() {
    let mut app = running_app();
    key(&mut app, KeyCode::Char('G'));
    assert_eq!(app.selected, 29);
    key(&mut app, KeyCode::Char('k'));
    assert_eq!(app.selected, 28);
    key(&mut app, KeyCode::PageUp);
    assert_eq!(app.selected, 18);
    key(&mut app, KeyCode::Char('g'));
    assert_eq!(app.selected, 0);
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::PageDown);
    assert_eq!(app.selected, 11);
    let chosen = app.visible_transitions().nth(11).unwrap().order_id;
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.overlay, Overlay::Detail(chosen));
    assert_eq!(app.orders[&chosen].steps.len(), 5);
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn the_selection_stays_on_its_row_as_new_transitions_arrive() {
    let mut app = running_app();
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    let watched = app.visible_transitions().nth(2).cloned().unwrap();
    let mut newer = transitions()[0].clone();
    newer.at_unix_ms += 60_000;
    app.ingest_transition(newer);
    assert_eq!(app.visible_transitions().nth(app.selected), Some(&watched));
}

#[test]
fn tab_moves_focus_and_brackets_change_the_window() {
    let mut app = running_app();
    assert_eq!(app.focus, Focus::Transitions);
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Focus::Charts);
    assert_eq!(app.chart_window_s(), 60);
    key(&mut app, KeyCode::Char(']'));
    assert_eq!(app.chart_window_s(), 120);
    key(&mut app, KeyCode::Down);
    assert_eq!(app.chart_window_s(), 300);
    key(&mut app, KeyCode::Char('['));
    assert_eq!(app.chart_window_s(), 120);
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Focus::Lag);
    key(&mut app, KeyCode::Char('j'));
    assert_eq!(app.lag_scroll, 1);
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Focus::Transitions);
}

#[test]
fn help_toggles_and_swallows_other_keys() {
    let mut app = running_app();
    key(&mut app, KeyCode::Char('?'));
    assert_eq!(app.overlay, Overlay::Help);
    assert_eq!(
        key(&mut app, KeyCode::Char('s')),
        None,
        "keys under the overlay do nothing"
    );
    key(&mut app, KeyCode::Char('?'));
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn memory_stays_bounded() {
    let mut app = running_app();
    let template = transitions()[0].clone();
    for i in 0..(super::app::TRACKED_ORDERS as u128 * 2) {
        let mut t = template.clone();
        t.order_id = id(1_000 + i);
        app.ingest_transition(t);
    }
    assert_eq!(app.recent.len(), super::app::RECENT_TRANSITIONS);
    assert_eq!(app.orders.len(), super::app::TRACKED_ORDERS);
    for seq in 100..2_000 {
        let mut status = status();
        status.last_sample = Some(Sample {
            seq,
            ..Sample::default()
        });
        app.ingest_status(status);
    }
    assert_eq!(app.history.len(), super::app::HISTORY);
}

#[test]
fn every_bound_key_is_in_the_help() {
    let help: String = super::action::KEYMAP_HELP
        .iter()
        .map(|k| k.keys)
        .collect::<Vec<_>>()
        .join(" ");
    for key in [
        "s", "space", "1 2 3", "l", "+ -", "c C", "Tab", "/", "Enter", "Esc", "?", "q", "Ctrl-C",
        "[ ]", "g G", "PgDn", "x", "n",
    ] {
        assert!(help.contains(key), "{key} missing from help");
    }
    let _ = Action::Quit;
}

fn timeline() -> Timeline {
    let scenario = crate::scenario::load("broker-outage").unwrap();
    let mut timeline = Timeline::new(&scenario);
    timeline.current = 1;
    timeline.phase_elapsed = Duration::from_secs(3);
    timeline.next_event = Some((Duration::from_secs(2), "brokers down".to_owned()));
    let measures = crate::slo::Measures {
        completion: LatencySummary {
            count: 40,
            p99: 72_000.0,
            ..LatencySummary::default()
        },
        ..crate::slo::Measures::default()
    };
    timeline.gates = scenario
        .gates
        .iter()
        .filter_map(|gate| gate.judge("outage", &measures, false))
        .collect();
    timeline
}

#[test]
fn scenario_timeline_with_live_gates() {
    let mut app = running_app();
    app.ingest_timeline(timeline());
    insta::assert_snapshot!(render(&app, 120, 30));
}

#[test]
fn the_start_screen_moves_from_the_levels_into_the_scenarios() {
    let mut app = App::new(start_info(), None);
    for _ in 0..2 {
        key(&mut app, KeyCode::Down);
    }
    assert_eq!(
        app.start_scenario,
        Some(0),
        "below high: the first scenario"
    );
    key(&mut app, KeyCode::Down);
    insta::assert_snapshot!(render(&app, 100, 32));
    key(&mut app, KeyCode::Up);
    key(&mut app, KeyCode::Up);
    assert_eq!(app.start_scenario, None, "back on the levels");
    assert_eq!(app.start_choice, LoadLevel::High);
    for _ in 0..20 {
        key(&mut app, KeyCode::Down);
    }
    let last = app.start.scenarios.len() - 1;
    assert_eq!(app.start_scenario, Some(last), "stops at the last");
    assert_eq!(
        key(&mut app, KeyCode::Enter),
        Some(Effect::StartScenario(last))
    );
    assert_eq!(app.screen, Screen::Main);
    app.refuse_start("needs --es".into());
    assert_eq!(app.screen, Screen::Start);
    assert!(render(&app, 100, 32).contains("needs --es"));
}

#[test]
fn a_long_scenario_list_scrolls_to_the_highlight() {
    let mut info = start_info();
    info.scenarios = (1..=30)
        .map(|n| (format!("mine-{n:02}"), format!("story {n}")))
        .collect();
    let mut app = App::new(info, None);
    for _ in 0..40 {
        key(&mut app, KeyCode::Down);
    }
    let screen = render(&app, 80, 24);
    assert!(screen.contains("▶mine-30"), "{screen}");
    assert!(!screen.contains("mine-01"), "{screen}");
    assert!(screen.contains("of 30, ↓ for more"), "{screen}");
    // Everything else still fits: where data goes and the keys.
    assert!(
        screen.contains("time scale") && screen.contains("Enter start"),
        "{screen}"
    );
}

#[test]
fn n_skips_a_phase_only_while_a_scenario_plays() {
    let mut app = running_app();
    assert_eq!(key(&mut app, KeyCode::Char('n')), None);
    app.ingest_timeline(timeline());
    assert_eq!(key(&mut app, KeyCode::Char('n')), Some(Effect::SkipPhase));
    let mut done = timeline();
    done.current = done.phases.len();
    app.ingest_timeline(done);
    assert_eq!(key(&mut app, KeyCode::Char('n')), None);
}

#[test]
fn the_header_shows_elasticsearch_health_rate_and_failures() {
    let mut app = running_app();
    let header = |app: &App| render(app, 120, 30).lines().next().unwrap().to_owned();
    let mut up = status();
    up.metrics.elapsed += Duration::from_secs(1);
    up.sink = MirrorStatus {
        target: "http://localhost:9200".into(),
        indexed: 1_300,
        ..MirrorStatus::default()
    };
    app.ingest_status(up.clone());
    up.metrics.elapsed += Duration::from_secs(1);
    up.sink.indexed = 2_500;
    app.ingest_status(up.clone());
    up.sink.lag = 40;
    app.ingest_status(up.clone());
    assert!(
        header(&app).contains("es ● 1200/s · lag 40"),
        "{}",
        header(&app)
    );

    let mut throttled = up.clone();
    throttled.sink.state = MirrorState::Throttled;
    app.ingest_status(throttled);
    assert!(header(&app).contains("es throttled"), "{}", header(&app));

    let mut down = up.clone();
    down.sink.state = MirrorState::Down("Elasticsearch is unreachable".into());
    down.sink.lag = 900;
    app.ingest_status(down);
    assert!(
        header(&app).contains("es ✗ down · lag 900"),
        "{}",
        header(&app)
    );

    let mut stopped = up.clone();
    stopped.sink.state = MirrorState::Stopped("401".into());
    app.ingest_status(stopped);
    assert!(header(&app).contains("mirror stopped"), "{}", header(&app));

    let mut refused = up;
    refused.sink.dead_lettered = 3;
    app.ingest_status(refused);
    assert!(header(&app).contains("· 3 refused"), "{}", header(&app));
}

#[test]
fn chaos_menu() {
    let mut app = running_app();
    assert_eq!(key(&mut app, KeyCode::Char('x')), None);
    assert_eq!(app.overlay, Overlay::Chaos);
    insta::assert_snapshot!(render(&app, 100, 30));
}

#[test]
fn chaos_keys_inject_and_close_the_menu() {
    for (pressed, chaos, _) in super::action::CHAOS_MENU {
        let mut app = running_app();
        key(&mut app, KeyCode::Char('x'));
        assert_eq!(
            key(&mut app, KeyCode::Char(*pressed)),
            Some(Effect::Send(Command::Inject(*chaos))),
            "{pressed}"
        );
        assert_eq!(app.overlay, Overlay::None);
    }
    // Outside the menu the same letters keep their own meaning.
    let mut app = running_app();
    assert_eq!(
        key(&mut app, KeyCode::Char('e')),
        Some(Effect::Send(Command::ImportDashboard))
    );
    let mut app = running_app();
    key(&mut app, KeyCode::Char('x'));
    assert_eq!(key(&mut app, KeyCode::Esc), None);
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn a_fault_and_the_reconciliation_are_on_screen() {
    let mut app = running_app();
    let mut broken = status();
    broken.chaos.record(Chaos::BrokersDown);
    broken
        .chaos
        .record(Chaos::RoundTripTime(Duration::from_millis(200)));
    broken.reconciliation.overdue = 3;
    app.ingest_status(broken);
    let screen = render(&app, 160, 48);
    let header = screen.lines().next().unwrap();
    assert!(
        header.contains("⚡ brokers down, +200 ms round trip"),
        "{header}"
    );
    assert!(
        screen.contains("acked 1200 = finished 1150 + waiting 50 (oldest 8.4 s)"),
        "{screen}"
    );
    assert!(screen.contains("3 overdue"), "{screen}");

    let mut healthy = status();
    healthy.metrics.elapsed += Duration::from_secs(1);
    app.ingest_status(healthy);
    let screen = render(&app, 160, 48);
    assert!(!screen.lines().next().unwrap().contains('⚡'));
    assert!(screen.contains("lost 0"), "{screen}");
}

#[test]
fn transitions_the_view_skipped_are_counted_on_screen() {
    let mut app = running_app();
    assert!(!render(&app, 100, 30).contains("skipped"));
    app.note_missed(120);
    assert!(
        render(&app, 100, 30).contains("· 120 skipped"),
        "{}",
        render(&app, 100, 30)
    );
}
