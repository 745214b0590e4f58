//! Getting bulk operations into Elasticsearch, as Elasticsearch asks to be
//! written to: 429 and 5xx are back-pressure (wait with jittered backoff,
//! send smaller requests, never give up while it answers); no answer means
//! down (wait, probe again); 413 splits the request; a whole-request
//! refusal (401, 403, 404, ...) stops with what was not sent handed back;
//! an item refused for good comes back with its reason.

use std::{collections::VecDeque, time::Duration};

use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::elastic::{ElasticClient, ElasticError, ItemOutcome, Verdict};
use crate::clock::Backoff;

/// Operations per request when Elasticsearch takes everything.
pub const MAX_BATCH: usize = 2_000;
/// The smallest request back-pressure shrinks to.
const MIN_BATCH: usize = 25;
const THROTTLED: Backoff = Backoff {
    first: Duration::from_millis(50),
    max: Duration::from_secs(5),
};
const DOWN: Backoff = Backoff {
    first: Duration::from_millis(250),
    max: Duration::from_secs(5),
};

/// How Elasticsearch is taking our writes, as the screen shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Pressure {
    #[default]
    Clear,
    /// Answering 429/5xx: we are being slowed down.
    Throttled,
    /// Not answering.
    Down(String),
}

/// An operation Elasticsearch refused for good, with its reason.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub operation: String,
    pub reason: String,
}

/// What became of operations handed to [`Indexer::send`].
#[derive(Debug, Default, PartialEq)]
pub struct Sent {
    pub indexed: usize,
    pub refused: Vec<Refusal>,
    /// Requests repeated after back-pressure or an outage.
    pub retries: u64,
}

#[derive(Debug)]
pub enum Unsent {
    /// The whole request was refused; retrying will not help.
    Refused { error: ElasticError },
    /// The caller's `give_up` fired while waiting to retry.
    GaveUp,
}

/// Why `send` returned before every operation was taken: what was done,
/// and the operations still owed.
#[derive(Debug)]
pub struct Stopped {
    pub sent: Sent,
    pub rest: Vec<String>,
    pub why: Unsent,
}

pub struct Indexer {
    client: ElasticClient,
    templates_ready: bool,
    /// Adapts to what Elasticsearch takes (AIMD): halves when a request is
    /// refused whole or mostly, grows by a tenth of the maximum when (nearly)
    /// all of one gets in.
    batch: usize,
    pressure: Pressure,
}

impl Indexer {
    pub fn new(client: ElasticClient) -> Self {
        Self {
            client,
            templates_ready: false,
            batch: MAX_BATCH,
            pressure: Pressure::Clear,
        }
    }

    pub fn pressure(&self) -> &Pressure {
        &self.pressure
    }

