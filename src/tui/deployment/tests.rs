//! What a user of `watch` sees, from a deployment folded by hand: two
//! workers and a server, one order picked with its timeline.

use ratatui::{
    backend::TestBackend,
    crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers},
    Terminal,
};

use super::{app::WatchApp, ui};
use crate::{
    fleet::{
        presence::{MemberPresence, Presence, PresenceCounts},
        view::{FleetView, PartitionOffsets},
    },
    order::{OrderId, State, Transition},
};

const T0: i64 = 1_764_201_600_000; // 2025-11-27 00:00:00 UTC

fn presence(by: &str, server: bool, partitions: &[i32]) -> Presence {
    Presence {
        by: by.into(),
        group: "orderdeck".into(),
        started_at_ms: T0,
        at_ms: T0 + 9_500,
        stopped: false,
        server: server.then(|| "0.0.0.0:50051".into()),
        members: if partitions.is_empty() {
            Vec::new()
        } else {
            vec![MemberPresence {
                name: format!("{by}/c1"),
                partitions: partitions.to_vec(),
            }]
        },
        counts: PresenceCounts::default(),
    }
}

fn steps(id: OrderId, by: &str, start: i64, upto: usize) -> Vec<Transition> {
    let mut previous = None;
    State::ALL
        .iter()
        .take(upto)
        .enumerate()
        .map(|(n, state)| {
            let step = Transition {
                order_id: id,
                from: previous,
                to: *state,
                estado: state.spanish_name().into(),
                at_unix_ms: start + n as i64 * 400,
                previous_state_ms: 400.0,
                product: "Auriculares inalámbricos".into(),
                region: "Antioquia".into(),
                order: None,
                accepted_at: Some((start - 20) as f64 / 1e3),
                by: Some(by.into()),
                member: Some("c1".into()),
                run: None,
            };
            previous = Some(*state);
            step
        })
        .collect()
}

fn view() -> FleetView {
    let mut view = FleetView::default();
    view.presence(presence("edge-1:4100", true, &[]));
    view.presence(presence("worker-a:812", false, &[0, 1, 2]));
    view.presence(presence("worker-b:977", false, &[3, 4, 5]));
    let ids: Vec<OrderId> = (0..4)
        .map(|n| {
            format!("0000000{n}-0000-4000-8000-000000000000")
                .parse()
                .unwrap()
        })
        .collect();
    for id in &ids {
        view.accepted(*id);
    }
    let mut events = steps(ids[0], "worker-a:812", T0 + 1_000, 5);
    events.extend(steps(ids[1], "worker-b:977", T0 + 2_000, 5));
    events.extend(steps(ids[2], "worker-a:812", T0 + 6_000, 3));
    events.sort_by_key(|t| t.at_unix_ms);
    for event in events {
        view.transition(event);
    }
    view.offsets((0..6).map(|partition| PartitionOffsets {
        partition,
        committed: Some(10),
        start: 0,
        end: if partition == 1 { 12 } else { 10 },
    }));
    view
}

fn render(app: &WatchApp) -> String {
    let mut terminal = Terminal::new(TestBackend::new(110, 30)).unwrap();
    terminal.draw(|frame| ui::draw(frame, app)).unwrap();
    terminal.backend().to_string()
}

#[test]
fn the_deployment_at_a_glance() {
    let mut app = WatchApp::new("127.0.0.1:9092 · group orderdeck · topic orders".into());
    app.refresh(&view(), T0 + 10_000, None);
    insta::assert_snapshot!(render(&app));
}

#[test]
fn picking_an_order_shows_its_timeline_and_keeps_it_picked() {
    let view = view();
    let mut app = WatchApp::new("brokers · group orderdeck · topic orders".into());
    app.refresh(&view, T0 + 10_000, None);
    let down = Event::Key(KeyEvent::new(KeyCode::Down, KeyModifiers::NONE));
    // Newest first: the third order's three events, then the second's Finished.
    for _ in 0..3 {
        app.on_key(&down);
    }
    let picked = app.picked.unwrap();
    assert_eq!(app.feed[app.selected].order_id, picked);
    app.refresh(&view, T0 + 11_000, None);
    assert_eq!(app.picked, Some(picked));
    assert_eq!(app.timeline.len(), 5);
    assert!(app.timeline.iter().all(|t| t.order_id == picked));
    let screen = render(&app);
    assert!(screen.contains("Finished"), "{screen}");
    app.on_key(&Event::Key(KeyEvent::new(
        KeyCode::Char('q'),
        KeyModifiers::NONE,
    )));
    assert!(app.quit);
}
