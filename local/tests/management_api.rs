//! End to end: the management API (accounts and keys, event types, webhook CRUD, secrets and
//! tokens, logs and their filters, status counts, OpenAPI) against the real `hookline serve`
//! process, with real receivers on 127.0.0.1.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::UnboundedReceiver;

type Http = reqwest::Client;

const UNKNOWN_ACCOUNT: &str = "acct_01ARZ3NDEKTSV4RRFFQ69G5FAV";
const NO_SUCH_URL: &str = "http://127.0.0.1:9/hook";

// --- helpers ---

async fn register_type(
    http: &Http,
    server: &Server,
    name: &str,
    description: &str,
) -> (u16, Value) {
    call(
        http,
        "POST",
        server.api("/event-types"),
        Some(ADMIN_KEY),
        Some(json!({ "name": name, "description": description })),
    )
    .await
}

/// Publishes as the platform; asserts 202 and returns `{id,type,deliveries}`.
async fn publish(
    http: &Http,
    server: &Server,
    account_id: &str,
    event_type: &str,
    payload: Value,
) -> Value {
    let (status, published) = call(
        http,
        "POST",
        server.api("/events"),
        Some(ADMIN_KEY),
        Some(json!({ "accountId": account_id, "type": event_type, "payload": payload })),
    )
    .await;
    assert_eq!(status, 202, "{published}");
    assert_eq!(published["type"], event_type);
    published
}

async fn next_delivery(rx: &mut UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("delivered in time")
        .expect("the receiver is running")
}

async fn assert_nothing_more(rx: &mut UnboundedReceiver<Received>, why: &str) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rx.try_recv().is_err(), "{why}");
}

