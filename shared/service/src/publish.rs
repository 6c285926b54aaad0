//! Publishing an event and fanning it out to the account's matching, active webhooks.

use crate::ports::MAX_ATOMIC_FAN_OUT;
use crate::{Service, ServiceError, ServiceResult};
use chrono::{DateTime, Utc};
use hookline_model::catalog::{subscriptions_match, validate_event_type_name};
use hookline_model::limits::MAX_PAYLOAD_BYTES;
use hookline_model::{Delivery, Event, ValidationError, ids};
use serde::Serialize;
use serde_json::value::RawValue;
use std::time::Instant;

/// Deliveries of a large fan-out stored (and queued) at a time.
const FAN_OUT_CHUNK: usize = 500;

/// `POST /events`.
#[derive(Debug)]
pub struct NewEvent {
    pub account_id: String,
    pub event_type: String,
    pub payload: Box<RawValue>,
    /// Caller's id: publishing the same id again returns the first result.
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Published {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// How many deliveries the event fanned out to.
    pub deliveries: u32,
}

impl Service {
    pub async fn publish(&self, input: NewEvent) -> ServiceResult<Published> {
        validate_event_type_name("type", &input.event_type)?;
        if !self.is_known_event_type(&input.event_type).await? {
            return Err(ValidationError::new(
                "type",
                format!("unknown event type '{}'", input.event_type),
            )
            .into());
        }
        if input.payload.get().len() > MAX_PAYLOAD_BYTES {
            return Err(ServiceError::TooLarge {
                field: "payload",
                limit: MAX_PAYLOAD_BYTES,
            });
        }
        if !input.payload.get().trim_start().starts_with('{') {
            return Err(ValidationError::new("payload", "must be a JSON object").into());
        }
        if let Some(id) = &input.id {
            validate_event_id(id)?;
        }
        if let Some(wait) = self.ports.queue.backpressure() {
            return Err(ServiceError::Busy {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        if self
            .ports
            .store
            .get_account(&input.account_id)
            .await?
            .is_none()
        {
            return Err(ServiceError::NotFound("account"));
        }
        let now = self.ports.clock.now();
        let event = Event {
            id: input.id.unwrap_or_else(|| ids::new_id(ids::EVENT, now)),
            account_id: input.account_id,
            event_type: input.event_type,
            payload: input.payload.get().to_string(),
            created_at: now,
            deliveries: 0,
            fanned_out: false,
        };
        let deliveries = self.deliveries_of(&event).await?;
        let sweep_at = self.sweep_time(now);
        // A small fan-out is stored with its event in one write; a larger one after it.
        let small = deliveries.len() <= MAX_ATOMIC_FAN_OUT;
        let existing = if small {
            self.ports
                .store
                .insert_event_with_deliveries(&event, &deliveries, sweep_at)
                .await?
        } else {
            self.ports.store.insert_event(&event, sweep_at).await?
        };
        if let Some(existing) = existing {
            return Ok(published(&existing));
        }
        let count = deliveries.len() as u32;
        if small {
            self.enqueue_or_leave_to_sweep(deliveries.iter().map(Delivery::job).collect())
                .await;
        } else {
            self.store_fan_out(&event, deliveries, None).await?;
        }
        Ok(Published {
            id: event.id,
            event_type: event.event_type,
            deliveries: count,
        })
    }

    /// Finishes the fan-out of a stored event that a crash interrupted (the sweep): creates
    /// and queues the deliveries not stored yet; deterministic delivery ids make those already
    /// stored known, and they are neither reset nor queued again. False when `deadline` came
    /// first: what was stored stays, and the event stays due for the next sweep.
    pub(crate) async fn resume_fan_out(
        &self,
        event: &Event,
        deadline: Option<Instant>,
    ) -> ServiceResult<bool> {
        let deliveries = self.deliveries_of(event).await?;
        Ok(self
            .store_fan_out(event, deliveries, deadline)
            .await?
            .is_some())
    }

    /// Stores the deliveries of a stored event a chunk at a time, queueing the new ones of each
    /// chunk once it is stored (the first deliveries go out while the rest are written), then
    /// marks the event fanned out. Until then the event stays due, so the sweep finishes a
    /// fan-out that a crash interrupted. `None` when `deadline` passed before the end.
    async fn store_fan_out(
        &self,
        event: &Event,
        deliveries: Vec<Delivery>,
        deadline: Option<Instant>,
    ) -> ServiceResult<Option<u32>> {
        let sweep_at = self.sweep_time(self.ports.clock.now());
        for chunk in deliveries.chunks(FAN_OUT_CHUNK) {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            let new = self
                .ports
                .store
                .insert_deliveries(event, chunk, sweep_at)
                .await?;
            // Stored and due for the sweep: a failed enqueue is not an error for the publisher.
            let jobs = chunk
                .iter()
                .zip(new)
                .filter(|(_, new)| *new)
                .map(|(delivery, _)| delivery.job())
                .collect();
            self.enqueue_or_leave_to_sweep(jobs).await;
        }
        let count = deliveries.len() as u32;
        self.ports.store.finish_fan_out(event, count).await?;
        Ok(Some(count))
    }

    /// The pending deliveries of `event`: one per active webhook whose subscriptions match.
    async fn deliveries_of(&self, event: &Event) -> ServiceResult<Vec<Delivery>> {
        let webhooks = self.ports.store.list_webhooks(&event.account_id).await?;
        Ok(webhooks
            .iter()
            .filter(|w| w.active && subscriptions_match(&w.events, &event.event_type))
            .map(|w| Delivery::pending(event, w))
            .collect())
    }

    pub(crate) fn sweep_time(&self, from: DateTime<Utc>) -> DateTime<Utc> {
        from + chrono::Duration::from_std(self.config.sweep_lease)
            .unwrap_or(chrono::Duration::minutes(2))
    }
}

fn published(event: &Event) -> Published {
    Published {
        id: event.id.clone(),
        event_type: event.event_type.clone(),
        deliveries: event.deliveries,
    }
}

fn validate_event_id(id: &str) -> Result<(), ValidationError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            "id",
            "must be 1 to 128 letters, digits, '_', '-', '.' or ':'",
        ))
    }
}
