//! Webhooks, with the account's webhook count kept beside them for paging.

use super::*;
use aws_sdk_dynamodb::types::{Delete, Update};

/// The account item's count of webhooks, moved by `delta` (the account must exist).
fn count_action(table: &str, account_id: &str, delta: i64) -> PortResult<TransactWriteItem> {
    Ok(TransactWriteItem::builder()
        .update(
            Update::builder()
                .table_name(table)
                .set_key(Some(account_key(account_id)))
                .update_expression("ADD webhookCount :delta")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":delta", n(delta))
                .build()
                .map_err(sdk("TransactWriteItems"))?,
        )
        .build())
}

pub(super) async fn insert_webhook(store: &DynamoStore, webhook: &Webhook) -> PortResult<()> {
    let items = vec![
        put_action(
            &store.table,
            to_item(
                webhook,
                webhook_key(&webhook.account_id, &webhook.id),
                KIND_WEBHOOK,
            )?,
            Some("attribute_not_exists(pk)"),
        )?,
        count_action(&store.table, &webhook.account_id, 1)?,
    ];
    match store.transact(items).await? {
        Tx::Done => Ok(()),
        Tx::ConditionFailed => Err(PortError("webhook id taken or account missing".into())),
    }
}

pub(super) async fn update_webhook(store: &DynamoStore, webhook: &Webhook) -> PortResult<bool> {
    let result = store
        .client
        .put_item()
        .table_name(&store.table)
        .set_item(Some(to_item(
            webhook,
            webhook_key(&webhook.account_id, &webhook.id),
            KIND_WEBHOOK,
        )?))
        .condition_expression("attribute_exists(pk)")
        .send()
        .await;
    written(result, "PutItem")
}

pub(super) async fn deactivate_webhook(
    store: &DynamoStore,
    account_id: &str,
    webhook_id: &str,
    at: DateTime<Utc>,
) -> PortResult<bool> {
    let result = store
        .client
        .update_item()
        .table_name(&store.table)
        .set_key(Some(webhook_key(account_id, webhook_id)))
        .update_expression("SET active = :false, updatedAt = :at")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":false", AttributeValue::Bool(false))
        .expression_attribute_values(":at", s(at.to_rfc3339()))
        .send()
        .await;
    written(result, "UpdateItem")
}

pub(super) async fn delete_webhook(
    store: &DynamoStore,
    account_id: &str,
    webhook_id: &str,
) -> PortResult<Option<Webhook>> {
    let Some(webhook) = store
        .get_as::<Webhook>(webhook_key(account_id, webhook_id))
        .await?
    else {
        return Ok(None);
    };
    let items = vec![
        TransactWriteItem::builder()
            .delete(
                Delete::builder()
                    .table_name(&store.table)
                    .set_key(Some(webhook_key(account_id, webhook_id)))
                    .condition_expression("attribute_exists(pk)")
                    .build()
                    .map_err(sdk("TransactWriteItems"))?,
            )
            .build(),
        count_action(&store.table, account_id, -1)?,
    ];
    match store.transact(items).await? {
        Tx::Done => Ok(Some(webhook)),
        // Deleted meanwhile by another request.
        Tx::ConditionFailed => Ok(None),
    }
}

pub(super) async fn list_webhooks_page(
    store: &DynamoStore,
    account_id: &str,
    page: u32,
    size: u32,
) -> PortResult<Page<Webhook>> {
    let total = store
        .get(account_key(account_id))
        .await?
        .map_or(0, |item| number_of(&item, "webhookCount"));
    let items = store
        .query_prefix_page(account_pk(account_id), "WH#", page, size)
        .await?
        .into_iter()
        .map(from_item)
        .collect::<PortResult<_>>()?;
    Ok(Page { items, total })
}
