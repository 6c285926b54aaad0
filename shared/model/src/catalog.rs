//! The built-in event-type catalog (Impilo's, DESIGN.md section 2) and subscription patterns.

use crate::error::ValidationError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventTypeInfo {
    pub name: String,
    pub description: String,
}

/// Event types every deployment knows, with their descriptions.
pub const BUILT_IN_EVENT_TYPES: &[(&str, &str)] = &[
    ("patient.created", "A new patient was created."),
    ("patient.updated", "A patient's details were updated."),
    (
        "reading.bloodPressure",
        "A reading of blood pressure was taken.",
    ),
    (
        "reading.bloodGlucose",
        "A reading of blood glucose was taken.",
    ),
    (
        "reading.bloodOxygen",
        "A reading of blood oxygen was taken.",
    ),
    ("reading.weight", "A body weight reading was taken."),
    (
        "reading.temperature",
        "A body temperature reading was taken.",
    ),
    ("reading.ecg", "An ECG reading was taken."),
    (
        "order.status",
        "An order status event occurred. The payload only includes order id and order event type.",
    ),
    (
        "order.statusFull",
        "An order status event occurred. The payload includes the full order model.",
    ),
    ("return.status", "A return status event was triggered."),
    (
        "return.statusFull",
        "A return status event was triggered. The payload includes the full return model.",
    ),
    ("device.lowBattery", "A device sent a low battery signal."),
    ("device.weakSignal", "A device sent a weak signal."),
    (
        "device.associationCreated",
        "A patient-device association was created.",
    ),
    (
        "device.associationRemoved",
        "A patient-device association was removed.",
    ),
    ("supportTicket.event", "A support ticket event took place."),
    (
        "ping",
        "A ping, sent on request to check an endpoint (POST /webhook-events {webhook, event: \"ping\"}).",
    ),
    (
        "hookline.webhook.disabled",
        "Hookline deactivated one of the account's webhooks (for example its endpoint answered 410).",
    ),
    (
        "hookline.webhook.enabled",
        "One of the account's webhooks was switched on again.",
    ),
    (
        "hookline.delivery.exhausted",
        "A delivery failed its last scheduled attempt.",
    ),
];

/// The namespace of Hookline's own operational events.
pub const OPERATIONAL_NAMESPACE: &str = "hookline";

/// Whether `event_type` is one of Hookline's own operational events.
pub fn is_operational(event_type: &str) -> bool {
    event_type
        .strip_prefix(OPERATIONAL_NAMESPACE)
        .is_some_and(|rest| rest.starts_with('.'))
}

pub fn is_built_in(name: &str) -> bool {
    BUILT_IN_EVENT_TYPES.iter().any(|(n, _)| *n == name)
}

/// The event types a deployment knows: the built-in ones and those the platform registered.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    registered: Vec<EventTypeInfo>,
}

impl Catalog {
    pub fn new(registered: Vec<EventTypeInfo>) -> Self {
        Self { registered }
    }

    pub fn contains(&self, name: &str) -> bool {
        is_built_in(name) || self.registered.iter().any(|t| t.name == name)
    }

    /// Whether `namespace.*` matches at least one known type.
    pub fn has_namespace(&self, namespace: &str) -> bool {
        let prefix = format!("{namespace}.");
        BUILT_IN_EVENT_TYPES
            .iter()
            .any(|(n, _)| n.starts_with(&prefix))
            || self.registered.iter().any(|t| t.name.starts_with(&prefix))
    }

    /// Built-in types first, then registered ones.
    pub fn all(&self) -> Vec<EventTypeInfo> {
        BUILT_IN_EVENT_TYPES
            .iter()
            .map(|(name, description)| EventTypeInfo {
                name: name.to_string(),
                description: description.to_string(),
            })
            .chain(self.registered.iter().cloned())
            .collect()
    }
}

/// Event type names: `segment(.segment)*`, segments of letters, digits, `_` and `-`
/// (so `survey_finished` and `medical-encounters.created` are fine), at most 128 bytes.
pub fn validate_event_type_name(field: &str, name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!(
                "'{name}' is not a valid event type name (dot-separated segments of letters, digits, '_' or '-')"
            ),
        ))
    }
}

