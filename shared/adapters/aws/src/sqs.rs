//! The Queue port on SQS: jobs as JSON message bodies, sent in batches of ten.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use futures::{StreamExt, TryStreamExt};
use hookline_model::DeliveryJob;
use hookline_service::PortError;
use hookline_service::ports::{PortResult, Queue};

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    /// The queue's dead-letter queue, when this side sends its jobs back (the sweep).
    dead_letter_url: Option<String>,
}

/// Receives of ten per sweep at most: 1,000 jobs a minute back from the DLQ, within the
/// sweep's budget. More waits for the next sweep.
const REDRIVE_ROUNDS: usize = 100;

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dead_letter_url: None,
        }
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
/// Tries per SendMessageBatch (a failed call or refused entries) before the enqueue fails.
const SEND_TRIES: u32 = 4;

impl SqsQueue {
    /// Sends up to ten jobs, again after a short pause when the call fails or SQS refuses some
    /// of them, a few times before giving up.
    async fn send_batch(&self, chunk: &[DeliveryJob]) -> PortResult<()> {
        let mut entries = chunk
            .iter()
            .enumerate()
            .map(|(i, job)| {
                let body =
                    serde_json::to_string(job).map_err(|e| PortError::new("encoding a job", e))?;
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
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
                .queue_url(&self.queue_url)
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
        // The futures made first: a closure inside the stream is not provably `Send` here.
        let sends: Vec<_> = jobs
            .chunks(10)
            .map(|chunk| self.send_batch(chunk))
            .collect();
        futures::stream::iter(sends)
            .buffer_unordered(SENDS_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// A new message with the job (carrying its turn), delayed in whole seconds up to SQS's
    /// 15 minutes: one to two seconds before `at`, so it is not late for it; the deliver
    /// function waits out the rest (`Config::rate_wait_inline`), or defers it again when its
    /// turn is more than 15 minutes off.
    async fn defer(&self, job: &DeliveryJob, at: chrono::DateTime<chrono::Utc>) -> PortResult<()> {
        let body = serde_json::to_string(job).map_err(|e| PortError::new("encoding a job", e))?;
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
        let Some(dead_letters) = &self.dead_letter_url else {
            return Ok(0);
        };
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
            let (jobs, handles): (Vec<DeliveryJob>, Vec<String>) = messages
                .iter()
                .filter_map(|m| {
                    let job = serde_json::from_str(m.body()?).ok()?;
                    Some((job, m.receipt_handle()?.to_string()))
                })
                .unzip();
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
