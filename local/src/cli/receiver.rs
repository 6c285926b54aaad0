//! `hookline listen`: a receiver for development. Prints each request (headers, pretty JSON
//! body), checks its Standard Webhooks signature when given the secret, answers pings with
//! their pong and everything else with the chosen status.

use super::{CliError, CliResult};
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use hookline_model::signing;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Standard Webhooks: a timestamp further than this from now is refused (replay protection).
const TIMESTAMP_TOLERANCE_SECS: i64 = 5 * 60;

#[derive(Debug, clap::Args)]
pub struct ListenArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, short, default_value_t = 9000)]
    port: u16,
    /// The webhook's signing secret (`whsec_...`; `hookline webhooks secret ID` prints it):
    /// each delivery's signature is checked against it.
    #[arg(long, env = "HOOKLINE_LISTEN_SECRET", hide_env_values = true, value_parser = whsec)]
    secret: Option<String>,
    /// Status to answer deliveries with (not pings), to rehearse failures: 500, 410, 429...
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(200..=599))]
    status: u16,
}

fn whsec(raw: &str) -> Result<String, String> {
    signing::secret_key(raw)
        .map(|_| raw.to_string())
        .ok_or_else(|| "must be 'whsec_' followed by 24 to 64 base64-encoded bytes".into())
}

struct Settings {
    secret_key: Option<Vec<u8>>,
    status: StatusCode,
}

pub async fn run(args: ListenArgs) -> CliResult {
    let status = StatusCode::from_u16(args.status).expect("range-checked by clap");
    let settings = Arc::new(Settings {
        secret_key: args.secret.as_deref().and_then(signing::secret_key),
        status,
    });
    let app = Router::new().fallback(move |method, uri, headers, body| {
        let settings = settings.clone();
        async move { receive(&settings, method, uri, headers, body) }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|error| {
            CliError::Usage(format!(
                "cannot listen on 127.0.0.1:{}: {error} (choose another --port)",
                args.port
            ))
        })?;
    let addr = listener
        .local_addr()
        .map_err(|error| CliError::Usage(error.to_string()))?;
    println!(
        "Listening on http://{addr}/ (any path). Answering {status}{}.",
        if args.secret.is_some() {
            ", checking signatures"
        } else {
            "; pass --secret whsec_... to check signatures"
        }
    );
    let _ = std::io::stdout().flush();
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|error| CliError::Unreachable(error.to_string()))
}

fn receive(
    settings: &Settings,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let mut report = format!(
        "\n--- {method} {uri} at {}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let mut names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        for value in headers.get_all(name) {
            let value = String::from_utf8_lossy(value.as_bytes());
            report.push_str(&format!("{name}: {}\n", shown_header_value(name, &value)));
        }
    }
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    match &parsed {
        Some(json) => report.push_str(&format!(
            "\n{}\n",
            serde_json::to_string_pretty(json).unwrap_or_default()
        )),
        None => report.push_str(&format!("\n{}\n", String::from_utf8_lossy(&body))),
    }
    if let Some(key) = &settings.secret_key {
        report.push_str(
            &match verify(key, &headers, &body, chrono::Utc::now().timestamp()) {
                Ok(()) => "signature: valid\n".to_string(),
                Err(why) => format!("signature: INVALID ({why})\n"),
            },
        );
    }
    let ping = parsed
        .as_ref()
        .and_then(|b| b.get("ping"))
        .and_then(Value::as_str)
        .map(String::from);
    let answer = match ping {
        Some(ping) => {
            report.push_str("answered 200 with the pong\n");
            (StatusCode::OK, axum::Json(json!({ "pong": ping })))
        }
        None => {
            report.push_str(&format!("answered {}\n", settings.status.as_u16()));
            (settings.status, axum::Json(json!({ "received": true })))
        }
    };
    // One write per request, so that concurrent deliveries do not interleave.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(report.as_bytes());
    let _ = out.flush();
    answer
}

/// Header values that carry credentials are not printed (the terminal may be shared or
/// recorded); their length is, to tell present from empty.
fn shown_header_value(name: &str, value: &str) -> String {
    let sensitive = ["secret", "token", "authorization", "key", "cookie"]
        .iter()
        .any(|word| name.contains(word));
    if sensitive {
        format!("(hidden, {} characters)", value.len())
    } else {
        value.to_string()
    }
}

/// Checks a Standard Webhooks signature with the signing code Hookline itself uses.
fn verify(key: &[u8], headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("no {name} header"))
    };
    let id = header("webhook-id")?;
    let timestamp: i64 = header("webhook-timestamp")?
        .parse()
        .map_err(|_| "webhook-timestamp is not a number".to_string())?;
    let signatures = header("webhook-signature")?;
    if (now - timestamp).abs() > TIMESTAMP_TOLERANCE_SECS {
        return Err(format!(
            "webhook-timestamp is {} s from now, more than {TIMESTAMP_TOLERANCE_SECS} s",
            now - timestamp
        ));
    }
    let expected = signing::sign(key, id, timestamp, body);
    let count = signatures.split(' ').filter(|s| !s.is_empty()).count();
    if signatures
        .split(' ')
        .any(|candidate| bool::from(candidate.as_bytes().ct_eq(expected.as_bytes())))
    {
        Ok(())
    } else {
        Err(format!(
            "none of the {count} signature(s) matches this secret"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
        let key = signing::secret_key(secret).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", "msg_1".parse().unwrap());
        headers.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
        headers.insert(
            "webhook-signature",
            signing::sign(&key, "msg_1", timestamp, body)
                .parse()
                .unwrap(),
        );
        headers
    }

    #[test]
    fn a_signature_is_valid_only_for_its_secret_body_and_time() {
        let secret = signing::generate_signing_secret();
        let other = signing::generate_signing_secret();
        let key = signing::secret_key(&secret).unwrap();
        let headers = signed(&secret, 1_000, b"{}");
        assert_eq!(verify(&key, &headers, b"{}", 1_000), Ok(()));
        assert!(
            verify(
                &signing::secret_key(&other).unwrap(),
                &headers,
                b"{}",
                1_000
            )
            .is_err()
        );
        assert!(verify(&key, &headers, b"{ }", 1_000).is_err());
        assert!(
            verify(&key, &headers, b"{}", 1_000 + TIMESTAMP_TOLERANCE_SECS + 1)
                .unwrap_err()
                .contains("webhook-timestamp")
        );
        assert_eq!(
            verify(&key, &HeaderMap::new(), b"{}", 1_000).unwrap_err(),
            "no webhook-id header"
        );
    }

    #[test]
    fn credentials_in_headers_are_hidden() {
        assert_eq!(
            shown_header_value("x-webhook-secret", "abc"),
            "(hidden, 3 characters)"
        );
        assert_eq!(shown_header_value("webhook-id", "msg_1"), "msg_1");
    }
}
