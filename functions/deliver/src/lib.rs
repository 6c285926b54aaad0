//! The deliver function: an SQS batch of messages, each holding up to ten delivery jobs
//! (`hookline_aws::sqs::JOBS_PER_MESSAGE`), every job attempted on its own and at once. A
//! message with a job whose attempt could not be recorded (a backend failure), that does not
//! parse, or whose handling panicked is reported as a batch item failure, so SQS redelivers
//! only that message (and, after maxReceiveCount, moves a poison message to the DLQ); its
//! jobs that did end are then skipped, their deliveries read as ended. A failed HTTP attempt
//! is not a batch failure: its retry is scheduled.
//!
//! Messages of the FIFO queue of ordered webhooks (issue 15 item 4) are attempted one after
//! the other within their message group (a webhook), each group on a task of its own. A
//! delivery that will be retried stays in the queue, unseen until its retry is due, and with
//! it the rest of its group: SQS hands out nothing more of a group while one of its messages
//! is out, so the webhook's next delivery waits until this one ends.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Utc;
use hookline_aws::SqsQueue;
use hookline_aws::sqs::{MAX_VISIBILITY_SECONDS, jobs_of_body};
use hookline_model::DeliveryJob;
use hookline_service::{DeliverOutcome, Service};
use lambda_runtime::{Error, LambdaEvent};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Jobs attempted at once in one invocation: a batch of 100 messages holds up to 1,000, and a
/// Lambda sandbox has 1,024 file descriptors (each send holds a socket).
const SENDS_IN_FLIGHT: usize = 100;

/// A batch from the delivery queue (no ordered messages in it).
pub async fn handle(
    service: &Service,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    handle_with_lanes(service, None, event).await
}

/// A batch from either queue; `lanes` is the queue whose FIFO queue holds ordered messages
/// back (without it a held message comes back after the queue's visibility timeout).
pub async fn handle_with_lanes(
    service: &Service,
    lanes: Option<&SqsQueue>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    // The invocation's end (epoch ms; 0 when unknown, as in tests): a group's messages go one
    // after the other, so the last of them may not have time for an attempt.
    let deadline_ms = event.context.deadline;
    let mut groups: Vec<(String, Vec<SqsMessage>)> = Vec::new();
    let mut singles = Vec::new();
    for message in event.payload.records {
        match message.attributes.get("MessageGroupId").cloned() {
            Some(group) => match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, messages)) => messages.push(message),
                None => groups.push((group, vec![message])),
            },
            None => singles.push(message),
        }
    }
    let mut tasks: Vec<(Vec<String>, tokio::task::JoinHandle<Vec<String>>)> = Vec::new();
    for (_, messages) in groups {
        let ids: Vec<String> = messages
            .iter()
            .map(|m| m.message_id.clone().unwrap_or_default())
            .collect();
        let service = service.clone();
        let lanes = lanes.cloned();
        tasks.push((
            ids,
            tokio::spawn(async move {
                deliver_group(&service, lanes.as_ref(), messages, deadline_ms).await
            }),
        ));
    }
    let sends = Arc::new(Semaphore::new(SENDS_IN_FLIGHT));
    for message in singles {
        let service = service.clone();
        let sends = sends.clone();
        // A task per message: a panic stays in its task and fails only that message.
        let id = message.message_id.clone().unwrap_or_default();
        tasks.push((
            vec![id.clone()],
            tokio::spawn(async move {
                match deliver_message(&service, message, &sends).await {
                    Ok(()) => Vec::new(),
                    Err(reason) => {
                        tracing::warn!(message_id = %id, %reason, "message failed; SQS will redeliver it");
                        vec![id]
                    }
                }
            }),
        ));
    }
    // If this invocation is dropped (its caller gave up on it), its tasks end with it, as
    // they would with the sandbox: nothing goes on sending after the batch is abandoned.
    let _abort_on_drop = AbortOnDrop(tasks.iter().map(|(_, t)| t.abort_handle()).collect());
    let mut response = SqsBatchResponse::default();
    for (ids, task) in tasks {
        let failed = match task.await {
            Ok(failed) => failed,
            Err(join_error) => {
                tracing::error!(messages = ids.len(), error = %join_error, "message handling panicked");
                ids
            }
        };
        for id in failed {
            response.add_failure(id);
        }
    }
    Ok(response)
}

