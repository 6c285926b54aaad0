//! What the sweep finds overdue (the sparse `due` index, read shard by shard) and the
//! background jobs it resumes: the `SweepStore` part of the port.

use super::*;

impl DynamoStore {
    /// Up to `limit` items of one due shard whose sweep time is at or before `before`, with
    /// their sweep times.
    async fn due_in_shard(
        &self,
        shard: u32,
        before: DateTime<Utc>,
        limit: usize,
    ) -> PortResult<Vec<(i64, DueItem)>> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(DUE_INDEX)
                .key_condition_expression("#shard = :shard AND #due <= :before")
                .expression_attribute_names("#shard", DUE_SHARD)
                .expression_attribute_names("#due", DUE_AT)
                .expression_attribute_values(":shard", s(format!("DUE#{shard}")))
                .expression_attribute_values(":before", n(before.timestamp_millis()))
                // Read no more than a page needs: a backlog is read once, not once per page.
                .limit((limit - found.len()).clamp(1, 1000) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk("Query"))?;
            for item in out.items.unwrap_or_default() {
                let due_at = item
                    .get(DUE_AT)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let due = match item_kind(&item) {
                    Some(KIND_EVENT) => item
                        .get("accountId")
                        .zip(item.get("id"))
                        .and_then(|(a, i)| Some((a.as_s().ok()?.clone(), i.as_s().ok()?.clone())))
                        .map(|(account_id, event_id)| DueItem::FanOut {
                            account_id,
                            event_id,
                        }),
                    Some(KIND_DELIVERY) => job_of(&item).map(|job| DueItem::Delivery {
                        job,
                        next_attempt_at: item
                            .get("nextAttemptAt")
                            .and_then(|v| v.as_s().ok())
                            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                            .map(|t| t.with_timezone(&Utc)),
                    }),
                    _ if jobs::is_job(&item) => jobs::due_job(&item),
                    _ => None,
                };
                if let Some(due) = due {
                    found.push((due_at, due));
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() || found.len() >= limit {
                return Ok(found);
            }
        }
    }

    /// The items due at `before` in `shards`, oldest first, at most `limit`.
    async fn due_in_shards(
        &self,
        shards: Vec<u32>,
        before: DateTime<Utc>,
        limit: usize,
    ) -> PortResult<Vec<DueItem>> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        use futures::stream::StreamExt;
        // The hash spreads items evenly, so twice a shard's share of the page (at least 50)
        // fills it; a shard holding more than that keeps the rest for the next page or sweep.
        let per_shard = (limit.saturating_mul(2) / shards.len()).max(50);
        let count = shards.len();
        let read: Vec<PortResult<Vec<(i64, DueItem)>>> = futures::stream::iter(shards)
            .map(|shard| self.due_in_shard(shard, before, per_shard))
            .buffer_unordered(32)
            .collect()
            .await;
        // A shard that cannot be read now (throttled) is read by the next sweep; failing the
        // whole sweep for it would leave the others unswept too.
        let mut found: Vec<(i64, DueItem)> = Vec::new();
        let mut unread = Vec::new();
        for shard in read {
            match shard {
                Ok(items) => found.extend(items),
                Err(error) => unread.push(error),
            }
        }
        if unread.len() == count {
            return Err(unread.swap_remove(0));
        }
        if let Some(error) = unread.first() {
            tracing::warn!(shards = unread.len(), %error, "due shards left for the next sweep");
        }
        found.sort_by_key(|(at, _)| *at);
        let mut page: Vec<DueItem> = found
            .into_iter()
            .take(limit)
            .map(|(_, item)| item)
            .collect();
        if let Err(error) = self.mark_ordered(&mut page).await {
            // Not known to be unordered, so not sent as such: left for the next sweep.
            tracing::warn!(%error, "due deliveries left for the next sweep");
            page.retain(|item| !matches!(item, DueItem::Delivery { .. }));
        }
        Ok(page)
    }

    /// Sets `ordered` on the jobs of due deliveries made for ordered webhooks. The due index
    /// does not project the flag (CloudFormation cannot change an index's projection in
    /// place, so a stack deployed before ordered delivery could not be updated): it is read
    /// from the deliveries themselves, one eventually consistent BatchGetItem per 100 (half a
    /// read unit each), only for the few deliveries a sweep finds.
    async fn mark_ordered(&self, page: &mut [DueItem]) -> PortResult<()> {
        let keys: Vec<Item> = page
            .iter()
            .filter_map(|item| match item {
                DueItem::Delivery { job, .. } => {
                    Some(self.delivery_key(&job.account_id, &job.delivery_id))
                }
                _ => None,
            })
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let ordered: HashSet<String> = self
            .batch_get_with(keys, false, Some("id, ordered"))
            .await?
            .into_iter()
            .filter(|item| item.get("ordered").and_then(|v| v.as_bool().ok()) == Some(&true))
            .filter_map(|item| item.get("id").and_then(|v| v.as_s().ok()).cloned())
            .collect();
        for item in page.iter_mut() {
            if let DueItem::Delivery { job, .. } = item {
                job.ordered = ordered.contains(&job.delivery_id);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl SweepStore for DynamoStore {
    async fn due(&self, before: DateTime<Utc>, limit: usize) -> PortResult<Vec<DueItem>> {
        self.due_in_shards((0..DUE_SHARDS).collect(), before, limit)
            .await
    }

    async fn due_in_part(
        &self,
        before: DateTime<Utc>,
        limit: usize,
        part: u32,
        parts: u32,
    ) -> PortResult<Vec<DueItem>> {
        let shards = (0..DUE_SHARDS)
            .filter(|shard| shard % parts.max(1) == part)
            .collect();
        self.due_in_shards(shards, before, limit).await
    }

    async fn insert_job(&self, job: &Job, sweep_at: DateTime<Utc>) -> PortResult<()> {
        jobs::insert_job(self, job, sweep_at).await
    }

    async fn get_job(&self, account_id: &str, job_id: &str) -> PortResult<Option<Job>> {
        jobs::get_job(self, account_id, job_id).await
    }

    async fn update_job(&self, job: &Job, sweep_at: Option<DateTime<Utc>>) -> PortResult<bool> {
        jobs::update_job(self, job, sweep_at).await
    }

    async fn postpone(&self, item: &DueItem, until: DateTime<Utc>) -> PortResult<()> {
        let key = match item {
            DueItem::FanOut {
                account_id,
                event_id,
            } => self.event_key(account_id, event_id),
            DueItem::Delivery { job, .. } => self.delivery_key(&job.account_id, &job.delivery_id),
            DueItem::Job { account_id, job_id } => jobs::job_key(account_id, job_id),
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression("SET dueAt = :until")
            // Never put a finished item back into the due index.
            .condition_expression("attribute_exists(dueShard)")
            .expression_attribute_values(":until", n(until.timestamp_millis()))
            .send()
            .await;
        match result {
            Err(e) if is_conditional_failure(&e) => Ok(()),
            other => other.map(|_| ()).map_err(sdk("UpdateItem")),
        }
    }
}
