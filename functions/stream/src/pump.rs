//! Reads a table's stream on an emulator and hands its records to [`crate::handle`] in batches,
//! as Lambda's event source mapping does (moto keeps the stream but fires no trigger), with the
//! template's filters (deliveries, and inserted events). The records go through the same JSON as a real
//! invocation's event (`infra/events/dynamodb-stream.json`).

use aws_lambda_events::event::dynamodb::Event;
use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
use hookline_aws::DynamoStore;
use hookline_service::Queue;
use lambda_runtime::{Context, Error, LambdaEvent};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};

pub struct StreamPump {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    /// Per shard, the sequence number of the last record handed over: each pump starts right
    /// after it, as the event source mapping's checkpoint does. (A kept iterator would do on
    /// DynamoDB, but moto's stop seeing new records after a cancelled transaction.)
    checkpoints: HashMap<String, String>,
    /// Batches read but not handled yet: a batch the function failed stays first, to be
    /// handed over again as it was (the template retries a batch without limit, unsplit).
    pending: VecDeque<Event>,
}

fn attribute(value: &AttributeValue) -> Value {
    use base64::Engine as _;
    let b64 = |b: &aws_smithy_types::Blob| {
        Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
    };
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(_) => json!({ "NULL": true }),
        AttributeValue::B(b) => json!({ "B": b64(b) }),
        AttributeValue::Ss(v) => json!({ "SS": v }),
        AttributeValue::Ns(v) => json!({ "NS": v }),
        AttributeValue::Bs(v) => json!({ "BS": v.iter().map(b64).collect::<Vec<_>>() }),
        AttributeValue::L(v) => json!({ "L": v.iter().map(attribute).collect::<Vec<_>>() }),
        AttributeValue::M(m) => json!({ "M": image(m) }),
        _ => Value::Null,
    }
}

fn image(item: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), attribute(v)))
            .collect::<Map<_, _>>(),
    )
}

impl StreamPump {
    /// The pump of `table`'s stream, from its oldest record.
    pub async fn new(
        config: &aws_config::SdkConfig,
        dynamodb: &aws_sdk_dynamodb::Client,
        table: &str,
    ) -> Self {
        let stream_arn = dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .expect("DescribeTable")
            .table
            .and_then(|t| t.latest_stream_arn)
            .expect("the table has a stream");
        Self {
            client: aws_sdk_dynamodbstreams::Client::new(config),
            stream_arn,
            checkpoints: HashMap::new(),
            pending: VecDeque::new(),
        }
    }

    /// Every record not read yet, as Lambda events of at most `batch` records each.
    pub async fn next_events(&mut self, batch: usize) -> Vec<Event> {
        let shards = self
            .client
            .describe_stream()
            .stream_arn(&self.stream_arn)
            .send()
            .await
            .expect("DescribeStream")
            .stream_description
            .map(|d| d.shards.unwrap_or_default())
            .unwrap_or_default();
        let mut records = Vec::new();
        for shard in shards {
            let Some(shard_id) = shard.shard_id else {
                continue;
            };
            let request = self
                .client
                .get_shard_iterator()
                .stream_arn(&self.stream_arn)
                .shard_id(&shard_id);
            let request = match self.checkpoints.get(&shard_id) {
                Some(sequence) => request
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .sequence_number(sequence),
                None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            };
            let mut iterator = request
                .send()
                .await
                .expect("GetShardIterator")
                .shard_iterator
                .expect("a shard iterator");
            loop {
                let out = self
                    .client
                    .get_records()
                    .shard_iterator(&iterator)
                    .send()
                    .await
                    .expect("GetRecords");
                let got = out.records.unwrap_or_default();
                let empty = got.is_empty();
                for record in got {
                    let Some(change) = record.dynamodb else {
                        continue;
                    };
                    if let Some(sequence) = &change.sequence_number {
                        self.checkpoints.insert(shard_id.clone(), sequence.clone());
                    }
                    // The event source mapping's filters (template.yaml): deliveries, and
                    // inserted events.
                    let kind = change
                        .new_image
                        .as_ref()
                        .and_then(|i| i.get("kind"))
                        .and_then(|k| k.as_s().ok())
                        .map(String::as_str);
                    let inserted = record.event_name.as_ref().map(|n| n.as_str()) == Some("INSERT");
                    if !(kind == Some("delivery") || (kind == Some("event") && inserted)) {
                        continue;
                    }
                    let mut dynamodb = json!({
                        "ApproximateCreationDateTime": change
                            .approximate_creation_date_time
                            .map_or(0.0, |t| t.as_secs_f64()),
                        "Keys": change.keys.as_ref().map_or(json!({}), image),
                        "SequenceNumber": change.sequence_number,
                        "SizeBytes": change.size_bytes.unwrap_or(0),
                        "StreamViewType": "NEW_AND_OLD_IMAGES",
                    });
                    if let Some(new) = &change.new_image {
                        dynamodb["NewImage"] = image(new);
                    }
                    if let Some(old) = &change.old_image {
                        dynamodb["OldImage"] = image(old);
                    }
                    records.push(json!({
                        "awsRegion": "us-east-1",
                        "eventID": record.event_id,
                        "eventName": record.event_name.map(|n| n.as_str().to_string()),
                        "eventSource": "aws:dynamodb",
                        "eventVersion": "1.1",
                        "eventSourceARN": self.stream_arn,
                        "dynamodb": dynamodb,
                    }));
                }
                match out.next_shard_iterator {
                    Some(next) => iterator = next,
                    None => break,
                }
                if empty {
                    break;
                }
            }
        }
        records
            .chunks(batch.max(1))
            .map(|chunk| {
                serde_json::from_value(json!({ "Records": chunk })).expect("a stream event")
            })
            .collect()
    }

    /// Hands every record not read yet to the stream function, `batch` at a time, after any
    /// batch it failed before; returns the number of invocations. An error leaves the failed
    /// batch first in line, as Lambda's retry would.
    /// `queue` as the stream function's (where it queues inserted deliveries, if it does).
    pub async fn pump(
        &mut self,
        store: &DynamoStore,
        queue: Option<&dyn Queue>,
        batch: usize,
    ) -> Result<u64, Error> {
        let mut invocations = 0;
        let mut read_new = false;
        loop {
            if self.pending.is_empty() {
                if read_new {
                    return Ok(invocations);
                }
                self.pending = self.next_events(batch).await.into();
                read_new = true;
            }
            let Some(event) = self.pending.front() else {
                return Ok(invocations);
            };
            invocations += 1;
            crate::handle(
                store,
                queue,
                LambdaEvent::new(event.clone(), Context::default()),
            )
            .await?;
            self.pending.pop_front();
        }
    }
}
