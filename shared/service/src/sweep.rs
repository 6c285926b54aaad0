//! The sweep: the safety net that finds work nobody moved on (a lost queue message, a failed
//! CreateSchedule, an interrupted fan-out, a local restart) and enqueues it again.

use crate::Service;
use crate::ports::{DueItem, PortResult};
use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};
use hookline_model::{DeliveryJob, ids};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Counts of what one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub fan_outs: usize,
    pub enqueued: usize,
    pub scheduled: usize,
    /// Jobs sent back from the dead-letter queue.
    pub redriven: usize,
    /// Background jobs (replays) carried on.
    pub jobs: usize,
    /// It ran out of its time budget; what is left stays due for the next sweep.
    pub cut_short: bool,
}

const SWEEP_PAGE: usize = 500;
/// How long a delivery of an ordered webhook found waiting is left before it is queued again.
const ORDERED_RESWEEP: chrono::Duration = chrono::Duration::minutes(30);
/// Sweep-time moves in flight at once.
const POSTPONES_IN_FLIGHT: usize = 16;

impl Service {
    /// Enqueues every delivery whose sweep time has passed and finishes every overdue fan-out,
    /// for at most the configured sweep budget.
    pub async fn sweep(&self) -> PortResult<SweepReport> {
        self.sweep_part(0, 1).await
    }

    /// One part of a sweep done by `parts` invocations at once (on Lambda, a recurring schedule
    /// each): the due items of the store's shards in part `part`. Part 0 also sends the
    /// dead-letter queue back. A `part` outside `0..parts` sweeps nothing.
    pub async fn sweep_part(&self, part: u32, parts: u32) -> PortResult<SweepReport> {
        if parts == 0 || part >= parts {
            tracing::warn!(part, parts, "no such sweep part");
            return Ok(SweepReport::default());
        }
        if part > 0 {
            let now = self.ports.clock.now();
            return self
                .sweep_until(
                    now,
                    now,
                    SWEEP_PAGE,
                    Some(self.config.sweep_budget),
                    Some((part, parts)),
                )
                .await;
        }
        let now = self.ports.clock.now();
        // Jobs the workers gave up on go back first; a failure leaves them for the next sweep.
        let redriven = match self.ports.queue.redrive_dead_letters().await {
            Ok(count) => count,
            Err(error) => {
                tracing::warn!(%error, "dead letters left for the next sweep");
                0
            }
        };
        let report = self
            .sweep_until(
                now,
                now,
                SWEEP_PAGE,
                Some(self.config.sweep_budget),
                (parts > 1).then_some((part, parts)),
            )
            .await?;
        Ok(SweepReport { redriven, ..report })
    }

    /// After a local restart the in-process queue and timers are empty, so every unfinished
    /// item is due now, whatever its lease: queued work is enqueued, future retries rescheduled.
    pub async fn resume_after_restart(&self) -> PortResult<SweepReport> {
        let now = self.ports.clock.now();
        // One pass over everything: postponed items stay before `before`, so no second page.
        self.sweep_until(DateTime::<Utc>::MAX_UTC, now, usize::MAX, None, None)
            .await
    }

