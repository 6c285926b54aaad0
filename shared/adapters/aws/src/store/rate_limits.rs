//! The rate limiter on DynamoDB (issue 15 item 5): one small item per rate-limited webhook,
//! `RATE#<webhook id>`, holding the webhook's next free send time. Every deliver invocation
//! takes turns from it with conditional updates, so the limit holds across all of them.
//!
//! Turns are taken `k` at a time: one UpdateItem moves the time on by `k` spacings, on
//! condition that it is not in the past (the webhook is busy): the time before the move is the
//! first turn. When it is in the past (the webhook was idle), a second UpdateItem sets it to
//! now plus `k` spacings, on condition that it still is: the first turn is now. A race between
//! the two goes round again. No read, no transaction. Within a process the deliveries of one
//! webhook that ask at once (an SQS batch is handled concurrently) share one update: the one
//! that gets to go takes a turn for each of them, so a batch of 10 costs one write unit, or two
//! when the first update's condition fails (a failed condition is billed too). Each process
//! tries first the update that worked last for the webhook. The item is not of a kind the
//! table's stream passes on.

use super::{DynamoStore, is_conditional_failure, n, sdk};
use crate::table::{EXPIRES_AT, PK, SK};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, TimeZone, Utc};
use hookline_service::PortError;
use hookline_service::ports::{PortResult, RateLimiter};
use hookline_service::rate_limit::spacing;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const NEXT_FREE: &str = "nextFree";
/// Races lost in a row before a turn is given up (the job is tried again).
const MAX_TRIES: usize = 8;
/// Webhooks this process remembers as busy or idle.
const REMEMBERED: usize = 10_000;

pub struct DynamoRateLimiter {
    client: Client,
    table: String,
    /// Whether each webhook was busy when this process last took a turn: which update to try
    /// first.
    busy: Mutex<HashMap<String, bool>>,
    /// The webhooks this process is taking turns for.
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
}

/// The deliveries of one webhook asking for turns in this process. Each caller counts itself
/// in `asking`, then takes the lock: it finds a turn taken for it in `granted`, or takes turns
/// for everyone counted so far (itself included).
#[derive(Default)]
struct Lane {
    asking: AtomicUsize,
    granted: tokio::sync::Mutex<VecDeque<DateTime<Utc>>>,
}

impl DynamoStore {
    /// A rate limiter on this store's table.
    pub fn rate_limiter(&self) -> DynamoRateLimiter {
        DynamoRateLimiter {
            client: self.client.clone(),
            table: self.table.clone(),
            busy: Mutex::default(),
            lanes: Mutex::default(),
        }
    }
}

fn key(webhook_id: &str) -> [(String, AttributeValue); 2] {
    [
        (
            PK.to_string(),
            AttributeValue::S(format!("RATE#{webhook_id}")),
        ),
        (SK.to_string(), AttributeValue::S("RATE".into())),
    ]
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

impl DynamoRateLimiter {
    /// The busy update: the turn is the stored time, which moves on by `step`.
    async fn take_after_others(
        &self,
        webhook_id: &str,
        now: DateTime<Utc>,
        step: i64,
    ) -> PortResult<Option<i64>> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(webhook_id).into()))
            .update_expression("SET #next = #next + :step, #expires = :expires")
            .condition_expression("#next >= :now")
            .expression_attribute_names("#next", NEXT_FREE)
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":step", n(step))
            .expression_attribute_values(":now", n(micros(now)))
            .expression_attribute_values(":expires", n(expires(now)))
            .return_values(ReturnValue::UpdatedOld)
            .send()
            .await;
        match result {
            Ok(out) => out
                .attributes
                .as_ref()
                .and_then(|a| a.get(NEXT_FREE))
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i64>().ok())
                .map(Some)
                .ok_or_else(|| PortError("UpdateItem: no previous send time returned".into())),
            Err(e) if is_conditional_failure(&e) => Ok(None),
            Err(e) => Err(sdk("UpdateItem")(e)),
        }
    }

    /// The idle update: the turn is now, the next free time now plus `step`.
    async fn take_now(&self, webhook_id: &str, now: DateTime<Utc>, step: i64) -> PortResult<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(webhook_id).into()))
            .update_expression("SET #next = :next, #expires = :expires")
            .condition_expression("attribute_not_exists(#next) OR #next < :now")
            .expression_attribute_names("#next", NEXT_FREE)
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":next", n(micros(now) + step))
            .expression_attribute_values(":now", n(micros(now)))
            .expression_attribute_values(":expires", n(expires(now)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(sdk("UpdateItem")(e)),
        }
    }

    fn remember(&self, webhook_id: &str, busy: bool) {
        let mut seen = self.busy.lock().unwrap();
        if seen.len() >= REMEMBERED && !seen.contains_key(webhook_id) {
            seen.clear();
        }
        seen.insert(webhook_id.to_string(), busy);
    }
}

