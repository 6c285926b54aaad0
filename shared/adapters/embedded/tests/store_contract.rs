//! The DynamoDB store adapter on the embedded dynoxide (local mode's store) passes the Store
//! contract, alone and behind the cache local mode puts in front of it, and its data survives
//! a restart.

use hookline_aws::{DynamoStore, table::ensure_table};
use hookline_embedded::{CachedStore, EmbeddedDynamo};
use hookline_service::Store;
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
