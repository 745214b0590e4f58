//! What the user wants (`Action`), and the keymap from keys to actions.

use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::app::{App, Overlay, Screen};
use crate::config::LoadLevel;

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
    Quit,
}

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
        _ => return None,
    })
}
