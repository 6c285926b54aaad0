//! End to end: payload filters per webhook (`filter`), against the real `hookline serve` and
//! receivers on 127.0.0.1: only events whose payload passes a webhook's filter reach it, on
//! publish, batch publish and test events; bad filters are a 400 naming the path and operator.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

async fn publish(http: &reqwest::Client, server: &Server, account: &str, payload: Value) -> Value {
    let (status, body) = call(
        http,
        "POST",
        server.api("/events"),
        Some(ADMIN_KEY),
        Some(json!({"accountId": account, "type": "reading.bloodPressure", "payload": payload})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    body
}

/// The `payload` of each delivery that arrives within `wait` (envelope bodies).
async fn payloads(rx: &mut UnboundedReceiver<Received>, wait: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(Some(hit)) = tokio::time::timeout(wait, rx.recv()).await {
        let body: Value = serde_json::from_str(&hit.body).unwrap();
        out.push(body["payload"].clone());
    }
    out
}

#[tokio::test]
async fn only_events_passing_a_webhooks_filter_reach_it() {
    let dir = temp_dir("filters");
    let server = Server::start(&dir);
    let http = reqwest::Client::new();
    let (account, key) = new_account(&http, &server, "Filter Clinic").await;
    let (all_url, mut all_rx) = receiver().await;
    let (high_url, mut high_rx) = receiver().await;
    new_webhook(
        &http,
        &server,
        &key,
        json!({"url": all_url, "type": "reading.*"}),
    )
    .await;
    let high = new_webhook(
        &http,
        &server,
        &key,
        json!({
            "url": high_url,
            "type": "reading.*",
            "filter": {
                "$or": [{"systolic": {"$gte": 140}}, {"flags.urgent": true}],
                "patientId": {"$ne": "test-patient"}
            }
        }),
    )
    .await;
    assert_eq!(high["filter"]["patientId"], json!({"$ne": "test-patient"}));
    let high_id = high["id"].as_str().unwrap();

    // Fan-out counts say who matched; the receivers say who got what.
    let normal = json!({"patientId": "p1", "systolic": 120, "diastolic": 80});
    let raised = json!({"patientId": "p2", "systolic": 150, "diastolic": 95});
    let urgent = json!({"patientId": "p3", "systolic": 110, "flags": {"urgent": true}});
    let excluded = json!({"patientId": "test-patient", "systolic": 180});
    assert_eq!(
        publish(&http, &server, &account, normal.clone()).await["deliveries"],
        1
    );
    assert_eq!(
        publish(&http, &server, &account, raised.clone()).await["deliveries"],
        2
    );
    assert_eq!(
        publish(&http, &server, &account, urgent.clone()).await["deliveries"],
        2
    );
    assert_eq!(
        publish(&http, &server, &account, excluded.clone()).await["deliveries"],
        1
    );
    let mut everything = payloads(&mut all_rx, Duration::from_secs(3)).await;
    everything.sort_by_key(|p| p["patientId"].as_str().unwrap().to_string());
    assert_eq!(
        everything,
        vec![normal, raised.clone(), urgent.clone(), excluded]
    );
    let mut filtered = payloads(&mut high_rx, Duration::from_millis(500)).await;
    filtered.sort_by_key(|p| p["patientId"].as_str().unwrap().to_string());
    assert_eq!(filtered, vec![raised, urgent]);

    // Batch publish and test events go through the same matching.
    let (status, batch) = call(
        &http,
        "POST",
        server.api("/events/batch"),
        Some(ADMIN_KEY),
        Some(json!({"events": [
            {"accountId": account, "type": "reading.bloodPressure", "payload": {"patientId": "b1", "systolic": 100}},
            {"accountId": account, "type": "reading.bloodPressure", "payload": {"patientId": "b2", "systolic": 160}}
        ]})),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    let (status, test_event) = call(
        &http,
        "POST",
        server.api("/test/blood-pressure-webhook"),
        Some(&key),
        Some(json!({"patientId": 4242, "systolic": 100, "diastolic": 70})),
    )
    .await;
    assert_eq!(
        (status, &test_event["deliveries"]),
        (202, &json!(1)),
        "{test_event}"
    );
    assert_eq!(payloads(&mut all_rx, Duration::from_secs(3)).await.len(), 3);
    let filtered = payloads(&mut high_rx, Duration::from_millis(500)).await;
    assert_eq!(filtered.len(), 1, "{filtered:?}");
    assert_eq!(filtered[0]["patientId"], "b2");

    // Removing the filter lets everything through again.
    let (status, patched) = call(
        &http,
        "PATCH",
        server.api(&format!("/webhook/{high_id}")),
        Some(&key),
        Some(json!({"filter": null})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert!(patched.get("filter").is_none(), "{patched}");
    assert_eq!(
        publish(
            &http,
            &server,
            &account,
            json!({"patientId": "p9", "systolic": 90})
        )
        .await["deliveries"],
        2
    );
    assert_eq!(
        payloads(&mut high_rx, Duration::from_secs(3)).await.len(),
        1
    );
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_filters_are_a_400_naming_the_path_and_operator() {
    let dir = temp_dir("filters-bad");
    let server = Server::start(&dir);
    let http = reqwest::Client::new();
    let (_, key) = new_account(&http, &server, "Bad Filters").await;
    let (other_account_key, url) = {
        let (_, other) = new_account(&http, &server, "Other").await;
        (other, "http://127.0.0.1:9/hook")
    };
    let create = |filter: Value| {
        let http = http.clone();
        let api = server.api("/webhook");
        let key = key.clone();
        async move {
            call(
                &http,
                "POST",
                api,
                Some(&key),
                Some(json!({"url": url, "type": "reading.*", "filter": filter})),
            )
            .await
        }
    };
    for (filter, names) in [
        (
            json!({"systolic": {"$gtt": 1}}),
            vec!["'systolic'", "'$gtt'"],
        ),
        (
            json!({"$or": [{"a": 1}, {"b": {"$in": "x"}}]}),
            vec!["'$or[1].b'", "'$in'"],
        ),
        (json!({"a": {"$exists": 1}}), vec!["'a'", "'$exists'"]),
        (json!({"a": {"$lt": {"x": 1}}}), vec!["'a'", "'$lt'"]),
        (json!({"$where": "1"}), vec!["'$where'"]),
        (json!({"a..b": 1}), vec!["'a..b'"]),
        (json!({"a": {"nested": 1}}), vec!["'a'", "dotted path"]),
        (json!([1, 2]), vec!["object"]),
        (json!("x"), vec!["object"]),
        (json!({"a": "x".repeat(5000)}), vec!["bytes"]),
    ] {
        let (status, body) = create(filter.clone()).await;
        assert_eq!(status, 400, "{filter}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("filter: "), "{message}");
        for name in names {
            assert!(message.contains(name), "{filter}: {message} lacks {name}");
        }
    }
    let mut deep = json!({"a": 1});
    for _ in 0..6 {
        deep = json!({"$and": [deep]});
    }
    assert_refused(create(deep).await, "filter: ");

    // PATCH checks the same way, and leaves the webhook as it was.
    let webhook = new_webhook(
        &http,
        &server,
        &key,
        json!({"url": url, "type": "reading.*", "filter": {"a": 1}}),
    )
    .await;
    let path = format!("/webhook/{}", webhook["id"].as_str().unwrap());
    assert_refused(
        call(
            &http,
            "PATCH",
            server.api(&path),
            Some(&key),
            Some(json!({"filter": {"a": {"$regex": "x"}}})),
        )
        .await,
        "filter: ",
    );
    let (_, stored) = call(&http, "GET", server.api(&path), Some(&key), None).await;
    assert_eq!(stored["filter"], json!({"a": 1}));
    // Another account's webhook is not found, filter or not.
    let (status, _) = call(
        &http,
        "PATCH",
        server.api(&path),
        Some(&other_account_key),
        Some(json!({"filter": {"a": 2}})),
    )
    .await;
    assert_eq!(status, 404);
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
