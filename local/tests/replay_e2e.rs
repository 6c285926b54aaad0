//! End to end: replay and recovery (issue 15 item 3) on the real `hookline serve` process
//! with receivers on 127.0.0.1. A replay sends a time range of deliveries again with the same
//! `webhook-id`; a recovery gives a webhook the events it never got; both are jobs, readable
//! while they run, and one too large for its request finishes in the background, even when
//! the process is killed and started again.

mod common;

use chrono::{SecondsFormat, Utc};
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::mpsc;

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn publish(http: &reqwest::Client, server: &Server, body: Value) {
    let (status, answer) = call(
        http,
        "POST",
        server.api("/events"),
        Some(ADMIN_KEY),
        Some(body),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
}

/// The next `n` requests' `webhook-id`s, within 10 s.
async fn next_ids(rx: &mut mpsc::UnboundedReceiver<Received>, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a delivery within 10 s")
            .unwrap();
        ids.push(got.headers["webhook-id"].to_str().unwrap().to_string());
    }
    ids
}

async fn nothing_more(rx: &mut mpsc::UnboundedReceiver<Received>) {
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(700), rx.recv()).await {
        panic!("an unexpected delivery: {}", extra.body);
    }
}

async fn job(http: &reqwest::Client, server: &Server, key: &str, id: &str) -> (u16, Value) {
    call(
        http,
        "GET",
        server.api(&format!("/webhook/jobs/{id}")),
        Some(key),
        None,
    )
    .await
}

