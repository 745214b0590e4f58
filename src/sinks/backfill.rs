//! Sending the spool into Elasticsearch: directory by directory, resumable
//! (each directory keeps a cursor of how far exports got), idempotent
//! (document ids come from order ids, order documents carry their state as
//! a version, so sending twice leaves the same documents).

use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::{
    elastic::ElasticError,
    indexer::{Indexer, Pressure, Stopped, Unsent, MAX_BATCH},
    spool::{append_dead_letters, SpoolError, SpoolReader},
};

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("cannot write the dead-letter file {path}: {source}")]
    DeadLetters {
        path: String,
        source: std::io::Error,
    },
    #[error("{reason} (after {done} of {total} documents); run the export again to resume")]
    Interrupted {
        done: u64,
        total: u64,
        reason: String,
    },
    #[error("Elasticsearch refused the export after {done} of {total} documents: {error}")]
    Refused {
        done: u64,
        total: u64,
        error: ElasticError,
    },
}

#[derive(Debug, Default, PartialEq)]
pub struct BackfillSummary {
    pub indexed: u64,
    pub failures: Vec<String>,
    /// Refused for good, written to the export's dead-letter file.
    pub failed: u64,
    /// Directories a running process still writes (not read).
    pub in_use: usize,
}

/// The export's own dead-letter file, beside the spool.
pub const BACKFILL_DEAD_LETTERS: &str = "export-dead-letter.ndjson";

/// Sends the spool under `data_dir` from where the last export stopped (or
/// from the start with `restart`), calling `progress` with (done, total)
/// after each request. Back-pressure is waited out; an outage ends the
/// export (resumable); a refusal of the whole request ends it with why.
pub async fn backfill(
    data_dir: &Path,
    indexer: &mut Indexer,
    restart: bool,
    mut progress: impl FnMut(u64, u64),
) -> Result<BackfillSummary, BackfillError> {
    let mut reader = SpoolReader::open(data_dir, restart)?;
    let total = reader.remaining()?;
    let mut summary = BackfillSummary {
        in_use: reader.in_use.len(),
        ..BackfillSummary::default()
    };
    let dead_letters = data_dir.join(BACKFILL_DEAD_LETTERS);
    let mut done = 0;
    progress(done, total);
    loop {
        let operations = reader.peek(MAX_BATCH)?;
        if operations.is_empty() {
            return Ok(summary);
        }
        let count = operations.len() as u64;
        // An outage ends the export at once: the user reruns it later.
        let give_up = CancellationToken::new();
        let mut outage = String::new();
        let sent = indexer
            .send(operations, &give_up, |pressure| {
                if let Pressure::Down(reason) = pressure {
                    outage = reason.clone();
                    give_up.cancel();
                }
            })
            .await;
        let sent = match sent {
            Ok(sent) => sent,
            Err(Stopped { why, .. }) => {
                return Err(match why {
                    Unsent::GaveUp => BackfillError::Interrupted {
                        done,
                        total,
                        reason: outage,
                    },
                    Unsent::Refused { error } => BackfillError::Refused { done, total, error },
                })
            }
        };
        append_dead_letters(&dead_letters, &sent.refused).map_err(|source| {
            BackfillError::DeadLetters {
                path: dead_letters.display().to_string(),
                source,
            }
        })?;
        reader.consume()?;
        summary.indexed += sent.indexed as u64;
        summary.failed += sent.refused.len() as u64;
        for refusal in sent.refused {
            if summary.failures.len() < 5 && !summary.failures.contains(&refusal.reason) {
                summary.failures.push(refusal.reason);
            }
        }
        done += count;
        progress(done, total);
    }
}
