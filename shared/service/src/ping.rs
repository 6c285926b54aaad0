//! Ping: checks a webhook endpoint answers `{"pong":"<same>"}` to `{"ping":"<random>"}`.

use crate::{Service, ServiceResult};
use hookline_model::envelope::delivery_body;
use hookline_model::keys::random_token;
use hookline_model::{Event, ids};
use serde::Serialize;

/// What a ping found out.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PingResult {
    /// True when the endpoint answered 2xx with `{"pong":"<the ping>"}`.
    pub ok: bool,
    /// The endpoint's HTTP status, when it answered.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// Why it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A ping event sent to one webhook (the organization-style guide's `{webhook, event: "ping"}`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PingEvent {
    /// The event's id: the body's `id` and the `webhook-id` header.
    pub id: String,
    pub webhook: String,
    #[schema(example = "ping")]
    pub event: String,
    /// True when the endpoint answered 2xx.
    pub delivered: bool,
    /// The endpoint's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why it was not delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The type of ping events (built into the catalog).
pub const PING_EVENT_TYPE: &str = "ping";

impl Service {
    /// Sends one `ping` event to one webhook now, in the webhook's body format and signed
    /// like a delivery, and reports what the endpoint answered. Like [`Service::ping`], it is
    /// not stored nor retried (it is a check the caller watches), and it works on inactive
    /// webhooks too.
    pub async fn send_ping_event(
        &self,
        account_id: &str,
        webhook_id: &str,
    ) -> ServiceResult<PingEvent> {
        let webhook = self.get_webhook(account_id, webhook_id).await?;
        let account = self.ports.store.get_account(account_id).await?;
        let now = self.ports.clock.now();
        let event = Event {
            id: ids::new_id(ids::EVENT, now),
            account_id: account_id.to_string(),
            event_type: PING_EVENT_TYPE.to_string(),
            payload: serde_json::json!({ "webhook": webhook.id }).to_string(),
            created_at: now,
            deliveries: 1,
            fanned_out: true,
        };
        let body = delivery_body(&event, webhook.request.format)
            .expect("a payload serialised here is JSON");
        let request = self.signed_request(&webhook, account.as_ref(), &event.id, body, now);
        let outcome = self.ports.sender.send(request).await;
        let error = match (&outcome.error, outcome.status) {
            (Some((kind, message)), _) => Some(format!("{}: {message}", kind.as_str())),
            (None, Some(status)) if !(200..300).contains(&status) => {
                Some(format!("the endpoint answered {status}"))
            }
            _ => None,
        };
        Ok(PingEvent {
            id: event.id,
            webhook: webhook.id,
            event: PING_EVENT_TYPE.to_string(),
            delivered: outcome.is_success(),
            status: outcome.status,
            error,
        })
    }

    /// Pings a webhook now, signed like a delivery (it works on inactive webhooks too, so an
    /// endpoint can be checked before it is switched on).
    pub async fn ping(&self, account_id: &str, webhook_id: &str) -> ServiceResult<PingResult> {
        let webhook = self.get_webhook(account_id, webhook_id).await?;
        let account = self.ports.store.get_account(account_id).await?;
        let challenge = random_token();
        let body = serde_json::to_vec(&serde_json::json!({ "ping": challenge }))
            .expect("a JSON object serialises");
        let now = self.ports.clock.now();
        let request = self.signed_request(
            &webhook,
            account.as_ref(),
            &format!("ping_{challenge}"),
            body,
            now,
        );
        let outcome = self.ports.sender.send(request).await;
        let pong = outcome
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
            .and_then(|v| v.get("pong").and_then(|p| p.as_str()).map(String::from));
        let error = match (&outcome.error, outcome.status) {
            (Some((kind, message)), _) => Some(format!("{}: {message}", kind.as_str())),
            (None, Some(status)) if !(200..300).contains(&status) => {
                Some(format!("the endpoint answered {status}"))
            }
            _ if pong.as_deref() != Some(challenge.as_str()) => Some(format!(
                "expected the body {{\"pong\":\"{challenge}\"}}, got {}",
                outcome
                    .body
                    .as_deref()
                    .map(|b| b.chars().take(200).collect::<String>())
                    .unwrap_or_else(|| "nothing".into())
            )),
            _ => None,
        };
        Ok(PingResult {
            ok: error.is_none(),
            status: outcome.status,
            latency_ms: outcome.duration.as_millis() as u64,
            error,
        })
    }
}
