//! Answers of failed attempts kept in items of their own (`BODY#<delivery>` / `AT#<epoch ms>`).
//!
//! A delivery's item is rewritten by every attempt, every postpone of the sweep and every
//! requeue, each billed at the larger of its before and after size per started KB. Kept inline,
//! up to 4 KiB of each failure's answer made a failing delivery's item grow by 4 KB an attempt,
//! and every later write of it bill that again. Apart, the delivery item stays near its first
//! size, the answer is written once (a plain put with no index), and its key spreads over
//! partitions by delivery id instead of landing on the account's log shard. Only the one
//! delivery view reads them back.

use super::*;

/// Answers up to this many bytes stay in the attempt (every 2xx answer, which is kept to 256).
pub(super) const INLINE_BODY_MAX: usize = 256;

fn body_key(delivery_id: &str, at: DateTime<Utc>) -> Item {
    key(
        format!("BODY#{delivery_id}"),
        format!("AT#{:013}", at.timestamp_millis()),
    )
}

/// `record` with a long answer taken out, and the item that keeps it apart.
pub(super) fn split(
    store: &DynamoStore,
    delivery: &Delivery,
    record: &AttemptRecord,
) -> (AttemptRecord, Option<Item>) {
    let Some(body) = record
        .attempt
        .response_body
        .as_ref()
        .filter(|body| body.len() > INLINE_BODY_MAX)
    else {
        return (record.clone(), None);
    };
    let mut item = body_key(&delivery.id, record.attempt.at);
    item.insert(KIND.into(), s(KIND_ATTEMPT_BODY));
    item.insert("body".into(), s(body.clone()));
    item.insert(EXPIRES_AT.into(), store.expires_at(delivery.created_at));
    let mut inline = record.clone();
    inline.attempt.response_body = None;
    (inline, Some(item))
}

/// Stores a kept answer before the attempt that refers to it: an attempt never shows an answer
/// that is not there. A put whose attempt is then refused (a duplicate got there first) leaves
/// an answer no attempt shows, which expires with the delivery.
pub(super) async fn put(store: &DynamoStore, item: Item) -> PortResult<()> {
    store
        .client
        .put_item()
        .table_name(&store.table)
        .set_item(Some(item))
        .send()
        .await
        .map_err(sdk("PutItem"))?;
    Ok(())
}

/// Puts the answers back into the attempts of `delivery` that had one kept apart.
pub(super) async fn attach(store: &DynamoStore, delivery: &mut Delivery) -> PortResult<()> {
    // Only failures keep long answers; a delivery without one needs no read.
    if delivery
        .attempts
        .iter()
        .all(|a| a.response_body.is_some() || a.error.is_none())
    {
        return Ok(());
    }
    let items = store
        .query_all(
            "#pk = :pk",
            names(&[("#pk", PK)]),
            HashMap::from([(":pk".into(), s(format!("BODY#{}", delivery.id)))]),
        )
        .await?;
    let bodies: HashMap<String, String> = items
        .into_iter()
        .filter_map(|mut item| {
            let sk = item.remove(SK)?.as_s().ok()?.clone();
            let body = item.remove("body")?.as_s().ok()?.clone();
            Some((sk, body))
        })
        .collect();
    for attempt in &mut delivery.attempts {
        if attempt.response_body.is_none()
            && let Some(AttributeValue::S(sk)) = body_key(&delivery.id, attempt.at).get(SK)
        {
            attempt.response_body = bodies.get(sk).cloned();
        }
    }
    Ok(())
}
