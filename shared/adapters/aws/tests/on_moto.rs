//! The AWS adapters against moto server (started by infra/test.sh, which sets
//! HOOKLINE_TEST_MOTO_ENDPOINT): each runs its port's contract suite.

use chrono::{TimeZone, Utc};
use hookline_aws::env::emulator_config;
use hookline_aws::table::ensure_table;
use hookline_aws::{DynamoStore, EventBridgeScheduler, SqsQueue};
use hookline_model::{DeliveryJob, RetryTrigger};
use hookline_service::RetryScheduler;

fn moto() -> String {
    std::env::var("HOOKLINE_TEST_MOTO_ENDPOINT")
        .expect("HOOKLINE_TEST_MOTO_ENDPOINT is not set: run the tests through infra/test.sh, which starts moto")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

#[tokio::test]
async fn dynamodb_store_on_moto_meets_the_store_contract() {
    let config = emulator_config(&moto()).await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = unique("hookline");
    ensure_table(&client, &table).await.unwrap();
    ensure_table(&client, &table)
        .await
        .expect("creating an existing table is a no-op");
    let store = DynamoStore::new(client, table, 30);
    hookline_service::contract::store_contract(&store).await;
}

#[tokio::test]
async fn dynamodb_rate_limiter_on_moto_meets_the_rate_limiter_contract() {
    let config = emulator_config(&moto()).await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = unique("hookline-rate");
    ensure_table(&client, &table).await.unwrap();
    let store = DynamoStore::new(client, table, 30);
    hookline_service::contract::rate_limiter_contract(&store.rate_limiter()).await;
}

#[tokio::test]
async fn sqs_queue_on_moto_meets_the_queue_contract() {
    let config = emulator_config(&moto()).await;
    let client = aws_sdk_sqs::Client::new(&config);
    let url = client
        .create_queue()
        .queue_name(unique("deliveries"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue = SqsQueue::new(client.clone(), url.clone());
    hookline_service::contract::queue_contract(&queue, || {
        let client = client.clone();
        let url = url.clone();
        async move {
            let out = client
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let mut jobs = Vec::new();
            for message in out.messages.unwrap_or_default() {
                jobs.extend(hookline_aws::sqs::jobs_of_body(message.body().unwrap()).unwrap());
                client
                    .delete_message()
                    .queue_url(&url)
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
            jobs
        }
    })
    .await;
}

#[tokio::test]
async fn eventbridge_scheduler_creates_one_one_time_schedule_per_retry() {
    let config = emulator_config(&moto()).await;
    let client = aws_sdk_scheduler::Client::new(&config);
    let group = unique("retries");
    client
        .create_schedule_group()
        .name(&group)
        .send()
        .await
        .unwrap();
    let target = "arn:aws:lambda:us-east-1:123456789012:function:hookline-retry";
    let role = "arn:aws:iam::123456789012:role/hookline-scheduler";
    let scheduler = EventBridgeScheduler::new(client.clone(), &group, target, role);
    let job = DeliveryJob {
        account_id: "acct_1".into(),
        delivery_id: "dlv_01JABCDEFGHJKMNPQRSTVWXYZ0".into(),
        event_id: "evt_1".into(),
        webhook_id: "wh_1".into(),
        not_before: None,
        ordered: false,
        round: 0,
    };
    let at = Utc.with_ymd_and_hms(2030, 5, 6, 7, 8, 9).unwrap();
    scheduler.schedule(&job, at).await.unwrap();
    // A redelivered message scheduling the same retry does not create a second schedule.
    scheduler.schedule(&job, at).await.unwrap();

    let name = EventBridgeScheduler::schedule_name(&job, at);
    assert!(name.len() <= 64, "schedule names are at most 64 characters");
    let schedule = client
        .get_schedule()
        .group_name(&group)
        .name(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(
        schedule.schedule_expression(),
        Some("at(2030-05-06T07:08:09)")
    );
    assert_eq!(schedule.schedule_expression_timezone(), Some("UTC"));
    assert_eq!(
        schedule.flexible_time_window().unwrap().mode().as_str(),
        "OFF"
    );
    assert_eq!(
        schedule.action_after_completion().map(|a| a.as_str()),
        Some("DELETE")
    );
    let target_of = schedule.target().unwrap();
    assert_eq!(target_of.arn(), target);
    assert_eq!(target_of.role_arn(), role);
    let input: RetryTrigger = serde_json::from_str(target_of.input().unwrap()).unwrap();
    assert_eq!(input, RetryTrigger::Retry(job));
    let listed = client
        .list_schedules()
        .group_name(&group)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.schedules().len(), 1);
}
