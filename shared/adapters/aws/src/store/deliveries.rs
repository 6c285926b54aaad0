//! Events, their deliveries and attempts, the delivery log and its status counts: the
//! `DeliveryStore` part of the port, over the helpers of `mod.rs`, `counters`, `planned`,
//! `logs` and `jobs`.

use super::*;

#[async_trait]
impl DeliveryStore for DynamoStore {
    async fn insert_event(
        &self,
        event: &Event,
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Option<Event>> {
        let mut item = to_item(
            event,
            self.event_key(&event.account_id, &event.id),
            KIND_EVENT,
        )?;
        item.insert(DUE_SHARD.into(), due_shard(&event.id));
        item.insert(DUE_AT.into(), n(sweep_at.timestamp_millis()));
        item.insert(EXPIRES_AT.into(), self.expires_at(event.created_at));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(None),
            Err(e) if is_conditional_failure(&e) => {
                self.get_event(&event.account_id, &event.id).await
            }
            Err(e) => Err(sdk("PutItem")(e)),
        }
    }

    /// With counters in the transaction, one transaction is what keeps them exact. Folded from
    /// the stream, a transaction of n deliveries bills 2(n + 1) write units against n + 4 for
    /// the event put as due, n plain puts and the event marked finished (its `due` entry a put
    /// and a delete): from three deliveries on, the separate writes cost less.
    ///
    /// With the fan-out queued by the stream as well, a small fan-out is stored as planned
    /// (`planned`): n + 1 write units, and its plan on the event stays small up to ten.
    fn max_atomic_fan_out(&self) -> usize {
        match self.counting {
            Counting::InTransaction => MAX_ATOMIC_FAN_OUT,
            Counting::FromStream if self.plans_fan_outs() => planned::MAX_PLANNED_FAN_OUT,
            Counting::FromStream => 2,
        }
    }

