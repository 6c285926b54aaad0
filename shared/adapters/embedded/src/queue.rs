//! The in-process queue and its workers. The queue itself is memory; what it holds is also in
//! the store's due index, so after a crash `Service::resume_after_restart` refills it.

use async_trait::async_trait;
use hookline_model::DeliveryJob;
use hookline_service::ports::{PortResult, Queue};
use hookline_service::{PortError, Service};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

#[derive(Clone)]
pub struct InProcessQueue {
    sender: mpsc::UnboundedSender<DeliveryJob>,
}

impl InProcessQueue {
    /// The queue and the receiving end its workers take.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<DeliveryJob>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Self { sender }, receiver)
    }
}

#[async_trait]
impl Queue for InProcessQueue {
    async fn enqueue(&self, jobs: &[DeliveryJob]) -> PortResult<()> {
        for job in jobs {
            self.sender
                .send(job.clone())
                .map_err(|_| PortError("the delivery workers have stopped".into()))?;
        }
        Ok(())
    }
}

/// How long a job whose attempt hit a backend failure waits before it is tried again
/// (the local counterpart of an SQS visibility timeout).
const REDELIVER_AFTER: Duration = Duration::from_secs(1);

/// Runs deliveries from `receiver`, at most `concurrency` at once, until the queue closes.
pub async fn run_delivery_workers(
    service: Service,
    queue: InProcessQueue,
    mut receiver: mpsc::UnboundedReceiver<DeliveryJob>,
    concurrency: usize,
) {
    let permits = Arc::new(Semaphore::new(concurrency));
    while let Some(job) = receiver.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let service = service.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(error) = service.deliver(&job).await {
                tracing::warn!(delivery_id = %job.delivery_id, %error, "delivery attempt could not be recorded; trying again");
                tokio::time::sleep(REDELIVER_AFTER).await;
                let _ = queue.enqueue(std::slice::from_ref(&job)).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_process_queue_meets_the_queue_contract() {
        let (queue, receiver) = InProcessQueue::new();
        let receiver = tokio::sync::Mutex::new(receiver);
        hookline_service::contract::queue_contract(&queue, || async {
            let mut receiver = receiver.lock().await;
            let mut got = Vec::new();
            while let Ok(Some(job)) =
                tokio::time::timeout(Duration::from_millis(50), receiver.recv()).await
            {
                got.push(job);
            }
            got
        })
        .await;
    }
}
