//! `orderdeck export`: what the mirror owes Elasticsearch (the mirror
//! group's unread records with --brokers, then the spool), and the
//! dashboard into Kibana.

use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::{
    cli::{CommonArgs, ExportArgs},
    config::{data_dir, mirror_settings, pipeline_config},
    kafka::{producer::OrderProducer, KafkaConnection},
    sinks::{
        backfill::backfill,
        elastic::{ElasticClient, ElasticConfig},
        indexer::Indexer,
        kibana::import_saved_objects,
        mirror,
    },
    AppError,
};

pub async fn export(args: &CommonArgs, export: &ExportArgs) -> Result<(), AppError> {
    if args.mirror.es.is_none() && args.mirror.kibana.is_none() {
        return Err(AppError::Usage(
            "export needs --es URL (send the spool) and/or --kibana URL (import the dashboard)"
                .to_owned(),
        ));
    }
    if let Some(url) = &args.mirror.es {
        if let Some(brokers) = &args.kafka.brokers {
            catch_up_from_kafka(args, brokers).await?;
        }
        let config = ElasticConfig::from_env(url.clone(), args.mirror.es_ca.clone());
        let mut indexer = Indexer::new(ElasticClient::new(&config, mirror_settings(args).names)?);
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} documents · {per_sec}",
            )
            .expect("valid progress template"),
        );
        let data_dir = data_dir(args);
        let summary = backfill(&data_dir, &mut indexer, export.restart, |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
        .await;
        bar.finish_and_clear();
        let summary = summary?;
        println!(
            "exported {} documents from {} to {url} ({} refused)",
            summary.indexed,
            data_dir.join("spool").display(),
            summary.failed
        );
        if summary.in_use > 0 {
            eprintln!(
                "{} spool directories are being written by running orderdeck processes; export them once those stop",
                summary.in_use
            );
        }
        if summary.failed > 0 {
            return Err(AppError::SinkIncomplete(format!(
                "{} documents refused (kept in {}): {}",
                summary.failed,
                data_dir
                    .join(crate::sinks::backfill::BACKFILL_DEAD_LETTERS)
                    .display(),
                summary.failures.join("; ")
            )));
        }
    }
    if let Some(kibana) = &args.mirror.kibana {
        let auth = ElasticConfig::from_env(kibana.clone(), None);
        let imported = import_saved_objects(kibana, &auth).await?;
        println!(
            "imported {imported} saved objects into Kibana; the dashboard: {}/app/dashboards#/view/orderdeck-dashboard",
            kibana.trim_end_matches('/')
        );
    }
    Ok(())
}

/// Joins the mirror group and mirrors what it has not yet (after a crash,
/// say) into Elasticsearch, within --drain-timeout; the rest is spooled
/// and sent right after.
async fn catch_up_from_kafka(args: &CommonArgs, brokers: &str) -> Result<(), AppError> {
    let connection = KafkaConnection::new(brokers.to_owned(), pipeline_config(args, None).kafka);
    connection
        .ensure_topics()
        .await
        .map_err(crate::pipeline::PipelineError::from)?;
    let producer =
        Arc::new(OrderProducer::new(&connection).map_err(crate::pipeline::PipelineError::from)?);
    let (_, task) = mirror::start(&connection, producer, true, mirror_settings(args))
        .await
        .map_err(crate::pipeline::PipelineError::from)?;
    let status = task
        .close(args.run.drain_timeout.0, &CancellationToken::new(), |_| {})
        .await;
    println!(
        "mirrored {} documents from Kafka into Elasticsearch ({} spooled)",
        status.indexed, status.spooled
    );
    let unread = status.left + status.pending;
    if unread > 0 {
        return Err(AppError::SinkIncomplete(format!(
            "{unread} records of the mirror group could not be mirrored within --drain-timeout              (is another orderdeck process mirroring them?)"
        )));
    }
    Ok(())
}
