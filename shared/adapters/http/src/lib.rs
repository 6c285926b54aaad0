//! The HttpSender port on reqwest (rustls): one POST, no redirects, bounded time, at most
//! 4 KiB of the answer kept.
//!
//! Unless private targets are allowed, an SSRF guard keeps deliveries on public addresses: an
//! IP-literal host is checked before anything is sent, and hostnames go through
//! [`PublicOnlyResolver`], which refuses a name as soon as any of its addresses is not global
//! and otherwise hands the vetted addresses to the connector, which connects to them without
//! resolving again (no window for DNS rebinding).

use async_trait::async_trait;
use hookline_model::limits::MAX_RESPONSE_SNIPPET_BYTES;
use hookline_model::url_check::{TARGET_NOT_ALLOWED, is_global};
use hookline_service::ports::{HttpSender, OutboundRequest, SendErrorKind, SendOutcome};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct ReqwestSender {
    client: reqwest::Client,
    allow_private_targets: bool,
}

impl ReqwestSender {
    /// One client per process: its connection pool is reused across deliveries.
    ///
    /// With `allow_private_targets` false, only global (public) addresses are connected to;
    /// anything else ends in [`SendErrorKind::Refused`] without a request being sent.
    pub fn new(
        connect_timeout: Duration,
        timeout: Duration,
        allow_private_targets: bool,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .user_agent(concat!("Hookline/", env!("CARGO_PKG_VERSION")));
        if !allow_private_targets {
            // Through a proxy the target would be resolved (and reached) by the proxy, out of
            // the guard's sight; so the guarded client never uses one.
            builder = builder.dns_resolver(PublicOnlyResolver).no_proxy();
        }
        let client = builder
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Self {
            client,
            allow_private_targets,
        })
    }

    pub fn from_config(config: &hookline_service::Config) -> Result<Self, String> {
        Self::new(
            config.connect_timeout,
            config.http_timeout,
            config.targets.allow_private_targets,
        )
    }
}

/// A target the SSRF guard would not connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedTarget {
    /// The host as written in the URL (a name, or the IP literal).
    pub host: String,
    /// The non-global address it is, or resolved to.
    pub ip: IpAddr,
}

/// What the customer sees (attempt errors in the delivery log, ping results): that the target
/// is refused, never the address it is or resolves to. [`RefusedTarget::detail`] has those,
/// for the operator's debug log.
impl fmt::Display for RefusedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(TARGET_NOT_ALLOWED)
    }
}

impl RefusedTarget {
    /// The host and the address that was refused: for operators only.
    pub fn detail(&self) -> String {
        let literal = self.host.trim_start_matches('[').trim_end_matches(']');
        if literal.parse::<IpAddr>() == Ok(self.ip) {
            format!("{} is not a public address", self.ip)
        } else {
            format!(
                "{} resolves to {}, not a public address",
                self.host, self.ip
            )
        }
    }
}

/// The refusal as a send failure; the address goes to the debug log only.
fn refused(target: &RefusedTarget) -> (SendErrorKind, String) {
    tracing::debug!(target_detail = %target.detail(), "SSRF guard refused a webhook target");
    (SendErrorKind::Refused, target.to_string())
}

impl StdError for RefusedTarget {}

