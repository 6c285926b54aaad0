//! Rate limits per webhook (issue 15 item 5): each delivery to a rate-limited webhook takes a
//! send time from the [`RateLimiter`], waits for it (briefly in its worker, otherwise back on
//! the queue carrying that time) and is sent then. Nothing is dropped: a delivery over the
//! rate only waits.

use crate::Service;
use crate::ports::{PortResult, RateLimiter};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookline_model::DeliveryJob;
use std::collections::HashMap;
use std::sync::Mutex;

/// How late a job may come back for the send time it carries and still use it. Later than
/// this (its worker failed, the queue was slow) it takes a new one, so jobs held up together
/// cannot go out together above the rate.
const LATE_TOLERANCE: chrono::Duration = chrono::Duration::milliseconds(500);

/// Whether a delivery may be sent now.
pub(crate) enum Turn {
    Now,
    /// Put back on the queue for its send time.
    Later,
}

/// The time between two sends at `per_second`, rounded up so the rate is never exceeded.
pub fn spacing(per_second: u32) -> chrono::Duration {
    let per_second = i64::from(per_second.max(1));
    chrono::Duration::microseconds((1_000_000 + per_second - 1) / per_second)
}

impl Service {
    /// Waits for `job`'s turn under its webhook's limit of `per_second`.
    pub(crate) async fn take_turn(&self, job: &DeliveryJob, per_second: u32) -> PortResult<Turn> {
        let now = self.ports.clock.now();
        let at = match job.not_before {
            // Its turn was taken when it was put back.
            Some(at) if at >= now - LATE_TOLERANCE => at,
            _ => {
                self.rate_limiter
                    .reserve(&job.webhook_id, per_second, now)
                    .await?
            }
        };
        // From the time the turn was given, not asked for: taking it may have taken a while.
        let wait = (at - self.ports.clock.now()).to_std().unwrap_or_default();
        // An ordered delivery holds its lane: put back, it would lose its place. One in
        // flight at a time, its turn is at most a spacing (a second) away.
        if wait <= self.config.rate_wait_inline || job.ordered {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            return Ok(Turn::Now);
        }
        let waiting = DeliveryJob {
            not_before: Some(at),
            ..job.clone()
        };
        self.ports.queue.defer(&waiting, at).await?;
        Ok(Turn::Later)
    }
}

/// The limiter of one process (`hookline serve`, where every delivery goes through one
/// process): the next send time of each rate-limited webhook, in memory.
#[derive(Default)]
pub struct InProcessRateLimiter {
    next_free: Mutex<HashMap<String, DateTime<Utc>>>,
}

/// Past this many webhooks remembered, those with no turn ahead are forgotten.
const REMEMBERED: usize = 10_000;

#[async_trait]
impl RateLimiter for InProcessRateLimiter {
    async fn reserve(
        &self,
        webhook_id: &str,
        per_second: u32,
        now: DateTime<Utc>,
    ) -> PortResult<DateTime<Utc>> {
        let mut next_free = self.next_free.lock().unwrap();
        if next_free.len() >= REMEMBERED && !next_free.contains_key(webhook_id) {
            next_free.retain(|_, at| *at > now);
        }
        let free = next_free.entry(webhook_id.to_string()).or_insert(now);
        let at = (*free).max(now);
        *free = at + spacing(per_second);
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_are_spaced_by_the_rate_and_start_at_once_when_idle() {
        let limiter = InProcessRateLimiter::default();
        let t0 = Utc::now();
        let turns: Vec<_> =
            futures::future::join_all((0..5).map(|_| limiter.reserve("wh_1", 10, t0)))
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
        let offsets: Vec<i64> = turns.iter().map(|t| (*t - t0).num_milliseconds()).collect();
        assert_eq!(offsets, vec![0, 100, 200, 300, 400]);
        // Another webhook has its own turns.
        assert_eq!(limiter.reserve("wh_2", 10, t0).await.unwrap(), t0);
        // Idle for a while: the next turn is now, not a catch-up burst.
        let later = t0 + chrono::Duration::seconds(10);
        assert_eq!(limiter.reserve("wh_1", 10, later).await.unwrap(), later);
        assert_eq!(
            limiter.reserve("wh_1", 10, later).await.unwrap(),
            later + chrono::Duration::milliseconds(100)
        );
    }

    #[test]
    fn spacing_never_lets_the_rate_be_exceeded() {
        assert_eq!(spacing(1), chrono::Duration::seconds(1));
        assert_eq!(spacing(500), chrono::Duration::milliseconds(2));
        // 1/3 s rounded up, so 3 turns take at least a second.
        assert!(spacing(3) * 3 >= chrono::Duration::seconds(1));
    }
}
