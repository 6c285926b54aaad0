//! The Queue port on SQS: jobs as JSON message bodies, sent in batches of ten.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use hookline_model::DeliveryJob;
use hookline_service::PortError;
use hookline_service::ports::{PortResult, Queue};

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
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
}
