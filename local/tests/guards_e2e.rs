//! End to end: the guards around what customers can make Hookline do or see. SSRF refusals
//! that do not reveal addresses, the cap on signing secrets kept through rotations, and the
//! rate limit on pings and test events; against the real `hookline serve` and receivers on
//! 127.0.0.1.

mod common;

use axum::Router;
use axum::routing::post;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc;

/// A receiver that answers every ping with its pong, and counts the requests it gets.
async fn pong_receiver() -> (String, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let tx = tx.clone();
            async move {
                let ping = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("ping").cloned());
                let _ = tx.send(Received { headers, body });
                axum::Json(json!({ "pong": ping }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

fn assert_hides_addresses(text: &str, port: &str) {
    for address in ["127.0.0.1", "::1", "localhost", "2130706433", port] {
        assert!(
            !text.contains(address),
            "a customer-facing message reveals {address}: {text}"
        );
    }
}

/// Webhooks made while private targets were allowed, served again with them refused: the
/// ping result and the delivery log say the target is not allowed, never what the name
/// resolves to; create and PATCH refuse such targets the same way.
#[tokio::test(flavor = "multi_thread")]
async fn refused_targets_are_reported_without_their_addresses() {
    let data_dir = temp_dir("guards-ssrf");
    let http = reqwest::Client::new();
    let (url, mut received) = pong_receiver().await;
    let port = url.rsplit(':').next().unwrap().trim_end_matches("/hook");
    let by_name = url.replace("127.0.0.1", "localhost");

    let server = Server::start(&data_dir);
    let (account_id, key) = new_account(&http, &server, "Rebinding Clinic").await;
    let named = new_webhook(
        &http,
        &server,
        &key,
        json!({"type": "patient.created", "url": by_name}),
    )
    .await;
    let literal = new_webhook(
        &http,
        &server,
        &key,
        json!({"type": "patient.updated", "url": url}),
    )
    .await;
    server.stop();

    let server = Server::start_with_env(
        &data_dir,
        &[
            ("HOOKLINE_ALLOW_PRIVATE_TARGETS", "false"),
            ("HOOKLINE_RETRY_SCHEDULE", ""),
        ],
    );
    for webhook in [&named, &literal] {
        let (status, ping) = call(
            &http,
            "POST",
            server.api(&format!(
                "/webhook/{}/ping",
                webhook["id"].as_str().unwrap()
            )),
            Some(&key),
            None,
        )
        .await;
        assert_eq!(status, 200, "{ping}");
        assert_eq!(ping["ok"], false, "{ping}");
        let error = ping["error"].as_str().unwrap();
        assert!(error.contains("not allowed"), "{error}");
        assert_hides_addresses(error, port);
    }

    // A delivery to the name: one attempt (no retries configured), refused.
    let (status, published) = call(
        &http,
        "POST",
        server.api("/events"),
        Some(ADMIN_KEY),
        Some(json!({"accountId": account_id, "type": "patient.created", "payload": {"id": 1}})),
    )
    .await;
    assert_eq!(status, 202, "{published}");
    let log = wait_for_log(&http, &server, &key, "failed").await;
    let (status, detail) = call(
        &http,
        "GET",
        server.api(&format!("/webhook/logs/{}", log["id"].as_str().unwrap())),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{detail}");
    let error = detail["attempts"][0]["error"].as_str().unwrap();
    assert!(error.starts_with("refused: "), "{error}");
    assert!(error.contains("not allowed"), "{error}");
    assert_hides_addresses(error, port);

    // Create and PATCH refuse literal non-public targets without echoing the address the
    // URL normalises to.
    let (status, refused) = call(
        &http,
        "POST",
        server.api("/webhook"),
        Some(&key),
        Some(json!({"type": "patient.created", "url": "http://2130706433:9/hook"})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("url: target not allowed"), "{message}");
    assert_hides_addresses(message, port);
    let (status, refused) = call(
        &http,
        "PATCH",
        server.api(&format!("/webhook/{}", named["id"].as_str().unwrap())),
        Some(&key),
        Some(json!({"url": "http://0x7f.1:9/hook"})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_hides_addresses(&refused.to_string(), port);
    assert!(received.try_recv().is_err(), "nothing reached the receiver");
}

/// Rotating many times within the grace period keeps the current secret and the three
/// before it: a delivery carries four signatures, and the newest and the previous verify.
#[tokio::test(flavor = "multi_thread")]
async fn rotations_keep_at_most_three_previous_secrets() {
    let server = Server::start(&temp_dir("guards-rotation"));
    let http = reqwest::Client::new();
    let (account_id, key) = new_account(&http, &server, "Rotating Clinic").await;
    let (url, mut received) = receiver().await;
    let webhook = new_webhook(
        &http,
        &server,
        &key,
        json!({"type": "patient.created", "url": url}),
    )
    .await;
    let hook = format!("/webhook/{}", webhook["id"].as_str().unwrap());
    let current_secret = async || {
        let (status, body) = call(
            &http,
            "GET",
            server.api(&format!("{hook}/signing-secret")),
            Some(&key),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["secret"].as_str().unwrap().to_string()
    };
    let mut secrets = vec![current_secret().await];
    for _ in 0..12 {
        let (status, body) = call(
            &http,
            "POST",
            server.api(&format!("{hook}/signing-secret/rotate")),
            Some(&key),
            None,
        )
        .await;
        assert_eq!(status, 204, "{body}");
        secrets.push(current_secret().await);
    }

    let (status, published) = call(
        &http,
        "POST",
        server.api("/events"),
        Some(ADMIN_KEY),
        Some(json!({"accountId": account_id, "type": "patient.created", "payload": {"id": 1}})),
    )
    .await;
    assert_eq!(status, 202, "{published}");
    let delivery = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("a delivery")
        .unwrap();
    let signatures = delivery.headers["webhook-signature"].to_str().unwrap();
    assert_eq!(signatures.split(' ').count(), 4, "{signatures}");
    let verifies = |secret: &str| signature_is_valid(secret, &delivery.headers, &delivery.body);
    let newest = secrets.len() - 1;
    for (i, secret) in secrets.iter().enumerate() {
        let kept = i + 3 >= newest;
        assert_eq!(
            verifies(secret),
            kept,
            "secret {i} of {newest} (the newest and three before it sign)"
        );
    }
}

/// A burst of pings past the per-account limit (here one every 2 s, a burst of 3) is answered
/// 429 with `Retry-After` and the usual error body; test events share the bucket, another
/// account does not; after the wait the route works again.
#[tokio::test(flavor = "multi_thread")]
async fn pings_and_test_events_past_the_rate_limit_get_429_until_the_wait_is_over() {
    let server = Server::start_with_env(
        &temp_dir("guards-rate"),
        &[("HOOKLINE_TEST_RATE_LIMIT", "0.5,3")],
    );
    let http = reqwest::Client::new();
    let (_, key) = new_account(&http, &server, "Eager Clinic").await;
    let (_, other_key) = new_account(&http, &server, "Patient Clinic").await;
    let (url, _received) = pong_receiver().await;
    let webhook = new_webhook(&http, &server, &key, json!({"type": "*", "url": url})).await;
    let ping_path = server.api(&format!(
        "/webhook/{}/ping",
        webhook["id"].as_str().unwrap()
    ));

    let ping = async || {
        let response = http
            .post(&ping_path)
            .header("X-Api-Key", &key)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let body: Value = response.json().await.unwrap();
        (status, retry_after, body)
    };
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(ping().await);
    }
    for (status, _, body) in &answers[..3] {
        assert_eq!(*status, 200, "the burst is allowed: {body}");
        assert_eq!(body["ok"], true, "{body}");
    }
    let (status, retry_after, body) = answers
        .iter()
        .find(|(status, _, _)| *status == 429)
        .expect("a ping past the burst is refused")
        .clone();
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("try again"),
        "{body}"
    );
    let retry_after: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");

    // Test events share the account's bucket; another account has its own.
    let (status, body) = call(
        &http,
        "POST",
        server.api("/test/webhook"),
        Some(&key),
        Some(json!({"type": "patient.created"})),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    let (status, body) = call(
        &http,
        "POST",
        server.api("/test/weight-webhook"),
        Some(&other_key),
        None,
    )
    .await;
    assert_eq!(status, 202, "{body}");

    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let (status, _, body) = ping().await;
    assert_eq!(status, 200, "after the wait: {body}");
    assert_eq!(body["ok"], true, "{body}");
}

/// What fuzzing ping, the test events and the logs (with webhooks of its own) found: input
/// no store key can hold, or a time range before 1970, answered 500. Bad input is a 4xx, and
/// an empty range is an empty page.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_names_and_ids_and_pre_1970_ranges_are_not_server_errors() {
    let server = Server::start(&temp_dir("guards-fuzz"));
    let http = reqwest::Client::new();
    let (_, key) = new_account(&http, &server, "Fuzzed Clinic").await;
    let (url, _received) = pong_receiver().await;
    new_webhook(&http, &server, &key, json!({"type": "*", "url": url})).await;
    let long = "a".repeat(2000);

    let (status, body) = call(
        &http,
        "POST",
        server.api("/test/webhook"),
        Some(&key),
        Some(json!({ "type": long })),
    )
    .await;
    assert_refused((status, body), "type:");

    for (method, path) in [
        ("GET", format!("/webhook/logs/dlv_{long}")),
        ("POST", format!("/webhook/logs/dlv_{long}/retry")),
        ("GET", format!("/webhook/wh_{long}")),
        ("POST", format!("/webhook/wh_{long}/ping")),
    ] {
        let (status, body) = call(&http, method, server.api(&path), Some(&key), None).await;
        assert_eq!(status, 404, "{method} {}...: {body}", &path[..30]);
        assert_eq!(body["error"]["code"], "not_found", "{body}");
    }

    let (status, body) = call(
        &http,
        "GET",
        server.api("/webhook/logs?endLastRetryTimestamp=1960-01-01T00:00:00Z"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 0, "{body}");
}
