//! Issue 15 items 6 and 8 on the Lambda path on moto (DynamoDB with its stream, SQS, KMS): a
//! webhook with the `compact` format and a custom header, made through the api function, and
//! one made through the Infermedica-style `/api/v2/config/webhook` route (`content` bodies,
//! its token in `x-webhook-infermedica-token`), delivered by the deliver handler to receivers
//! on 127.0.0.1, signed over the body as received; and the organization-style
//! `POST /webhook-events` create and ping (`{id, event, payload}` bodies).

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use hookline_aws::{DynamoStore, EventBridgeScheduler, SqsQueue};
use hookline_fn_stream::pump::StreamPump;
use hookline_http::ReqwestSender;
use hookline_model::signing::{secret_key, sign};
use hookline_service::ports::Queue;
use hookline_service::publish::NewEvent;
use hookline_service::sealed_store::SealedStore;
use hookline_service::{Ports, Service, SystemClock};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tower::ServiceExt;

mod common;
use common::{deliver_message, fixture, lambda_base, lambda_config, unique};

/// A receiver handing each request's headers and body bytes to the test.
async fn receiver() -> (String, mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body));
                "ok"
            }
        }),
    );
    let url = format!("{}/hook", common::serve_on_loopback(app).await);
    (url, rx)
}

struct Stack {
    service: Service,
    router: Router,
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    sqs: aws_sdk_sqs::Client,
    queue: SqsQueue,
    queue_url: String,
    stream: StreamPump,
    counted: DynamoStore,
}

/// As on Lambda: DynamoDB with secrets sealed under a KMS data key, the stream function
/// queueing the fan-out on SQS.
async fn stack() -> Stack {
    let base = lambda_base("hookline").await;
    let aws = &base.aws;
    let scheduler = aws_sdk_scheduler::Client::new(aws);
    let group = unique("retries");
    scheduler
        .create_schedule_group()
        .name(&group)
        .send()
        .await
        .unwrap();
    let config = lambda_config();
    let ports = Ports {
        store: Arc::new(SealedStore::new(
            Arc::new(base.counted.clone()),
            Arc::new(base.ring),
        )),
        queue: Arc::new(base.queue.clone()),
        scheduler: Arc::new(EventBridgeScheduler::new(
            scheduler,
            &group,
            "arn:aws:lambda:us-east-1:123456789012:function:hookline-retry",
            "arn:aws:iam::123456789012:role/hookline-scheduler",
        )),
        clock: Arc::new(SystemClock),
        sender: Arc::new(ReqwestSender::from_config(&config).unwrap()),
    };
    let service = Service::new(ports, config);
    Stack {
        router: hookline_api::router(service.clone()),
        service,
        dynamodb: base.dynamodb,
        table: base.table,
        sqs: base.sqs,
        queue: base.queue,
        queue_url: base.queue_url,
        stream: base.stream,
        counted: base.counted,
    }
}

