//! The real binary in a pseudo-terminal, driven by keys like a person:
//! pick a load, watch orders finish, stop the clients, quit. Then check the
//! terminal was handed back as it was.

use std::{
    io::{Read, Write},
    path::Path,
    sync::mpsc,
    time::{Duration, Instant},
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

#[test]
fn pick_a_load_watch_orders_finish_stop_and_quit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("orders.csv"),
        dir.path().join("orders.csv"),
    )
    .unwrap();
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: ROWS,
            cols: COLS,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_orderdeck"));
    command.args(["--time-scale", "0.01"]);
    command.cwd(dir.path());
    command.env("TERM", "xterm-256color");
    let mut child = pty.slave.spawn_command(command).unwrap();
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().unwrap();
    let mut keys = pty.master.take_writer().unwrap();
    let (tx, output) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buffer) {
            if n == 0 || tx.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = Screen {
        parser: vt100::Parser::new(ROWS.try_into().unwrap(), COLS.try_into().unwrap(), 0),
        output,
    };
    let mut press = |key: &[u8]| {
        keys.write_all(key).unwrap();
        keys.flush().unwrap();
    };

    let start = screen.wait_for("the start screen", Duration::from_secs(20), |s| {
        s.contains("Choose a load level")
    });
    assert!(
        start.contains("embedded (in-process Kafka mock cluster)"),
        "{start}"
    );
    assert!(
        screen.parser.screen().alternate_screen(),
        "the UI draws on the alternate screen"
    );

    press(b"3");
    let running = screen.wait_for("orders to finish", Duration::from_secs(60), |s| {
        // Finished counted on the board, and finished transitions listed.
        finished_count(s).is_some_and(|n| n > 0) && s.contains("→DONE")
    });
    assert!(running.contains("load high"), "{running}");
    assert!(running.contains("32 clients ▶"), "{running}");

    press(b"s");
    screen.wait_for("the clients to stop", Duration::from_secs(10), |s| {
        s.contains("32 clients ■")
    });

    press(b"q");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "orderdeck did not exit after q:\n{}",
            screen.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(200));
    screen.pump();
    assert!(status.success(), "exit status {status:?}");
    let terminal = screen.parser.screen();
    assert!(
        !terminal.alternate_screen(),
        "the alternate screen was left"
    );
    assert!(!terminal.hide_cursor(), "the cursor is visible again");
}
