//! The Queue port on SQS: jobs as JSON message bodies, up to [`JOBS_PER_MESSAGE`] to a message
//! on the delivery queue, messages sent ten to a call. The jobs of ordered webhooks go to a
//! FIFO queue, one to a message, with the webhook id as message group (issue 15 item 4): SQS
//! hands out one message of a group at a time, in the order sent, and a message kept unseen
//! (its retry) holds its group until it is deleted.
//!
//! Why several jobs to a message (issue 12): SQS bills a request per message sent, received
//! and deleted (ten to a call) and per started 64 KB, and the event source mapping invokes
//! deliver per batch of messages. Ten jobs of about 250 bytes to a message cut the SQS
//! requests per delivery from 0.3 to about 0.03, and deliver's invocations tenfold (its share
//! of Lambda's concurrency at 100,000 deliveries a second from about 1,500 to 600). The cost: a
//! message whose job could not be recorded comes back whole; its other jobs are then read
//! again and skipped (ended, or a retry not yet due) or, if still new, attempted again.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    SendMessageBatchRequestEntry,
};
use futures::{StreamExt, TryStreamExt};
use hookline_model::DeliveryJob;
use hookline_service::PortError;
use hookline_service::ports::{PortResult, Queue};

/// Jobs in one message of the delivery queue (the FIFO queue's messages hold one each).
pub const JOBS_PER_MESSAGE: usize = 10;

/// A message's body: one job as a JSON object (as sent before jobs were packed, and still
/// for one job alone), several as an array.
pub fn message_body(jobs: &[DeliveryJob]) -> PortResult<String> {
    match jobs {
        [job] => serde_json::to_string(job),
        jobs => serde_json::to_string(jobs),
    }
    .map_err(|e| PortError::new("encoding a job", e))
}

/// The jobs a message's body holds ([`message_body`]): at least one.
pub fn jobs_of_body(body: &str) -> Result<Vec<DeliveryJob>, String> {
    let jobs = if body.trim_start().starts_with('[') {
        serde_json::from_str(body)
    } else {
        serde_json::from_str(body).map(|job| vec![job])
    }
    .map_err(|e| format!("not a delivery job: {e}"))?;
    if jobs.is_empty() {
        return Err("no delivery job in the message".into());
    }
    Ok(jobs)
}

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    /// The queue's dead-letter queue, when this side sends its jobs back (the sweep).
    dead_letter_url: Option<String>,
    /// The FIFO queue of ordered webhooks' jobs, and its dead-letter queue.
    ordered: Option<OrderedQueue>,
}

#[derive(Clone)]
struct OrderedQueue {
    url: String,
    dead_letter_url: Option<String>,
}

/// Receives of ten messages per sweep at most: 1,000 messages (up to 10,000 jobs) a minute back
/// from the DLQ, within the sweep's budget. More waits for the next sweep.
const REDRIVE_ROUNDS: usize = 100;

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dead_letter_url: None,
            ordered: None,
        }
    }

    /// Sends ordered jobs to the FIFO queue at `url` (and, with the dead letters, sends those
    /// of `dead_letter_url` back). Without it an ordered job goes to the queue as any other,
    /// and is not kept in order.
    pub fn with_ordered(mut self, url: impl Into<String>, dead_letter_url: Option<String>) -> Self {
        self.ordered = Some(OrderedQueue {
            url: url.into(),
            dead_letter_url,
        });
        self
    }

    /// The FIFO queue's URL, when there is one.
    pub fn ordered_url(&self) -> Option<&str> {
        self.ordered.as_ref().map(|o| o.url.as_str())
    }

    /// Sets how long each of `messages` (receipt handles of the FIFO queue) stays unseen, in
    /// one call per ten: a held retry keeps its group until then; 0 hands one back at once.
    pub async fn hold_ordered(&self, messages: &[(String, i32)]) -> PortResult<()> {
        let Some(ordered) = &self.ordered else {
            return Err(PortError("no ordered queue".into()));
        };
        for chunk in messages.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, (handle, seconds))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout((*seconds).clamp(0, MAX_VISIBILITY_SECONDS))
                        .build()
                        .map_err(|e| PortError::new("ChangeMessageVisibilityBatch", e))
                })
                .collect::<PortResult<Vec<_>>>()?;
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(&ordered.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    PortError::new("ChangeMessageVisibilityBatch", DisplayErrorContext(e))
                })?;
            if let Some(failed) = out.failed.first() {
                return Err(PortError(format!(
                    "ChangeMessageVisibilityBatch: {} refused ({})",
                    out.failed.len(),
                    failed.code
                )));
            }
        }
        Ok(())
    }

    /// Sends the jobs found on `dead_letter_url` back to the queue in
    /// [`Queue::redrive_dead_letters`].
    pub fn with_dead_letters(mut self, dead_letter_url: impl Into<String>) -> Self {
        self.dead_letter_url = Some(dead_letter_url.into());
        self
    }
}

