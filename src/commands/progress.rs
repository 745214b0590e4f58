//! The headless progress display on stderr.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::metrics::MetricsSnapshot;

pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar towards `total` finished orders, or a spinner when open-ended.
    pub fn new(total: Option<u64>) -> Self {
        let bar = match total {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        let template = match total {
            Some(_) => "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} finished · {msg}",
            None => "{spinner} [{elapsed_precise}] {pos} finished · {msg}",
        };
        bar.set_style(ProgressStyle::with_template(template).expect("valid progress template"));
        Self { bar }
    }

    pub fn update(&self, snapshot: &MetricsSnapshot, in_flight: usize) {
        let c = snapshot.counts;
        self.bar.set_position(c.finished);
        self.bar.set_message(format!(
            "sent {} · acked {} · in flight {} · rejected {} · failed {}",
            c.sent, c.acknowledged, in_flight, c.rejected, c.failed
        ));
    }

    pub fn done(&self) {
        self.bar.finish_and_clear();
    }
}