#[tokio::test]
async fn a_replay_sends_a_time_range_again_with_the_same_webhook_ids() {
    let dir = temp_dir("replay");
    let server = Server::start(&dir);
    let http = reqwest::Client::new();
    let (account, key) = new_account(&http, &server, "Replay Clinic").await;
    let (_, other_key) = new_account(&http, &server, "Other Clinic").await;
    let (url, mut rx) = receiver().await;
    let hook = new_webhook(
        &http,
        &server,
        &key,
        json!({"url": url, "type": "reading.weight"}),
    )
    .await;
    let hook_id = hook["id"].as_str().unwrap();
    let before = Utc::now() - chrono::Duration::seconds(1);
    for kg in [70, 71, 72] {
        publish(
            &http,
            &server,
            json!({"accountId": account, "type": "reading.weight", "payload": {"kg": kg}}),
        )
        .await;
    }
    let first: BTreeSet<String> = next_ids(&mut rx, 3).await.into_iter().collect();
    // Every delivery is delivered (so finished) before the replay.
    for _ in 0..100 {
        let (_, counts) = call(
            &http,
            "GET",
            server.api("/webhook/status"),
            Some(&key),
            None,
        )
        .await;
        if counts["delivered"] == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = Utc::now() + chrono::Duration::seconds(1);

    let (status, started) = call(
        &http,
        "POST",
        server.api("/webhook/replay"),
        Some(&key),
        Some(json!({"webhookId": hook_id, "since": rfc3339(before), "until": rfc3339(after)})),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["kind"], "replay");
    assert_eq!(
        started["status"], "completed",
        "a small range is done when the request answers: {started}"
    );
    assert_eq!(
        (started["total"].clone(), started["done"].clone()),
        (json!(3), json!(3))
    );
    assert_eq!(started["webhookId"], hook_id);
    let again: BTreeSet<String> = next_ids(&mut rx, 3).await.into_iter().collect();
    assert_eq!(again, first, "the same deliveries, so the same webhook-id");
    nothing_more(&mut rx).await;

    // The job reads back; another account's is not found, nor an unknown one.
    let job_id = started["id"].as_str().unwrap();
    let (status, read) = job(&http, &server, &key, job_id).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read, started);
    assert_eq!(job(&http, &server, &other_key, job_id).await.0, 404);
    assert_eq!(
        job(&http, &server, &key, "job_01JC6Y4V9M6T2Q8KJ1N3X5Z7B9")
            .await
            .0,
        404
    );

    // Each log counts both attempts, and is delivered again.
    let mut logs = Value::Null;
    for _ in 0..100 {
        logs = call(&http, "GET", server.api("/webhook/logs"), Some(&key), None)
            .await
            .1;
        let all_twice = logs["content"]
            .as_array()
            .unwrap()
            .iter()
            .all(|log| log["retryAttempts"] == 1 && log["status"] == "delivered");
        if all_twice {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(logs["total"], 3, "{logs}");
    for log in logs["content"].as_array().unwrap() {
        assert_eq!(
            (log["retryAttempts"].clone(), log["status"].clone()),
            (json!(1), json!("delivered")),
            "{log}"
        );
    }

    // Only failed ones: there are none. Ranges outside the deliveries find nothing.
    let (status, none) = call(
        &http,
        "POST",
        server.api("/webhook/replay"),
        Some(&key),
        Some(json!({"since": rfc3339(before), "until": rfc3339(after), "status": "failed"})),
    )
    .await;
    assert_eq!(status, 202, "{none}");
    assert_eq!(
        (none["status"].clone(), none["total"].clone()),
        (json!("completed"), json!(0))
    );
    nothing_more(&mut rx).await;

    // Bad input names its field.
    for (body, field) in [
        (
            json!({"since": rfc3339(after), "until": rfc3339(before)}),
            "until",
        ),
        (
            json!({"since": rfc3339(before), "until": rfc3339(after), "status": "pending"}),
            "status",
        ),
        (
            json!({"since": "yesterday", "until": rfc3339(after)}),
            "since",
        ),
        (json!({"until": rfc3339(after)}), "since"),
    ] {
        let answer = call(
            &http,
            "POST",
            server.api("/webhook/replay"),
            Some(&key),
            Some(body),
        )
        .await;
        assert_eq!(answer.0, 400, "{}", answer.1);
        assert!(
            answer.1.to_string().contains(field),
            "{field}: {}",
            answer.1
        );
    }
    // Another account's webhook is not found.
    let (status, _) = call(
        &http,
        "POST",
        server.api("/webhook/replay"),
        Some(&other_key),
        Some(json!({"webhookId": hook_id, "since": rfc3339(before), "until": rfc3339(after)})),
    )
    .await;
    assert_eq!(status, 404);
    server.stop();
}

#[tokio::test]
async fn a_recovery_sends_a_webhook_the_events_it_missed_once() {
    let dir = temp_dir("replay-missing");
    let server = Server::start(&dir);
    let http = reqwest::Client::new();
    let (account, key) = new_account(&http, &server, "Recovery Clinic").await;
    let (_, other_key) = new_account(&http, &server, "Other Clinic").await;
    let since = Utc::now() - chrono::Duration::seconds(1);
    // Published before the webhook exists: one with the publisher's own id, one of a type
    // it does not subscribe to.
    publish(&http, &server, json!({"accountId": account, "type": "reading.weight", "payload": {"kg": 80}, "id": "scale-42"})).await;
    publish(
        &http,
        &server,
        json!({"accountId": account, "type": "reading.weight", "payload": {"kg": 81}}),
    )
    .await;
    publish(&http, &server, json!({"accountId": account, "type": "reading.bloodPressure", "payload": {"systolic": 120}})).await;
    let (url, mut rx) = receiver().await;
    let hook = new_webhook(
        &http,
        &server,
        &key,
        json!({"url": url, "type": "reading.weight"}),
    )
    .await;
    let hook_id = hook["id"].as_str().unwrap();
    let secret = hook["secret"].as_str().map(String::from);
    nothing_more(&mut rx).await;

    let path = format!("/webhook/{hook_id}/replay-missing");
    let (status, started) = call(
        &http,
        "POST",
        server.api(&path),
        Some(&key),
        Some(json!({"since": rfc3339(since)})),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["kind"], "replayMissing");
    assert_eq!(started["status"], "completed", "{started}");
    assert_eq!(
        (started["total"].clone(), started["done"].clone()),
        (json!(2), json!(2))
    );
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if let Some(secret) = &secret {
            assert!(signature_is_valid(secret, &got.headers, &got.body));
        }
        bodies.push(serde_json::from_str::<Value>(&got.body).unwrap());
    }
    let kgs: BTreeSet<i64> = bodies
        .iter()
        .map(|b| b["payload"]["kg"].as_i64().unwrap())
        .collect();
    assert_eq!(kgs, BTreeSet::from([80, 81]));
    assert!(bodies.iter().any(|b| b["id"] == "scale-42"), "{bodies:?}");
    nothing_more(&mut rx).await;

    // Again: it has them all now.
    let (status, again) = call(
        &http,
        "POST",
        server.api(&path),
        Some(&key),
        Some(json!({"since": rfc3339(since)})),
    )
    .await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(
        (again["total"].clone(), again["done"].clone()),
        (json!(2), json!(0))
    );
    nothing_more(&mut rx).await;

    // Another account's webhook is not found; an inactive one is a conflict; the future is refused.
    let (status, _) = call(
        &http,
        "POST",
        server.api(&path),
        Some(&other_key),
        Some(json!({"since": rfc3339(since)})),
    )
    .await;
    assert_eq!(status, 404);
    let future = Utc::now() + chrono::Duration::hours(1);
    let refused = call(
        &http,
        "POST",
        server.api(&path),
        Some(&key),
        Some(json!({"since": rfc3339(future)})),
    )
    .await;
    assert_refused(refused, "since");
    let (status, _) = call(
        &http,
        "PATCH",
        server.api(&format!("/webhook/{hook_id}")),
        Some(&key),
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &http,
        "POST",
        server.api(&path),
        Some(&key),
        Some(json!({"since": rfc3339(since)})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    server.stop();
}

#[tokio::test]
async fn a_replay_too_large_for_its_request_finishes_in_the_background_across_a_crash() {
    let dir = temp_dir("replay-background");
    // The request does one page (100) and answers; the sweep does the rest.
    let server = Server::start_with_env(&dir, &[("HOOKLINE_JOB_INLINE", "0s")]);
    let http = reqwest::Client::new();
    let (account, key) = new_account(&http, &server, "Busy Clinic").await;
    let (url, mut rx) = receiver().await;
    new_webhook(
        &http,
        &server,
        &key,
        json!({"url": url, "type": "reading.weight"}),
    )
    .await;
    let before = Utc::now() - chrono::Duration::seconds(1);
    for batch in 0..3 {
        let events: Vec<Value> = (0..83)
            .map(|n| json!({"accountId": account, "type": "reading.weight", "payload": {"n": batch * 100 + n}}))
            .collect();
        let (status, body) = call(
            &http,
            "POST",
            server.api("/events/batch"),
            Some(ADMIN_KEY),
            Some(json!({"events": events})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let first: BTreeSet<String> = next_ids(&mut rx, 249).await.into_iter().collect();
    assert_eq!(first.len(), 249);
    for _ in 0..200 {
        let (_, counts) = call(
            &http,
            "GET",
            server.api("/webhook/status"),
            Some(&key),
            None,
        )
        .await;
        if counts["delivered"] == 249 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = Utc::now() + chrono::Duration::seconds(1);
    let (status, started) = call(
        &http,
        "POST",
        server.api("/webhook/replay"),
        Some(&key),
        Some(json!({"since": rfc3339(before), "until": rfc3339(after)})),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["status"], "running", "{started}");
    assert_eq!(started["done"], 100, "{started}");
    let id = started["id"].as_str().unwrap().to_string();

    // The process dies with the job accepted and most of it not done; started again, it
    // carries the job on (and sends what was queued in memory): every delivery at least once.
    server.sigkill();
    let server = Server::start_with_env(&dir, &[("HOOKLINE_JOB_INLINE", "0s")]);
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    let finished = loop {
        let (_, now) = job(&http, &server, &key, &id).await;
        if now["status"] != "running" || tokio::time::Instant::now() > end {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(finished["status"], "completed", "{finished}");
    assert_eq!(finished["total"], 249, "{finished}");
    let mut again = BTreeSet::new();
    while again.len() < first.len() {
        let got = tokio::time::timeout(Duration::from_secs(15), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of 249 sent again", again.len()))
            .unwrap();
        again.insert(got.headers["webhook-id"].to_str().unwrap().to_string());
    }
    assert_eq!(again, first, "the same deliveries, each sent again");
    server.stop();
}
