//! End to end (issue 15 item 8): the guides' own requests, sent as the guides write them (host
//! and credentials aside) to the real `hookline serve`, with receivers on 127.0.0.1.
//! `/work/shared/reference/002_*` is Infermedica's configuration API, `004_*` the
//! organization-style `POST /webhook-events`.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// A request as the guides' curl lines send it: `Authorization: Bearer <CREDENTIALS>`,
/// `Content-Type: application/json` and the body text as written.
async fn curl(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    key: &str,
    raw_body: Option<&str>,
) -> (u16, String) {
    let mut request = http
        .request(method.parse().unwrap(), url)
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", "application/json");
    if let Some(body) = raw_body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// The field names of a JSON object, sorted.
fn fields(value: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort();
    names
}

async fn next(rx: &mut UnboundedReceiver<RawReceived>) -> RawReceived {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("delivered in time")
        .expect("the receiver is running")
}

async fn register_type(http: &reqwest::Client, server: &Server, name: &str) {
    let (status, body) = call(
        http,
        "POST",
        server.api("/event-types"),
        Some(ADMIN_KEY),
        Some(json!({"name": name, "description": "from a guide"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

async fn publish(
    http: &reqwest::Client,
    server: &Server,
    account: &str,
    kind: &str,
    payload: Value,
) {
    let (status, body) = call(
        http,
        "POST",
        server.api("/events"),
        Some(ADMIN_KEY),
        Some(json!({"accountId": account, "type": kind, "payload": payload})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
}

async fn signing_secret(http: &reqwest::Client, server: &Server, key: &str, id: &str) -> String {
    let (status, body) = call(
        http,
        "GET",
        server.api(&format!("/webhook/{id}/signing-secret")),
        Some(key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["secret"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_infermedica_configuration_requests_work_as_written() {
    let dir = temp_dir("guide-infermedica");
    let server = Server::start(&dir);
    let http = reqwest::Client::new();
    let (account_id, key) = new_account(&http, &server, "infermedica").await;
    let (_, other_key) = new_account(&http, &server, "someone else").await;
    // The platform's own event types, in its catalog (the guide subscribes to survey_created).
    register_type(&http, &server, "survey_created").await;
    register_type(&http, &server, "survey_finished").await;
    let (receiver_url, mut received) = raw_receiver().await;
    let base = format!("{}/api/v2/config/webhook", server.base);

    // Create: the guide's body, its URL pointed at the receiver.
    let create = r#"{
"url": "https://mywebsite.com/webhook_receiver",
"authorization_token": "zGORr7q1I4egIr0c0eKXD7CMpIcjFooJ",
"subscribed_events": ["survey_created"]
}"#
    .replace("https://mywebsite.com/webhook_receiver", &receiver_url);
    let (status, text) = curl(&http, "POST", &base, &key, Some(&create)).await;
    assert_eq!(status, 201, "{text}");
    let created = json_of(&text);
    assert_eq!(
        fields(&created),
        ["authorization_token", "id", "subscribed_events", "url"]
    );
    assert_eq!(created["url"], receiver_url.as_str());
    assert_eq!(
        created["authorization_token"],
        "zGORr7q1I4egIr0c0eKXD7CMpIcjFooJ"
    );
    assert_eq!(created["subscribed_events"], json!(["survey_created"]));
    let id = created["id"].as_str().unwrap().to_string();
    let one = format!("{base}/{id}");

    // List and get: the token excluded.
    let (status, text) = curl(&http, "GET", &base, &key, None).await;
    assert_eq!(status, 200, "{text}");
    let listed = json_of(&text);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(fields(&listed[0]), ["id", "subscribed_events", "url"]);
    let (status, text) = curl(&http, "GET", &one, &key, None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(fields(&json_of(&text)), ["id", "subscribed_events", "url"]);

    // Update non-token data: the token omitted from the response.
    let update = r#"{
"url": "https://mywebsite.com/webhook_receiver",
"subscribed_events": ["survey_created"]
}"#
    .replace("https://mywebsite.com/webhook_receiver", &receiver_url);
    let (status, text) = curl(&http, "PATCH", &one, &key, Some(&update)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(fields(&json_of(&text)), ["id", "subscribed_events", "url"]);

    // Update the token, with the guide's trailing comma: the response shows the new token.
    let token_update = r#"{
"authorization_token": "zGORr7q1I4egIr0c0eKXD7CMpIcjFooJ",
}"#
    .replace(
        "zGORr7q1I4egIr0c0eKXD7CMpIcjFooJ",
        "n3wT0ken-after-rotation",
    );
    let (status, text) = curl(&http, "PATCH", &one, &key, Some(&token_update)).await;
    assert_eq!(status, 200, "{text}");
    let updated = json_of(&text);
    assert_eq!(
        fields(&updated),
        ["authorization_token", "id", "subscribed_events", "url"]
    );
    assert_eq!(updated["authorization_token"], "n3wT0ken-after-rotation");

    // A delivery: {event_type, content}, the token in x-webhook-infermedica-token, signed.
    publish(
        &http,
        &server,
        &account_id,
        "survey_created",
        json!({"surveyId": "s-1", "status": "new"}),
    )
    .await;
    let delivery = next(&mut received).await;
    let body = std::str::from_utf8(&delivery.body).unwrap();
    let secret = signing_secret(&http, &server, &key, &id).await;
    assert!(
        signature_is_valid(&secret, &delivery.headers, body),
        "{body}"
    );
    assert_eq!(
        json_of(body),
        json!({"event_type": "survey_created", "content": {"surveyId": "s-1", "status": "new"}})
    );
    assert_eq!(
        delivery.headers["x-webhook-infermedica-token"],
        "n3wT0ken-after-rotation"
    );
    assert!(delivery.headers.get("x-webhook-token").is_none());
    // The same webhook through /api/v3 says how it is delivered.
    let (_, v3) = call(
        &http,
        "GET",
        server.api(&format!("/webhook/{id}")),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(v3["format"], "content");
    assert_eq!(v3["tokenHeader"], "x-webhook-infermedica-token");

    // Bad input: a 400 naming the guide's field.
    for (body, field) in [
        (
            r#"{"url": "https://x.example/h", "subscribed_events": ["no_such_event"]}"#,
            "subscribed_events[0]:",
        ),
        (
            r#"{"url": "https://x.example/h", "subscribed_events": []}"#,
            "subscribed_events:",
        ),
        (r#"{"subscribed_events": ["survey_created"]}"#, "url:"),
        (
            r#"{"url": "ftp://x.example/h", "subscribed_events": ["survey_created"]}"#,
            "url:",
        ),
        (
            r#"{"url": "https://x.example/h", "subscribed_events": ["survey_created"], "authorization_token": "a\nb"}"#,
            "authorization_token:",
        ),
        (
            r#"{"url": "https://x.example/h", "subscribed_events": ["survey_created"], "format": "event"}"#,
            "format:",
        ),
    ] {
        let (status, text) = curl(&http, "POST", &base, &key, Some(body)).await;
        assert_refused((status, json_of(&text)), field);
    }
    let (status, text) = curl(&http, "POST", &base, &key, Some("{\"url\": ")).await;
    assert_eq!(status, 400, "{text}");

    // Another account's configuration is 404 on every route, and not listed.
    for (method, body) in [
        ("GET", None),
        ("PATCH", Some(update.as_str())),
        ("DELETE", None),
    ] {
        let (status, text) = curl(&http, method, &one, &other_key, body).await;
        assert_eq!(status, 404, "{method}: {text}");
    }
    let (_, text) = curl(&http, "GET", &base, &other_key, None).await;
    assert_eq!(json_of(&text), json!([]));
    let (status, _) = curl(&http, "GET", &base, "not-a-key", None).await;
    assert_eq!(status, 401);

    // Delete: the deleted data, token excluded; then it is gone.
    let (status, text) = curl(&http, "DELETE", &one, &key, None).await;
    assert_eq!(status, 200, "{text}");
    let deleted = json_of(&text);
    assert_eq!(fields(&deleted), ["id", "subscribed_events", "url"]);
    assert_eq!(deleted["id"], id.as_str());
    let (status, _) = curl(&http, "GET", &one, &key, None).await;
    assert_eq!(status, 404);
    server.stop();
}

#[tokio::test]
async fn the_organization_style_requests_work_as_written() {
    let dir = temp_dir("guide-organization");
    let server = Server::start(&dir);
    let http = reqwest::Client::new();
    let (account_id, key) = new_account(&http, &server, "organization").await;
    let (other_id, other_key) = new_account(&http, &server, "another organization").await;
    register_type(&http, &server, "medical-encounters.created").await;
    let (receiver_url, mut received) = raw_receiver().await;
    let route = format!("{}/webhook-events", server.base);

    // Create, as the guide writes it: `events` one name.
    let create = format!(
        r#"{{
  "organization": "{account_id}",
  "active": true,
  "url": "{receiver_url}",
  "events": "ping"
}}"#
    );
    let (status, text) = curl(&http, "POST", &route, &key, Some(&create)).await;
    assert_eq!(status, 201, "{text}");
    let webhook = json_of(&text);
    assert_eq!(
        webhook,
        json!({"id": webhook["id"], "organization": account_id, "active": true,
               "url": receiver_url, "events": ["ping"]})
    );
    let webhook_id = webhook["id"].as_str().unwrap().to_string();

    // A ping event to that webhook: {id, event, payload}, signed, answered 200.
    let ping = format!(
        r#"{{
  "webhook": "{webhook_id}",
  "event": "ping"
}}"#
    );
    let (status, text) = curl(&http, "POST", &route, &key, Some(&ping)).await;
    assert_eq!(status, 201, "{text}");
    let sent = json_of(&text);
    assert_eq!(sent["webhook"], webhook_id.as_str());
    assert_eq!(sent["event"], "ping");
    assert_eq!(sent["delivered"], true, "{sent}");
    assert_eq!(sent["status"], 200);
    let delivery = next(&mut received).await;
    let body = std::str::from_utf8(&delivery.body).unwrap();
    let secret = signing_secret(&http, &server, &key, &webhook_id).await;
    assert!(
        signature_is_valid(&secret, &delivery.headers, body),
        "{body}"
    );
    let body = json_of(body);
    assert_eq!(fields(&body), ["event", "id", "payload"]);
    assert_eq!(body["event"], "ping");
    assert_eq!(body["id"], sent["id"]);
    assert_eq!(delivery.headers["webhook-id"], sent["id"].as_str().unwrap());

    // `events` as a list; the webhook's deliveries are {id, event, payload}.
    let (list_url, mut list_received) = raw_receiver().await;
    let (status, text) = curl(
        &http,
        "POST",
        &route,
        &key,
        Some(
            &json!({"organization": account_id, "active": true, "url": list_url,
                     "events": ["medical-encounters.created", "ping"]})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let listed_webhook = json_of(&text);
    assert_eq!(
        listed_webhook["events"],
        json!(["medical-encounters.created", "ping"])
    );
    publish(
        &http,
        &server,
        &account_id,
        "medical-encounters.created",
        json!({"encounterId": 9}),
    )
    .await;
    let delivery = next(&mut list_received).await;
    let body = json_of(std::str::from_utf8(&delivery.body).unwrap());
    assert_eq!(fields(&body), ["event", "id", "payload"]);
    assert_eq!(body["event"], "medical-encounters.created");
    assert_eq!(body["payload"], json!({"encounterId": 9}));

    // An inactive webhook gets no published events.
    let (status, text) = curl(
        &http,
        "POST",
        &route,
        &key,
        Some(
            &json!({"active": false, "url": receiver_url, "events": "medical-encounters.created"})
                .to_string(),
        ),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    assert_eq!(json_of(&text)["active"], false);

    // The admin key acts for the organization the body names; it must name one.
    let (status, text) = curl(
        &http,
        "POST",
        &route,
        ADMIN_KEY,
        Some(&json!({"organization": other_id, "url": receiver_url, "events": "ping"}).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let others = json_of(&text);
    assert_eq!(others["organization"], other_id.as_str());
    let (status, _) = call(
        &http,
        "GET",
        server.api(&format!("/webhook/{}", others["id"].as_str().unwrap())),
        Some(&other_key),
        None,
    )
    .await;
    assert_eq!(
        status, 200,
        "the admin's webhook belongs to the organization named"
    );
    let (status, text) = curl(
        &http,
        "POST",
        &route,
        ADMIN_KEY,
        Some(&json!({"url": receiver_url, "events": "ping"}).to_string()),
    )
    .await;
    assert_refused((status, json_of(&text)), "organization:");
    let (status, text) = curl(
        &http,
        "POST",
        &route,
        ADMIN_KEY,
        Some(&json!({"organization": "acct_01NOSUCHACCOUNT000000000000", "url": receiver_url, "events": "ping"}).to_string()),
    )
    .await;
    assert_eq!(status, 404, "{text}");

    // Another organization's resources are 404: naming it, or pinging its webhook.
    let (status, text) = curl(&http, "POST", &route, &other_key, Some(&create)).await;
    assert_eq!(status, 404, "{text}");
    let (status, text) = curl(&http, "POST", &route, &other_key, Some(&ping)).await;
    assert_eq!(status, 404, "{text}");
    assert!(
        received.try_recv().is_err(),
        "another account pinged the webhook"
    );

    // Bad input: a 400 naming the field.
    for (body, field) in [
        (json!({"webhook": webhook_id, "event": "pong"}), "event:"),
        (json!({"webhook": webhook_id}), "event:"),
        (
            json!({"webhook": webhook_id, "event": "ping", "url": receiver_url}),
            "url:",
        ),
        (
            json!({"url": receiver_url, "events": "ping", "event": "ping"}),
            "event:",
        ),
        (json!({"url": receiver_url}), "events:"),
        (json!({"events": "ping"}), "url:"),
        (json!({"url": receiver_url, "events": 5}), "events:"),
        (
            json!({"url": receiver_url, "events": ["ping", 5]}),
            "events[1]:",
        ),
        (
            json!({"url": receiver_url, "events": "no.such"}),
            "events[0]:",
        ),
        (
            json!({"url": receiver_url, "events": "ping", "colour": "red"}),
            "colour:",
        ),
        (
            json!({"url": receiver_url, "events": "ping", "active": "yes"}),
            "active:",
        ),
    ] {
        let (status, text) = curl(&http, "POST", &route, &key, Some(&body.to_string())).await;
        assert_refused((status, json_of(&text)), field);
    }
    server.stop();
}
