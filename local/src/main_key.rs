//! The local main key, which seals the secrets stored under the data directory
//! (docs/DECISIONS.md, "Secrets at rest"): `HOOKLINE_MAIN_KEY`, or else `<data dir>/main.key`,
//! created at first start (mode 0600). Either holds one or more keys (base64 of 32 bytes,
//! separated by commas or newlines); the first seals, the others only open, for rotation.

use hookline_model::sealing::{KeyCheck, KeyRing, SealingKey, generate_key_bytes};
use hookline_service::Store;
use hookline_service::sealed_store::SealedStore;
use hookline_sqlite::SqliteStore;
use std::path::Path;
use std::sync::Arc;

const KEY_FILE: &str = "main.key";
const KEY_VARIABLE: &str = "HOOKLINE_MAIN_KEY";
/// The store's `meta` entry holding a value sealed under the key in use, so a start with the
/// wrong key fails at once instead of on the first request that reads a secret.
const KEY_CHECK: &str = "key_check";

/// `inner` behind a [`SealedStore`] with the local main key, checked against the store: a
/// missing or wrong key for secrets already sealed is an error here, at start-up. Secrets
/// still in plaintext or under an older key are sealed again under the current key.
pub async fn sealed_store(
    inner: Arc<dyn Store>,
    store: &SqliteStore,
    data_dir: &Path,
) -> Result<Arc<SealedStore>, String> {
    let stored_check = store
        .meta(KEY_CHECK)
        .await
        .map_err(|e| format!("reading the key check: {e}"))?;
    let ring = Arc::new(load_ring(data_dir, stored_check.is_some())?);
    let check = ring.verify_key_check(stored_check.as_deref())?;
    let sealed = Arc::new(SealedStore::new(inner, ring.clone()));
    if check != KeyCheck::Current {
        let report = sealed
            .reseal_all()
            .await
            .map_err(|e| format!("sealing stored secrets under the main key: {e}"))?;
        let check = ring.seal_key_check().map_err(|e| e.to_string())?;
        store
            .set_meta(KEY_CHECK, &check)
            .await
            .map_err(|e| format!("writing the key check: {e}"))?;
        if report.accounts + report.webhooks > 0 {
            tracing::info!(
                accounts = report.accounts,
                webhooks = report.webhooks,
                key_id = ring.current_id(),
                "sealed stored secrets under the current main key"
            );
        }
    }
    Ok(sealed)
}

fn load_ring(data_dir: &Path, store_has_sealed_secrets: bool) -> Result<KeyRing, String> {
    if let Some(keys) = std::env::var(KEY_VARIABLE)
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        return parse_keys(&keys, KEY_VARIABLE);
    }
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(keys) => parse_keys(&keys, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if store_has_sealed_secrets {
                // Never start over with a new key: the stored secrets would not open.
                return Err(format!(
                    "{} is missing, but this data directory holds secrets sealed with a main \
                     key: restore the file or set {KEY_VARIABLE}",
                    path.display()
                ));
            }
            create_key_file(&path)
        }
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

fn parse_keys(text: &str, source: &str) -> Result<KeyRing, String> {
    let parts: Vec<&str> = text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let count = parts.len();
    let mut keys = parts.into_iter().enumerate().map(|(i, part)| {
        SealingKey::from_base64(part)
            .map_err(|e| format!("{source}: key {} of {count}: {e}", i + 1))
    });
    let current = keys
        .next()
        .ok_or_else(|| format!("{source} holds no key"))??;
    Ok(KeyRing::new(current, keys.collect::<Result<_, _>>()?))
}

fn create_key_file(path: &Path) -> Result<KeyRing, String> {
    use base64::Engine;
    use std::io::Write;
    let bytes = generate_key_bytes().map_err(|e| e.to_string())?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    writeln!(
        file,
        "{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
    .and_then(|_| file.sync_all())
    .map_err(|e| format!("writing {}: {e}", path.display()))?;
    let key = SealingKey::from_bytes(&bytes).map_err(|e| e.to_string())?;
    tracing::info!(path = %path.display(), key_id = key.id(), "created the main key");
    Ok(KeyRing::new(key, vec![]))
}
