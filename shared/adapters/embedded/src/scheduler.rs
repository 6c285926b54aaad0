//! The in-process retry scheduler: a timer per retry that enqueues the job when it is due.
//! Timers die with the process; the store still has every retry's time, and
//! `Service::resume_after_restart` schedules them again.

use crate::InProcessQueue;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookline_model::DeliveryJob;
use hookline_service::ports::{PortResult, Queue, RetryScheduler};

#[derive(Clone)]
pub struct InProcessScheduler {
    queue: InProcessQueue,
}

impl InProcessScheduler {
    pub fn new(queue: InProcessQueue) -> Self {
        Self { queue }
    }
}

#[async_trait]
impl RetryScheduler for InProcessScheduler {
    async fn schedule(&self, job: &DeliveryJob, at: DateTime<Utc>) -> PortResult<()> {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        let queue = self.queue.clone();
        let job = job.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if let Err(error) = queue.enqueue(std::slice::from_ref(&job)).await {
                tracing::warn!(delivery_id = %job.delivery_id, %error, "a due retry could not be queued; the sweep will");
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn enqueues_the_job_when_due_not_before() {
        let (queue, mut receiver) = InProcessQueue::new(100);
        let scheduler = InProcessScheduler::new(queue);
        let job = DeliveryJob {
            account_id: "acct_1".into(),
            delivery_id: "dlv_1".into(),
            event_id: "evt_1".into(),
            webhook_id: "wh_1".into(),
            not_before: None,
            ordered: false,
            round: 0,
        };
        let started = std::time::Instant::now();
        scheduler
            .schedule(&job, Utc::now() + chrono::Duration::milliseconds(300))
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(150), receiver.recv())
                .await
                .is_err(),
            "not before it is due"
        );
        let fired = tokio::time::timeout(Duration::from_secs(2), receiver.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fired, job);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
