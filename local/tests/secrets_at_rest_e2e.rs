//! Secrets at rest: `hookline serve` seals the account secret, webhook tokens and signing
//! secrets in its data directory, still delivers them, refuses to start with a missing or
//! wrong main key, and seals everything again under a new key on rotation.

mod common;

use base64::Engine;
use common::*;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const ACCOUNT_SECRET: &str = "acct-secret-Plaintext-7f3a9c";
const TOKEN: &str = "webhook-token-Plaintext-41d2e8";

fn key_b64(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// Every byte stored under the data directory (database, WAL, anything else).
fn bytes_under(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(bytes_under(&path));
        } else {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    all
}

/// Stores the three kinds of secret through the API; returns the account key, the webhook id
/// and its signing secret.
async fn store_secrets(
    http: &reqwest::Client,
    server: &Server,
    url: &str,
) -> (String, String, String) {
    let (_, key) = new_account(http, server, "Sealed Clinic").await;
    let (status, body) = call(
        http,
        "POST",
        server.api("/webhook-secret"),
        Some(&key),
        Some(json!({ "secret": ACCOUNT_SECRET })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let webhook = new_webhook(
        http,
        server,
        &key,
        json!({"type": "reading.weight", "url": url, "authorizationToken": TOKEN}),
    )
    .await;
    let id = webhook["id"].as_str().unwrap().to_string();
    let (status, body) = call(
        http,
        "GET",
        server.api(&format!("/webhook/{id}/signing-secret")),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (key, id, body["secret"].as_str().unwrap().to_string())
}

async fn read_secrets(
    http: &reqwest::Client,
    server: &Server,
    key: &str,
    id: &str,
) -> (String, String) {
    let (status, account_secret) =
        call(http, "GET", server.api("/webhook-secret"), Some(key), None).await;
    assert_eq!(status, 200, "{account_secret}");
    let (status, signing) = call(
        http,
        "GET",
        server.api(&format!("/webhook/{id}/signing-secret")),
        Some(key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{signing}");
    (
        account_secret["secret"].as_str().unwrap().to_string(),
        signing["secret"].as_str().unwrap().to_string(),
    )
}

/// Runs `hookline serve` expecting it to refuse to start; returns what it wrote to stderr.
fn refused_start(data_dir: &Path, env: &[(&str, &str)]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookline"));
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("HOOKLINE_ADMIN_KEY", ADMIN_KEY)
        .env_remove("HOOKLINE_MAIN_KEY")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    let output = command.output().expect("hookline runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success() && !stdout.contains("is running"),
        "hookline should refuse to start: {stdout}"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_sealed_on_disk_yet_delivered_and_signed() {
    let dir = temp_dir("sealed-on-disk");
    let server = Server::start(&dir);
    let http = reqwest::Client::new();
    let (url, mut received) = receiver().await;
    let (key, webhook_id, signing_secret) = store_secrets(&http, &server, &url).await;
    let account_id = {
        let (_, accounts) =
            call(&http, "GET", server.api("/accounts"), Some(ADMIN_KEY), None).await;
        accounts["content"][0]["id"].as_str().unwrap().to_string()
    };

    // A delivery carries all three, opened.
    let (status, published) = call(
        &http,
        "POST",
        server.api("/events"),
        Some(ADMIN_KEY),
        Some(
            json!({"accountId": account_id, "type": "reading.weight", "payload": {"weight": 80.1}}),
        ),
    )
    .await;
    assert_eq!(status, 202, "{published}");
    let delivery = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("a delivery arrives")
        .unwrap();
    assert_eq!(delivery.headers["x-webhook-secret"], ACCOUNT_SECRET);
    assert_eq!(delivery.headers["x-webhook-token"], TOKEN);
    assert!(signature_is_valid(
        &signing_secret,
        &delivery.headers,
        &delivery.body
    ));
    wait_for_log(&http, &server, &key, "delivered").await;
    server.stop();

    // Nothing stored under the data directory shows a secret in plaintext.
    let stored = bytes_under(&dir);
    assert!(stored.len() > 10_000, "the store wrote its files");
    let signing_key_part = signing_secret.strip_prefix("whsec_").unwrap();
    for (what, secret) in [
        ("account secret", ACCOUNT_SECRET),
        ("authorization token", TOKEN),
        ("signing secret", signing_key_part),
    ] {
        assert!(
            !contains(&stored, secret.as_bytes()),
            "the {what} is stored in plaintext"
        );
    }
    assert!(contains(&stored, b"enc:v1:"), "sealed values are stored");

    // The main key was created beside the data, readable by its owner only.
    let key_file = dir.join("main.key");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "main.key mode {mode:o}");
    }

    // After a restart with the same key file, the secrets read back unchanged.
    let server = Server::start(&dir);
    assert_eq!(
        read_secrets(&http, &server, &key, &webhook_id).await,
        (ACCOUNT_SECRET.to_string(), signing_secret)
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_wrong_main_key_stops_the_start_with_a_clear_error() {
    let dir = temp_dir("sealed-wrong-key");
    let server = Server::start(&dir);
    let http = reqwest::Client::new();
    let (url, _received) = receiver().await;
    let (key, webhook_id, signing_secret) = store_secrets(&http, &server, &url).await;
    server.stop();

    // A wrong key: refused at start-up, naming the problem, never echoing a key.
    let wrong = key_b64(9);
    let stderr = refused_start(&dir, &[("HOOKLINE_MAIN_KEY", &wrong)]);
    assert!(stderr.contains("main key does not match"), "{stderr}");
    assert!(!stderr.contains(&wrong), "{stderr}");
    // A key that is not 32 bytes of base64.
    let stderr = refused_start(&dir, &[("HOOKLINE_MAIN_KEY", "too-short")]);
    assert!(stderr.contains("HOOKLINE_MAIN_KEY"), "{stderr}");

    // The key file gone: refused too, rather than starting over with a new key.
    let key_file = dir.join("main.key");
    let saved = dir.with_extension("saved-key");
    std::fs::rename(&key_file, &saved).unwrap();
    let stderr = refused_start(&dir, &[]);
    assert!(stderr.contains("main.key is missing"), "{stderr}");
    assert!(!key_file.exists(), "no new key was made up");

    // Restored, everything opens again.
    std::fs::rename(&saved, &key_file).unwrap();
    let server = Server::start(&dir);
    assert_eq!(
        read_secrets(&http, &server, &key, &webhook_id).await,
        (ACCOUNT_SECRET.to_string(), signing_secret)
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn rotating_the_main_key_seals_every_secret_again_under_the_new_key() {
    let dir = temp_dir("sealed-rotation");
    let (old, new) = (key_b64(1), key_b64(2));
    let http = reqwest::Client::new();
    let (url, _received) = receiver().await;

    let server = Server::start_with_env(&dir, &[("HOOKLINE_MAIN_KEY", &old)]);
    let (key, webhook_id, signing_secret) = store_secrets(&http, &server, &url).await;
    server.stop();
    assert!(
        !dir.join("main.key").exists(),
        "the variable wins over a key file"
    );

    // The new key first, the old one after it: the start seals everything again.
    let both = format!("{new},{old}");
    let server = Server::start_with_env(&dir, &[("HOOKLINE_MAIN_KEY", &both)]);
    server.stop();

    // The old key can now go: every secret opens with the new one alone.
    let server = Server::start_with_env(&dir, &[("HOOKLINE_MAIN_KEY", &new)]);
    assert_eq!(
        read_secrets(&http, &server, &key, &webhook_id).await,
        (ACCOUNT_SECRET.to_string(), signing_secret)
    );
    server.stop();

    // And the old key alone no longer opens this store.
    let stderr = refused_start(&dir, &[("HOOKLINE_MAIN_KEY", &old)]);
    assert!(stderr.contains("main key does not match"), "{stderr}");
}