/// What a webhook subscribes to: one type, a namespace wildcard (`reading.*`) or everything (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPattern {
    All,
    Namespace(String),
    Exact(String),
}

impl EventPattern {
    /// Parses a subscription, accepting only names the catalog knows, wildcards over a
    /// namespace that has at least one known type, and `*`.
    pub fn parse(field: &str, raw: &str, catalog: &Catalog) -> Result<Self, ValidationError> {
        if raw == "*" {
            return Ok(Self::All);
        }
        if let Some(namespace) = raw.strip_suffix(".*") {
            validate_event_type_name(field, namespace)?;
            if !catalog.has_namespace(namespace) {
                return Err(ValidationError::new(
                    field,
                    format!("no known event type matches '{raw}'"),
                ));
            }
            return Ok(Self::Namespace(namespace.to_string()));
        }
        validate_event_type_name(field, raw)?;
        if !catalog.contains(raw) {
            return Err(ValidationError::new(
                field,
                format!("unknown event type '{raw}' (see GET /api/v3/webhook/types)"),
            ));
        }
        Ok(Self::Exact(raw.to_string()))
    }

    pub fn matches(&self, event_type: &str) -> bool {
        match self {
            // Operational events are opt-in: a catch-all endpoint is not sent Hookline's own
            // events about it (nor doubled failures when it is the one failing).
            Self::All => !is_operational(event_type),
            Self::Namespace(ns) => event_type
                .strip_prefix(ns.as_str())
                .is_some_and(|rest| rest.starts_with('.')),
            Self::Exact(name) => name == event_type,
        }
    }
}

/// Whether any of a webhook's subscriptions (as stored strings) matches `event_type`.
pub fn subscriptions_match(subscriptions: &[String], event_type: &str) -> bool {
    subscriptions.iter().any(|s| {
        if s == "*" {
            EventPattern::All.matches(event_type)
        } else if let Some(ns) = s.strip_suffix(".*") {
            EventPattern::Namespace(ns.to_string()).matches(event_type)
        } else {
            s == event_type
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_accept_known_names_and_wildcards_only() {
        let catalog = Catalog::new(vec![EventTypeInfo {
            name: "medical-encounters.created".into(),
            description: "registered".into(),
        }]);
        let p = |raw: &str| EventPattern::parse("events[0]", raw, &catalog);
        assert_eq!(p("*").unwrap(), EventPattern::All);
        assert_eq!(
            p("reading.*").unwrap(),
            EventPattern::Namespace("reading".into())
        );
        assert_eq!(
            p("patient.created").unwrap(),
            EventPattern::Exact("patient.created".into())
        );
        assert!(p("patient.deleted").is_err());
        assert!(p("nothing.*").is_err());
        assert!(p("reading..weight").is_err());
        assert_eq!(p("").unwrap_err().field, "events[0]");
        assert!(p("medical-encounters.created").is_ok());
        assert!(p("medical-encounters.*").is_ok());
        assert!(p("medical-encounters.updated").is_err());
        assert!(!Catalog::default().contains("medical-encounters.created"));
    }

    #[test]
    fn wildcards_match_within_their_namespace() {
        let subs = vec!["reading.*".to_string()];
        assert!(subscriptions_match(&subs, "reading.weight"));
        assert!(!subscriptions_match(&subs, "readings.weight"));
        assert!(!subscriptions_match(&subs, "patient.created"));
        assert!(subscriptions_match(&["*".to_string()], "anything.at.all"));
        // Operational events only by name or `hookline.*`.
        assert!(!subscriptions_match(
            &["*".to_string()],
            "hookline.delivery.exhausted"
        ));
        assert!(subscriptions_match(
            &["hookline.*".to_string()],
            "hookline.delivery.exhausted"
        ));
        assert!(!subscriptions_match(
            &["hookline.*".to_string()],
            "hooklinex.a"
        ));
        assert!(subscriptions_match(
            &["order.status".to_string()],
            "order.status"
        ));
        assert!(!subscriptions_match(
            &["order.status".to_string()],
            "order.statusFull"
        ));
    }
}