/// The time since `since` in whole microseconds: what the item keeps.
fn elapsed_micros(since: std::time::Instant) -> chrono::Duration {
    chrono::Duration::microseconds(since.elapsed().as_micros() as i64)
}

/// The item outlives any turn it hands out by a day (DynamoDB TTL, in seconds).
fn expires(now: DateTime<Utc>) -> i64 {
    now.timestamp() + 86_400
}

impl DynamoRateLimiter {
    /// Takes `count` turns in one update; answers the first (the others follow it a spacing
    /// apart).
    async fn take(
        &self,
        webhook_id: &str,
        per_second: u32,
        now: DateTime<Utc>,
        count: usize,
    ) -> PortResult<DateTime<Utc>> {
        let step = spacing(per_second).num_microseconds().unwrap_or(1_000_000) * count as i64;
        let mut busy_first = self
            .busy
            .lock()
            .unwrap()
            .get(webhook_id)
            .copied()
            .unwrap_or(true);
        let started = std::time::Instant::now();
        for _ in 0..MAX_TRIES {
            let now = now + elapsed_micros(started);
            if busy_first && let Some(turn) = self.take_after_others(webhook_id, now, step).await? {
                self.remember(webhook_id, true);
                return Utc
                    .timestamp_micros(turn)
                    .single()
                    .ok_or_else(|| PortError("a stored send time is out of range".into()));
            }
            if self.take_now(webhook_id, now, step).await? {
                self.remember(webhook_id, false);
                return Ok(now);
            }
            busy_first = true;
        }
        Err(PortError(format!(
            "rate limit of webhook {webhook_id}: {MAX_TRIES} races lost in a row"
        )))
    }

    fn lane(&self, webhook_id: &str) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().unwrap();
        if lanes.len() >= REMEMBERED && !lanes.contains_key(webhook_id) {
            // Only lanes nobody is in (the map holds the one reference).
            lanes.retain(|_, lane| Arc::strong_count(lane) > 1);
        }
        lanes.entry(webhook_id.to_string()).or_default().clone()
    }
}

#[async_trait]
impl RateLimiter for DynamoRateLimiter {
    async fn reserve(
        &self,
        webhook_id: &str,
        per_second: u32,
        now: DateTime<Utc>,
    ) -> PortResult<DateTime<Utc>> {
        // `now` moved on by the time this waits here and in the updates below: a turn taken
        // from a time gone by would be sent at once, together with the turns after it, above
        // the rate (up to 100 jobs of a webhook ask at once in one invocation).
        let asked = std::time::Instant::now();
        let lane = self.lane(webhook_id);
        lane.asking.fetch_add(1, Ordering::SeqCst);
        let mut granted = lane.granted.lock().await;
        let now = now + elapsed_micros(asked);
        // A turn taken for a caller that gave up (its task was dropped) is left over: one gone
        // by is not handed out, or two sends could go out together above the rate.
        while let Some(turn) = granted.pop_front() {
            if turn >= now - chrono::Duration::milliseconds(500) {
                return Ok(turn);
            }
        }
        // Nothing taken for this caller yet, so it is among those still counted: turns for
        // all of them, the first its own.
        let count = lane.asking.swap(0, Ordering::SeqCst).max(1);
        match self.take(webhook_id, per_second, now, count).await {
            Ok(first) => {
                let spacing = spacing(per_second);
                granted.extend((1..count as i32).map(|i| first + spacing * i));
                Ok(first)
            }
            Err(error) => {
                // The others ask again for themselves.
                lane.asking.fetch_add(count - 1, Ordering::SeqCst);
                Err(error)
            }
        }
    }
}
