//! Accounts, their API keys, and the registered event types.

use super::*;
use aws_sdk_dynamodb::types::{Delete, Update};

const EVENT_TYPES_PK: &str = "EVENT_TYPES";

fn account_entry_key(id: &str) -> Item {
    key(ACCOUNTS_PK.into(), format!("ACCT#{id}"))
}
fn account_count_key() -> Item {
    key(ACCOUNTS_PK.into(), "COUNT".into())
}
fn key_ref_key(account_id: &str, key_id: &str) -> Item {
    key(account_pk(account_id), format!("KEY#{key_id}"))
}
pub(super) fn event_type_key(name: &str) -> Item {
    key(EVENT_TYPES_PK.into(), format!("TYPE#{name}"))
}

/// The account, its list entry, the account count and the first key, in one transaction.
pub(super) async fn insert_account(
    store: &DynamoStore,
    account: &Account,
    first_key: &ApiKeyRecord,
) -> PortResult<()> {
    let table = store.table.as_str();
    let new = Some("attribute_not_exists(pk)");
    let items = vec![
        put_action(
            table,
            to_item(account, account_key(&account.id), KIND_ACCOUNT)?,
            new,
        )?,
        put_action(
            table,
            to_item(account, account_entry_key(&account.id), KIND_ACCOUNT_ENTRY)?,
            new,
        )?,
        TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(table)
                    .set_key(Some(account_count_key()))
                    .update_expression("ADD #total :one")
                    .expression_attribute_names("#total", "total")
                    .expression_attribute_values(":one", n(1))
                    .build()
                    .map_err(sdk("TransactWriteItems"))?,
            )
            .build(),
        put_action(
            table,
            to_item(first_key, api_key_key(&first_key.key_hash), KIND_KEY)?,
            new,
        )?,
        put_action(
            table,
            to_item(
                first_key,
                key_ref_key(&account.id, &first_key.id),
                KIND_KEY_REF,
            )?,
            new,
        )?,
    ];
    match store.transact(items).await? {
        Tx::Done => Ok(()),
        Tx::ConditionFailed => Err(PortError("account or key id already taken".into())),
    }
}

pub(super) async fn list_accounts(
    store: &DynamoStore,
    page: u32,
    size: u32,
) -> PortResult<Page<Account>> {
    let total = store
        .get(account_count_key())
        .await?
        .map_or(0, |item| number_of(&item, "total"));
    let items = store
        .query_prefix_page(ACCOUNTS_PK.into(), "ACCT#", page, size)
        .await?
        .into_iter()
        .map(from_item)
        .collect::<PortResult<_>>()?;
    Ok(Page { items, total })
}

pub(super) async fn set_account_secret(
    store: &DynamoStore,
    account_id: &str,
    secret: Option<&str>,
) -> PortResult<bool> {
    let update = store
        .client
        .update_item()
        .table_name(&store.table)
        .set_key(Some(account_key(account_id)))
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_names("#secret", "webhookSecret");
    let update = match secret {
        Some(secret) => update
            .update_expression("SET #secret = :secret")
            .expression_attribute_values(":secret", s(secret)),
        None => update.update_expression("REMOVE #secret"),
    };
    written(update.send().await, "UpdateItem")
}

/// The key's hash item (what authentication reads) and, for an account's key, the reference
/// that lists it under the account.
pub(super) async fn insert_api_key(store: &DynamoStore, record: &ApiKeyRecord) -> PortResult<()> {
    let table = store.table.as_str();
    let new = Some("attribute_not_exists(pk)");
    let mut items = vec![put_action(
        table,
        to_item(record, api_key_key(&record.key_hash), KIND_KEY)?,
        new,
    )?];
    if record.account_id != hookline_service::accounts::ADMIN_ACCOUNT {
        items.push(put_action(
            table,
            to_item(
                record,
                key_ref_key(&record.account_id, &record.id),
                KIND_KEY_REF,
            )?,
            new,
        )?);
    }
    match store.transact(items).await? {
        Tx::Done => Ok(()),
        Tx::ConditionFailed => Err(PortError("API key already stored".into())),
    }
}

pub(super) async fn list_api_keys(
    store: &DynamoStore,
    account_id: &str,
) -> PortResult<Vec<ApiKeyRecord>> {
    store
        .query_all(
            "#pk = :pk AND begins_with(#sk, :prefix)",
            names(&[("#pk", PK), ("#sk", SK)]),
            HashMap::from([
                (":pk".into(), s(account_pk(account_id))),
                (":prefix".into(), s("KEY#")),
            ]),
        )
        .await?
        .into_iter()
        .map(from_item)
        .collect()
}

