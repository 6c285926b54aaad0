//! `hookline serve` (a release build) under load, with the receiver on 127.0.0.1.

use crate::receiver::{Arrival, Receiver};
use crate::stats::{Percentiles, ms};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ADMIN_KEY: &str = "bench-admin-key-0123456789abcdefghij";
const EVENT_TYPE: &str = "patient.created";
/// How long the wait for deliveries may see no progress before the rest count as lost.
const IDLE_LIMIT: Duration = Duration::from_secs(30);

/// A `hookline serve` process on a fresh data directory and an ephemeral port.
pub struct Server {
    child: Child,
    pub base: String,
    data_dir: PathBuf,
    peak_rss_kib: Arc<AtomicU64>,
}

impl Server {
    pub fn start(binary: &Path) -> Self {
        // Each run starts on a quiet disk: the previous run's writes flushed, not competing
        // with this run's.
        let _ = Command::new("sync").status();
        std::thread::sleep(Duration::from_secs(2));
        let data_dir = std::env::temp_dir().join(format!(
            "hookline-bench-{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ));
        std::fs::create_dir_all(&data_dir).unwrap();
        let log = std::fs::File::create(data_dir.join("server.log")).unwrap();
        let mut child = Command::new(binary)
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .env("HOOKLINE_ADMIN_KEY", ADMIN_KEY)
            // The burst run's one account has 10,000 webhooks (the default quota is 500).
            .env("HOOKLINE_MAX_WEBHOOKS", "10000")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("hookline serve exited before it printed its address")
                .unwrap();
            if let Some(rest) = line.strip_prefix("Hookline is running at ") {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep reading stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let peak_rss_kib = Arc::new(AtomicU64::new(0));
        let (pid, peak) = (child.id(), peak_rss_kib.clone());
        std::thread::spawn(move || {
            let path = format!("/proc/{pid}/status");
            while let Ok(status) = std::fs::read_to_string(&path) {
                if let Some(kib) = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self {
            child,
            base,
            data_dir,
            peak_rss_kib,
        }
    }

    /// The highest resident set size the process has had so far, in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        if let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            self.peak_rss_kib.fetch_max(kib, Ordering::Relaxed);
        }
        (self.peak_rss_kib.load(Ordering::Relaxed) as f64 / 1024.0 * 10.0).round() / 10.0
    }

    /// The CPU time (user and system) the process has used so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds_of(&format!("/proc/{}/stat", self.child.id()))
    }

    fn api(&self, path: &str) -> String {
        format!("{}/api/v3{path}", self.base)
    }
}

/// The CPU time (user and system, all threads) a process has used so far, in seconds, from
/// its `/proc/<pid>/stat`.
fn cpu_seconds_of(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields 14 and 15 (utime, stime), counted after the parenthesised name.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / per_second
}

/// The CPU time the benchmark itself (load generator and receiver) has used so far.
fn harness_cpu_seconds() -> f64 {
    cpu_seconds_of("/proc/self/stat")
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn post_json(client: &reqwest::Client, url: &str, key: &str, body: &Value) -> Value {
    let response = loop {
        let response = client
            .post(url)
            .header("X-Api-Key", key)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        // Past its backlog bound the server asks publishers to wait (503 + Retry-After): do
        // as a client should, so the wait counts in the publish-to-receive latency.
        if response.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE {
            break response;
        }
        let wait = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(1);
        tokio::time::sleep(Duration::from_secs(wait)).await;
    };
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "POST {url} answered {status}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// An account with `webhooks` webhooks, each on its own receiver path. Returns its id.
async fn account_with_webhooks(server: &Server, receiver: &Receiver, webhooks: usize) -> String {
    let client = client();
    let account = post_json(
        &client,
        &server.api("/accounts"),
        ADMIN_KEY,
        &json!({"name": "Bench Clinic"}),
    )
    .await;
    let account_id = account["id"].as_str().unwrap().to_string();
    let key = account["apiKey"].as_str().unwrap().to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..32.min(webhooks))
        .map(|_| {
            let (client, next, key) = (client.clone(), next.clone(), key.clone());
            let (url, base) = (server.api("/webhook"), receiver.base.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= webhooks {
                        return;
                    }
                    post_json(
                        &client,
                        &url,
                        &key,
                        &json!({"type": EVENT_TYPE, "url": format!("{base}/hook/{i}")}),
                    )
                    .await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    account_id
}

/// When each event's publish request was sent and answered.
struct Published {
    sent: Vec<Instant>,
    acked: Vec<Instant>,
}

fn event_body(account_id: &str, i: usize) -> Value {
    json!({
        "accountId": account_id,
        "type": EVENT_TYPE,
        "id": format!("e{i}"),
        "payload": {"patientId": i, "firstName": "Ada", "lastName": "Lovelace",
                    "dateOfBirth": "1815-12-10", "site": {"id": 7, "name": "Main Street Clinic"}},
    })
}

/// Publishes `events` events, `concurrency` requests at a time, or paced at `rate` per second.
async fn publish(
    server: &Server,
    account_id: &str,
    events: usize,
    concurrency: usize,
    rate: Option<f64>,
) -> Published {
    let client = client();
    let url = server.api("/events");
    let times = Arc::new(std::sync::Mutex::new(vec![
        (Instant::now(), Instant::now());
        events
    ]));
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, next, times) =
                (client.clone(), url.clone(), next.clone(), times.clone());
            let account_id = account_id.to_string();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= events {
                        return;
                    }
                    if let Some(rate) = rate {
                        let due = start + Duration::from_secs_f64(i as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let body = event_body(&account_id, i);
                    let sent = Instant::now();
                    post_json(&client, &url, ADMIN_KEY, &body).await;
                    times.lock().unwrap()[i] = (sent, Instant::now());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let times = std::mem::take(&mut *times.lock().unwrap());
    Published {
        sent: times.iter().map(|t| t.0).collect(),
        acked: times.iter().map(|t| t.1).collect(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub name: String,
    pub webhooks: usize,
    pub events: usize,
    pub publish_concurrency: usize,
    /// Set for paced runs: events per second asked for.
    pub paced_rate: Option<f64>,
    pub expected_deliveries: usize,
    pub delivered: usize,
    pub lost: usize,
    pub duplicates: usize,
    /// Distinct deliveries per second from the first publish to the last arrival.
    pub deliveries_per_sec: f64,
    /// Events accepted per second (first publish sent to last acknowledged).
    pub publishes_per_sec: f64,
    pub seconds: f64,
    /// From sending the publish request to the delivery's arrival.
    pub latency_from_publish: Percentiles,
    /// From the publish acknowledgement to the delivery's arrival.
    pub latency_from_ack: Percentiles,
    pub peak_rss_mb: f64,
    /// The server's CPU time (user and system, all threads) from the first publish to the
    /// last arrival, over the deliveries: steadier than throughput on a shared machine.
    pub server_cpu_us_per_delivery: f64,
    /// The benchmark's own CPU time (load generator and receiver) over the same time, over
    /// the deliveries: what of the machine the server did not have.
    pub harness_cpu_us_per_delivery: f64,
}

/// What the server used during a run.
struct ServerUse {
    peak_rss_mb: f64,
    /// CPU time from the first publish to the last arrival.
    cpu_seconds: f64,
    /// The benchmark's own CPU time over the same time.
    harness_cpu_seconds: f64,
}

fn summarize(
    name: &str,
    webhooks: usize,
    concurrency: usize,
    rate: Option<f64>,
    published: &Published,
    arrivals: Vec<Arrival>,
    server: ServerUse,
) -> RunResult {
    let events = published.sent.len();
    let expected = events * webhooks;
    let mut first_arrival: HashMap<String, (usize, Instant)> = HashMap::with_capacity(expected);
    let mut duplicates = 0;
    for arrival in &arrivals {
        let Some(index) = arrival
            .event_id
            .strip_prefix('e')
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|i| *i < events)
        else {
            continue;
        };
        match first_arrival.entry(arrival.delivery_id.clone()) {
            std::collections::hash_map::Entry::Occupied(_) => duplicates += 1,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert((index, arrival.at));
            }
        }
    }
    let start = *published.sent.iter().min().unwrap();
    let last_ack = *published.acked.iter().max().unwrap();
    let last_arrival = first_arrival
        .values()
        .map(|(_, at)| *at)
        .max()
        .unwrap_or(start);
    let elapsed = last_arrival.duration_since(start).as_secs_f64().max(1e-9);
    let (from_publish, from_ack) = first_arrival
        .values()
        .map(|(i, at)| {
            (
                at.saturating_duration_since(published.sent[*i]),
                at.saturating_duration_since(published.acked[*i]),
            )
        })
        .unzip();
    let delivered = first_arrival.len();
    if std::env::var_os("HOOKLINE_BENCH_TIMELINE").is_some() {
        // Per second of the run: deliveries that arrived, and the worst latency among them.
        let mut seconds: std::collections::BTreeMap<u64, (usize, Duration)> = Default::default();
        for (i, at) in first_arrival.values() {
            let slot = seconds
                .entry(at.duration_since(start).as_secs())
                .or_default();
            slot.0 += 1;
            slot.1 = slot.1.max(at.saturating_duration_since(published.sent[*i]));
        }
        for (second, (count, worst)) in seconds {
            eprintln!(
                "  {name} t={second}s: {count} delivered, worst {} ms",
                ms(worst)
            );
        }
    }
    RunResult {
        name: name.into(),
        webhooks,
        events,
        publish_concurrency: concurrency,
        paced_rate: rate,
        expected_deliveries: expected,
        delivered,
        lost: expected.saturating_sub(delivered),
        duplicates,
        deliveries_per_sec: (delivered as f64 / elapsed).round(),
        publishes_per_sec: (events as f64 / last_ack.duration_since(start).as_secs_f64().max(1e-9))
            .round(),
        seconds: (elapsed * 100.0).round() / 100.0,
        latency_from_publish: Percentiles::of(from_publish),
        latency_from_ack: Percentiles::of(from_ack),
        peak_rss_mb: server.peak_rss_mb,
        server_cpu_us_per_delivery: (server.cpu_seconds * 1e6 / delivered.max(1) as f64).round(),
        harness_cpu_us_per_delivery: (server.harness_cpu_seconds * 1e6 / delivered.max(1) as f64)
            .round(),
    }
}

/// One run on a fresh server: `webhooks` webhooks, `events` events published.
pub async fn run(
    binary: &Path,
    receiver: &Receiver,
    name: &str,
    webhooks: usize,
    events: usize,
    concurrency: usize,
    rate: Option<f64>,
) -> RunResult {
    let server = Server::start(binary);
    let account_id = account_with_webhooks(&server, receiver, webhooks).await;
    receiver.take();
    let (cpu_before, harness_before) = (server.cpu_seconds(), harness_cpu_seconds());
    let published = publish(&server, &account_id, events, concurrency, rate).await;
    receiver.wait_for(events * webhooks, IDLE_LIMIT).await;
    let (cpu, harness_cpu) = (
        server.cpu_seconds() - cpu_before,
        harness_cpu_seconds() - harness_before,
    );
    let result = summarize(
        name,
        webhooks,
        concurrency,
        rate,
        &published,
        receiver.take(),
        ServerUse {
            peak_rss_mb: server.peak_rss_mb(),
            cpu_seconds: cpu,
            harness_cpu_seconds: harness_cpu,
        },
    );
    eprintln!("{}", crate::report::run_line(&result));
    result
}

#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    pub concurrency: usize,
    pub requests: usize,
    pub requests_per_sec: f64,
    pub latency: Percentiles,
}

/// The load generator POSTing straight to the receiver: what the two can do without Hookline.
pub async fn ceiling(receiver: &Receiver, requests: usize, concurrency: usize) -> Ceiling {
    let client = client();
    let url = format!("{}/hook/ceiling", receiver.base);
    let body = serde_json::to_vec(&json!({"id": "e0", "type": EVENT_TYPE,
        "timestamp": "2026-11-23T00:00:00Z", "payload": event_body("acct", 0)["payload"]}))
    .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(requests)));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, body, next, latencies) = (
                client.clone(),
                url.clone(),
                body.clone(),
                next.clone(),
                latencies.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        return;
                    }
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("webhook-id", format!("ceiling{i}"))
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert!(response.status().is_success());
                    latencies.lock().unwrap().push(sent.elapsed());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = start.elapsed();
    receiver.take();
    let result = Ceiling {
        concurrency,
        requests,
        requests_per_sec: (requests as f64 / elapsed.as_secs_f64()).round(),
        latency: Percentiles::of(std::mem::take(&mut *latencies.lock().unwrap())),
    };
    eprintln!(
        "ceiling c={concurrency}: {} req/s, p50 {} ms, p99 {} ms",
        result.requests_per_sec, result.latency.p50_ms, result.latency.p99_ms
    );
    result
}

#[derive(Debug, Clone, Serialize)]
pub struct FanOutBurst {
    pub webhooks: usize,
    pub delivered: usize,
    pub lost: usize,
    pub duplicates: usize,
    /// From sending the publish request to the last delivery's arrival.
    pub seconds_to_last: f64,
    pub publish_ack_ms: f64,
    pub peak_rss_mb: f64,
    /// Peak RSS before the publish (the webhooks created, nothing in flight).
    pub rss_before_publish_mb: f64,
}

/// One event fanned out to `webhooks` webhooks: every delivery is in flight at once.
pub async fn fan_out_burst(binary: &Path, receiver: &Receiver, webhooks: usize) -> FanOutBurst {
    let server = Server::start(binary);
    let account_id = account_with_webhooks(&server, receiver, webhooks).await;
    receiver.take();
    let rss_before = server.peak_rss_mb();
    let (cpu_before, harness_before) = (server.cpu_seconds(), harness_cpu_seconds());
    let published = publish(&server, &account_id, 1, 1, None).await;
    receiver.wait_for(webhooks, IDLE_LIMIT).await;
    let (cpu, harness_cpu) = (
        server.cpu_seconds() - cpu_before,
        harness_cpu_seconds() - harness_before,
    );
    let result = summarize(
        "fan-out burst",
        webhooks,
        1,
        None,
        &published,
        receiver.take(),
        ServerUse {
            peak_rss_mb: server.peak_rss_mb(),
            cpu_seconds: cpu,
            harness_cpu_seconds: harness_cpu,
        },
    );
    let burst = FanOutBurst {
        webhooks,
        delivered: result.delivered,
        lost: result.lost,
        duplicates: result.duplicates,
        seconds_to_last: result.seconds,
        publish_ack_ms: ms(published.acked[0].duration_since(published.sent[0])),
        peak_rss_mb: result.peak_rss_mb,
        rss_before_publish_mb: rss_before,
    };
    eprintln!(
        "fan-out burst {webhooks}: last arrival after {} s, publish answered in {} ms, lost {}, peak RSS {} MB",
        burst.seconds_to_last, burst.publish_ack_ms, burst.lost, burst.peak_rss_mb
    );
    burst
}
