//! Portal links and browser sessions against `hookline serve`, over HTTP (the pages themselves
//! are driven in a real browser by tests/browser).

mod common;

use common::*;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

/// The token of a new portal link for `account_id`.
async fn link_token(http: &reqwest::Client, server: &Server, account_id: &str) -> String {
    let (status, link) = call(
        http,
        "POST",
        server.api(&format!("/accounts/{account_id}/portal-links")),
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert_eq!(status, 201, "{link}");
    let url = link["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/portal#token=", server.base)),
        "{url}"
    );
    url.split_once("#token=").unwrap().1.to_string()
}

/// Opens a portal session with `body`; returns the status, the cookie (name=value) and the body.
async fn open_session(
    http: &reqwest::Client,
    server: &Server,
    body: Value,
) -> (u16, Option<String>, Value) {
    let response = http
        .post(format!("{}/portal/session", server.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let cookie = response
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_string());
    (status, cookie, response.json().await.unwrap())
}

async fn with_session(
    http: &reqwest::Client,
    method: &str,
    url: String,
    cookie: &str,
    csrf: Option<&str>,
) -> (u16, Value) {
    let mut request = http
        .request(method.parse().unwrap(), url)
        .header(COOKIE, cookie);
    if let Some(csrf) = csrf {
        request = request.header("X-Hookline-Csrf", csrf);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn portal_links_are_admin_only_bounded_and_name_the_field_at_fault() {
    let server = Server::start(&temp_dir("portal-links"));
    let http = reqwest::Client::new();
    let (account_id, key) = new_account(&http, &server, "Link Clinic").await;
    let url = server.api(&format!("/accounts/{account_id}/portal-links"));

    let (status, link) = call(&http, "POST", &url, Some(ADMIN_KEY), None).await;
    assert_eq!(status, 201, "{link}");
    let expires = chrono::DateTime::parse_from_rfc3339(link["expiresAt"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let lifetime = expires - chrono::Utc::now();
    assert!(
        lifetime > chrono::Duration::minutes(59) && lifetime <= chrono::Duration::hours(1),
        "{lifetime}"
    );

    let (status, _) = call(&http, "POST", &url, Some(&key), None).await;
    assert_eq!(status, 403, "an account key cannot make links");
    let (status, _) = call(&http, "POST", &url, None, None).await;
    assert_eq!(status, 401);
    let (status, body) = call(
        &http,
        "POST",
        server.api("/accounts/acct_missing/portal-links"),
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    for bad in [
        json!({"expiresIn": 0}),
        json!({"expiresIn": 86_401}),
        json!({"expiresIn": "1h"}),
    ] {
        assert_refused(
            call(&http, "POST", &url, Some(ADMIN_KEY), Some(bad)).await,
            "expiresIn: ",
        );
    }
    let (status, link) = call(
        &http,
        "POST",
        &url,
        Some(ADMIN_KEY),
        Some(json!({"expiresIn": 86_400})),
    )
    .await;
    assert_eq!(status, 201, "{link}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_becomes_a_session_of_that_account_only_and_survives_a_restart() {
    let dir = temp_dir("portal-session");
    let server = Server::start(&dir);
    let http = reqwest::Client::new();
    let (account_id, key) = new_account(&http, &server, "Session Clinic").await;
    let (_, other_key) = new_account(&http, &server, "Other Clinic").await;
    let other_webhook = new_webhook(
        &http,
        &server,
        &other_key,
        json!({"type": "patient.created", "url": "http://127.0.0.1:9/other"}),
    )
    .await;
    let token = link_token(&http, &server, &account_id).await;

    let (status, cookie, session) = open_session(&http, &server, json!({"token": token})).await;
    assert_eq!(status, 201, "{session}");
    let cookie = cookie.expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains(&key), "the cookie is not the API key");
    let cookie = cookie.split(';').next().unwrap().to_string();
    assert_eq!(session["accountId"], account_id.as_str());
    assert_eq!(session["accountName"], "Session Clinic");
    let csrf = session["csrfToken"].as_str().unwrap().to_string();

    let (status, webhooks) =
        with_session(&http, "GET", server.api("/webhook"), &cookie, Some(&csrf)).await;
    assert_eq!((status, &webhooks["total"]), (200, &json!(0)), "{webhooks}");
    let other = server.api(&format!(
        "/webhook/{}",
        other_webhook["id"].as_str().unwrap()
    ));
    let (status, _) = with_session(&http, "GET", other.clone(), &cookie, Some(&csrf)).await;
    assert_eq!(status, 404, "another account's webhook is not found");
    let (status, _) = with_session(&http, "DELETE", other, &cookie, Some(&csrf)).await;
    assert_eq!(status, 404);
    let (status, _) =
        with_session(&http, "GET", server.api("/accounts"), &cookie, Some(&csrf)).await;
    assert_eq!(status, 403, "a portal session is not the admin");
    let (status, _) = with_session(&http, "GET", server.api("/webhook"), &cookie, None).await;
    assert_eq!(status, 401, "the cookie alone authenticates nothing");
    let (status, _) =
        with_session(&http, "GET", server.api("/webhook"), &cookie, Some("AAAA")).await;
    assert_eq!(status, 403, "another session's CSRF token does not do");

    // The key comes from the main key under the data directory: links and sessions outlive a
    // restart.
    server.stop();
    let server = Server::start(&dir);
    let (status, _) =
        with_session(&http, "GET", server.api("/webhook"), &cookie, Some(&csrf)).await;
    assert_eq!(status, 200, "the session outlives a restart");
    let (status, _, _) = open_session(&http, &server, json!({"token": token})).await;
    assert_eq!(status, 201, "the link outlives a restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_refuses_bad_input_with_a_4xx_naming_the_field() {
    let server = Server::start(&temp_dir("portal-signin"));
    let http = reqwest::Client::new();
    let (_, key) = new_account(&http, &server, "Sign-in Clinic").await;

    let (status, _, body) = open_session(&http, &server, json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("token: ")
    );
    let (status, _, body) = open_session(&http, &server, json!({"token": "v1.forged.sig"})).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("token: ")
    );
    let (status, _, body) = open_session(&http, &server, json!({"apiKey": "hlk_nope"})).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = open_session(&http, &server, json!({"apiKey": ADMIN_KEY})).await;
    assert_eq!(status, 403, "the portal is for accounts: {body}");
    let (status, _, body) = open_session(&http, &server, json!({"apiKey": key, "extra": 1})).await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = open_session(&http, &server, json!({"apiKey": key})).await;
    assert_eq!(status, 201, "{body}");

    // The console takes the admin key only.
    let console = |body: Value| {
        http.post(format!("{}/console/session", server.base))
            .json(&body)
            .send()
    };
    assert_eq!(console(json!({"apiKey": key})).await.unwrap().status(), 403);
    assert_eq!(console(json!({})).await.unwrap().status(), 400);
    assert_eq!(
        console(json!({"apiKey": ADMIN_KEY}))
            .await
            .unwrap()
            .status(),
        201
    );

    // A body that is not JSON is a 4xx too, never a 500.
    let response = http
        .post(format!("{}/portal/session", server.base))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_root_points_to_the_console_and_the_portal() {
    let server = Server::start(&temp_dir("portal-root"));
    let http = reqwest::Client::new();
    let response = http.get(format!("{}/", server.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
    let html = response.text().await.unwrap();
    assert!(html.contains("href=\"/portal\"") && html.contains("href=\"/console\""));
    for asset in ["app.css", "ui.js", "portal.js", "console.js"] {
        let response = http
            .get(format!("{}/assets/{asset}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
    }
    let missing = http
        .get(format!("{}/assets/nope.js", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn frame_ancestors_follow_the_setting() {
    let server = Server::start_with_env(
        &temp_dir("portal-frames"),
        &[(
            "HOOKLINE_FRAME_ANCESTORS",
            "'self' https://dashboard.example.com",
        )],
    );
    let response = reqwest::get(format!("{}/portal", server.base))
        .await
        .unwrap();
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        csp.ends_with("frame-ancestors 'self' https://dashboard.example.com"),
        "{csp}"
    );
    // The console (the admin's) is in no one's frame, whatever the setting.
    let response = reqwest::get(format!("{}/console", server.base))
        .await
        .unwrap();
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.ends_with("frame-ancestors 'none'"), "{csp}");
}
