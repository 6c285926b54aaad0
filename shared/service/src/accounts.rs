//! Accounts and API-key authentication.

use crate::{Service, ServiceError, ServiceResult};
use hookline_model::keys::{generate_api_key, hash_api_key, hashes_equal};
use hookline_model::{Account, ApiKeyRecord, Principal, ValidationError, ids};

/// A created account and its first key, shown this once.
pub struct CreatedAccount {
    pub account: Account,
    pub api_key: String,
}

impl Service {
    pub async fn create_account(&self, name: &str) -> ServiceResult<CreatedAccount> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ValidationError::new("name", "must be 1 to 200 characters").into());
        }
        let now = self.ports.clock.now();
        let account = Account {
            id: ids::new_id(ids::ACCOUNT, now),
            name: name.to_string(),
            created_at: now,
            webhook_secret: None,
        };
        let api_key = generate_api_key();
        let record = ApiKeyRecord {
            id: ids::new_id(ids::API_KEY, now),
            account_id: account.id.clone(),
            key_hash: hash_api_key(&api_key),
            created_at: now,
        };
        self.ports.store.insert_account(&account, &record).await?;
        Ok(CreatedAccount { account, api_key })
    }

    /// Whose key this is: the admin's, an account's, or nobody's (401).
    pub async fn authenticate(&self, presented_key: &str) -> ServiceResult<Principal> {
        let hash = hash_api_key(presented_key);
        if self
            .config
            .admin_key_hash
            .as_deref()
            .is_some_and(|admin| hashes_equal(admin, &hash))
        {
            return Ok(Principal::Admin);
        }
        match self.ports.store.find_api_key(&hash).await? {
            Some(record) if record.account_id == ADMIN_ACCOUNT => Ok(Principal::Admin),
            Some(record) => Ok(Principal::Account(record.account_id)),
            None => Err(ServiceError::Unauthorized),
        }
    }

    /// Stores the hash of a generated admin key (local mode, when `HOOKLINE_ADMIN_KEY` is unset).
    pub async fn register_admin_key(&self, key: &str) -> ServiceResult<()> {
        let now = self.ports.clock.now();
        self.ports
            .store
            .insert_api_key(&ApiKeyRecord {
                id: ids::new_id(ids::API_KEY, now),
                account_id: ADMIN_ACCOUNT.to_string(),
                key_hash: hash_api_key(key),
                created_at: now,
            })
            .await?;
        Ok(())
    }
}

/// The owner recorded on admin keys kept in the store.
pub const ADMIN_ACCOUNT: &str = "admin";
