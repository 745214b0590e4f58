//! E-mail notifications on chosen transitions (the original offered them):
//! sent to the order's `correo` through SMTP, rate-limited, from their own
//! task. The pipeline never waits for them; failures are counted, not fatal.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use lettre::{
    message::header::ContentType, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};
use serde::Serialize;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::order::{OrderRecord, State};

/// E-mails waiting to be sent at most; past it they are dropped (counted).
const QUEUE: usize = 10_000;
/// How long shutdown waits for queued e-mails.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct NotifySettings {
    /// `smtp://host:port` (plain), `smtps://…` or `smtp://…?tls=required`,
    /// with optional `user:password@`.
    pub smtp_url: String,
    pub from: String,
    pub on: Vec<State>,
    /// E-mails per second at most.
    pub per_second: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("invalid --notify-smtp URL: {0}")]
    Url(String),
    #[error("invalid --notify-from address {0:?}")]
    From(String),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NotifyCounts {
    pub sent: u64,
    pub failed: u64,
    /// Not sent because the queue was full (the SMTP server is too slow).
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    fn counts(&self) -> NotifyCounts {
        NotifyCounts {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

struct Email {
    to: String,
    subject: String,
    body: String,
}

/// The pipeline's side: decides and queues, never waits.
#[derive(Clone)]
pub struct Notifier {
    on: Vec<State>,
    queue: mpsc::Sender<Email>,
    counters: Arc<Counters>,
}

impl Notifier {
    /// Queues an e-mail if `state` is one to notify on.
    pub fn transition(&self, record: &OrderRecord, state: State) {
        if !self.on.contains(&state) {
            return;
        }
        let order = &record.order;
        let email = Email {
            to: order.email.clone(),
            subject: format!(
                "Your order {}: {} / {}",
                order.product,
                state.name(),
                state.spanish_name()
            ),
            body: format!(
                "State: {} ({})\nOrder: {}\nProduct: {} ({:.2})\nShipping to: {}, {}\n",
                state.name(),
                state.spanish_name(),
                record.order_id,
                order.product,
                order.price,
                order.address,
                order.region
            ),
        };
        if self.queue.try_send(email).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn counts(&self) -> NotifyCounts {
        self.counters.counts()
    }
}

/// The sending task; `close` sends what is queued (for a while), then stops.
pub struct NotifyTask {
    stop: CancellationToken,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl NotifyTask {
    pub async fn close(self) -> NotifyCounts {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::error!(%error, "notification task failed");
        }
        self.counters.counts()
    }
}

pub fn start(settings: NotifySettings) -> Result<(Notifier, NotifyTask), NotifyError> {
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&settings.smtp_url)
        .map_err(|e| NotifyError::Url(e.to_string()))?
        .timeout(Some(Duration::from_secs(10)))
        .build();
    let from = settings
        .from
        .parse()
        .map_err(|_| NotifyError::From(settings.from.clone()))?;
    let counters = Arc::new(Counters::default());
    let (queue, inbox) = mpsc::channel(QUEUE);
    let stop = CancellationToken::new();
    let pace = Duration::from_secs_f64(1.0 / settings.per_second.max(0.001));
    let sender = Sender {
        transport,
        from,
        counters: Arc::clone(&counters),
    };
    let task = tokio::spawn(sender.run(inbox, pace, stop.clone()));
    Ok((
        Notifier {
            on: settings.on,
            queue,
            counters: Arc::clone(&counters),
        },
        NotifyTask {
            stop,
            counters,
            task,
        },
    ))
}

struct Sender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
    counters: Arc<Counters>,
}

impl Sender {
    async fn run(self, mut inbox: mpsc::Receiver<Email>, pace: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(pace);
        loop {
            let email = tokio::select! {
                email = inbox.recv() => email,
                _ = stop.cancelled() => break,
            };
            let Some(email) = email else { return };
            tick.tick().await;
            self.send(email).await;
        }
        // Shutting down: what is queued still goes out, within a limit.
        let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
        while let Ok(email) = inbox.try_recv() {
            if tokio::time::Instant::now() >= deadline {
                self.counters
                    .dropped
                    .fetch_add(1 + inbox.len() as u64, Ordering::Relaxed);
                return;
            }
            tick.tick().await;
            self.send(email).await;
        }
    }

    async fn send(&self, email: Email) {
        let message = email
            .to
            .parse()
            .map_err(|e| format!("bad address {:?}: {e}", email.to))
            .and_then(|to| {
                Message::builder()
                    .from(self.from.clone())
                    .to(to)
                    .subject(email.subject)
                    .header(ContentType::TEXT_PLAIN)
                    .body(email.body)
                    .map_err(|e| e.to_string())
            });
        let outcome = match message {
            Ok(message) => self
                .transport
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(reason) => Err(reason),
        };
        match outcome {
            Ok(()) => self.counters.sent.fetch_add(1, Ordering::Relaxed),
            Err(reason) => {
                tracing::warn!(reason, "notification not sent");
                self.counters.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}