/// `GET /webhook/logs?{query}`, asserting 200.
async fn logs(http: &Http, server: &Server, key: &str, query: &str) -> Value {
    let (status, page) = call(
        http,
        "GET",
        server.api(&format!("/webhook/logs?{query}")),
        Some(key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{query}: {page}");
    page
}

/// Polls `/webhook/logs?{query}` until it reports `total` entries.
async fn logs_until(http: &Http, server: &Server, key: &str, query: &str, total: u64) -> Value {
    for _ in 0..100 {
        let page = logs(http, server, key, query).await;
        if page["total"] == total {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/webhook/logs?{query} never reached {total} entries");
}

/// `(content length, page, size, total, first, last)` of a page envelope.
fn envelope(page: &Value) -> (usize, u64, u64, u64, bool, bool) {
    (
        page["content"].as_array().expect("content").len(),
        page["page"].as_u64().expect("page"),
        page["size"].as_u64().expect("size"),
        page["total"].as_u64().expect("total"),
        page["first"].as_bool().expect("first"),
        page["last"].as_bool().expect("last"),
    )
}

fn content_ids(page: &Value) -> Vec<String> {
    page["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_string())
        .collect()
}

/// `[{name,description}]` as a map.
fn catalog(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list of event types: {list}"))
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["description"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Now plus `offset_secs`, as RFC 3339 UTC (`2024-05-01T12:00:00Z`).
fn rfc3339_from_now(offset_secs: i64) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset_secs;
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

fn header<'a>(got: &'a Received, name: &str) -> Option<&'a str> {
    got.headers.get(name).map(|v| v.to_str().unwrap())
}

fn assert_not_found((status, body): (u16, Value), what: &str) {
    assert_eq!(status, 404, "{what}: {body}");
    assert_eq!(body["error"]["code"], "not_found", "{what}: {body}");
}

// --- tests ---

#[tokio::test(flavor = "multi_thread")]
async fn accounts_are_paged_without_keys_and_keys_can_be_added_and_revoked() {
    let server = Server::start(&temp_dir("mgmt-accounts"));
    let http = Http::new();
    let names = ["Acme Clinic", "Bravo Health", "Charlie Care"];
    let mut accounts = Vec::new();
    for name in names {
        accounts.push(new_account(&http, &server, name).await);
    }
    let name_of: BTreeMap<String, &str> = accounts
        .iter()
        .map(|(id, _)| id.clone())
        .zip(names)
        .collect();

    // Two pages of two; no API key anywhere in a listing.
    let mut listed = BTreeSet::new();
    for (query, expected) in [
        ("size=2", (2, 0, 2, 3, true, false)),
        ("page=1&size=2", (1, 1, 2, 3, false, true)),
    ] {
        let (status, text) = call_text(
            &http,
            "GET",
            server.api(&format!("/accounts?{query}")),
            Some(ADMIN_KEY),
            None,
        )
        .await;
        assert_eq!(status, 200, "{text}");
        assert!(!text.contains("apiKey"), "a listing shows API keys: {text}");
        for (_, key) in &accounts {
            assert!(!text.contains(key.as_str()), "a listing shows an API key");
        }
        let page: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(envelope(&page), expected, "{query}: {page}");
        for item in page["content"].as_array().unwrap() {
            let id = item["id"].as_str().unwrap();
            assert_eq!(item["name"], name_of[id]);
            assert!(chrono_like(item["createdAt"].as_str().unwrap()), "{item}");
            assert!(listed.insert(id.to_string()), "{id} is on two pages");
        }
    }
    assert_eq!(listed, name_of.keys().cloned().collect());
    let (status, all) = call(&http, "GET", server.api("/accounts"), Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200);
    assert_eq!(envelope(&all), (3, 0, 20, 3, true, true), "default size 20");
    for bad in ["size=0", "size=101", "page=-1"] {
        let (status, body) = call(
            &http,
            "GET",
            server.api(&format!("/accounts?{bad}")),
            Some(ADMIN_KEY),
            None,
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // One account: its key ids, never the keys.
    let (a_id, a_key) = &accounts[0];
    let account_path = format!("/accounts/{a_id}");
    let keys_path = format!("/accounts/{a_id}/api-keys");
    let key_ids = |account: &Value| -> BTreeSet<String> {
        account["apiKeys"]
            .as_array()
            .unwrap_or_else(|| panic!("apiKeys: {account}"))
            .iter()
            .map(|k| {
                assert!(chrono_like(k["createdAt"].as_str().unwrap()), "{k}");
                k["id"].as_str().unwrap().to_string()
            })
            .collect()
    };
    let (status, text) = call_text(
        &http,
        "GET",
        server.api(&account_path),
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.contains(a_key.as_str()),
        "the account shows its API key"
    );
    let account: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(account["id"], a_id.as_str());
    assert_eq!(account["name"], "Acme Clinic");
    assert!(chrono_like(account["createdAt"].as_str().unwrap()));
    let original_ids = key_ids(&account);
    assert_eq!(original_ids.len(), 1, "{account}");
    let original_key_id = original_ids.into_iter().next().unwrap();
    assert!(original_key_id.starts_with("key_"), "{original_key_id}");

    // A webhook made with the first key, to see that added keys act for the same account.
    let webhook = new_webhook(
        &http,
        &server,
        a_key,
        json!({"type": "patient.created", "url": NO_SUCH_URL}),
    )
    .await;

    // Add keys, with `{}` and with no body at all.
    let (status, added) = call(
        &http,
        "POST",
        server.api(&keys_path),
        Some(ADMIN_KEY),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 201, "{added}");
    let second_key = added["apiKey"].as_str().unwrap().to_string();
    let second_key_id = added["id"].as_str().unwrap().to_string();
    assert!(second_key_id.starts_with("key_"));
    assert!(chrono_like(added["createdAt"].as_str().unwrap()));
    assert_ne!(&second_key, a_key);
    let (status, third) = call(&http, "POST", server.api(&keys_path), Some(ADMIN_KEY), None).await;
    assert_eq!(status, 201, "{third}");
    let third_key = third["apiKey"].as_str().unwrap().to_string();
    let third_key_id = third["id"].as_str().unwrap().to_string();

    let (status, text) = call_text(
        &http,
        "GET",
        server.api(&account_path),
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert_eq!(status, 200);
    for key in [a_key, &second_key, &third_key] {
        assert!(!text.contains(key.as_str()), "the account shows an API key");
    }
    let account: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        key_ids(&account),
        BTreeSet::from([
            original_key_id.clone(),
            second_key_id.clone(),
            third_key_id.clone()
        ])
    );

    // The new keys work at once, for the same account (header and bearer).
    let (status, list) = call(
        &http,
        "GET",
        server.api("/webhook"),
        Some(&second_key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(content_ids(&list), vec![webhook["id"].as_str().unwrap()]);
    let bearer = http
        .get(server.api("/webhook"))
        .bearer_auth(&third_key)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);

    // Revoke the original key: it stops working, the others go on.
    let revoke_original = format!("/accounts/{a_id}/api-keys/{original_key_id}");
    let (status, body) = call(
        &http,
        "DELETE",
        server.api(&revoke_original),
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = call(&http, "GET", server.api("/webhook"), Some(a_key), None).await;
    assert_eq!(status, 401, "a revoked key still works: {body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    for key in [&second_key, &third_key] {
        assert_eq!(
            call(&http, "GET", server.api("/webhook"), Some(key), None)
                .await
                .0,
            200
        );
    }
    assert_not_found(
        call(
            &http,
            "DELETE",
            server.api(&revoke_original),
            Some(ADMIN_KEY),
            None,
        )
        .await,
        "revoking twice",
    );
    let (_, account) = call(
        &http,
        "GET",
        server.api(&account_path),
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert_eq!(
        key_ids(&account),
        BTreeSet::from([second_key_id.clone(), third_key_id.clone()])
    );

    // Another account's key id cannot be revoked through this account.
    let (b_id, b_key) = &accounts[1];
    let (_, b_account) = call(
        &http,
        "GET",
        server.api(&format!("/accounts/{b_id}")),
        Some(ADMIN_KEY),
        None,
    )
    .await;
    let b_key_id = key_ids(&b_account).into_iter().next().unwrap();
    assert_not_found(
        call(
            &http,
            "DELETE",
            server.api(&format!("/accounts/{a_id}/api-keys/{b_key_id}")),
            Some(ADMIN_KEY),
            None,
        )
        .await,
        "another account's key",
    );
    assert_eq!(
        call(&http, "GET", server.api("/webhook"), Some(b_key), None)
            .await
            .0,
        200
    );

    // Unknown accounts.
    assert_not_found(
        call(
            &http,
            "GET",
            server.api(&format!("/accounts/{UNKNOWN_ACCOUNT}")),
            Some(ADMIN_KEY),
            None,
        )
        .await,
        "unknown account",
    );
    assert_not_found(
        call(
            &http,
            "POST",
            server.api(&format!("/accounts/{UNKNOWN_ACCOUNT}/api-keys")),
            Some(ADMIN_KEY),
            Some(json!({})),
        )
        .await,
        "a key for an unknown account",
    );
    assert_not_found(
        call(
            &http,
            "DELETE",
            server.api(&format!(
                "/accounts/{UNKNOWN_ACCOUNT}/api-keys/{second_key_id}"
            )),
            Some(ADMIN_KEY),
            None,
        )
        .await,
        "revoking through an unknown account",
    );

    // Account keys are refused on every admin route; no key at all is 401.
    let admin_routes: [(&str, String, Option<Value>); 7] = [
        ("GET", "/accounts".into(), None),
        ("POST", "/accounts".into(), Some(json!({"name": "Mallory"}))),
        ("GET", account_path.clone(), None),
        ("POST", keys_path.clone(), Some(json!({}))),
        (
            "DELETE",
            format!("/accounts/{a_id}/api-keys/{second_key_id}"),
            None,
        ),
        ("GET", "/event-types".into(), None),
        (
            "POST",
            "/event-types".into(),
            Some(json!({"name": "sneaky.type", "description": "x"})),
        ),
    ];
    for (method, path, body) in admin_routes {
        let (status, answer) = call(
            &http,
            method,
            server.api(&path),
            Some(&second_key),
            body.clone(),
        )
        .await;
        assert_eq!(status, 403, "{method} {path} with an account key: {answer}");
        let (status, _) = call(&http, method, server.api(&path), None, body).await;
        assert_eq!(status, 401, "{method} {path} without a key");
    }
    assert_eq!(
        call(
            &http,
            "GET",
            server.api("/webhook"),
            Some(&second_key),
            None
        )
        .await
        .0,
        200,
        "the key survived its own refused revocation"
    );
    let (_, all) = call(&http, "GET", server.api("/accounts"), Some(ADMIN_KEY), None).await;
    assert_eq!(all["total"], 3, "an account key created an account");
}

#[tokio::test(flavor = "multi_thread")]
async fn registered_event_types_join_the_catalog_and_are_delivered() {
    let data_dir = temp_dir("mgmt-types");
    let server = Server::start(&data_dir);
    let http = Http::new();

    let survey = ("survey_finished", "A patient finished a survey.");
    let encounter = (
        "medical-encounters.created",
        "A medical encounter was recorded.",
    );
    for (name, description) in [survey, encounter] {
        let (status, registered) = register_type(&http, &server, name, description).await;
        assert_eq!(
            (status, registered),
            (201, json!({"name": name, "description": description}))
        );
    }
    for name in ["survey_finished", "patient.created", "reading.weight"] {
        let (status, body) = register_type(&http, &server, name, "Something else.").await;
        assert_eq!(status, 409, "registering {name} again: {body}");
        assert_eq!(body["error"]["code"], "conflict");
    }
    assert_refused(
        register_type(&http, &server, "bad name!", "x").await,
        "name:",
    );

    // Both catalogs list the registered types (unchanged by the refused attempts) and the
    // built-in ones.
    let (account_id, key) = new_account(&http, &server, "Survey Co").await;
    let (status, admin_list) = call(
        &http,
        "GET",
        server.api("/event-types"),
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert_eq!(status, 200, "{admin_list}");
    let (status, account_list) =
        call(&http, "GET", server.api("/webhook/types"), Some(&key), None).await;
    assert_eq!(status, 200, "{account_list}");
    for list in [&admin_list, &account_list] {
        let types = catalog(list);
        assert_eq!(
            types.get(survey.0).map(String::as_str),
            Some(survey.1),
            "{list}"
        );
        assert_eq!(
            types.get(encounter.0).map(String::as_str),
            Some(encounter.1),
            "{list}"
        );
        assert_eq!(
            types.get("reading.weight").map(String::as_str),
            Some("A body weight reading was taken.")
        );
        assert!(types.contains_key("patient.created"));
        assert!(!types.contains_key("bad name!"));
    }

    // Subscribe to a registered type; unknown names are refused with the field at fault.
    let (hook_url, mut received) = receiver().await;
    let webhook = new_webhook(
        &http,
        &server,
        &key,
        json!({"url": hook_url, "events": ["survey_finished"]}),
    )
    .await;
    assert_eq!(webhook["events"], json!(["survey_finished"]));
    assert_eq!(webhook["type"], "survey_finished");
    let create = |body: Value| {
        call(
            &http,
            "POST",
            server.api("/webhook"),
            Some(&key),
            Some(body),
        )
    };
    assert_refused(
        create(json!({"url": hook_url, "events": ["nope.thing"]})).await,
        "events[0]:",
    );
    assert_refused(
        create(json!({"url": hook_url, "events": ["survey_finished", "nope.thing"]})).await,
        "events[1]:",
    );
    assert_refused(
        create(json!({"url": hook_url, "type": "nope.thing"})).await,
        "type:",
    );

    // Publishing the registered type reaches the receiver.
    let payload = json!({"surveyId": "srv-17", "patientId": 4711, "score": 42});
    let published = publish(
        &http,
        &server,
        &account_id,
        "survey_finished",
        payload.clone(),
    )
    .await;
    assert_eq!(published["deliveries"], 1);
    let got = next_delivery(&mut received).await;
    let body: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(body["type"], "survey_finished");
    assert_eq!(body["id"], published["id"]);
    assert_eq!(body["payload"], payload);
    let published = publish(
        &http,
        &server,
        &account_id,
        "medical-encounters.created",
        json!({}),
    )
    .await;
    assert_eq!(published["deliveries"], 0, "no webhook subscribes to it");
    let (status, body) = call(
        &http,
        "POST",
        server.api("/events"),
        Some(ADMIN_KEY),
        Some(json!({"accountId": account_id, "type": "nope.thing", "payload": {}})),
    )
    .await;
    assert_refused((status, body), "type:");

    // Registered types survive a restart.
    server.stop();
    let server = Server::start(&data_dir);
    let (_, admin_list) = call(
        &http,
        "GET",
        server.api("/event-types"),
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert!(
        catalog(&admin_list).contains_key(encounter.0),
        "{admin_list}"
    );
    let webhook = new_webhook(
        &http,
        &server,
        &key,
        json!({"url": hook_url, "type": "medical-encounters.created"}),
    )
    .await;
    assert_eq!(webhook["type"], "medical-encounters.created");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_account_cannot_see_or_touch_another_accounts_webhooks_or_logs() {
    let server = Server::start(&temp_dir("mgmt-tenants"));
    let http = Http::new();
    let (a_id, a_key) = new_account(&http, &server, "Tenant A").await;
    let (b_id, b_key) = new_account(&http, &server, "Tenant B").await;
    let (hook_url, mut received) = receiver().await;

    let webhook = new_webhook(
        &http,
        &server,
        &a_key,
        json!({"type": "patient.created", "url": hook_url, "description": "A's hook"}),
    )
    .await;
    let id = webhook["id"].as_str().unwrap().to_string();
    let (_, secret) = call(
        &http,
        "GET",
        server.api(&format!("/webhook/{id}/signing-secret")),
        Some(&a_key),
        None,
    )
    .await;
    let published = publish(
        &http,
        &server,
        &a_id,
        "patient.created",
        json!({"patientId": 1}),
    )
    .await;
    assert_eq!(published["deliveries"], 1);
    next_delivery(&mut received).await;
    let log = logs_until(&http, &server, &a_key, "status=delivered", 1).await;
    let log_id = log["content"][0]["id"].as_str().unwrap().to_string();

    // B gets 404 for everything of A's.
    let b = Some(b_key.as_str());
    let hook = format!("/webhook/{id}");
    assert_not_found(
        call(&http, "GET", server.api(&hook), b, None).await,
        "GET A's webhook",
    );
    assert_not_found(
        call(
            &http,
            "PATCH",
            server.api(&hook),
            b,
            Some(json!({"url": NO_SUCH_URL, "active": false})),
        )
        .await,
        "PATCH A's webhook",
    );
    assert_not_found(
        call(&http, "DELETE", server.api(&hook), b, None).await,
        "DELETE A's webhook",
    );
    assert_not_found(
        call(
            &http,
            "GET",
            server.api(&format!("{hook}/signing-secret")),
            b,
            None,
        )
        .await,
        "A's signing secret",
    );
    assert_not_found(
        call(
            &http,
            "POST",
            server.api(&format!("{hook}/signing-secret/rotate")),
            b,
            Some(json!({})),
        )
        .await,
        "rotating A's signing secret",
    );
    assert_not_found(
        call(
            &http,
            "GET",
            server.api(&format!("/webhook/logs/{log_id}")),
            b,
            None,
        )
        .await,
        "A's log entry",
    );

    // B's lists and counts are empty.
    let (status, list) = call(&http, "GET", server.api("/webhook"), b, None).await;
    assert_eq!(status, 200);
    assert_eq!(envelope(&list), (0, 0, 20, 0, true, true), "{list}");
    for query in ["", &format!("webhookId={id}")] {
        let page = logs(&http, &server, &b_key, query).await;
        assert_eq!(page["total"], 0, "{query}: {page}");
        assert_eq!(page["content"], json!([]), "{query}");
    }
    let (status, counts) = call(&http, "GET", server.api("/webhook/status"), b, None).await;
    assert_eq!(
        (status, counts),
        (
            200,
            json!({"pending": 0, "retrying": 0, "delivered": 0, "failed": 0})
        )
    );

    // Events for B do not reach A's webhook.
    let published = publish(
        &http,
        &server,
        &b_id,
        "patient.created",
        json!({"patientId": 2}),
    )
    .await;
    assert_eq!(published["deliveries"], 0);
    assert_nothing_more(&mut received, "B's event reached A's webhook").await;

    // A's webhook, secret and log are untouched.
    let (status, again) = call(&http, "GET", server.api(&hook), Some(&a_key), None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["url"], hook_url.as_str());
    assert_eq!(again["active"], true);
    assert_eq!(again["description"], "A's hook");
    let (_, secret_again) = call(
        &http,
        "GET",
        server.api(&format!("{hook}/signing-secret")),
        Some(&a_key),
        None,
    )
    .await;
    assert_eq!(secret_again, secret);
    let (status, entry) = call(
        &http,
        "GET",
        server.api(&format!("/webhook/logs/{log_id}")),
        Some(&a_key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{entry}");
    let (_, counts) = call(
        &http,
        "GET",
        server.api("/webhook/status"),
        Some(&a_key),
        None,
    )
    .await;
    assert_eq!(
        counts,
        json!({"pending": 0, "retrying": 0, "delivered": 1, "failed": 0})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_secrets_ride_on_deliveries_but_never_show_where_they_must_not() {
    let server = Server::start(&temp_dir("mgmt-secrets"));
    let http = Http::new();
    let (account_id, key) = new_account(&http, &server, "Secretive Clinic").await;
    let (hook_url, mut received) = receiver().await;

    let account_secret = "acct-secret-7f3a9c51";
    let (status, set) = call(
        &http,
        "POST",
        server.api("/webhook-secret"),
        Some(&key),
        Some(json!({"secret": account_secret})),
    )
    .await;
    assert_eq!((status, set), (200, json!({"secret": account_secret})));

    // The token is shown on create, and only there.
    let token = "tok-Zq81xY04mNbVe2";
    let (status, text) = call_text(
        &http,
        "POST",
        server.api("/webhook"),
        Some(&key),
        Some(json!({"type": "patient.created", "url": hook_url, "authorizationToken": token})),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(created["authorizationToken"], token);
    let id = created["id"].as_str().unwrap().to_string();
    let hook = format!("/webhook/{id}");
    let secret_path = format!("{hook}/signing-secret");
    let rotate_path = format!("{hook}/signing-secret/rotate");

    // Rotation: generated, then given; bad secrets are refused and change nothing.
    let signing_secret = async || {
        let (status, body) = call(&http, "GET", server.api(&secret_path), Some(&key), None).await;
        assert_eq!(status, 200, "{body}");
        body["secret"].as_str().unwrap().to_string()
    };
    let first_secret = signing_secret().await;
    assert!(first_secret.starts_with("whsec_"));
    let (status, body) = call(
        &http,
        "POST",
        server.api(&rotate_path),
        Some(&key),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let second_secret = signing_secret().await;
    assert!(second_secret.starts_with("whsec_"));
    assert_ne!(second_secret, first_secret, "rotation kept the secret");
    let given = format!("whsec_{}", STANDARD.encode([42u8; 32]));
    let (status, body) = call(
        &http,
        "POST",
        server.api(&rotate_path),
        Some(&key),
        Some(json!({"secret": given})),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(signing_secret().await, given);
    for bad in [
        "not-a-whsec-secret".to_string(),
        format!("whsec_{}", STANDARD.encode([1u8; 8])),
        format!("whsec_{}", STANDARD.encode([1u8; 65])),
        "whsec_!!!not base64!!!".to_string(),
    ] {
        assert_refused(
            call(
                &http,
                "POST",
                server.api(&rotate_path),
                Some(&key),
                Some(json!({"secret": bad})),
            )
            .await,
            "secret:",
        );
    }
    assert_eq!(signing_secret().await, given);

    // The delivery carries token and account secret, and is signed with the current secret.
    let published = publish(
        &http,
        &server,
        &account_id,
        "patient.created",
        json!({"patientId": 7}),
    )
    .await;
    assert_eq!(published["deliveries"], 1);
    let got = next_delivery(&mut received).await;
    assert_eq!(header(&got, "x-webhook-token"), Some(token));
    assert_eq!(header(&got, "x-webhook-secret"), Some(account_secret));
    assert!(signature_is_valid(&given, &got.headers, &got.body));
    assert!(
        !got.body.contains(token),
        "the token is in the delivered body"
    );

    let never_shown: Vec<&str> = [token, account_secret]
        .into_iter()
        .chain(
            [&first_secret, &second_secret, &given]
                .into_iter()
                .map(|s| s.strip_prefix("whsec_").unwrap()),
        )
        .collect();
    let assert_clean = |what: &str, text: &str| {
        for secret in &never_shown {
            assert!(!text.contains(secret), "{what} shows {secret}: {text}");
        }
        assert!(
            !text.contains("authorizationToken"),
            "{what} has an authorizationToken: {text}"
        );
    };

    // Logs and the log entry.
    let page = logs_until(&http, &server, &key, "status=delivered", 1).await;
    let log_id = page["content"][0]["id"].as_str().unwrap().to_string();
    let (status, text) =
        call_text(&http, "GET", server.api("/webhook/logs"), Some(&key), None).await;
    assert_eq!(status, 200);
    assert_clean("the log list", &text);
    let (status, text) = call_text(
        &http,
        "GET",
        server.api(&format!("/webhook/logs/{log_id}")),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_clean("the log entry", &text);

    // Webhook reads and a PATCH that leaves the token alone.
    let (status, text) = call_text(&http, "GET", server.api(&hook), Some(&key), None).await;
    assert_eq!(status, 200, "{text}");
    assert_clean("GET /webhook/{id}", &text);
    let (status, text) = call_text(&http, "GET", server.api("/webhook"), Some(&key), None).await;
    assert_eq!(status, 200, "{text}");
    assert_clean("GET /webhook", &text);
    let (status, text) = call_text(
        &http,
        "PATCH",
        server.api(&hook),
        Some(&key),
        Some(json!({"description": "EHR sync"})),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_clean("a PATCH without a token", &text);
    let patched: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(patched["description"], "EHR sync");

    // The token is still in force after that PATCH.
    publish(
        &http,
        &server,
        &account_id,
        "patient.created",
        json!({"patientId": 8}),
    )
    .await;
    let got = next_delivery(&mut received).await;
    assert_eq!(header(&got, "x-webhook-token"), Some(token));

    let (status, text) = call_text(&http, "DELETE", server.api(&hook), Some(&key), None).await;
    assert_eq!(status, 200, "{text}");
    assert_clean("DELETE /webhook/{id}", &text);
    let deleted: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(deleted["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn impilo_walk_through_secret_header_and_log_filters() {
    let server = Server::start(&temp_dir("mgmt-impilo"));
    let http = Http::new();
    let (account_id, key) = new_account(&http, &server, "Impilo customer").await;
    let (weight_url, mut weight_rx) = receiver().await;
    let (order_url, mut order_rx) = receiver().await;

    let (status, weight_hook) = call(
        &http,
        "POST",
        server.api("/webhook"),
        Some(&key),
        Some(json!({"type": "reading.weight", "url": weight_url})),
    )
    .await;
    assert_eq!(status, 201, "{weight_hook}");
    assert_eq!(weight_hook["type"], "reading.weight");
    assert_eq!(weight_hook["url"], weight_url.as_str());
    assert_eq!(weight_hook["events"], json!(["reading.weight"]));
    assert_eq!(weight_hook["active"], true);
    let weight_id = weight_hook["id"].as_str().unwrap().to_string();
    assert!(weight_id.starts_with("wh_"));
    let order_hook = new_webhook(
        &http,
        &server,
        &key,
        json!({"type": "order.status", "url": order_url}),
    )
    .await;
    let order_id = order_hook["id"].as_str().unwrap().to_string();

    // The account secret: generated, then set; GET shows the current one.
    let (status, generated) = call(
        &http,
        "POST",
        server.api("/webhook-secret"),
        Some(&key),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{generated}");
    let generated_secret = generated["secret"].as_str().unwrap();
    assert!(!generated_secret.is_empty());
    let (status, current) = call(
        &http,
        "GET",
        server.api("/webhook-secret"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(
        (status, current),
        (200, json!({"secret": generated_secret}))
    );
    let (status, set) = call(
        &http,
        "POST",
        server.api("/webhook-secret"),
        Some(&key),
        Some(json!({"secret": "s3cret-value"})),
    )
    .await;
    assert_eq!((status, set), (200, json!({"secret": "s3cret-value"})));
    let (status, current) = call(
        &http,
        "GET",
        server.api("/webhook-secret"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!((status, current), (200, json!({"secret": "s3cret-value"})));

    // Two events, one per webhook, each with the secret header.
    let before = rfc3339_from_now(-60);
    let weight_payload = json!({"patientId": 4711, "weight": 72.5, "unit": "kg"});
    let published = publish(
        &http,
        &server,
        &account_id,
        "reading.weight",
        weight_payload.clone(),
    )
    .await;
    assert_eq!(published["deliveries"], 1);
    let weight_event = published["id"].clone();
    let got = next_delivery(&mut weight_rx).await;
    assert_eq!(header(&got, "x-webhook-secret"), Some("s3cret-value"));
    let body: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(
        (&body["type"], &body["payload"]),
        (&json!("reading.weight"), &weight_payload)
    );
    let published = publish(
        &http,
        &server,
        &account_id,
        "order.status",
        json!({"orderId": "ord-1", "orderEventType": "SHIPPED"}),
    )
    .await;
    assert_eq!(published["deliveries"], 1);
    let got = next_delivery(&mut order_rx).await;
    assert_eq!(header(&got, "x-webhook-secret"), Some("s3cret-value"));
    assert!(got.body.contains("order.status"));
    let after = rfc3339_from_now(60);

    // The envelope, newest first.
    logs_until(&http, &server, &key, "status=delivered", 2).await;
    let all = logs(&http, &server, &key, "").await;
    assert_eq!(envelope(&all), (2, 0, 20, 2, true, true), "{all}");
    let newest = &all["content"][0];
    let oldest = &all["content"][1];
    assert_eq!(newest["webhookType"], "order.status", "newest first: {all}");
    assert_eq!(newest["webhookId"], order_id.as_str());
    assert_eq!(oldest["webhookType"], "reading.weight");
    assert_eq!(oldest["webhookId"], weight_id.as_str());
    assert_eq!(oldest["webhookUrl"], weight_url.as_str());
    assert_eq!(oldest["eventId"], weight_event);
    assert_eq!(oldest["status"], "delivered");
    assert_eq!(oldest["lastResponseStatus"], 200);
    assert_eq!(oldest["retryAttempts"], 0);
    assert_eq!(
        serde_json::from_str::<Value>(oldest["payload"].as_str().unwrap()).unwrap(),
        weight_payload
    );
    for entry in [newest, oldest] {
        for field in [
            "id",
            "webhookId",
            "webhookType",
            "webhookUrl",
            "eventId",
            "payload",
            "status",
            "createTimestamp",
            "lastResponseStatus",
            "retryAttempts",
            "lastRetryTimestamp",
            "nextRetryTimestamp",
        ] {
            assert!(
                entry.get(field).is_some(),
                "a log entry lacks {field}: {entry}"
            );
        }
        for field in ["createTimestamp", "lastRetryTimestamp"] {
            let at = entry[field].as_str().unwrap();
            assert!(chrono_like(at), "{field}: {at}");
            assert!(
                before.as_str() <= at && at <= after.as_str(),
                "{field} {at} is not now"
            );
        }
    }

    // Filters.
    let future = rfc3339_from_now(3_600);
    let past = rfc3339_from_now(-3_600);
    let only = |page: &Value| -> Vec<String> {
        page["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["webhookType"].as_str().unwrap().to_string())
            .collect()
    };
    for (query, expected) in [
        ("type=reading.weight".to_string(), vec!["reading.weight"]),
        (format!("webhookId={order_id}"), vec!["order.status"]),
        (format!("webhookId={weight_id}"), vec!["reading.weight"]),
        (
            "status=delivered".to_string(),
            vec!["order.status", "reading.weight"],
        ),
        ("status=failed".to_string(), vec![]),
        ("status=pending".to_string(), vec![]),
        (format!("startTimestamp={future}"), vec![]),
        (format!("endTimestamp={past}"), vec![]),
        (
            format!("startTimestamp={before}&endTimestamp={after}"),
            vec!["order.status", "reading.weight"],
        ),
        (
            format!("startLastRetryTimestamp={before}&endLastRetryTimestamp={after}"),
            vec!["order.status", "reading.weight"],
        ),
        (format!("startLastRetryTimestamp={future}"), vec![]),
        (format!("endLastRetryTimestamp={past}"), vec![]),
        (
            format!("type=order.status&startTimestamp={before}&status=delivered"),
            vec!["order.status"],
        ),
    ] {
        let page = logs(&http, &server, &key, &query).await;
        assert_eq!(only(&page), expected, "{query}: {page}");
        assert_eq!(page["total"], expected.len(), "{query}: {page}");
    }
    let page = logs(&http, &server, &key, "size=1").await;
    assert_eq!(envelope(&page), (1, 0, 1, 2, true, false), "{page}");
    assert_eq!(only(&page), vec!["order.status"]);
    let page = logs(&http, &server, &key, "size=1&page=1").await;
    assert_eq!(envelope(&page), (1, 1, 1, 2, false, true), "{page}");
    assert_eq!(only(&page), vec!["reading.weight"]);
    for param in [
        "startTimestamp",
        "endTimestamp",
        "startLastRetryTimestamp",
        "endLastRetryTimestamp",
    ] {
        assert_refused(
            call(
                &http,
                "GET",
                server.api(&format!("/webhook/logs?{param}=yesterday")),
                Some(&key),
                None,
            )
            .await,
            &format!("{param}:"),
        );
    }
    assert_refused(
        call(
            &http,
            "GET",
            server.api("/webhook/logs?status=lost"),
            Some(&key),
            None,
        )
        .await,
        "status:",
    );

    // One entry with its attempt.
    let log_id = oldest["id"].as_str().unwrap();
    let (status, entry) = call(
        &http,
        "GET",
        server.api(&format!("/webhook/logs/{log_id}")),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["id"], log_id);
    assert_eq!(entry["webhookId"], weight_id.as_str());
    assert_eq!(entry["status"], "delivered");
    let attempts = entry["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("{entry}"));
    assert_eq!(attempts.len(), 1, "{entry}");
    assert_eq!(attempts[0]["statusCode"], 200);
    assert!(attempts[0]["durationMs"].is_u64(), "{entry}");
    assert!(attempts[0]["error"].is_null(), "{entry}");
    assert_eq!(attempts[0]["responseBody"], "thanks");
    assert!(chrono_like(attempts[0]["timestamp"].as_str().unwrap()));

    let (status, counts) = call(
        &http,
        "GET",
        server.api("/webhook/status"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(
        (status, counts),
        (
            200,
            json!({"pending": 0, "retrying": 0, "delivered": 2, "failed": 0})
        )
    );

    // Without an account secret, deliveries carry no secret header.
    let (status, body) = call(
        &http,
        "DELETE",
        server.api("/webhook-secret"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_not_found(
        call(
            &http,
            "GET",
            server.api("/webhook-secret"),
            Some(&key),
            None,
        )
        .await,
        "the deleted account secret",
    );
    publish(
        &http,
        &server,
        &account_id,
        "reading.weight",
        json!({"patientId": 4711, "weight": 72.1}),
    )
    .await;
    let got = next_delivery(&mut weight_rx).await;
    assert_eq!(header(&got, "x-webhook-secret"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn infermedica_walk_through_token_updates_and_delete() {
    let server = Server::start(&temp_dir("mgmt-infermedica"));
    let http = Http::new();
    let (status, _) =
        register_type(&http, &server, "survey_finished", "A survey was finished.").await;
    assert_eq!(status, 201);
    let (account_id, key) = new_account(&http, &server, "Infermedica customer").await;
    let (first_url, mut first_rx) = receiver().await;
    let (second_url, mut second_rx) = receiver().await;

    let first_token = "zGORr7q1I4egIr0c0eKXD7CMpIcjFooJ";
    let created = new_webhook(
        &http,
        &server,
        &key,
        json!({"url": first_url, "events": ["survey_finished"], "authorizationToken": first_token}),
    )
    .await;
    assert_eq!(created["authorizationToken"], first_token);
    assert_eq!(created["events"], json!(["survey_finished"]));
    assert_eq!(created["url"], first_url.as_str());
    assert_eq!(created["active"], true);
    assert!(chrono_like(created["createdAt"].as_str().unwrap()));
    assert!(chrono_like(created["updatedAt"].as_str().unwrap()));
    let id = created["id"].as_str().unwrap().to_string();
    let hook = format!("/webhook/{id}");

    // Changing the URL: no token in the answer.
    let (status, patched) = call(
        &http,
        "PATCH",
        server.api(&hook),
        Some(&key),
        Some(json!({"url": second_url})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["url"], second_url.as_str());
    assert_eq!(patched["events"], json!(["survey_finished"]));
    assert!(patched.get("authorizationToken").is_none(), "{patched}");

    // Changing the token: the new one in the answer.
    let second_token = "Nw7kQ2pX9vLs4TbYe1RcUa8HmJf3GdZo";
    let (status, patched) = call(
        &http,
        "PATCH",
        server.api(&hook),
        Some(&key),
        Some(json!({"authorizationToken": second_token})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["authorizationToken"], second_token);
    assert_eq!(patched["url"], second_url.as_str());

    let (status, got) = call(&http, "GET", server.api(&hook), Some(&key), None).await;
    assert_eq!(status, 200);
    assert!(got.get("authorizationToken").is_none(), "{got}");
    assert_eq!(got["url"], second_url.as_str());
    let (_, list) = call(&http, "GET", server.api("/webhook"), Some(&key), None).await;
    assert_eq!(list["total"], 1);
    assert!(
        list["content"][0].get("authorizationToken").is_none(),
        "{list}"
    );

    // The event goes to the new URL with the new token.
    let published = publish(
        &http,
        &server,
        &account_id,
        "survey_finished",
        json!({"surveyId": "s-1"}),
    )
    .await;
    assert_eq!(published["deliveries"], 1);
    let delivered = next_delivery(&mut second_rx).await;
    assert_eq!(header(&delivered, "x-webhook-token"), Some(second_token));
    assert!(first_rx.try_recv().is_err(), "the old URL got the event");

    // DELETE answers with the deleted webhook, without its token; it is gone afterwards.
    let (status, deleted) = call(&http, "DELETE", server.api(&hook), Some(&key), None).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["id"], id.as_str());
    assert_eq!(deleted["url"], second_url.as_str());
    assert_eq!(deleted["events"], json!(["survey_finished"]));
    assert!(deleted.get("authorizationToken").is_none(), "{deleted}");
    assert_not_found(
        call(&http, "GET", server.api(&hook), Some(&key), None).await,
        "GET after DELETE",
    );
    assert_not_found(
        call(&http, "DELETE", server.api(&hook), Some(&key), None).await,
        "DELETE twice",
    );
    let (_, list) = call(&http, "GET", server.api("/webhook"), Some(&key), None).await;
    assert_eq!(envelope(&list), (0, 0, 20, 0, true, true), "{list}");
    let published = publish(
        &http,
        &server,
        &account_id,
        "survey_finished",
        json!({"surveyId": "s-2"}),
    )
    .await;
    assert_eq!(published["deliveries"], 0);
    assert_nothing_more(&mut second_rx, "a deleted webhook got an event").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn patch_changes_only_what_it_names_and_refuses_bad_input() {
    let server = Server::start(&temp_dir("mgmt-patch"));
    let http = Http::new();
    let (account_id, key) = new_account(&http, &server, "Patchy").await;
    let (hook_url, mut received) = receiver().await;
    let created = new_webhook(
        &http,
        &server,
        &key,
        json!({
            "type": "patient.created",
            "url": hook_url,
            "description": "Front desk",
            "metadata": {"team": "ops"},
            "authorizationToken": "tok-123456",
        }),
    )
    .await;
    assert_eq!(created["description"], "Front desk");
    assert_eq!(created["metadata"], json!({"team": "ops"}));
    let id = created["id"].as_str().unwrap().to_string();
    let hook = format!("/webhook/{id}");
    let patch =
        async |body: Value| call(&http, "PATCH", server.api(&hook), Some(&key), Some(body)).await;
    let get = async || {
        let (status, webhook) = call(&http, "GET", server.api(&hook), Some(&key), None).await;
        assert_eq!(status, 200, "{webhook}");
        webhook
    };

    // Deactivate: the rest stays, updatedAt moves, and events no longer go out.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, patched) = patch(json!({"active": false})).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["active"], false);
    for field in [
        "id",
        "url",
        "type",
        "events",
        "description",
        "metadata",
        "createdAt",
    ] {
        assert_eq!(patched[field], created[field], "{field} changed");
    }
    assert!(
        patched["updatedAt"].as_str().unwrap() > created["updatedAt"].as_str().unwrap(),
        "updatedAt did not move: {patched}"
    );
    assert!(patched.get("authorizationToken").is_none(), "{patched}");
    assert_eq!(get().await["active"], false);
    let published = publish(
        &http,
        &server,
        &account_id,
        "patient.created",
        json!({"patientId": 1}),
    )
    .await;
    assert_eq!(
        published["deliveries"], 0,
        "an inactive webhook got a delivery"
    );

    // Reactivate and clear the description in one go.
    let (status, patched) = patch(json!({"active": true, "description": null})).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["active"], true);
    assert!(patched["description"].is_null(), "{patched}");
    assert_eq!(patched["metadata"], json!({"team": "ops"}));
    let current = get().await;
    assert!(current["description"].is_null(), "{current}");
    assert_eq!(current["url"], hook_url.as_str());

    // From one `type` to several `events`: `type` goes away and the new events are delivered.
    let (status, patched) = patch(json!({"events": ["patient.created", "reading.*"]})).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["events"], json!(["patient.created", "reading.*"]));
    assert!(patched["type"].is_null(), "{patched}");
    let published = publish(
        &http,
        &server,
        &account_id,
        "reading.ecg",
        json!({"patientId": 2}),
    )
    .await;
    assert_eq!(published["deliveries"], 1);
    let got = next_delivery(&mut received).await;
    assert!(got.body.contains("reading.ecg"));
    assert_eq!(header(&got, "x-webhook-token"), Some("tok-123456"));

    // Clearing the token and the metadata.
    let (status, patched) = patch(json!({"authorizationToken": null, "metadata": null})).await;
    assert_eq!(status, 200, "{patched}");
    assert!(patched.get("authorizationToken").is_none(), "{patched}");
    assert!(patched["metadata"].is_null(), "{patched}");
    publish(
        &http,
        &server,
        &account_id,
        "reading.weight",
        json!({"patientId": 3}),
    )
    .await;
    let got = next_delivery(&mut received).await;
    assert_eq!(
        header(&got, "x-webhook-token"),
        None,
        "a cleared token is still sent"
    );

    // And back to one `type`.
    let (status, patched) = patch(json!({"type": "reading.ecg"})).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["type"], "reading.ecg");
    assert_eq!(patched["events"], json!(["reading.ecg"]));

    // Bad input is refused and changes nothing.
    let before = get().await;
    let (status, body) = patch(json!({"colour": "blue"})).await;
    assert_eq!(status, 400, "an unknown field: {body}");
    assert!(body["error"]["message"].is_string());
    assert_refused(
        patch(json!({"url": "ftp://example.com/hook"})).await,
        "url:",
    );
    assert_refused(
        patch(json!({"url": "not a url", "active": false})).await,
        "url:",
    );
    assert_refused(patch(json!({"events": ["nope.thing"]})).await, "events[0]:");
    assert_refused(patch(json!({"type": "nope.thing"})).await, "type:");
    assert_eq!(get().await, before, "a refused PATCH changed the webhook");

    // An empty PATCH changes nothing.
    let (status, same) = patch(json!({})).await;
    assert_eq!(status, 200, "{same}");
    for field in [
        "id",
        "url",
        "type",
        "events",
        "active",
        "description",
        "metadata",
        "createdAt",
    ] {
        assert_eq!(
            same[field], before[field],
            "{field} changed on an empty PATCH"
        );
    }

    assert_not_found(
        call(
            &http,
            "PATCH",
            server.api("/webhook/wh_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
            Some(&key),
            Some(json!({"active": false})),
        )
        .await,
        "PATCH of an unknown webhook",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_describes_every_route() {
    let server = Server::start(&temp_dir("mgmt-openapi"));
    let http = Http::new();
    let (status, doc) = call(&http, "GET", server.api("/openapi.json"), None, None).await;
    assert_eq!(status, 200, "{doc}");
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3."),
        "openapi: {}",
        doc["openapi"]
    );
    let schemes = doc["components"]["securitySchemes"].as_object();
    assert!(
        schemes.is_some_and(|s| !s.is_empty()),
        "no security schemes"
    );

    // Path parameters may be named freely: `/webhook/{id}` and `/webhook/{webhookId}` agree.
    let normalise = |path: &str| -> String {
        let mut out = String::new();
        let mut in_param = false;
        for c in path.chars() {
            match c {
                '{' => {
                    in_param = true;
                    out.push_str("{}");
                }
                '}' => in_param = false,
                _ if in_param => {}
                _ => out.push(c),
            }
        }
        out
    };
    let paths: BTreeMap<String, BTreeSet<String>> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .map(|m| m.keys().map(|k| k.to_lowercase()).collect())
                .unwrap_or_default();
            (normalise(path), methods)
        })
        .collect();
    let expected: [(&str, &[&str]); 22] = [
        ("/accounts", &["get", "post"]),
        ("/accounts/{}", &["get"]),
        ("/accounts/{}/api-keys", &["post"]),
        ("/accounts/{}/api-keys/{}", &["delete"]),
        ("/event-types", &["get", "post"]),
        ("/events", &["post"]),
        ("/webhook", &["get", "post"]),
        ("/webhook/types", &["get"]),
        ("/webhook/{}", &["get", "patch", "delete"]),
        ("/webhook/{}/signing-secret", &["get"]),
        ("/webhook/{}/signing-secret/rotate", &["post"]),
        ("/webhook-secret", &["get", "post", "delete"]),
        ("/webhook/logs", &["get"]),
        ("/webhook/logs/{}", &["get"]),
        ("/webhook/status", &["get"]),
        ("/webhook/{}/ping", &["post"]),
        ("/webhook/logs/{}/retry", &["post"]),
        ("/webhook/retry", &["post"]),
        ("/test/{}", &["post"]),
        ("/test/webhook", &["post"]),
        ("/openapi.json", &["get"]),
        ("/accounts/{}/portal-links", &["post"]),
    ];
    let prefix = if paths.contains_key("/api/v3/webhook") {
        "/api/v3"
    } else {
        ""
    };
    let missing: Vec<String> = expected
        .iter()
        .flat_map(|(path, methods)| {
            let documented = paths.get(&format!("{prefix}{path}"));
            methods
                .iter()
                .filter(move |m| !documented.is_some_and(|d| d.contains(**m)))
                .map(move |m| format!("{} {prefix}{path}", m.to_uppercase()))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not in the OpenAPI document: {missing:?}; it has {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    assert!(
        paths.get("/health").is_some_and(|m| m.contains("get")),
        "GET /health, outside /api/v3, is documented too"
    );
    // The guides' own routes, at the guides' paths (issue 15 item 8).
    for (path, methods) in [
        ("/api/v2/config/webhook", &["get", "post"][..]),
        ("/api/v2/config/webhook/{}", &["get", "patch", "delete"][..]),
        ("/webhook-events", &["post"][..]),
    ] {
        for method in methods {
            assert!(
                paths.get(path).is_some_and(|m| m.contains(*method)),
                "{} {path} is not in the OpenAPI document",
                method.to_uppercase()
            );
        }
    }
}

/// Local mode keeps accounts, webhooks and keys in a cache in front of its store: every change
/// must reach the very next publish, with no wait in between.
#[tokio::test(flavor = "multi_thread")]
async fn every_change_reaches_the_very_next_publish() {
    let server = Server::start(&temp_dir("mgmt-cache"));
    let http = Http::new();
    let (account_id, key) = new_account(&http, &server, "Changing Clinic").await;
    let (first_url, mut first) = receiver().await;
    let (second_url, mut second) = receiver().await;
    let webhook = new_webhook(
        &http,
        &server,
        &key,
        json!({"type": "patient.created", "url": first_url}),
    )
    .await;
    let hook = format!("/webhook/{}", webhook["id"].as_str().unwrap());
    let patch = async |body: Value| {
        let (status, patched) =
            call(&http, "PATCH", server.api(&hook), Some(&key), Some(body)).await;
        assert_eq!(status, 200, "{patched}");
    };
    let publish_patient = async || {
        publish(
            &http,
            &server,
            &account_id,
            "patient.created",
            json!({"patientId": 1}),
        )
        .await
    };

    assert_eq!(publish_patient().await["deliveries"], 1);
    next_delivery(&mut first).await;

    // A new URL.
    patch(json!({"url": second_url})).await;
    assert_eq!(publish_patient().await["deliveries"], 1);
    let got = next_delivery(&mut second).await;
    assert_nothing_more(&mut first, "the old URL gets nothing").await;
    assert_eq!(header(&got, "x-webhook-secret"), None);

    // The account secret: set, changed, removed.
    for secret in ["first-secret-1c9e", "second-secret-7d2a"] {
        let (status, body) = call(
            &http,
            "POST",
            server.api("/webhook-secret"),
            Some(&key),
            Some(json!({ "secret": secret })),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        publish_patient().await;
        assert_eq!(
            header(&next_delivery(&mut second).await, "x-webhook-secret"),
            Some(secret)
        );
    }
    let (status, _) = call(
        &http,
        "DELETE",
        server.api("/webhook-secret"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 204);
    publish_patient().await;
    assert_eq!(
        header(&next_delivery(&mut second).await, "x-webhook-secret"),
        None
    );

    // A rotated signing secret signs the next delivery.
    let (status, _) = call(
        &http,
        "POST",
        server.api(&format!("{hook}/signing-secret/rotate")),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, secret) = call(
        &http,
        "GET",
        server.api(&format!("{hook}/signing-secret")),
        Some(&key),
        None,
    )
    .await;
    publish_patient().await;
    let got = next_delivery(&mut second).await;
    assert!(signature_is_valid(
        secret["secret"].as_str().unwrap(),
        &got.headers,
        &got.body
    ));

    // Switched off, then on for other events only, then deleted.
    patch(json!({"active": false})).await;
    assert_eq!(publish_patient().await["deliveries"], 0);
    patch(json!({"active": true, "events": ["reading.*"]})).await;
    assert_eq!(publish_patient().await["deliveries"], 0);
    let weight = publish(
        &http,
        &server,
        &account_id,
        "reading.weight",
        json!({"weight": 80}),
    )
    .await;
    assert_eq!(weight["deliveries"], 1);
    next_delivery(&mut second).await;
    let (status, _) = call(&http, "DELETE", server.api(&hook), Some(&key), None).await;
    assert_eq!(status, 200);
    let weight = publish(
        &http,
        &server,
        &account_id,
        "reading.weight",
        json!({"weight": 81}),
    )
    .await;
    assert_eq!(weight["deliveries"], 0);
    assert_nothing_more(&mut second, "a deleted webhook gets nothing").await;
}
