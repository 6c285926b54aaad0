//! The in-process queue and its workers. The queue itself is memory; what it holds is also in
//! the store's due index, so after a crash `Service::resume_after_restart` refills it.
//!
//! The queue knows every delivery it holds, queued or in flight, so a second job for one of
//! them (the sweep re-enqueueing what is still queued, a retry timer firing while a duplicate
//! runs) is absorbed instead of sent twice, and the backlog has a size that publishing can be
//! held to. Each webhook gets at most a share of the workers, so one slow receiver cannot hold
//! them all.
//!
//! An ordered webhook's deliveries go through a lane of their own, one at a time, in the order
//! they were queued: the next is handed to the workers only once the one before it ended
//! (delivered, failed, or gone); a retry keeps its place at the head of the lane.
//!
//! Two bounds hold publishing back. Past `max_backlog` deliveries a publish is refused at once
//! (503). Below it, a publisher waits (a little) while the backlog is longer than what the
//! workers deliver in [`TARGET_QUEUE_DELAY`] at their measured pace, so under overload the
//! backlog, and with it the time from publish to delivery, stays short instead of growing
//! until the hard bound.

use async_trait::async_trait;
use hookline_model::DeliveryJob;
use hookline_service::DeliverOutcome;
use hookline_service::ports::{PortResult, Queue};
use hookline_service::{PortError, Service};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, mpsc};

/// How long a delivery may wait in the backlog, at the measured pace, before publishers are
/// held back.
const TARGET_QUEUE_DELAY: Duration = Duration::from_millis(250);
/// The soft bound never goes below this: twice the local delivery workers (256), so no worker
/// idles while publishers wait, even when slow receivers keep the measured pace low.
const MIN_SOFT_BACKLOG: usize = 512;
/// The longest a publish waits for room before it is answered 503.
const MAX_PUBLISH_WAIT: Duration = Duration::from_secs(2);
/// How often the delivery pace is measured.
const PACE_EVERY: Duration = Duration::from_millis(250);

/// Deliveries finished per second, measured over the last intervals.
struct Pace {
    since: Instant,
    finished_then: u64,
    per_second: f64,
}

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
    /// Waiting for the turn its webhook's rate limit gave it; queued again then. Not counted
    /// in the backlog publishers are held to: it waits for its receiver, not for the workers.
    Deferred,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    state: State,
    /// Backend failures in a row, for the back-off.
    failures: u32,
}

/// The lane of an ordered webhook: the delivery it is on (being attempted, or waiting for its
/// retry) and those queued behind it, in the order they came.
struct OrderedLane {
    head: String,
    waiting: VecDeque<DeliveryJob>,
    waiting_ids: HashSet<String>,
}

