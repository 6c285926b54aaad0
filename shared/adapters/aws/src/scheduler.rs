//! The RetryScheduler port on EventBridge Scheduler: one one-time `at(...)` schedule per retry,
//! targeting the retry function with the job as input, deleted after it fires.

use async_trait::async_trait;
use aws_sdk_scheduler::Client;
use aws_sdk_scheduler::error::DisplayErrorContext;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target,
};
use chrono::{DateTime, Utc};
use hookline_model::{DeliveryJob, RetryTrigger};
use hookline_service::PortError;
use hookline_service::ports::{PortResult, RetryScheduler};

#[derive(Clone)]
pub struct EventBridgeScheduler {
    client: Client,
    group: String,
    target_arn: String,
    role_arn: String,
}

impl EventBridgeScheduler {
    pub fn new(
        client: Client,
        group: impl Into<String>,
        target_arn: impl Into<String>,
        role_arn: impl Into<String>,
    ) -> Self {
        Self {
            client,
            group: group.into(),
            target_arn: target_arn.into(),
            role_arn: role_arn.into(),
        }
    }

    /// One name per delivery and retry time: a redelivered message that schedules the same
    /// retry again hits a conflict instead of creating a second schedule.
    pub fn schedule_name(job: &DeliveryJob, at: DateTime<Utc>) -> String {
        format!("retry-{}-{}", job.delivery_id, at.timestamp())
    }
}

#[async_trait]
impl RetryScheduler for EventBridgeScheduler {
    async fn schedule(&self, job: &DeliveryJob, at: DateTime<Utc>) -> PortResult<()> {
        let input = serde_json::to_string(&RetryTrigger::Retry(job.clone()))
            .map_err(|e| PortError::new("encoding a job", e))?;
        let result = self
            .client
            .create_schedule()
            .name(Self::schedule_name(job, at))
            .group_name(&self.group)
            .schedule_expression(format!("at({})", at.format("%Y-%m-%dT%H:%M:%S")))
            .schedule_expression_timezone("UTC")
            .flexible_time_window(
                FlexibleTimeWindow::builder()
                    .mode(FlexibleTimeWindowMode::Off)
                    .build()
                    .map_err(|e| PortError::new("CreateSchedule", e))?,
            )
            .action_after_completion(ActionAfterCompletion::Delete)
            .target(
                Target::builder()
                    .arn(&self.target_arn)
                    .role_arn(&self.role_arn)
                    .input(input)
                    .build()
                    .map_err(|e| PortError::new("CreateSchedule", e))?,
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conflict_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(PortError::new("CreateSchedule", DisplayErrorContext(e))),
        }
    }
}

/// Retries without one schedule each: the due index is the schedule, and the sweep (the retry
/// function every minute) enqueues each retry once its time has passed, so a retry goes out up
/// to a minute late. At 10,000 failing deliveries a second, one schedule per retry would be
/// about 30,000 CreateSchedule requests and invocations a second, against default quotas of
/// 5,000 and 1,000 (docs/DECISIONS.md, "Retries found by the sweep").
#[derive(Debug, Clone, Copy, Default)]
pub struct SweepRetries;

#[async_trait]
impl RetryScheduler for SweepRetries {
    async fn schedule(&self, _job: &DeliveryJob, _at: DateTime<Utc>) -> PortResult<()> {
        Ok(())
    }

    fn fires_on_time(&self) -> bool {
        false
    }
}
