//! The retry function, invoked by EventBridge Scheduler: a one-time schedule per retry
//! (`{"action":"retry", ...job}`) re-enqueues that delivery; the recurring schedule
//! (`{"action":"sweep"}`) re-enqueues every overdue delivery and finishes unfinished fan-outs.

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
        RetryTrigger::Sweep => {
            let report = service.sweep().await?;
            tracing::info!(?report, "sweep done");
            Ok(
                json!({"enqueued": report.enqueued, "fanOuts": report.fan_outs, "scheduled": report.scheduled, "redriven": report.redriven}),
            )
        }
    }
}
