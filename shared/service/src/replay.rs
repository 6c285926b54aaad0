//! Replay and recovery (issue 15 item 3), as background jobs: `replay` sends a time range of
//! deliveries again (as new attempts of the same deliveries, so the same `webhook-id`);
//! `replay_missing` gives a webhook the events since a time that it would have matched but
//! never got. A job walks its range a page at a time ([`DeliveryStore::walk_deliveries`],
//! [`DeliveryStore::walk_events`]), saving where it stands after each page: nothing is loaded
//! whole, and a job whose worker died is resumed by the sweep once its lease runs out.
//!
//! The request that starts a job works on it for `HOOKLINE_JOB_INLINE` (2 s), so a small range
//! is done when it answers; the sweep carries a larger one on (every second locally, every
//! minute on Lambda, for its budget). A page whose worker dies before it saves its place is
//! walked again: its deliveries may be sent once more (at least once, never lost).
//!
//! [`DeliveryStore::walk_deliveries`]: crate::DeliveryStore::walk_deliveries
//! [`DeliveryStore::walk_events`]: crate::DeliveryStore::walk_events

use crate::ports::{DeliveryQuery, DueItem, PortResult};
use crate::publish::deliveries_of;
use crate::{Service, ServiceError, ServiceResult};
use chrono::{DateTime, Utc};
use hookline_model::job::JOB;
use hookline_model::{DeliveryJob, DeliveryStatus, Job, JobKind, JobStatus, ValidationError, ids};
use std::collections::HashMap;
use std::time::Instant;

/// Deliveries (or events) a job handles per saved step.
pub const JOB_PAGE: u32 = 100;

/// `POST /webhook/replay`: the deliveries to send again (creation-time bounds, inclusive).
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    pub webhook_id: Option<String>,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// `delivered` or `failed`; every finished delivery when `None`.
    pub status: Option<DeliveryStatus>,
}

impl Service {
    /// Starts a replay job; answers it as it stands after `config.job_inline`.
    pub async fn replay(&self, account_id: &str, request: ReplayRequest) -> ServiceResult<Job> {
        if request.since > request.until {
            return Err(ValidationError::new("until", "must not be before since").into());
        }
        if let Some(status) = request.status
            && !status.is_terminal()
        {
            return Err(ValidationError::new(
                "status",
                "must be delivered or failed: a pending or retrying delivery is sent anyway",
            )
            .into());
        }
        if let Some(webhook_id) = &request.webhook_id {
            self.get_webhook(account_id, webhook_id).await?;
        }
        let kind = JobKind::Replay {
            webhook_id: request.webhook_id,
            since: request.since,
            until: request.until,
            delivery_status: request.status,
        };
        self.start_job(account_id, kind).await
    }

    /// Starts a recovery job for one webhook: the events since `since` (until now) that it
    /// would have matched and got no delivery of.
    pub async fn replay_missing(
        &self,
        account_id: &str,
        webhook_id: &str,
        since: DateTime<Utc>,
    ) -> ServiceResult<Job> {
        let now = self.ports.clock.now();
        if since > now {
            return Err(ValidationError::new("since", "must not be in the future").into());
        }
        let webhook = self.get_webhook(account_id, webhook_id).await?;
        if !webhook.active {
            return Err(ServiceError::Conflict(
                "the webhook is inactive: PATCH it with {\"active\":true} first".to_string(),
            ));
        }
        let kind = JobKind::ReplayMissing {
            webhook_id: webhook_id.to_string(),
            since,
            until: now,
        };
        self.start_job(account_id, kind).await
    }

    /// A job of the account, as it stands.
    pub async fn get_job(&self, account_id: &str, job_id: &str) -> ServiceResult<Job> {
        if !ids::has_prefix(job_id, JOB) {
            return Err(ServiceError::NotFound("job"));
        }
        self.ports
            .store
            .get_job(account_id, job_id)
            .await?
            .ok_or(ServiceError::NotFound("job"))
    }

    async fn start_job(&self, account_id: &str, kind: JobKind) -> ServiceResult<Job> {
        let now = self.ports.clock.now();
        let job = Job::new(ids::new_id(JOB, now), account_id, kind, now);
        self.ports
            .store
            .insert_job(&job, self.sweep_time(now))
            .await?;
        tracing::info!(job_id = %job.id, kind = job.kind.name(), "job started");
        match self
            .run_job(job.clone(), Instant::now() + self.config.job_inline)
            .await
        {
            Ok(job) => Ok(job),
            // Stored and due: the sweep carries it on.
            Err(error) => {
                tracing::warn!(job_id = %job.id, %error, "job left to the sweep");
                Ok(job)
            }
        }
    }

    /// The sweep's part: carries on a job whose lease ran out, until `deadline`.
    pub(crate) async fn resume_job(
        &self,
        account_id: &str,
        job_id: &str,
        deadline: Option<Instant>,
    ) -> PortResult<()> {
        let Some(job) = self.ports.store.get_job(account_id, job_id).await? else {
            return Ok(());
        };
        if job.status != JobStatus::Running {
            return Ok(());
        }
        // Without a deadline (a local restart's sweep) one lease's worth, then the next sweep.
        let deadline = deadline.unwrap_or_else(|| Instant::now() + self.config.sweep_budget);
        self.run_job(job, deadline).await.map(|_| ())
    }

