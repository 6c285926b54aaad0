//! The portal on the Lambda path: API Gateway (HTTP API) events, converted by lambda_http as
//! `lambda_http::run` does, answered by the shared Router over DynamoDB and KMS on moto. Two
//! routers stand for two cold starts: a portal link made on one opens a session on the other,
//! because both derive the signing key from the same KMS data key.

use hookline_aws::env::emulator_config;
use hookline_aws::sealing_keys::kms_key_ring;
use hookline_aws::table::ensure_table;
use hookline_aws::{DynamoStore, SqsQueue, SweepRetries};
use hookline_http::ReqwestSender;
use hookline_service::config::PortalKey;
use hookline_service::sealed_store::SealedStore;
use hookline_service::{Config, Mode, Ports, Service, SystemClock};
use std::sync::Arc;
use tower::ServiceExt;

mod common;
use common::{moto, unique};

const ADMIN_KEY: &str = "lambda-portal-admin-key-0123456789abcdef";

struct Deployment {
    dynamodb: aws_sdk_dynamodb::Client,
    kms: aws_sdk_kms::Client,
    sqs: aws_sdk_sqs::Client,
    table: String,
    kms_key_id: String,
    queue_url: String,
}

async fn deployment() -> Deployment {
    let aws = emulator_config(&moto()).await;
    let table = unique("hookline-portal");
    ensure_table(&aws_sdk_dynamodb::Client::new(&aws), &table)
        .await
        .unwrap();
    let kms_key_id = aws_sdk_kms::Client::new(&aws)
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let queue_url = aws_sdk_sqs::Client::new(&aws)
        .create_queue()
        .queue_name(unique("portal"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    Deployment {
        dynamodb: aws_sdk_dynamodb::Client::new(&aws),
        kms: aws_sdk_kms::Client::new(&aws),
        sqs: aws_sdk_sqs::Client::new(&aws),
        table,
        kms_key_id,
        queue_url,
    }
}

/// One cold start of the api function, as `hookline_aws::env::lambda_service` builds it.
async fn cold_start(deployment: &Deployment) -> axum::Router {
    let dynamodb = deployment.dynamodb.clone();
    let ring = kms_key_ring(
        &dynamodb,
        &deployment.table,
        &deployment.kms,
        &deployment.kms_key_id,
    )
    .await
    .unwrap();
    let mut config = Config::for_mode(Mode::Lambda);
    config.admin_key_hash = Some(hookline_model::keys::hash_api_key(ADMIN_KEY));
    config.portal_key = Some(PortalKey(ring.derive_key("portal links")));
    let store = SealedStore::new(
        Arc::new(DynamoStore::new(dynamodb, deployment.table.clone(), 30)),
        Arc::new(ring),
    );
    let ports = Ports {
        store: Arc::new(store),
        queue: Arc::new(SqsQueue::new(
            deployment.sqs.clone(),
            deployment.queue_url.clone(),
        )),
        scheduler: Arc::new(SweepRetries),
        clock: Arc::new(SystemClock),
        sender: Arc::new(ReqwestSender::from_config(&config).unwrap()),
    };
    hookline_api::router(Service::new(ports, config))
}

struct Answer {
    status: u16,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

/// An API Gateway v2 event for `method path`, with the headers API Gateway adds (host,
/// `x-forwarded-proto: https`) and browser cookies in the event's `cookies` list.
async fn invoke(
    router: &axum::Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    cookies: &[String],
    body: Option<serde_json::Value>,
) -> Answer {
    let host = "abcdef1234.execute-api.us-east-1.amazonaws.com";
    let mut header_map = serde_json::json!({"host": host, "x-forwarded-proto": "https"});
    for (name, value) in headers {
        header_map[*name] = (*value).into();
    }
    if body.is_some() {
        header_map["content-type"] = "application/json".into();
    }
    let event = serde_json::json!({
        "version": "2.0",
        "routeKey": "ANY /{proxy+}",
        "rawPath": path,
        "rawQueryString": "",
        "cookies": cookies,
        "headers": header_map,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abcdef1234", "domainName": host,
            "domainPrefix": "abcdef1234",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.10", "userAgent": "Mozilla/5.0"},
            "requestId": ulid::Ulid::new().to_string(), "routeKey": "ANY /{proxy+}",
            "stage": "$default", "time": "22/Nov/2026:12:00:00 +0000", "timeEpoch": 1795352400000u64
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    });
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_portal_link_from_one_instance_opens_a_secure_session_on_another() {
    let deployment = deployment().await;
    let first = cold_start(&deployment).await;
    let second = cold_start(&deployment).await;
    let admin = [("x-api-key", ADMIN_KEY)];

    let page = invoke(&first, "GET", "/portal", &[], &[], None).await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").starts_with("text/html"));
    let csp = page.header("content-security-policy");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );

    let account = invoke(
        &first,
        "POST",
        "/api/v3/accounts",
        &admin,
        &[],
        Some(serde_json::json!({"name": "Lambda Clinic"})),
    )
    .await;
    assert_eq!(account.status, 201);
    let account_id = account.json()["id"].as_str().unwrap().to_string();

    let link = invoke(
        &first,
        "POST",
        &format!("/api/v3/accounts/{account_id}/portal-links"),
        &admin,
        &[],
        None,
    )
    .await;
    assert_eq!(link.status, 201, "{:?}", link.json());
    let url = link.json()["url"].as_str().unwrap().to_string();
    let prefix = "https://abcdef1234.execute-api.us-east-1.amazonaws.com/portal#token=".to_string();
    assert!(url.starts_with(&prefix), "{url}");
    let token = &url[prefix.len()..];

    // The other instance checks the link with its own (equal) key: no shared memory, no store
    // read for the token.
    let session = invoke(
        &second,
        "POST",
        "/portal/session",
        &[],
        &[],
        Some(serde_json::json!({"token": token})),
    )
    .await;
    assert_eq!(session.status, 201, "{:?}", session.json());
    let set_cookie = session.header("set-cookie");
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=None",
        "Partitioned",
        "Path=/",
    ] {
        assert!(
            set_cookie.contains(attribute),
            "{attribute} in {set_cookie}"
        );
    }
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let csrf = session.json()["csrfToken"].as_str().unwrap().to_string();

    let webhooks = invoke(
        &first,
        "GET",
        "/api/v3/webhook",
        &[("x-hookline-csrf", &csrf)],
        std::slice::from_ref(&cookie),
        None,
    )
    .await;
    assert_eq!(webhooks.status, 200, "{:?}", webhooks.json());
    assert_eq!(webhooks.json()["total"], 0);

    // The cookie without the session's CSRF token authenticates nothing.
    let without_csrf = invoke(
        &first,
        "GET",
        "/api/v3/webhook",
        &[],
        std::slice::from_ref(&cookie),
        None,
    )
    .await;
    assert_eq!(without_csrf.status, 401);

    // The admin's console session is never sent cross-site: not made for a frame.
    let console = invoke(
        &second,
        "POST",
        "/console/session",
        &[],
        &[],
        Some(serde_json::json!({"apiKey": ADMIN_KEY})),
    )
    .await;
    assert_eq!(console.status, 201, "{:?}", console.json());
    let set_cookie = console.header("set-cookie");
    assert!(
        set_cookie.contains("Secure; SameSite=Strict") && !set_cookie.contains("Partitioned"),
        "{set_cookie}"
    );
}
