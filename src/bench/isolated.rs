//! One scenario in a process of its own (`orderdeck bench --scenarios X`),
//! so that none runs in what an earlier one left behind.

use std::{ffi::OsString, time::Duration};

use serde::Deserialize;

use super::{remote::this_program, report::Phase, setup_error, BenchError, BenchPlan, Scenario};

/// How long one scenario may take beyond its phases.
const SETUP_AND_WARM_UP: Duration = Duration::from_secs(120);

#[derive(Deserialize)]
struct ChildReport {
    phases: Vec<Phase>,
}

pub(super) async fn run_scenario(
    plan: &BenchPlan,
    scenario: Scenario,
) -> Result<Vec<Phase>, BenchError> {
    let seconds = |d: Duration| OsString::from(d.as_secs_f64().to_string());
    let mut args: Vec<OsString> = vec![
        "bench".into(),
        "--json".into(),
        "--scenarios".into(),
        scenario.key().into(),
        "--callers".into(),
        plan.callers.to_string().into(),
        "--max-orders".into(),
        plan.max_orders.to_string().into(),
        "--max-seconds".into(),
        seconds(plan.max_time),
        "--fixed-rate".into(),
        plan.rate.to_string().into(),
        "--fixed-seconds".into(),
        seconds(plan.rate_time),
    ];
    if let Some(es) = &plan.es {
        args.extend(["--es".into(), es.into()]);
    }
    for (key, value) in &plan.kafka_settings {
        args.extend(["-X".into(), format!("{key}={value}").into()]);
    }
    if let Some(csv) = &plan.csv {
        args.extend(["--csv".into(), csv.into()]);
    }
    let limit = plan.max_time + plan.rate_time + SETUP_AND_WARM_UP;
    let stdout = this_program(args, limit)
        .await
        .map_err(setup_error(scenario))?;
    let report: ChildReport = serde_json::from_str(&stdout)
        .map_err(|e| setup_error(scenario)(format!("its report does not read: {e}")))?;
    Ok(report.phases)
}
