//! Accounts, API keys and registered event types.

use crate::SqliteStore;
use crate::db::sql;
use crate::{decode, encode, ms, page_bounds};
use async_trait::async_trait;
use hookline_model::{Account, ApiKeyRecord, EventTypeInfo};
use hookline_service::ports::AccountStore;
use hookline_service::ports::{Page, PortResult};
use rusqlite::{Connection, OptionalExtension, params};

pub(crate) fn insert_account(
    conn: &Connection,
    account: &Account,
    key: &ApiKeyRecord,
) -> PortResult<()> {
    let body = encode(account)?;
    conn.prepare_cached("INSERT INTO accounts (id, created_ms, body) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![account.id, ms(account.created_at), body]))
        .map_err(sql("inserting an account"))?;
    insert_api_key(conn, key)
}

pub(crate) fn get_account(conn: &Connection, account_id: &str) -> PortResult<Option<Account>> {
    conn.prepare_cached("SELECT body FROM accounts WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([account_id], |row| row.get::<_, String>(0))
                .optional()
        })
        .map_err(sql("reading an account"))?
        .map(|body| decode(&body))
        .transpose()
}

pub(crate) fn list_accounts(conn: &Connection, page: u32, size: u32) -> PortResult<Page<Account>> {
    let (limit, offset) = page_bounds(page, size);
    let items = conn
        .prepare_cached("SELECT body FROM accounts ORDER BY created_ms, id LIMIT ?1 OFFSET ?2")
        .and_then(|mut s| {
            s.query_map(params![limit, offset], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(sql("listing accounts"))?;
    let total: i64 = conn
        .prepare_cached("SELECT count(*) FROM accounts")
        .and_then(|mut s| s.query_row([], |row| row.get(0)))
        .map_err(sql("counting accounts"))?;
    Ok(Page {
        items: items.iter().map(|b| decode(b)).collect::<PortResult<_>>()?,
        total: total as u64,
    })
}

pub(crate) fn set_account_secret(
    conn: &Connection,
    account_id: &str,
    secret: Option<&str>,
) -> PortResult<bool> {
    let Some(mut account) = get_account(conn, account_id)? else {
        return Ok(false);
    };
    account.webhook_secret = secret.map(String::from);
    let body = encode(&account)?;
    conn.prepare_cached("UPDATE accounts SET body = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![account_id, body]))
        .map_err(sql("setting an account secret"))?;
    Ok(true)
}

pub(crate) fn insert_api_key(conn: &Connection, key: &ApiKeyRecord) -> PortResult<()> {
    let body = encode(key)?;
    conn.prepare_cached(
        "INSERT INTO api_keys (key_hash, id, account_id, created_ms, body) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            key.key_hash,
            key.id,
            key.account_id,
            ms(key.created_at),
            body
        ])
    })
    .map_err(sql("inserting an API key"))?;
    Ok(())
}

pub(crate) fn find_api_key(conn: &Connection, key_hash: &str) -> PortResult<Option<ApiKeyRecord>> {
    conn.prepare_cached("SELECT body FROM api_keys WHERE key_hash = ?1")
        .and_then(|mut s| {
            s.query_row([key_hash], |row| row.get::<_, String>(0))
                .optional()
        })
        .map_err(sql("reading an API key"))?
        .map(|body| decode(&body))
        .transpose()
}

pub(crate) fn list_api_keys(conn: &Connection, account_id: &str) -> PortResult<Vec<ApiKeyRecord>> {
    conn.prepare_cached("SELECT body FROM api_keys WHERE account_id = ?1 ORDER BY created_ms, id")
        .and_then(|mut s| {
            s.query_map([account_id], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(sql("listing API keys"))?
        .iter()
        .map(|b| decode(b))
        .collect()
}

pub(crate) fn delete_api_key(
    conn: &Connection,
    account_id: &str,
    key_id: &str,
) -> PortResult<bool> {
    let deleted = conn
        .prepare_cached("DELETE FROM api_keys WHERE account_id = ?1 AND id = ?2")
        .and_then(|mut s| s.execute([account_id, key_id]))
        .map_err(sql("deleting an API key"))?;
    Ok(deleted > 0)
}

pub(crate) fn delete_admin_keys(conn: &Connection) -> PortResult<u32> {
    let deleted = conn
        .prepare_cached("DELETE FROM api_keys WHERE account_id = ?1")
        .and_then(|mut s| s.execute([hookline_service::accounts::ADMIN_ACCOUNT]))
        .map_err(sql("deleting admin keys"))?;
    Ok(deleted as u32)
}

pub(crate) fn insert_event_type(conn: &Connection, event_type: &EventTypeInfo) -> PortResult<bool> {
    let inserted = conn
        .prepare_cached("INSERT OR IGNORE INTO event_types (name, description) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute([&event_type.name, &event_type.description]))
        .map_err(sql("inserting an event type"))?;
    Ok(inserted > 0)
}

fn event_type_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<EventTypeInfo> {
    Ok(EventTypeInfo {
        name: row.get(0)?,
        description: row.get(1)?,
    })
}

pub(crate) fn list_event_types(conn: &Connection) -> PortResult<Vec<EventTypeInfo>> {
    conn.prepare_cached("SELECT name, description FROM event_types ORDER BY name")
        .and_then(|mut s| {
            s.query_map([], event_type_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sql("listing event types"))
}

pub(crate) fn get_event_type(conn: &Connection, name: &str) -> PortResult<Option<EventTypeInfo>> {
    conn.prepare_cached("SELECT name, description FROM event_types WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], event_type_row).optional())
        .map_err(sql("reading an event type"))
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn insert_account(&self, account: &Account, key: &ApiKeyRecord) -> PortResult<()> {
        owned!(account, key);
        self.db
            .write(move |c| insert_account(c, &account, &key))
            .await
    }

    async fn get_account(&self, account_id: &str) -> PortResult<Option<Account>> {
        owned!(account_id);
        self.db.read(move |c| get_account(c, &account_id)).await
    }

    async fn list_accounts(&self, page: u32, size: u32) -> PortResult<Page<Account>> {
        self.db.read(move |c| list_accounts(c, page, size)).await
    }

    async fn set_account_secret(&self, account_id: &str, secret: Option<&str>) -> PortResult<bool> {
        owned!(account_id);
        let secret = secret.map(String::from);
        self.db
            .write(move |c| set_account_secret(c, &account_id, secret.as_deref()))
            .await
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> PortResult<()> {
        owned!(key);
        self.db.write(move |c| insert_api_key(c, &key)).await
    }

    async fn find_api_key(&self, key_hash: &str) -> PortResult<Option<ApiKeyRecord>> {
        owned!(key_hash);
        self.db.read(move |c| find_api_key(c, &key_hash)).await
    }

    async fn list_api_keys(&self, account_id: &str) -> PortResult<Vec<ApiKeyRecord>> {
        owned!(account_id);
        self.db.read(move |c| list_api_keys(c, &account_id)).await
    }

    async fn delete_api_key(&self, account_id: &str, key_id: &str) -> PortResult<bool> {
        owned!(account_id, key_id);
        self.db
            .write(move |c| delete_api_key(c, &account_id, &key_id))
            .await
    }

    async fn delete_admin_keys(&self) -> PortResult<u32> {
        self.db.write(delete_admin_keys).await
    }

    async fn insert_event_type(&self, event_type: &EventTypeInfo) -> PortResult<bool> {
        owned!(event_type);
        self.db
            .write(move |c| insert_event_type(c, &event_type))
            .await
    }

    async fn list_event_types(&self) -> PortResult<Vec<EventTypeInfo>> {
        self.db.read(list_event_types).await
    }

    async fn get_event_type(&self, name: &str) -> PortResult<Option<EventTypeInfo>> {
        owned!(name);
        self.db.read(move |c| get_event_type(c, &name)).await
    }
}