    /// Pages through items due at `before`; each handled item is postponed past `now`.
    async fn sweep_until(
        &self,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
        page: usize,
        budget: Option<Duration>,
        part: Option<(u32, u32)>,
    ) -> PortResult<SweepReport> {
        let deadline = budget.map(|budget| Instant::now() + budget);
        let out_of_time = || deadline.is_some_and(|d| Instant::now() >= d);
        let mut report = SweepReport::default();
        loop {
            let items = match part {
                Some((part, parts)) => {
                    self.ports
                        .store
                        .due_in_part(before, page, part, parts)
                        .await?
                }
                None => self.ports.store.due(before, page).await?,
            };
            let page_len = items.len();
            // Each item to move past this sweep, with the job to queue once it is moved.
            let mut postpones: Vec<(DueItem, DateTime<Utc>, Option<DeliveryJob>)> = Vec::new();
            let mut lane_heads: HashSet<String> = HashSet::new();
            for item in &items {
                if out_of_time() {
                    report.cut_short = true;
                    break;
                }
                match item {
                    DueItem::FanOut {
                        account_id,
                        event_id,
                    } => {
                        // Moved back first: a fan-out too large to finish here does not stay
                        // at the front of every sweep, and what it stored is kept.
                        // What fails here (throttled) stays due for the next sweep.
                        let event =
                            match self.ports.store.postpone(item, self.sweep_time(now)).await {
                                Ok(()) => self.ports.store.get_event(account_id, event_id).await,
                                Err(error) => Err(error),
                            };
                        let event = match event {
                            Ok(Some(event)) => event,
                            Ok(None) => continue,
                            Err(error) => {
                                tracing::warn!(%event_id, %error, "fan-out left for the next sweep");
                                continue;
                            }
                        };
                        match self.resume_fan_out(&event, deadline).await {
                            Ok(Some(_)) => report.fan_outs += 1,
                            Ok(None) => report.cut_short = true,
                            Err(error) => {
                                tracing::warn!(%event_id, %error, "fan-out left for the next sweep")
                            }
                        }
                    }
                    DueItem::Job { account_id, job_id } => {
                        // Leased first, as a fan-out is: one worker at a time carries it on.
                        if let Err(error) =
                            self.ports.store.postpone(item, self.sweep_time(now)).await
                        {
                            tracing::warn!(%job_id, %error, "job left for the next sweep");
                            continue;
                        }
                        // A slice of the budget, so the retries and fan-outs after it in
                        // this sweep are not held up behind a long job.
                        let slice = deadline.map(|deadline| {
                            deadline.min(Instant::now() + self.config.sweep_budget / 4)
                        });
                        match self.resume_job(account_id, job_id, slice).await {
                            Ok(()) => report.jobs += 1,
                            Err(error) => {
                                tracing::warn!(%job_id, %error, "job left for the next sweep")
                            }
                        }
                    }
                    DueItem::Delivery {
                        job,
                        next_attempt_at: Some(at),
                    } if *at > now => {
                        if self.ports.scheduler.fires_on_time() && !self.queue_holds_retry(job) {
                            if let Err(error) = self.ports.scheduler.schedule(job, *at).await {
                                tracing::warn!(%error, "not scheduled; the next sweep tries again");
                                continue;
                            }
                            report.scheduled += 1;
                        }
                        // An ordered delivery waiting for its retry heads its webhook's lane:
                        // queued now, it holds the lane (its attempt is put back until due) so
                        // the deliveries after it, queued by this sweep too, do not pass it.
                        let hold_lane = job.ordered.then(|| job.clone());
                        if job.ordered {
                            lane_heads.insert(job.delivery_id.clone());
                        }
                        postpones.push((item.clone(), self.retry_due_at(job, *at), hold_lane));
                    }
                    DueItem::Delivery {
                        job,
                        next_attempt_at,
                    } => {
                        // Its retry overdue (a restart after a long stop): it still heads its
                        // lane, before the deliveries that were waiting behind it.
                        if job.ordered && next_attempt_at.is_some() {
                            lane_heads.insert(job.delivery_id.clone());
                        }
                        // An ordered delivery may be waiting its turn behind a delivery that
                        // is being retried, for hours: queued again (in case it was lost) but
                        // not every lease, since each copy waits in the lane too.
                        let until = if job.ordered {
                            now + ORDERED_RESWEEP
                        } else {
                            self.sweep_time(now)
                        };
                        postpones.push((item.clone(), until, Some(job.clone())));
                    }
                }
            }
            // Move them past this sweep, so the next page and the next sweep do not see them
            // again. One that cannot be moved now (throttled) stays due and is neither queued
            // nor lost: the next sweep finds it.
            let moved: Vec<Option<DeliveryJob>> = stream::iter(postpones)
                .map(|(item, until, job)| {
                    let store = self.ports.store.clone();
                    async move {
                        match store.postpone(&item, until).await {
                            Ok(()) => job,
                            Err(error) => {
                                tracing::warn!(%error, "not moved; the next sweep finds it");
                                None
                            }
                        }
                    }
                })
                // In order: the page is oldest first, which is the order of an ordered lane.
                .buffered(POSTPONES_IN_FLIGHT)
                .collect()
                .await;
            let mut jobs: Vec<DeliveryJob> = moved.into_iter().flatten().collect();
            // An ordered webhook's delivery being retried comes first in its lane: the ones
            // after it were due earlier (a lease after their publish) and would pass it. The
            // other ordered ones go by their publish time (a delivery id starts with its
            // event's creation millisecond), not by due time, which a sweep that found one
            // waiting moved on; within a millisecond (a batch) they keep the page's order,
            // which is the store's order of insertion.
            jobs.sort_by(|a, b| lane_key(a, &lane_heads).cmp(&lane_key(b, &lane_heads)));
            if !jobs.is_empty() {
                self.ports.queue.enqueue(&jobs).await?;
                report.enqueued += jobs.len();
            }
            if page_len < page || report.cut_short {
                return Ok(report);
            }
        }
    }

    /// When the sweep should see `job`'s retry due at `at`: a lease later when a scheduler (or
    /// the queue, for an ordered job) brings it back on time and the sweep is the safety net,
    /// at `at` when the sweep is what finds it.
    pub(crate) fn retry_due_at(&self, job: &DeliveryJob, at: DateTime<Utc>) -> DateTime<Utc> {
        if self.ports.scheduler.fires_on_time() || self.queue_holds_retry(job) {
            self.sweep_time(at)
        } else {
            at
        }
    }

    /// A scheduled retry fired: hand the job to the workers.
    pub async fn fire_retry(&self, job: &hookline_model::DeliveryJob) -> PortResult<()> {
        self.ports.queue.enqueue(std::slice::from_ref(job)).await
    }
}

/// Where the sweep puts `job` among those it queues: lane heads first, then ordered jobs by
/// their event's creation millisecond (the first ten characters of the delivery's ULID).
fn lane_key<'a>(job: &'a DeliveryJob, lane_heads: &HashSet<String>) -> (bool, &'a str) {
    let published = if job.ordered {
        job.delivery_id
            .get(..ids::DELIVERY.len() + 11)
            .unwrap_or("")
    } else {
        ""
    };
    (!lane_heads.contains(&job.delivery_id), published)
}
