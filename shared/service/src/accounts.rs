//! Accounts and API-key authentication.

use crate::ports::Page;
use crate::{Service, ServiceError, ServiceResult};
use hookline_model::keys::{
    generate_account_secret, generate_api_key, hash_api_key, hashes_equal, validate_header_text,
};
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

impl Service {
    /// Revokes the admin keys kept in the store (local mode, when `HOOKLINE_ADMIN_KEY` replaces
    /// a generated key); how many there were.
    pub async fn revoke_stored_admin_keys(&self) -> ServiceResult<u32> {
        Ok(self.ports.store.delete_admin_keys().await?)
    }
}

/// The owner recorded on admin keys kept in the store.
pub const ADMIN_ACCOUNT: &str = "admin";

/// A key added to an account, shown this once.
pub struct CreatedKey {
    pub record: ApiKeyRecord,
    pub api_key: String,
}

impl Service {
    pub async fn list_accounts(&self, page: u32, size: u32) -> ServiceResult<Page<Account>> {
        Ok(self.ports.store.list_accounts(page, size).await?)
    }

    /// An account and its keys (ids and times only).
    pub async fn get_account(
        &self,
        account_id: &str,
    ) -> ServiceResult<(Account, Vec<ApiKeyRecord>)> {
        let account = self.existing_account(account_id).await?;
        let keys = self.ports.store.list_api_keys(account_id).await?;
        Ok((account, keys))
    }

    pub async fn add_api_key(&self, account_id: &str) -> ServiceResult<CreatedKey> {
        self.existing_account(account_id).await?;
        let now = self.ports.clock.now();
        let api_key = generate_api_key();
        let record = ApiKeyRecord {
            id: ids::new_id(ids::API_KEY, now),
            account_id: account_id.to_string(),
            key_hash: hash_api_key(&api_key),
            created_at: now,
        };
        self.ports.store.insert_api_key(&record).await?;
        Ok(CreatedKey { record, api_key })
    }

    /// Revokes a key at once: the next request with it is a 401.
    pub async fn revoke_api_key(&self, account_id: &str, key_id: &str) -> ServiceResult<()> {
        self.existing_account(account_id).await?;
        if !ids::has_prefix(key_id, ids::API_KEY)
            || !self.ports.store.delete_api_key(account_id, key_id).await?
        {
            return Err(ServiceError::NotFound("API key"));
        }
        Ok(())
    }

    /// Sets the account webhook secret, generating one when none is given.
    pub async fn set_webhook_secret(
        &self,
        account_id: &str,
        secret: Option<String>,
    ) -> ServiceResult<String> {
        let secret = match secret {
            Some(secret) => {
                validate_account_secret(&secret)?;
                secret
            }
            None => generate_account_secret(),
        };
        if !self
            .ports
            .store
            .set_account_secret(account_id, Some(&secret))
            .await?
        {
            return Err(ServiceError::NotFound("account"));
        }
        Ok(secret)
    }

    pub async fn webhook_secret(&self, account_id: &str) -> ServiceResult<String> {
        self.existing_account(account_id)
            .await?
            .webhook_secret
            .ok_or(ServiceError::NotFound("webhook secret"))
    }

    pub async fn delete_webhook_secret(&self, account_id: &str) -> ServiceResult<()> {
        if self
            .existing_account(account_id)
            .await?
            .webhook_secret
            .is_none()
        {
            return Err(ServiceError::NotFound("webhook secret"));
        }
        self.ports
            .store
            .set_account_secret(account_id, None)
            .await?;
        Ok(())
    }

    async fn existing_account(&self, account_id: &str) -> ServiceResult<Account> {
        if !ids::has_prefix(account_id, ids::ACCOUNT) {
            return Err(ServiceError::NotFound("account"));
        }
        self.ports
            .store
            .get_account(account_id)
            .await?
            .ok_or(ServiceError::NotFound("account"))
    }
}

const MAX_ACCOUNT_SECRET: usize = 256;

/// The account secret travels in a header.
fn validate_account_secret(secret: &str) -> Result<(), ValidationError> {
    validate_header_text("secret", secret, MAX_ACCOUNT_SECRET, false)
}
