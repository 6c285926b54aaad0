//! The deliver function: an SQS batch of delivery jobs, each attempted on its own. A message
//! whose attempt could not be recorded (a backend failure), that does not parse, or whose
//! handling panicked is reported as a batch item failure, so SQS redelivers only that one
//! (and, after maxReceiveCount, moves a poison message to the DLQ). A failed HTTP attempt is
//! not a batch failure: its retry is scheduled.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use hookline_model::DeliveryJob;
use hookline_service::Service;
use lambda_runtime::{Error, LambdaEvent};

pub async fn handle(
    service: &Service,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let tasks: Vec<_> = event
        .payload
        .records
        .into_iter()
        .map(|message| {
            let service = service.clone();
            // A task per message: a panic stays in its task and fails only that message.
            let id = message.message_id.clone().unwrap_or_default();
            (
                id,
                tokio::spawn(async move { deliver_message(&service, message).await }),
            )
        })
        .collect();
    // If this invocation is dropped (its caller gave up on it), its tasks end with it, as
    // they would with the sandbox: nothing goes on sending after the batch is abandoned.
    let _abort_on_drop = AbortOnDrop(tasks.iter().map(|(_, t)| t.abort_handle()).collect());
    let mut response = SqsBatchResponse::default();
    for (id, task) in tasks {
        let ok = match task.await {
            Ok(Ok(())) => true,
            Ok(Err(reason)) => {
                tracing::warn!(message_id = %id, %reason, "message failed; SQS will redeliver it");
                false
            }
            Err(join_error) => {
                tracing::error!(message_id = %id, error = %join_error, "message handling panicked");
                false
            }
        };
        if !ok {
            response.add_failure(id);
        }
    }
    Ok(response)
}

struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        // Aborting a finished task does nothing.
        self.0.iter().for_each(tokio::task::AbortHandle::abort);
    }
}

async fn deliver_message(service: &Service, message: SqsMessage) -> Result<(), String> {
    let body = message.body.as_deref().ok_or("message has no body")?;
    let job: DeliveryJob =
        serde_json::from_str(body).map_err(|e| format!("not a delivery job: {e}"))?;
    let outcome = service.deliver(&job).await.map_err(|e| e.to_string())?;
    tracing::info!(delivery_id = %job.delivery_id, ?outcome, "delivery attempted");
    Ok(())
}
