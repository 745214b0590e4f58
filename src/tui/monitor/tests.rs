//! What a user of `load` sees on a terminal, and what its keys ask for.

use std::time::Duration;

use ratatui::{
    backend::TestBackend,
    crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers},
    Terminal,
};

use super::{
    app::{MonitorApp, MonitorEffect},
    ui,
};
use crate::{
    load::LoadLevel,
    metrics::{LatencySummary, MetricsSnapshot, OrderCounts},
    processing::ledger::LedgerTally,
    session::{Command, Phase, Sample, SessionStatus},
};

const T0: i64 = 1_764_201_600_000;

fn latency(p50: f64, p99: f64) -> LatencySummary {
    LatencySummary {
        count: 900,
        p50,
        p90: p50 * 1.5,
        p99,
        max: p99 * 1.2,
    }
}

fn status() -> SessionStatus {
    let mut status = SessionStatus::new(
        "following 10.0.0.5:9092".into(),
        LoadLevel::Medium,
        LoadLevel::Medium.preset(),
        0,
    );
    status.phase = Phase::Running;
    status.clients_running = true;
    let mut refused = [0; crate::metrics::GRPC_CODES];
    refused[14] = 12; // UNAVAILABLE
    refused[8] = 3; // RESOURCE_EXHAUSTED
    status.metrics = MetricsSnapshot {
        elapsed: Duration::from_secs(30),
        counts: OrderCounts {
            sent: 905,
            acknowledged: 900,
            failed: 1,
            finished: 880,
            ..OrderCounts::default()
        },
        send: latency(2.4, 9.8),
        completion: latency(2_450.0, 4_100.0),
        refused,
        ..MetricsSnapshot::default()
    };
    status.reconciliation = LedgerTally {
        acknowledged: 900,
        finished: 880,
        waiting: 20,
        ..LedgerTally::default()
    };
    status
}

fn render(app: &MonitorApp) -> String {
    let mut terminal = Terminal::new(TestBackend::new(100, 24)).unwrap();
    terminal.draw(|frame| ui::draw(frame, app)).unwrap();
    terminal.backend().to_string()
}

#[test]
fn the_clients_side_at_a_glance() {
    let mut app = MonitorApp::new("→ http://10.0.0.7:50051 · typed api".into(), status());
    for n in 0..30 {
        let mut status = status();
        status.last_sample = Some(Sample {
            seq: n,
            at_unix_ms: T0 + n as i64 * 1_000,
            acknowledged_per_s: 30.0,
            finished_per_s: if n < 3 { 0.0 } else { 29.0 },
            ..Sample::default()
        });
        app.ingest_status(status);
    }
    assert_eq!(app.history.len(), 30);
    insta::assert_snapshot!(render(&app));
}

#[test]
fn keys_steer_the_clients_and_stop_once_they_are_done() {
    let mut app = MonitorApp::new("→ target".into(), status());
    let press = |app: &mut MonitorApp, code| {
        app.on_key(&Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    };
    assert_eq!(
        press(&mut app, KeyCode::Char(' ')),
        Some(MonitorEffect::Send(Command::ToggleClients))
    );
    assert_eq!(
        press(&mut app, KeyCode::Char('3')),
        Some(MonitorEffect::Send(Command::SetLoad(LoadLevel::High)))
    );
    assert_eq!(
        press(&mut app, KeyCode::Char('+')),
        Some(MonitorEffect::Send(Command::AddClient))
    );
    // No scenario: nothing to skip.
    assert_eq!(press(&mut app, KeyCode::Char('n')), None);
    let mut done = status();
    done.phase = Phase::Stopped;
    app.ingest_status(done);
    assert_eq!(press(&mut app, KeyCode::Char(' ')), None);
    assert!(render(&app).contains("every order sent"));
    assert_eq!(
        press(&mut app, KeyCode::Char('q')),
        Some(MonitorEffect::Quit)
    );
}
