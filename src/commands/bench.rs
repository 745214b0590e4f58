//! `orderdeck bench`: runs the scenarios and prints the table, JSON or Markdown.

use crate::{
    bench::{
        self,
        knee::{self, KneePlan},
        output, BenchPlan, Scenario,
    },
    cli::BenchArgs,
    clients::orders_from,
    AppError,
};

pub async fn bench(bench_args: &BenchArgs) -> Result<(), AppError> {
    let orders_file = bench_args.orders_file.csv.as_deref();
    let csv = orders_from(orders_file, bench_args.orders_file.on_bad_row)?;
    let plan = BenchPlan {
        scenarios: if bench_args.scenarios.is_empty() {
            Scenario::ALL.to_vec()
        } else {
            bench_args.scenarios.clone()
        },
        callers: bench_args.callers,
        max_orders: bench_args.max_orders,
        max_time: bench_args.max_seconds.0,
        rate: bench_args.fixed_rate,
        rate_time: bench_args.fixed_seconds.0,
        soak: bench_args.soak,
        es: bench_args.es.clone(),
        kafka_settings: bench_args.kafka_settings.all(),
        orders: csv.orders.into(),
        csv: orders_file
            .map(|csv| {
                std::path::absolute(csv)
                    .map_err(|e| AppError::Usage(format!("--csv {}: {e}", csv.display())))
            })
            .transpose()?,
    };
    if bench_args.knee.find_knee {
        return find_knee(&plan, bench_args).await;
    }
    let report = bench::run(&plan, |step| eprintln!("bench: {step} …")).await?;
    let printed = if bench_args.json {
        serde_json::to_string_pretty(&report).expect("the report serializes")
    } else if bench_args.markdown {
        output::markdown(&report)
    } else {
        output::table(&report)
    };
    println!("{printed}");
    if let Some(path) = &bench_args.report.report {
        let json = serde_json::to_string_pretty(&report).expect("the report serializes");
        super::write_report(path, &json)?;
    }
    Ok(())
}

async fn find_knee(plan: &BenchPlan, bench_args: &BenchArgs) -> Result<(), AppError> {
    let opts = &bench_args.knee;
    let knee = KneePlan {
        start_rate: opts.knee_start,
        growth: opts.knee_growth,
        max_rate: opts.knee_max,
        step: opts.knee_step.0,
        clients: opts.knee_clients,
        gates: if opts.slo.is_empty() {
            knee::default_gates()
        } else {
            opts.slo.clone()
        },
    };
    let report = knee::find_knee(plan, &knee, |step| {
        eprintln!(
            "bench: {:.0} orders/s offered: finished {:.0}/s, e2e p99 {:.2} ms — {}",
            step.offered,
            step.finished_per_s,
            step.end_to_end.p99,
            if step.passed { "pass" } else { "a gate broke" }
        )
    })
    .await?;
    let json = serde_json::to_string_pretty(&report).expect("the report serializes");
    if bench_args.json {
        println!("{json}");
    } else {
        println!("{}", knee::render(&report));
    }
    if let Some(path) = &bench_args.report.report {
        super::write_report(path, &json)?;
    }
    Ok(())
}
