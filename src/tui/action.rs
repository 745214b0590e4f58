//! What the user wants (`Action`), and the keymap from keys to actions.

use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use std::time::Duration;

use super::app::{App, Overlay, Screen};
use crate::{load::LoadLevel, pipeline::chaos::Chaos};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Confirm,
    Back,
    FocusNext,
    ToggleHelp,
    ToggleClients,
    TogglePause,
    SetLoad(LoadLevel),
    CycleLoad,
    AddClient,
    RemoveClient,
    AddConsumer,
    RemoveConsumer,
    StartFilter,
    /// A key typed into the filter field.
    FilterInput(Event),
    WiderWindow,
    NarrowerWindow,
    ExportToKibana,
    OpenChaos,
    /// A choice in the chaos menu.
    Inject(Chaos),
    Quit,
}

/// The chaos menu: key, what it breaks, how the menu names it.
pub const CHAOS_MENU: &[(char, Chaos, &str)] = &[
    ('d', Chaos::BrokersDown, "take every Kafka broker down"),
    ('u', Chaos::BrokersUp, "bring the brokers back up"),
    (
        'e',
        Chaos::ProduceErrors(50),
        "fail the next 50 produce requests (retriable)",
    ),
    (
        'l',
        Chaos::RoundTripTime(Duration::from_millis(200)),
        "add 200 ms to every broker round trip",
    ),
    (
        'n',
        Chaos::RoundTripTime(Duration::ZERO),
        "normal round trips again",
    ),
    (
        'm',
        Chaos::MoveLeaders,
        "move every partition leader to another broker",
    ),
    (
        'k',
        Chaos::KillConsumer,
        "kill a consumer with its orders in flight",
    ),
    (
        'p',
        Chaos::PanicOrder,
        "make one order's run panic (it runs again)",
    ),
];

/// One row of the help overlay: keys, what they do.
pub struct KeyHelp {
    pub group: &'static str,
    pub keys: &'static str,
    pub does: &'static str,
}

/// Every key, grouped, as the help overlay lists them.
pub const KEYMAP_HELP: &[KeyHelp] = &[
    KeyHelp {
        group: "Simulation",
        keys: "s",
        does: "start / stop the simulated clients",
    },
    KeyHelp {
        group: "Simulation",
        keys: "1 2 3  l",
        does: "load low / medium / high, l cycles",
    },
    KeyHelp {
        group: "Simulation",
        keys: "+ -",
        does: "one client more / fewer",
    },
    KeyHelp {
        group: "Consumers",
        keys: "space",
        does: "pause / resume the consumers",
    },
    KeyHelp {
        group: "Consumers",
        keys: "c C",
        does: "add / remove a consumer in the group",
    },
    KeyHelp {
        group: "Chaos",
        keys: "x",
        does: "chaos menu: brokers, latency, consumers",
    },
    KeyHelp {
        group: "Navigate",
        keys: "Tab",
        does: "focus: transitions, charts, lag",
    },
    KeyHelp {
        group: "Navigate",
        keys: "j k  ↓ ↑",
        does: "move in the focused panel",
    },
    KeyHelp {
        group: "Navigate",
        keys: "PgDn PgUp  g G",
        does: "page, top, bottom",
    },
    KeyHelp {
        group: "Navigate",
        keys: "[ ]",
        does: "chart window shorter / longer",
    },
    KeyHelp {
        group: "Orders",
        keys: "/",
        does: "filter by id, product, region, state",
    },
    KeyHelp {
        group: "Orders",
        keys: "Enter",
        does: "order detail and timeline",
    },
    KeyHelp {
        group: "Orders",
        keys: "Esc",
        does: "clear the filter / close",
    },
    KeyHelp {
        group: "App",
        keys: "?",
        does: "this help",
    },
    KeyHelp {
        group: "App",
        keys: "q  Ctrl-C",
        does: "quit: stop clients, drain, commit",
    },
];

/// Maps a terminal event to what the user wants, given where they are.
pub fn action_for(app: &App, event: &Event) -> Option<Action> {
    let Event::Key(key) = event else {
        return None;
    };
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    if app.screen == Screen::Main && app.overlay == Overlay::None && app.editing_filter {
        return Some(match key.code {
            KeyCode::Enter => Action::Confirm,
            KeyCode::Esc => Action::Back,
            _ => Action::FilterInput(event.clone()),
        });
    }
    if app.overlay == Overlay::Chaos {
        if let KeyCode::Char(pressed) = key.code {
            if let Some((_, chaos, _)) = CHAOS_MENU.iter().find(|(k, _, _)| *k == pressed) {
                return Some(Action::Inject(*chaos));
            }
        }
    }
    if app.overlay != Overlay::None {
        return match key.code {
            KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') => Some(Action::Back),
            KeyCode::Char('?') => Some(Action::ToggleHelp),
            _ => None,
        };
    }
    navigation(key).or_else(|| command(key))
}

fn navigation(key: &KeyEvent) -> Option<Action> {
    Some(match key.code {
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::Top,
        KeyCode::End | KeyCode::Char('G') => Action::Bottom,
        KeyCode::Enter => Action::Confirm,
        KeyCode::Esc => Action::Back,
        KeyCode::Tab => Action::FocusNext,
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Char('[') => Action::NarrowerWindow,
        KeyCode::Char(']') => Action::WiderWindow,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Char('q') => Action::Quit,
        _ => return None,
    })
}

fn command(key: &KeyEvent) -> Option<Action> {
    Some(match key.code {
        KeyCode::Char('s') => Action::ToggleClients,
        KeyCode::Char(' ') => Action::TogglePause,
        KeyCode::Char('1') => Action::SetLoad(LoadLevel::Low),
        KeyCode::Char('2') => Action::SetLoad(LoadLevel::Medium),
        KeyCode::Char('3') => Action::SetLoad(LoadLevel::High),
        KeyCode::Char('l') => Action::CycleLoad,
        KeyCode::Char('+') | KeyCode::Char('=') => Action::AddClient,
        KeyCode::Char('-') => Action::RemoveClient,
        KeyCode::Char('c') => Action::AddConsumer,
        KeyCode::Char('C') => Action::RemoveConsumer,
        KeyCode::Char('e') => Action::ExportToKibana,
        KeyCode::Char('x') => Action::OpenChaos,
        _ => return None,
    })
}
