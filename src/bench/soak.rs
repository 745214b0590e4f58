//! The memory soak: end to end with the mirror on for many orders, the
//! broker in a child process so the figures are orderdeck's own.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::{
    driver::{drive, Load},
    report::Soak,
    resources::{self, Usage},
    setup::{bench_pipeline, ChildBroker},
    setup_error,
    standin::ElasticStandIn,
    targets::{FinishWatch, Orderdeck},
    BenchError, BenchPlan, Scenario,
};
use crate::{
    kafka::BrokerTarget,
    metrics::Counter,
    sinks::{elastic::ElasticConfig, MirrorTarget},
};

/// End to end with the sink on for `orders` orders, sampling memory. The
/// broker runs in a child process (`orderdeck broker`), so the figures are
/// orderdeck's own; the broker's are reported beside them.
pub(super) async fn soak(plan: &BenchPlan, orders: u64) -> Result<Soak, BenchError> {
    let fail = setup_error(Scenario::EndToEndSink);
    let topic = "bench-soak";
    let broker = ChildBroker::start(topic).map_err(|e| fail(e.to_string()))?;
    let standin = ElasticStandIn::start()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let sink = MirrorTarget::Elastic(ElasticConfig::from_env(standin.url.clone(), None));
    let pipeline = bench_pipeline(
        plan,
        BrokerTarget::External(broker.bootstrap.clone()),
        topic,
        3,
        0.0,
        sink,
    )
    .await?;
    let url = pipeline.dial().expect("the bench runs a server").url;
    let stop = CancellationToken::new();
    let watch = FinishWatch::default();
    watch.follow(pipeline.subscribe_transitions(), stop.clone());
    let target = Arc::new(Orderdeck::new(&url, &plan.orders, Some(watch)).map_err(&fail)?);

    let metrics = Arc::clone(pipeline.metrics());
    let sampling = stop.clone();
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = sampling.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Some(rss) = resources::rss_mib() {
                samples.push((metrics.get(Counter::Finished), rss));
            }
        }
        samples
    });
    let usage = Usage::start();
    let outcome = drive(
        target,
        Load::Closed {
            callers: plan.callers,
            orders,
            limit: Duration::MAX,
        },
    )
    .await;
    let peak = usage.finish().peak_rss_mib;
    stop.cancel();
    let samples = sampler.await.unwrap_or_default();
    pipeline.shutdown().await;
    let broker_rss_mib = broker.rss_mib();
    let rss_at = |share: f64| {
        samples
            .iter()
            .find(|(finished, _)| *finished as f64 >= share * orders as f64)
            .or(samples.last())
            .map_or(0.0, |(_, rss)| *rss)
    };
    Ok(Soak {
        orders: outcome.completed,
        seconds: outcome.elapsed.as_secs_f64(),
        orders_per_s: outcome.per_second(),
        rss_at_10_percent_mib: rss_at(0.1),
        rss_at_end_mib: samples.last().map_or(0.0, |(_, rss)| *rss),
        peak_rss_mib: peak.unwrap_or(0.0),
        broker_rss_mib,
        rss_samples: samples,
    })
}
