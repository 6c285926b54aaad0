//! The body every delivery POSTs. `standard` is `{"id","type","timestamp","payload"}`; a
//! webhook may choose another shape (issue 15 item 6) so receivers written for another
//! platform keep working: `compact` `{"id","type","payload"}`, `event` `{"id","event","payload"}`
//! (the organization-style guide), `content` `{"event_type","content"}` (Infermedica's guide).

use crate::error::ValidationError;
use crate::types::Event;
use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The shape of a webhook's delivery bodies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    #[default]
    Standard,
    Compact,
    Event,
    Content,
}

impl PayloadFormat {
    pub const NAMES: &'static str = "standard, compact, event or content";

    /// Reads a format name, naming `field` when it is none of them.
    pub fn parse(field: &str, name: &str) -> Result<Self, ValidationError> {
        match name {
            "standard" => Ok(Self::Standard),
            "compact" => Ok(Self::Compact),
            "event" => Ok(Self::Event),
            "content" => Ok(Self::Content),
            _ => Err(ValidationError::new(
                field,
                format!("must be one of {}", Self::NAMES),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Compact => "compact",
            Self::Event => "event",
            Self::Content => "content",
        }
    }

    pub fn is_standard(&self) -> bool {
        *self == Self::Standard
    }
}

#[derive(Serialize)]
struct Standard<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: String,
    payload: &'a RawValue,
}

#[derive(Serialize)]
struct Compact<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    payload: &'a RawValue,
}

#[derive(Serialize)]
struct EventShaped<'a> {
    id: &'a str,
    event: &'a str,
    payload: &'a RawValue,
}

#[derive(Serialize)]
struct Content<'a> {
    event_type: &'a str,
    content: &'a RawValue,
}

/// Serialises the standard delivery body of `event`, embedding the stored payload as it was
/// published.
pub fn envelope_body(event: &Event) -> Result<Vec<u8>, serde_json::Error> {
    delivery_body(event, PayloadFormat::Standard)
}

/// Serialises the delivery body of `event` in `format`. The payload is embedded byte for byte
/// as published, in every format.
pub fn delivery_body(event: &Event, format: PayloadFormat) -> Result<Vec<u8>, serde_json::Error> {
    let payload: &RawValue = serde_json::from_str(&event.payload)?;
    match format {
        PayloadFormat::Standard => serde_json::to_vec(&Standard {
            id: &event.id,
            event_type: &event.event_type,
            timestamp: event
                .created_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            payload,
        }),
        PayloadFormat::Compact => serde_json::to_vec(&Compact {
            id: &event.id,
            event_type: &event.event_type,
            payload,
        }),
        PayloadFormat::Event => serde_json::to_vec(&EventShaped {
            id: &event.id,
            event: &event.event_type,
            payload,
        }),
        PayloadFormat::Content => serde_json::to_vec(&Content {
            event_type: &event.event_type,
            content: payload,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn weight() -> Event {
        Event {
            id: "evt_1".into(),
            account_id: "acct_1".into(),
            event_type: "reading.weight".into(),
            payload: r#"{"weight":81.5,"manual":true}"#.into(),
            created_at: chrono::Utc.timestamp_millis_opt(1_700_000_000_123).unwrap(),
            deliveries: 1,
            fanned_out: true,
        }
    }

    #[test]
    fn envelope_keeps_the_payload_and_names_the_event() {
        let body: serde_json::Value =
            serde_json::from_slice(&envelope_body(&weight()).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "id": "evt_1",
                "type": "reading.weight",
                "timestamp": "2023-11-14T22:13:20.123Z",
                "payload": {"weight": 81.5, "manual": true}
            })
        );
    }

    #[test]
    fn each_format_has_exactly_its_fields_and_the_payload_as_published() {
        let event = weight();
        let body = |format| String::from_utf8(delivery_body(&event, format).unwrap()).unwrap();
        assert_eq!(
            body(PayloadFormat::Compact),
            r#"{"id":"evt_1","type":"reading.weight","payload":{"weight":81.5,"manual":true}}"#
        );
        assert_eq!(
            body(PayloadFormat::Event),
            r#"{"id":"evt_1","event":"reading.weight","payload":{"weight":81.5,"manual":true}}"#
        );
        assert_eq!(
            body(PayloadFormat::Content),
            r#"{"event_type":"reading.weight","content":{"weight":81.5,"manual":true}}"#
        );
        assert_eq!(
            PayloadFormat::parse("format", "content"),
            Ok(PayloadFormat::Content)
        );
        assert_eq!(
            PayloadFormat::parse("format", "Content").unwrap_err().field,
            "format"
        );
    }
}
