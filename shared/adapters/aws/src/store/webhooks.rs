//! Webhooks, with the account's webhook count kept beside them for paging.

use super::*;
use aws_sdk_dynamodb::types::{Delete, Update};
use hookline_model::{GONE_DISABLED_REASON, WebhookHealth};

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

pub(super) async fn insert_webhook(
    store: &DynamoStore,
    webhook: &Webhook,
    max_per_account: u32,
) -> PortResult<bool> {
    // The account's count moves in the same transaction, only while under the quota, so
    // concurrent creates never pass it.
    let count = TransactWriteItem::builder()
        .update(
            Update::builder()
                .table_name(&store.table)
                .set_key(Some(account_key(&webhook.account_id)))
                .update_expression("ADD webhookCount :one")
                .condition_expression(
                    "attribute_exists(pk) AND (attribute_not_exists(webhookCount) OR webhookCount < :max)",
                )
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":max", n(max_per_account as i64))
                .build()
                .map_err(sdk("TransactWriteItems"))?,
        )
        .build();
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
        count,
    ];
    match store.transact(items).await? {
        Tx::Done => Ok(true),
        Tx::ConditionFailed => {
            let full = store
                .get(account_key(&webhook.account_id))
                .await?
                .is_some_and(|item| number_of(&item, "webhookCount") >= max_per_account as u64);
            if full {
                Ok(false)
            } else {
                Err(PortError("webhook id taken or account missing".into()))
            }
        }
    }
}

pub(super) async fn update_webhook(store: &DynamoStore, webhook: &Webhook) -> PortResult<bool> {
    let next = Webhook {
        version: webhook.version + 1,
        ..webhook.clone()
    };
    // Only over the version it was read at (a webhook stored before versions counts as 0).
    let condition = if webhook.version == 0 {
        "attribute_exists(pk) AND (attribute_not_exists(version) OR version = :read)"
    } else {
        "version = :read"
    };
    let result = store
        .client
        .put_item()
        .table_name(&store.table)
        .set_item(Some(to_item(
            &next,
            webhook_key(&webhook.account_id, &webhook.id),
            KIND_WEBHOOK,
        )?))
        .condition_expression(condition)
        .expression_attribute_values(":read", n(webhook.version as i64))
        .send()
        .await;
    written(result, "PutItem")
}

/// The update that marks a webhook inactive and moves its version on (a 410's answer).
pub(super) fn deactivate_update(
    store: &DynamoStore,
    account_id: &str,
    webhook_id: &str,
    at: DateTime<Utc>,
) -> PortResult<Update> {
    Update::builder()
        .table_name(&store.table)
        .set_key(Some(webhook_key(account_id, webhook_id)))
        .update_expression(
            "SET active = :false, updatedAt = :at, health = :health ADD version :one",
        )
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":false", AttributeValue::Bool(false))
        .expression_attribute_values(":at", s(at.to_rfc3339()))
        .expression_attribute_values(":health", gone_health(at)?)
        .expression_attribute_values(":one", n(1))
        .build()
        .map_err(sdk("UpdateItem"))
}

/// A 410's `health`: why and when, with the run of failures it ends.
fn gone_health(at: DateTime<Utc>) -> PortResult<AttributeValue> {
    let health = WebhookHealth {
        failing_since: None,
        disabled_reason: Some(GONE_DISABLED_REASON.into()),
        disabled_at: Some(at),
    };
    serde_dynamo::to_attribute_value(health)
        .map_err(|e| PortError::new("encoding a webhook's health", e))
}

pub(super) async fn deactivate_webhook(
    store: &DynamoStore,
    account_id: &str,
    webhook_id: &str,
    at: DateTime<Utc>,
) -> PortResult<bool> {
    let deactivate = TransactWriteItem::builder()
        .update(deactivate_update(store, account_id, webhook_id, at)?)
        .build();
    Ok(matches!(store.transact(vec![deactivate]).await?, Tx::Done))
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

#[async_trait]
impl WebhookStore for DynamoStore {
    async fn insert_webhook(&self, webhook: &Webhook, max_per_account: u32) -> PortResult<bool> {
        webhooks::insert_webhook(self, webhook, max_per_account).await
    }

    async fn update_webhook(&self, webhook: &Webhook) -> PortResult<bool> {
        // Written or lost to a newer version: either way the cached copy is old (forgotten
        // after the write too, in case a delivery read the old one back in meanwhile).
        let key = || webhook_key(&webhook.account_id, &webhook.id);
        self.forget_cached(key());
        let written = webhooks::update_webhook(self, webhook).await;
        self.forget_cached(key());
        written
    }

    async fn deactivate_webhook(
        &self,
        account_id: &str,
        webhook_id: &str,
        at: DateTime<Utc>,
    ) -> PortResult<bool> {
        self.forget_cached(webhook_key(account_id, webhook_id));
        webhooks::deactivate_webhook(self, account_id, webhook_id, at).await
    }

    async fn delete_webhook(
        &self,
        account_id: &str,
        webhook_id: &str,
    ) -> PortResult<Option<Webhook>> {
        webhooks::delete_webhook(self, account_id, webhook_id).await
    }

    async fn get_webhook(&self, account_id: &str, webhook_id: &str) -> PortResult<Option<Webhook>> {
        // Strongly consistent: a read before a write over its version (a PATCH, a health
        // write, a switch-off) sees the last write.
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(webhook_key(account_id, webhook_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk("GetItem"))?;
        out.item.map(from_item).transpose()
    }

    async fn list_webhooks(&self, account_id: &str) -> PortResult<Vec<Webhook>> {
        self.query_all(
            "#pk = :pk AND begins_with(#sk, :prefix)",
            names(&[("#pk", PK), ("#sk", SK)]),
            HashMap::from([
                (":pk".into(), s(account_pk(account_id))),
                (":prefix".into(), s("WH#")),
            ]),
        )
        .await?
        .into_iter()
        .map(from_item)
        .collect()
    }

    async fn list_webhooks_page(
        &self,
        account_id: &str,
        page: u32,
        size: u32,
    ) -> PortResult<Page<Webhook>> {
        webhooks::list_webhooks_page(self, account_id, page, size).await
    }
}
