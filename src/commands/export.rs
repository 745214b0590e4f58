//! `orderdeck export`: the spool into Elasticsearch, the dashboard into Kibana.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::{
    cli::{CommonArgs, ExportArgs},
    config::sink_settings,
    sinks::{
        elastic::{ElasticClient, ElasticConfig},
        export::replay_spool,
        kibana::import_saved_objects,
    },
    AppError,
};

pub async fn export(args: &CommonArgs, export: &ExportArgs) -> Result<(), AppError> {
    if args.es.is_none() && args.kibana.is_none() {
        return Err(AppError::Usage(
            "export needs --es URL (replay the spool) and/or --kibana URL (import the dashboard)"
                .to_owned(),
        ));
    }
    if let Some(url) = &args.es {
        let config = ElasticConfig::from_env(url.clone(), args.es_ca.clone());
        let client = ElasticClient::new(&config, sink_settings(args).names)?;
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} documents · {per_sec}",
            )
            .expect("valid progress template"),
        );
        let summary = replay_spool(&args.data_dir, &client, export.restart, |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
        .await;
        bar.finish_and_clear();
        let summary = summary?;
        println!(
            "exported {} documents from {} to {url} ({} rejected)",
            summary.indexed,
            args.data_dir.join("spool").display(),
            summary.failed
        );
        if summary.failed > 0 {
            return Err(AppError::SinkIncomplete(format!(
                "{} documents rejected: {}",
                summary.failed,
                summary.failures.join("; ")
            )));
        }
    }
    if let Some(kibana) = &args.kibana {
        let auth = ElasticConfig::from_env(kibana.clone(), None);
        let imported = import_saved_objects(kibana, &auth).await?;
        println!(
            "imported {imported} saved objects into Kibana; the dashboard: {}/app/dashboards#/view/orderdeck-dashboard",
            kibana.trim_end_matches('/')
        );
    }
    Ok(())
}
