//! The DynamoDB store adapter on the embedded dynoxide (local mode's store) passes the Store
//! contract, alone and behind the cache local mode puts in front of it, and its data survives
//! a restart.

use hookline_aws::{DynamoStore, table::ensure_table};
use hookline_embedded::{CachedStore, EmbeddedDynamo};
use hookline_service::Store;
use hookline_service::ports::{AccountStore, DeliveryStore, WebhookStore};
use std::sync::Arc;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hookline-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn store_on(dynamo: &EmbeddedDynamo) -> DynamoStore {
    let client = dynamo.client();
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
async fn rate_limiters_meet_the_rate_limiter_contract() {
    hookline_service::contract::rate_limiter_contract(
        &hookline_service::rate_limit::InProcessRateLimiter::default(),
    )
    .await;
    let dir = temp_dir("contract-rate");
    let dynamo = EmbeddedDynamo::start(&dir).unwrap();
    let store = store_on(&dynamo).await;
    hookline_service::contract::rate_limiter_contract(&store.rate_limiter()).await;
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
        request: Default::default(),
        signing_secrets: vec![SigningSecretEntry {
            secret: "whsec_x".into(),
            expires_at: None,
        }],
        filter: None,
        rate_limit: None,
        ordered: false,
        created_at: now,
        updated_at: now,
        version: 0,
        health: Default::default(),
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

fn key_ring(byte: u8, older: &[u8]) -> Arc<hookline_model::sealing::KeyRing> {
    use hookline_model::sealing::{KeyRing, SealingKey};
    let key = |b: u8| SealingKey::from_bytes(&[b; 32]).unwrap();
    Arc::new(KeyRing::new(
        key(byte),
        older.iter().map(|b| key(*b)).collect(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_sealed_store_over_dynoxide_meets_the_store_contract() {
    use hookline_service::sealed_store::SealedStore;
    let dir = temp_dir("contract-sealed");
    let dynamo = EmbeddedDynamo::start(&dir).unwrap();
    // Local mode's stack: the cache outermost, sealing beneath it.
    let sealed = SealedStore::new(Arc::new(store_on(&dynamo).await), key_ring(1, &[]));
    let store = CachedStore::new(Arc::new(sealed));
    hookline_service::contract::store_contract(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_plaintext_secrets_read_as_they_are_and_are_sealed_again_on_rotation() {
    use hookline_model::Webhook;
    use hookline_model::types::SigningSecretEntry;
    use hookline_service::sealed_store::{ResealReport, SealedStore};
    let dir = temp_dir("sealed-legacy");
    let dynamo = EmbeddedDynamo::start(&dir).unwrap();
    let raw: Arc<dyn Store> = Arc::new(store_on(&dynamo).await);
    let now = chrono::Utc::now();
    let account = hookline_model::Account {
        id: "acct_legacy".into(),
        name: "Legacy".into(),
        created_at: now,
        webhook_secret: Some("legacy-account-secret".into()),
    };
    let key = hookline_model::ApiKeyRecord {
        id: "key_legacy".into(),
        account_id: account.id.clone(),
        key_hash: "legacyhash".into(),
        created_at: now,
    };
    let webhook = Webhook {
        id: "wh_legacy".into(),
        account_id: account.id.clone(),
        url: "https://example.com/hook".into(),
        events: vec!["*".into()],
        active: true,
        description: None,
        metadata: None,
        authorization_token: Some("legacy-token".into()),
        request: Default::default(),
        signing_secrets: vec![SigningSecretEntry {
            secret: "whsec_bGVnYWN5LXNpZ25pbmctc2VjcmV0LWJ5dGVz".into(),
            expires_at: None,
        }],
        filter: None,
        rate_limit: None,
        ordered: false,
        created_at: now,
        updated_at: now,
        version: 0,
        health: Default::default(),
    };
    // Written in plaintext, as before sealing existed.
    raw.insert_account(&account, &key).await.unwrap();
    assert!(raw.insert_webhook(&webhook, 10).await.unwrap());

    let sealed = SealedStore::new(raw.clone(), key_ring(1, &[]));
    assert_eq!(
        sealed.get_account(&account.id).await.unwrap(),
        Some(account.clone())
    );
    assert_eq!(
        sealed.list_webhooks(&account.id).await.unwrap(),
        vec![webhook.clone()]
    );
    assert_eq!(
        sealed.reseal_all().await.unwrap(),
        ResealReport {
            accounts: 1,
            webhooks: 1
        }
    );
    let stored = raw
        .get_webhook(&account.id, &webhook.id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.authorization_token.unwrap().starts_with("enc:v1:"));
    assert!(stored.signing_secrets[0].secret.starts_with("enc:v1:"));
    let stored = raw.get_account(&account.id).await.unwrap().unwrap();
    assert!(stored.webhook_secret.unwrap().starts_with("enc:v1:"));
    // Nothing left to do under the same key.
    assert_eq!(sealed.reseal_all().await.unwrap(), ResealReport::default());

    // Rotation: key 2 seals, key 1 still opens; after a reseal key 1 can go.
    let rotated = SealedStore::new(raw.clone(), key_ring(2, &[1]));
    assert_eq!(
        rotated.reseal_all().await.unwrap(),
        ResealReport {
            accounts: 1,
            webhooks: 1
        }
    );
    let only_new = SealedStore::new(raw.clone(), key_ring(2, &[]));
    assert_eq!(
        only_new
            .get_webhook(&account.id, &webhook.id)
            .await
            .unwrap(),
        // Each reseal was a write of it.
        Some(Webhook {
            version: 2,
            ..webhook.clone()
        })
    );
    assert_eq!(
        only_new.get_account(&account.id).await.unwrap(),
        Some(account)
    );
    // The old key alone no longer opens them: an error, never the sealed text as a secret.
    let only_old = SealedStore::new(raw, key_ring(1, &[]));
    let error = only_old.list_webhooks("acct_legacy").await.unwrap_err();
    assert!(error.0.contains("not in the key ring"), "{error}");
}
