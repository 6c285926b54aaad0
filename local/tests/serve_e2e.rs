//! End to end: the real `hookline serve` process, a real receiver on 127.0.0.1, the public API.

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::sync::mpsc;

const ADMIN_KEY: &str = "test-admin-key-0123456789";

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookline"))
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("HOOKLINE_ADMIN_KEY", ADMIN_KEY)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("hookline starts");
        // The URL line may follow others (such as a first start's admin key).
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                line.split_whitespace()
                    .find(|w| w.starts_with("http://"))
                    .map(String::from)
            })
            .expect("hookline prints its URL");
        Self { child, base }
    }

    fn api(&self, path: &str) -> String {
        format!("{}/api/v3{path}", self.base)
    }

    fn stop(mut self) {
        // SIGTERM: a graceful stop.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Received {
    headers: HeaderMap,
    body: String,
}

/// A receiver answering 200 and handing every request to the test.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Received { headers, body });
                "thanks"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hookline-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn call(
    client: &reqwest::Client,
    method: &str,
    url: impl AsRef<str>,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method.parse().unwrap(), url.as_ref());
    if let Some(key) = key {
        request = request.header("X-Api-Key", key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Verifies a Standard Webhooks signature independently of Hookline's own signing code.
fn signature_is_valid(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let id = headers["webhook-id"].to_str().unwrap();
    let timestamp = headers["webhook-timestamp"].to_str().unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    headers["webhook-signature"]
        .to_str()
        .unwrap()
        .split(' ')
        .any(|s| s == expected)
}

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
        &http,
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

async fn wait_for_log(http: &reqwest::Client, server: &Server, key: &str, status: &str) -> Value {
    for _ in 0..100 {
        let (_, logs) = call(http, "GET", &server.api("/webhook/logs"), Some(key), None).await;
        if logs["content"][0]["status"] == status {
            assert_eq!(
                (
                    logs["page"].clone(),
                    logs["total"].clone(),
                    logs["first"].clone(),
                    logs["last"].clone()
                ),
                (json!(0), json!(1), json!(true), json!(true))
            );
            return logs["content"][0].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the delivery never became {status}");
}

/// A 400 whose message starts with `prefix` (the field at fault).
fn assert_refused((status, body): (u16, Value), prefix: &str) {
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(prefix), "{message}");
}

fn chrono_like(ts: &str) -> bool {
    ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T'
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
