//! The SQLite store (local mode's) passes the Store contract, alone and behind the sealing and
//! the cache local mode puts in front of it; its data survives a restart; it refuses a data
//! directory of the emulated DynamoDB store.

use hookline_embedded::CachedStore;
use hookline_service::Store;
use hookline_sqlite::SqliteStore;
use std::sync::Arc;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hookline-sqlite-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_store_meets_the_store_contract() {
    let store = SqliteStore::open(&temp_dir("contract"), 30).unwrap();
    hookline_service::contract::store_contract(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_sealed_sqlite_store_meets_the_store_contract() {
    use hookline_model::sealing::{KeyRing, SealingKey};
    use hookline_service::sealed_store::SealedStore;
    let ring = Arc::new(KeyRing::new(
        SealingKey::from_bytes(&[7; 32]).unwrap(),
        vec![],
    ));
    let inner = SqliteStore::open(&temp_dir("contract-sealed"), 30).unwrap();
    // Local mode's stack: the cache outermost, sealing beneath it.
    let sealed = SealedStore::new(Arc::new(inner), ring);
    let store = CachedStore::new(Arc::new(sealed));
    hookline_service::contract::store_contract(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_store_keeps_data_across_a_restart() {
    let dir = temp_dir("restart");
    let account = hookline_model::Account {
        id: "acct_restart".into(),
        name: "Persistent".into(),
        created_at: chrono::Utc::now(),
        webhook_secret: None,
    };
    {
        let store = SqliteStore::open(&dir, 30).unwrap();
        let key = hookline_model::ApiKeyRecord {
            id: "key_1".into(),
            account_id: account.id.clone(),
            key_hash: "abc".into(),
            created_at: account.created_at,
        };
        store.insert_account(&account, &key).await.unwrap();
    }
    let store = SqliteStore::open(&dir, 30).unwrap();
    assert_eq!(store.get_account(&account.id).await.unwrap(), Some(account));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_directory_of_the_emulated_store_is_refused_with_what_to_do() {
    let dir = temp_dir("legacy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(hookline_sqlite::EMULATED_STORE_FILE),
        b"SQLite format 3\0",
    )
    .unwrap();
    let error = SqliteStore::open(&dir, 30).err().expect("refused");
    assert!(error.contains("emulated DynamoDB store"), "{error}");
    assert!(error.contains("new data directory"), "{error}");
    assert!(
        !dir.join(hookline_sqlite::DB_FILE).exists(),
        "nothing created"
    );
}

/// Retention deletes expired events and deliveries and takes them out of the counts, and
/// leaves newer ones alone.
#[tokio::test(flavor = "multi_thread")]
async fn expired_logs_are_deleted_with_their_counts() {
    use chrono::{Duration, Utc};
    use hookline_model::types::SigningSecretEntry;
    use hookline_model::{Delivery, Event, StatusCounts, Webhook};
    // A long retention: the store's own deletion (at start) leaves this test's rows alone.
    let store = SqliteStore::open(&temp_dir("retention"), 365).unwrap();
    let now = Utc::now();
    let webhook = Webhook {
        id: "wh_old".into(),
        account_id: "acct_old".into(),
        url: "https://example.com/hook".into(),
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
        created_at: now,
        updated_at: now,
        version: 0,
    };
    let event_at = |id: &str, at| Event {
        id: id.into(),
        account_id: "acct_old".into(),
        event_type: "patient.created".into(),
        payload: "{}".into(),
        created_at: at,
        deliveries: 0,
        fanned_out: false,
    };
    let old = event_at("evt_old", now - Duration::days(31));
    let new = event_at("evt_new", now);
    for event in [&old, &new] {
        let delivery = Delivery::pending(event, &webhook);
        store
            .insert_event_with_deliveries(event, &[delivery], now)
            .await
            .unwrap();
    }
    let pending = |n| StatusCounts {
        pending: n,
        ..Default::default()
    };
    assert_eq!(store.status_counts("acct_old").await.unwrap(), pending(2));
    let deleted = store
        .delete_expired(now - Duration::days(30))
        .await
        .unwrap();
    assert_eq!(deleted, 2, "the old event and its delivery");
    assert_eq!(store.status_counts("acct_old").await.unwrap(), pending(1));
    assert!(
        store
            .get_event("acct_old", &old.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get_event("acct_old", &new.id)
            .await
            .unwrap()
            .is_some()
    );
}
