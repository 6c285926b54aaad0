//! End to end: the limits that keep one customer or one receiver from taking the whole
//! process (backlog bound, per-webhook concurrency, webhook quota), a delivery's log kept small
//! however often it is retried, and concurrent changes to one webhook, against the real
//! `hookline serve` and receivers on 127.0.0.1.

mod common;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use common::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a test receiver saw.
#[derive(Clone, Default)]
struct Seen {
    /// Requests now being answered, and the most at once.
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
    hits: Arc<AtomicUsize>,
    ids: Arc<Mutex<Vec<String>>>,
    headers: Arc<Mutex<Vec<HeaderMap>>>,
    bodies: Arc<Mutex<Vec<String>>>,
}

struct Behaviour {
    status: u16,
    delay: Duration,
    body: String,
}

async fn answer(
    State((seen, behaviour)): State<(Seen, Arc<Behaviour>)>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    seen.most_in_flight.fetch_max(now, Ordering::SeqCst);
    seen.hits.fetch_add(1, Ordering::SeqCst);
    if let Some(id) = headers.get("webhook-id") {
        seen.ids
            .lock()
            .unwrap()
            .push(id.to_str().unwrap().to_string());
    }
    seen.headers.lock().unwrap().push(headers);
    seen.bodies.lock().unwrap().push(body);
    tokio::time::sleep(behaviour.delay).await;
    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
    (
        StatusCode::from_u16(behaviour.status).unwrap(),
        behaviour.body.clone(),
    )
}

