//! Deliveries and the per-status counters that move with them.
//!
//! In [`Counting::InTransaction`] every status change of a delivery and its counter update are
//! one transaction, so the counts stay exact through duplicates and crashes. In
//! [`Counting::FromStream`] deliveries are written alone (a plain conditional update, billed
//! once) and `fold` counts their changes from the table's stream. Counters are kept per
//! creation day and shard (`COUNT#<yyyymmdd>#<shard>`): shards spread a busy account's writes,
//! and a day's counters expire with that day's deliveries, so the counts cover what the logs
//! still hold.

use super::*;
use aws_sdk_dynamodb::types::Update;
use futures::StreamExt;
use std::collections::BTreeMap;

/// Counter items per account and day.
const COUNTER_SHARDS: u32 = 16;
/// Deliveries per fan-out transaction (each with its counter updates, within the 100 limit).
const INSERT_CHUNK: usize = 50;

fn counter_sk(created_at: DateTime<Utc>, delivery_id: &str) -> String {
    let hash = delivery_id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    format!(
        "COUNT#{}#{:02}",
        created_at.format("%Y%m%d"),
        hash % COUNTER_SHARDS
    )
}

impl DynamoStore {
    /// A delivery's key in the `byStatus` index: only failures are indexed (they are few, and
    /// the portal lists them); `None` for the other statuses.
    pub(super) fn status_key(
        &self,
        delivery: &Delivery,
        status: DeliveryStatus,
    ) -> Option<AttributeValue> {
        matches!(status, DeliveryStatus::Retrying | DeliveryStatus::Failed).then(|| {
            s(log_index_key(
                &delivery.account_id,
                status.as_str(),
                self.shard_of(&delivery.id),
            ))
        })
    }

    /// An update adding `deltas` (status, change) to one counter item.
    pub(super) fn counter_action(
        &self,
        account_id: &str,
        sk: String,
        created_at: DateTime<Utc>,
        deltas: &[(DeliveryStatus, i64)],
    ) -> PortResult<TransactWriteItem> {
        self.counter_action_at(account_pk(account_id), sk, created_at, deltas)
    }

