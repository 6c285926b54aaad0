//! Status counters folded from the table's stream ([`Counting::FromStream`]).
//!
//! The stream function hands over one stream batch at a time. Its status changes are summed per
//! account and creation day and added to that day's counter under one of the account's
//! [`COUNTER_PKS`] keys (`CNT#<account>#<nn>` / `COUNT#<yyyymmdd>`, the key picked by the batch's
//! name, so an account's batches from many stream shards spread over partitions), all in one
//! transaction with a marker item named after the batch (its first and last record). Lambda
//! retries a failed batch as it was; the marker makes a retry of a batch whose transaction went
//! through a no-op, so every change is counted once. Markers expire after two days (the stream
//! keeps records for one).

use super::*;
use std::collections::BTreeMap;

/// The most (account, day) counters per transaction: with the marker, within 100 actions.
const FOLD_CHUNK: usize = 99;

/// One delivery's status change, as the stream saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterChange {
    pub account_id: String,
    pub created_at: DateTime<Utc>,
    /// `None` when the delivery was created.
    pub from: Option<DeliveryStatus>,
    /// `None` when the delivery was deleted (its TTL expired).
    pub to: Option<DeliveryStatus>,
}

/// What the fold reads of an item image.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Image {
    kind: Option<String>,
    id: Option<String>,
    account_id: Option<String>,
    event_id: Option<String>,
    webhook_id: Option<String>,
    created_at: Option<DateTime<Utc>>,
    status: Option<DeliveryStatus>,
    #[serde(default)]
    ordered: bool,
}

fn image<I: Into<serde_dynamo::Item>>(item: Option<I>) -> Option<Image> {
    let image: Image = serde_dynamo::from_item(item?).ok()?;
    (image.kind.as_deref() == Some(KIND_DELIVERY)).then_some(image)
}

/// The job of a delivery that a stream record shows inserted (no old image, a pending new
/// one): what the stream function queues when it queues the fan-out. Changes to stored
/// deliveries queue nothing (their retries are found by the sweep or queued by the api).
pub fn inserted_delivery_job<I: Into<serde_dynamo::Item>>(
    old: Option<I>,
    new: Option<I>,
) -> Option<DeliveryJob> {
    if old.map(Into::into).is_some_and(|i| !i.is_empty()) {
        return None;
    }
    let new = image(new)?;
    if new.status != Some(DeliveryStatus::Pending) {
        return None;
    }
    Some(DeliveryJob {
        account_id: new.account_id?,
        delivery_id: new.id?,
        event_id: new.event_id?,
        webhook_id: new.webhook_id?,
        not_before: None,
        // An ordered webhook's delivery was queued by the api already, in publish order (the
        // stream's shards are read in parallel and would not keep it): this copy goes to the
        // FIFO queue under the same deduplication id, so SQS drops it unless publish's send
        // was lost (then it is the one, a second or so late, at the end of its lane).
        ordered: new.ordered,
        round: 0,
    })
}

/// The status change a stream record carries, from its old and new images; `None` for items
/// that are not deliveries and for changes that leave the status as it was (a removal by TTL
/// is not counted down: a day's counters expire with its deliveries).
pub fn counter_change<I: Into<serde_dynamo::Item>>(
    old: Option<I>,
    new: Option<I>,
) -> Option<CounterChange> {
    let old: Option<serde_dynamo::Item> = old.map(Into::into).filter(|i| !i.is_empty());
    let had_old = old.is_some();
    let (old, new) = (image(old), image(new));
    let new = new?;
    // An old image that is there but unreadable is no insert: count nothing rather than +1.
    if had_old && old.is_none() {
        return None;
    }
    let from = old.as_ref().and_then(|o| o.status);
    let to = new.status;
    if from == to {
        return None;
    }
    Some(CounterChange {
        account_id: new.account_id?,
        created_at: new.created_at?,
        from,
        to,
    })
}

impl DynamoStore {
    /// Adds one stream batch's status changes to the counters, once: `batch_id` names the
    /// batch (the same for a retry of it).
    pub async fn fold_counters(&self, batch_id: &str, changes: &[CounterChange]) -> PortResult<()> {
        let mut sums: BTreeMap<(String, String), (DateTime<Utc>, [i64; 4])> = BTreeMap::new();
        for change in changes {
            let day = change.created_at.format("%Y%m%d").to_string();
            let (_, deltas) = sums
                .entry((change.account_id.clone(), day))
                .or_insert((change.created_at, [0; 4]));
            if let Some(from) = change.from {
                deltas[super::counters::status_index(from)] -= 1;
            }
            if let Some(to) = change.to {
                deltas[super::counters::status_index(to)] += 1;
            }
        }
        let sums: Vec<_> = sums
            .into_iter()
            .filter(|(_, (_, deltas))| deltas.iter().any(|d| *d != 0))
            .collect();
        for (part, chunk) in sums.chunks(FOLD_CHUNK).enumerate() {
            let mut actions = Vec::with_capacity(chunk.len() + 1);
            for ((account_id, day), (created_at, deltas)) in chunk {
                let changes: Vec<(DeliveryStatus, i64)> = DeliveryStatus::ALL
                    .into_iter()
                    .zip(*deltas)
                    .filter(|(_, delta)| *delta != 0)
                    .collect();
                actions.push(self.counter_action_at(
                    counter_pk(account_id, batch_id),
                    format!("COUNT#{day}"),
                    *created_at,
                    &changes,
                )?);
            }
            let mut marker = key(format!("FOLD#{batch_id}#{part}"), "FOLD".into());
            marker.insert(KIND.into(), s("foldMarker"));
            marker.insert(
                EXPIRES_AT.into(),
                n((Utc::now() + chrono::Duration::days(2)).timestamp()),
            );
            actions.push(put_action(
                &self.table,
                marker,
                Some("attribute_not_exists(pk)"),
            )?);
            // ConditionFailed: the marker exists, this part was counted by an earlier try.
            self.transact(actions).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery_image(status: &str) -> Item {
        HashMap::from([
            ("kind".to_string(), s(KIND_DELIVERY)),
            ("accountId".to_string(), s("acct_1")),
            ("createdAt".to_string(), s("2026-12-01T00:00:00Z")),
            ("status".to_string(), s(status)),
        ])
    }

    #[test]
    fn a_change_is_the_status_before_and_after() {
        let change = counter_change(
            Some(delivery_image("pending")),
            Some(delivery_image("delivered")),
        )
        .unwrap();
        assert_eq!(
            (change.from, change.to),
            (
                Some(DeliveryStatus::Pending),
                Some(DeliveryStatus::Delivered)
            )
        );
        let insert = counter_change(None, Some(delivery_image("pending"))).unwrap();
        assert_eq!(
            (insert.from, insert.to),
            (None, Some(DeliveryStatus::Pending))
        );
        assert_eq!(
            counter_change(
                Some(delivery_image("pending")),
                Some(delivery_image("pending"))
            ),
            None,
            "no status change, nothing to count"
        );
    }

    #[test]
    fn an_unreadable_old_image_counts_nothing_rather_than_an_insert() {
        assert_eq!(
            counter_change(
                Some(delivery_image("no-such-status")),
                Some(delivery_image("delivered"))
            ),
            None
        );
        let mut webhook = delivery_image("pending");
        webhook.insert("kind".into(), s("webhook"));
        assert_eq!(counter_change(None, Some(webhook)), None, "not a delivery");
    }
}
