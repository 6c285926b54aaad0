//! The DynamoDB store adapter on the embedded dynoxide (local mode's store) passes the Store
//! contract, alone and behind the cache local mode puts in front of it, and its data survives
//! a restart.

use hookline_aws::{DynamoStore, env::emulator_config, table::ensure_table};
use hookline_embedded::{CachedStore, EmbeddedDynamo};
use hookline_service::Store;
use std::sync::Arc;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hookline-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn store_on(dynamo: &EmbeddedDynamo) -> DynamoStore {
    let client = aws_sdk_dynamodb::Client::new(&emulator_config(dynamo.endpoint()).await);
    ensure_table(&client, "hookline").await.unwrap();
    DynamoStore::new(client, "hookline", 30)
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_store_on_dynoxide_meets_the_store_contract() {
    let dir = temp_dir("contract");
    let dynamo = EmbeddedDynamo::start(&dir).unwrap();
    let store = store_on(&dynamo).await;
    hookline_service::contract::store_contract(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_store_over_dynoxide_meets_the_store_contract() {
    let dir = temp_dir("contract-cached");
    let dynamo = EmbeddedDynamo::start(&dir).unwrap();
    let store = CachedStore::new(Arc::new(store_on(&dynamo).await));
    hookline_service::contract::store_contract(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_store_keeps_data_across_a_restart() {
    let dir = temp_dir("restart");
    let account = hookline_model::Account {
        id: "acct_restart".into(),
        name: "Persistent".into(),
        created_at: chrono::Utc::now(),
        webhook_secret: None,
    };
    {
        let dynamo = EmbeddedDynamo::start(&dir).unwrap();
        let store = store_on(&dynamo).await;
        let key = hookline_model::ApiKeyRecord {
            id: "key_1".into(),
            account_id: account.id.clone(),
            key_hash: "abc".into(),
            created_at: account.created_at,
        };
        store.insert_account(&account, &key).await.unwrap();
    }
    let dynamo = EmbeddedDynamo::start(&dir).unwrap();
    let store = store_on(&dynamo).await;
    assert_eq!(store.get_account(&account.id).await.unwrap(), Some(account));
}

/// Before: when marking a fan-out finished failed, the sweep's re-run put its deliveries back
/// into the cache as `pending`, delivered ones included, and they were sent again.
#[tokio::test(flavor = "multi_thread")]
async fn a_fan_out_re_run_never_caches_a_delivery_that_moved_on() {
    use hookline_model::types::SigningSecretEntry;
    use hookline_model::{Attempt, Delivery, DeliveryStatus, Event, Webhook};
    use hookline_service::ports::AttemptRecord;
    let dir = temp_dir("rerun-cache");
    let dynamo = EmbeddedDynamo::start(&dir).unwrap();
    let store = CachedStore::new(Arc::new(store_on(&dynamo).await));
    let now = chrono::Utc::now();
    let account = hookline_model::Account {
        id: "acct_rerun".into(),
        name: "Re-run".into(),
        created_at: now,
        webhook_secret: None,
    };
    let key = hookline_model::ApiKeyRecord {
        id: "key_rerun".into(),
        account_id: account.id.clone(),
        key_hash: "rerun".into(),
        created_at: now,
    };
    store.insert_account(&account, &key).await.unwrap();
    let webhook = Webhook {
        id: "wh_rerun".into(),
        account_id: account.id.clone(),
        url: "http://127.0.0.1:9/hook".into(),
        events: vec!["*".into()],
        active: true,
        description: None,
        metadata: None,
        authorization_token: None,
        signing_secrets: vec![SigningSecretEntry {
            secret: "whsec_x".into(),
            expires_at: None,
        }],
        created_at: now,
        updated_at: now,
        version: 0,
    };
    assert!(store.insert_webhook(&webhook, 10).await.unwrap());
    let event = Event {
        id: "evt_rerun".into(),
        account_id: account.id.clone(),
        event_type: "patient.created".into(),
        payload: "{}".into(),
        created_at: now,
        deliveries: 0,
        fanned_out: false,
    };
    assert!(store.insert_event(&event, now).await.unwrap().is_none());
    let delivery = Delivery::pending(&event, &webhook);
    assert_eq!(
        store
            .insert_deliveries(&event, std::slice::from_ref(&delivery), now)
            .await
            .unwrap(),
        vec![true]
    );
    let loaded = store.load_delivery(&delivery.job()).await.unwrap().unwrap();
    let delivered = AttemptRecord {
        attempt: Attempt {
            at: now,
            status_code: Some(200),
            duration_ms: 1,
            error: None,
            response_body: None,
        },
        status: DeliveryStatus::Delivered,
        next_attempt_at: None,
        sweep_at: None,
        deactivates_webhook: false,
    };
    assert!(
        store
            .record_attempt(&loaded.delivery, &delivered)
            .await
            .unwrap()
    );
    // Marking the fan-out finished failed; the sweep runs it again.
    assert_eq!(
        store
            .insert_deliveries(&event, std::slice::from_ref(&delivery), now)
            .await
            .unwrap(),
        vec![false]
    );
    let again = store.load_delivery(&delivery.job()).await.unwrap().unwrap();
    assert_eq!(again.delivery.status, DeliveryStatus::Delivered);
}
