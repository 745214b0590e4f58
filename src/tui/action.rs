//! What the user wants (`Action`): the actions, the chaos menu and the
//! help's key list. The keymap (`keymap.rs`) turns keys into these.

use ratatui::crossterm::event::Event;

use std::time::Duration;

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
    ImportDashboard,
    OpenChaos,
    /// A choice in the chaos menu.
    Inject(Chaos),
    /// End the scenario's current phase now.
    SkipPhase,
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
        group: "Chaos",
        keys: "n",
        does: "scenario: skip to the next phase",
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
