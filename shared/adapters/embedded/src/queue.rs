//! The in-process queue and its workers. The queue itself is memory; what it holds is also in
//! the store's due index, so after a crash `Service::resume_after_restart` refills it.
//!
//! The queue knows every delivery it holds, queued or in flight, so a second job for one of
//! them (the sweep re-enqueueing what is still queued, a retry timer firing while a duplicate
//! runs) is absorbed instead of sent twice, and the backlog has a size that publishing can be
//! held to. Each webhook gets at most a share of the workers, so one slow receiver cannot hold
//! them all.

use async_trait::async_trait;
use hookline_model::DeliveryJob;
use hookline_service::ports::{PortResult, Queue};
use hookline_service::{PortError, Service};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// Where a delivery the queue holds stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    /// Being attempted; `again` when another job for it arrived meanwhile (it runs once this
    /// attempt is over, and finds out itself whether there is anything left to do).
    Running {
        again: bool,
    },
    /// Its last attempt hit a backend failure; it is queued again after a back-off.
    BackingOff,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    state: State,
    /// Backend failures in a row, for the back-off.
    failures: u32,
}

#[derive(Clone)]
pub struct InProcessQueue {
    sender: mpsc::UnboundedSender<DeliveryJob>,
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    max_backlog: usize,
}

impl InProcessQueue {
    /// The queue and the receiving end its workers take. Past `max_backlog` deliveries queued
    /// or in flight, publishers are asked to wait ([`Queue::backpressure`]); work already
    /// accepted (retries, the sweep) is always taken.
    pub fn new(max_backlog: usize) -> (Self, mpsc::UnboundedReceiver<DeliveryJob>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (
            Self {
                sender,
                slots: Arc::default(),
                max_backlog,
            },
            receiver,
        )
    }

    /// Deliveries queued, in flight or backing off.
    pub fn backlog(&self) -> usize {
        self.slots.lock().unwrap().len()
    }

    fn send(&self, job: DeliveryJob) -> PortResult<()> {
        self.sender
            .send(job)
            .map_err(|_| PortError("the delivery workers have stopped".into()))
    }

    /// A worker starts on `job`.
    fn started(&self, job: &DeliveryJob) {
        let mut slots = self.slots.lock().unwrap();
        let slot = slots.entry(job.delivery_id.clone()).or_insert(Slot {
            state: State::Queued,
            failures: 0,
        });
        slot.state = State::Running { again: false };
    }

    /// A worker is done with `job`; `failed` when a backend failure means it must run again.
    fn finished(&self, job: &DeliveryJob, failed: bool) {
        let mut slots = self.slots.lock().unwrap();
        let Some(slot) = slots.get_mut(&job.delivery_id) else {
            return;
        };
        if failed {
            slot.failures += 1;
            slot.state = State::BackingOff;
            let wait = back_off(slot.failures);
            drop(slots);
            let queue = self.clone();
            let job = job.clone();
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                if let Some(slot) = queue.slots.lock().unwrap().get_mut(&job.delivery_id) {
                    slot.state = State::Queued;
                }
                let _ = queue.send(job);
            });
            return;
        }
        match slot.state {
            State::Running { again: true } => {
                slot.state = State::Queued;
                drop(slots);
                let _ = self.send(job.clone());
            }
            _ => {
                slots.remove(&job.delivery_id);
            }
        }
    }
}

