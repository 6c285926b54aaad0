//! The browser side: the customer portal (`/portal`), the platform console (`/console`), the
//! landing page (`/`), their embedded assets, and the cookie sessions behind them.
//!
//! The pages are static HTML and ES modules that call the JSON API. A session is a signed,
//! `HttpOnly` cookie; the API accepts it only together with the session's CSRF token in the
//! `X-Hookline-Csrf` header, which a page reads from `GET /portal/session` (same origin only),
//! so a cookie sent by another site's form or image authenticates nothing.

pub mod token;

use crate::ApiError;
use crate::extract::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::{Duration, Utc};
use hookline_model::Principal;
use hookline_service::{Service, ServiceError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use token::{Claims, Kind, Signer};

pub const PORTAL_COOKIE: &str = "hookline_portal";
pub const CONSOLE_COOKIE: &str = "hookline_console";
pub const CSRF_HEADER: &str = "x-hookline-csrf";
/// How long a session opened with an API key lasts.
const KEY_SESSION: Duration = Duration::hours(8);
/// A portal link lasts an hour unless asked otherwise, and at most a day.
pub const DEFAULT_LINK_LIFETIME: Duration = Duration::hours(1);
pub const MAX_LINK_LIFETIME: Duration = Duration::hours(24);

/// What the browser side needs, shared by every request.
#[derive(Clone)]
pub struct Browser(pub Arc<BrowserConfig>);

pub struct BrowserConfig {
    pub signer: Signer,
    pub content_security_policy: HeaderValue,
    /// The console's: never in a frame (only the portal is made to be embedded).
    pub console_content_security_policy: HeaderValue,
    pub public_url: Option<String>,
}

impl Browser {
    pub fn from_service(service: &Service) -> Self {
        let config = service.config();
        let key = config.portal_key.as_ref().map_or_else(
            || {
                // Without a host-provided key, links and sessions last as long as this process.
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).expect("the operating system's random source works");
                key
            },
            |key| key.0,
        );
        let csp = |frame_ancestors: &str| {
            let csp = format!(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; \
                 frame-ancestors {frame_ancestors}"
            );
            HeaderValue::from_str(&csp)
                .expect("frame-ancestors was checked when the config was read")
        };
        Self(Arc::new(BrowserConfig {
            signer: Signer::new(key),
            content_security_policy: csp(&config.frame_ancestors),
            console_content_security_policy: csp("'none'"),
            public_url: config.public_url.clone(),
        }))
    }
}

/// The pages, their assets and the session endpoints (not part of the OpenAPI document).
pub fn routes() -> Router<Service> {
    Router::new()
        .route("/", get(|| page(INDEX_HTML)))
        .route("/portal", get(|| page(PORTAL_HTML)))
        .route("/console", get(|| page(CONSOLE_HTML)))
        .route("/assets/{file}", get(asset))
        .route(
            "/portal/session",
            get(portal_session)
                .post(open_portal_session)
                .delete(close_portal_session),
        )
        .route(
            "/console/session",
            get(console_session)
                .post(open_console_session)
                .delete(close_console_session),
        )
        .layer(axum::middleware::from_fn(security_headers))
}

const INDEX_HTML: &str = include_str!("../../assets/index.html");
const PORTAL_HTML: &str = include_str!("../../assets/portal.html");
const CONSOLE_HTML: &str = include_str!("../../assets/console.html");
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/app.css"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/ui.js"),
    ),
    (
        "portal.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/portal.js"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/console.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../assets/favicon.svg"),
    ),
];

async fn page(html: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such asset").into_response(),
    }
}