/// Attempts the messages of one group in order, and answers those that stay in the queue:
/// from the first delivery that has not ended (held until its retry is due; the rest handed
/// back at once, to come after it), and any message that is no job.
async fn deliver_group(
    service: &Service,
    lanes: Option<&SqsQueue>,
    messages: Vec<SqsMessage>,
    deadline_ms: u64,
) -> Vec<String> {
    // An attempt takes at most the HTTP timeout, and recording it a little more.
    let attempt_ms = service.config().http_timeout.as_millis() as u64 + 3_000;
    let mut failed = Vec::new();
    let mut rest = messages.into_iter();
    while let Some(message) = rest.next() {
        let id = message.message_id.clone().unwrap_or_default();
        let handle = message.receipt_handle.clone().unwrap_or_default();
        let now_ms = Utc::now().timestamp_millis().max(0) as u64;
        if deadline_ms > 0 && now_ms + attempt_ms > deadline_ms {
            // Not enough time left for another attempt: this one and the rest go back at
            // once, in order, for the next invocation (not killed in the middle of a send).
            failed.push(id);
            hand_back(lanes, Some((handle, 0)), rest, &mut failed).await;
            break;
        }
        let job = match job_of(&message) {
            Ok(job) => job,
            Err(reason) => {
                // Not a job: no lane to hold. Back at once, so it reaches the DLQ after its
                // receives without holding the webhook's deliveries up meanwhile.
                tracing::warn!(message_id = %id, %reason, "message failed; SQS will redeliver it");
                hold(lanes, vec![(handle, 0)]).await;
                failed.push(id);
                continue;
            }
        };
        let held_for = match service.deliver(&job).await {
            Ok(DeliverOutcome::Delivered | DeliverOutcome::Failed | DeliverOutcome::Skipped) => {
                continue;
            }
            Ok(DeliverOutcome::WillRetry { at } | DeliverOutcome::NotYetDue { at }) => Some(
                (at - Utc::now())
                    .num_seconds()
                    .clamp(0, i64::from(MAX_VISIBILITY_SECONDS)) as i32,
            ),
            Ok(DeliverOutcome::Deferred) => Some(1),
            Err(error) => {
                // Back after the queue's visibility timeout, as any failed message.
                tracing::warn!(message_id = %id, %error, "message failed; SQS will redeliver it");
                None
            }
        };
        tracing::info!(delivery_id = %job.delivery_id, ?held_for, "ordered delivery held for its retry");
        failed.push(id);
        hand_back(lanes, held_for.map(|s| (handle, s)), rest, &mut failed).await;
        break;
    }
    failed
}

/// Stops a group's batch: `held` (a receipt handle and its seconds unseen) is held, and the
/// messages after it are handed back at once (visibility 0, so they do not hold the group
/// beyond it) and reported failed, to come again in order.
async fn hand_back(
    lanes: Option<&SqsQueue>,
    held: Option<(String, i32)>,
    rest: impl Iterator<Item = SqsMessage>,
    failed: &mut Vec<String>,
) {
    let mut holds: Vec<(String, i32)> = held.into_iter().collect();
    for later in rest {
        failed.push(later.message_id.clone().unwrap_or_default());
        holds.push((later.receipt_handle.clone().unwrap_or_default(), 0));
    }
    hold(lanes, holds).await;
}

/// Sets how long held messages stay unseen. A failure leaves them to the queue's visibility
/// timeout: later than meant, never lost.
async fn hold(lanes: Option<&SqsQueue>, holds: Vec<(String, i32)>) {
    let Some(lanes) = lanes else { return };
    if holds.is_empty() {
        return;
    }
    if let Err(error) = lanes.hold_ordered(&holds).await {
        tracing::warn!(%error, "ordered messages left to the visibility timeout");
    }
}

fn jobs_of(message: &SqsMessage) -> Result<Vec<DeliveryJob>, String> {
    jobs_of_body(message.body.as_deref().ok_or("message has no body")?)
}

/// The job of a FIFO queue's message: one to a message, so a group's order is the queue's.
fn job_of(message: &SqsMessage) -> Result<DeliveryJob, String> {
    match <[DeliveryJob; 1]>::try_from(jobs_of(message)?) {
        Ok([job]) => Ok(job),
        Err(jobs) => Err(format!("{} jobs in an ordered message", jobs.len())),
    }
}

struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        // Aborting a finished task does nothing.
        self.0.iter().for_each(tokio::task::AbortHandle::abort);
    }
}

/// Attempts every job of `message` at once; fails when any could not be recorded, so the
/// message comes back (the others are then skipped: their deliveries read as ended).
async fn deliver_message(
    service: &Service,
    message: SqsMessage,
    sends: &Semaphore,
) -> Result<(), String> {
    let jobs = jobs_of(&message)?;
    let outcomes = futures::future::join_all(jobs.iter().map(|job| async move {
        // Never closed, so a permit always comes.
        let _permit = sends.acquire().await;
        service.deliver(job).await
    }))
    .await;
    let mut failed = None;
    for (job, outcome) in jobs.iter().zip(outcomes) {
        match outcome {
            Ok(outcome) => {
                tracing::info!(delivery_id = %job.delivery_id, ?outcome, "delivery attempted");
            }
            Err(error) => {
                tracing::warn!(delivery_id = %job.delivery_id, %error, "attempt not recorded");
                failed = Some(error.to_string());
            }
        }
    }
    failed.map_or(Ok(()), Err)
}
