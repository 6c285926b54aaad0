//! End to end: rate limits per webhook (issue 15 item 5) on the real `hookline serve` process
//! with receivers on 127.0.0.1. A rate-limited webhook never gets more than its rate over any
//! 10 s window (within 10 %), nothing is dropped, a webhook without a limit alongside keeps
//! its full speed, and deliveries waiting for their turn survive a SIGKILL.

mod common;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use common::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A receiver stamping each request's arrival: `(webhook-id, when)`.
async fn timed_receiver() -> (String, mpsc::UnboundedReceiver<(String, Instant)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap| {
            let tx = tx.clone();
            async move {
                let id = headers["webhook-id"].to_str().unwrap().to_string();
                let _ = tx.send((id, Instant::now()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

/// Every arrival until `n` distinct deliveries came, or `within` passed.
async fn arrivals(
    rx: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    n: usize,
    within: Duration,
) -> (HashSet<String>, Vec<Instant>) {
    let deadline = tokio::time::Instant::now() + within;
    let (mut ids, mut times) = (HashSet::new(), Vec::new());
    while ids.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((id, at))) => {
                ids.insert(id);
                times.push(at);
            }
            _ => break,
        }
    }
    (ids, times)
}

/// The most requests in any 10 s window.
fn busiest_ten_seconds(times: &[Instant]) -> usize {
    let mut times = times.to_vec();
    times.sort();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t - times[i] < Duration::from_secs(10))
                .count()
        })
        .max()
        .unwrap_or(0)
}

async fn publish_batch(http: &reqwest::Client, server: &Server, events: Vec<Value>) {
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
        assert!(
            answer["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["status"] == 202),
            "{answer}"
        );
    }
}

fn readings(account: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"accountId": account, "type": "reading.weight", "payload": {"seq": i}}))
        .collect()
}

#[tokio::test]
async fn a_rate_limited_webhook_gets_its_rate_and_no_more_while_others_keep_their_speed() {
    let dir = temp_dir("rate-limit");
    let server = Server::start(&dir);
    let http = reqwest::Client::new();
    let (account, key) = new_account(&http, &server, "Rate Clinic").await;
    let (_, other_key) = new_account(&http, &server, "Other Clinic").await;
    let (limited_url, mut limited_rx) = timed_receiver().await;
    let (free_url, mut free_rx) = timed_receiver().await;

    // Bad limits are refused, naming the field.
    for bad in [json!(0), json!(501), json!(-1), json!(2.5), json!("fast")] {
        let (status, body) = call(
            &http,
            "POST",
            server.api("/webhook"),
            Some(&key),
            Some(json!({"url": limited_url, "type": "reading.weight", "rateLimit": bad})),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("rateLimit"), "{bad}: {message}");
    }
    let limited = new_webhook(
        &http,
        &server,
        &key,
        json!({"url": limited_url, "type": "reading.weight", "rateLimit": 20}),
    )
    .await;
    assert_eq!(limited["rateLimit"], 20);
    let limited_id = limited["id"].as_str().unwrap();
    let free = new_webhook(
        &http,
        &server,
        &key,
        json!({"url": free_url, "type": "reading.weight"}),
    )
    .await;
    assert!(free.get("rateLimit").is_none(), "{free}");
    // Another account cannot see or change it.
    let (status, _) = call(
        &http,
        "PATCH",
        server.api(&format!("/webhook/{limited_id}")),
        Some(&other_key),
        Some(json!({"rateLimit": 500})),
    )
    .await;
    assert_eq!(status, 404);

    // 300 deliveries each: 15 s at 20 a second for the limited one.
    const N: usize = 300;
    let started = Instant::now();
    publish_batch(&http, &server, readings(&account, N)).await;

    let (free_ids, _) = arrivals(&mut free_rx, N, Duration::from_secs(20)).await;
    assert_eq!(
        free_ids.len(),
        N,
        "the webhook without a limit got everything"
    );
    let free_done = started.elapsed();
    assert!(
        free_done < Duration::from_secs(8),
        "the webhook without a limit is not held back by its neighbour: {free_done:?}"
    );

    let (limited_ids, times) = arrivals(&mut limited_rx, N, Duration::from_secs(40)).await;
    assert_eq!(limited_ids.len(), N, "nothing dropped");
    let busiest = busiest_ten_seconds(&times);
    assert!(
        busiest <= 220,
        "at most 20/s over any 10 s, within 10 %: {busiest} in the busiest 10 s"
    );
    let span = *times.iter().max().unwrap() - *times.iter().min().unwrap();
    eprintln!(
        "{} arrivals, busiest 10 s: {busiest}, first to last: {span:?}",
        times.len()
    );
    assert!(
        span >= Duration::from_millis(14_000),
        "300 at 20 a second take about 15 s: {span:?}"
    );
    assert!(
        span <= Duration::from_secs(20),
        "the limited webhook still gets close to its rate: {span:?}"
    );
    assert!(
        busiest >= 180,
        "its rate, not far below: {busiest} in the busiest 10 s"
    );

    // The limit can be changed, then removed with null.
    let (status, body) = call(
        &http,
        "PATCH",
        server.api(&format!("/webhook/{limited_id}")),
        Some(&key),
        Some(json!({"rateLimit": 0})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(
        &http,
        "PATCH",
        server.api(&format!("/webhook/{limited_id}")),
        Some(&key),
        Some(json!({"rateLimit": null})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("rateLimit").is_none(), "{body}");
    let started = Instant::now();
    publish_batch(&http, &server, readings(&account, 100)).await;
    let (ids, _) = arrivals(&mut limited_rx, 100, Duration::from_secs(20)).await;
    assert_eq!(ids.len(), 100);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "no limit once removed: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn deliveries_waiting_for_their_turn_survive_a_sigkill() {
    let dir = temp_dir("rate-limit-kill");
    let server = Server::start(&dir);
    let http = reqwest::Client::new();
    let (account, key) = new_account(&http, &server, "Rate Clinic").await;
    let (url, mut rx) = timed_receiver().await;
    new_webhook(
        &http,
        &server,
        &key,
        json!({"url": url, "type": "reading.weight", "rateLimit": 5}),
    )
    .await;
    const N: usize = 40;
    publish_batch(&http, &server, readings(&account, N)).await;
    // About 10 of 40 go out before the kill; the rest are waiting for their turn.
    let (before, _) = arrivals(&mut rx, N, Duration::from_secs(2)).await;
    assert!(
        before.len() < N / 2,
        "{} sent before the kill",
        before.len()
    );
    server.sigkill();

    let server = Server::start(&dir);
    let (after, times) = arrivals(&mut rx, N, Duration::from_secs(30)).await;
    let all: HashSet<_> = before.union(&after).collect();
    assert_eq!(all.len(), N, "every delivery arrived, across the restart");
    // Still no faster than the limit after the restart.
    let busiest = busiest_ten_seconds(&times);
    assert!(busiest <= 55, "{busiest} in the busiest 10 s at 5 a second");
    server.stop();
}
