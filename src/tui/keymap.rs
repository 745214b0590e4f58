//! The keymap: which action a key means, given what is on screen.

use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::{
    action::{Action, CHAOS_MENU},
    app::{App, Overlay, Screen},
};
use crate::load::LoadLevel;

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
        KeyCode::Char('e') => Action::ImportDashboard,
        KeyCode::Char('x') => Action::OpenChaos,
        KeyCode::Char('n') => Action::SkipPhase,
        _ => return None,
    })
}
