//! The Queue port on SQS: jobs as JSON message bodies, sent in batches of ten.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
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

#[async_trait]
impl Queue for SqsQueue {
    async fn enqueue(&self, jobs: &[DeliveryJob]) -> PortResult<()> {
        for chunk in jobs.chunks(10) {
            let mut entries = chunk
                .iter()
                .enumerate()
                .map(|(i, job)| {
                    let body = serde_json::to_string(job)
                        .map_err(|e| PortError::new("encoding a job", e))?;
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(|e| PortError::new("SendMessageBatch", e))
                })
                .collect::<PortResult<Vec<_>>>()?;
            // Entries SQS refused are sent again, a few times, before giving up.
            for _ in 0..3 {
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(entries.clone()))
                    .send()
                    .await
                    .map_err(|e| PortError::new("SendMessageBatch", DisplayErrorContext(e)))?;
                let failed: Vec<String> = out.failed.into_iter().map(|f| f.id).collect();
                entries.retain(|e| failed.contains(&e.id));
                if entries.is_empty() {
                    break;
                }
            }
            if !entries.is_empty() {
                return Err(PortError(format!(
                    "SendMessageBatch: {} messages refused",
                    entries.len()
                )));
            }
        }
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