/// Resolves with the system resolver (through tokio) and refuses the whole name if any of
/// its addresses is not global: a name that mixes public and private answers is a rebinding
/// trick, not a webhook receiver. The addresses it returns are the ones connected to.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: the connector puts in the URL's port (or the scheme's default).
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|addr| !is_global(addr.ip())) {
                return Err(Box::new(RefusedTarget { host, ip: bad.ip() }) as _);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The host of `url` when it is an IP literal that is not global. Literal hosts never reach
/// the resolver (the connector uses them as they are), so they are checked here. The `url`
/// parser has already turned integer, hex and octal IPv4 spellings into plain IPv4.
fn refused_literal(url: &reqwest::Url) -> Option<RefusedTarget> {
    let ip = match url.host()? {
        url::Host::Ipv4(ip) => IpAddr::V4(ip),
        url::Host::Ipv6(ip) => IpAddr::V6(ip),
        url::Host::Domain(_) => return None,
    };
    (!is_global(ip)).then(|| RefusedTarget {
        host: url.host_str().unwrap_or_default().to_owned(),
        ip,
    })
}

/// The guard's refusal somewhere in the error's source chain (the resolver's error arrives
/// wrapped in hyper's and reqwest's connect errors).
fn refusal<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a RefusedTarget> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(refused) = error.downcast_ref::<RefusedTarget>() {
            return Some(refused);
        }
        current = error.source();
    }
    None
}

fn classify(error: &reqwest::Error) -> (SendErrorKind, String) {
    if let Some(target) = refusal(error) {
        return refused(target);
    }
    let kind = if error.is_timeout() {
        SendErrorKind::Timeout
    } else if error.is_connect() {
        SendErrorKind::Connect
    } else if error.is_redirect() {
        SendErrorKind::Redirect
    } else {
        SendErrorKind::Other
    };
    (kind, error.to_string())
}

