//! Replaying the spool into Elasticsearch: in order, resumable (a cursor
//! file records how far it got), idempotent (document ids come from order
//! ids, so running it twice leaves the same documents).

use std::path::Path;

use super::{
    elastic::{ElasticClient, ElasticError},
    mirror::{send_batch, BATCH},
    spool::SpoolReader,
};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot read the spool in {dir}: {source}")]
    Spool { dir: String, source: std::io::Error },
    #[error(transparent)]
    Elastic(#[from] ElasticError),
    #[error("Elasticsearch became unavailable after {done} of {total} documents: {error}; run the export again to resume")]
    Interrupted {
        done: u64,
        total: u64,
        error: ElasticError,
    },
}

#[derive(Debug, Default, PartialEq)]
pub struct ExportSummary {
    pub indexed: u64,
    pub failures: Vec<String>,
    pub failed: u64,
}

/// Sends the spool under `data_dir` to Elasticsearch from where the last
/// export stopped (or from the start with `restart`), calling `progress`
/// with (done, total) after each batch.
pub async fn replay_spool(
    data_dir: &Path,
    client: &ElasticClient,
    restart: bool,
    mut progress: impl FnMut(u64, u64),
) -> Result<ExportSummary, ExportError> {
    let dir = data_dir.join("spool");
    let spool_error = |source| ExportError::Spool {
        dir: dir.display().to_string(),
        source,
    };
    let mut reader = SpoolReader::open(&dir, "export.cursor", false).map_err(spool_error)?;
    if restart {
        reader.rewind().map_err(spool_error)?;
    }
    let total = reader.remaining().map_err(spool_error)?;
    client.ensure_templates().await?;
    let mut summary = ExportSummary::default();
    let mut done = 0;
    progress(done, total);
    loop {
        let operations = reader.peek(BATCH).map_err(spool_error)?;
        if operations.is_empty() {
            return Ok(summary);
        }
        let count = operations.len() as u64;
        let (result, unavailable) = send_batch(client, operations).await;
        if let Some(error) = unavailable {
            return Err(ExportError::Interrupted { done, total, error });
        }
        reader.consume().map_err(spool_error)?;
        summary.indexed += result.indexed as u64;
        summary.failed += result.failures.len() as u64;
        for reason in result.failures {
            if summary.failures.len() < 5 && !summary.failures.contains(&reason) {
                summary.failures.push(reason);
            }
        }
        done += count;
        progress(done, total);
    }
}
