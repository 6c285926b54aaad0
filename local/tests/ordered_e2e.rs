//! End to end: ordered delivery (issue 15 item 4) on the real `hookline serve` process with
//! receivers on 127.0.0.1. An ordered webhook gets its events one at a time and in publish
//! order; a delivery being retried holds the ones after it until it ends; a webhook without
//! the option alongside keeps its concurrency; and the order survives a SIGKILL while a
//! retry holds the lane.

mod common;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::*;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one endpoint saw: each attempt's event number and answer, in the order they ended,
/// and the most requests it had in flight at once. It fails the first `failures` attempts of
/// event `failing`.
struct Seen {
    attempts: Mutex<Vec<(u64, u16)>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    failing: u64,
    failures_left: AtomicUsize,
}

impl Seen {
    fn delivered(&self) -> Vec<u64> {
        let attempts = self.attempts.lock().unwrap();
        attempts
            .iter()
            .filter(|(_, status)| *status == 200)
            .map(|(n, _)| *n)
            .collect()
    }
}

async fn endpoint(State(seen): State<Arc<Seen>>, body: axum::body::Bytes) -> StatusCode {
    let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    seen.most_in_flight.fetch_max(now, Ordering::SeqCst);
    let body: Value = serde_json::from_slice(&body).unwrap();
    let n = body["payload"]["seq"].as_u64().unwrap();
    // Long enough for a second delivery to arrive meanwhile, were one sent.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let fail = n == seen.failing
        && seen
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
    let status = if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    seen.attempts.lock().unwrap().push((n, status.as_u16()));
    seen.in_flight.fetch_sub(1, Ordering::SeqCst);
    status
}

async fn receiver(failing: u64, failures: usize) -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen {
        attempts: Mutex::default(),
        in_flight: AtomicUsize::new(0),
        most_in_flight: AtomicUsize::new(0),
        failing,
        failures_left: AtomicUsize::new(failures),
    });
    let app = Router::new()
        .route("/hook", post(endpoint))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// Publishes events `seq` 0 to `count`, a batch request of up to 100 after the other.
async fn publish(http: &reqwest::Client, server: &Server, account: &str, count: u64) {
    publish_range(http, server, account, 0..count).await
}