fn failed(started: Instant, error: (SendErrorKind, String)) -> SendOutcome {
    SendOutcome {
        status: None,
        duration: started.elapsed(),
        error: Some(error),
        body: None,
        retry_after: None,
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
        let url = match reqwest::Url::parse(&request.url) {
            Ok(url) => url,
            Err(e) => {
                // The URL itself is not repeated: it may carry a token.
                return failed(started, (SendErrorKind::Other, format!("invalid URL: {e}")));
            }
        };
        if !self.allow_private_targets
            && let Some(target) = refused_literal(&url)
        {
            return failed(started, refused(&target));
        }
        let mut builder = self.client.post(url).body(request.body);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let mut response = match builder.send().await {
            Ok(response) => response,
            Err(error) => return failed(started, classify(&error)),
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
                    read_error = Some(classify(&error));
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

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
        let sender =
            ReqwestSender::new(Duration::from_secs(1), Duration::from_secs(1), true).unwrap();
        hookline_service::contract::http_sender_contract(&sender, &base).await;
    }

    /// A receiver on 127.0.0.1 that counts the requests reaching it; answers 200.
    async fn counting_receiver() -> (u16, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                StatusCode::OK
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (port, hits)
    }

    fn request_to(url: String) -> OutboundRequest {
        OutboundRequest {
            url,
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{}".to_vec(),
        }
    }

    fn guarded() -> ReqwestSender {
        ReqwestSender::new(Duration::from_secs(2), Duration::from_secs(5), false).unwrap()
    }

    /// Refused, with a message that does not reveal the address (`hidden`).
    fn assert_refused(outcome: &SendOutcome, hidden: &str) {
        assert!(!outcome.is_success(), "{outcome:?}");
        assert_eq!(outcome.status, None, "{outcome:?}");
        let (kind, message) = outcome.error.as_ref().expect("an error");
        assert_eq!(*kind, SendErrorKind::Refused, "{message}");
        assert_eq!(message, TARGET_NOT_ALLOWED);
        assert!(!message.contains(hidden), "{message} reveals {hidden}");
    }

    #[tokio::test]
    async fn a_hostname_resolving_to_loopback_is_refused_when_private_targets_are_off() {
        let (port, hits) = counting_receiver().await;
        let outcome = guarded()
            .send(request_to(format!("http://localhost:{port}/hook")))
            .await;
        assert_refused(&outcome, "127.0.0.1");
        assert_refused(&outcome, "::1");
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "nothing reached the receiver"
        );
    }

    #[tokio::test]
    async fn literal_non_global_hosts_are_refused_before_sending() {
        let (port, hits) = counting_receiver().await;
        let sender = guarded();
        for (url, names) in [
            (format!("http://127.0.0.1:{port}/"), "127.0.0.1"),
            (format!("http://[::1]:{port}/"), "::1"),
            (format!("http://2130706433:{port}/"), "127.0.0.1"),
            (format!("http://0x7f.1:{port}/"), "127.0.0.1"),
            (format!("http://017700000001:{port}/"), "127.0.0.1"),
            (
                format!("http://[::ffff:127.0.0.1]:{port}/"),
                "::ffff:127.0.0.1",
            ),
            (format!("http://0.0.0.0:{port}/"), "0.0.0.0"),
            (
                "http://169.254.169.254/latest/meta-data".into(),
                "169.254.169.254",
            ),
            ("https://10.0.0.1/".into(), "10.0.0.1"),
            ("https://[fd00::1]/".into(), "fd00::1"),
        ] {
            let outcome = sender.send(request_to(url.clone())).await;
            assert_refused(&outcome, names);
        }
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "nothing reached the receiver"
        );
    }

    #[tokio::test]
    async fn the_same_targets_are_delivered_when_private_targets_are_allowed() {
        let (port, hits) = counting_receiver().await;
        let sender =
            ReqwestSender::new(Duration::from_secs(2), Duration::from_secs(5), true).unwrap();
        for url in [
            format!("http://localhost:{port}/hook"),
            format!("http://127.0.0.1:{port}/hook"),
            format!("http://2130706433:{port}/hook"),
        ] {
            let outcome = sender.send(request_to(url.clone())).await;
            assert!(outcome.is_success(), "{url}: {outcome:?}");
            assert_eq!(outcome.status, Some(200));
        }
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn from_config_guards_unless_private_targets_are_allowed() {
        let (port, hits) = counting_receiver().await;
        let url = format!("http://localhost:{port}/hook");

        let lambda = hookline_service::Config::for_mode(hookline_service::Mode::Lambda);
        assert!(!lambda.targets.allow_private_targets);
        let outcome = ReqwestSender::from_config(&lambda)
            .unwrap()
            .send(request_to(url.clone()))
            .await;
        assert_refused(&outcome, "localhost");
        assert_eq!(hits.load(Ordering::SeqCst), 0);

        let local = hookline_service::Config::for_mode(hookline_service::Mode::Local);
        assert!(local.targets.allow_private_targets);
        let outcome = ReqwestSender::from_config(&local)
            .unwrap()
            .send(request_to(url))
            .await;
        assert!(outcome.is_success(), "{outcome:?}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_resolver_refuses_loopback_names_and_passes_literal_public_ones() {
        let refused = match PublicOnlyResolver
            .resolve("localhost".parse().unwrap())
            .await
        {
            Ok(addrs) => panic!("localhost resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(error) => error,
        };
        let refused = refused
            .downcast_ref::<RefusedTarget>()
            .expect("a RefusedTarget");
        assert_eq!(refused.host, "localhost");
        assert!(refused.ip.is_loopback(), "{refused}");

        // A numeric name resolves without DNS, so this needs no network.
        let addrs: Vec<SocketAddr> = PublicOnlyResolver
            .resolve("93.184.216.34".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert_eq!(addrs, ["93.184.216.34:0".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn a_refusal_is_found_through_wrapping_errors() {
        #[derive(Debug)]
        struct Wrapper(Box<dyn StdError + Send + Sync>);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("dns error")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&*self.0)
            }
        }
        let inner = RefusedTarget {
            host: "evil.example".into(),
            ip: "10.0.0.1".parse().unwrap(),
        };
        let wrapped = Wrapper(Box::new(Wrapper(Box::new(inner.clone()))));
        assert_eq!(refusal(&wrapped), Some(&inner));
        assert_eq!(refusal(&Wrapper("other".into())), None);
        // The customer-facing text hides the address; the operator's detail has it.
        assert!(!inner.to_string().contains("10.0.0.1"));
        assert!(inner.detail().contains("evil.example"));
        assert!(inner.detail().contains("10.0.0.1"));
    }
}