/// Every browser response: the CSP (no inline script, framing as configured for the portal,
/// never for the console), no sniffing, no referrer (a page's URL never leaves with a request).
async fn security_headers(
    Extension(browser): Extension<Browser>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let console = request.uri().path().starts_with("/console");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let csp = if console {
        &browser.0.console_content_security_policy
    } else {
        &browser.0.content_security_policy
    };
    headers.insert(header::CONTENT_SECURITY_POLICY, csp.clone());
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The session of `kind` that authenticates this API request, when the request is made by a
/// page: `None` when it carries no CSRF header (then only an API key authenticates it).
pub fn session_principal(
    parts: &axum::http::request::Parts,
) -> Option<Result<Principal, ApiError>> {
    let csrf = parts.headers.get(CSRF_HEADER)?.to_str().unwrap_or_default();
    let browser = parts.extensions.get::<Browser>()?;
    // A page says which of its sessions it speaks for: the console or the portal.
    let kind = match parts
        .headers
        .get("x-hookline-session")
        .map(HeaderValue::as_bytes)
    {
        Some(b"console") => Kind::Console,
        _ => Kind::Portal,
    };
    let Some(claims) = session_claims(&parts.headers, browser, kind) else {
        return Some(Err(session_ended()));
    };
    if !browser.0.signer.csrf_matches(&claims, csrf) {
        return Some(Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "X-Hookline-Csrf: does not match this session; reload the page",
        )));
    }
    Some(Ok(match kind {
        Kind::Console => Principal::Admin,
        _ => Principal::Account(claims.account_id),
    }))
}

fn session_ended() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "session_ended",
        "your session has ended: sign in again or open a new portal link",
    )
}

fn cookie_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Console => CONSOLE_COOKIE,
        _ => PORTAL_COOKIE,
    }
}

fn session_claims(headers: &HeaderMap, browser: &Browser, kind: Kind) -> Option<Claims> {
    let name = cookie_name(kind);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        // Of several (another path's, an old one), the first that verifies.
        .find_map(|(_, value)| browser.0.signer.verify(value, kind, Utc::now()))
}

/// Over https (as API Gateway says in `X-Forwarded-Proto`, or the configured public URL) the
/// cookie is `Secure` and `SameSite=None; Partitioned`, so the portal also works inside the
/// platform's own dashboard (a cross-site frame); over plain http (local) it is `SameSite=Lax`.
/// Either way it is `HttpOnly`, and only counts with the session's CSRF header.
fn served_over_https(headers: &HeaderMap, browser: &Browser) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
        || browser
            .0
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
}

/// The console's cookie (the admin's) is `SameSite=Strict` and never partitioned: only the
/// portal is made to work inside another site's frame.
fn set_cookie(kind: Kind, value: &str, max_age: i64, https: bool) -> HeaderValue {
    let attributes = match (kind, https) {
        (Kind::Console, true) => "Secure; SameSite=Strict",
        (Kind::Console, false) => "SameSite=Strict",
        (_, true) => "Secure; SameSite=None; Partitioned",
        (_, false) => "SameSite=Lax",
    };
    HeaderValue::from_str(&format!(
        "{}={value}; Path=/; HttpOnly; Max-Age={}; {attributes}",
        cookie_name(kind),
        max_age.max(0)
    ))
    .expect("a signed token is a valid header value")
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignIn {
    /// A portal link's token (portal only).
    token: Option<String>,
    /// An API key: an account's (portal) or the admin key (console).
    api_key: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_name: Option<String>,
    expires_at: String,
    /// Send it as `X-Hookline-Csrf` with every API request of this page.
    csrf_token: String,
}

async fn session_view(service: &Service, browser: &Browser, claims: &Claims) -> SessionView {
    let (account_id, account_name) = if claims.kind == Kind::Portal {
        let name = service
            .get_account(&claims.account_id)
            .await
            .ok()
            .map(|(account, _)| account.name);
        (Some(claims.account_id.clone()), name)
    } else {
        (None, None)
    };
    SessionView {
        account_id,
        account_name,
        expires_at: crate::views::timestamp(claims.expires_at()),
        csrf_token: browser.0.signer.csrf_token(claims),
    }
}

async fn current_session(
    service: &Service,
    browser: &Browser,
    headers: &HeaderMap,
    kind: Kind,
) -> Result<Response, ApiError> {
    let claims = session_claims(headers, browser, kind).ok_or_else(session_ended)?;
    // It carries the CSRF token: no cache may keep it for another viewer.
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(session_view(service, browser, &claims).await),
    )
        .into_response())
}

