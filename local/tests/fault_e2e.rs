//! End to end, faults: `hookline serve` under load, its receiver failing a third of the
//! attempts (500s, answers slower than the timeout, connections closed without an answer), is
//! killed with SIGKILL three times at random moments and restarted. Every accepted delivery
//! ends delivered or failed, none is lost, every request of one delivery carries its
//! `webhook-id`, and the status counts equal the logs (DESIGN 4, at least once).

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const EVENTS: usize = 1_500;
const PUBLISHERS: usize = 16;
const KILLS: usize = 3;
/// Five attempts a second or two apart, and a timeout a slow answer overruns.
const ENV: &[(&str, &str)] = &[
    ("HOOKLINE_RETRY_SCHEDULE", "1s,2s,2s,2s"),
    ("HOOKLINE_HTTP_TIMEOUT", "1s"),
];
const SLOW_ANSWER: Duration = Duration::from_millis(1_500);

/// What one request to the receiver was and what it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    Error500,
    TooSlow,
    Closed,
}

#[derive(Debug, Clone)]
struct Hit {
    route: String,
    event_id: String,
    webhook_id: String,
    answer: Answer,
}

#[derive(Default)]
struct Faulty {
    hits: Mutex<Vec<Hit>>,
    requests: AtomicU64,
}

impl Faulty {
    /// One request in three fails, a third of those each way; which ones is spread by a
    /// multiplicative hash of the request's number (no pattern a retry could follow).
    fn answer(&self) -> Answer {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        match n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32 & 0xff {
            0..=28 => Answer::Error500,
            29..=56 => Answer::TooSlow,
            57..=85 => Answer::Closed,
            _ => Answer::Ok,
        }
    }
}

/// A plain HTTP/1.1 receiver on 127.0.0.1 (keep-alive), written on TCP so that it can close a
/// connection in the middle of a request.
async fn faulty_receiver() -> (String, Arc<Faulty>) {
    let state = Arc::new(Faulty::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serving = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(serve_connection(stream, serving.clone()));
        }
    });
    (base, state)
}

async fn serve_connection(mut stream: TcpStream, state: Arc<Faulty>) {
    let mut buffer = Vec::new();
    loop {
        // The head, then the body by its Content-Length.
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
        let header = |name: &str| {
            head.lines()
                .find_map(|line| {
                    let (key, value) = line.split_once(':')?;
                    key.eq_ignore_ascii_case(name)
                        .then(|| value.trim().to_string())
                })
                .unwrap_or_default()
        };
        let length: usize = header("content-length").parse().unwrap_or(0);
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Value =
            serde_json::from_slice(&buffer[head_end..head_end + length]).unwrap_or_default();
        buffer.drain(..head_end + length);
        let route = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let answer = state.answer();
        state.hits.lock().unwrap().push(Hit {
            route,
            event_id: body["id"].as_str().unwrap_or_default().to_string(),
            webhook_id: header("webhook-id"),
            answer,
        });
        let reply: &[u8] = match answer {
            Answer::Ok => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            Answer::Error500 => {
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops"
            }
            Answer::TooSlow => {
                tokio::time::sleep(SLOW_ANSWER).await;
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
            }
            Answer::Closed => return,
        };
        if stream.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// `(pending, retrying, delivered, failed)`, or `None` while the server cannot answer.
async fn status_counts(http: &reqwest::Client, base: &str, key: &str) -> Option<[u64; 4]> {
    let url = format!("{base}/api/v3/webhook/status");
    let response = http.get(url).bearer_auth(key).send().await.ok()?;
    let body: Value = response.json().await.ok()?;
    let n = |field: &str| body[field].as_u64();
    Some([n("pending")?, n("retrying")?, n("delivered")?, n("failed")?])
}

async fn all_logs(http: &reqwest::Client, server: &Server, key: &str) -> Vec<Value> {
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
        if content.is_empty() {
            return all;
        }
    }
    unreachable!()
}

/// A pseudo-random duration in `[low, high)`, seeded by the clock.
fn random_between(low: Duration, high: Duration) -> Duration {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let spread = (high - low).as_millis() as u64;
    low + Duration::from_millis(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) % spread.max(1))
}

