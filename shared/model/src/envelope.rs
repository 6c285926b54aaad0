//! The body every delivery POSTs: `{"id","type","timestamp","payload"}`.

use crate::types::Event;
use chrono::SecondsFormat;
use serde::Serialize;
use serde_json::value::RawValue;

#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: String,
    payload: &'a RawValue,
}

/// Serialises the delivery body of `event`, embedding the stored payload as it was published.
pub fn envelope_body(event: &Event) -> Result<Vec<u8>, serde_json::Error> {
    let payload: &RawValue = serde_json::from_str(&event.payload)?;
    serde_json::to_vec(&Envelope {
        id: &event.id,
        event_type: &event.event_type,
        timestamp: event
            .created_at
            .to_rfc3339_opts(SecondsFormat::Millis, true),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn envelope_keeps_the_payload_and_names_the_event() {
        let event = Event {
            id: "evt_1".into(),
            account_id: "acct_1".into(),
            event_type: "reading.weight".into(),
            payload: r#"{"weight":81.5,"manual":true}"#.into(),
            created_at: chrono::Utc.timestamp_millis_opt(1_700_000_000_123).unwrap(),
            deliveries: 1,
            fanned_out: true,
        };
        let body: serde_json::Value =
            serde_json::from_slice(&envelope_body(&event).unwrap()).unwrap();
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
}