async fn receiver_with(status: u16, delay: Duration, body: String) -> (String, Seen) {
    let seen = Seen::default();
    let behaviour = Arc::new(Behaviour {
        status,
        delay,
        body,
    });
    let app = Router::new()
        .route("/hook", post(answer))
        .with_state((seen.clone(), behaviour));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

async fn publish(http: &reqwest::Client, server: &Server, account_id: &str) -> reqwest::Response {
    http.post(server.api("/events"))
        .header("X-Api-Key", ADMIN_KEY)
        .json(&json!({"accountId": account_id, "type": "patient.created", "payload": {"n": 1}}))
        .send()
        .await
        .unwrap()
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} never happened");
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_backlog_bound_publish_answers_503_and_a_slow_receiver_gets_its_share() {
    let server = Server::start_with_env(
        &temp_dir("backlog"),
        &[
            ("HOOKLINE_MAX_BACKLOG", "10"),
            ("HOOKLINE_ENDPOINT_CONCURRENCY", "2"),
        ],
    );
    let http = reqwest::Client::new();
    let (account_id, key) = new_account(&http, &server, "Backlog").await;
    let (slow_url, slow) = receiver_with(200, Duration::from_millis(300), String::new()).await;
    new_webhook(
        &http,
        &server,
        &key,
        json!({"type": "patient.created", "url": slow_url}),
    )
    .await;

    let (mut accepted, mut refused) = (0usize, 0usize);
    for _ in 0..40 {
        let response = publish(&http, &server, &account_id).await;
        match response.status().as_u16() {
            202 => accepted += 1,
            503 => {
                refused += 1;
                let wait: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(wait >= 1);
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "busy", "{body}");
            }
            other => panic!("publish answered {other}"),
        }
    }
    assert!(
        refused > 0,
        "40 events to a receiver taking 0.3 s, 2 at a time, pass a backlog of 10"
    );
    assert!(accepted >= 10, "up to the bound, events are accepted");
    // Every accepted event is delivered, and never more than 2 at once to the one webhook.
    eventually("every accepted event delivered", || {
        slow.ids.lock().unwrap().len() >= accepted
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = slow.ids.lock().unwrap().clone();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        accepted,
        "each accepted event delivered"
    );
    assert!(slow.most_in_flight.load(Ordering::SeqCst) <= 2);
    // Once the backlog drains, publishing works again.
    assert_eq!(publish(&http, &server, &account_id).await.status(), 202);
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_has_at_most_its_quota_of_webhooks() {
    let server = Server::start_with_env(&temp_dir("quota"), &[("HOOKLINE_MAX_WEBHOOKS", "2")]);
    let http = reqwest::Client::new();
    let (_, key) = new_account(&http, &server, "Quota").await;
    let body = json!({"type": "patient.created", "url": "http://127.0.0.1:9/hook"});
    let first = new_webhook(&http, &server, &key, body.clone()).await;
    new_webhook(&http, &server, &key, body.clone()).await;
    let (status, refused) = call(
        &http,
        "POST",
        server.api("/webhook"),
        Some(&key),
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 webhooks"),
        "{refused}"
    );
    let (_, list) = call(&http, "GET", server.api("/webhook"), Some(&key), None).await;
    assert_eq!(list["total"], 2);
    // Another account has its own quota; a deleted webhook frees a place.
    let (_, other_key) = new_account(&http, &server, "Other").await;
    new_webhook(&http, &server, &other_key, body.clone()).await;
    let id = first["id"].as_str().unwrap();
    let (status, _) = call(
        &http,
        "DELETE",
        server.api(&format!("/webhook/{id}")),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 200);
    new_webhook(&http, &server, &key, body).await;
    server.stop();
}

/// Before the log was capped, each manual retry appended an attempt with up to 4 KiB of the
/// answer: after about 97 the item passed DynamoDB's 400 KB, recording failed for good and the
/// request was sent again every second.
#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_retried_by_hand_again_and_again_keeps_its_latest_attempts() {
    let server =
        Server::start_with_env(&temp_dir("capped-log"), &[("HOOKLINE_RETRY_SCHEDULE", "")]);
    let http = reqwest::Client::new();
    let (account_id, key) = new_account(&http, &server, "Capped").await;
    let (url, seen) = receiver_with(500, Duration::ZERO, "e".repeat(4096)).await;
    new_webhook(
        &http,
        &server,
        &key,
        json!({"type": "patient.created", "url": url}),
    )
    .await;
    assert_eq!(publish(&http, &server, &account_id).await.status(), 202);
    let delivery = wait_for_log(&http, &server, &key, "failed").await;
    let id = delivery["id"].as_str().unwrap().to_string();
    const RETRIES: usize = 110;
    for n in 1..=RETRIES {
        let (status, body) = call(
            &http,
            "POST",
            server.api(&format!("/webhook/logs/{id}/retry")),
            Some(&key),
            None,
        )
        .await;
        assert_eq!(status, 202, "retry {n}: {body}");
        let mut failed_again = false;
        for _ in 0..200 {
            let (_, log) = call(
                &http,
                "GET",
                server.api(&format!("/webhook/logs/{id}")),
                Some(&key),
                None,
            )
            .await;
            if log["status"] == "failed" && log["retryAttempts"] == n {
                failed_again = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(failed_again, "retry {n} was attempted and recorded");
    }
    // No attempt is sent again on its own.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(seen.hits.load(Ordering::SeqCst), RETRIES + 1);
    let (_, log) = call(
        &http,
        "GET",
        server.api(&format!("/webhook/logs/{id}")),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(log["retryAttempts"], RETRIES, "every attempt counted");
    let attempts = log["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 20, "the newest 20 attempts kept");
    assert!(
        attempts
            .iter()
            .all(|a| a["statusCode"] == 500 && a["responseBody"].as_str().unwrap().len() == 4096)
    );
    server.stop();
}

/// A 2xx answer's body is kept to 256 bytes (every stored byte is billed again on each write of
/// the delivery); a failure's keeps 4 KiB (the capped-log test above).
#[tokio::test(flavor = "multi_thread")]
async fn a_successful_answer_keeps_only_the_start_of_its_body() {
    let server = Server::start(&temp_dir("success-body"));
    let http = reqwest::Client::new();
    let (account_id, key) = new_account(&http, &server, "Bodies").await;
    let body = format!("o{}", "é".repeat(3000));
    let (url, _seen) = receiver_with(200, Duration::ZERO, body.clone()).await;
    new_webhook(
        &http,
        &server,
        &key,
        json!({"type": "patient.created", "url": url}),
    )
    .await;
    assert_eq!(publish(&http, &server, &account_id).await.status(), 202);
    let delivery = wait_for_log(&http, &server, &key, "delivered").await;
    let id = delivery["id"].as_str().unwrap();
    let (_, log) = call(
        &http,
        "GET",
        server.api(&format!("/webhook/logs/{id}")),
        Some(&key),
        None,
    )
    .await;
    let kept = log["attempts"][0]["responseBody"].as_str().unwrap();
    // The 256th byte is the first half of an 'é': the cut falls before it.
    assert_eq!(kept, &body[..255], "{log}");
    server.stop();
}

fn secret(byte: u8) -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    )
}

/// Before webhook writes were conditional on the version read, concurrent changes overwrote
/// each other: of 50 concurrent rotations all answered 204 and only 19 took effect.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_changes_to_one_webhook_all_take_effect() {
    let server = Server::start(&temp_dir("concurrent-changes"));
    let http = reqwest::Client::new();
    let (_, key) = new_account(&http, &server, "Concurrent").await;
    let (url, seen) = receiver_with(200, Duration::ZERO, String::new()).await;
    let webhook = new_webhook(
        &http,
        &server,
        &key,
        json!({"type": "patient.created", "url": url}),
    )
    .await;
    let id = webhook["id"].as_str().unwrap().to_string();
    let rotated: Vec<String> = (1..=3).map(secret).collect();
    let mut changes = Vec::new();
    for (n, new_secret) in rotated.iter().enumerate() {
        let (client, url, account_key, new_secret) = (
            http.clone(),
            server.api(&format!("/webhook/{id}/signing-secret/rotate")),
            key.clone(),
            new_secret.clone(),
        );
        changes.push(tokio::spawn(async move {
            let body = json!({"secret": new_secret});
            call(&client, "POST", url, Some(&account_key), Some(body)).await
        }));
        let (client, url, account_key) = (
            http.clone(),
            server.api(&format!("/webhook/{id}")),
            key.clone(),
        );
        changes.push(tokio::spawn(async move {
            let body = json!({"description": format!("change {n}")});
            call(&client, "PATCH", url, Some(&account_key), Some(body)).await
        }));
    }
    for change in changes {
        let (status, body) = change.await.unwrap();
        assert!(status == 200 || status == 204, "{status} {body}");
    }
    let (status, _) = call(
        &http,
        "POST",
        server.api("/test/webhook"),
        Some(&key),
        Some(json!({"type": "patient.created"})),
    )
    .await;
    assert_eq!(status, 202);
    eventually("the test event delivered", || {
        seen.hits.load(Ordering::SeqCst) == 1
    })
    .await;
    let headers = seen.headers.lock().unwrap()[0].clone();
    let body = seen.bodies.lock().unwrap()[0].clone();
    for secret in &rotated {
        assert!(
            signature_is_valid(secret, &headers, &body),
            "every rotation took effect: {secret} signs the delivery"
        );
    }
    server.stop();
}
