//! Building the Lambda functions' service from the environment, once, in `main`.

use crate::{DynamoStore, EventBridgeScheduler, SqsQueue, SweepRetries};
use hookline_http::ReqwestSender;
use hookline_service::ports::{RetryScheduler, SystemClock};
use hookline_service::sealed_store::SealedStore;
use hookline_service::{Config, Mode, Ports, Service};
use std::sync::Arc;

fn required(name: &str) -> Result<String, String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{name} is not set"))
}

/// The service on DynamoDB, SQS and EventBridge Scheduler, configured from `HOOKLINE_*`.
pub async fn lambda_service() -> Result<Service, String> {
    lambda_service_with_context_cache(None).await
}

/// The deliver function's service: webhooks and accounts read for deliveries are kept for
/// `ttl` (so a delivery reads 2 items, not 4; a change reaches deliveries within `ttl`).
pub async fn lambda_service_with_context_cache(
    ttl: Option<std::time::Duration>,
) -> Result<Service, String> {
    Ok(lambda_service_and_queue(ttl).await?.0)
}

/// [`lambda_service_with_context_cache`] and its queue, whose FIFO queue the deliver function
/// holds ordered messages back on ([`SqsQueue::hold_ordered`]).
pub async fn lambda_service_and_queue(
    ttl: Option<std::time::Duration>,
) -> Result<(Service, SqsQueue), String> {
    let mut config = Config::from_env(Mode::Lambda)?;
    let sender = ReqwestSender::from_config(&config)?;
    let aws = aws_config::load_from_env().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let table = required("HOOKLINE_TABLE")?;
    // One KMS call per cold start: the data key is decrypted once and kept in memory.
    let ring = crate::sealing_keys::kms_key_ring(
        &dynamodb,
        &table,
        &aws_sdk_kms::Client::new(&aws),
        &required("HOOKLINE_KMS_KEY_ID")?,
    )
    .await?;
    // Every instance derives the same key, so a portal link works on any of them.
    config.portal_key = Some(hookline_service::config::PortalKey(
        ring.derive_key("portal links"),
    ));
    let mut dynamo_store = lambda_store(dynamodb, table, &config).await?;
    if let Some(ttl) = ttl {
        dynamo_store = dynamo_store.with_context_cache(ttl);
    }
    // Every invocation takes rate-limit turns from the table (issue 15 item 5).
    let rate_limiter = Arc::new(dynamo_store.rate_limiter());
    let store = SealedStore::new(Arc::new(dynamo_store), Arc::new(ring));
    let queue = lambda_queue(aws_sdk_sqs::Client::new(&aws), |name| {
        std::env::var(name).ok()
    })?;
    // How retries come back: found by the sweep (the default; no per-retry schedule) or one
    // EventBridge Scheduler schedule each.
    let scheduler: Arc<dyn RetryScheduler> = match std::env::var("HOOKLINE_RETRY_TIMER")
        .as_deref()
        .unwrap_or("sweep")
    {
        "sweep" | "" => Arc::new(SweepRetries),
        "scheduler" => Arc::new(EventBridgeScheduler::new(
            aws_sdk_scheduler::Client::new(&aws),
            required("HOOKLINE_SCHEDULE_GROUP")?,
            required("HOOKLINE_RETRY_TARGET_ARN")?,
            required("HOOKLINE_SCHEDULER_ROLE_ARN")?,
        )),
        other => {
            return Err(format!(
                "HOOKLINE_RETRY_TIMER: '{other}' is neither 'sweep' nor 'scheduler'"
            ));
        }
    };
    let service = Service::new(
        Ports {
            store: Arc::new(store),
            queue: Arc::new(queue.clone()),
            scheduler,
            clock: Arc::new(SystemClock),
            sender: Arc::new(sender),
        },
        config,
    )
    .with_rate_limiter(rate_limiter);
    // Every cold start checks it (two reads); a failure leaves it as it was and the function
    // serves on: the next cold start tries again.
    if let Err(error) = service.ensure_operational_webhook().await {
        tracing::warn!(%error, "setting up the operational webhook failed");
    }
    Ok((service, queue))
}

/// The delivery queue as every function sends to it, from `HOOKLINE_QUEUE_URL` (and the
/// variables `lookup` reads): the jobs of ordered webhooks go to the FIFO queue of
/// `HOOKLINE_ORDERED_QUEUE_URL` (issue 15 item 4), and the dead-letter queues named are sent
/// back by the retry function's sweep (template.yaml gives it their URLs). One place, so no
/// function sends an ordered job to the queue that keeps no order.
pub fn lambda_queue(
    client: aws_sdk_sqs::Client,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<SqsQueue, String> {
    let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
    let mut queue = SqsQueue::new(
        client,
        get("HOOKLINE_QUEUE_URL").ok_or("HOOKLINE_QUEUE_URL is not set")?,
    );
    if let Some(url) = get("HOOKLINE_DEAD_LETTER_QUEUE_URL") {
        queue = queue.with_dead_letters(url);
    }
    if let Some(url) = get("HOOKLINE_ORDERED_QUEUE_URL") {
        queue = queue.with_ordered(url, get("HOOKLINE_ORDERED_DEAD_LETTER_QUEUE_URL"));
    }
    Ok(queue)
}

/// The stack's table as every function uses it: laid out as the table records
/// ([`crate::table::log_shards_of`]), its status counters kept by the stream function
/// (template.yaml, StreamFunction), new deliveries queued as `config` says.
pub async fn lambda_store(
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    config: &Config,
) -> Result<DynamoStore, String> {
    let log_shards = crate::table::log_shards_of(&dynamodb, &table)
        .await
        .map_err(|e| e.to_string())?;
    Ok(DynamoStore::new(dynamodb, table, config.log_retention_days)
        .with_counting(crate::store::Counting::FromStream)
        .with_fan_out_queue(config.fan_out_queue)
        .with_log_shards(log_shards))
}

/// SDK configuration for a DynamoDB-compatible (or SQS/Scheduler) emulator on `endpoint`:
/// dummy credentials, a fixed region. Used by the tests (moto) and the benchmark.
pub async fn emulator_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local",
            "local",
            None,
            None,
            "hookline-emulator",
        ))
        .load()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::Config::builder()
                .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
                .build(),
        )
    }

    #[test]
    fn every_function_sends_ordered_jobs_to_the_fifo_queue_the_template_names() {
        let env = |name: &str| match name {
            "HOOKLINE_QUEUE_URL" => Some("https://sqs/deliveries".to_string()),
            "HOOKLINE_ORDERED_QUEUE_URL" => Some("https://sqs/ordered.fifo".to_string()),
            _ => None,
        };
        let queue = lambda_queue(client(), env).unwrap();
        assert_eq!(queue.ordered_url(), Some("https://sqs/ordered.fifo"));
        let without = lambda_queue(client(), |name: &str| {
            (name == "HOOKLINE_QUEUE_URL").then(|| "https://sqs/deliveries".to_string())
        })
        .unwrap();
        assert_eq!(without.ordered_url(), None);
        assert!(lambda_queue(client(), |_: &str| None).is_err());
    }
}
