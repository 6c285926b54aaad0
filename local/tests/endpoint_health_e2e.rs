//! End to end: auto-disable (issue 15 item 1). A webhook whose attempts all fail for
//! `HOOKLINE_DISABLE_AFTER`, at least `HOOKLINE_DISABLE_MIN_FAILURES` of them, is switched off
//! with its reason and time, the platform is told, and switching it on clears them; a success
//! ends a run of failures. Real `hookline serve`, receivers on 127.0.0.1.

mod common;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

/// A receiver answering whatever status the test sets, counting the requests it gets.
struct Switchable {
    url: String,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
}

async fn switchable(status: u16) -> Switchable {
    let status = Arc::new(AtomicU16::new(status));
    let hits = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State((status, hits)): State<(Arc<AtomicU16>, Arc<AtomicUsize>)>| async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap()
                },
            ),
        )
        .with_state((status.clone(), hits.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Switchable { url, status, hits }
}

/// A new webhook of `reading.weight` events to `url`; its id.
async fn weight_webhook(http: &reqwest::Client, server: &Server, key: &str, url: &str) -> String {
    let body = json!({"url": url, "type": "reading.weight"});
    new_webhook(http, server, key, body).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn webhook(http: &reqwest::Client, server: &Server, key: &str, id: &str) -> Value {
    let (status, body) = call(
        http,
        "GET",
        server.api(&format!("/webhook/{id}")),
        Some(key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls the webhook until `done` holds, for `within` at most.
async fn webhook_until(
    http: &reqwest::Client,
    server: &Server,
    key: &str,
    id: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let end = tokio::time::Instant::now() + within;
    loop {
        let body = webhook(http, server, key, id).await;
        if done(&body) || tokio::time::Instant::now() > end {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes one event (to a failing endpoint) and waits until its webhook shows a run.
async fn fail_once(
    http: &reqwest::Client,
    server: &Server,
    account: &str,
    key: &str,
    id: &str,
) -> Value {
    publish(http, server, account).await;
    let failing = webhook_until(http, server, key, id, Duration::from_secs(10), |w| {
        w.get("failingSince").is_some()
    })
    .await;
    assert!(failing.get("failingSince").is_some(), "{failing}");
    failing
}

async fn publish(http: &reqwest::Client, server: &Server, account: &str) {
    let (status, body) = call(
        http,
        "POST",
        server.api("/events"),
        Some(ADMIN_KEY),
        Some(json!({"accountId": account, "type": "reading.weight", "payload": {"kg": 70}})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
}

fn time_of(body: &Value, field: &str) -> chrono::DateTime<chrono::Utc> {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {body}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_webhook_failing_long_enough_is_switched_off_with_its_reason_and_on_again_by_patch() {
    let dir = temp_dir("endpoint-health");
    let (ops_url, mut ops_rx) = receiver().await;
    let ops_secret = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=".to_string();
    let env = [
        ("HOOKLINE_RETRY_SCHEDULE", "1s"),
        ("HOOKLINE_DISABLE_AFTER", "2s"),
        ("HOOKLINE_DISABLE_MIN_FAILURES", "3"),
        ("HOOKLINE_OPERATIONAL_WEBHOOK_URL", ops_url.as_str()),
        ("HOOKLINE_OPERATIONAL_WEBHOOK_SECRET", ops_secret.as_str()),
    ];
    let server = Server::start_with_env(&dir, &env);
    let http = reqwest::Client::new();
    let (account, key) = new_account(&http, &server, "Health Clinic").await;
    let flaky = switchable(500).await;
    let healthy = switchable(200).await;
    let flaky_id = weight_webhook(&http, &server, &key, &flaky.url).await;
    let healthy_id = weight_webhook(&http, &server, &key, &healthy.url).await;
    let fresh = webhook(&http, &server, &key, &flaky_id).await;
    for field in ["failingSince", "disabledReason", "disabledAt"] {
        assert!(
            fresh.get(field).is_none(),
            "a new webhook is healthy: {fresh}"
        );
    }

    // A failure starts a run of failures; a success ends it.
    fail_once(&http, &server, &account, &key, &flaky_id).await;
    // A new URL is a new endpoint: its run starts afresh.
    let (status, moved) = call(
        &http,
        "PATCH",
        server.api(&format!("/webhook/{flaky_id}")),
        Some(&key),
        Some(json!({"url": format!("{}?moved=1", flaky.url)})),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    assert!(moved.get("failingSince").is_none(), "{moved}");
    let failing = fail_once(&http, &server, &account, &key, &flaky_id).await;
    // Past the interval between two looks at one webhook (a tenth of the limit here).
    tokio::time::sleep(Duration::from_millis(300)).await;
    flaky.status.store(200, Ordering::SeqCst);
    publish(&http, &server, &account).await;
    let recovered = webhook_until(
        &http,
        &server,
        &key,
        &flaky_id,
        Duration::from_secs(10),
        |w| w.get("failingSince").is_none(),
    )
    .await;
    assert!(recovered.get("failingSince").is_none(), "{recovered}");
    assert_eq!(recovered["active"], true);

    // Failing again (a second later: the API shows whole seconds): switched off once every
    // attempt has failed for 2 s, 3 or more of them.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    flaky.status.store(500, Ordering::SeqCst);
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut since = None;
    let disabled = loop {
        publish(&http, &server, &account).await;
        let now = webhook(&http, &server, &key, &flaky_id).await;
        if now["active"] == false {
            break now;
        }
        if now.get("failingSince").is_some() {
            since = Some(time_of(&now, "failingSince"));
        }
        assert!(
            tokio::time::Instant::now() < end,
            "never switched off: {now}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let since = since.expect("the run showed before the switch-off");
    assert!(disabled.get("failingSince").is_none(), "{disabled}");
    let at = time_of(&disabled, "disabledAt");
    assert!(
        at - since >= chrono::Duration::seconds(2),
        "switched off {} after the run began, before HOOKLINE_DISABLE_AFTER",
        at - since
    );
    assert!(
        since > time_of(&failing, "failingSince"),
        "the success ended the first run; this one began after it: {disabled}"
    );
    let reason = disabled["disabledReason"].as_str().unwrap();
    assert!(
        reason.starts_with("every attempt failed since ") && reason.contains("in a row"),
        "{reason}"
    );
    // The platform is told, with the same reason.
    let told = loop {
        let hit = tokio::time::timeout(Duration::from_secs(15), ops_rx.recv())
            .await
            .expect("hookline.webhook.disabled reached the operational webhook")
            .unwrap();
        let body: Value = serde_json::from_str(&hit.body).unwrap();
        if body["type"] == "hookline.webhook.disabled" {
            assert!(signature_is_valid(&ops_secret, &hit.headers, &hit.body));
            break body;
        }
    };
    assert_eq!(
        (&told["payload"]["webhookId"], &told["payload"]["reason"]),
        (&json!(flaky_id), &json!(reason))
    );
    // Switched off, it is sent nothing more; the healthy webhook of the same events is on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let hits = flaky.hits.load(Ordering::SeqCst);
    publish(&http, &server, &account).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        flaky.hits.load(Ordering::SeqCst),
        hits,
        "nothing sent once off"
    );
    let other = webhook(&http, &server, &key, &healthy_id).await;
    assert_eq!(other["active"], true);
    assert!(other.get("failingSince").is_none(), "{other}");
    assert!(healthy.hits.load(Ordering::SeqCst) >= 3);

    // Switched on again by PATCH: the reason, the time and the run are gone.
    let (status, body) = call(
        &http,
        "PATCH",
        server.api(&format!("/webhook/{flaky_id}")),
        Some(&key),
        Some(json!({"active": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for field in ["failingSince", "disabledReason", "disabledAt"] {
        assert!(body.get(field).is_none(), "{field} cleared: {body}");
    }
    let again = webhook(&http, &server, &key, &flaky_id).await;
    assert_eq!(again["active"], true);
    assert!(again.get("disabledReason").is_none(), "{again}");
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_410_switches_a_webhook_off_with_its_own_reason() {
    let dir = temp_dir("endpoint-gone");
    let server = Server::start(&dir);
    let http = reqwest::Client::new();
    let (account, key) = new_account(&http, &server, "Gone Clinic").await;
    let gone = switchable(410).await;
    let id = weight_webhook(&http, &server, &key, &gone.url).await;
    publish(&http, &server, &account).await;
    let off = webhook_until(&http, &server, &key, &id, Duration::from_secs(10), |w| {
        w["active"] == false
    })
    .await;
    assert_eq!(off["active"], false, "{off}");
    assert_eq!(off["disabledReason"], "the endpoint answered 410 Gone");
    assert!(chrono_like(off["disabledAt"].as_str().unwrap()), "{off}");
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