    /// [`DynamoStore::counter_action`] on a counter item under partition key `pk`.
    pub(super) fn counter_action_at(
        &self,
        pk: String,
        sk: String,
        created_at: DateTime<Utc>,
        deltas: &[(DeliveryStatus, i64)],
    ) -> PortResult<TransactWriteItem> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":kind", s(KIND_COUNTER))
            // The day's counters outlive the day's deliveries by a day.
            .expression_attribute_values(
                ":expires",
                self.expires_at(created_at + chrono::Duration::days(1)),
            );
        let mut adds = Vec::new();
        for (i, (status, delta)) in deltas.iter().enumerate() {
            update = update
                .expression_attribute_names(format!("#s{i}"), status.as_str())
                .expression_attribute_values(format!(":d{i}"), n(*delta));
            adds.push(format!("#s{i} :d{i}"));
        }
        Ok(TransactWriteItem::builder()
            .update(
                update
                    .update_expression(format!(
                        "SET kind = :kind, #expires = if_not_exists(#expires, :expires) ADD {}",
                        adds.join(", ")
                    ))
                    .build()
                    .map_err(sdk("TransactWriteItems"))?,
            )
            .build())
    }

    fn delivery_item(&self, delivery: &Delivery, sweep_at: DateTime<Utc>) -> PortResult<Item> {
        let mut item = to_item(
            delivery,
            self.delivery_key(&delivery.account_id, &delivery.id),
            KIND_DELIVERY,
        )?;
        // Queued by the api: due a lease later in case the enqueue is lost. Queued by the
        // stream: the stream function is retried until it queues it, so not due at all (an
        // ordered webhook's delivery is queued by the api too, in publish order; the
        // stream's copy is its safety net, one message with it to the FIFO queue).
        if self.fan_out_queue == FanOutQueue::Api {
            item.insert(DUE_SHARD.into(), due_shard(&delivery.id));
            item.insert(DUE_AT.into(), n(sweep_at.timestamp_millis()));
        }
        item.insert(EXPIRES_AT.into(), self.expires_at(delivery.created_at));
        item.insert(
            WEBHOOK_KEY.into(),
            s(log_index_key(
                &delivery.account_id,
                &delivery.webhook_id,
                self.shard_of(&delivery.id),
            )),
        );
        if let Some(key) = self.status_key(delivery, delivery.status) {
            item.insert(STATUS_KEY.into(), key);
        }
        Ok(item)
    }

    /// Stores `deliveries` that do not exist yet and counts them, in one transaction
    /// (`ConditionFailed`, writing nothing, when one of them exists).
    async fn insert_counted(
        &self,
        deliveries: &[&Delivery],
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Tx> {
        let actions = self.insert_counted_actions(deliveries, sweep_at)?;
        self.transact(actions).await
    }

    /// The conditional puts of `deliveries` and the pending counts they add.
    pub(super) fn insert_counted_actions(
        &self,
        deliveries: &[&Delivery],
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Vec<TransactWriteItem>> {
        let mut actions = Vec::with_capacity(deliveries.len() + 4);
        let mut buckets: BTreeMap<(String, String), (DateTime<Utc>, i64)> = BTreeMap::new();
        for delivery in deliveries {
            actions.push(put_action(
                &self.table,
                self.delivery_item(delivery, sweep_at)?,
                Some("attribute_not_exists(pk)"),
            )?);
            let bucket = buckets
                .entry((
                    delivery.account_id.clone(),
                    counter_sk(delivery.created_at, &delivery.id),
                ))
                .or_insert((delivery.created_at, 0));
            bucket.1 += 1;
        }
        if self.counting == Counting::FromStream {
            return Ok(actions);
        }
        for ((account_id, sk), (created_at, count)) in buckets {
            actions.push(self.counter_action(
                &account_id,
                sk,
                created_at,
                &[(DeliveryStatus::Pending, count)],
            )?);
        }
        Ok(actions)
    }
}

/// Stores a fan-out's deliveries, answering which were new. A re-run (the sweep finishing an
/// interrupted fan-out) skips those already stored, so none is reset, counted twice or queued
/// again: a chunk whose transaction finds one stored reads which exist (one consistent batch
/// read of keys) and stores the rest in one transaction.
pub(super) async fn insert_deliveries(
    store: &DynamoStore,
    deliveries: &[Delivery],
    sweep_at: DateTime<Utc>,
) -> PortResult<Vec<bool>> {
    if store.counting == Counting::FromStream {
        return insert_one_by_one(store, deliveries, sweep_at).await;
    }
    let mut new = Vec::with_capacity(deliveries.len());
    for chunk in deliveries.chunks(INSERT_CHUNK) {
        let all: Vec<&Delivery> = chunk.iter().collect();
        if let Tx::Done = store.insert_counted(&all, sweep_at).await? {
            new.extend(std::iter::repeat_n(true, chunk.len()));
            continue;
        }
        // Another writer may store some between the read and the write: read again then.
        let mut stored = None;
        for _ in 0..5 {
            let keys = chunk
                .iter()
                .map(|d| store.delivery_key(&d.account_id, &d.id))
                .collect();
            let existing = store.stored_delivery_ids(keys, true).await?;
            let missing: Vec<&Delivery> =
                chunk.iter().filter(|d| !existing.contains(&d.id)).collect();
            if missing.is_empty()
                || matches!(store.insert_counted(&missing, sweep_at).await?, Tx::Done)
            {
                stored = Some(existing);
                break;
            }
        }
        let Some(stored) = stored else {
            return Err(PortError(
                "storing a fan-out chunk: other writers kept changing it".into(),
            ));
        };
        new.extend(chunk.iter().map(|d| !stored.contains(&d.id)));
    }
    Ok(new)
}

/// Puts in flight at once when a fan-out's deliveries are stored one by one.
const INSERT_CONCURRENCY: usize = 16;

/// With counters folded from the stream nothing else has to move with an insert, so each
/// delivery is one conditional put (billed once; a transaction bills every item twice). The
/// event stays due until the fan-out is finished, so a crash part way is finished by a retried
/// publish or the sweep, and a put that finds its delivery stored answers not new.
pub(super) async fn insert_one_by_one(
    store: &DynamoStore,
    deliveries: &[Delivery],
    sweep_at: DateTime<Utc>,
) -> PortResult<Vec<bool>> {
    // Collected first: a lazy map's closure trips the Send check of the port's futures.
    let puts: Vec<_> = deliveries
        .iter()
        .map(|delivery| put_new(store, delivery, sweep_at))
        .collect();
    futures::stream::iter(puts)
        .buffered(INSERT_CONCURRENCY)
        .collect::<Vec<PortResult<bool>>>()
        .await
        .into_iter()
        .collect()
}

/// Tries of one delivery's put before the fan-out's write fails.
const PUT_TRIES: u32 = 4;

/// Puts `delivery` unless it exists: whether it was new. A failed put is tried again (a fan-out
/// of 48 is 48 puts: without this, one throttled put in 48 failed the whole publish). A put
/// whose answer was lost but which was applied answers not new on its next try: the delivery
/// is stored all the same, and queued by the stream (or found by the sweep, due).
async fn put_new(
    store: &DynamoStore,
    delivery: &Delivery,
    sweep_at: DateTime<Utc>,
) -> PortResult<bool> {
    let item = store.delivery_item(delivery, sweep_at)?;
    let mut tries = 0;
    loop {
        tries += 1;
        let put = store
            .client
            .put_item()
            .table_name(&store.table)
            .set_item(Some(item.clone()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => return Ok(true),
            Err(e) if is_conditional_failure(&e) => return Ok(false),
            Err(e) if tries >= PUT_TRIES => return Err(sdk("PutItem")(e)),
            Err(_) => tokio::time::sleep(Duration::from_millis(25 << tries)).await,
        }
    }
}

/// Deliveries per attempt-recording transaction: their updates, webhook deactivations and the
/// merged counter updates stay within the 100 actions of a transaction.
const RECORD_CHUNK: usize = 40;

/// Records a batch of attempts, a transaction per chunk. A chunk whose transaction fails (a
/// duplicate moved one of its deliveries on first, one item is refused, a backend error) is
/// recorded one delivery at a time, so each gets its own answer and none fails another's.
pub(super) async fn record_attempts(
    store: &DynamoStore,
    batch: &[(&Delivery, &AttemptRecord)],
) -> Vec<PortResult<bool>> {
    // Long answers go to items of their own first (`attempt_bodies`); an attempt whose answer
    // cannot be stored fails alone.
    let split: Vec<(AttemptRecord, Option<Item>)> = batch
        .iter()
        .map(|(delivery, record)| attempt_bodies::split(store, delivery, record))
        .collect();
    let puts = split.iter().map(|(_, body)| async move {
        match body {
            Some(item) => attempt_bodies::put(store, item.clone()).await,
            None => Ok(()),
        }
    });
    let stored: Vec<PortResult<()>> = futures::future::join_all(puts).await;
    let mut answers: Vec<Option<PortResult<bool>>> = Vec::with_capacity(batch.len());
    let mut inline = Vec::with_capacity(batch.len());
    for (((delivery, _), (record, _)), stored) in batch.iter().zip(&split).zip(stored) {
        match stored {
            Ok(()) => {
                answers.push(None);
                inline.push((*delivery, record));
            }
            Err(e) => answers.push(Some(Err(e))),
        }
    }
    let mut recorded = record_inline(store, &inline).await.into_iter();
    answers
        .into_iter()
        .map(|answer| {
            answer.unwrap_or_else(|| {
                recorded
                    .next()
                    .unwrap_or_else(|| Err(PortError("an attempt went unanswered".into())))
            })
        })
        .collect()
}

/// [`record_attempts`] once every answer is short enough to stay in its attempt.
async fn record_inline(
    store: &DynamoStore,
    batch: &[(&Delivery, &AttemptRecord)],
) -> Vec<PortResult<bool>> {
    if store.counting == Counting::FromStream {
        // No counter to keep in step: each attempt is one conditional update of its own
        // (billed once). Only a 410 needs a transaction (with the webhook). Deliveries are
        // written at once, and the records of one delivery in their order.
        let mut by_delivery: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, (delivery, _)) in batch.iter().enumerate() {
            by_delivery.entry(delivery.id.as_str()).or_default().push(i);
        }
        let writes = by_delivery.into_values().map(|indexes| async move {
            let mut answers = Vec::with_capacity(indexes.len());
            for i in indexes {
                let one = &batch[i];
                let answer = if one.1.deactivates_webhook {
                    record_one(store, one).await
                } else {
                    match attempt_update(store, one.0, one.1) {
                        Ok(update) => send_update(store, update).await,
                        Err(e) => Err(e),
                    }
                };
                answers.push((i, answer));
            }
            answers
        });
        let mut answers: Vec<(usize, PortResult<bool>)> = futures::future::join_all(writes)
            .await
            .into_iter()
            .flatten()
            .collect();
        answers.sort_by_key(|(i, _)| *i);
        return answers.into_iter().map(|(_, answer)| answer).collect();
    }
    let mut recorded = Vec::with_capacity(batch.len());
    for chunk in batch.chunks(RECORD_CHUNK) {
        match transact_attempts(store, chunk, true).await {
            Ok(Tx::Done) => recorded.extend(chunk.iter().map(|_| Ok(true))),
            _ => {
                for one in chunk {
                    recorded.push(record_one(store, one).await);
                }
            }
        }
    }
    recorded
}

/// One attempt in a transaction of its own. A webhook deleted meanwhile cannot be
/// deactivated: the attempt is then recorded without it.
async fn record_one(store: &DynamoStore, one: &(&Delivery, &AttemptRecord)) -> PortResult<bool> {
    let tx = transact_attempts(store, std::slice::from_ref(one), true).await?;
    Ok(match tx {
        Tx::Done => true,
        Tx::ConditionFailed if one.1.deactivates_webhook => matches!(
            transact_attempts(store, std::slice::from_ref(one), false).await?,
            Tx::Done
        ),
        Tx::ConditionFailed => false,
    })
}

/// The attempts' conditional updates and their counter moves, in one transaction.
async fn transact_attempts(
    store: &DynamoStore,
    chunk: &[(&Delivery, &AttemptRecord)],
    with_deactivations: bool,
) -> PortResult<Tx> {
    let mut actions = chunk
        .iter()
        .map(|(delivery, record)| {
            Ok(TransactWriteItem::builder()
                .update(attempt_update(store, delivery, record)?)
                .build())
        })
        .collect::<PortResult<Vec<_>>>()?;
    // A 410 deactivates its webhook in the same write as the attempt: never one without the
    // other. Once per webhook (a transaction may not touch an item twice).
    if with_deactivations {
        let mut gone = BTreeMap::new();
        for (delivery, record) in chunk {
            if record.deactivates_webhook {
                gone.insert(
                    (delivery.account_id.as_str(), delivery.webhook_id.as_str()),
                    record.attempt.at,
                );
            }
        }
        for ((account_id, webhook_id), at) in gone {
            actions.push(
                TransactWriteItem::builder()
                    .update(super::webhooks::deactivate_update(
                        store, account_id, webhook_id, at,
                    )?)
                    .build(),
            );
        }
    }
    if store.counting == Counting::FromStream {
        return store.transact(actions).await;
    }
    // One counter update per account and day for the whole chunk: the counts are sums over
    // the day's shards, so a delivery's moves need not land in the shard it was counted in.
    // (account, day) -> (a creation time of that day, its counter item, moves per status)
    type Moves<'a> = BTreeMap<(&'a str, String), (DateTime<Utc>, String, [i64; 4])>;
    let mut moves: Moves = BTreeMap::new();
    for (delivery, record) in chunk {
        if record.status == delivery.status {
            continue;
        }
        let (_, _, deltas) = moves
            .entry((
                delivery.account_id.as_str(),
                delivery.created_at.format("%Y%m%d").to_string(),
            ))
            .or_insert_with(|| {
                (
                    delivery.created_at,
                    counter_sk(delivery.created_at, &delivery.id),
                    [0; 4],
                )
            });
        deltas[status_index(delivery.status)] -= 1;
        deltas[status_index(record.status)] += 1;
    }
    for ((account_id, _), (created_at, sk, deltas)) in moves {
        let changes: Vec<(DeliveryStatus, i64)> = DeliveryStatus::ALL
            .into_iter()
            .zip(deltas)
            .filter(|(_, delta)| *delta != 0)
            .collect();
        if !changes.is_empty() {
            actions.push(store.counter_action(account_id, sk, created_at, &changes)?);
        }
    }
    store.transact(actions).await
}

