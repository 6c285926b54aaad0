//! Webhooks: per account, oldest first, written over the version they were read at.

use crate::SqliteStore;
use crate::db::sql;
use crate::{decode, encode, ms, page_bounds};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookline_model::{GONE_DISABLED_REASON, Webhook, WebhookHealth};
use hookline_service::ports::WebhookStore;
use hookline_service::ports::{Page, PortResult};
use rusqlite::{Connection, OptionalExtension, params};

pub(crate) fn insert_webhook(
    conn: &Connection,
    webhook: &Webhook,
    max_per_account: u32,
) -> PortResult<bool> {
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM webhooks WHERE account_id = ?1")
        .and_then(|mut s| s.query_row([&webhook.account_id], |row| row.get(0)))
        .map_err(sql("counting webhooks"))?;
    if count >= max_per_account as i64 {
        return Ok(false);
    }
    let body = encode(webhook)?;
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO webhooks (account_id, id, created_ms, version, body) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| {
            s.execute(params![
                webhook.account_id,
                webhook.id,
                ms(webhook.created_at),
                webhook.version as i64,
                body
            ])
        })
        .map_err(sql("inserting a webhook"))?;
    Ok(inserted > 0)
}

pub(crate) fn update_webhook(conn: &Connection, webhook: &Webhook) -> PortResult<bool> {
    let next = Webhook {
        version: webhook.version + 1,
        ..webhook.clone()
    };
    let body = encode(&next)?;
    let updated = conn
        .prepare_cached(
            "UPDATE webhooks SET version = ?4, body = ?5 \
             WHERE account_id = ?1 AND id = ?2 AND version = ?3",
        )
        .and_then(|mut s| {
            s.execute(params![
                webhook.account_id,
                webhook.id,
                webhook.version as i64,
                next.version as i64,
                body
            ])
        })
        .map_err(sql("updating a webhook"))?;
    Ok(updated > 0)
}

pub(crate) fn deactivate_webhook(
    conn: &Connection,
    account_id: &str,
    webhook_id: &str,
    at: DateTime<Utc>,
) -> PortResult<bool> {
    let Some(mut webhook) = get_webhook(conn, account_id, webhook_id)? else {
        return Ok(false);
    };
    webhook.active = false;
    webhook.updated_at = at;
    webhook.health = WebhookHealth {
        failing_since: None,
        disabled_reason: Some(GONE_DISABLED_REASON.into()),
        disabled_at: Some(at),
    };
    update_webhook(conn, &webhook)
}

pub(crate) fn delete_webhook(
    conn: &Connection,
    account_id: &str,
    webhook_id: &str,
) -> PortResult<Option<Webhook>> {
    let Some(webhook) = get_webhook(conn, account_id, webhook_id)? else {
        return Ok(None);
    };
    conn.prepare_cached("DELETE FROM webhooks WHERE account_id = ?1 AND id = ?2")
        .and_then(|mut s| s.execute([account_id, webhook_id]))
        .map_err(sql("deleting a webhook"))?;
    Ok(Some(webhook))
}

pub(crate) fn get_webhook(
    conn: &Connection,
    account_id: &str,
    webhook_id: &str,
) -> PortResult<Option<Webhook>> {
    conn.prepare_cached("SELECT body FROM webhooks WHERE account_id = ?1 AND id = ?2")
        .and_then(|mut s| {
            s.query_row([account_id, webhook_id], |row| row.get::<_, String>(0))
                .optional()
        })
        .map_err(sql("reading a webhook"))?
        .map(|body| decode(&body))
        .transpose()
}

pub(crate) fn list_webhooks(conn: &Connection, account_id: &str) -> PortResult<Vec<Webhook>> {
    Ok(list_webhooks_page(conn, account_id, 0, u32::MAX)?.items)
}

pub(crate) fn list_webhooks_page(
    conn: &Connection,
    account_id: &str,
    page: u32,
    size: u32,
) -> PortResult<Page<Webhook>> {
    let (limit, offset) = page_bounds(page, size);
    let bodies = conn
        .prepare_cached(
            "SELECT body FROM webhooks WHERE account_id = ?1 \
             ORDER BY created_ms, id LIMIT ?2 OFFSET ?3",
        )
        .and_then(|mut s| {
            s.query_map(params![account_id, limit, offset], |row| {
                row.get::<_, String>(0)
            })?
            .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(sql("listing webhooks"))?;
    let total: i64 = conn
        .prepare_cached("SELECT count(*) FROM webhooks WHERE account_id = ?1")
        .and_then(|mut s| s.query_row([account_id], |row| row.get(0)))
        .map_err(sql("counting webhooks"))?;
    Ok(Page {
        items: bodies
            .iter()
            .map(|b| decode(b))
            .collect::<PortResult<_>>()?,
        total: total as u64,
    })
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn insert_webhook(&self, webhook: &Webhook, max_per_account: u32) -> PortResult<bool> {
        owned!(webhook);
        self.db
            .write(move |c| insert_webhook(c, &webhook, max_per_account))
            .await
    }

    async fn update_webhook(&self, webhook: &Webhook) -> PortResult<bool> {
        owned!(webhook);
        self.db.write(move |c| update_webhook(c, &webhook)).await
    }

    async fn deactivate_webhook(
        &self,
        account_id: &str,
        webhook_id: &str,
        at: DateTime<Utc>,
    ) -> PortResult<bool> {
        owned!(account_id, webhook_id);
        self.db
            .write(move |c| deactivate_webhook(c, &account_id, &webhook_id, at))
            .await
    }

    async fn delete_webhook(
        &self,
        account_id: &str,
        webhook_id: &str,
    ) -> PortResult<Option<Webhook>> {
        owned!(account_id, webhook_id);
        self.db
            .write(move |c| delete_webhook(c, &account_id, &webhook_id))
            .await
    }

    async fn get_webhook(&self, account_id: &str, webhook_id: &str) -> PortResult<Option<Webhook>> {
        owned!(account_id, webhook_id);
        self.db
            .read(move |c| get_webhook(c, &account_id, &webhook_id))
            .await
    }

    async fn list_webhooks(&self, account_id: &str) -> PortResult<Vec<Webhook>> {
        owned!(account_id);
        self.db.read(move |c| list_webhooks(c, &account_id)).await
    }

    async fn list_webhooks_page(
        &self,
        account_id: &str,
        page: u32,
        size: u32,
    ) -> PortResult<Page<Webhook>> {
        owned!(account_id);
        self.db
            .read(move |c| list_webhooks_page(c, &account_id, page, size))
            .await
    }
}