#[derive(Clone)]
pub struct InProcessQueue {
    sender: mpsc::UnboundedSender<DeliveryJob>,
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    max_backlog: usize,
    /// Deliveries finished (left the queue) since start.
    finished: Arc<AtomicU64>,
    pace: Arc<Mutex<Pace>>,
    /// Woken once per finished delivery: a waiting publisher looks again.
    room: Arc<Notify>,
    /// Slots in [`State::Deferred`] (changed only under the `slots` lock).
    deferred: Arc<AtomicUsize>,
    /// The lanes of ordered webhooks with a delivery under way, by webhook id. What waits in
    /// a lane is not in the backlog publishers are held to: it waits for its receiver.
    lanes: Arc<Mutex<HashMap<String, OrderedLane>>>,
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
                finished: Arc::default(),
                pace: Arc::new(Mutex::new(Pace {
                    since: Instant::now(),
                    finished_then: 0,
                    per_second: 0.0,
                })),
                room: Arc::default(),
                deferred: Arc::default(),
                lanes: Arc::default(),
            },
            receiver,
        )
    }

    /// Deliveries queued, in flight or backing off.
    pub fn backlog(&self) -> usize {
        self.slots.lock().unwrap().len() - self.deferred.load(Ordering::Relaxed)
    }

    /// The backlog publishers are held to below `max_backlog`: what the workers deliver in
    /// [`TARGET_QUEUE_DELAY`] at their recent pace.
    fn soft_bound(&self) -> usize {
        let mut pace = self.pace.lock().unwrap();
        let elapsed = pace.since.elapsed();
        if elapsed >= PACE_EVERY {
            let finished = self.finished.load(Ordering::Relaxed);
            let now = (finished - pace.finished_then) as f64 / elapsed.as_secs_f64();
            // Smoothed, so one slow interval does not shut publishing out.
            pace.per_second = if elapsed > 4 * PACE_EVERY {
                now
            } else {
                0.5 * pace.per_second + 0.5 * now
            };
            pace.since = Instant::now();
            pace.finished_then = finished;
        }
        let bound = (pace.per_second * TARGET_QUEUE_DELAY.as_secs_f64()) as usize;
        bound.max(MIN_SOFT_BACKLOG).min(self.max_backlog)
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
            // Put back for its turn during this attempt: its timer queues it.
            State::Deferred => {}
            State::Running { again: true } => {
                slot.state = State::Queued;
                drop(slots);
                let _ = self.send(job.clone());
            }
            _ => {
                slots.remove(&job.delivery_id);
                drop(slots);
                self.finished.fetch_add(1, Ordering::Relaxed);
                self.room.notify_one();
            }
        }
    }

    /// Hands jobs to the workers, absorbing those of deliveries it holds already.
    fn hand_over(&self, jobs: &[DeliveryJob]) -> PortResult<()> {
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

    /// The jobs that may go to the workers now, in order: every unordered one, and an ordered
    /// one when its lane is free or it is the lane's head coming back (its retry); the other
    /// ordered ones wait in their lane (once each).
    fn through_lanes(&self, jobs: &[DeliveryJob]) -> Vec<DeliveryJob> {
        let mut lanes = self.lanes.lock().unwrap();
        let mut passing = Vec::with_capacity(jobs.len());
        for job in jobs {
            if !job.ordered {
                passing.push(job.clone());
                continue;
            }
            match lanes.get_mut(&job.webhook_id) {
                None => {
                    lanes.insert(
                        job.webhook_id.clone(),
                        OrderedLane {
                            head: job.delivery_id.clone(),
                            waiting: VecDeque::new(),
                            waiting_ids: HashSet::new(),
                        },
                    );
                    passing.push(job.clone());
                }
                Some(lane) if lane.head == job.delivery_id => passing.push(job.clone()),
                Some(lane) => {
                    if lane.waiting_ids.insert(job.delivery_id.clone()) {
                        lane.waiting.push_back(job.clone());
                    }
                }
            }
        }
        passing
    }

    /// A worker is done with an attempt of ordered `job`, with `outcome`: when the delivery
    /// ended (or is no longer there), the next in its lane goes to the workers; when it will
    /// be tried again (a retry, a backend failure), it keeps the lane.
    pub fn attempt_over(&self, job: &DeliveryJob, outcome: &PortResult<DeliverOutcome>) {
        if !job.ordered {
            return;
        }
        let ended = matches!(
            outcome,
            Ok(DeliverOutcome::Delivered | DeliverOutcome::Failed | DeliverOutcome::Skipped)
        );
        if !ended {
            return;
        }
        let next = {
            let mut lanes = self.lanes.lock().unwrap();
            let Some(lane) = lanes.get_mut(&job.webhook_id) else {
                return;
            };
            // A duplicate of a delivery that ended long ago is not the lane's business.
            if lane.head != job.delivery_id {
                return;
            }
            match lane.waiting.pop_front() {
                Some(next) => {
                    lane.waiting_ids.remove(&next.delivery_id);
                    lane.head = next.delivery_id.clone();
                    next
                }
                None => {
                    lanes.remove(&job.webhook_id);
                    return;
                }
            }
        };
        if let Err(error) = self.hand_over(std::slice::from_ref(&next)) {
            tracing::warn!(delivery_id = %next.delivery_id, %error, "next in an ordered lane not queued; the sweep will");
        }
    }

    /// Deliveries waiting in ordered lanes behind the one each lane is on.
    pub fn waiting_in_lanes(&self) -> usize {
        self.lanes
            .lock()
            .unwrap()
            .values()
            .map(|lane| lane.waiting.len())
            .sum()
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
        if !jobs.iter().any(|job| job.ordered) {
            return self.hand_over(jobs);
        }
        let jobs = self.through_lanes(jobs);
        self.hand_over(&jobs)
    }

    /// Only the worker running `job` defers it, so its slot is there; a second job for it
    /// meanwhile is absorbed, as while it is queued (the deferred one runs at its turn).
    async fn defer(&self, job: &DeliveryJob, at: chrono::DateTime<chrono::Utc>) -> PortResult<()> {
        {
            let mut slots = self.slots.lock().unwrap();
            let slot = slots.entry(job.delivery_id.clone()).or_insert(Slot {
                state: State::Queued,
                failures: 0,
            });
            if slot.state != State::Deferred {
                slot.state = State::Deferred;
                self.deferred.fetch_add(1, Ordering::Relaxed);
            }
        }
        let wait = (at - chrono::Utc::now()).to_std().unwrap_or_default();
        let queue = self.clone();
        let job = job.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            {
                let mut slots = queue.slots.lock().unwrap();
                if let Some(slot) = slots.get_mut(&job.delivery_id)
                    && slot.state == State::Deferred
                {
                    slot.state = State::Queued;
                    queue.deferred.fetch_sub(1, Ordering::Relaxed);
                }
            }
            // Gone only with the process, and then the store's due index brings it back.
            let _ = queue.send(job);
        });
        Ok(())
    }

    fn backpressure(&self) -> Option<Duration> {
        (self.backlog() >= self.max_backlog).then_some(Duration::from_secs(1))
    }

    async fn wait_for_room(&self) -> Option<Duration> {
        let deadline = tokio::time::Instant::now() + MAX_PUBLISH_WAIT;
        loop {
            let backlog = self.backlog();
            if backlog >= self.max_backlog {
                return Some(Duration::from_secs(1));
            }
            if backlog < self.soft_bound() {
                return None;
            }
            // A delivery finished between the look and this wait left a permit: no wake is
            // lost. The deadline also lets the pace be measured again.
            let room = self.room.notified();
            let step = (tokio::time::Instant::now() + PACE_EVERY).min(deadline);
            if tokio::time::timeout_at(step, room).await.is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return Some(Duration::from_secs(1));
            }
        }
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
            queue.attempt_over(&job, &result);
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
            not_before: None,
            ordered: false,
            round: 0,
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
    async fn a_deferred_delivery_waits_outside_the_backlog_and_absorbs_duplicates() {
        let (queue, mut receiver) = InProcessQueue::new(1000);
        queue.enqueue(&[job("dlv_1")]).await.unwrap();
        let taken = receiver.recv().await.unwrap();
        queue.started(&taken);
        let at = chrono::Utc::now() + chrono::Duration::milliseconds(300);
        let waiting = DeliveryJob {
            not_before: Some(at),
            ..taken.clone()
        };
        queue.defer(&waiting, at).await.unwrap();
        queue.finished(&taken, false);
        assert_eq!(queue.backlog(), 0, "waiting for its turn is not backlog");
        // The sweep finding it still pending queues nothing more.
        queue.enqueue(&[job("dlv_1")]).await.unwrap();
        assert!(receiver.try_recv().is_err(), "nothing before its time");
        let came = tokio::time::timeout(Duration::from_secs(2), receiver.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(came, waiting, "it comes back with its turn");
        assert!(chrono::Utc::now() >= at);
        assert_eq!(queue.backlog(), 1, "queued again");
        assert!(receiver.try_recv().is_err(), "once");
    }

    fn ordered(id: &str, webhook: &str) -> DeliveryJob {
        DeliveryJob {
            webhook_id: webhook.into(),
            ordered: true,
            ..job(id)
        }
    }

    /// What the workers were handed so far.
    fn handed(receiver: &mut mpsc::UnboundedReceiver<DeliveryJob>) -> Vec<String> {
        std::iter::from_fn(|| receiver.try_recv().ok())
            .map(|job| job.delivery_id)
            .collect()
    }

    /// A worker attempts `job` with `outcome`, as `run_delivery_workers` does.
    fn attempt(queue: &InProcessQueue, job: &DeliveryJob, outcome: PortResult<DeliverOutcome>) {
        queue.started(job);
        queue.finished(job, outcome.is_err());
        queue.attempt_over(job, &outcome);
    }

    #[tokio::test]
    async fn an_ordered_lane_hands_over_the_next_only_once_the_one_before_ended() {
        let (queue, mut receiver) = InProcessQueue::new(1000);
        let (a, b, c) = (
            ordered("a", "wh_o"),
            ordered("b", "wh_o"),
            ordered("c", "wh_o"),
        );
        queue
            .enqueue(&[a.clone(), b.clone(), job("free"), c.clone()])
            .await
            .unwrap();
        queue.enqueue(std::slice::from_ref(&b)).await.unwrap();
        assert_eq!(
            handed(&mut receiver),
            ["a", "free"],
            "b and c wait behind a"
        );
        assert_eq!(
            queue.waiting_in_lanes(),
            2,
            "b once, however often it is queued"
        );
        assert_eq!(queue.backlog(), 2, "what waits in a lane is not backlog");

        let retry_at = chrono::Utc::now();
        attempt(&queue, &a, Ok(DeliverOutcome::WillRetry { at: retry_at }));
        attempt(&queue, &a, Err(PortError("throttled".into())));
        assert!(
            handed(&mut receiver).is_empty(),
            "a keeps the lane while it is retried"
        );
        // Its retry comes back through the lane.
        queue.enqueue(std::slice::from_ref(&a)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            handed(&mut receiver),
            ["a"],
            "a's retry (after the back-off) goes out"
        );
        attempt(&queue, &a, Ok(DeliverOutcome::Failed));
        assert_eq!(
            handed(&mut receiver),
            ["b"],
            "b once a failed its last attempt"
        );
        attempt(&queue, &b, Ok(DeliverOutcome::Delivered));
        assert_eq!(handed(&mut receiver), ["c"]);
        // A late duplicate of b is not the lane's head: it hands nothing over.
        attempt(&queue, &b, Ok(DeliverOutcome::Skipped));
        assert!(handed(&mut receiver).is_empty());
        attempt(&queue, &c, Ok(DeliverOutcome::Delivered));
        assert_eq!(queue.waiting_in_lanes(), 0);
        assert!(
            queue.lanes.lock().unwrap().is_empty(),
            "an idle lane is forgotten"
        );
        queue.enqueue(&[ordered("d", "wh_o")]).await.unwrap();
        assert_eq!(
            handed(&mut receiver),
            ["d"],
            "a free lane hands over at once"
        );
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

    #[tokio::test]
    async fn past_the_soft_bound_a_publisher_waits_until_deliveries_finish() {
        let (queue, _receiver) = InProcessQueue::new(100_000);
        let jobs: Vec<DeliveryJob> = (0..MIN_SOFT_BACKLOG + 1)
            .map(|i| job(&format!("dlv_{i}")))
            .collect();
        queue.enqueue(&jobs).await.unwrap();
        assert_eq!(queue.backpressure(), None, "far below the hard bound");
        let waiting = tokio::spawn({
            let queue = queue.clone();
            async move { queue.wait_for_room().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "held while the backlog is long");
        for job in &jobs[..2] {
            queue.started(job);
            queue.finished(job, false);
        }
        let answer = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("let go once deliveries finish")
            .unwrap();
        assert_eq!(answer, None);
    }

    #[tokio::test]
    async fn a_publisher_that_waited_too_long_is_asked_to_come_back() {
        let (queue, _receiver) = InProcessQueue::new(100_000);
        let jobs: Vec<DeliveryJob> = (0..MIN_SOFT_BACKLOG)
            .map(|i| job(&format!("dlv_{i}")))
            .collect();
        queue.enqueue(&jobs).await.unwrap();
        let started = Instant::now();
        assert_eq!(queue.wait_for_room().await, Some(Duration::from_secs(1)));
        assert!(started.elapsed() >= MAX_PUBLISH_WAIT);
    }

    #[test]
    fn back_off_doubles_up_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|n| back_off(n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
