//! End to end: operational events (`hookline.webhook.disabled`, `hookline.webhook.enabled`,
//! `hookline.delivery.exhausted`) reach the platform's operational webhook, signed with its
//! own secret, and the account's webhooks that subscribe to `hookline.*`; never an event about
//! a delivery of an operational event. Real `hookline serve`, receivers on 127.0.0.1.

mod common;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

/// A receiver that answers every request with `status` and hands it to the test.
async fn answering(status: u16) -> (String, UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State((tx, status)): State<(UnboundedSender<Received>, u16)>,
                 headers: HeaderMap,
                 body: String| async move {
                    let _ = tx.send(Received { headers, body });
                    StatusCode::from_u16(status).unwrap()
                },
            ),
        )
        .with_state((tx, status));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

/// The bodies that arrive until nothing comes for `quiet`, or for 10 s at most (a loop of
/// events about events would never go quiet).
async fn drain(rx: &mut UnboundedReceiver<Received>, quiet: Duration) -> Vec<(HeaderMap, Value)> {
    let mut out = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(hit)) = tokio::time::timeout(quiet, rx.recv()).await {
        out.push((hit.headers, serde_json::from_str(&hit.body).unwrap()));
        if tokio::time::Instant::now() > end {
            break;
        }
    }
    out
}

