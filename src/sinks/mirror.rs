//! The sink task: takes documents from the pipeline, batches them, and
//! either indexes them in bulk or, when Elasticsearch is not there (or not
//! configured), appends them to the spool; when Elasticsearch comes back the
//! spool is replayed first, in order. Nothing is dropped: every document is
//! indexed, spooled, or counted as failed with its reason.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use rand::Rng;
use tokio::{
    sync::{mpsc, watch, Semaphore},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use super::{
    document::{Document, IndexNames},
    elastic::{ElasticClient, ElasticConfig, ElasticError, ItemOutcome},
    spool::{SpoolReader, SpoolWriter},
};

/// Operations per `_bulk` request and per spool read.
pub const BATCH: usize = 1_000;
/// Documents waiting in memory at most; past it the pipeline waits.
const QUEUE: usize = 20_000;
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Attempts for one batch before its rest goes to the spool.
const ATTEMPTS: u32 = 4;
/// Spool batches replayed between two status updates.
const REPLAY_BATCHES_PER_STATUS: usize = 20;
/// Longest wait between two attempts to reach Elasticsearch while it is down.
const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Reasons of permanent failures kept for the screen.
const KEPT_REASONS: usize = 5;

#[derive(Clone, Debug)]
pub enum SinkTarget {
    /// No Elasticsearch: everything goes to the spool, for `orderdeck export`.
    Spool,
    Elastic(ElasticConfig),
    /// Mirror nothing: for measuring the pipeline without its sink.
    Off,
}

#[derive(Clone, Debug)]
pub struct SinkSettings {
    pub target: SinkTarget,
    /// The spool lives in `<data_dir>/spool`.
    pub data_dir: PathBuf,
    pub names: IndexNames,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot use the spool in {dir}: {source}")]
    Spool { dir: String, source: std::io::Error },
    #[error(transparent)]
    Elastic(#[from] ElasticError),
}

/// Counters that reconcile: produced = indexed + spooled + failed + queued.
#[derive(Default)]
pub struct SinkCounters {
    produced: AtomicU64,
    indexed: AtomicU64,
    spooled: AtomicU64,
    failed: AtomicU64,
    reasons: Mutex<Vec<String>>,
}

/// What the screen and the report show about the sink.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SinkStatus {
    /// `spool <dir>` or the Elasticsearch URL.
    pub target: String,
    /// None while healthy; the reason while Elasticsearch is unavailable.
    pub down: Option<String>,
    pub produced: u64,
    pub indexed: u64,
    /// Waiting in the spool (for a replay or an export).
    pub spooled: u64,
    pub failed: u64,
    /// In memory, not yet written anywhere.
    pub queued: u64,
    /// Why documents failed for good (the first few).
    pub failures: Vec<String>,
}

impl SinkCounters {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn status(&self, target: &str, down: Option<String>) -> SinkStatus {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (produced, indexed, spooled, failed) = (
            get(&self.produced),
            get(&self.indexed),
            get(&self.spooled),
            get(&self.failed),
        );
        SinkStatus {
            target: target.to_owned(),
            down,
            produced,
            indexed,
            spooled,
            failed,
            queued: produced.saturating_sub(indexed + spooled + failed),
            failures: self
                .reasons
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    fn fail(&self, reason: String) {
        Self::add(&self.failed, 1);
        tracing::warn!(reason, "document rejected by Elasticsearch");
        let mut reasons = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        if reasons.len() < KEPT_REASONS && !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }
}

/// The pipeline's side of the sink; cheap to clone.
#[derive(Clone)]
pub struct SinkHandle {
    /// Rendered bulk operations, a submission at a time.
    operations: mpsc::Sender<Vec<String>>,
    /// Room for documents in memory: bounds the queue by documents, not
    /// by submissions.
    room: Arc<Semaphore>,
    names: Arc<IndexNames>,
    counters: Arc<SinkCounters>,
    status: watch::Receiver<SinkStatus>,
    off: bool,
}

/// The running sink task; `close` drains it.
pub struct SinkTask {
    stop: CancellationToken,
    status: watch::Receiver<SinkStatus>,
    task: JoinHandle<()>,
}

impl SinkTask {
    /// Writes out everything queued, then stops. Call once nothing submits.
    pub async fn close(self) -> SinkStatus {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::error!(%error, "sink task failed");
        }
        let last = self.status.borrow().clone();
        last
    }
}

impl SinkHandle {
    /// Queues documents; waits (backpressure) only when the queue is full,
    /// which a spool on local disk keeps rare.
    pub async fn submit(&self, documents: Vec<Document>) {
        if self.off {
            return;
        }
        // Rendering happens here, on the caller's task, so it spreads over
        // the runtime's threads instead of queueing behind one sink task.
        let operations: Vec<String> = documents
            .iter()
            .map(|d| d.bulk_lines(&self.names))
            .collect();
        let count = operations.len();
        SinkCounters::add(&self.counters.produced, count);
        // Backpressure: wait for room (the sink gives it back as it takes
        // documents out); a huge submission waits for the whole queue.
        if let Ok(permit) = self.room.acquire_many(count.min(QUEUE) as u32).await {
            permit.forget();
        }
        if self.operations.send(operations).await.is_err() {
            // The sink stopped (shutdown): count it, never lose it silently.
            for _ in 0..count {
                self.counters
                    .fail("sink stopped before the document was written".to_owned());
            }
        }
    }

    pub fn status(&self) -> watch::Receiver<SinkStatus> {
        self.status.clone()
    }
}

pub async fn start(settings: SinkSettings) -> Result<(SinkHandle, SinkTask), SinkError> {
    let dir = settings.data_dir.join("spool");
    let spool_error = |source| SinkError::Spool {
        dir: dir.display().to_string(),
        source,
    };
    let (elastic, target) = match &settings.target {
        SinkTarget::Off => return Ok(switched_off(settings.names)),
        SinkTarget::Spool => (None, format!("spool {}", dir.display())),
        SinkTarget::Elastic(config) => {
            let client = ElasticClient::new(config, settings.names.clone())?;
            let reader = SpoolReader::open(&dir, "replay", true).map_err(spool_error)?;
            (Some((client, reader)), config.url.clone())
        }
    };
    let writer = SpoolWriter::open(&dir).map_err(spool_error)?;
    let counters = Arc::new(SinkCounters::default());
    let (status_tx, status) = watch::channel(counters.status(&target, None));
    let (operations, inbox) = mpsc::channel(QUEUE);
    let room = Arc::new(Semaphore::new(QUEUE));
    let names = Arc::new(settings.names);
    let mut mirror = Mirror {
        writer,
        elastic,
        counters: Arc::clone(&counters),
        down: None,
        templates_ready: false,
        retry_at: tokio::time::Instant::now(),
        backoff: Duration::from_millis(250),
    };
    if let Some(reader) = mirror.elastic.as_mut().map(|(_, reader)| reader) {
        // Documents left in the spool by an earlier run are still owed.
        SinkCounters::add(&counters.spooled, reader.remaining().unwrap_or(0) as usize);
    }
    let stop = CancellationToken::new();
    let stopping = stop.clone();
    let returned = Arc::clone(&room);
    let task = tokio::spawn(async move {
        mirror
            .run(inbox, returned, status_tx, target, stopping)
            .await
    });
    Ok((
        SinkHandle {
            operations,
            room: Arc::clone(&room),
            names,
            counters,
            status: status.clone(),
            off: false,
        },
        SinkTask { stop, status, task },
    ))
}

fn switched_off(names: IndexNames) -> (SinkHandle, SinkTask) {
    let counters = Arc::new(SinkCounters::default());
    let (_, status) = watch::channel(counters.status("off", None));
    let (operations, _) = mpsc::channel(1);
    let handle = SinkHandle {
        operations,
        room: Arc::new(Semaphore::new(0)),
        names: Arc::new(names),
        counters,
        status: status.clone(),
        off: true,
    };
    let task = SinkTask {
        stop: CancellationToken::new(),
        status,
        task: tokio::spawn(async {}),
    };
    (handle, task)
}

struct Mirror {
    writer: SpoolWriter,
    elastic: Option<(ElasticClient, SpoolReader)>,
    counters: Arc<SinkCounters>,
    down: Option<String>,
    templates_ready: bool,
    /// While down: when to try Elasticsearch again.
    retry_at: tokio::time::Instant,
    backoff: Duration,
}

impl Mirror {
    async fn run(
        &mut self,
        mut inbox: mpsc::Receiver<Vec<String>>,
        room: Arc<Semaphore>,
        status: watch::Sender<SinkStatus>,
        target: String,
        stop: CancellationToken,
    ) {
        let mut batch: Vec<String> = Vec::with_capacity(BATCH);
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        loop {
            tokio::select! {
                received = inbox.recv() => match received {
                    Some(operations) => {
                        room.add_permits(operations.len().min(QUEUE));
                        batch.extend(operations);
                        if batch.len() < BATCH {
                            continue;
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            self.write(std::mem::take(&mut batch)).await;
            self.replay(&status, &target).await;
            status.send_replace(self.counters.status(&target, self.down.clone()));
        }
        // Shutting down: whatever is still queued is written out too.
        while let Ok(operations) = inbox.try_recv() {
            room.add_permits(operations.len().min(QUEUE));
            batch.extend(operations);
            if batch.len() >= BATCH {
                self.write(std::mem::take(&mut batch)).await;
            }
        }
        self.write(batch).await;
        self.retry_at = tokio::time::Instant::now();
        self.replay(&status, &target).await;
        status.send_replace(self.counters.status(&target, self.down.clone()));
    }

    /// Indexes a batch, or spools it when Elasticsearch is down, absent, or
    /// still has older documents waiting in the spool (order is kept).
    async fn write(&mut self, batch: Vec<String>) {
        if batch.is_empty() {
            return;
        }
        let spool_has_backlog = self.counters.spooled.load(Ordering::Relaxed) > 0;
        if self.elastic.is_none() || self.down.is_some() || spool_has_backlog {
            return self.spool(&batch);
        }
        let result = self.index(batch).await;
        self.count(&result);
        if !result.rest.is_empty() {
            self.spool(&result.rest);
        }
    }

    fn spool(&mut self, operations: &[String]) {
        match self.writer.append(operations) {
            Ok(()) => SinkCounters::add(&self.counters.spooled, operations.len()),
            Err(error) => {
                for _ in operations {
                    self.counters.fail(format!("spool write failed: {error}"));
                }
            }
        }
    }

    fn count(&self, result: &BatchResult) {
        SinkCounters::add(&self.counters.indexed, result.indexed);
        for reason in &result.failures {
            self.counters.fail(reason.clone());
        }
    }

    /// Sends operations with retries; what is still not indexed when
    /// Elasticsearch is unavailable comes back in `rest`.
    async fn index(&mut self, operations: Vec<String>) -> BatchResult {
        let Some((client, _)) = &self.elastic else {
            return BatchResult {
                rest: operations,
                ..BatchResult::default()
            };
        };
        if !self.templates_ready {
            if let Err(error) = client.ensure_templates().await {
                self.mark_down(&error);
                return BatchResult {
                    rest: operations,
                    ..BatchResult::default()
                };
            }
            self.templates_ready = true;
        }
        let (result, unavailable) = send_batch(client, operations).await;
        match unavailable {
            Some(error) => self.mark_down(&error),
            None => {
                self.down = None;
                self.backoff = Duration::from_millis(250);
            }
        }
        result
    }

    fn mark_down(&mut self, error: &ElasticError) {
        tracing::warn!(%error, "Elasticsearch unavailable; spooling");
        self.down = Some(error.to_string());
        self.retry_at = tokio::time::Instant::now() + jittered(self.backoff);
        // Probing stays frequent: a long outage must not delay the replay long.
        self.backoff = (self.backoff * 2).min(MAX_PROBE_INTERVAL);
    }

    /// Sends spooled documents, oldest first, while Elasticsearch takes
    /// them (new documents wait meanwhile), publishing progress as it goes.
    async fn replay(&mut self, status: &watch::Sender<SinkStatus>, target: &str) {
        if self.elastic.is_none() || tokio::time::Instant::now() < self.retry_at {
            return;
        }
        for turn in 1.. {
            if self.counters.spooled.load(Ordering::Relaxed) == 0 {
                return;
            }
            if turn % REPLAY_BATCHES_PER_STATUS == 0 {
                status.send_replace(self.counters.status(target, self.down.clone()));
            }
            let Some((_, reader)) = &mut self.elastic else {
                return;
            };
            let operations = match reader.peek(BATCH) {
                Ok(operations) if !operations.is_empty() => operations,
                Ok(_) => return,
                Err(error) => return tracing::error!(%error, "cannot read the spool"),
            };
            let count = operations.len() as u64;
            let result = self.index(operations).await;
            if !result.rest.is_empty() {
                // Still down: the chunk stays in the spool and comes again
                // whole; ids make the part that got in an overwrite.
                return;
            }
            let Some((_, reader)) = &mut self.elastic else {
                return;
            };
            if let Err(error) = reader.consume() {
                return tracing::error!(%error, "cannot advance the spool cursor");
            }
            self.count(&result);
            self.counters.spooled.fetch_sub(count, Ordering::Relaxed);
        }
    }
}

/// What happened to one batch.
#[derive(Debug, Default)]
pub struct BatchResult {
    pub indexed: usize,
    /// Reasons of documents rejected for good.
    pub failures: Vec<String>,
    /// Not indexed because Elasticsearch is unavailable.
    pub rest: Vec<String>,
}

/// One batch with retries: 429/5xx answers (whole or per item) are tried
/// again, only for the items concerned, with exponential backoff and jitter.
/// Returns the outcome and, if Elasticsearch stayed unavailable, why.
pub async fn send_batch(
    client: &ElasticClient,
    mut pending: Vec<String>,
) -> (BatchResult, Option<ElasticError>) {
    let mut result = BatchResult::default();
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=ATTEMPTS {
        match client.bulk(&pending).await {
            Ok(outcomes) => {
                let mut retry = Vec::new();
                for (operation, outcome) in pending.into_iter().zip(outcomes) {
                    match outcome {
                        ItemOutcome::Indexed => result.indexed += 1,
                        ItemOutcome::Failed(reason) => result.failures.push(reason),
                        ItemOutcome::Retry(_) => retry.push(operation),
                    }
                }
                pending = retry;
                if pending.is_empty() {
                    return (result, None);
                }
            }
            Err(error) if error.is_transient() => {
                // A connection error twice in a row will not heal in
                // milliseconds (once may be a pooled connection gone stale).
                let unreachable = matches!(error, ElasticError::Unreachable(_));
                if attempt == ATTEMPTS || (unreachable && attempt >= 2) {
                    result.rest = pending;
                    return (result, Some(error));
                }
            }
            Err(error) => {
                result
                    .failures
                    .extend(pending.iter().map(|_| error.to_string()));
                return (result, None);
            }
        }
        tokio::time::sleep(jittered(delay)).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    result.rest = pending;
    let error = ElasticError::Status {
        status: 429,
        body: "items still refused after retries".to_owned(),
    };
    (result, Some(error))
}

/// Adds up to 50 % random jitter so retries from many places spread out.
fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(1.0 + rand::rng().random_range(0.0..0.5))
}