/// How long a job whose attempt hit a backend failure waits before it runs again (the local
/// counterpart of an SQS visibility timeout): doubling from 1 s up to a minute, so a record
/// that keeps failing does not turn into a request a second.
fn back_off(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

#[async_trait]
impl Queue for InProcessQueue {
    async fn enqueue(&self, jobs: &[DeliveryJob]) -> PortResult<()> {
        let mut to_send = Vec::with_capacity(jobs.len());
        {
            let mut slots = self.slots.lock().unwrap();
            for job in jobs {
                match slots.get_mut(&job.delivery_id) {
                    None => {
                        slots.insert(
                            job.delivery_id.clone(),
                            Slot {
                                state: State::Queued,
                                failures: 0,
                            },
                        );
                        to_send.push(job.clone());
                    }
                    Some(Slot {
                        state: State::Running { again },
                        ..
                    }) => *again = true,
                    // Queued already, or queued again after its back-off.
                    Some(_) => {}
                }
            }
        }
        for job in to_send {
            self.send(job)?;
        }
        Ok(())
    }

    fn backpressure(&self) -> Option<Duration> {
        (self.backlog() >= self.max_backlog).then_some(Duration::from_secs(1))
    }
}

/// Runs deliveries from `receiver`, at most `concurrency` at once and at most
/// `per_endpoint` at once to one webhook, until the queue closes.
pub async fn run_delivery_workers(
    service: Service,
    queue: InProcessQueue,
    mut receiver: mpsc::UnboundedReceiver<DeliveryJob>,
    concurrency: usize,
    per_endpoint: usize,
) {
    let permits = Arc::new(Semaphore::new(concurrency));
    let lanes: Arc<Mutex<HashMap<String, Arc<Semaphore>>>> = Arc::default();
    while let Some(job) = receiver.recv().await {
        let lane = lanes
            .lock()
            .unwrap()
            .entry(job.webhook_id.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(per_endpoint)))
            .clone();
        let (service, queue, permits, lanes) = (
            service.clone(),
            queue.clone(),
            permits.clone(),
            lanes.clone(),
        );
        tokio::spawn(async move {
            // The webhook's share first: a job of a saturated webhook waits without holding
            // one of the workers the other webhooks need.
            let Ok(lane_permit) = lane.clone().acquire_owned().await else {
                return;
            };
            let Ok(permit) = permits.acquire_owned().await else {
                return;
            };
            queue.started(&job);
            let result = service.deliver(&job).await;
            drop((permit, lane_permit));
            if let Err(error) = &result {
                tracing::warn!(delivery_id = %job.delivery_id, %error, "delivery attempt could not be recorded; trying again");
            }
            queue.finished(&job, result.is_err());
            let mut lanes = lanes.lock().unwrap();
            // Forget an idle webhook's lane (only the map and this task hold it).
            if Arc::strong_count(&lane) == 2 && lane.available_permits() == per_endpoint {
                lanes.remove(&job.webhook_id);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str) -> DeliveryJob {
        DeliveryJob {
            account_id: "acct_1".into(),
            delivery_id: id.into(),
            event_id: "evt_1".into(),
            webhook_id: "wh_1".into(),
        }
    }

    #[tokio::test]
    async fn in_process_queue_meets_the_queue_contract() {
        let (queue, receiver) = InProcessQueue::new(1000);
        let receiver = tokio::sync::Mutex::new(receiver);
        let taken = queue.clone();
        hookline_service::contract::queue_contract(&queue, || async {
            let mut receiver = receiver.lock().await;
            let mut got = Vec::new();
            while let Ok(Some(job)) =
                tokio::time::timeout(Duration::from_millis(50), receiver.recv()).await
            {
                // A worker takes it and is done with it.
                taken.started(&job);
                taken.finished(&job, false);
                got.push(job);
            }
            got
        })
        .await;
    }

    #[tokio::test]
    async fn a_delivery_already_held_is_not_queued_twice() {
        let (queue, mut receiver) = InProcessQueue::new(1000);
        queue.enqueue(&[job("dlv_1"), job("dlv_1")]).await.unwrap();
        queue.enqueue(&[job("dlv_1")]).await.unwrap();
        assert_eq!(receiver.recv().await.unwrap().delivery_id, "dlv_1");
        assert!(receiver.try_recv().is_err(), "one job while it is queued");
        queue.started(&job("dlv_1"));
        queue.enqueue(&[job("dlv_1")]).await.unwrap();
        assert!(receiver.try_recv().is_err(), "none while it runs");
        queue.finished(&job("dlv_1"), false);
        assert_eq!(
            receiver.try_recv().unwrap().delivery_id,
            "dlv_1",
            "the job that came while it ran runs after it"
        );
        queue.started(&job("dlv_1"));
        queue.finished(&job("dlv_1"), false);
        assert_eq!(queue.backlog(), 0);
    }

    #[tokio::test]
    async fn past_its_bound_the_queue_asks_publishers_to_wait() {
        let (queue, _receiver) = InProcessQueue::new(2);
        queue.enqueue(&[job("dlv_1")]).await.unwrap();
        assert_eq!(queue.backpressure(), None);
        queue.enqueue(&[job("dlv_2"), job("dlv_3")]).await.unwrap();
        assert_eq!(queue.backlog(), 3, "accepted work is never refused");
        assert!(queue.backpressure().is_some());
    }

    #[test]
    fn back_off_doubles_up_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| back_off(n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