impl Stack {
    /// The api function: an API Gateway v2 event (the fixture, its path, key and body
    /// replaced), converted by lambda_http as `lambda_http::run` does.
    async fn api(&self, method: &str, path: &str, key: &str, raw_body: &str) -> (u16, Value) {
        let mut event: Value = serde_json::from_str(&fixture("apigw-create-webhook.json")).unwrap();
        event["rawPath"] = path.into();
        event["requestContext"]["http"]["path"] = path.into();
        event["requestContext"]["http"]["method"] = method.into();
        event["pathParameters"]["proxy"] = path.trim_start_matches('/').into();
        event["headers"]
            .as_object_mut()
            .unwrap()
            .remove("x-api-key");
        event["headers"]["authorization"] = format!("Bearer {key}").into();
        event["body"] = raw_body.into();
        let request = lambda_http::request::from_str(&event.to_string()).unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// The stream function queues what was published; the deliver function takes each
    /// message from SQS (its jobs), one batch per message.
    async fn deliver_all(&mut self) {
        self.stream
            .pump(&self.counted, Some(&self.queue as &dyn Queue), 1000)
            .await
            .unwrap();
        let mut delivered = 0;
        for _ in 0..5 {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            for message in out.messages.unwrap_or_default() {
                // Up to ten jobs to a message.
                delivered += hookline_aws::sqs::jobs_of_body(message.body().unwrap())
                    .unwrap()
                    .len();
                deliver_message(&self.service, &self.sqs, &self.queue_url, &message).await;
            }
            if delivered >= 3 {
                return;
            }
        }
        panic!("only {delivered} deliveries were queued");
    }

    /// Every byte of every item in the table, as DynamoDB holds it.
    async fn table_text(&self) -> String {
        let items = self
            .dynamodb
            .scan()
            .table_name(&self.table)
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default();
        format!("{items:?}")
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) -> (HeaderMap, String) {
    let (headers, body) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("delivered in time")
        .unwrap();
    (headers, String::from_utf8(body.to_vec()).unwrap())
}

/// The `webhook-signature` header has an entry signing exactly `body` with `secret`.
fn signed_as_received(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    let key = secret_key(secret).unwrap();
    let id = headers["webhook-id"].to_str().unwrap();
    let timestamp: i64 = headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = sign(&key, id, timestamp, body.as_bytes());
    headers["webhook-signature"]
        .to_str()
        .unwrap()
        .split(' ')
        .any(|entry| entry == expected)
}

#[tokio::test(flavor = "multi_thread")]
async fn compact_and_content_bodies_and_custom_headers_arrive_signed_on_the_lambda_path() {
    let mut stack = stack().await;
    let created = stack
        .service
        .create_account("Options Clinic")
        .await
        .unwrap();
    let (account, key) = (created.account.id, created.api_key);
    let (compact_url, mut compact_rx) = receiver().await;
    let (content_url, mut content_rx) = receiver().await;
    let (event_url, mut event_rx) = receiver().await;

    let (status, compact) = stack
        .api(
            "POST",
            "/api/v3/webhook",
            &key,
            &json!({"url": compact_url, "type": "reading.weight", "format": "compact",
                    "headers": {"X-Tenant": "north-7c1e"}})
            .to_string(),
        )
        .await;
    assert_eq!(status, 201, "{compact}");
    let (status, refused) = stack
        .api(
            "POST",
            "/api/v3/webhook",
            &key,
            &json!({"url": compact_url, "type": "reading.weight",
                    "headers": {"Webhook-Signature": "forged"}})
            .to_string(),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("headers.Webhook-Signature:"),
        "{refused}"
    );
    // The guide's create request, as written but for the URL and the event type.
    let guide_body = format!(
        "{{\n\"url\": \"{content_url}\",\n\"authorization_token\": \"zGORr7q1I4egIr0c0eKXD7CMpIcjFooJ\",\n\"subscribed_events\": [\"reading.weight\"],\n}}"
    );
    let (status, content) = stack
        .api("POST", "/api/v2/config/webhook", &key, &guide_body)
        .await;
    assert_eq!(status, 201, "{content}");
    assert_eq!(
        content["authorization_token"],
        "zGORr7q1I4egIr0c0eKXD7CMpIcjFooJ"
    );

    // The organization-style guide's create and ping requests, through the api function.
    let (status, organization) = stack
        .api(
            "POST",
            "/webhook-events",
            &key,
            &format!(
                "{{\"organization\": \"{account}\", \"active\": true, \"url\": \"{event_url}\", \"events\": \"reading.weight\"}}"
            ),
        )
        .await;
    assert_eq!(status, 201, "{organization}");
    let event_webhook = organization["id"].as_str().unwrap().to_string();
    let (status, ping) = stack
        .api(
            "POST",
            "/webhook-events",
            &key,
            &format!("{{\"webhook\": \"{event_webhook}\", \"event\": \"ping\"}}"),
        )
        .await;
    assert_eq!(status, 201, "{ping}");
    assert_eq!(ping["delivered"], true, "{ping}");
    let event_secret = stack
        .service
        .signing_secret(&account, &event_webhook)
        .await
        .unwrap();
    let (headers, body) = next(&mut event_rx).await;
    assert!(signed_as_received(&event_secret, &headers, &body), "{body}");
    let ping_id = ping["id"].as_str().unwrap();
    assert_eq!(
        body,
        format!(r#"{{"id":"{ping_id}","event":"ping","payload":{{"webhook":"{event_webhook}"}}}}"#)
    );

    // Header values and tokens are sealed in DynamoDB.
    let stored = stack.table_text().await;
    assert!(
        !stored.contains("north-7c1e"),
        "a header value is stored in the clear"
    );
    assert!(!stored.contains("zGORr7q1I4egIr0c0eKXD7CMpIcjFooJ"));

    stack
        .service
        .publish(NewEvent {
            account_id: account.clone(),
            event_type: "reading.weight".into(),
            // As published, byte for byte: every format embeds it unchanged.
            payload: serde_json::value::RawValue::from_string(
                r#"{"weight":81.5,"manual":true}"#.to_string(),
            )
            .unwrap(),
            id: None,
        })
        .await
        .unwrap();
    stack.deliver_all().await;

    let compact_secret = stack
        .service
        .signing_secret(&account, compact["id"].as_str().unwrap())
        .await
        .unwrap();
    let (headers, body) = next(&mut compact_rx).await;
    assert!(
        signed_as_received(&compact_secret, &headers, &body),
        "{body}"
    );
    let value: Value = serde_json::from_str(&body).unwrap();
    let id = value["id"].as_str().unwrap();
    assert!(id.starts_with("evt_"), "{body}");
    assert_eq!(
        body,
        format!(
            r#"{{"id":"{id}","type":"reading.weight","payload":{{"weight":81.5,"manual":true}}}}"#
        )
    );
    assert_eq!(headers["x-tenant"], "north-7c1e");

    let content_secret = stack
        .service
        .signing_secret(&account, content["id"].as_str().unwrap())
        .await
        .unwrap();
    let (headers, body) = next(&mut content_rx).await;
    assert!(
        signed_as_received(&content_secret, &headers, &body),
        "{body}"
    );
    assert_eq!(
        body,
        r#"{"event_type":"reading.weight","content":{"weight":81.5,"manual":true}}"#
    );
    assert_eq!(
        headers["x-webhook-infermedica-token"],
        "zGORr7q1I4egIr0c0eKXD7CMpIcjFooJ"
    );
    assert!(headers.get("x-tenant").is_none());

    let (headers, body) = next(&mut event_rx).await;
    assert!(signed_as_received(&event_secret, &headers, &body), "{body}");
    let value: Value = serde_json::from_str(&body).unwrap();
    let id = value["id"].as_str().unwrap();
    assert_eq!(
        body,
        format!(
            r#"{{"id":"{id}","event":"reading.weight","payload":{{"weight":81.5,"manual":true}}}}"#
        )
    );
}
