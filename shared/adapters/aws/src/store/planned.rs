//! A small fan-out stored without a transaction, its plan on the event (issue 12).
//!
//! With the counters and the fan-out queue on the table's stream, the publish transaction of
//! an event and its deliveries was only there so that no event is stored without them, and a
//! transaction bills every item twice (one webhook: 4 write units for two 1 KB items). Instead,
//! publish puts the event with the webhooks it fans out to (`plannedWebhooks`), then each
//! delivery with a plain conditional put: 2 write units. Should publish die between the two,
//! the stream function sees the event inserted, reads which of its planned deliveries exist
//! (one eventually consistent read each, the only cost on the way where nothing failed) and
//! stores those missing; it is retried on the batch until it has, as it is for queueing. A
//! delivery's id derives from its event and webhook, so the two writers cannot store one twice.

use super::*;

/// The webhooks an event fans out to, on its item: what the stream completes.
pub(super) const PLANNED: &str = "plannedWebhooks";

/// The largest fan-out stored as planned: its plan (about 30 bytes a webhook) keeps the
/// event's item near its own size. A larger one is stored as due, then finished.
pub(super) const MAX_PLANNED_FAN_OUT: usize = 10;

/// An event as its stream record shows it inserted, with its planned webhooks.
#[derive(Debug, Clone)]
pub struct PlannedFanOut {
    pub event: Event,
    pub webhook_ids: Vec<String>,
}

/// The planned fan-out of an event that a stream record shows inserted; `None` for any other
/// record (an event of a large fan-out, which the sweep finishes, has no plan).
pub fn inserted_planned_fan_out<I: Into<serde_dynamo::Item>>(
    old: Option<I>,
    new: Option<I>,
) -> Option<PlannedFanOut> {
    if old.map(Into::into).is_some_and(|i| !i.is_empty()) {
        return None;
    }
    let new: serde_dynamo::Item = new?.into();
    #[derive(serde::Deserialize)]
    struct Plan {
        kind: String,
        #[serde(rename = "plannedWebhooks")]
        webhook_ids: Vec<String>,
    }
    let plan: Plan = serde_dynamo::from_item(new.clone()).ok()?;
    if plan.kind != KIND_EVENT || plan.webhook_ids.is_empty() {
        return None;
    }
    let event: Event = serde_dynamo::from_item(new).ok()?;
    Some(PlannedFanOut {
        event,
        webhook_ids: plan.webhook_ids,
    })
}

impl DynamoStore {
    /// Whether a small fan-out is stored as planned here: only when the stream function both
    /// folds the counters and queues new deliveries, since it is what completes the plan.
    pub(super) fn plans_fan_outs(&self) -> bool {
        self.counting == Counting::FromStream && self.fan_out_queue == FanOutQueue::Stream
    }

    /// The event, fanned out and carrying its plan, with one conditional put; then its
    /// deliveries, one conditional put each. The existing event when one has that id.
    pub(super) async fn insert_planned(
        &self,
        event: &Event,
        deliveries: &[Delivery],
        sweep_at: DateTime<Utc>,
    ) -> PortResult<Option<Event>> {
        let mut item = self.fanned_out_event_item(event, deliveries.len())?;
        if !deliveries.is_empty() {
            item.insert(
                PLANNED.into(),
                AttributeValue::L(deliveries.iter().map(|d| s(&d.webhook_id)).collect()),
            );
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => {}
            // Its deliveries are stored already, or the stream stores them.
            Err(e) if is_conditional_failure(&e) => {
                return self
                    .existing_event(event, "the event was there and is gone")
                    .await
                    .map(Some);
            }
            Err(e) => return Err(sdk("PutItem")(e)),
        }
        // Not due: the stream queues each one it sees inserted.
        counters::insert_one_by_one(self, deliveries, sweep_at).await?;
        Ok(None)
    }

    /// Stores the planned deliveries of `planned` events that are not stored yet (a publish
    /// died after its event's put): how many it stored. Their inserts reach the stream, which
    /// queues them. A planned webhook deleted since is skipped: its deliveries went with it.
    pub async fn complete_planned_fan_outs(&self, planned: &[PlannedFanOut]) -> PortResult<usize> {
        let wanted: Vec<(&Event, &String, String)> = planned
            .iter()
            .flat_map(|p| {
                p.webhook_ids.iter().map(|webhook_id| {
                    let id = hookline_model::ids::delivery_id(
                        &p.event.id,
                        webhook_id,
                        p.event.created_at,
                    );
                    (&p.event, webhook_id, id)
                })
            })
            .collect();
        if wanted.is_empty() {
            return Ok(0);
        }
        let keys = wanted
            .iter()
            .map(|(event, _, id)| self.delivery_key(&event.account_id, id))
            .collect();
        // Eventually consistent (half the price): the stream is a second or more behind the
        // puts, and one it misses is refused by the put's condition below.
        let stored = self.stored_delivery_ids(keys, false).await?;
        let mut missing = Vec::new();
        for (event, webhook_id, id) in wanted {
            if stored.contains(&id) {
                continue;
            }
            if let Some(webhook) = self.get_webhook(&event.account_id, webhook_id).await? {
                missing.push(Delivery::pending(event, &webhook));
            }
        }
        // Never due (the stream queues what it sees inserted): the time is unused.
        let new = counters::insert_one_by_one(self, &missing, Utc::now()).await?;
        Ok(new.into_iter().filter(|new| *new).count())
    }
}
