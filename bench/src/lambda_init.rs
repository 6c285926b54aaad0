//! Lambda start-up, measured locally: each function binary starts against a fake Lambda
//! Runtime API on 127.0.0.1; "ready" is its first `GET .../invocation/next` (the end of its
//! init). The api binary then gets the `apigw-health.json` fixture as its first invocation and
//! the time to its response is "first request". Also the binaries' sizes.

use crate::stats::Percentiles;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Serialize;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Runtime {
    /// The event of the first invocation (none: never answer `next`).
    event: Option<String>,
    ready_at: Option<Instant>,
    handed_at: Option<Instant>,
    responded_at: Option<Instant>,
    response: Option<String>,
}

type Shared = Arc<Mutex<Runtime>>;

async fn next(State(runtime): State<Shared>) -> impl IntoResponse {
    let event = {
        let mut rt = runtime.lock().unwrap();
        rt.ready_at.get_or_insert_with(Instant::now);
        match rt.event.take() {
            Some(event) => {
                rt.handed_at = Some(Instant::now());
                Some(event)
            }
            None => None,
        }
    };
    let Some(event) = event else {
        // Only one invocation per start: park the function until it is killed.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return StatusCode::NO_CONTENT.into_response();
    };
    let mut headers = HeaderMap::new();
    let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
    headers.insert(
        "lambda-runtime-aws-request-id",
        HeaderValue::from_static("bench-1"),
    );
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline.to_string().parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:bench"),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        HeaderValue::from_static("Root=1-0-0"),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (headers, event).into_response()
}

async fn respond(
    State(runtime): State<Shared>,
    UrlPath(_id): UrlPath<String>,
    body: String,
) -> StatusCode {
    let mut rt = runtime.lock().unwrap();
    rt.responded_at = Some(Instant::now());
    rt.response = Some(body);
    StatusCode::ACCEPTED
}

async fn failed(State(runtime): State<Shared>, body: String) -> StatusCode {
    runtime.lock().unwrap().response = Some(format!("ERROR {body}"));
    StatusCode::ACCEPTED
}

struct Start {
    ready: Duration,
    first_request: Option<Duration>,
}

async fn start_once(binary: &Path, event: Option<String>) -> Start {
    let runtime: Shared = Arc::new(Mutex::new(Runtime {
        event: event.clone(),
        ..Default::default()
    }));
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(respond),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(failed))
        .route("/2018-06-01/runtime/init/error", post(failed))
        .with_state(runtime.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("HOOKLINE_TABLE", "hookline")
        .env("HOOKLINE_QUEUE_URL", "http://127.0.0.1:9/queue/deliveries")
        .env("HOOKLINE_SCHEDULE_GROUP", "hookline-retries")
        .env(
            "HOOKLINE_RETRY_TARGET_ARN",
            "arn:aws:lambda:us-east-1:123456789012:function:hookline-retry",
        )
        .env(
            "HOOKLINE_SCHEDULER_ROLE_ARN",
            "arn:aws:iam::123456789012:role/hookline-scheduler",
        )
        .env("HOOKLINE_ADMIN_KEY", "bench-admin-key-0123456789abcdefghij")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let done = |rt: &Runtime| match &event {
        Some(_) => rt.responded_at.is_some() || rt.response.is_some(),
        None => rt.ready_at.is_some(),
    };
    while !done(&runtime.lock().unwrap()) {
        assert!(
            Instant::now() < deadline,
            "{} did not get ready within 10 s",
            binary.display()
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    server.abort();
    let rt = runtime.lock().unwrap();
    if let Some(response) = &rt.response {
        assert!(
            !response.starts_with("ERROR") && response.contains("200"),
            "{} answered its first request with {response}",
            binary.display()
        );
    }
    Start {
        ready: rt.ready_at.unwrap().duration_since(started),
        first_request: rt
            .responded_at
            .zip(rt.handed_at)
            .map(|(done, handed)| done.duration_since(handed)),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FunctionStart {
    pub function: String,
    pub binary_bytes: u64,
    pub runs: usize,
    /// Process start to its first `invocation/next`.
    pub ready: Percentiles,
    /// The api function only: its first invocation (GET /health through API Gateway v2).
    pub first_request: Option<Percentiles>,
}

pub async fn measure(binaries: &Path, health_event: &str, runs: usize) -> Vec<FunctionStart> {
    let mut results = Vec::new();
    for function in ["api", "deliver", "retry"] {
        let binary = binaries.join(function);
        let bytes = std::fs::metadata(&binary)
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (build it with cargo build --release)",
                    binary.display()
                )
            })
            .len();
        let event = (function == "api").then(|| health_event.to_string());
        // One unmeasured start warms the page cache, as a warm Lambda host would be.
        start_once(&binary, event.clone()).await;
        let mut ready = Vec::new();
        let mut first = Vec::new();
        for _ in 0..runs {
            let start = start_once(&binary, event.clone()).await;
            ready.push(start.ready);
            first.extend(start.first_request);
        }
        let result = FunctionStart {
            function: function.into(),
            binary_bytes: bytes,
            runs,
            ready: Percentiles::of(ready),
            first_request: (!first.is_empty()).then(|| Percentiles::of(first)),
        };
        eprintln!(
            "{function}: {} bytes, ready p50 {} ms (max {} ms){}",
            bytes,
            result.ready.p50_ms,
            result.ready.max_ms,
            result
                .first_request
                .map(|p| format!(", first request p50 {} ms", p.p50_ms))
                .unwrap_or_default()
        );
        results.push(result);
    }
    results
}
