//! Group commit of attempt records: deliveries that finish at about the same time are recorded
//! together, in as few store writes as the store can (one DynamoDB transaction for up to 40),
//! instead of one write each. A record waits only while earlier writes are in flight, so an
//! idle system adds no delay, and a busy one writes bigger batches.

use crate::PortError;
use crate::ports::{AttemptRecord, PortResult, Store};
use hookline_model::Delivery;
use std::sync::{Arc, OnceLock};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Batch writes in flight at once. Few, so that records pile up behind them (on Lambda the ten
/// messages of a batch end in about three writes instead of ten), but two: with one, the local
/// store's writes no longer overlap their HTTP and encoding, and local throughput fell by a
/// third (docs/BENCHMARKS.md).
const WRITES_IN_FLIGHT: usize = 2;

type Waiting = (Delivery, AttemptRecord, oneshot::Sender<PortResult<bool>>);

pub(crate) struct AttemptRecorder {
    store: Arc<dyn Store>,
    /// Started on first use, on the runtime of its caller.
    queue: OnceLock<mpsc::UnboundedSender<Waiting>>,
}

impl AttemptRecorder {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            queue: OnceLock::new(),
        }
    }

    /// What [`DeliveryStore::record_attempt`](crate::DeliveryStore::record_attempt) answers, written in a batch with others.
    pub(crate) async fn record(
        &self,
        delivery: &Delivery,
        record: &AttemptRecord,
    ) -> PortResult<bool> {
        let queue = self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(write_batches(self.store.clone(), receiver));
            sender
        });
        let (answer, answered) = oneshot::channel();
        if queue
            .send((delivery.clone(), record.clone(), answer))
            .is_err()
        {
            // The batching task is gone (its runtime ended): write this one directly.
            return self.store.record_attempt(delivery, record).await;
        }
        answered
            .await
            .unwrap_or_else(|_| Err(PortError("the attempt recorder stopped".into())))
    }
}

async fn write_batches(store: Arc<dyn Store>, mut queue: mpsc::UnboundedReceiver<Waiting>) {
    let writes = Arc::new(Semaphore::new(WRITES_IN_FLIGHT));
    // Records taken into one batch at most: as many as the store writes well at once.
    let max_batch = store.attempts_per_write().max(1);
    while let Some(first) = queue.recv().await {
        let Ok(permit) = writes.clone().acquire_owned().await else {
            return;
        };
        // Whatever arrived while the earlier writes were busy goes into this batch.
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(waiting) => batch.push(waiting),
                Err(_) => break,
            }
        }
        let store = store.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (records, answers): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .map(|(delivery, record, answer)| ((delivery, record), answer))
                .unzip();
            // One answer per record: a record that could not be written fails only its own job.
            let started = std::time::Instant::now();
            let recorded = store.record_attempts(&records).await;
            crate::telemetry::store_write("record_attempts", started);
            let mut recorded = recorded.into_iter();
            for answer in answers {
                let done = recorded.next().unwrap_or_else(|| {
                    Err(PortError(
                        "the store answered fewer records than it was given".into(),
                    ))
                });
                let _ = answer.send(done);
            }
        });
    }
}