    /// The request size Elasticsearch currently takes.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Sends every operation (each an action and a source line), retrying
    /// what Elasticsearch pushes back on, until all are indexed or refused
    /// for good, the whole request is refused, or `give_up` fires.
    /// `on_pressure` hears each change of pressure as it happens.
    pub async fn send(
        &mut self,
        operations: Vec<String>,
        give_up: &CancellationToken,
        mut on_pressure: impl FnMut(&Pressure),
    ) -> Result<Sent, Stopped> {
        let mut sent = Sent::default();
        let mut queue: VecDeque<Vec<String>> = VecDeque::new();
        requeue(&mut queue, operations, self.batch);
        let mut wait = Duration::ZERO;
        while let Some(mut chunk) = queue.pop_front() {
            // Items sent back alone would make small requests: fill up.
            while chunk.len() < self.batch {
                let Some(mut more) = queue.pop_front() else {
                    break;
                };
                let room = self.batch - chunk.len();
                if more.len() > room {
                    queue.push_front(more.split_off(room));
                }
                chunk.append(&mut more);
            }
            if wait > Duration::ZERO {
                sent.retries += 1;
                tokio::select! {
                    _ = tokio::time::sleep(jittered(wait)) => {}
                    _ = give_up.cancelled() => {
                        queue.push_front(chunk);
                        return Err(stopped(sent, queue, Unsent::GaveUp));
                    }
                }
            }
            let answer = match self.ensure_templates().await {
                Ok(()) => self.client.bulk(&chunk).await,
                Err(error) => Err(error),
            };
            // What the answer means for the next request: how long to
            // wait, and whether to send less at once.
            let (backoff, progress, shrink) = match answer {
                Ok(outcomes) => {
                    let size = chunk.len();
                    let mut again = Vec::new();
                    for (operation, outcome) in chunk.into_iter().zip(outcomes) {
                        match outcome {
                            ItemOutcome::Indexed => sent.indexed += 1,
                            ItemOutcome::Retry(_) => again.push(operation),
                            ItemOutcome::Failed(reason) => {
                                sent.refused.push(Refusal { operation, reason })
                            }
                        }
                    }
                    // Additive increase while (nearly) everything gets in.
                    if again.len() * 10 <= size {
                        self.batch = (self.batch + MAX_BATCH / 10).min(MAX_BATCH);
                    }
                    if again.is_empty() {
                        self.set_pressure(Pressure::Clear, &mut on_pressure);
                        wait = Duration::ZERO;
                        continue;
                    }
                    self.set_pressure(Pressure::Throttled, &mut on_pressure);
                    // Some items pushed back: retry those after a pause;
                    // halve only when most of the request was refused.
                    let mostly_refused = again.len() * 2 > size;
                    let progress = again.len() < size;
                    requeue_front(&mut queue, again, self.batch);
                    (THROTTLED, progress, mostly_refused)
                }
                Err(error) => match error.verdict() {
                    Verdict::TooLarge if chunk.len() == 1 => {
                        sent.refused.push(Refusal {
                            operation: chunk.into_iter().next().unwrap_or_default(),
                            reason: error.to_string(),
                        });
                        continue;
                    }
                    Verdict::TooLarge => {
                        self.batch = (chunk.len() / 2).max(1);
                        requeue_front(&mut queue, chunk, self.batch);
                        continue;
                    }
                    Verdict::Refused => {
                        queue.push_front(chunk);
                        return Err(stopped(sent, queue, Unsent::Refused { error }));
                    }
                    Verdict::Down => {
                        self.templates_ready = false;
                        self.set_pressure(Pressure::Down(error.to_string()), &mut on_pressure);
                        requeue_front(&mut queue, chunk, self.batch);
                        (DOWN, false, false)
                    }
                    Verdict::Throttled => {
                        self.set_pressure(Pressure::Throttled, &mut on_pressure);
                        requeue_front(&mut queue, chunk, self.batch);
                        (THROTTLED, false, true)
                    }
                },
            };
            if shrink {
                self.batch = (self.batch / 2).max(MIN_BATCH);
            }
            // The wait grows only while nothing gets in.
            wait = if wait.is_zero() || progress {
                backoff.first
            } else {
                backoff.next(wait)
            };
        }
        Ok(sent)
    }

    async fn ensure_templates(&mut self) -> Result<(), ElasticError> {
        if !self.templates_ready {
            self.client.ensure_templates().await?;
            self.templates_ready = true;
        }
        Ok(())
    }

    fn set_pressure(&mut self, pressure: Pressure, on_pressure: &mut impl FnMut(&Pressure)) {
        if self.pressure != pressure {
            match &pressure {
                Pressure::Clear => tracing::info!("Elasticsearch takes writes again"),
                Pressure::Throttled => tracing::info!("Elasticsearch pushes back; slowing down"),
                Pressure::Down(reason) => tracing::warn!(reason, "Elasticsearch is down"),
            }
            self.pressure = pressure;
            on_pressure(&self.pressure);
        }
    }
}

fn stopped(sent: Sent, queue: VecDeque<Vec<String>>, why: Unsent) -> Stopped {
    Stopped {
        sent,
        rest: queue.into_iter().flatten().collect(),
        why,
    }
}

fn requeue(queue: &mut VecDeque<Vec<String>>, operations: Vec<String>, size: usize) {
    let mut operations = operations.into_iter().peekable();
    while operations.peek().is_some() {
        queue.push_back(operations.by_ref().take(size).collect());
    }
}

/// Puts operations back at the head of the queue, in requests of `size`.
fn requeue_front(queue: &mut VecDeque<Vec<String>>, operations: Vec<String>, size: usize) {
    let mut head = VecDeque::new();
    requeue(&mut head, operations, size);
    while let Some(chunk) = head.pop_back() {
        queue.push_front(chunk);
    }
}

/// Full jitter on the upper half, so many senders do not retry in step.
fn jittered(wait: Duration) -> Duration {
    let half = wait / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requeued_operations_keep_their_order_in_smaller_requests() {
        let mut queue = VecDeque::from([vec!["c".to_owned()]]);
        requeue_front(&mut queue, vec!["a".into(), "b".into(), "x".into()], 2);
        let flat: Vec<String> = queue.iter().flatten().cloned().collect();
        assert_eq!(flat, ["a", "b", "x", "c"]);
        assert_eq!(queue[0].len(), 2);
    }

    #[test]
    fn jitter_stays_within_the_upper_half() {
        for _ in 0..100 {
            let wait = jittered(Duration::from_millis(100));
            assert!((50..=100).contains(&wait.as_millis()), "{wait:?}");
        }
    }
}
