//! The real binary in a pseudo-terminal, driven by keys like a person:
//! pick a load, watch orders finish, stop the clients, quit. Then check the
//! terminal was handed back as it was.
#![allow(clippy::unwrap_used)] // a test stops at the first broken expectation

mod common;

use std::{
    io::{Read, Write},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{
    processes::{serve_on, Process},
    workdir::Workdir,
};
use portable_pty::{native_pty_system, CommandBuilder, PtySize};

const ROWS: u16 = 30;
const COLS: u16 = 100;

struct Screen {
    parser: vt100::Parser,
    output: mpsc::Receiver<Vec<u8>>,
}

impl Screen {
    /// Reads what the program printed so far into the emulated screen.
    fn pump(&mut self) {
        while let Ok(bytes) = self.output.try_recv() {
            self.parser.process(&bytes);
        }
    }

    fn text(&mut self) -> String {
        self.pump();
        self.parser.screen().contents()
    }

    /// Waits until `condition` holds on the screen's text.
    fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        condition: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.text();
            if condition(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The Finished count on the pipeline board: the last number on the row
/// under the stage names.
fn finished_count(screen: &str) -> Option<u64> {
    let lines: Vec<&str> = screen.lines().collect();
    let names = lines
        .iter()
        .position(|l| l.contains("Consumed") && l.contains("Finished"))?;
    lines
        .get(names + 1)?
        .rsplit(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

/// The real binary in a pseudo-terminal, in a scratch directory holding
/// the orders file (logs land there too).
struct Session {
    screen: Screen,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    keys: Box<dyn Write + Send>,
    /// Kept open while the child runs.
    _master: Box<dyn portable_pty::MasterPty + Send>,
    _dir: Workdir,
}

impl Session {
    fn launch(args: &[&str]) -> Self {
        let dir = Workdir::new();
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_orderdeck"));
        command.args(args);
        command.cwd(dir.path("."));
        command.env("TERM", "xterm-256color");
        command.env("XDG_STATE_HOME", dir.path("."));
        let child = pty.slave.spawn_command(command).unwrap();
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().unwrap();
        let keys = pty.master.take_writer().unwrap();
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buffer) {
                if n == 0 || tx.send(buffer[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Self {
            screen: Screen {
                parser: vt100::Parser::new(ROWS.try_into().unwrap(), COLS.try_into().unwrap(), 0),
                output,
            },
            child,
            keys,
            _master: pty.master,
            _dir: dir,
        }
    }

    fn press(&mut self, key: &[u8]) {
        self.keys.write_all(key).unwrap();
        self.keys.flush().unwrap();
    }

    /// Waits for the program to exit; returns its exit code.
    fn exit_code(&mut self, limit: Duration) -> u32 {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "orderdeck did not exit:\n{}",
                self.screen.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        std::thread::sleep(Duration::from_millis(200));
        self.screen.pump();
        status.exit_code()
    }

    /// The terminal is as it was: main screen, cursor shown.
    fn assert_terminal_restored(&self) {
        let terminal = self.screen.parser.screen();
        assert!(
            !terminal.alternate_screen(),
            "the alternate screen was left"
        );
        assert!(!terminal.hide_cursor(), "the cursor is visible again");
    }
}

/// Pauses the consumers so orders pile up in the embedded broker, quits,
/// and returns once the drain is on screen (with that screen).
fn pause_and_quit() -> (Session, String) {
    // Low load, 0.2–0.6 s per state: each order takes about 2 s.
    let mut session = Session::launch(&["--time-scale", "0.2", "--load", "low"]);
    session
        .screen
        .wait_for("orders to finish", Duration::from_secs(60), |s| {
            finished_count(s).is_some_and(|n| n > 0)
        });
    session.press(b" ");
    session
        .screen
        .wait_for("the consumers to pause", Duration::from_secs(10), |s| {
            s.contains("consumers paused") || s.contains("consumers ‖")
        });
    std::thread::sleep(Duration::from_secs(2));
    session.press(b"q");
    let draining = session
        .screen
        .wait_for("the drain", Duration::from_secs(10), |s| {
            s.contains("Draining")
        });
    (session, draining)
}

#[test]
fn quitting_with_paused_consumers_drains_every_acknowledged_order() {
    let (mut session, draining) = pause_and_quit();
    assert!(draining.contains("q again to abandon"), "{draining}");
    let code = session.exit_code(Duration::from_secs(60));
    assert_eq!(code, 0, "{}", session.screen.text());
    session.assert_terminal_restored();
}

#[test]
fn a_second_q_abandons_the_drain_and_says_so() {
    let (mut session, _) = pause_and_quit();
    session.press(b"q");
    let code = session.exit_code(Duration::from_secs(30));
    let after = session.screen.text();
    assert_eq!(code, 3, "{after}");
    assert!(
        after.contains("abandoned at quit"),
        "the screen says what was lost: {after}"
    );
    session.assert_terminal_restored();
}

#[test]
fn pick_a_load_watch_orders_finish_stop_and_quit() {
    let mut session = Session::launch(&["--time-scale", "0.01"]);
    let start = session
        .screen
        .wait_for("the start screen", Duration::from_secs(20), |s| {
            s.contains("Choose a load level")
        });
    assert!(
        start.contains("embedded (in-process Kafka mock cluster)"),
        "{start}"
    );
    assert!(
        session.screen.parser.screen().alternate_screen(),
        "the UI draws on the alternate screen"
    );

    session.press(b"3");
    let running = session
        .screen
        .wait_for("orders to finish", Duration::from_secs(60), |s| {
            // Finished counted on the board, and finished transitions listed.
            finished_count(s).is_some_and(|n| n > 0) && s.contains("→DONE")
        });
    assert!(running.contains("load high"), "{running}");
    assert!(running.contains("32 clients ▶"), "{running}");

    session.press(b"s");
    session
        .screen
        .wait_for("the clients to stop", Duration::from_secs(10), |s| {
            s.contains("32 clients ■")
        });

    session.press(b"q");
    let code = session.exit_code(Duration::from_secs(60));
    assert_eq!(code, 0, "exit status");
    session.assert_terminal_restored();
}

#[test]
fn pick_a_scenario_on_the_start_screen_and_skip_its_phases() {
    let mut session = Session::launch(&["--time-scale", "0.01"]);
    session
        .screen
        .wait_for("the start screen", Duration::from_secs(20), |s| {
            s.contains("or play a scenario")
        });
    // From medium: high, then the first scenario (baja), then media.
    for _ in 0..3 {
        session.press(b"\x1b[B");
    }
    session
        .screen
        .wait_for("media highlighted", Duration::from_secs(5), |s| {
            s.contains("▶media")
        });
    session.press(b"\r");
    let playing = session
        .screen
        .wait_for("the timeline", Duration::from_secs(60), |s| {
            s.contains("scenario media") && s.contains("▶ media")
        });
    assert!(playing.contains("n skips the phase"), "{playing}");
    // Its only phase, skipped: the scenario is over, the gates judged.
    session.press(b"n");
    let done = session
        .screen
        .wait_for("the scenario's end", Duration::from_secs(10), |s| {
            s.contains("every phase done")
        });
    assert!(done.contains("✓ media"), "{done}");
    session.press(b"q");
    let code = session.exit_code(Duration::from_secs(60));
    // The screen gone, the verdict is printed, and the exit code follows it.
    let after = session.screen.text();
    assert!(after.contains("scenario media: gates"), "{after}");
    assert!(
        after.contains("overall      finished_twice == 0"),
        "{after}"
    );
    let failed = after.contains("FAIL ");
    assert_eq!(code, if failed { 7 } else { 0 }, "{after}");
    session.assert_terminal_restored();
}

/// `watch` attached to a deployment it did not start: another process's
/// orders move on its screen, that process is listed, q gives the terminal
/// back.
#[test]
fn watch_shows_another_process_at_work() {
    let cluster = common::cluster_with_topics(6);
    let brokers = cluster.bootstrap_servers();
    let elsewhere = Workdir::new();
    // Low load at time-scale 0.2: each order spends about 2 s in its states.
    let mut run = Process::start(
        &elsewhere,
        "run",
        &[
            "run",
            "--brokers",
            &brokers,
            "--orders",
            "400",
            "--rate",
            "20",
            "--time-scale",
            "0.2",
            "--load",
            "low",
        ],
    );
    let by = format!(":{}", run.child.id());
    let mut watch = Session::launch(&["watch", "--brokers", &brokers]);
    let screen = watch
        .screen
        .wait_for("the run's orders moving", Duration::from_secs(60), |s| {
            s.lines()
                .filter(|l| l.contains(&by) && (l.contains("Preparing") || l.contains("Shipped")))
                .count()
                >= 2
                && s.contains("server + consumers")
        });
    assert!(screen.contains("Processes of the group"), "{screen}");
    assert!(screen.contains("finished twice 0"), "{screen}");
    watch.press(b"q");
    assert_eq!(watch.exit_code(Duration::from_secs(10)), 0);
    watch.assert_terminal_restored();
    run.signal("-KILL");
    run.wait(&elsewhere, Duration::from_secs(10));
}

/// `load` on a terminal is its own monitor: orders followed to Finished on
/// screen, the summary printed once the terminal is back.
#[test]
fn load_on_a_terminal_monitors_its_orders_to_finished() {
    let cluster = common::cluster_with_topics(6);
    let brokers = cluster.bootstrap_servers();
    let elsewhere = Workdir::new();
    let (mut serve, address) = serve_on(&elsewhere, &brokers, &["--time-scale", "0.05"]);
    let mut load = Session::launch(&[
        "load",
        "--target",
        &address,
        "--brokers",
        &brokers,
        "--orders",
        "120",
        "--rate",
        "40",
    ]);
    let screen = load
        .screen
        .wait_for("every order followed", Duration::from_secs(60), |s| {
            s.contains("followed to Finished: 120 finished · 0 waiting")
                && s.contains("every order sent")
        });
    assert!(screen.contains("Errors by gRPC code"), "{screen}");
    assert!(screen.contains("answered 120"), "{screen}");
    load.press(b"q");
    assert_eq!(load.exit_code(Duration::from_secs(10)), 0);
    load.assert_terminal_restored();
    let after = load.screen.text();
    assert!(after.contains("load: 120 orders"), "{after}");
    assert!(after.contains("finished 120 (waiting 0)"), "{after}");
    serve.signal("-TERM");
    serve.wait(&elsewhere, Duration::from_secs(30));
}