pub(super) async fn delete_api_key(
    store: &DynamoStore,
    account_id: &str,
    key_id: &str,
) -> PortResult<bool> {
    let Some(record) = store
        .get_as::<ApiKeyRecord>(key_ref_key(account_id, key_id))
        .await?
    else {
        return Ok(false);
    };
    let delete = |key: Item| -> PortResult<TransactWriteItem> {
        Ok(TransactWriteItem::builder()
            .delete(
                Delete::builder()
                    .table_name(&store.table)
                    .set_key(Some(key))
                    .build()
                    .map_err(sdk("TransactWriteItems"))?,
            )
            .build())
    };
    store
        .transact(vec![
            delete(api_key_key(&record.key_hash))?,
            delete(key_ref_key(account_id, key_id))?,
        ])
        .await?;
    Ok(true)
}

/// Stored admin keys have no list of their own (only their hash item), so this scans, keys
/// only. Only local mode calls it, once, when `HOOKLINE_ADMIN_KEY` replaces a generated key.
pub(super) async fn delete_admin_keys(store: &DynamoStore) -> PortResult<u32> {
    let mut deleted = 0;
    let mut start: Option<Item> = None;
    loop {
        let out = store
            .client
            .scan()
            .table_name(&store.table)
            .filter_expression("#kind = :key AND #account = :admin")
            .projection_expression("#pk, #sk")
            .set_expression_attribute_names(Some(names(&[
                ("#kind", KIND),
                ("#account", "accountId"),
                ("#pk", PK),
                ("#sk", SK),
            ])))
            .set_expression_attribute_values(Some(HashMap::from([
                (":key".into(), s(KIND_KEY)),
                (
                    ":admin".into(),
                    s(hookline_service::accounts::ADMIN_ACCOUNT),
                ),
            ])))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(sdk("Scan"))?;
        for key in out.items.unwrap_or_default() {
            store
                .client
                .delete_item()
                .table_name(&store.table)
                .set_key(Some(key))
                .send()
                .await
                .map_err(sdk("DeleteItem"))?;
            deleted += 1;
        }
        start = out.last_evaluated_key;
        if start.is_none() {
            return Ok(deleted);
        }
    }
}

pub(super) async fn insert_event_type(
    store: &DynamoStore,
    event_type: &EventTypeInfo,
) -> PortResult<bool> {
    let result = store
        .client
        .put_item()
        .table_name(&store.table)
        .set_item(Some(to_item(
            event_type,
            event_type_key(&event_type.name),
            KIND_EVENT_TYPE,
        )?))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await;
    written(result, "PutItem")
}

pub(super) async fn list_event_types(store: &DynamoStore) -> PortResult<Vec<EventTypeInfo>> {
    store
        .query_all(
            "#pk = :pk",
            names(&[("#pk", PK)]),
            HashMap::from([(":pk".into(), s(EVENT_TYPES_PK))]),
        )
        .await?
        .into_iter()
        .map(from_item)
        .collect()
}

#[async_trait]
impl AccountStore for DynamoStore {
    async fn insert_account(&self, account: &Account, key: &ApiKeyRecord) -> PortResult<()> {
        accounts::insert_account(self, account, key).await
    }

    async fn get_account(&self, account_id: &str) -> PortResult<Option<Account>> {
        self.get_as(account_key(account_id)).await
    }

    async fn list_accounts(&self, page: u32, size: u32) -> PortResult<Page<Account>> {
        accounts::list_accounts(self, page, size).await
    }

    async fn set_account_secret(&self, account_id: &str, secret: Option<&str>) -> PortResult<bool> {
        accounts::set_account_secret(self, account_id, secret).await
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> PortResult<()> {
        accounts::insert_api_key(self, key).await
    }

    async fn find_api_key(&self, key_hash: &str) -> PortResult<Option<ApiKeyRecord>> {
        self.get_as(api_key_key(key_hash)).await
    }

    async fn list_api_keys(&self, account_id: &str) -> PortResult<Vec<ApiKeyRecord>> {
        accounts::list_api_keys(self, account_id).await
    }

    async fn delete_api_key(&self, account_id: &str, key_id: &str) -> PortResult<bool> {
        accounts::delete_api_key(self, account_id, key_id).await
    }

    async fn delete_admin_keys(&self) -> PortResult<u32> {
        accounts::delete_admin_keys(self).await
    }

    async fn insert_event_type(&self, event_type: &EventTypeInfo) -> PortResult<bool> {
        accounts::insert_event_type(self, event_type).await
    }

    async fn list_event_types(&self) -> PortResult<Vec<EventTypeInfo>> {
        accounts::list_event_types(self).await
    }

    async fn get_event_type(&self, name: &str) -> PortResult<Option<EventTypeInfo>> {
        self.get_as(accounts::event_type_key(name)).await
    }
}