/// Waits for the next delivery of an event of `event_type` (others are skipped).
async fn next_of(
    rx: &mut UnboundedReceiver<Received>,
    event_type: &str,
) -> (HeaderMap, String, Value) {
    loop {
        let hit = tokio::time::timeout(Duration::from_secs(15), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {event_type} arrived"))
            .unwrap();
        let body: Value = serde_json::from_str(&hit.body).unwrap();
        if body["type"] == event_type {
            return (hit.headers, hit.body, body);
        }
    }
}

fn secret() -> String {
    let bytes: Vec<u8> = (0..32u8)
        .map(|b| b.wrapping_mul(37).wrapping_add(11))
        .collect();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// PATCHes the webhook at `path` to `active`, answered 200.
async fn set_active(http: &reqwest::Client, path: &str, key: &str, active: bool) {
    let (status, body) = call(
        http,
        "PATCH",
        path,
        Some(key),
        Some(json!({ "active": active })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn publish(http: &reqwest::Client, server: &Server, account: &str, event_type: &str) {
    let (status, body) = call(
        http,
        "POST",
        server.api("/events"),
        Some(ADMIN_KEY),
        Some(json!({"accountId": account, "type": event_type, "payload": {"patientId": 7}})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test]
async fn operational_events_reach_the_platform_and_subscribed_webhooks_without_loops() {
    let dir = temp_dir("operational");
    let ops_secret = secret();
    let (ops_url, mut ops_rx) = answering(200).await;
    let env = [
        ("HOOKLINE_RETRY_SCHEDULE", "1s"),
        ("HOOKLINE_OPERATIONAL_WEBHOOK_URL", ops_url.as_str()),
        ("HOOKLINE_OPERATIONAL_WEBHOOK_SECRET", ops_secret.as_str()),
    ];
    let server = Server::start_with_env(&dir, &env);
    let http = reqwest::Client::new();
    let (account, key) = new_account(&http, &server, "Ops Clinic").await;

    let (failing_url, _failing_rx) = answering(500).await;
    let (gone_url, _gone_rx) = answering(410).await;
    let (own_url, mut own_rx) = answering(200).await;
    let (broken_ops_url, mut broken_ops_rx) = answering(500).await;
    let (catch_all_url, mut catch_all_rx) = answering(200).await;
    let failing = new_webhook(
        &http,
        &server,
        &key,
        json!({"url": failing_url, "type": "reading.weight"}),
    )
    .await;
    let gone = new_webhook(
        &http,
        &server,
        &key,
        json!({"url": gone_url, "type": "patient.created"}),
    )
    .await;
    // The account's own listeners: one healthy, one that fails every operational event.
    new_webhook(
        &http,
        &server,
        &key,
        json!({"url": own_url, "type": "hookline.*"}),
    )
    .await;
    new_webhook(&http, &server, &key, json!({"url": broken_ops_url, "events": ["hookline.delivery.exhausted", "hookline.webhook.disabled", "hookline.webhook.enabled"]})).await;
    // Operational events are opt-in: `*` is not sent them.
    new_webhook(
        &http,
        &server,
        &key,
        json!({"url": catch_all_url, "type": "*"}),
    )
    .await;
    let failing_id = failing["id"].as_str().unwrap();
    let gone_id = gone["id"].as_str().unwrap();

    // 1. A delivery fails both of its attempts (schedule "1s"): exhausted.
    publish(&http, &server, &account, "reading.weight").await;
    let (headers, raw, body) = next_of(&mut ops_rx, "hookline.delivery.exhausted").await;
    assert!(
        signature_is_valid(&ops_secret, &headers, &raw),
        "signed with the operational secret"
    );
    let data = &body["payload"];
    assert_eq!(
        (&data["accountId"], &data["webhookId"]),
        (&json!(account), &json!(failing_id))
    );
    assert!(
        data["deliveryId"].as_str().unwrap().starts_with("dlv_"),
        "{data}"
    );
    assert_eq!(
        data["reason"],
        "the last scheduled attempt failed: the endpoint answered 500"
    );
    assert!(chrono_like(data["at"].as_str().unwrap()), "{data}");
    let (_, _, own) = next_of(&mut own_rx, "hookline.delivery.exhausted").await;
    assert_eq!(own["payload"], *data, "the account gets the same event");
    let (status, logs) = call(
        &http,
        "GET",
        server.api(&format!("/webhook/logs?webhookId={failing_id}")),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(
        (status, &logs["content"][0]["status"]),
        (200, &json!("failed")),
        "the user's outcome is recorded"
    );

    // 2. A 410 deactivates a webhook: disabled.
    publish(&http, &server, &account, "patient.created").await;
    let (_, _, body) = next_of(&mut ops_rx, "hookline.webhook.disabled").await;
    assert_eq!(body["payload"]["webhookId"], gone_id);
    assert_eq!(body["payload"]["reason"], "the endpoint answered 410 Gone");
    next_of(&mut own_rx, "hookline.webhook.disabled").await;
    // The event is stored just before the attempt that deactivates (so neither is lost): the
    // webhook reads inactive a moment later at most.
    let mut active = true;
    for _ in 0..50 {
        let (_, stored) = call(
            &http,
            "GET",
            server.api(&format!("/webhook/{gone_id}")),
            Some(&key),
            None,
        )
        .await;
        active = stored["active"] == true;
        if !active {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!active, "the 410 deactivated the webhook");

    // 3. Switching it back on: enabled (a PATCH that changes nothing tells nothing).
    let path = server.api(&format!("/webhook/{gone_id}"));
    set_active(&http, &path, &key, true).await;
    set_active(&http, &path, &key, true).await;
    let (_, _, body) = next_of(&mut ops_rx, "hookline.webhook.enabled").await;
    assert_eq!(
        (&body["payload"]["webhookId"], &body["payload"]["reason"]),
        (&json!(gone_id), &json!("switched on by PATCH"))
    );
    assert!(body["payload"].get("deliveryId").is_none(), "{body}");
    next_of(&mut own_rx, "hookline.webhook.enabled").await;

    // The listener that fails got all three, twice each (its schedule), and its own
    // exhausted deliveries of them told nobody: no further event anywhere.
    let broken = drain(&mut broken_ops_rx, Duration::from_secs(3)).await;
    assert_eq!(
        broken.len(),
        6,
        "{:?}",
        broken.iter().map(|(_, b)| &b["type"]).collect::<Vec<_>>()
    );
    assert!(drain(&mut ops_rx, Duration::from_secs(1)).await.is_empty());
    let caught: Vec<Value> = drain(&mut catch_all_rx, Duration::from_millis(200))
        .await
        .into_iter()
        .map(|(_, body)| body["type"].clone())
        .collect();
    assert_eq!(caught, [json!("reading.weight"), json!("patient.created")]);
    assert!(
        drain(&mut own_rx, Duration::from_millis(200))
            .await
            .is_empty()
    );
    server.stop();

    // A restart with another URL moves the operational webhook there (and only there).
    let (new_ops_url, mut new_ops_rx) = answering(200).await;
    let env = [
        ("HOOKLINE_RETRY_SCHEDULE", "1s"),
        ("HOOKLINE_OPERATIONAL_WEBHOOK_URL", new_ops_url.as_str()),
        ("HOOKLINE_OPERATIONAL_WEBHOOK_SECRET", ops_secret.as_str()),
    ];
    let server = Server::start_with_env(&dir, &env);
    let path = server.api(&format!("/webhook/{gone_id}"));
    set_active(&http, &path, &key, false).await;
    set_active(&http, &path, &key, true).await;
    let (headers, raw, _) = next_of(&mut new_ops_rx, "hookline.webhook.enabled").await;
    assert!(signature_is_valid(&ops_secret, &headers, &raw));
    assert!(
        drain(&mut ops_rx, Duration::from_millis(500))
            .await
            .is_empty()
    );
    server.stop();

    // Without the configuration the platform's webhook is switched off: nothing is sent.
    let server = Server::start_with_env(&dir, &[("HOOKLINE_RETRY_SCHEDULE", "1s")]);
    let path = server.api(&format!("/webhook/{gone_id}"));
    set_active(&http, &path, &key, false).await;
    set_active(&http, &path, &key, true).await;
    next_of(&mut own_rx, "hookline.webhook.enabled").await;
    assert!(
        drain(&mut new_ops_rx, Duration::from_millis(500))
            .await
            .is_empty()
    );
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_bad_operational_configuration_stops_the_start_naming_the_variable() {
    let dir = temp_dir("operational-bad");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookline"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("HOOKLINE_ADMIN_KEY", ADMIN_KEY)
        .env("HOOKLINE_OPERATIONAL_WEBHOOK_URL", "http://127.0.0.1:9/ops")
        .env(
            "HOOKLINE_OPERATIONAL_WEBHOOK_SECRET",
            "whsec_short-and-secret",
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("HOOKLINE_OPERATIONAL_WEBHOOK_SECRET"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("short-and-secret"),
        "the secret is never echoed: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