/// The stored delivery has made as many attempts as the one loaded (`:made`); a delivery
/// stored before `attemptCount` existed counts its list.
const SAME_ATTEMPTS: &str =
    "(attemptCount = :made OR (attribute_not_exists(attemptCount) AND size(attempts) = :made))";

pub(super) fn status_index(status: DeliveryStatus) -> usize {
    DeliveryStatus::ALL
        .iter()
        .position(|s| *s == status)
        .unwrap_or(0)
}

/// The update recording one attempt, only from the status the delivery was loaded in: a
/// concurrent duplicate records nothing.
fn attempt_update(
    store: &DynamoStore,
    delivery: &Delivery,
    record: &AttemptRecord,
) -> PortResult<Update> {
    // The whole kept list, written over the one loaded (the condition below makes sure it is
    // still that one): the newest attempts only, so the item stays small however often the
    // delivery is retried.
    let attempts = serde_dynamo::to_attribute_value(delivery.attempts_with(record.attempt.clone()))
        .map_err(|e| PortError::new("encoding an attempt", e))?;
    let mut set = vec![
        "#status = :status",
        "attempts = :attempts",
        "attemptCount = :count",
        "lastAttemptAt = :at",
    ];
    let mut remove = Vec::new();
    let mut values: Item = HashMap::from([
        (":status".into(), s(record.status.as_str())),
        (":prev".into(), s(delivery.status.as_str())),
        (":attempts".into(), attempts),
        (":made".into(), n(delivery.attempts_made() as i64)),
        (":count".into(), n(delivery.attempts_made() as i64 + 1)),
        (":at".into(), s(record.attempt.at.to_rfc3339())),
    ]);
    // The failure index key moves only when the status does (and only failures have one).
    if record.status != delivery.status {
        match store.status_key(delivery, record.status) {
            Some(key) => {
                set.push("statusKey = :statusKey");
                values.insert(":statusKey".into(), key);
            }
            None => remove.push("statusKey"),
        }
    }
    match record.attempt.status_code {
        Some(code) => {
            set.push("lastResponseStatus = :code");
            values.insert(":code".into(), n(code as i64));
        }
        None => remove.push("lastResponseStatus"),
    }
    match record.next_attempt_at {
        Some(at) => {
            set.push("nextAttemptAt = :next");
            values.insert(":next".into(), s(at.to_rfc3339()));
        }
        None => remove.push("nextAttemptAt"),
    }
    match record.sweep_at {
        Some(at) => {
            set.push("dueShard = :shard");
            set.push("dueAt = :due");
            values.insert(":shard".into(), due_shard(&delivery.id));
            values.insert(":due".into(), n(at.timestamp_millis()));
        }
        None => remove.extend(["dueShard", "dueAt"]),
    }
    let mut expression = format!("SET {}", set.join(", "));
    if !remove.is_empty() {
        expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
    }
    Update::builder()
        .table_name(&store.table)
        .set_key(Some(store.delivery_key(&delivery.account_id, &delivery.id)))
        .update_expression(expression)
        // Only from the state it was loaded in (status and number of attempts): a concurrent
        // duplicate records nothing, and one that loaded it before an attempt of the same
        // status (retrying) does not record a second.
        .condition_expression(format!("#status = :prev AND {SAME_ATTEMPTS}"))
        .expression_attribute_names("#status", "status")
        .set_expression_attribute_values(Some(values))
        .build()
        .map_err(sdk("TransactWriteItems"))
}

