//! End to end: delivery outcomes and retries (`HOOKLINE_RETRY_SCHEDULE=1s,2s,3s`), manual
//! retries, 410, Retry-After, redirects, ping and test events, against the real `hookline serve`
//! and scripted receivers on 127.0.0.1.

mod common;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::*;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SCHEDULE: &[(&str, &str)] = &[("HOOKLINE_RETRY_SCHEDULE", "1s,2s,3s")];

/// What a scripted receiver answers, in order; once the script is used up it answers `then`.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16) -> Reply {
    Reply {
        status,
        headers: vec![],
        body: String::new(),
    }
}

struct Hit {
    at: Instant,
    headers: HeaderMap,
    body: String,
}

#[derive(Clone, Default)]
struct Script {
    replies: Arc<Mutex<Vec<Reply>>>,
    then: Arc<Mutex<Option<Reply>>>,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Script {
    fn hits(&self) -> usize {
        self.hits.lock().unwrap().len()
    }

    fn times(&self) -> Vec<Instant> {
        self.hits.lock().unwrap().iter().map(|h| h.at).collect()
    }

    /// From now on, answer `reply` to everything.
    fn recover(&self, reply: Reply) {
        self.replies.lock().unwrap().clear();
        *self.then.lock().unwrap() = Some(reply);
    }
}

async fn answer(State(script): State<Script>, headers: HeaderMap, body: String) -> Response {
    script.hits.lock().unwrap().push(Hit {
        at: Instant::now(),
        headers,
        body: body.clone(),
    });
    let next = {
        let mut replies = script.replies.lock().unwrap();
        if replies.is_empty() {
            script.then.lock().unwrap().clone().unwrap_or(reply(200))
        } else {
            replies.remove(0)
        }
    };
    // A ping gets its pong back, the way a real endpoint verifies itself.
    let body = match serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("ping").cloned())
    {
        Some(ping) if next.body == "PONG" => json!({ "pong": ping }).to_string(),
        _ => next.body.clone(),
    };
    let mut response = (StatusCode::from_u16(next.status).unwrap(), body).into_response();
    for (name, value) in next.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// A receiver at `/hook` following `replies`, then `then` (200 when unset); `/elsewhere`
/// counts what reaches it (a redirect target).
async fn scripted(replies: Vec<Reply>, then: Option<Reply>) -> (String, Script, Script) {
    let script = Script {
        replies: Arc::new(Mutex::new(replies)),
        then: Arc::new(Mutex::new(then)),
        ..Default::default()
    };
    let elsewhere = Script::default();
    let app = Router::new()
        .route("/hook", post(answer).with_state(script.clone()))
        .route("/elsewhere", post(answer).with_state(elsewhere.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, script, elsewhere)
}

struct Fixture {
    server: Server,
    http: reqwest::Client,
    account_id: String,
    key: String,
}

impl Fixture {
    async fn start(name: &str) -> Self {
        let server = Server::start_with_env(&temp_dir(name), SCHEDULE);
        let http = reqwest::Client::new();
        let (status, account) = call(
            &http,
            "POST",
            server.api("/accounts"),
            Some(ADMIN_KEY),
            Some(json!({"name": name})),
        )
        .await;
        assert_eq!(status, 201, "{account}");
        Self {
            account_id: account["id"].as_str().unwrap().into(),
            key: account["apiKey"].as_str().unwrap().into(),
            server,
            http,
        }
    }

    async fn as_account(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        call(
            &self.http,
            method,
            self.server.api(path),
            Some(&self.key),
            body,
        )
        .await
    }

    async fn webhook(&self, url: &str, event_type: &str) -> String {
        let (status, webhook) = self
            .as_account(
                "POST",
                "/webhook",
                Some(json!({"url": url, "type": event_type})),
            )
            .await;
        assert_eq!(status, 201, "{webhook}");
        webhook["id"].as_str().unwrap().into()
    }

    async fn publish(&self, event_type: &str) -> Value {
        let (status, published) = call(
            &self.http,
            "POST",
            self.server.api("/events"),
            Some(ADMIN_KEY),
            Some(json!({"accountId": self.account_id, "type": event_type, "payload": {"n": 1}})),
        )
        .await;
        assert_eq!(status, 202, "{published}");
        published
    }

    async fn log_of_event(&self, event_id: &str) -> Value {
        let (_, logs) = self.as_account("GET", "/webhook/logs?size=100", None).await;
        let entry = logs["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["eventId"] == event_id)
            .unwrap_or_else(|| panic!("no log of {event_id}: {logs}"))
            .clone();
        let (_, detail) = self
            .as_account(
                "GET",
                &format!("/webhook/logs/{}", entry["id"].as_str().unwrap()),
                None,
            )
            .await;
        detail
    }

    /// Polls the event's delivery until its status is `status` (bounded).
    async fn until_status(&self, event_id: &str, status: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log_of_event(event_id).await;
            if log["status"] == status {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "the delivery never became {status}: {log}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn counts(&self) -> Value {
        let (status, counts) = self.as_account("GET", "/webhook/status", None).await;
        assert_eq!(status, 200, "{counts}");
        counts
    }
}

fn spacing(times: &[Instant]) -> Vec<f64> {
    times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect()
}

fn assert_spaced(times: &[Instant], expected: &[f64]) {
    let gaps = spacing(times);
    assert_eq!(gaps.len(), expected.len(), "gaps {gaps:?}");
    for (gap, want) in gaps.iter().zip(expected) {
        assert!(
            (gap - want).abs() <= 1.0,
            "attempts spaced {gaps:?}, expected {expected:?} (within 1 s)"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_twice_then_succeeding_takes_three_attempts_on_schedule() {
    let f = Fixture::start("retry-3").await;
    let (url, script, _) = scripted(vec![reply(500), reply(502)], None).await;
    f.webhook(&url, "patient.created").await;
    let event_id = f.publish("patient.created").await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let log = f
        .until_status(&event_id, "delivered", Duration::from_secs(15))
        .await;
    assert_eq!(script.hits(), 3);
    assert_spaced(&script.times(), &[1.0, 2.0]);
    let statuses: Vec<Value> = log["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["statusCode"].clone())
        .collect();
    assert_eq!(statuses, vec![json!(500), json!(502), json!(200)]);
    assert_eq!(log["retryAttempts"], 2);
    assert_eq!(log["lastResponseStatus"], 200);
    assert!(log["nextRetryTimestamp"].is_null());
    // Every attempt of one delivery carries the same webhook-id.
    let ids: Vec<String> = script
        .hits
        .lock()
        .unwrap()
        .iter()
        .map(|h| h.headers["webhook-id"].to_str().unwrap().to_string())
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(ids[0], log["id"].as_str().unwrap());
    assert_eq!(
        f.counts().await,
        json!({"pending": 0, "retrying": 0, "delivered": 1, "failed": 0})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn always_failing_ends_failed_after_four_attempts_and_a_manual_retry_delivers() {
    let f = Fixture::start("retry-fail").await;
    let (url, script, _) = scripted(vec![], Some(reply(500))).await;
    let webhook_id = f.webhook(&url, "patient.created").await;
    let first = f.publish("patient.created").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let second = f.publish("patient.created").await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let log = f
        .until_status(&first, "failed", Duration::from_secs(20))
        .await;
    f.until_status(&second, "failed", Duration::from_secs(10))
        .await;
    assert_eq!(log["attempts"].as_array().unwrap().len(), 4);
    assert_eq!(log["retryAttempts"], 3);
    assert_eq!(script.hits(), 8, "four attempts each, no more");
    let first_times: Vec<Instant> = {
        let hits = script.hits.lock().unwrap();
        hits.iter()
            .filter(|h| h.body.contains(&first))
            .map(|h| h.at)
            .collect()
    };
    assert_spaced(&first_times, &[1.0, 2.0, 3.0]);
    assert_eq!(
        f.counts().await,
        json!({"pending": 0, "retrying": 0, "delivered": 0, "failed": 2})
    );
    let (_, failed) = f
        .as_account("GET", "/webhook/logs?status=failed", None)
        .await;
    assert_eq!(failed["total"], 2);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        script.hits(),
        8,
        "a failed delivery is not retried on its own"
    );

    // The receiver recovers; a manual retry of one delivery delivers it.
    script.recover(reply(200));
    let (status, retried) = f
        .as_account(
            "POST",
            &format!("/webhook/logs/{}/retry", log["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 202, "{retried}");
    assert_eq!(retried["status"], "pending");
    let log = f
        .until_status(&first, "delivered", Duration::from_secs(10))
        .await;
    assert_eq!(log["attempts"].as_array().unwrap().len(), 5);
    // Retrying what is being retried, or an unknown id, is refused.
    let (status, _) = f
        .as_account(
            "POST",
            "/webhook/logs/dlv_01ARZ3NDEKTSV4RRFFQ69G5FAV/retry",
            None,
        )
        .await;
    assert_eq!(status, 404);

    // The bulk retry sends every remaining failed delivery of the webhook.
    let (status, bulk) = f
        .as_account(
            "POST",
            "/webhook/retry",
            Some(json!({"webhookId": webhook_id})),
        )
        .await;
    assert_eq!((status, bulk), (202, json!({"retried": 1})));
    f.until_status(&second, "delivered", Duration::from_secs(10))
        .await;
    assert_eq!(
        f.counts().await,
        json!({"pending": 0, "retrying": 0, "delivered": 2, "failed": 0}),
        "the counts follow every change exactly"
    );
    let (status, bulk) = f.as_account("POST", "/webhook/retry", None).await;
    assert_eq!((status, bulk), (202, json!({"retried": 0})));
}

#[tokio::test(flavor = "multi_thread")]
async fn gone_410_deactivates_retry_after_postpones_and_redirects_fail() {
    let f = Fixture::start("outcomes").await;

    // 410: one attempt, failed, the webhook inactive, and nothing more is sent to it.
    let (gone_url, gone, _) = scripted(vec![], Some(reply(410))).await;
    let gone_id = f.webhook(&gone_url, "patient.created").await;
    let event = f.publish("patient.created").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let log = f
        .until_status(&event, "failed", Duration::from_secs(10))
        .await;
    assert_eq!(log["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(log["lastResponseStatus"], 410);
    let (_, webhook) = f
        .as_account("GET", &format!("/webhook/{gone_id}"), None)
        .await;
    assert_eq!(webhook["active"], false);
    assert_eq!(f.publish("patient.created").await["deliveries"], 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(gone.hits(), 1);

    // 503 with Retry-After: 3 pushes the next attempt past the schedule's 1 s.
    let busy = Reply {
        status: 503,
        headers: vec![("retry-after", "3".into())],
        body: String::new(),
    };
    let (busy_url, busy_script, _) = scripted(vec![busy], None).await;
    f.webhook(&busy_url, "reading.weight").await;
    let event = f.publish("reading.weight").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    f.until_status(&event, "delivered", Duration::from_secs(15))
        .await;
    let gaps = spacing(&busy_script.times());
    assert_eq!(gaps.len(), 1);
    assert!(
        (2.9..4.5).contains(&gaps[0]),
        "Retry-After 3 s honoured (not the 1 s schedule): {gaps:?}"
    );

    // A redirect is not followed: a failure with its status, the target never reached.
    let (redirect_url, redirecting, elsewhere) = scripted(vec![], None).await;
    let moved = Reply {
        status: 307,
        headers: vec![("location", redirect_url.replace("/hook", "/elsewhere"))],
        body: String::new(),
    };
    redirecting.recover(moved);
    f.webhook(&redirect_url, "order.status").await;
    let event = f.publish("order.status").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let log = f
        .until_status(&event, "retrying", Duration::from_secs(10))
        .await;
    assert_eq!(log["lastResponseStatus"], 307);
    assert_eq!(elsewhere.hits(), 0, "the redirect was not followed");
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_checks_the_pong_and_test_events_reach_the_callers_webhooks() {
    let f = Fixture::start("ping").await;
    let pong = Reply {
        status: 200,
        headers: vec![],
        body: "PONG".into(),
    };
    let (url, script, _) = scripted(vec![], Some(pong)).await;
    let webhook_id = f.webhook(&url, "reading.*").await;
    let (status, ping) = f
        .as_account("POST", &format!("/webhook/{webhook_id}/ping"), None)
        .await;
    assert_eq!(status, 200, "{ping}");
    assert_eq!(
        (ping["ok"].clone(), ping["status"].clone()),
        (json!(true), json!(200))
    );
    assert!(ping["latencyMs"].is_u64());
    assert!(ping.get("error").is_none());
    let sent: Value = serde_json::from_str(&script.hits.lock().unwrap()[0].body).unwrap();
    assert!(sent["ping"].as_str().is_some_and(|p| !p.is_empty()));

    // A wrong answer is not ok, and says why.
    script.recover(Reply {
        status: 200,
        headers: vec![],
        body: r#"{"pong":"something else"}"#.into(),
    });
    let (_, ping) = f
        .as_account("POST", &format!("/webhook/{webhook_id}/ping"), None)
        .await;
    assert_eq!(ping["ok"], false);
    assert!(ping["error"].as_str().unwrap().contains("pong"), "{ping}");
    script.recover(reply(500));
    let (_, ping) = f
        .as_account("POST", &format!("/webhook/{webhook_id}/ping"), None)
        .await;
    assert_eq!(
        (ping["ok"].clone(), ping["status"].clone()),
        (json!(false), json!(500))
    );
    script.recover(reply(200));

    // Test events: Impilo's blood-pressure body, a weight reading's shape, any type.
    let hits_before = script.hits();
    let (status, published) = f
        .as_account(
            "POST",
            "/test/blood-pressure-webhook",
            Some(json!({"patientId": 1, "systolic": 120, "diastolic": 80, "heartRate": 100})),
        )
        .await;
    assert_eq!(status, 202, "{published}");
    assert_eq!(published["deliveries"], 1);
    let (status, _) = f.as_account("POST", "/test/weight-webhook", None).await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    while script.hits() < hits_before + 2 {
        assert!(Instant::now() < deadline, "test events not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bodies: Vec<Value> = script.hits.lock().unwrap()[hits_before..]
        .iter()
        .map(|h| serde_json::from_str(&h.body).unwrap())
        .collect();
    let pressure = bodies
        .iter()
        .find(|b| b["type"] == "reading.bloodPressure")
        .expect("a blood pressure event");
    assert_eq!(pressure["id"], published["id"]);
    assert_eq!(pressure["payload"]["systolic"], 120);
    assert_eq!(pressure["payload"]["diastolic"], 80);
    assert_eq!(pressure["payload"]["heartRate"], 100);
    assert_eq!(pressure["payload"]["patient"]["id"], 1);
    let weight = bodies
        .iter()
        .find(|b| b["type"] == "reading.weight")
        .expect("a weight event");
    for field in [
        "id",
        "readingTimestamp",
        "weight",
        "manual",
        "patient",
        "item",
        "device",
        "site",
    ] {
        assert!(weight["payload"].get(field).is_some(), "{field}: {weight}");
    }
    // Any known type; only to the caller's subscribed webhooks.
    let (status, published) = f
        .as_account(
            "POST",
            "/test/webhook",
            Some(json!({"type": "patient.created"})),
        )
        .await;
    assert_eq!((status, published["deliveries"].clone()), (202, json!(0)));
    let (status, published) = f
        .as_account(
            "POST",
            "/test/webhook",
            Some(json!({"type": "reading.ecg", "payload": {"custom": true}})),
        )
        .await;
    assert_eq!((status, published["deliveries"].clone()), (202, json!(1)));
    assert_refused(
        f.as_account(
            "POST",
            "/test/webhook",
            Some(json!({"type": "nope.nothing"})),
        )
        .await,
        "type:",
    );
    let (status, _) = f.as_account("POST", "/test/nope-webhook", None).await;
    assert_eq!(status, 404);
}