/// SendMessageBatch calls in flight at once: a stream batch of 1,000 jobs is 100 calls.
const SENDS_IN_FLIGHT: usize = 8;
/// The longest delay SQS gives a message.
const MAX_DELAY_SECONDS: i64 = 900;
/// The longest a received message may stay unseen: 12 hours from its receipt, less the
/// deliver function's visibility timeout that may have passed since.
pub const MAX_VISIBILITY_SECONDS: i32 = 12 * 3600 - 240;
/// Tries per SendMessageBatch (a failed call or refused entries) before the enqueue fails.
const SEND_TRIES: u32 = 4;

impl SqsQueue {
    /// Sends up to ten messages (each the jobs of one message; one job each to the FIFO
    /// queue), again after a short pause when the call fails or SQS refuses some of them, a
    /// few times before giving up.
    async fn send_batch(&self, queue_url: &str, messages: &[&[DeliveryJob]]) -> PortResult<()> {
        let fifo = self.ordered_url() == Some(queue_url);
        let mut entries = messages
            .iter()
            .enumerate()
            .map(|(i, jobs)| {
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(message_body(jobs)?);
                let entry = if let (true, [job]) = (fifo, jobs) {
                    // One id per delivery and round: publish's send and the stream's (its
                    // safety net, a second or so later) are one message to SQS's five-minute
                    // deduplication, and so are this call's tries; a replay is a new round.
                    entry
                        .message_group_id(&job.webhook_id)
                        .message_deduplication_id(format!("{}.{}", job.delivery_id, job.round))
                } else {
                    entry
                };
                entry
                    .build()
                    .map_err(|e| PortError::new("SendMessageBatch", e))
            })
            .collect::<PortResult<Vec<_>>>()?;
        let mut last_error = None;
        for attempt in 0..SEND_TRIES {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(25 << attempt)).await;
            }
            match self
                .client
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries.clone()))
                .send()
                .await
            {
                Ok(out) => {
                    let failed: Vec<String> = out.failed.into_iter().map(|f| f.id).collect();
                    entries.retain(|e| failed.contains(&e.id));
                    if entries.is_empty() {
                        return Ok(());
                    }
                    last_error = Some(PortError(format!(
                        "SendMessageBatch: {} messages refused",
                        entries.len()
                    )));
                }
                Err(e) => {
                    last_error = Some(PortError::new("SendMessageBatch", DisplayErrorContext(e)))
                }
            }
        }
        Err(last_error.unwrap_or_else(|| PortError("SendMessageBatch: no try made".into())))
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn enqueue(&self, jobs: &[DeliveryJob]) -> PortResult<()> {
        let (ordered, unordered): (Vec<DeliveryJob>, Vec<DeliveryJob>) = match &self.ordered {
            Some(_) => jobs.iter().cloned().partition(|job| job.ordered),
            None => (Vec::new(), jobs.to_vec()),
        };
        let messages: Vec<&[DeliveryJob]> = unordered.chunks(JOBS_PER_MESSAGE).collect();
        // The futures made first: a closure inside the stream is not provably `Send` here.
        let sends: Vec<_> = messages
            .chunks(10)
            .map(|batch| self.send_batch(&self.queue_url, batch))
            .collect();
        futures::stream::iter(sends)
            .buffer_unordered(SENDS_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        if let Some(fifo) = &self.ordered {
            // One batch after the other: SQS keeps the order within a batch and between
            // batches sent in turn, not between batches in flight together.
            let messages: Vec<&[DeliveryJob]> = ordered.chunks(1).collect();
            for batch in messages.chunks(10) {
                self.send_batch(&fifo.url, batch).await?;
            }
        }
        Ok(())
    }

    fn retries_ordered_in_place(&self) -> bool {
        self.ordered.is_some()
    }

    /// A new message with the job (carrying its turn), delayed in whole seconds up to SQS's
    /// 15 minutes: one to two seconds before `at`, so it is not late for it; the deliver
    /// function waits out the rest (`Config::rate_wait_inline`), or defers it again when its
    /// turn is more than 15 minutes off.
    async fn defer(&self, job: &DeliveryJob, at: chrono::DateTime<chrono::Utc>) -> PortResult<()> {
        if job.ordered && self.ordered.is_some() {
            // Sent again it would lose its place in its group; the service waits for an
            // ordered job's turn where it is instead.
            return Err(PortError("an ordered job is not deferred".into()));
        }
        let body = message_body(std::slice::from_ref(job))?;
        let ahead = (at - chrono::Utc::now()).num_seconds() - 1;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(ahead.clamp(0, MAX_DELAY_SECONDS) as i32)
            .send()
            .await
            .map_err(|e| PortError::new("SendMessage", DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn redrive_dead_letters(&self) -> PortResult<usize> {
        let mut redriven = 0;
        let dead_letter_queues = [
            self.dead_letter_url.as_deref(),
            self.ordered
                .as_ref()
                .and_then(|o| o.dead_letter_url.as_deref()),
        ];
        for dead_letters in dead_letter_queues.into_iter().flatten() {
            redriven += self.redrive(dead_letters).await?;
        }
        Ok(redriven)
    }
}

impl SqsQueue {
    /// Sends the jobs on `dead_letters` back to the queue their kind goes to (an ordered one
    /// to the end of its group: it was given up on, so its place was lost already).
    async fn redrive(&self, dead_letters: &str) -> PortResult<usize> {
        let mut redriven = 0;
        for _ in 0..REDRIVE_ROUNDS {
            let out = self
                .client
                .receive_message()
                .queue_url(dead_letters)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .send()
                .await
                .map_err(|e| PortError::new("ReceiveMessage", DisplayErrorContext(e)))?;
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            // A message that is no job stays there (for the DLQ alarm and a person to read).
            let (jobs, handles): (Vec<Vec<DeliveryJob>>, Vec<String>) = messages
                .iter()
                .filter_map(|m| {
                    let jobs = jobs_of_body(m.body()?).ok()?;
                    Some((jobs, m.receipt_handle()?.to_string()))
                })
                .unzip();
            let jobs: Vec<DeliveryJob> = jobs.into_iter().flatten().collect();
            if jobs.is_empty() {
                continue;
            }
            // Sent back before deleted: a failure in between sends a job twice, never loses it.
            self.enqueue(&jobs).await?;
            let entries = handles
                .into_iter()
                .enumerate()
                .map(|(i, handle)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                        .map_err(|e| PortError::new("DeleteMessageBatch", e))
                })
                .collect::<PortResult<Vec<_>>>()?;
            self.client
                .delete_message_batch()
                .queue_url(dead_letters)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| PortError::new("DeleteMessageBatch", DisplayErrorContext(e)))?;
            redriven += jobs.len();
        }
        Ok(redriven)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: u32) -> DeliveryJob {
        DeliveryJob {
            account_id: "acct_1".into(),
            delivery_id: format!("dlv_{n}"),
            event_id: "evt_1".into(),
            webhook_id: format!("wh_{n}"),
            not_before: None,
            ordered: false,
            round: 0,
        }
    }

    #[test]
    fn one_job_is_an_object_and_several_an_array() {
        let one = message_body(&[job(1)]).unwrap();
        assert!(one.starts_with('{'), "{one}");
        assert_eq!(jobs_of_body(&one).unwrap(), vec![job(1)]);
        let jobs: Vec<DeliveryJob> = (0..10).map(job).collect();
        let many = message_body(&jobs).unwrap();
        assert!(many.starts_with('['), "{many}");
        assert_eq!(jobs_of_body(&many).unwrap(), jobs);
    }

    #[test]
    fn a_body_with_no_job_is_refused_with_its_reason() {
        assert_eq!(
            jobs_of_body("[]").unwrap_err(),
            "no delivery job in the message"
        );
        assert!(
            jobs_of_body("{}")
                .unwrap_err()
                .starts_with("not a delivery job")
        );
        assert!(jobs_of_body("hello").is_err());
    }
}