async fn open_session(
    service: &Service,
    browser: &Browser,
    headers: &HeaderMap,
    kind: Kind,
    input: SignIn,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let claims = match (input.token, input.api_key) {
        (Some(token), None) if kind == Kind::Portal => {
            let link = browser
                .0
                .signer
                .verify(token.trim(), Kind::Link, now)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "link_expired",
                        "token: this portal link has expired or is not valid; ask for a new one",
                    )
                })?;
            // The session ends when the link would have.
            Claims::new(Kind::Portal, &link.account_id, link.expires_at())
        }
        (None, Some(key)) => {
            let principal = service
                .authenticate(key.trim())
                .await
                .map_err(|e| match e {
                    ServiceError::Unauthorized => ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "apiKey: this key is not valid",
                    ),
                    other => other.into(),
                })?;
            match (kind, principal) {
                (Kind::Portal, Principal::Account(id)) => {
                    Claims::new(Kind::Portal, &id, now + KEY_SESSION)
                }
                (Kind::Console, Principal::Admin) => {
                    Claims::new(Kind::Console, "", now + KEY_SESSION)
                }
                (Kind::Console, _) => {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "apiKey: the console needs the admin key",
                    ));
                }
                _ => {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "apiKey: the portal needs an account's API key (the platform opens \
                         portals from the console)",
                    ));
                }
            }
        }
        _ if kind == Kind::Console => return Err(ApiError::bad_request("apiKey: is required")),
        _ => {
            return Err(ApiError::bad_request(
                "token: send either token (from a portal link) or apiKey",
            ));
        }
    };
    let token = browser.0.signer.sign(&claims);
    let cookie = set_cookie(
        kind,
        &token,
        claims.expires - now.timestamp(),
        served_over_https(headers, browser),
    );
    let view = session_view(service, browser, &claims).await;
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn close_session(browser: &Browser, headers: &HeaderMap, kind: Kind) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(kind, "", 0, served_over_https(headers, browser)),
    );
    response
}

async fn portal_session(
    State(service): State<Service>,
    Extension(browser): Extension<Browser>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    current_session(&service, &browser, &headers, Kind::Portal).await
}

async fn console_session(
    State(service): State<Service>,
    Extension(browser): Extension<Browser>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    current_session(&service, &browser, &headers, Kind::Console).await
}

async fn open_portal_session(
    State(service): State<Service>,
    Extension(browser): Extension<Browser>,
    headers: HeaderMap,
    Body(input): Body<SignIn>,
) -> Result<Response, ApiError> {
    open_session(&service, &browser, &headers, Kind::Portal, input).await
}

async fn open_console_session(
    State(service): State<Service>,
    Extension(browser): Extension<Browser>,
    headers: HeaderMap,
    Body(input): Body<SignIn>,
) -> Result<Response, ApiError> {
    open_session(&service, &browser, &headers, Kind::Console, input).await
}

async fn close_portal_session(
    Extension(browser): Extension<Browser>,
    headers: HeaderMap,
) -> Response {
    close_session(&browser, &headers, Kind::Portal)
}

async fn close_console_session(
    Extension(browser): Extension<Browser>,
    headers: HeaderMap,
) -> Response {
    close_session(&browser, &headers, Kind::Console)
}

/// Where a new portal link points: the configured public URL, or this request's own origin.
pub fn link_url(browser: &Browser, headers: &HeaderMap, token: &str) -> String {
    let base = browser.0.public_url.clone().unwrap_or_else(|| {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                    })
            })
            .unwrap_or("127.0.0.1:8080");
        let scheme = if served_over_https(headers, browser) {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{host}")
    });
    format!("{base}/portal#token={token}")
}
