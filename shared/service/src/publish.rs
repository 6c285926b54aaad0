//! Publishing an event and fanning it out to the account's matching, active webhooks.

use crate::{Service, ServiceError, ServiceResult};
use chrono::{DateTime, Utc};
use hookline_model::catalog::{subscriptions_match, validate_event_type_name};
use hookline_model::limits::MAX_PAYLOAD_BYTES;
use hookline_model::{Delivery, Event, ValidationError, ids};
use serde::Serialize;
use serde_json::value::RawValue;

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
        if let Some(existing) = self
            .ports
            .store
            .insert_event(&event, self.sweep_time(now))
            .await?
        {
            return Ok(published(&existing));
        }
        let deliveries = self.fan_out(&event).await?;
        Ok(Published {
            id: event.id,
            event_type: event.event_type,
            deliveries,
        })
    }

    /// Creates the deliveries of `event` and queues them. Deterministic delivery ids make a
    /// second run (by the sweep, after a crash) recreate the same deliveries.
    pub(crate) async fn fan_out(&self, event: &Event) -> ServiceResult<u32> {
        let webhooks = self.ports.store.list_webhooks(&event.account_id).await?;
        let deliveries: Vec<Delivery> = webhooks
            .iter()
            .filter(|w| w.active && subscriptions_match(&w.events, &event.event_type))
            .map(|w| Delivery::pending(event, w))
            .collect();
        let now = self.ports.clock.now();
        self.ports
            .store
            .insert_deliveries(event, &deliveries, self.sweep_time(now))
            .await?;
        // Stored and due for the sweep: a failed enqueue is not an error for the publisher.
        self.enqueue_or_leave_to_sweep(deliveries.iter().map(Delivery::job).collect())
            .await;
        Ok(deliveries.len() as u32)
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
