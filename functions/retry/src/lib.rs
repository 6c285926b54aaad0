//! The retry function, invoked by EventBridge Scheduler: a one-time schedule per retry
//! (`{"action":"retry", ...job}`) re-enqueues that delivery; the recurring schedule
//! (`{"action":"sweep"}`) re-enqueues every overdue delivery and finishes unfinished fan-outs;
//! the template's four recurring schedules each sweep a part of the due shards
//! (`{"action":"sweepPart","part":0,"parts":4}`...), so the sweep keeps up four times the retries.

use hookline_model::RetryTrigger;
use hookline_service::Service;
use lambda_runtime::{Error, LambdaEvent};
use serde_json::{Value, json};

pub async fn handle(service: &Service, event: LambdaEvent<RetryTrigger>) -> Result<Value, Error> {
    match event.payload {
        RetryTrigger::Retry(job) => {
            service.fire_retry(&job).await?;
            Ok(json!({"enqueued": 1}))
        }
        RetryTrigger::Sweep | RetryTrigger::SweepPart { .. } => {
            let report = match event.payload {
                RetryTrigger::SweepPart { part, parts } => service.sweep_part(part, parts).await?,
                _ => service.sweep().await?,
            };
            tracing::info!(?report, "sweep done");
            Ok(
                json!({"enqueued": report.enqueued, "fanOuts": report.fan_outs, "scheduled": report.scheduled, "redriven": report.redriven}),
            )
        }
    }
}
