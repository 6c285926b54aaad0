//! End to end: the real `hookline serve` process, a real receiver on 127.0.0.1, the public API.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_published_event_reaches_the_receiver_signed_and_is_logged_delivered() {
    let data_dir = temp_dir("slice");
    let server = Server::start(&data_dir);
    let http = reqwest::Client::new();
    let (hook_url, mut received) = receiver().await;

    let (status, health) = call(&http, "GET", &format!("{}/health", server.base), None, None).await;
    assert_eq!((status, health), (200, json!({"status": "ok"})));

    // The platform creates an account; its key is shown once.
    let (status, account) = call(
        &http,
        "POST",
        &server.api("/accounts"),
        Some(ADMIN_KEY),
        Some(json!({"name": "Acme Clinic"})),
    )
    .await;
    assert_eq!(status, 201, "{account}");
    let account_id = account["id"].as_str().unwrap().to_string();
    let api_key = account["apiKey"].as_str().unwrap().to_string();
    assert!(account_id.starts_with("acct_"));
    assert!(account["createdAt"].is_string());

    // The account creates a webhook and reads its signing secret.
    let (status, webhook) = call(
        &http,
        "POST",
        &server.api("/webhook"),
        Some(&api_key),
        Some(json!({"type": "patient.created", "url": hook_url})),
    )
    .await;
    assert_eq!(status, 201, "{webhook}");
    assert_eq!(webhook["type"], "patient.created");
    assert_eq!(webhook["url"], hook_url.as_str());
    let webhook_id = webhook["id"].as_str().unwrap().to_string();
    assert!(webhook_id.starts_with("wh_"));
    let (status, secret) = call(
        &http,
        "GET",
        &server.api(&format!("/webhook/{webhook_id}/signing-secret")),
        Some(&api_key),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let secret = secret["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));

    // The platform publishes; the receiver gets one signed POST with the envelope.
    let payload = json!({"patientId": 4711, "firstName": "Ada", "lastName": "Lovelace"});
    let (status, published) = call(
        &http,
        "POST",
        &server.api("/events"),
        Some(ADMIN_KEY),
        Some(json!({"accountId": account_id, "type": "patient.created", "payload": payload})),
    )
    .await;
    assert_eq!(status, 202, "{published}");
    assert_eq!(published["deliveries"], 1);
    let event_id = published["id"].as_str().unwrap().to_string();

    let got = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("delivered in time")
        .unwrap();
    let body: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(body["id"], event_id.as_str());
    assert_eq!(body["type"], "patient.created");
    assert_eq!(body["payload"], payload);
    assert!(chrono_like(body["timestamp"].as_str().unwrap()));
    assert_eq!(got.headers["content-type"], "application/json");
    assert!(
        got.headers["webhook-id"]
            .to_str()
            .unwrap()
            .starts_with("dlv_")
    );
    let sent_at: i64 = got.headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - sent_at).abs() < 30);
    assert!(
        signature_is_valid(&secret, &got.headers, &got.body),
        "the signature verifies with the webhook's secret"
    );
    assert!(!signature_is_valid(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        &got.headers,
        &got.body
    ));

    // The log lists it delivered, with the receiver's status.
    let log = wait_for_log(&http, &server, &api_key, "delivered").await;
    assert_eq!(log["webhookId"], webhook_id.as_str());
    assert_eq!(log["webhookType"], "patient.created");
    assert_eq!(log["webhookUrl"], hook_url.as_str());
    assert_eq!(log["eventId"], event_id.as_str());
    assert_eq!(log["lastResponseStatus"], 200);
    assert_eq!(log["retryAttempts"], 0);
    assert_eq!(
        serde_json::from_str::<Value>(log["payload"].as_str().unwrap()).unwrap(),
        payload
    );
    assert_eq!(log["id"], got.headers["webhook-id"].to_str().unwrap());

    // State survives a restart.
    server.stop();
    let server = Server::start(&data_dir);
    let (status, again) = call(
        &http,
        "GET",
        &server.api(&format!("/webhook/{webhook_id}")),
        Some(&api_key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["url"], hook_url.as_str());
    let (_, logs) = call(
        &http,
        "GET",
        &server.api("/webhook/logs"),
        Some(&api_key),
        None,
    )
    .await;
    assert_eq!(logs["total"], 1);
    assert_eq!(logs["content"][0]["status"], "delivered");
    assert!(
        received.try_recv().is_err(),
        "a delivered event is not sent again after a restart"
    );

    // Keys are stored as hashes only: the plaintext appears nowhere in the data directory.
    server.stop();
    for file in std::fs::read_dir(&data_dir).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        assert!(
            !contains(&bytes, api_key.as_bytes()),
            "an API key was stored in plaintext"
        );
        assert!(!contains(&bytes, ADMIN_KEY.as_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_guard_every_route_and_bad_input_gets_a_clear_4xx() {
    let server = Server::start(&temp_dir("auth"));
    let http = reqwest::Client::new();
    let (_, account) = call(
        &http,
        "POST",
        &server.api("/accounts"),
        Some(ADMIN_KEY),
        Some(json!({"name": "A"})),
    )
    .await;
    let key = account["apiKey"].as_str().unwrap();

    let (status, body) = call(&http, "GET", &server.api("/webhook"), None, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(
        call(
            &http,
            "GET",
            &server.api("/webhook"),
            Some("hlk_wrong"),
            None
        )
        .await
        .0,
        401
    );
    assert_eq!(
        call(
            &http,
            "POST",
            &server.api("/accounts"),
            Some(key),
            Some(json!({"name": "B"}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(&http, "GET", &server.api("/webhook"), Some(ADMIN_KEY), None)
            .await
            .0,
        403
    );
    // Bearer works as well as the header.
    let bearer = http
        .get(server.api("/webhook"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);

    let create = |body: Value| call(&http, "POST", server.api("/webhook"), Some(key), Some(body));
    assert_refused(
        create(json!({"type": "patient.created", "url": "ftp://x"})).await,
        "url:",
    );
    assert_refused(
        create(json!({"type": "nope.nothing", "url": "http://127.0.0.1:1/"})).await,
        "type:",
    );
    assert_refused(
        create(json!({"type": "patient.created"})).await,
        "url: is required",
    );
    let (status, body) = call(
        &http,
        "POST",
        &server.api("/events"),
        Some(ADMIN_KEY),
        Some(json!({"accountId": "acct_nobody", "type": "patient.created", "payload": {}})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let big = "x".repeat(2 * 1024 * 1024);
    let (status, _) = call(
        // Its own client: the server closes a connection whose body it refused to read.
        &reqwest::Client::new(),
        "POST",
        &server.api("/accounts"),
        Some(ADMIN_KEY),
        Some(json!({"name": big})),
    )
    .await;
    assert_eq!(status, 413);
    let (status, _) = call(
        &http,
        "GET",
        &server.api("/webhook/wh_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        Some(key),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &http,
        "GET",
        &server.api("/webhook/logs?size=1000"),
        Some(key),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_refused(
        call(
            &http,
            "GET",
            server.api("/webhook/logs?startTimestamp=yesterday"),
            Some(key),
            None,
        )
        .await,
        "startTimestamp:",
    );
    let (status, body) = call(
        &http,
        "DELETE",
        server.api("/accounts"),
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
}

/// A data directory of the emulated DynamoDB store (before the SQLite store) is refused at
/// start, with what to do, and left as it was.
#[test]
fn a_data_directory_of_the_emulated_store_is_refused_with_what_to_do() {
    let dir = temp_dir("emulated-store");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hookline.db"), b"SQLite format 3\0").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookline"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("HOOKLINE_ADMIN_KEY", ADMIN_KEY)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("hookline runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && !stdout.contains("is running"),
        "{stdout}"
    );
    assert!(stderr.contains("emulated DynamoDB store"), "{stderr}");
    assert!(stderr.contains("new data directory"), "{stderr}");
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["hookline.db".to_string()], "nothing was added");
    let _ = std::fs::remove_dir_all(&dir);
}
