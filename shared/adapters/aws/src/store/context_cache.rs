//! Webhook and account items kept for a few seconds by the deliver function, so a delivery
//! reads only its own item and its event (2 of the 4 read units of its context). A change to a
//! webhook or an account reaches deliveries within the time to live; a 410 deactivation made
//! here drops its webhook at once.

use super::Item;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Entries kept at most; past it the cache starts afresh (a container serves few accounts).
const MAX_ENTRIES: usize = 10_000;

pub(crate) struct ContextCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Item)>>,
    /// One read at a time per missing key ([`ContextCache::fill_guards`]).
    fills: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// An item's key as one string (`pk` and `sk`).
pub(crate) fn key_id(key: &Item) -> String {
    let part = |name: &str| {
        key.get(name)
            .and_then(|v| v.as_s().ok())
            .map_or("", String::as_str)
    };
    format!("{}\n{}", part("pk"), part("sk"))
}

impl ContextCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
            fills: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until no other task is reading any of `keys`, and keeps the others waiting while
    /// the guards live: the jobs of a message start together (up to 100 an invocation), and
    /// without this each would read the same missing webhook and account. A key found in the
    /// cache once its turn comes is not held (the task it waited for read it). Keys are locked
    /// in one order, so two tasks cannot wait on each other. A key that is not found (a
    /// deleted webhook) is not cached, so its jobs read it one after the other.
    pub(crate) async fn fill_guards(
        &self,
        keys: &[&Item],
    ) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        let mut keys: Vec<(String, &Item)> = keys.iter().map(|k| (key_id(k), *k)).collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        keys.dedup_by(|a, b| a.0 == b.0);
        let locks: Vec<_> = {
            let mut fills = self.fills.lock().unwrap_or_else(|e| e.into_inner());
            if fills.len() >= MAX_ENTRIES {
                fills.clear();
            }
            keys.into_iter()
                .map(|(id, key)| (fills.entry(id).or_default().clone(), key))
                .collect()
        };
        let mut guards = Vec::with_capacity(locks.len());
        for (lock, key) in locks {
            let guard = lock.lock_owned().await;
            // Read by the task this one waited for: nothing to hold the others back for.
            if self.get(key).is_none() {
                guards.push(guard);
            }
        }
        guards
    }

    /// The item under `key` if it was read less than the time to live ago.
    pub(crate) fn get(&self, key: &Item) -> Option<Item> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (read_at, item) = entries.get(&key_id(key))?;
        (read_at.elapsed() < self.ttl).then(|| item.clone())
    }

    pub(crate) fn put(&self, item: &Item) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key_id(item), (Instant::now(), item.clone()));
    }

    pub(crate) fn forget(&self, key: &Item) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(&key_id(key));
    }
}
