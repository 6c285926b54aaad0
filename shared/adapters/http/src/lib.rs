//! The HttpSender port on reqwest (rustls): one POST, no redirects, bounded time, at most
//! 4 KiB of the answer kept.

use async_trait::async_trait;
use hookline_model::limits::MAX_RESPONSE_SNIPPET_BYTES;
use hookline_service::ports::{HttpSender, OutboundRequest, SendErrorKind, SendOutcome};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct ReqwestSender {
    client: reqwest::Client,
}

impl ReqwestSender {
    /// One client per process: its connection pool is reused across deliveries.
    pub fn new(connect_timeout: Duration, timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .user_agent(concat!("Hookline/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Self { client })
    }

    pub fn from_config(config: &hookline_service::Config) -> Result<Self, String> {
        Self::new(config.connect_timeout, config.http_timeout)
    }
}

fn classify(error: &reqwest::Error) -> SendErrorKind {
    if error.is_timeout() {
        SendErrorKind::Timeout
    } else if error.is_connect() {
        SendErrorKind::Connect
    } else if error.is_redirect() {
        SendErrorKind::Redirect
    } else {
        SendErrorKind::Other
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from webhook receivers and ignored).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[async_trait]
impl HttpSender for ReqwestSender {
    async fn send(&self, request: OutboundRequest) -> SendOutcome {
        let started = Instant::now();
        let mut builder = self.client.post(&request.url).body(request.body);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let mut response = match builder.send().await {
            Ok(response) => response,
            Err(error) => {
                return SendOutcome {
                    status: None,
                    duration: started.elapsed(),
                    error: Some((classify(&error), error.to_string())),
                    body: None,
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let mut kept = Vec::new();
        let mut read_error = None;
        while kept.len() < MAX_RESPONSE_SNIPPET_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(error) => {
                    read_error = Some((classify(&error), error.to_string()));
                    break;
                }
            }
        }
        kept.truncate(MAX_RESPONSE_SNIPPET_BYTES);
        let body = String::from_utf8_lossy(&kept).into_owned();
        let error = if status.is_redirection() {
            Some((
                SendErrorKind::Redirect,
                format!("redirect ({status}) not followed"),
            ))
        } else if status.is_success() {
            // The status decided it; a slow or broken body after a 2xx is not a failure.
            None
        } else {
            read_error.or_else(|| Some((SendErrorKind::Status, format!("answered {status}"))))
        };
        SendOutcome {
            status: Some(status.as_u16()),
            duration: started.elapsed(),
            error,
            body: (!body.is_empty()).then_some(body),
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::post;

    async fn receiver() -> String {
        let app = Router::new()
            .route("/ok", post(|| async { StatusCode::NO_CONTENT }))
            .route(
                "/fail",
                post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(10 * 1024)) }),
            )
            .route(
                "/redirect",
                post(|| async { (StatusCode::FOUND, [("location", "/ok")]).into_response() }),
            )
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    StatusCode::OK
                }),
            )
            .route(
                "/echo",
                post(|_: HeaderMap, body: String| async move { body }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn reqwest_sender_meets_the_http_sender_contract() {
        let base = receiver().await;
        let sender = ReqwestSender::new(Duration::from_secs(1), Duration::from_secs(1)).unwrap();
        hookline_service::contract::http_sender_contract(&sender, &base).await;
    }
}