pub(super) async fn requeue_delivery(
    store: &DynamoStore,
    delivery: &Delivery,
    sweep_at: DateTime<Utc>,
) -> PortResult<bool> {
    let requeued = delivery.requeued();
    let update = Update::builder()
        .table_name(&store.table)
        .set_key(Some(store.delivery_key(&delivery.account_id, &delivery.id)))
        .update_expression(
            "SET #status = :pending, roundStart = :round, dueShard = :shard, dueAt = :due \
             REMOVE nextAttemptAt, statusKey",
        )
        // Only from the state it was loaded in (no attempt since), so two retries of it
        // requeue it once.
        .condition_expression(format!("#status = :prev AND {SAME_ATTEMPTS}"))
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":pending", s(requeued.status.as_str()))
        .expression_attribute_values(":prev", s(delivery.status.as_str()))
        .expression_attribute_values(":round", n(requeued.round_start as i64))
        .expression_attribute_values(":made", n(delivery.attempts_made() as i64))
        .expression_attribute_values(":shard", due_shard(&delivery.id))
        .expression_attribute_values(":due", n(sweep_at.timestamp_millis()))
        .build()
        .map_err(sdk("TransactWriteItems"))?;
    if store.counting == Counting::FromStream {
        return send_update(store, update).await;
    }
    let counter = store.counter_action(
        &delivery.account_id,
        counter_sk(delivery.created_at, &delivery.id),
        delivery.created_at,
        &[(delivery.status, -1), (requeued.status, 1)],
    )?;
    let actions = vec![TransactWriteItem::builder().update(update).build(), counter];
    Ok(matches!(store.transact(actions).await?, Tx::Done))
}

