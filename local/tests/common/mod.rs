//! Helpers shared by the end-to-end tests: the real `hookline serve` process, a receiver on
//! 127.0.0.1, and JSON calls.
#![allow(dead_code)]

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

/// At least 32 characters, as `hookline serve` requires.
pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdefghij";

pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with_env(data_dir, &[])
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v3{path}", self.base)
    }

    pub fn stop(mut self) {
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

pub struct Received {
    pub headers: HeaderMap,
    pub body: String,
}

/// A receiver answering 200 and handing every request to the test.
pub async fn receiver() -> (String, mpsc::UnboundedReceiver<Received>) {
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

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hookline-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub async fn call(
    client: &reqwest::Client,
    method: &str,
    url: impl AsRef<str>,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, text) = call_text(client, method, url, key, body).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Like `call`, but returns the body as the raw text the server sent.
pub async fn call_text(
    client: &reqwest::Client,
    method: &str,
    url: impl AsRef<str>,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let mut request = client.request(method.parse().unwrap(), url.as_ref());
    if let Some(key) = key {
        request = request.header("X-Api-Key", key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Creates an account (admin key); returns its id and API key.
pub async fn new_account(http: &reqwest::Client, server: &Server, name: &str) -> (String, String) {
    let (status, account) = call(
        http,
        "POST",
        server.api("/accounts"),
        Some(ADMIN_KEY),
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(status, 201, "{account}");
    (
        account["id"].as_str().unwrap().to_string(),
        account["apiKey"].as_str().unwrap().to_string(),
    )
}

/// Creates a webhook with the account's key; returns it as created.
pub async fn new_webhook(http: &reqwest::Client, server: &Server, key: &str, body: Value) -> Value {
    let (status, webhook) = call(http, "POST", server.api("/webhook"), Some(key), Some(body)).await;
    assert_eq!(status, 201, "{webhook}");
    webhook
}

/// Verifies a Standard Webhooks signature independently of Hookline's own signing code.
pub fn signature_is_valid(secret: &str, headers: &HeaderMap, body: &str) -> bool {
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

pub async fn wait_for_log(
    http: &reqwest::Client,
    server: &Server,
    key: &str,
    status: &str,
) -> Value {
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
pub fn assert_refused((status, body): (u16, Value), prefix: &str) {
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(prefix), "{message}");
}

pub fn chrono_like(ts: &str) -> bool {
    ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T'
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// --- helpers for the resilience tests ---

impl Server {
    /// `start` with extra environment variables, set after (and so able to override) the
    /// admin key and `RUST_LOG`.
    pub fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_with_stderr(data_dir, env, Stdio::inherit())
    }

    /// `start_with_env`, its stderr (the JSON log) going to `stderr`.
    pub fn start_with_stderr(data_dir: &Path, env: &[(&str, &str)], stderr: Stdio) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookline"))
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("HOOKLINE_ADMIN_KEY", ADMIN_KEY)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("hookline starts");
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

    /// SIGKILL (`kill -9`): no shutdown of any kind. Waits until the process is gone and checks
    /// that signal 9 is what ended it. Drop afterwards is harmless: the child is already reaped,
    /// so `Child::kill` sends nothing.
    pub fn sigkill(mut self) {
        use std::os::unix::process::ExitStatusExt;
        let sent = Command::new("kill")
            .args(["-9", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -9 failed: {sent}");
        let status = self.child.wait().expect("hookline is reaped");
        assert_eq!(
            status.signal(),
            Some(9),
            "hookline ended by SIGKILL: {status}"
        );
    }
}

pub struct RawReceived {
    pub headers: HeaderMap,
    pub body: axum::body::Bytes,
}

/// A receiver answering 200 and handing every request, with its body bytes untouched, to the
/// test.
pub async fn raw_receiver() -> (String, mpsc::UnboundedReceiver<RawReceived>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(RawReceived { headers, body });
                "thanks"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}
