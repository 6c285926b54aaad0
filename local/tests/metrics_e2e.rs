//! End to end: `GET /metrics` (Prometheus text) moves as deliveries happen, and the JSON log
//! has a line per request and per attempt, linked by ids, with no secret in it.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

/// `name{labels}` -> value, from the Prometheus text format (comments skipped).
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').expect("name value");
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

async fn scrape(http: &reqwest::Client, server: &Server) -> (String, HashMap<String, f64>) {
    let response = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    let parsed = parse_metrics(&text);
    (text, parsed)
}

fn value(metrics: &HashMap<String, f64>, name: &str) -> f64 {
    metrics.get(name).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_logs_follow_deliveries() {
    let dir = temp_dir("metrics");
    std::fs::create_dir_all(dir.with_extension("logs")).unwrap();
    let log_path = dir.with_extension("logs").join("serve.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let server = Server::start_with_stderr(&dir, &[("RUST_LOG", "info")], Stdio::from(log_file));
    let http = reqwest::Client::new();
    let (_, before) = scrape(&http, &server).await;

    let (account, key) = new_account(&http, &server, "Metrics Clinic").await;
    let (good_url, mut received) = receiver().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let good = new_webhook(
        &http,
        &server,
        &key,
        json!({"type": "patient.created", "url": good_url, "authorizationToken": "token-not-for-logs-0123"}),
    )
    .await;
    new_webhook(
        &http,
        &server,
        &key,
        json!({"type": "patient.updated", "url": closed_url}),
    )
    .await;
    let (_, secret) = call(
        &http,
        "GET",
        server.api(&format!(
            "/webhook/{}/signing-secret",
            good["id"].as_str().unwrap()
        )),
        Some(&key),
        None,
    )
    .await;

    // Two publishes: one delivered, one whose endpoint is down (a retry is scheduled).
    let mut event_ids = Vec::new();
    for (request_id, event_type) in [
        ("req-metrics-1", "patient.created"),
        ("req-metrics-2", "patient.updated"),
    ] {
        let response = http
            .post(server.api("/events"))
            .header("X-Api-Key", ADMIN_KEY)
            .header("X-Request-Id", request_id)
            .json(&json!({"accountId": account, "type": event_type, "payload": {"note": "payload-not-for-logs"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        assert_eq!(response.headers()["x-request-id"], request_id);
        let published: Value = response.json().await.unwrap();
        event_ids.push(published["id"].as_str().unwrap().to_string());
    }
    tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("delivered");
    // Both attempts recorded, and the worker done with them (the in-flight gauge goes down
    // just after the outcome is counted).
    let mut after = HashMap::new();
    for _ in 0..100 {
        after = scrape(&http, &server).await.1;
        if value(&after, "hookline_deliveries_total{outcome=\"retrying\"}") > 0.0
            && value(&after, "hookline_deliveries_total{outcome=\"delivered\"}") > 0.0
            && value(&after, "hookline_deliveries_in_flight") == 0.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let moved = |name: &str| value(&after, name) - value(&before, name);
    assert_eq!(
        moved("hookline_deliveries_total{outcome=\"delivered\"}"),
        1.0,
        "{after:?}"
    );
    assert_eq!(
        moved("hookline_deliveries_total{outcome=\"retrying\"}"),
        1.0,
        "{after:?}"
    );
    assert_eq!(moved("hookline_retries_scheduled_total"), 1.0, "{after:?}");
    assert_eq!(
        moved("hookline_attempt_duration_seconds_count"),
        2.0,
        "{after:?}"
    );
    assert_eq!(
        moved("hookline_publish_requests_total{route=\"/api/v3/events\",status=\"202\"}"),
        2.0,
        "{after:?}"
    );
    assert!(
        moved("hookline_store_write_duration_seconds_count{op=\"publish\"}") >= 2.0,
        "{after:?}"
    );
    assert!(
        moved("hookline_store_write_duration_seconds_count{op=\"record_attempts\"}") >= 1.0,
        "{after:?}"
    );
    assert_eq!(
        value(&after, "hookline_deliveries_in_flight"),
        0.0,
        "{after:?}"
    );
    assert!(
        after.contains_key("hookline_deliveries_waiting"),
        "{after:?}"
    );
    let (text, _) = scrape(&http, &server).await;
    assert!(text.contains("# HELP hookline_deliveries_total"), "{text}");
    for private in [&account, good["id"].as_str().unwrap(), &key, ADMIN_KEY] {
        assert!(
            !text.contains(private),
            "metrics name no account, webhook or key: {text}"
        );
    }
    server.stop();

    // The log: the request line and the publish line share the request id; the attempt line
    // carries the event id; no key, secret, token or payload anywhere.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let request = lines
        .iter()
        .find(|l| {
            l["target"] == "hookline::request" && l["fields"]["request_id"] == "req-metrics-1"
        })
        .unwrap_or_else(|| panic!("no request line: {log}"));
    assert_eq!(request["fields"]["route"], "/api/v3/events");
    assert_eq!(request["fields"]["status"], 202);
    assert_eq!(request["fields"]["method"], "POST");
    let publish = lines
        .iter()
        .find(|l| l["target"] == "hookline::publish" && l["span"]["request_id"] == "req-metrics-1")
        .unwrap_or_else(|| panic!("no publish line in the request's span: {log}"));
    assert_eq!(publish["fields"]["event_id"], event_ids[0].as_str());
    let attempt = lines
        .iter()
        .find(|l| {
            l["target"] == "hookline::attempt" && l["fields"]["event_id"] == event_ids[0].as_str()
        })
        .unwrap_or_else(|| panic!("no attempt line: {log}"));
    assert_eq!(attempt["fields"]["status"], "delivered");
    assert_eq!(attempt["fields"]["status_code"], 200);
    let failed = lines
        .iter()
        .find(|l| {
            l["target"] == "hookline::attempt" && l["fields"]["event_id"] == event_ids[1].as_str()
        })
        .unwrap_or_else(|| panic!("no attempt line: {log}"));
    assert_eq!(failed["fields"]["status"], "retrying");
    assert_eq!(failed["fields"]["error"], "connect");
    for private in [
        ADMIN_KEY,
        key.as_str(),
        secret["secret"].as_str().unwrap(),
        "token-not-for-logs-0123",
        "payload-not-for-logs",
        closed_url.as_str(),
    ] {
        assert!(!log.contains(private), "the log shows {private}: {log}");
    }
}