pub(super) async fn status_counts(
    store: &DynamoStore,
    account_id: &str,
) -> PortResult<StatusCounts> {
    // Only the days whose deliveries are still kept: the counters under the account's key
    // (counted in the transaction, or folded before the stream's counters were spread) and
    // under each of its folded counter keys, read at once.
    let low = s(format!(
        "COUNT#{}",
        (Utc::now() - store.retention).format("%Y%m%d")
    ));
    let pks = std::iter::once(account_pk(account_id))
        .chain((0..COUNTER_PKS).map(|k| format!("CNT#{account_id}#{k:02}")));
    let reads: Vec<PortResult<Vec<Item>>> = futures::stream::iter(pks)
        .map(|pk| {
            store.query_all(
                "#pk = :pk AND #sk BETWEEN :low AND :high",
                names(&[("#pk", PK), ("#sk", SK)]),
                HashMap::from([
                    (":pk".into(), s(pk)),
                    (":low".into(), low.clone()),
                    (":high".into(), s("COUNT#~")),
                ]),
            )
        })
        .buffer_unordered(COUNTER_PKS as usize + 1)
        .collect()
        .await;
    let mut items = Vec::new();
    for read in reads {
        items.extend(read?);
    }
    let mut sums = [0i64; 4];
    for item in &items {
        for (sum, status) in sums.iter_mut().zip(DeliveryStatus::ALL) {
            *sum += item
                .get(status.as_str())
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0);
        }
    }
    let [pending, retrying, delivered, failed] = sums.map(|v| v.max(0) as u64);
    Ok(StatusCounts {
        pending,
        retrying,
        delivered,
        failed,
    })
}