#[tokio::test(flavor = "multi_thread")]
async fn three_sigkills_under_faulty_load_lose_nothing() {
    let data_dir = temp_dir("faults");
    let mut server = Server::start_with_env(&data_dir, ENV);
    let http = reqwest::Client::new();
    let (receiver_base, faulty) = faulty_receiver().await;
    let (account_id, key) = new_account(&http, &server, "Fault Clinic").await;
    let mut webhooks = BTreeMap::new();
    for route in ["/a", "/b"] {
        let webhook = new_webhook(
            &http,
            &server,
            &key,
            json!({"events": ["*"], "url": format!("{receiver_base}{route}")}),
        )
        .await;
        webhooks.insert(webhook["id"].as_str().unwrap().to_string(), route);
    }

    // Publishers go on through the kills: a publish that got no answer is sent again, with
    // the same id, to the restarted server (idempotent publish), until it is accepted.
    let base = Arc::new(RwLock::new(server.base.clone()));
    let next_event = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut publishers = tokio::task::JoinSet::new();
    for _ in 0..PUBLISHERS {
        let (http, base, next_event, accepted, account_id) = (
            http.clone(),
            base.clone(),
            next_event.clone(),
            accepted.clone(),
            account_id.clone(),
        );
        publishers.spawn(async move {
            loop {
                let i = next_event.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= EVENTS {
                    return;
                }
                let body = json!({
                    "accountId": account_id,
                    "type": "patient.created",
                    "id": format!("evt_fault_{i:05}"),
                    "payload": {"patientId": i},
                });
                loop {
                    let url = format!("{}/api/v3/events", base.read().unwrap());
                    let sent = http
                        .post(url)
                        .bearer_auth(ADMIN_KEY)
                        .json(&body)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    match sent.map(|r| r.status().as_u16()) {
                        Ok(202) => break,
                        // 503: the backlog bound; anything else (killed mid-request): again.
                        Ok(status) => assert!(status >= 500, "publish answered {status}"),
                        Err(_) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                accepted.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    let mut at_kills = Vec::new();
    for _ in 0..KILLS {
        tokio::time::sleep(random_between(
            Duration::from_millis(500),
            Duration::from_millis(3_000),
        ))
        .await;
        let counts = status_counts(&http, &server.base, &key).await;
        at_kills.push((started.elapsed(), accepted.load(Ordering::Relaxed), counts));
        server.sigkill();
        server = Server::start_with_env(&data_dir, ENV);
        *base.write().unwrap() = server.base.clone();
    }
    while let Some(done) = publishers.join_next().await {
        done.unwrap();
    }
    let published_in = started.elapsed();
    let expected_deliveries = (EVENTS * webhooks.len()) as u64;

    // Settled: nothing pending or retrying.
    let deadline = Instant::now() + Duration::from_secs(180);
    let counts = loop {
        if let Some(counts) = status_counts(&http, &server.base, &key).await
            && counts[0] == 0
            && counts[1] == 0
        {
            break counts;
        }
        assert!(Instant::now() < deadline, "unsettled after 3 minutes");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let settled_in = started.elapsed();
    let [_, _, delivered, failed] = counts;
    assert_eq!(
        delivered + failed,
        expected_deliveries,
        "every delivery ends delivered or failed: {counts:?}"
    );

    // The logs: one entry per (event, webhook), and the counts are theirs.
    let logs = all_logs(&http, &server, &key).await;
    let mut logged: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
    for log in &logs {
        let pair = (
            log["eventId"].as_str().unwrap().to_string(),
            log["webhookId"].as_str().unwrap().to_string(),
        );
        let entry = (
            log["id"].as_str().unwrap().to_string(),
            log["status"].as_str().unwrap().to_string(),
        );
        assert!(
            logged.insert(pair.clone(), entry).is_none(),
            "{pair:?} twice"
        );
    }
    assert_eq!(logged.len() as u64, expected_deliveries, "none lost");
    let logged_delivered = logged.values().filter(|(_, s)| s == "delivered").count() as u64;
    let logged_failed = logged.values().filter(|(_, s)| s == "failed").count() as u64;
    assert_eq!(
        (logged_delivered, logged_failed),
        (delivered, failed),
        "the status counts equal the logs"
    );

    // The receiver: every request of a delivery under its one webhook-id; each delivered one
    // got a 200 at least once.
    let hits = faulty.hits.lock().unwrap().clone();
    let mut by_delivery: BTreeMap<String, Vec<&Hit>> = BTreeMap::new();
    for hit in &hits {
        by_delivery
            .entry(hit.webhook_id.clone())
            .or_default()
            .push(hit);
    }
    let routes: BTreeMap<&str, &str> = webhooks.iter().map(|(w, r)| (w.as_str(), *r)).collect();
    let mut extra_successes = 0;
    for ((event_id, webhook_id), (delivery_id, status)) in &logged {
        let requests = by_delivery
            .get(delivery_id)
            .unwrap_or_else(|| panic!("{delivery_id} never reached the receiver"));
        for hit in requests {
            assert_eq!(&hit.event_id, event_id, "{delivery_id}: another event's id");
            assert_eq!(
                hit.route,
                routes[webhook_id.as_str()],
                "{delivery_id}: wrong URL"
            );
        }
        let successes = requests.iter().filter(|h| h.answer == Answer::Ok).count();
        if status == "delivered" {
            assert!(successes >= 1, "{delivery_id} delivered without a 200");
            extra_successes += successes - 1;
        }
    }
    assert_eq!(
        by_delivery.keys().collect::<BTreeSet<_>>(),
        logged.values().map(|(id, _)| id).collect::<BTreeSet<_>>(),
        "the receiver got nothing but the logged deliveries"
    );
    let by_answer = |answer: Answer| hits.iter().filter(|h| h.answer == answer).count();
    println!(
        "{EVENTS} events x {} webhooks = {expected_deliveries} deliveries; SIGKILLs at \
         (elapsed, publishes accepted, [pending, retrying, delivered, failed]) {at_kills:?}; \
         published in {published_in:?}, settled in {settled_in:?}; delivered {delivered}, \
         failed {failed}; receiver requests {} (200: {}, 500: {}, too slow: {}, closed: {}); \
         deliveries answered 200 more than once (duplicates): {extra_successes}",
        webhooks.len(),
        hits.len(),
        by_answer(Answer::Ok),
        by_answer(Answer::Error500),
        by_answer(Answer::TooSlow),
        by_answer(Answer::Closed),
    );
    server.stop();
    let _ = std::fs::remove_dir_all(&data_dir);
}