    /// Walks `job` on, a page at a time, saving each page's place, until it ends or `deadline`
    /// passes. Answers the job as last saved (as another worker saved it, if one moved it on).
    async fn run_job(&self, mut job: Job, deadline: Instant) -> PortResult<Job> {
        loop {
            match &job.kind {
                JobKind::Replay { .. } => self.replay_page(&mut job).await?,
                JobKind::ReplayMissing { .. } => self.recover_page(&mut job).await?,
            }
            let now = self.ports.clock.now();
            job.updated_at = now;
            let sweep_at = (job.status == JobStatus::Running).then(|| self.sweep_time(now));
            if !self.ports.store.update_job(&job, sweep_at).await? {
                tracing::info!(job_id = %job.id, "job moved on by another worker");
                return Ok(self
                    .ports
                    .store
                    .get_job(&job.account_id, &job.id)
                    .await?
                    .unwrap_or(job));
            }
            job.version += 1;
            if job.status != JobStatus::Running {
                tracing::info!(job_id = %job.id, status = job.status.as_str(), total = job.total, done = job.done, "job ended");
                return Ok(job);
            }
            // Out of time, or the queue is long (locally, a replay to a slow endpoint would
            // otherwise fill it and hold every publisher back): handed on to the next sweep.
            if Instant::now() >= deadline || self.ports.queue.wait_for_room().await.is_some() {
                // Due at once for the next sweep, not a lease from now.
                let item = DueItem::Job {
                    account_id: job.account_id.clone(),
                    job_id: job.id.clone(),
                };
                if let Err(error) = self.ports.store.postpone(&item, now).await {
                    tracing::warn!(job_id = %job.id, %error, "job resumes after its lease");
                }
                return Ok(job);
            }
        }
    }

    /// One page of a replay: each finished delivery of an active webhook goes back to pending
    /// and is queued; one still pending or retrying is left to its own attempts.
    async fn replay_page(&self, job: &mut Job) -> PortResult<()> {
        let JobKind::Replay {
            webhook_id,
            since,
            until,
            delivery_status,
        } = &job.kind
        else {
            return Ok(());
        };
        let query = DeliveryQuery {
            created_from: Some(*since),
            created_to: Some(*until),
            webhook_id: webhook_id.clone(),
            status: *delivery_status,
            ..Default::default()
        };
        let walk = self
            .ports
            .store
            .walk_deliveries(&job.account_id, &query, job.cursor.as_deref(), JOB_PAGE)
            .await?;
        let mut usable: HashMap<String, bool> = HashMap::new();
        let mut queued: Vec<DeliveryJob> = Vec::new();
        for delivery in walk.items {
            // As read now: an index may lag behind the delivery.
            if delivery_status.is_some_and(|s| s != delivery.status) {
                continue;
            }
            job.total += 1;
            if !delivery.status.is_terminal() {
                continue;
            }
            let active = match usable.get(&delivery.webhook_id) {
                Some(active) => *active,
                None => {
                    let active = self
                        .ports
                        .store
                        .get_webhook(&job.account_id, &delivery.webhook_id)
                        .await?
                        .is_some_and(|w| w.active);
                    usable.insert(delivery.webhook_id.clone(), active);
                    active
                }
            };
            if active && self.requeue(&delivery).await? {
                queued.push(delivery.requeued().job());
                job.done += 1;
            }
        }
        self.enqueue_or_leave_to_sweep(queued).await;
        self.advance(job, walk.next);
        Ok(())
    }

    /// One page of a recovery: each event the webhook matches gets its delivery, unless it
    /// has one (delivery ids are one per event and webhook, so the store knows).
    async fn recover_page(&self, job: &mut Job) -> PortResult<()> {
        let JobKind::ReplayMissing {
            webhook_id,
            since,
            until,
        } = &job.kind
        else {
            return Ok(());
        };
        let webhook = match self
            .ports
            .store
            .get_webhook(&job.account_id, webhook_id)
            .await?
        {
            Some(webhook) if webhook.active => webhook,
            found => {
                job.status = JobStatus::Failed;
                job.error = Some(match found {
                    None => "the webhook was deleted".to_string(),
                    Some(_) => "the webhook was switched off".to_string(),
                });
                return Ok(());
            }
        };
        let walk = self
            .ports
            .store
            .walk_events(
                &job.account_id,
                *since,
                *until,
                job.cursor.as_deref(),
                JOB_PAGE,
            )
            .await?;
        let sweep_at = self.sweep_time(self.ports.clock.now());
        let mut queued: Vec<DeliveryJob> = Vec::new();
        for event in &walk.items {
            let wanted = deliveries_of(event, std::slice::from_ref(&webhook));
            if wanted.is_empty() {
                continue;
            }
            job.total += 1;
            let new = self
                .ports
                .store
                .insert_deliveries(event, &wanted, sweep_at)
                .await?;
            for (delivery, _) in wanted.iter().zip(new).filter(|(_, new)| *new) {
                queued.push(delivery.job());
                job.done += 1;
            }
        }
        self.enqueue_new_deliveries(queued).await;
        self.advance(job, walk.next);
        Ok(())
    }

    fn advance(&self, job: &mut Job, next: Option<String>) {
        if next.is_none() {
            job.status = JobStatus::Completed;
        }
        job.cursor = next;
    }
}
