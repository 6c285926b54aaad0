//! The webhook receiver on 127.0.0.1: answers 200 at once and records what arrived when.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde::Deserialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One POST as it arrived.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// The `webhook-id` header: the delivery id, the same on every duplicate.
    pub delivery_id: String,
    /// The event id from the body.
    pub event_id: String,
    pub at: Instant,
}

#[derive(Default)]
struct Shared {
    arrivals: Mutex<Vec<Arrival>>,
    count: AtomicUsize,
}

#[derive(Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:<port>`; any path takes POSTs.
    pub base: String,
    shared: Arc<Shared>,
}

#[derive(Deserialize)]
struct EnvelopeId {
    id: String,
}

async fn hook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let delivery_id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let event_id = serde_json::from_slice::<EnvelopeId>(&body)
        .map(|e| e.id)
        .unwrap_or_default();
    shared.arrivals.lock().unwrap().push(Arrival {
        delivery_id,
        event_id,
        at,
    });
    shared.count.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

impl Receiver {
    /// Serves on an ephemeral loopback port, on a runtime of its own (one thread) so the
    /// load generator's work does not delay its answers.
    pub fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("receiver port");
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/{*path}", post(hook))
            .with_state(shared.clone());
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    axum::serve(listener, app).await.unwrap();
                })
        });
        Self { base, shared }
    }

    pub fn count(&self) -> usize {
        self.shared.count.load(Ordering::Relaxed)
    }

    /// Everything received so far, and forgets it.
    pub fn take(&self) -> Vec<Arrival> {
        self.shared.count.store(0, Ordering::Relaxed);
        std::mem::take(&mut *self.shared.arrivals.lock().unwrap())
    }

    /// Waits until `expected` POSTs arrived, or until nothing arrived for `idle` (then some
    /// were lost). A short grace period after the last one catches duplicates.
    pub async fn wait_for(&self, expected: usize, idle: std::time::Duration) {
        let mut last = self.count();
        let mut last_change = Instant::now();
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let now = self.count();
            if now >= expected {
                break;
            }
            if now != last {
                last = now;
                last_change = Instant::now();
            } else if last_change.elapsed() > idle {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}
