//! What the Lambda-path tests share: moto's address, unique names, the `sam local` fixtures,
//! and the stack every test file starts from (as the template wires it: DynamoDB with counters
//! folded from the stream, the stream queueing the fan-out on SQS, secrets sealed under a KMS
//! data key).
#![allow(dead_code)] // Each test file is its own crate and uses part of this.

use hookline_aws::env::emulator_config;
use hookline_aws::sealing_keys::kms_key_ring;
use hookline_aws::table::ensure_table_with;
use hookline_aws::{DynamoStore, SqsQueue};
use hookline_fn_stream::pump::StreamPump;
use hookline_model::sealing::KeyRing;
use hookline_service::{Config, FanOutQueue, Mode};

pub fn moto() -> String {
    std::env::var("HOOKLINE_TEST_MOTO_ENDPOINT")
        .expect("HOOKLINE_TEST_MOTO_ENDPOINT is not set: run the tests through infra/test.sh, which starts moto")
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// A `sam local` event fixture from `infra/events/`.
pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../infra/events/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A fresh table, queue and data key on moto, as the template makes them.
pub struct LambdaBase {
    pub aws: aws_config::SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub table: String,
    /// The table's stream, read as the stream function's event source mapping would.
    pub stream: StreamPump,
    /// The store as the functions build it: counters from the stream, fan-out queued by it.
    pub counted: DynamoStore,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub queue: SqsQueue,
    /// The key ring sealing secrets at rest, under a fresh KMS key.
    pub ring: KeyRing,
}

pub async fn lambda_base(prefix: &str) -> LambdaBase {
    let aws = emulator_config(&moto()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let table = unique(prefix);
    ensure_table_with(&dynamodb, &table, true).await.unwrap();
    let stream = StreamPump::new(&aws, &dynamodb, &table).await;
    let counted =
        hookline_aws::env::lambda_store(dynamodb.clone(), table.clone(), &lambda_config())
            .await
            .unwrap();
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let queue_url = sqs
        .create_queue()
        .queue_name(unique(&format!("{prefix}-deliveries")))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue = SqsQueue::new(sqs.clone(), queue_url.clone());
    let kms = aws_sdk_kms::Client::new(&aws);
    let key_id = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let ring = kms_key_ring(&dynamodb, &table, &kms, &key_id)
        .await
        .unwrap();
    LambdaBase {
        aws,
        dynamodb,
        table,
        stream,
        counted,
        sqs,
        queue_url,
        queue,
        ring,
    }
}

/// The Lambda configuration, with receivers on 127.0.0.1 allowed (tests only).
pub fn lambda_config() -> Config {
    let mut config = Config::for_mode(Mode::Lambda);
    config.targets.allow_http = true;
    config.targets.allow_private_targets = true;
    config.fan_out_queue = FanOutQueue::Stream;
    config
}

/// One SQS message through the deliver function (the `sam local` fixture with its body), then
/// deleted, as the event source mapping does after a batch without failures.
pub async fn deliver_message(
    service: &hookline_service::Service,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    message: &aws_sdk_sqs::types::Message,
) {
    let mut event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&fixture("sqs-deliver.json")).unwrap();
    event.records.truncate(1);
    event.records[0].body = Some(message.body().unwrap().to_string());
    event.records[0].receipt_handle = message.receipt_handle.clone();
    let response = hookline_fn_deliver::handle(
        service,
        lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()),
    )
    .await
    .unwrap();
    assert!(response.batch_item_failures.is_empty());
    sqs.delete_message()
        .queue_url(queue_url)
        .receipt_handle(message.receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
}

/// Serves `app` on 127.0.0.1 (an ephemeral port) for the rest of the test: its base URL.
pub async fn serve_on_loopback(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}
