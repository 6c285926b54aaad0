//! The local server's accept loop: hyper (through hyper-util) with a header-read timeout and a
//! cap on open connections, so clients that open connections and send partial requests cannot
//! hold the server's sockets and memory indefinitely.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_CONNECTIONS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a request's line and headers, from the moment the
    /// server starts waiting for them (on a new connection, or after the previous response on a
    /// kept-alive one). Past it the connection is closed.
    pub header_read_timeout: Duration,
    /// Open connections at most. Past the cap the server stops accepting: new connections wait
    /// in the kernel's listen backlog until one closes.
    pub max_connections: usize,
}

impl Limits {
    /// From `HOOKLINE_HEADER_TIMEOUT` (`10s`) and `HOOKLINE_MAX_CONNECTIONS` (`4096`).
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut limits = Limits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        };
        if let Some(raw) = get("HOOKLINE_HEADER_TIMEOUT").filter(|v| !v.trim().is_empty()) {
            let timeout = hookline_model::retry::parse_duration(raw.trim())
                .map_err(|e| format!("HOOKLINE_HEADER_TIMEOUT: {e}"))?;
            if timeout.is_zero() || timeout > Duration::from_secs(3600) {
                return Err(format!(
                    "HOOKLINE_HEADER_TIMEOUT: '{}' must be more than 0 and at most 1h",
                    raw.trim()
                ));
            }
            limits.header_read_timeout = timeout;
        }
        if let Some(raw) = get("HOOKLINE_MAX_CONNECTIONS").filter(|v| !v.trim().is_empty()) {
            limits.max_connections = raw
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| {
                    format!(
                        "HOOKLINE_MAX_CONNECTIONS: '{}' is not a number from 1 to 1000000",
                        raw.trim()
                    )
                })?;
        }
        Ok(limits)
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets the
/// requests in progress finish (idle connections close at once) and returns.
///
/// HTTP/1.1 only: hyper has no header or idle timeout for HTTP/2, so cleartext HTTP/2 (h2c, by
/// prior knowledge; browsers never use it) would bring back the hole this closes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        // The permit is taken before accepting: at the cap, connections wait in the backlog
        // (served in turn) instead of being accepted and closed unanswered.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    wait_after_accept_error(error).await;
                    continue;
                }
            },
        };
        // Responses are small and written whole: send them at once.
        let _ = stream.set_nodelay(true);
        let connection = builder
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(router.clone()),
            )
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // Header timeouts and clients going away are routine.
                tracing::debug!(error = %error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Errors tied to one connection (it was reset before accept) are skipped; others (out of
/// file descriptors) would repeat at once, so wait a moment, as axum::serve does.
async fn wait_after_accept_error(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(%error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(pairs: &[(&str, &str)]) -> Result<Limits, String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Limits::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(
            limits(&[]).unwrap(),
            Limits {
                header_read_timeout: Duration::from_secs(10),
                max_connections: 4096
            }
        );
        assert_eq!(
            limits(&[
                ("HOOKLINE_HEADER_TIMEOUT", "2s"),
                ("HOOKLINE_MAX_CONNECTIONS", "8")
            ])
            .unwrap(),
            Limits {
                header_read_timeout: Duration::from_secs(2),
                max_connections: 8
            }
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("HOOKLINE_HEADER_TIMEOUT", "soon"),
            ("HOOKLINE_HEADER_TIMEOUT", "0s"),
            ("HOOKLINE_HEADER_TIMEOUT", "9999999999999999h"),
            ("HOOKLINE_MAX_CONNECTIONS", "0"),
            ("HOOKLINE_MAX_CONNECTIONS", "-1"),
            ("HOOKLINE_MAX_CONNECTIONS", "many"),
        ] {
            let error = limits(&[(name, value)]).unwrap_err();
            assert!(error.starts_with(name), "{error}");
        }
    }
}
