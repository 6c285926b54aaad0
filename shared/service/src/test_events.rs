//! Test events: a realistic event of a given type, published to the caller's own webhooks.

use crate::publish::{NewEvent, Published};
use crate::{Service, ServiceError, ServiceResult};
use hookline_model::ValidationError;
use hookline_model::catalog::validate_event_type_name;
use hookline_model::samples::{reading_event_type, sample_payload};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

impl Service {
    /// `POST /test/<kind>-webhook`: a sample reading, with the values given in `overrides`.
    pub async fn publish_test_reading(
        &self,
        account_id: &str,
        kind: &str,
        overrides: Map<String, Value>,
    ) -> ServiceResult<Published> {
        let event_type = reading_event_type(kind).ok_or(ServiceError::NotFound("test route"))?;
        let timestamp = self.ports.clock.now().to_rfc3339();
        let payload = sample_payload(event_type, &timestamp, &overrides);
        self.publish_test(account_id, event_type, payload).await
    }

    /// `POST /test/webhook {type, payload?}`: any known type, the sample payload by default.
    pub async fn publish_test_event(
        &self,
        account_id: &str,
        event_type: &str,
        payload: Option<Value>,
    ) -> ServiceResult<Published> {
        // Checked before the catalog lookup: a name no store key can hold (DynamoDB keys
        // stop at 1 KiB) is bad input, not a backend failure.
        validate_event_type_name("type", event_type)?;
        if !self.is_known_event_type(event_type).await? {
            return Err(ValidationError::new(
                "type",
                format!("unknown event type '{event_type}' (see GET /api/v3/webhook/types)"),
            )
            .into());
        }
        let payload = match payload {
            Some(payload) => payload,
            None => {
                let timestamp = self.ports.clock.now().to_rfc3339();
                sample_payload(event_type, &timestamp, &Map::new())
            }
        };
        self.publish_test(account_id, event_type, payload).await
    }

    async fn publish_test(
        &self,
        account_id: &str,
        event_type: &str,
        payload: Value,
    ) -> ServiceResult<Published> {
        let payload = RawValue::from_string(payload.to_string())
            .map_err(|_| ValidationError::new("payload", "must be JSON"))?;
        self.publish(NewEvent {
            account_id: account_id.to_string(),
            event_type: event_type.to_string(),
            payload,
            id: None,
        })
        .await
    }
}
