//! The SQLite store (local mode's) passes the Store contract, alone and behind the sealing and
//! the cache local mode puts in front of it; its data survives a restart; it refuses a data
//! directory of the emulated DynamoDB store.

use hookline_embedded::CachedStore;
use hookline_service::ports::{AccountStore, DeliveryStore};
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
        rate_limit: None,
        ordered: false,
        created_at: now,
        updated_at: now,
        version: 0,
        health: Default::default(),
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

/// A file the first release wrote (schema version 1, with its seven delivery indexes) opens:
/// it is migrated to the current schema and every record and log filter still answers.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_1_store_is_migrated_and_keeps_its_data() {
    use chrono::Utc;
    use hookline_model::types::SigningSecretEntry;
    use hookline_model::{Delivery, DeliveryStatus, Event, StatusCounts, Webhook};
    use hookline_service::ports::DeliveryQuery;
    let dir = temp_dir("v1");
    std::fs::create_dir_all(&dir).unwrap();
    let now = Utc::now();
    let webhook = Webhook {
        id: "wh_v1".into(),
        account_id: "acct_v1".into(),
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
        rate_limit: None,
        ordered: false,
        created_at: now,
        updated_at: now,
        version: 0,
        health: Default::default(),
    };
    let event = Event {
        id: "evt_v1".into(),
        account_id: "acct_v1".into(),
        event_type: "patient.created".into(),
        payload: "{\"a\":1}".into(),
        created_at: now,
        deliveries: 1,
        fanned_out: true,
    };
    let delivery = Delivery::pending(&event, &webhook);
    {
        // As version 1 wrote them.
        let conn = rusqlite::Connection::open(dir.join(hookline_sqlite::DB_FILE)).unwrap();
        conn.execute_batch(include_str!("../src/schema_v1.sql"))
            .unwrap();
        conn.execute_batch("PRAGMA user_version = 1").unwrap();
        conn.execute(
            "INSERT INTO events (account_id, id, created_ms, due_ms, body) \
             VALUES (?1, ?2, ?3, NULL, ?4)",
            rusqlite::params![
                event.account_id,
                event.id,
                now.timestamp_millis(),
                serde_json::to_string(&event).unwrap()
            ],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO deliveries (account_id, id, webhook_id, event_id, event_type, status, \
             created_ms, last_attempt_ms, attempt_count, next_attempt_at, due_ms, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, NULL, 0, NULL, ?6, ?7)",
            rusqlite::params![
                delivery.account_id,
                delivery.id,
                delivery.webhook_id,
                delivery.event_id,
                delivery.event_type,
                now.timestamp_millis(),
                serde_json::to_string(&delivery).unwrap()
            ],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO status_counts (account_id, status, n) VALUES ('acct_v1', 'pending', 1)",
            [],
        )
        .unwrap();
    }

    let store = SqliteStore::open(&dir, 365).unwrap();
    assert_eq!(
        store.get_event("acct_v1", "evt_v1").await.unwrap(),
        Some(event)
    );
    assert_eq!(
        store.get_delivery("acct_v1", &delivery.id).await.unwrap(),
        Some(delivery.clone())
    );
    assert_eq!(
        store.status_counts("acct_v1").await.unwrap(),
        StatusCounts {
            pending: 1,
            ..Default::default()
        }
    );
    for query in [
        DeliveryQuery {
            status: Some(DeliveryStatus::Pending),
            ..Default::default()
        },
        DeliveryQuery {
            event_type: Some("patient.created".into()),
            ..Default::default()
        },
        DeliveryQuery {
            webhook_id: Some("wh_v1".into()),
            status: Some(DeliveryStatus::Pending),
            ..Default::default()
        },
    ] {
        let page = store
            .list_deliveries(
                "acct_v1",
                &DeliveryQuery {
                    size: 20,
                    ..query.clone()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (page.total, page.items),
            (1, vec![delivery.clone()]),
            "{query:?}"
        );
    }
    drop(store);
    let conn = rusqlite::Connection::open(dir.join(hookline_sqlite::DB_FILE)).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 4);
    let jobs: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'jobs'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(jobs, 1, "version 3 keeps background jobs");
    let unordered: i64 = conn
        .query_row(
            "SELECT count(*) FROM deliveries WHERE ordered = 0",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(
        unordered, 1,
        "version 4 reads a delivery made before it as unordered"
    );
    let dropped: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN \
             ('deliveries_by_status', 'deliveries_by_type', 'deliveries_by_last_attempt', \
              'deliveries_by_expiry')",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(dropped, 0, "the indexes version 2 does without are gone");
}
