//! End to end (issue 15 item 6): a webhook's body `format` and custom `headers`, against the
//! real `hookline serve` and receivers on 127.0.0.1. Each receiver checks the Standard Webhooks
//! signature over the body bytes exactly as received.

mod common;

use common::*;
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

async fn next(rx: &mut UnboundedReceiver<RawReceived>) -> RawReceived {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("delivered in time")
        .expect("the receiver is running")
}

async fn publish(http: &reqwest::Client, server: &Server, account_id: &str, payload: Value) {
    let (status, published) = call(
        http,
        "POST",
        server.api("/events"),
        Some(ADMIN_KEY),
        Some(json!({"accountId": account_id, "type": "reading.weight", "payload": payload})),
    )
    .await;
    assert_eq!(status, 202, "{published}");
}

/// The signing secret of a webhook.
async fn secret(http: &reqwest::Client, server: &Server, key: &str, id: &str) -> String {
    let (status, body) = call(
        http,
        "GET",
        server.api(&format!("/webhook/{id}/signing-secret")),
        Some(key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["secret"].as_str().unwrap().to_string()
}

/// The received body, after checking it is signed as received.
fn signed_body(received: &RawReceived, secret: &str) -> String {
    let body = std::str::from_utf8(&received.body).unwrap().to_string();
    assert!(
        signature_is_valid(secret, &received.headers, &body),
        "the signature does not cover the body as received: {body}"
    );
    body
}

#[tokio::test]
async fn each_format_sends_its_own_body_signed_as_sent_with_the_custom_headers() {
    let dir = temp_dir("webhook-options");
    let log_path = dir.with_extension("log");
    let log = std::fs::File::create(&log_path).unwrap();
    // The most verbose log, to show header values never reach it.
    let server = Server::start_with_stderr(
        &dir,
        &[("RUST_LOG", "debug,hyper=info,h2=info")],
        Stdio::from(log),
    );
    let http = reqwest::Client::new();
    let (account_id, key) = new_account(&http, &server, "formats").await;
    let header_value = "Bearer receiver-credential-7f3a9c";

    let mut webhooks = Vec::new();
    for format in ["standard", "compact", "event", "content"] {
        let (url, rx) = raw_receiver().await;
        let mut body = json!({"url": url, "type": "reading.weight", "authorizationToken": "tok-1"});
        if format != "standard" {
            body["format"] = json!(format);
        }
        if format == "compact" {
            body["headers"] = json!({"Authorization": header_value, "X-Tenant": "north"});
        }
        let created = new_webhook(&http, &server, &key, body).await;
        assert_eq!(created["format"], format, "{created}");
        let id = created["id"].as_str().unwrap().to_string();
        let secret = secret(&http, &server, &key, &id).await;
        webhooks.push((format, id, secret, rx, created));
    }
    // Create shows the header values once; reads show only the names.
    let compact = &webhooks[1].4;
    assert_eq!(
        compact["headers"],
        json!({"Authorization": header_value, "X-Tenant": "north"})
    );
    assert_eq!(compact["headerNames"], json!(["Authorization", "X-Tenant"]));
    let (_, read) = call(
        &http,
        "GET",
        server.api(&format!("/webhook/{}", webhooks[1].1)),
        Some(&key),
        None,
    )
    .await;
    assert!(read.get("headers").is_none(), "{read}");
    assert_eq!(read["headerNames"], json!(["Authorization", "X-Tenant"]));
    assert_eq!(read["format"], "compact");
    let (_, listed) = call(&http, "GET", server.api("/webhook"), Some(&key), None).await;
    assert!(!listed.to_string().contains(header_value), "{listed}");

    publish(
        &http,
        &server,
        &account_id,
        json!({"weight": 81.5, "unit": "kg"}),
    )
    .await;
    for (format, _, secret, rx, _) in &mut webhooks {
        let received = next(rx).await;
        let body = signed_body(&received, secret);
        let value: Value = serde_json::from_str(&body).unwrap();
        let object = value.as_object().unwrap();
        // serde_json's map is sorted: compare the sets of fields.
        let keys: std::collections::BTreeSet<&str> = object.keys().map(String::as_str).collect();
        let keys: Vec<&str> = keys.into_iter().collect();
        let payload = json!({"weight": 81.5, "unit": "kg"});
        match *format {
            "standard" => {
                assert_eq!(keys, ["id", "payload", "timestamp", "type"], "{body}");
                assert_eq!(value["payload"], payload);
            }
            "compact" => {
                assert_eq!(keys, ["id", "payload", "type"], "{body}");
                assert_eq!(value["type"], "reading.weight");
                assert_eq!(value["payload"], payload);
            }
            "event" => {
                assert_eq!(keys, ["event", "id", "payload"], "{body}");
                assert_eq!(value["event"], "reading.weight");
                assert!(value["id"].as_str().unwrap().starts_with("evt_"));
            }
            "content" => {
                assert_eq!(keys, ["content", "event_type"], "{body}");
                assert_eq!(value["event_type"], "reading.weight");
                assert_eq!(value["content"], payload);
            }
            _ => unreachable!(),
        }
        // Hookline's own headers are there whatever the format.
        assert_eq!(received.headers["content-type"], "application/json");
        assert_eq!(received.headers["x-webhook-token"], "tok-1");
        if *format == "compact" {
            assert_eq!(received.headers["authorization"], header_value);
            assert_eq!(received.headers["x-tenant"], "north");
        } else {
            assert!(received.headers.get("x-tenant").is_none());
        }
    }

    // A ping carries the custom headers too.
    let (status, ping) = call(
        &http,
        "POST",
        server.api(&format!("/webhook/{}/ping", webhooks[1].1)),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{ping}");
    let pinged = next(&mut webhooks[1].3).await;
    assert_eq!(pinged.headers["x-tenant"], "north");

    // PATCH: a new format applies to the next delivery; new headers replace the old ones and
    // are shown in that response only; `null` removes them.
    let compact_id = webhooks[1].1.clone();
    let (status, patched) = call(
        &http,
        "PATCH",
        server.api(&format!("/webhook/{compact_id}")),
        Some(&key),
        Some(json!({"format": "content", "headers": {"X-Region": "eu"}})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["format"], "content");
    assert_eq!(patched["headers"], json!({"X-Region": "eu"}));
    let (_, untouched) = call(
        &http,
        "PATCH",
        server.api(&format!("/webhook/{compact_id}")),
        Some(&key),
        Some(json!({"description": "only this"})),
    )
    .await;
    assert!(untouched.get("headers").is_none(), "{untouched}");
    assert_eq!(untouched["headerNames"], json!(["X-Region"]));
    publish(&http, &server, &account_id, json!({"weight": 70})).await;
    let received = next(&mut webhooks[1].3).await;
    let body = signed_body(&received, &webhooks[1].2);
    assert_eq!(
        body,
        r#"{"event_type":"reading.weight","content":{"weight":70}}"#
    );
    assert_eq!(received.headers["x-region"], "eu");
    assert!(received.headers.get("x-tenant").is_none());
    assert!(received.headers.get("authorization").is_none());
    for (_, _, _, rx, _) in webhooks.iter_mut().filter(|w| w.0 != "compact") {
        next(rx).await;
    }
    let (status, cleared) = call(
        &http,
        "PATCH",
        server.api(&format!("/webhook/{compact_id}")),
        Some(&key),
        Some(json!({"headers": null})),
    )
    .await;
    assert_eq!(status, 200, "{cleared}");
    assert!(cleared.get("headerNames").is_none(), "{cleared}");
    publish(&http, &server, &account_id, json!({"weight": 71})).await;
    let received = next(&mut webhooks[1].3).await;
    assert!(received.headers.get("x-region").is_none());

    // Header values are not written in the clear: not on disk, not in the log.
    server.stop();
    let mut stored = Vec::new();
    collect_bytes(&dir, &mut stored);
    assert!(
        !contains(&stored, b"receiver-credential-7f3a9c"),
        "a header value is stored in the clear"
    );
    let logged = std::fs::read(&log_path).unwrap();
    assert!(!logged.is_empty(), "the debug log is empty");
    assert!(
        !contains(&logged, b"receiver-credential-7f3a9c"),
        "a header value was logged"
    );
}

fn collect_bytes(dir: &std::path::Path, into: &mut Vec<u8>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_bytes(&path, into);
        } else {
            into.extend(std::fs::read(&path).unwrap());
        }
    }
}

#[tokio::test]
async fn bad_formats_and_headers_are_a_400_naming_the_header() {
    let dir = temp_dir("webhook-options-bad");
    let server = Server::start(&dir);
    let http = reqwest::Client::new();
    let (_, key) = new_account(&http, &server, "bad-options").await;
    let create = |extra: Value| {
        let mut body = json!({"url": "http://127.0.0.1:9/hook", "type": "reading.weight"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        call(
            &http,
            "POST",
            server.api("/webhook"),
            Some(&key),
            Some(body),
        )
    };
    assert_refused(create(json!({"format": "xml"})).await, "format:");
    assert_refused(create(json!({"format": 3})).await, "format:");
    for name in [
        "webhook-signature",
        "Webhook-Id",
        "webhook-timestamp",
        "Content-Type",
        "content-length",
        "Host",
        "User-Agent",
        "Transfer-Encoding",
        // The deployment's secret and token headers, and Infermedica's token header.
        "X-Webhook-Secret",
        "x-webhook-token",
        "X-Webhook-Infermedica-Token",
    ] {
        let refused = create(json!({"headers": {name: "x"}})).await;
        assert_refused(refused.clone(), &format!("headers.{name}:"));
        assert!(
            refused.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot be overridden"),
            "{}",
            refused.1
        );
    }
    assert_refused(
        create(json!({"headers": {"Bad Name": "x"}})).await,
        "headers:",
    );
    assert_refused(create(json!({"headers": {"": "x"}})).await, "headers:");
    let (status, body) = create(json!({"headers": {"X-Split": "a\r\nX-Injected: 1"}})).await;
    assert_refused((status, body.clone()), "headers.X-Split:");
    assert!(!body.to_string().contains("X-Injected"), "{body}");
    assert_refused(
        create(json!({"headers": {"X-Long": "v".repeat(1025)}})).await,
        "headers.X-Long:",
    );
    assert_refused(
        create(json!({"headers": {"X-A": "1", "x-a": "2"}})).await,
        "headers.x-a:",
    );
    let many: serde_json::Map<String, Value> =
        (0..21).map(|i| (format!("X-H{i}"), json!("v"))).collect();
    assert_refused(create(json!({"headers": many})).await, "headers:");
    assert_refused(create(json!({"headers": {"X-Num": 1}})).await, "headers");
    assert_refused(create(json!({"headers": ["X-A"]})).await, "headers");

    // The same checks on PATCH, and nothing changed.
    let webhook = new_webhook(
        &http,
        &server,
        &key,
        json!({"url": "http://127.0.0.1:9/hook", "type": "reading.weight", "headers": {"X-Ok": "1"}}),
    )
    .await;
    let path = server.api(&format!("/webhook/{}", webhook["id"].as_str().unwrap()));
    assert_refused(
        call(
            &http,
            "PATCH",
            &path,
            Some(&key),
            Some(json!({"headers": {"webhook-id": "x"}})),
        )
        .await,
        "headers.webhook-id:",
    );
    assert_refused(
        call(
            &http,
            "PATCH",
            &path,
            Some(&key),
            Some(json!({"format": "EVENT"})),
        )
        .await,
        "format:",
    );
    let (_, read) = call(&http, "GET", &path, Some(&key), None).await;
    assert_eq!(read["headerNames"], json!(["X-Ok"]));
    assert_eq!(read["format"], "standard");
    // `null` goes back to the default.
    for (format, stored) in [(json!("event"), "event"), (Value::Null, "standard")] {
        let (status, body) = call(
            &http,
            "PATCH",
            &path,
            Some(&key),
            Some(json!({"format": format})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["format"], stored, "{body}");
    }
    server.stop();
}

#[tokio::test]
async fn custom_headers_survive_a_main_key_rotation() {
    use base64::Engine;
    let key_b64 = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    let (old, new) = (key_b64(1), key_b64(2));
    let dir = temp_dir("webhook-options-rotation");
    let http = reqwest::Client::new();
    let (url, mut received) = raw_receiver().await;

    let server = Server::start_with_env(&dir, &[("HOOKLINE_MAIN_KEY", &old)]);
    let (account_id, key) = new_account(&http, &server, "rotating").await;
    new_webhook(
        &http,
        &server,
        &key,
        json!({"url": url, "type": "reading.weight", "headers": {"X-Receiver-Key": "rk-55aa"}}),
    )
    .await;
    server.stop();
    // The new key first: the start seals every secret again, header values included.
    let both = format!("{new},{old}");
    Server::start_with_env(&dir, &[("HOOKLINE_MAIN_KEY", &both)]).stop();

    let server = Server::start_with_env(&dir, &[("HOOKLINE_MAIN_KEY", &new)]);
    publish(&http, &server, &account_id, json!({"weight": 60})).await;
    let delivery = next(&mut received).await;
    assert_eq!(delivery.headers["x-receiver-key"], "rk-55aa");
    server.stop();
}
