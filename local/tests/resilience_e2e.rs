//! End to end, resilience: a SIGKILL with work queued, in flight and waiting to be retried
//! loses nothing (DESIGN 4, at least once), and the signatures verify with the official
//! Standard Webhooks package across a secret rotation.

mod common;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Http = reqwest::Client;

// --- helpers ---

async fn signing_secret(http: &Http, server: &Server, key: &str, webhook_id: &str) -> String {
    let (status, body) = call(
        http,
        "GET",
        server.api(&format!("/webhook/{webhook_id}/signing-secret")),
        Some(key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let secret = body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    secret
}

/// `(pending, retrying, delivered, failed)`.
async fn status_counts(http: &Http, server: &Server, key: &str) -> (u64, u64, u64, u64) {
    let (status, body) = call(http, "GET", server.api("/webhook/status"), Some(key), None).await;
    assert_eq!(status, 200, "{body}");
    let n = |field: &str| {
        body[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{field} in {body}"))
    };
    (n("pending"), n("retrying"), n("delivered"), n("failed"))
}

/// Every log entry, paging with the largest page size.
async fn all_logs(http: &Http, server: &Server, key: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for page in 0.. {
        let (status, body) = call(
            http,
            "GET",
            server.api(&format!("/webhook/logs?size=100&page={page}")),
            Some(key),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let content = body["content"].as_array().unwrap();
        all.extend(content.iter().cloned());
        let total = body["total"].as_u64().unwrap() as usize;
        if content.is_empty() || all.len() >= total {
            assert_eq!(all.len(), total, "the pages add up to the total");
            return all;
        }
        assert!(page < 1000, "paging never ends");
    }
    unreachable!()
}

/// One request the flaky receiver got.
#[derive(Debug, Clone)]
struct Hit {
    /// `a` or `b`: which webhook's URL.
    route: &'static str,
    event_id: String,
    webhook_id: String,
}

#[derive(Default)]
struct Flaky {
    hits: Mutex<Vec<Hit>>,
    /// `webhook-id`s that already got their 500 on route `a`.
    refused_once: Mutex<HashSet<String>>,
}

impl Flaky {
    fn record(&self, route: &'static str, headers: &HeaderMap, body: &[u8]) -> String {
        let body: Value = serde_json::from_slice(body).expect("a JSON body");
        let webhook_id = headers["webhook-id"].to_str().unwrap().to_string();
        self.hits.lock().unwrap().push(Hit {
            route,
            event_id: body["id"].as_str().unwrap().to_string(),
            webhook_id: webhook_id.clone(),
        });
        webhook_id
    }
}

/// `/a` answers 500 to the first attempt of each delivery (by `webhook-id`), then 200; `/b`
/// answers 200 after a long while (`SLOW_ANSWER`). Every request is recorded on arrival.
async fn flaky_receiver() -> (String, Arc<Flaky>) {
    let state = Arc::new(Flaky::default());
    let app = Router::new()
        .route(
            "/a",
            post(
                |State(s): State<Arc<Flaky>>, headers: HeaderMap, body: axum::body::Bytes| async move {
                    let webhook_id = s.record("a", &headers, &body);
                    if s.refused_once.lock().unwrap().insert(webhook_id) {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                },
            ),
        )
        .route(
            "/b",
            post(
                |State(s): State<Arc<Flaky>>, headers: HeaderMap, body: axum::body::Bytes| async move {
                    s.record("b", &headers, &body);
                    tokio::time::sleep(SLOW_ANSWER).await;
                    StatusCode::OK
                },
            ),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, state)
}

// --- SIGKILL ---

/// Enough that B's deliveries outnumber the local server's 256 delivery workers, so some wait
/// in its in-process queue when it is killed.
const EVENTS: usize = 300;
const LOCAL_WORKERS: u64 = 256;
/// How long B takes to answer: longer than publishing everything takes, so none of B's
/// deliveries is finished at the kill.
const SLOW_ANSWER: Duration = Duration::from_secs(8);
const RETRY_SCHEDULE: (&str, &str) = ("HOOKLINE_RETRY_SCHEDULE", "1s,2s,3s");

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_with_deliveries_queued_and_retries_pending_loses_nothing() {
    let data_dir = temp_dir("sigkill");
    let server = Server::start_with_env(&data_dir, &[RETRY_SCHEDULE]);
    let http = Http::new();
    let (receiver_base, flaky) = flaky_receiver().await;

    let (account_id, key) = new_account(&http, &server, "Kill Nine Clinic").await;
    // A gets the created events and refuses each first attempt; B gets every event, slowly.
    let webhook_a = new_webhook(
        &http,
        &server,
        &key,
        json!({"type": "patient.created", "url": format!("{receiver_base}/a")}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let webhook_b = new_webhook(
        &http,
        &server,
        &key,
        json!({"events": ["patient.created", "patient.updated"], "url": format!("{receiver_base}/b")}),
    ).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let route_of = |webhook_id: &str| match webhook_id {
        w if w == webhook_a => "a",
        w if w == webhook_b => "b",
        other => panic!("unknown webhook {other}"),
    };

    // Publish all at once, so that deliveries pile up behind the slow receiver.
    let started = Instant::now();
    let mut publishing = tokio::task::JoinSet::new();
    for i in 0..EVENTS {
        let (http, url, account_id) = (http.clone(), server.api("/events"), account_id.clone());
        publishing.spawn(async move {
            let event_type = if i % 2 == 0 {
                "patient.created"
            } else {
                "patient.updated"
            };
            let event_id = format!("evt_sigkill_{i:03}");
            let (status, published) = call(
                &http,
                "POST",
                url,
                Some(ADMIN_KEY),
                Some(json!({
                    "accountId": account_id,
                    "type": event_type,
                    "id": event_id,
                    "payload": {"patientId": i, "firstName": "Ada"},
                })),
            )
            .await;
            assert_eq!(status, 202, "{published}");
            assert_eq!(published["id"], event_id.as_str());
            (
                event_id,
                event_type,
                published["deliveries"].as_u64().unwrap(),
            )
        });
    }
    // Every (event id, route) the receiver must end up seeing.
    let mut expected = BTreeSet::new();
    let mut created = 0;
    while let Some(result) = publishing.join_next().await {
        let (event_id, event_type, deliveries) = result.unwrap();
        let want: &[&str] = if event_type == "patient.created" {
            &["a", "b"]
        } else {
            &["b"]
        };
        assert_eq!(deliveries, want.len() as u64, "{event_id}: {event_type}");
        created += deliveries;
        expected.extend(want.iter().map(|route| (event_id.clone(), *route)));
    }
    let published_in = started.elapsed();
    assert_eq!(created as usize, expected.len());

    // Kill it while work is unfinished.
    let before = status_counts(&http, &server, &key).await;
    let hits_before = flaky.hits.lock().unwrap().len();
    assert!(
        before.0 > LOCAL_WORKERS && before.1 > 0,
        "at the kill, more deliveries must be pending than there are workers (so some are \
         queued) and some retrying: {before:?}"
    );
    server.sigkill();
    println!(
        "published {EVENTS} events ({created} deliveries) in {published_in:?}; at the SIGKILL \
         (pending, retrying, delivered, failed) = {before:?}, receiver hits {hits_before}"
    );

    let restarted = Instant::now();
    let server = Server::start_with_env(&data_dir, &[RETRY_SCHEDULE]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let counts = status_counts(&http, &server, &key).await;
        if counts.0 == 0 && counts.1 == 0 {
            break counts;
        }
        assert!(
            Instant::now() < deadline,
            "still unfinished 60 s after the restart: (pending, retrying, delivered, failed) = {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let settled_in = restarted.elapsed();

    let (_, _, delivered, failed) = after;
    assert_eq!(
        delivered + failed,
        created,
        "every delivery ends delivered or failed: {after:?}"
    );
    assert_eq!(
        failed, 0,
        "the receiver recovers, so nothing fails: {after:?}"
    );

    // The logs list every delivery, delivered, once per (event, webhook).
    let logs = all_logs(&http, &server, &key).await;
    assert_eq!(logs.len() as u64, created);
    let mut log_ids = BTreeMap::new();
    let mut retried = 0;
    for log in &logs {
        assert_eq!(log["status"], "delivered", "{log}");
        let pair = (
            log["eventId"].as_str().unwrap().to_string(),
            route_of(log["webhookId"].as_str().unwrap()),
        );
        let id = log["id"].as_str().unwrap().to_string();
        assert!(log_ids.insert(pair.clone(), id).is_none(), "{pair:?} twice");
        if log["retryAttempts"].as_u64().unwrap() > 0 {
            retried += 1;
        }
    }
    assert_eq!(
        log_ids.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "the logs hold exactly the published fan-out"
    );

    // The receiver saw every pair; each pair always under one webhook-id, the logged one.
    let hits = flaky.hits.lock().unwrap().clone();
    let mut by_pair: BTreeMap<(String, &str), Vec<String>> = BTreeMap::new();
    for hit in &hits {
        by_pair
            .entry((hit.event_id.clone(), hit.route))
            .or_default()
            .push(hit.webhook_id.clone());
    }
    assert_eq!(
        by_pair.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "the receiver saw every (event, webhook) and nothing else"
    );
    let mut duplicates = 0;
    for (pair, ids) in &by_pair {
        let distinct: BTreeSet<_> = ids.iter().collect();
        assert_eq!(
            distinct.len(),
            1,
            "{pair:?} came with several webhook-ids: {ids:?}"
        );
        assert_eq!(
            ids[0], log_ids[pair],
            "{pair:?}: webhook-id is the delivery's id"
        );
        // A's first attempt always got a 500, so a delivered A needs a second request.
        let needed = if pair.1 == "a" { 2 } else { 1 };
        assert!(
            ids.len() >= needed,
            "{pair:?} was delivered after only {} request(s)",
            ids.len()
        );
        duplicates += ids.len() - needed;
    }
    println!(
        "after the restart: settled in {settled_in:?}; (pending, retrying, delivered, failed) = \
         {after:?}; {retried} logged with retries; receiver hits {} in all, {duplicates} beyond \
         the minimum (duplicates from the kill)",
        hits.len()
    );
    server.stop();
}

// --- signatures, with the official package ---

/// Checks run by `standardwebhooks` in Python: JSON list of `{name, secret, headers, body}`
/// (body base64) on stdin; JSON list of `{name, ok, id?, error?}` on stdout. Only a
/// verification error counts as "not ok"; anything else crashes the script.
const VERIFY_PY: &str = r#"
import base64, json, sys
from standardwebhooks import Webhook, WebhookVerificationError
out = []
for check in json.load(sys.stdin):
    try:
        parsed = Webhook(check["secret"]).verify(base64.b64decode(check["body"]), check["headers"])
        out.append({"name": check["name"], "ok": True, "id": parsed["id"]})
    except WebhookVerificationError as error:
        out.append({"name": check["name"], "ok": False, "error": str(error)})
print(json.dumps(out))
"#;

fn python() -> PathBuf {
    let python = std::env::var_os("HOOKLINE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"))
        });
    let importable = Command::new(&python)
        .args(["-c", "import standardwebhooks"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        importable,
        "{} cannot import standardwebhooks: run infra/python-tools.sh (it installs \
         infra/requirements.txt into .venv), or point HOOKLINE_TEST_PYTHON at a Python that has it",
        python.display()
    );
    python
}

struct Check<'a> {
    name: &'a str,
    secret: &'a str,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

/// Runs every check through the package; returns each one's result by name.
fn verify_in_python(python: &Path, checks: &[Check]) -> BTreeMap<String, Value> {
    let input: Vec<Value> = checks
        .iter()
        .map(|c| {
            let headers: serde_json::Map<String, Value> = c
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.to_string(), json!(v.to_str().ok()?))))
                .collect();
            json!({
                "name": c.name,
                "secret": c.secret,
                "headers": headers,
                "body": STANDARD.encode(c.body),
            })
        })
        .collect();
    let mut child = Command::new(python)
        .args(["-c", VERIFY_PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_vec(&input).unwrap().as_slice())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the verify script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    results
        .into_iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r))
        .collect()
}

fn signatures(got: &RawReceived) -> Vec<&str> {
    got.headers["webhook-signature"]
        .to_str()
        .unwrap()
        .split(' ')
        .collect()
}

async fn next_raw(rx: &mut tokio::sync::mpsc::UnboundedReceiver<RawReceived>) -> RawReceived {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("delivered in time")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn signatures_verify_with_the_official_standardwebhooks_package_across_a_rotation() {
    let python = python(); // fail fast, before starting anything
    let server = Server::start(&temp_dir("swh"));
    let http = Http::new();
    let (hook_url, mut received) = raw_receiver().await;
    let (account_id, key) = new_account(&http, &server, "Standard Clinic").await;
    let webhook_id = new_webhook(
        &http,
        &server,
        &key,
        json!({"type": "patient.created", "url": hook_url}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let publish = |event_id: &'static str| {
        let (http, url, account_id) = (http.clone(), server.api("/events"), account_id.clone());
        async move {
            let (status, published) = call(
                &http,
                "POST",
                url,
                Some(ADMIN_KEY),
                Some(json!({
                    "accountId": account_id,
                    "type": "patient.created",
                    "id": event_id,
                    "payload": {"patientId": 4711, "firstName": "Ada", "note": "caf\u{e9} \u{2713}"},
                })),
            )
            .await;
            assert_eq!(
                (status, &published["deliveries"]),
                (202, &json!(1)),
                "{published}"
            );
        }
    };

    let s1 = signing_secret(&http, &server, &key, &webhook_id).await;
    publish("evt_swh_1").await;
    let d1 = next_raw(&mut received).await;
    assert_eq!(signatures(&d1).len(), 1, "one secret, one signature");

    let (status, body) = call(
        &http,
        "POST",
        server.api(&format!("/webhook/{webhook_id}/signing-secret/rotate")),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let s2 = signing_secret(&http, &server, &key, &webhook_id).await;
    assert_ne!(s1, s2, "the rotation made a new secret");
    publish("evt_swh_2").await;
    let d2 = next_raw(&mut received).await;
    assert_eq!(
        signatures(&d2).len(),
        2,
        "the new and the previous secret both sign during the grace period"
    );
    assert!(signatures(&d2).iter().all(|s| s.starts_with("v1,")));

    // The same bytes with one character changed, and D2 under D1's webhook-id.
    let tampered = String::from_utf8(d2.body.to_vec())
        .unwrap()
        .replacen("Ada", "Eve", 1);
    assert_ne!(tampered.as_bytes(), &d2.body[..]);
    let mut d2_other_id = d2.headers.clone();
    d2_other_id.insert("webhook-id", d1.headers["webhook-id"].clone());

    let started = Instant::now();
    let results = verify_in_python(
        &python,
        &[
            Check {
                name: "d1 with s1",
                secret: &s1,
                headers: &d1.headers,
                body: &d1.body,
            },
            Check {
                name: "d2 with s2",
                secret: &s2,
                headers: &d2.headers,
                body: &d2.body,
            },
            Check {
                name: "d2 with s1 (grace)",
                secret: &s1,
                headers: &d2.headers,
                body: &d2.body,
            },
            Check {
                name: "d1 with s2",
                secret: &s2,
                headers: &d1.headers,
                body: &d1.body,
            },
            Check {
                name: "d2 tampered with s2",
                secret: &s2,
                headers: &d2.headers,
                body: tampered.as_bytes(),
            },
            Check {
                name: "d2 tampered with s1",
                secret: &s1,
                headers: &d2.headers,
                body: tampered.as_bytes(),
            },
            Check {
                name: "d2 other webhook-id with s2",
                secret: &s2,
                headers: &d2_other_id,
                body: &d2.body,
            },
        ],
    );
    println!(
        "standardwebhooks ({}) ran {} checks in {:?}: {}",
        python.display(),
        results.len(),
        started.elapsed(),
        serde_json::to_string(&results.values().collect::<Vec<_>>()).unwrap()
    );
    let ok = |name: &str| results[name]["ok"].as_bool().unwrap();
    assert!(ok("d1 with s1"), "{}", results["d1 with s1"]);
    assert_eq!(results["d1 with s1"]["id"], "evt_swh_1");
    assert!(ok("d2 with s2"), "{}", results["d2 with s2"]);
    assert_eq!(results["d2 with s2"]["id"], "evt_swh_2");
    assert!(
        ok("d2 with s1 (grace)"),
        "{}",
        results["d2 with s1 (grace)"]
    );
    for refused in [
        "d1 with s2",
        "d2 tampered with s2",
        "d2 tampered with s1",
        "d2 other webhook-id with s2",
    ] {
        assert!(!ok(refused), "{refused} verified: {}", results[refused]);
        assert_eq!(results[refused]["error"], "No matching signature found");
    }
    server.stop();
}
