//! End to end: `POST /api/v3/events/batch` on the real `hookline serve` process, with a real
//! receiver on 127.0.0.1.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_delivers_its_good_events_and_refuses_the_bad_ones_one_by_one() {
    let data_dir = temp_dir("batch");
    let server = Server::start(&data_dir);
    let http = reqwest::Client::new();
    let (hook_url, mut received) = receiver().await;
    let (account, key) = new_account(&http, &server, "Batch Clinic").await;
    let webhook = new_webhook(&http, &server, &key, json!({"url": hook_url, "type": "*"})).await;
    let (_, secret) = call(
        &http,
        "GET",
        server.api(&format!(
            "/webhook/{}/signing-secret",
            webhook["id"].as_str().unwrap()
        )),
        Some(&key),
        None,
    )
    .await;
    let secret = secret["secret"].as_str().unwrap().to_string();
    let missing_account = "acct_01JC6Y4V9M6T2Q8KJ1N3X5Z7B9";
    let too_large = json!({"blob": "x".repeat(256 * 1024)});
    let batch = json!({"events": [
        {"accountId": account, "type": "patient.created", "payload": {"patientId": 1}, "id": "batch-1"},
        {"accountId": account, "type": "no.such.type", "payload": {}},
        {"accountId": missing_account, "type": "patient.created", "payload": {}},
        {"accountId": account, "type": "reading.weight", "payload": {"weight": 81.5}, "id": "batch-2"},
        {"accountId": account, "type": "reading.weight", "payload": {}, "id": "not an id!"},
        {"accountId": account, "type": "reading.weight", "payload": too_large},
        {"accountId": account, "type": "reading.weight"},
        {"accountId": account, "type": "patient.updated", "payload": {"patientId": 3}, "id": "batch-3"},
    ]});

    let (status, answer) = call(
        &http,
        "POST",
        server.api("/events/batch"),
        Some(ADMIN_KEY),
        Some(batch.clone()),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap().clone();
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [202, 400, 404, 202, 400, 413, 400, 202]);
    for (i, id, event_type) in [
        (0, "batch-1", "patient.created"),
        (3, "batch-2", "reading.weight"),
        (7, "batch-3", "patient.updated"),
    ] {
        assert_eq!(
            results[i],
            json!({"status": 202, "id": id, "type": event_type, "deliveries": 1})
        );
    }
    let error = |i: usize| {
        (
            results[i]["error"]["code"].as_str().unwrap().to_string(),
            results[i]["error"]["message"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(error(2).0, "not_found");
    assert!(
        error(2).1.starts_with("events[2].accountId: "),
        "{:?}",
        error(2)
    );
    assert_eq!(
        error(6),
        (
            "validation_error".into(),
            "events[6].payload: is required".into()
        )
    );
    // The bad ones carry what POST /events answers for each, the field named in the batch.
    for i in [1, 4, 5] {
        let (status, single) = call(
            &http,
            "POST",
            server.api("/events"),
            Some(ADMIN_KEY),
            Some(batch["events"][i].clone()),
        )
        .await;
        assert_eq!(status, results[i]["status"], "{single}");
        assert_eq!(single["error"]["code"], results[i]["error"]["code"]);
        assert_eq!(
            format!(
                "events[{i}].{}",
                single["error"]["message"].as_str().unwrap()
            ),
            error(i).1
        );
    }
    assert!(error(1).1.starts_with("events[1].type: "));
    assert!(error(4).1.starts_with("events[4].id: "));
    assert_eq!(error(5).0, "payload_too_large");

    // The three good events reach the receiver, signed.
    let mut delivered = Vec::new();
    for _ in 0..3 {
        let got = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .expect("delivered in time")
            .unwrap();
        assert!(signature_is_valid(&secret, &got.headers, &got.body));
        let body: Value = serde_json::from_str(&got.body).unwrap();
        delivered.push((
            body["id"].as_str().unwrap().to_string(),
            body["type"].as_str().unwrap().to_string(),
            body["payload"].clone(),
        ));
    }
    delivered.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        delivered,
        [
            (
                "batch-1".into(),
                "patient.created".into(),
                json!({"patientId": 1})
            ),
            (
                "batch-2".into(),
                "reading.weight".into(),
                json!({"weight": 81.5})
            ),
            (
                "batch-3".into(),
                "patient.updated".into(),
                json!({"patientId": 3})
            ),
        ]
    );

    // The same batch again: the same results, and nothing new is delivered.
    let (status, again) = call(
        &http,
        "POST",
        server.api("/events/batch"),
        Some(ADMIN_KEY),
        Some(batch),
    )
    .await;
    assert_eq!((status, again), (200, answer));
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), received.recv())
            .await
            .is_err(),
        "nothing delivered again"
    );
    let (_, counts) = call(
        &http,
        "GET",
        server.api("/webhook/status"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(
        counts,
        json!({"pending": 0, "retrying": 0, "delivered": 3, "failed": 0})
    );

    // 101 events, none, or not that object: 400 naming `events`, nothing published.
    let event = json!({"accountId": account, "type": "reading.weight", "payload": {}});
    for body in [
        json!({"events": vec![event.clone(); 101]}),
        json!({"events": []}),
        json!({}),
        json!([event]),
        json!({"events": event}),
    ] {
        assert_refused(
            call(
                &http,
                "POST",
                server.api("/events/batch"),
                Some(ADMIN_KEY),
                Some(body),
            )
            .await,
            "events",
        );
    }
    // Account keys may not publish.
    let (status, _) = call(
        &http,
        "POST",
        server.api("/events/batch"),
        Some(&key),
        Some(json!({"events": [event]})),
    )
    .await;
    assert_eq!(status, 403);
    // The request body limit still applies to the whole batch.
    let big = json!({"blob": "x".repeat(200 * 1024)});
    let events: Vec<Value> = (0..6)
        .map(|_| json!({"accountId": account, "type": "reading.weight", "payload": big}))
        .collect();
    let (status, _) = call(
        // Its own client: the server closes a connection whose body it refused to read.
        &reqwest::Client::new(),
        "POST",
        server.api("/events/batch"),
        Some(ADMIN_KEY),
        Some(json!({"events": events})),
    )
    .await;
    assert_eq!(status, 413);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), received.recv())
            .await
            .is_err(),
        "nothing published by refused batches"
    );
    server.stop();
}
