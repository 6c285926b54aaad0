//! The stream function: a batch of the table's stream records in, the delivery status changes
//! among them added to the status counters once (`DynamoStore::fold_counters`), and, when it
//! queues the fan-out (`HOOKLINE_FAN_OUT_QUEUE=stream`), the job of every inserted delivery
//! sent to the delivery queue. An event that publish stored with its planned fan-out has the
//! deliveries that publish did not get to stored here (`DynamoStore::complete_planned_fan_outs`;
//! their own inserts come through a later batch and are queued then). An error fails the whole batch, and Lambda retries it as it was
//! (the template sets no bisecting), which the fold recognises by the batch's name; a job
//! queued again by a retry is a duplicate the deliver function skips or re-sends (at least
//! once).

use aws_lambda_events::event::dynamodb::Event;
use hookline_aws::DynamoStore;
use hookline_aws::store::{counter_change, inserted_delivery_job, inserted_planned_fan_out};
use hookline_service::Queue;
use lambda_runtime::{Error, LambdaEvent};
use sha2::{Digest, Sha256};

#[cfg(feature = "pump")]
pub mod pump;

/// What a batch changed: how many records it had and how many status changes it counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Folded {
    pub records: usize,
    pub changes: usize,
    /// Jobs of inserted deliveries sent to the queue.
    pub queued: usize,
    /// Deliveries of planned fan-outs that publish had not stored, stored here.
    pub completed: usize,
}

/// `queue` is where inserted deliveries' jobs go, when this function queues the fan-out.
pub async fn handle(
    store: &DynamoStore,
    queue: Option<&dyn Queue>,
    event: LambdaEvent<Event>,
) -> Result<Folded, Error> {
    let records = event.payload.records;
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Ok(Folded {
            records: 0,
            changes: 0,
            queued: 0,
            completed: 0,
        });
    };
    // The same batch, retried, has the same name.
    let digest = Sha256::new()
        .chain_update(first.event_id.as_bytes())
        .chain_update([0])
        .chain_update(last.event_id.as_bytes())
        .chain_update(records.len().to_le_bytes())
        .finalize();
    let batch_id = hex::encode(&digest[..16]);
    let count = records.len();
    let jobs: Vec<_> = match queue {
        Some(_) => records
            .iter()
            .filter_map(|r| {
                inserted_delivery_job(
                    Some(r.change.old_image.clone()),
                    Some(r.change.new_image.clone()),
                )
            })
            .collect(),
        None => Vec::new(),
    };
    let planned: Vec<_> = records
        .iter()
        .filter_map(|r| {
            inserted_planned_fan_out(
                Some(r.change.old_image.clone()),
                Some(r.change.new_image.clone()),
            )
        })
        .collect();
    // First: a failure here fails the batch before anything else of it is done.
    let completed = store.complete_planned_fan_outs(&planned).await?;
    let changes: Vec<_> = records
        .into_iter()
        .filter_map(|r| counter_change(Some(r.change.old_image), Some(r.change.new_image)))
        .collect();
    store.fold_counters(&batch_id, &changes).await?;
    if let Some(queue) = queue {
        queue.enqueue(&jobs).await?;
    }
    Ok(Folded {
        records: count,
        changes: changes.len(),
        queued: jobs.len(),
        completed,
    })
}