/// Publishes events `seq` in `range`, a batch request of up to 100 after the other.
async fn publish_range(
    http: &reqwest::Client,
    server: &Server,
    account: &str,
    range: std::ops::Range<u64>,
) {
    let events: Vec<Value> = range
        .map(|i| json!({"accountId": account, "type": "reading.weight", "payload": {"seq": i}}))
        .collect();
    for chunk in events.chunks(100) {
        let (status, answer) = call(
            http,
            "POST",
            server.api("/events/batch"),
            Some(ADMIN_KEY),
            Some(json!({ "events": chunk })),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
}

/// `hookline serve` on `dir` with `env`, and an account with one ordered webhook whose
/// receiver fails the first attempt of event `failing`.
async fn ordered_webhook(
    dir: &std::path::Path,
    env: &[(&str, &str)],
    failing: u64,
) -> (Server, reqwest::Client, String, Arc<Seen>) {
    let server = Server::start_with_env(dir, env);
    let http = reqwest::Client::new();
    let (account, key) = new_account(&http, &server, "Ordered Clinic").await;
    let (url, seen) = receiver(failing, 1).await;
    new_webhook(
        &http,
        &server,
        &key,
        json!({"url": url, "type": "reading.weight", "ordered": true}),
    )
    .await;
    (server, http, account, seen)
}

async fn wait_until(within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_ordered_webhook_gets_one_delivery_at_a_time_in_publish_order() {
    const N: u64 = 200;
    const FAILING: u64 = 7;
    let dir = temp_dir("ordered");
    let server = Server::start_with_env(&dir, &[("HOOKLINE_RETRY_SCHEDULE", "1s,1s")]);
    let http = reqwest::Client::new();
    let (account, key) = new_account(&http, &server, "Ordered Clinic").await;
    let (_, other_key) = new_account(&http, &server, "Other Clinic").await;
    let (ordered_url, ordered) = receiver(FAILING, 2).await;
    let (free_url, free) = receiver(u64::MAX, 0).await;

    let (status, body) = call(
        &http,
        "POST",
        server.api("/webhook"),
        Some(&key),
        Some(json!({"url": ordered_url, "type": "reading.weight", "ordered": "yes"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ordered"),
        "{body}"
    );
    let webhook = new_webhook(
        &http,
        &server,
        &key,
        json!({"url": ordered_url, "type": "reading.weight", "ordered": true}),
    )
    .await;
    assert_eq!(webhook["ordered"], true, "{webhook}");
    let webhook_id = webhook["id"].as_str().unwrap().to_string();
    let free_webhook = new_webhook(
        &http,
        &server,
        &key,
        json!({"url": free_url, "type": "reading.weight"}),
    )
    .await;
    assert!(free_webhook.get("ordered").is_none(), "{free_webhook}");
    // Another account's webhook is not found.
    let (status, _) = call(
        &http,
        "PATCH",
        server.api(&format!("/webhook/{webhook_id}")),
        Some(&other_key),
        Some(json!({"ordered": false})),
    )
    .await;
    assert_eq!(status, 404);

    publish(&http, &server, &account, N).await;
    wait_until(Duration::from_secs(60), || {
        ordered.delivered().len() == N as usize && free.delivered().len() == N as usize
    })
    .await;

    let attempts = ordered.attempts.lock().unwrap().clone();
    let expected: Vec<(u64, u16)> = (0..N)
        .flat_map(|n| {
            if n == FAILING {
                vec![(n, 500), (n, 500), (n, 200)]
            } else {
                vec![(n, 200)]
            }
        })
        .collect();
    assert_eq!(
        attempts, expected,
        "in publish order; nothing after event {FAILING} until its retries succeeded"
    );
    assert_eq!(ordered.most_in_flight.load(Ordering::SeqCst), 1);
    assert_eq!(free.delivered().len(), N as usize);
    let free_in_flight = free.most_in_flight.load(Ordering::SeqCst);
    assert!(
        free_in_flight > 1,
        "the webhook without the option keeps its concurrency: {free_in_flight}"
    );

    // Switched off, its deliveries go concurrently again.
    let (status, body) = call(
        &http,
        "PATCH",
        server.api(&format!("/webhook/{webhook_id}")),
        Some(&key),
        Some(json!({"ordered": null})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("ordered").is_none(), "{body}");
    ordered.attempts.lock().unwrap().clear();
    publish(&http, &server, &account, 100).await;
    wait_until(Duration::from_secs(30), || ordered.delivered().len() == 100).await;
    assert_eq!(ordered.delivered().len(), 100);
    assert!(ordered.most_in_flight.load(Ordering::SeqCst) > 1);
    server.stop();
}

#[tokio::test]
async fn the_order_holds_across_a_sigkill_while_a_retry_holds_the_lane() {
    const N: u64 = 30;
    const FAILING: u64 = 4;
    let dir = temp_dir("ordered-kill");
    let env = [("HOOKLINE_RETRY_SCHEDULE", "4s")];
    let (server, http, account, seen) = ordered_webhook(&dir, &env, FAILING).await;
    publish(&http, &server, &account, N).await;
    // Events 0 to 3 delivered, event 4 failed once and waits 4 s for its retry; the rest
    // wait behind it.
    wait_until(Duration::from_secs(10), || {
        seen.attempts.lock().unwrap().len() > FAILING as usize
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.delivered(), (0..FAILING).collect::<Vec<_>>());
    server.sigkill();

    let server = Server::start_with_env(&dir, &env);
    wait_until(Duration::from_secs(30), || {
        seen.delivered().len() == N as usize
    })
    .await;
    let attempts = seen.attempts.lock().unwrap().clone();
    let expected: Vec<(u64, u16)> = (0..N)
        .flat_map(|n| {
            if n == FAILING {
                vec![(n, 500), (n, 200)]
            } else {
                vec![(n, 200)]
            }
        })
        .collect();
    assert_eq!(attempts, expected, "in publish order across the restart");
    assert_eq!(seen.most_in_flight.load(Ordering::SeqCst), 1);
    server.stop();
}

#[tokio::test]
async fn after_a_restart_a_lane_keeps_publish_order_though_the_sweep_moved_its_waiters() {
    const FAILING: u64 = 4;
    let dir = temp_dir("ordered-resweep");
    // A lease of a second: the sweep (every 5 s) finds the deliveries waiting behind the
    // retry and moves their due time half an hour on, past those published after them.
    let env = [
        ("HOOKLINE_RETRY_SCHEDULE", "12s"),
        ("HOOKLINE_SWEEP_LEASE", "1s"),
    ];
    let (server, http, account, seen) = ordered_webhook(&dir, &env, FAILING).await;
    publish_range(&http, &server, &account, 0..10).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    publish_range(&http, &server, &account, 10..20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(seen.delivered(), (0..FAILING).collect::<Vec<_>>());
    server.sigkill();

    let server = Server::start_with_env(&dir, &env);
    wait_until(Duration::from_secs(30), || seen.delivered().len() == 20).await;
    assert_eq!(
        seen.delivered(),
        (0..20).collect::<Vec<_>>(),
        "in publish order across the restart"
    );
    server.stop();
}
