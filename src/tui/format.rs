//! Small text formatting shared by the widgets.

use std::time::Duration;

use ratatui::style::Color;

use crate::order::{OrderId, State};

/// `HH:MM:SS.mmm` (UTC) of an epoch-milliseconds stamp.
pub fn clock_utc(unix_ms: i64) -> String {
    let ms = unix_ms.rem_euclid(86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

pub fn hms(elapsed: Duration) -> String {
    let s = elapsed.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The first block of a UUID: enough to tell orders apart on screen.
pub fn short_id(id: OrderId) -> String {
    id.to_string().chars().take(8).collect()
}

/// Milliseconds, switching to seconds when large.
pub fn millis(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.0}s", ms / 1e3)
    } else if ms >= 1_000.0 {
        format!("{:.2}s", ms / 1e3)
    } else if ms >= 10.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{ms:.1}ms")
    }
}

pub fn per_second(rate: f64) -> String {
    if rate >= 10_000.0 {
        format!("{:.1}k/s", rate / 1e3)
    } else {
        format!("{rate:.0}/s")
    }
}

pub fn state_color(state: State) -> Color {
    match state {
        State::Processing => Color::Yellow,
        State::Preparing => Color::Blue,
        State::Shipped => Color::Magenta,
        State::Delivered => Color::Cyan,
        State::Finished => Color::Green,
    }
}

/// Cuts `text` to `width` characters, marking the cut with an ellipsis.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_read_well() {
        assert_eq!(clock_utc(3_723_004), "01:02:03.004");
        assert_eq!(hms(Duration::from_secs(3725)), "01:02:05");
        assert_eq!(millis(0.42), "0.4ms");
        assert_eq!(millis(42.0), "42ms");
        assert_eq!(millis(2_345.0), "2.35s");
        assert_eq!(per_second(12_345.0), "12.3k/s");
        assert_eq!(fit("Reloj inteligente", 6), "Reloj…");
        assert_eq!(fit("Cámara", 6), "Cámara");
    }
}
