//! `orderdeck bench`: runs the scenarios and prints the table, JSON or Markdown.

use crate::{
    bench::{self, output, BenchPlan, Scenario},
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