    async fn insert_event_with_deliveries(
        &self,
        event: &Event,
        deliveries: &[Delivery],
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Option<Event>> {
        if self.plans_fan_outs() {
            return self.insert_planned(event, deliveries, sweep_at).await;
        }
        // Fanned out already, so never in the due index; its deliveries are.
        let item = self.fanned_out_event_item(event, deliveries.len())?;
        let mut actions = vec![put_action(
            &self.table,
            item,
            Some("attribute_not_exists(pk)"),
        )?];
        let deliveries: Vec<&Delivery> = deliveries.iter().collect();
        actions.extend(self.insert_counted_actions(&deliveries, sweep_at)?);
        match self.transact(actions).await? {
            Tx::Done => Ok(None),
            // Delivery ids derive from the event id: only an existing event fails this.
            Tx::ConditionFailed => self
                .existing_event(event, "a delivery exists without its event")
                .await
                .map(Some),
        }
    }

    async fn get_event(&self, account_id: &str, event_id: &str) -> PortResult<Option<Event>> {
        self.get_as(self.event_key(account_id, event_id)).await
    }

    async fn get_events(&self, account_id: &str, event_ids: &[String]) -> PortResult<Vec<Event>> {
        let keys = event_ids
            .iter()
            .map(|id| self.event_key(account_id, id))
            .collect();
        self.batch_get(keys)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    async fn insert_deliveries(
        &self,
        _event: &Event,
        deliveries: &[Delivery],
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Vec<bool>> {
        counters::insert_deliveries(self, deliveries, sweep_at).await
    }

    async fn finish_fan_out(&self, event: &Event, deliveries: u32) -> PortResult<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.event_key(&event.account_id, &event.id)))
            .update_expression("SET fannedOut = :true, deliveries = :count REMOVE dueShard, dueAt")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":count", n(deliveries as i64))
            .send()
            .await
            .map_err(sdk("UpdateItem"))?;
        Ok(())
    }

    async fn load_delivery(&self, job: &DeliveryJob) -> PortResult<Option<DeliveryContext>> {
        // The delivery and its event eventually consistently first (half the read units),
        // then consistently whatever that read cannot settle: an item it did not find (a job
        // is queued right after its delivery is written, and a replica may not have it yet)
        // or a delivery past its first attempt (its state moves; a stale copy would send a
        // retry early or a finished delivery again). A new delivery's first send, the
        // commonest read, is settled by the first read alone. An event never changes once
        // stored. Webhook and account come from the cache while fresh, else consistently, at
        // the same time: a stale webhook could fail a delivery for good (inactive a moment
        // ago) or be sent to after its 410, and then be kept for the cache's time to live.
        let delivery_key = self.delivery_key(&job.account_id, &job.delivery_id);
        let event_key = self.event_key(&job.account_id, &job.event_id);
        let webhook_key = webhook_key(&job.account_id, &job.webhook_id);
        let account_key = account_key(&job.account_id);
        let cached = |key: &Item| self.context_cache.as_ref().and_then(|c| c.get(key));
        let mut fills = Vec::new();
        if let Some(cache) = &self.context_cache {
            let missing: Vec<&Item> = [&webhook_key, &account_key]
                .into_iter()
                .filter(|key| cache.get(key).is_none())
                .collect();
            fills = cache.fill_guards(&missing).await;
        }
        let mut context = ContextItems {
            webhook: cached(&webhook_key),
            account: cached(&account_key),
            ..Default::default()
        };
        let uncached: Vec<Item> = [
            (&webhook_key, context.webhook.is_some()),
            (&account_key, context.account.is_some()),
        ]
        .into_iter()
        .filter(|(_, found)| !found)
        .map(|(key, _)| key.clone())
        .collect();
        let (eventual, consistent) = tokio::join!(
            self.batch_get_with(vec![delivery_key.clone(), event_key.clone()], false, None),
            async {
                if uncached.is_empty() {
                    Ok(Vec::new())
                } else {
                    self.batch_get_with(uncached, true, None).await
                }
            }
        );
        context.fill(eventual?)?;
        context.fill(self.cached_context(consistent?))?;
        // Cached now: the jobs waiting on these keys read them there.
        drop(fills);
        let mut unsettled = Vec::new();
        if !context
            .delivery
            .as_ref()
            .is_some_and(|d| settled_by_eventual_read(d, job))
        {
            // What the consistent read finds replaces the eventual copy, found or not.
            context.delivery = None;
            unsettled.push(delivery_key);
        }
        if context.event.is_none() {
            unsettled.push(event_key);
        }
        if !unsettled.is_empty() {
            let items = self.batch_get_with(unsettled, true, None).await?;
            context.fill(items)?;
        }
        let ContextItems {
            delivery,
            event,
            webhook,
            account,
        } = context;
        Ok(delivery
            .filter(|d| d.event_id == job.event_id && d.webhook_id == job.webhook_id)
            .map(|delivery| -> PortResult<DeliveryContext> {
                Ok(DeliveryContext {
                    delivery,
                    event: event.map(from_item).transpose()?,
                    webhook: webhook.map(from_item).transpose()?,
                    account: account.map(from_item).transpose()?,
                })
            })
            .transpose()?)
    }

    async fn record_attempt(
        &self,
        delivery: &Delivery,
        record: &AttemptRecord,
    ) -> PortResult<bool> {
        if record.deactivates_webhook {
            self.forget_cached(webhook_key(&delivery.account_id, &delivery.webhook_id));
        }
        counters::record_attempts(self, &[(delivery, record)])
            .await
            .remove(0)
    }

    async fn record_attempts(&self, batch: &[(Delivery, AttemptRecord)]) -> Vec<PortResult<bool>> {
        // A 410 deactivates the webhook: the next delivery here must see it.
        for (delivery, record) in batch {
            if record.deactivates_webhook {
                self.forget_cached(webhook_key(&delivery.account_id, &delivery.webhook_id));
            }
        }
        let batch: Vec<(&Delivery, &AttemptRecord)> = batch.iter().map(|(d, r)| (d, r)).collect();
        counters::record_attempts(self, &batch).await
    }

    async fn requeue_delivery(
        &self,
        delivery: &Delivery,
        sweep_at: DateTime<Utc>,
    ) -> PortResult<bool> {
        counters::requeue_delivery(self, delivery, sweep_at).await
    }

    async fn list_deliveries(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
    ) -> PortResult<DeliveryPage> {
        logs::list_deliveries(self, account_id, query).await
    }

    async fn first_deliveries(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
    ) -> PortResult<Vec<Delivery>> {
        logs::first_deliveries(self, account_id, query).await
    }

    async fn status_counts(&self, account_id: &str) -> PortResult<StatusCounts> {
        counters::status_counts(self, account_id).await
    }

    async fn get_delivery(
        &self,
        account_id: &str,
        delivery_id: &str,
    ) -> PortResult<Option<Delivery>> {
        let Some(mut delivery) = self
            .get_as::<Delivery>(self.delivery_key(account_id, delivery_id))
            .await?
        else {
            return Ok(None);
        };
        attempt_bodies::attach(self, &mut delivery).await?;
        Ok(Some(delivery))
    }

    async fn walk_deliveries(
        &self,
        account_id: &str,
        query: &DeliveryQuery,
        cursor: Option<&str>,
        limit: u32,
    ) -> PortResult<Walk<Delivery>> {
        jobs::walk_deliveries(self, account_id, query, cursor, limit).await
    }

    async fn walk_events(
        &self,
        account_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cursor: Option<&str>,
        limit: u32,
    ) -> PortResult<Walk<Event>> {
        jobs::walk_events(self, account_id, from, to, cursor, limit).await
    }
}
