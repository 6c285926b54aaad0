//! Ping: checks a webhook endpoint answers `{"pong":"<same>"}` to `{"ping":"<random>"}`.

use crate::{Service, ServiceResult};
use hookline_model::keys::random_token;
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

impl Service {
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
