//! Realistic sample payloads for test events, shaped like Impilo's webhook payloads
//! (a weight reading: `id, readingTimestamp, weight, manual, patient, item, device, site`).

use serde_json::{Map, Value, json};

/// The test routes' reading kinds (`POST /test/<kind>-webhook`) and their event types.
pub const READING_TESTS: &[(&str, &str)] = &[
    ("blood-pressure", "reading.bloodPressure"),
    ("blood-glucose", "reading.bloodGlucose"),
    ("blood-oxygen", "reading.bloodOxygen"),
    ("weight", "reading.weight"),
    ("temperature", "reading.temperature"),
    ("ecg", "reading.ecg"),
];

/// The event type of a test route's reading kind.
pub fn reading_event_type(kind: &str) -> Option<&'static str> {
    READING_TESTS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, t)| *t)
}

/// A sample payload for `event_type` at `timestamp` (RFC 3339). The reading's measured values
/// and `patientId` can be given in `overrides` (Impilo's test body: `{patientId, systolic,
/// diastolic, heartRate}` for blood pressure); unknown types get a small generic payload.
pub fn sample_payload(event_type: &str, timestamp: &str, overrides: &Map<String, Value>) -> Value {
    let patient_id = overrides.get("patientId").cloned().unwrap_or(json!(1001));
    let patient = json!({
        "id": patient_id,
        "firstName": "Test",
        "lastName": "Patient",
        "dateOfBirth": "1970-01-01",
    });
    let device = |model: &str| json!({"id": 5001, "imei": "359000000000001", "model": model, "manufacturer": "Hookline Test Devices"});
    let site = json!({"id": 301, "name": "Test Clinic"});
    let measure = |defaults: Value| -> Map<String, Value> {
        let mut values = defaults.as_object().cloned().unwrap_or_default();
        for (name, value) in values.iter_mut() {
            if let Some(given) = overrides.get(name) {
                *value = given.clone();
            }
        }
        values
    };
    let reading = |values: Map<String, Value>, model: &str, item: &str| {
        let mut payload = Map::new();
        payload.insert("id".into(), json!(900001));
        payload.insert("readingTimestamp".into(), json!(timestamp));
        payload.extend(values);
        payload.insert("manual".into(), json!(false));
        payload.insert("patient".into(), patient.clone());
        payload.insert("item".into(), json!({"id": 7001, "name": item}));
        payload.insert("device".into(), device(model));
        payload.insert("site".into(), site.clone());
        Value::Object(payload)
    };
    match event_type {
        "reading.bloodPressure" => reading(
            measure(json!({"systolic": 120, "diastolic": 80, "heartRate": 72})),
            "BP-800",
            "Blood pressure monitor",
        ),
        "reading.bloodGlucose" => reading(
            measure(json!({"glucose": 105, "unit": "mg/dL", "mealContext": "fasting"})),
            "GL-200",
            "Glucometer",
        ),
        "reading.bloodOxygen" => reading(
            measure(json!({"spo2": 97, "heartRate": 68})),
            "OX-100",
            "Pulse oximeter",
        ),
        "reading.weight" => reading(
            measure(json!({"weight": 72.4, "unit": "kg"})),
            "SC-300",
            "Weight scale",
        ),
        "reading.temperature" => reading(
            measure(json!({"temperature": 36.8, "unit": "C"})),
            "TH-50",
            "Thermometer",
        ),
        "reading.ecg" => reading(
            measure(
                json!({"heartRate": 64, "durationSeconds": 30, "classification": "sinusRhythm"}),
            ),
            "EC-12",
            "ECG monitor",
        ),
        "patient.created" | "patient.updated" => patient,
        "order.status" => json!({"orderId": 440001, "event": "shipped"}),
        "order.statusFull" => json!({
            "id": 440001, "status": "shipped", "patient": patient,
            "items": [{"id": 7001, "name": "Weight scale", "quantity": 1}],
            "trackingNumber": "1Z999AA10123456784",
        }),
        "return.status" => json!({"returnId": 550001, "event": "received"}),
        "return.statusFull" => json!({
            "id": 550001, "status": "received", "patient": patient,
            "items": [{"id": 7001, "name": "Weight scale", "quantity": 1}],
        }),
        "device.lowBattery" | "device.weakSignal" => json!({
            "device": device("SC-300"), "patient": patient, "timestamp": timestamp,
        }),
        "device.associationCreated" | "device.associationRemoved" => json!({
            "device": device("SC-300"), "patient": patient, "timestamp": timestamp,
        }),
        "supportTicket.event" => json!({
            "ticketId": 660001, "event": "created", "subject": "Test ticket", "patient": patient,
        }),
        // The shape Hookline's own operational events have.
        "hookline.webhook.disabled" | "hookline.webhook.enabled" => json!({
            "accountId": "acct_test", "webhookId": "wh_test", "reason": "a test event",
            "at": timestamp,
        }),
        "hookline.delivery.exhausted" => json!({
            "accountId": "acct_test", "webhookId": "wh_test", "deliveryId": "dlv_test",
            "reason": "a test event", "at": timestamp,
        }),
        _ => json!({"test": true, "type": event_type, "timestamp": timestamp}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weight_reading_has_impilos_fields() {
        let payload = sample_payload("reading.weight", "2026-01-01T00:00:00Z", &Map::new());
        for field in [
            "id",
            "readingTimestamp",
            "weight",
            "manual",
            "patient",
            "item",
            "device",
            "site",
        ] {
            assert!(payload.get(field).is_some(), "{field} missing");
        }
    }

    #[test]
    fn given_values_replace_the_sample_ones() {
        let overrides =
            json!({"patientId": 1, "systolic": 140, "diastolic": 90, "heartRate": 100, "bogus": 1});
        let payload = sample_payload(
            "reading.bloodPressure",
            "2026-01-01T00:00:00Z",
            overrides.as_object().unwrap(),
        );
        assert_eq!(payload["systolic"], 140);
        assert_eq!(payload["diastolic"], 90);
        assert_eq!(payload["heartRate"], 100);
        assert_eq!(payload["patient"]["id"], 1);
        assert!(payload.get("bogus").is_none());
        assert_eq!(reading_event_type("ecg"), Some("reading.ecg"));
        assert_eq!(reading_event_type("ekg"), None);
    }
}
