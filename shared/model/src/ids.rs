//! Opaque ids with a type prefix (`acct_`, `wh_`, `evt_`, `dlv_`, `key_`) over ULIDs, so ids of
//! one kind sort by creation time.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use ulid::Ulid;

pub const ACCOUNT: &str = "acct";
pub const WEBHOOK: &str = "wh";
pub const EVENT: &str = "evt";
pub const DELIVERY: &str = "dlv";
pub const API_KEY: &str = "key";

/// A new random id created at `at`.
pub fn new_id(prefix: &str, at: DateTime<Utc>) -> String {
    let random: u128 = u128::from_le_bytes(crate::keys::random_bytes::<16>());
    let ulid = Ulid::from_parts(at.timestamp_millis().max(0) as u64, random);
    format!("{prefix}_{ulid}")
}

/// The delivery id of one event to one webhook. Deterministic, so that re-running an
/// interrupted fan-out recreates the same deliveries (and the same `webhook-id`) instead of
/// new ones; time-ordered by the event's creation time.
pub fn delivery_id(event_id: &str, webhook_id: &str, event_created_at: DateTime<Utc>) -> String {
    let digest = Sha256::new()
        .chain_update(event_id.as_bytes())
        .chain_update([0u8])
        .chain_update(webhook_id.as_bytes())
        .finalize();
    let mut random = [0u8; 16];
    random.copy_from_slice(&digest[..16]);
    let ulid = Ulid::from_parts(
        event_created_at.timestamp_millis().max(0) as u64,
        u128::from_le_bytes(random),
    );
    format!("{DELIVERY}_{ulid}")
}

/// The smallest and largest id of a kind created within `[from, to]`: the bounds of a
/// time-range query over ULID-keyed items.
pub fn id_bounds(
    prefix: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> (String, String) {
    let low = from.map_or(0, |t| t.timestamp_millis().max(0) as u64);
    let high = to.map_or(Ulid::from_parts(u64::MAX >> 16, 0).timestamp_ms(), |t| {
        t.timestamp_millis().max(0) as u64
    });
    (
        format!("{prefix}_{}", Ulid::from_parts(low, 0)),
        format!("{prefix}_{}", Ulid::from_parts(high, u128::MAX)),
    )
}

/// The longest id looked up. Real ids are a prefix, `_` and a 26-character ULID; a longer one
/// is not found without asking the store (whose keys stop at 1 KiB: a store error is a 500).
pub const MAX_ID_LEN: usize = 64;

/// Whether `id` looks like an id of the given kind. Unknown shapes are simply not found.
pub fn has_prefix(id: &str, prefix: &str) -> bool {
    id.len() > prefix.len() + 1
        && id.len() <= MAX_ID_LEN
        && id.starts_with(prefix)
        && id.as_bytes()[prefix.len()] == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ids_carry_prefix_and_sort_by_time() {
        let early = new_id(WEBHOOK, Utc.timestamp_millis_opt(1_000).unwrap());
        let late = new_id(WEBHOOK, Utc.timestamp_millis_opt(2_000).unwrap());
        assert!(early.starts_with("wh_"));
        assert!(early < late);
        assert!(has_prefix(&early, WEBHOOK));
        assert!(!has_prefix(&early, EVENT));
        assert!(!has_prefix(&format!("wh_{}", "A".repeat(2000)), WEBHOOK));
    }

    #[test]
    fn delivery_ids_are_deterministic_per_event_and_webhook() {
        let at = Utc.timestamp_millis_opt(5_000).unwrap();
        assert_eq!(
            delivery_id("evt_1", "wh_1", at),
            delivery_id("evt_1", "wh_1", at)
        );
        assert_ne!(
            delivery_id("evt_1", "wh_1", at),
            delivery_id("evt_1", "wh_2", at)
        );
        assert_ne!(
            delivery_id("evt_1", "wh_1", at),
            delivery_id("evt_2", "wh_1", at)
        );
    }

    #[test]
    fn id_bounds_enclose_ids_of_the_range() {
        let at = Utc.timestamp_millis_opt(10_000).unwrap();
        let id = new_id(DELIVERY, at);
        let (lo, hi) = id_bounds(DELIVERY, Some(at), Some(at));
        assert!(lo <= id && id <= hi);
        let (lo, _) = id_bounds(DELIVERY, Some(at + chrono::Duration::milliseconds(1)), None);
        assert!(id < lo);
    }
}
