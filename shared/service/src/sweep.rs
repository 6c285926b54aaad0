//! The sweep: the safety net that finds work nobody moved on (a lost queue message, a failed
//! CreateSchedule, an interrupted fan-out, a local restart) and enqueues it again.

use crate::ports::{DueItem, PortResult};
use crate::{Service, ServiceError};
use chrono::{DateTime, Utc};

/// Counts of what one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub fan_outs: usize,
    pub enqueued: usize,
    pub scheduled: usize,
}

const SWEEP_PAGE: usize = 500;

impl Service {
    /// Enqueues every delivery whose sweep time has passed and finishes every overdue fan-out.
    pub async fn sweep(&self) -> PortResult<SweepReport> {
        let now = self.ports.clock.now();
        self.sweep_until(now, now, SWEEP_PAGE).await
    }

    /// After a local restart the in-process queue and timers are empty, so every unfinished
    /// item is due now, whatever its lease: queued work is enqueued, future retries rescheduled.
    pub async fn resume_after_restart(&self) -> PortResult<SweepReport> {
        let now = self.ports.clock.now();
        // One pass over everything: postponed items stay before `before`, so no second page.
        self.sweep_until(DateTime::<Utc>::MAX_UTC, now, usize::MAX)
            .await
    }

    /// Pages through items due at `before`; each handled item is postponed past `now`.
    async fn sweep_until(
        &self,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
        page: usize,
    ) -> PortResult<SweepReport> {
        let mut report = SweepReport::default();
        loop {
            let items = self.ports.store.due(before, page).await?;
            let page_len = items.len();
            let mut jobs = Vec::new();
            for item in &items {
                match item {
                    DueItem::FanOut {
                        account_id,
                        event_id,
                    } => {
                        if let Some(event) =
                            self.ports.store.get_event(account_id, event_id).await?
                        {
                            match self.fan_out(&event).await {
                                // Fanned out: no longer due.
                                Ok(_) => {
                                    report.fan_outs += 1;
                                    continue;
                                }
                                Err(ServiceError::Port(e)) => return Err(e),
                                Err(other) => {
                                    tracing::error!(%event_id, error = %other, "fan-out failed")
                                }
                            }
                        }
                    }
                    DueItem::Delivery {
                        job,
                        next_attempt_at: Some(at),
                    } if *at > now => {
                        self.ports.scheduler.schedule(job, *at).await?;
                        report.scheduled += 1;
                    }
                    DueItem::Delivery { job, .. } => jobs.push(job.clone()),
                }
                // Move it past this sweep, so the next page and the next sweep do not see it again.
                let lease_end = match item {
                    DueItem::Delivery {
                        next_attempt_at: Some(at),
                        ..
                    } if *at > now => self.sweep_time(*at),
                    _ => self.sweep_time(now),
                };
                self.ports.store.postpone(item, lease_end).await?;
            }
            if !jobs.is_empty() {
                self.ports.queue.enqueue(&jobs).await?;
                report.enqueued += jobs.len();
            }
            if page_len < page {
                return Ok(report);
            }
        }
    }

    /// A scheduled retry fired: hand the job to the workers.
    pub async fn fire_retry(&self, job: &hookline_model::DeliveryJob) -> PortResult<()> {
        self.ports.queue.enqueue(std::slice::from_ref(job)).await
    }
}
