//! The single table's layout, and creating it where no stack does (local mode, tests).
//!
//! | item | pk | sk |
//! |---|---|---|
//! | account | `ACCT#<id>` | `ACCOUNT` |
//! | API key | `KEY#<sha256>` | `KEY` |
//! | webhook | `ACCT#<account>` | `WH#<id>` |
//! | event | `LOG#<account>#<shard of the event id>` | `EVT#<id>` |
//! | delivery | `LOG#<account>#<shard of its id>` | `DLV#<id>` (ULID: time-ordered) |
//! | API key reference (lists an account's keys) | `ACCT#<account>` | `KEY#<key id>` |
//! | a failed attempt's answer over 256 bytes (`store::attempt_bodies`) | `BODY#<delivery>` | `AT#<epoch ms>` |
//! | status counters of one day and shard (counted in the transaction) | `ACCT#<account>` | `COUNT#<yyyymmdd>#<shard>` |
//! | status counters of one day folded from the stream, over [`COUNTER_PKS`] keys | `CNT#<account>#<nn>` | `COUNT#<yyyymmdd>` |
//! | a folded stream batch (`store::fold`) | `FOLD#<batch>#<part>` | `FOLD` |
//! | account list entry | `ACCOUNTS` | `ACCT#<id>` |
//! | number of accounts | `ACCOUNTS` | `COUNT` |
//! | registered event type | `EVENT_TYPES` | `TYPE#<name>` |
//! | the table's layout: its log shards ([`log_shards_of`]) | `LAYOUT` | `LAYOUT` |
//!
//! An account's events and deliveries are spread over [`LOG_SHARDS`] partition keys (in a table
//! laid out by this version; the table records its own count) by a hash
//! of their id: DynamoDB cannot split one key whose writes all land at the end of its range, so
//! one key per account would cap an account near 1,000 write units a second. A log query reads
//! every shard of the account and merges them, newest first.
//!
//! Sparse GSIs, keys only (set once, or moved only on the failure path):
//! - `due` (`dueShard`, `dueAt` epoch ms): every unfinished event fan-out and delivery, what the
//!   sweep reads;
//! - `byWebhook` (`whKey` = `<account>#<webhook>#<shard>`, `sk`): one webhook's deliveries;
//! - `byStatus` (`statusKey` = `<account>#<status>#<shard>`, `sk`): the deliveries `retrying`
//!   or `failed` (few, and read often: the portal's failures). Other filters (event type,
//!   last-attempt time, `pending` or `delivered`) are applied to what the key reads.
//!
//! `expiresAt` (epoch s) is the TTL of events, deliveries and counters.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use hookline_service::PortError;

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const KIND: &str = "kind";
pub const DUE_INDEX: &str = "due";
pub const DUE_SHARD: &str = "dueShard";
pub const DUE_AT: &str = "dueAt";
pub const EXPIRES_AT: &str = "expiresAt";
pub const BY_WEBHOOK: &str = "byWebhook";
pub const BY_STATUS: &str = "byStatus";
pub const WEBHOOK_KEY: &str = "whKey";
pub const STATUS_KEY: &str = "statusKey";
/// The log GSIs: name and hash key (the range key is `sk`).
pub const LOG_INDEXES: [(&str, &str); 2] = [(BY_WEBHOOK, WEBHOOK_KEY), (BY_STATUS, STATUS_KEY)];
/// Indexes of an older layout: a table that has them holds data this version cannot read.
const OLD_INDEXES: [&str; 2] = ["byType", "byLastAttempt"];
/// Spreads the due index over partitions by a hash of the item's id; the sweep reads them all
/// (concurrently). Retries, manual retries and unfinished fan-outs are in it: at 10,000
/// deliveries a second to a webhook failing every attempt (each retry's due time set by its
/// attempt and moved by the sweep: 12 index write units a delivery), 64 keys took about 1,900
/// write units a second each; 256 take about 470. An item keeps the shard it was given, so
/// raising this needs no migration: the sweep reads every shard below it.
pub const DUE_SHARDS: u32 = 256;
/// Partition keys per account for its events and deliveries (and per webhook or status in
/// the log indexes), in a table laid out by this version. At 10,000 deliveries a second for
/// one account, each key takes about 40 deliveries a second: about 200 write units at the
/// benchmark's 5 per delivery, and about 470 when the webhook fails every attempt (12 per
/// delivery in its first hour), under half of the 1,000 a partition key takes. 128 keys took
/// 391 and 938.
pub const LOG_SHARDS: u32 = 256;
/// The log shards of a table that held accounts before it recorded its layout (every item's
/// key was computed with 128).
pub const LOG_SHARDS_BEFORE_LAYOUT: u32 = 128;
/// The account list's partition key (`ACCT#<id>` entries and `COUNT`).
pub const ACCOUNTS_PK: &str = "ACCOUNTS";
/// The table's layout item (`pk` = `sk` = `LAYOUT`): its log shards (`logShards`).
pub const LAYOUT_KEY: &str = "LAYOUT";
const LOG_SHARDS_ATTRIBUTE: &str = "logShards";

pub fn account_pk(account_id: &str) -> String {
    format!("ACCT#{account_id}")
}

/// Partition keys per account for the counters folded from the stream. Every stream batch adds
/// to its account's counter of the day: on one key, an account's batches from every stream shard
/// would all land on one partition (the benchmark's small batches put 1,600 write units a second
/// there at the failing load). A batch picks its key by a hash of its name.
pub const COUNTER_PKS: u32 = 16;

/// The partition key of one of an account's folded counters (`store::fold`).
pub fn counter_pk(account_id: &str, batch_id: &str) -> String {
    format!("CNT#{account_id}#{:02}", id_hash(batch_id) % COUNTER_PKS)
}

/// A stable hash of an id, the same on every platform and release.
fn id_hash(id: &str) -> u32 {
    id.bytes()
        .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619))
}

/// The log shard of an event or delivery id in a table of `shards` log shards.
pub fn log_shard(id: &str, shards: u32) -> u32 {
    id_hash(id) % shards
}

/// The table's log shards, as recorded in its layout item. The first function to start on a
/// table records them: [`LOG_SHARDS`] when the table has no account yet, else
/// [`LOG_SHARDS_BEFORE_LAYOUT`] (the items were written with that). Every function keeps what
/// is recorded, so a later change of [`LOG_SHARDS`] moves no item of an existing table. One
/// consistent read per cold start; the first start also makes a Query and a conditional put.
pub async fn log_shards_of(client: &Client, table: &str) -> Result<u32, PortError> {
    if let Some(shards) = recorded_log_shards(client, table).await? {
        return Ok(shards);
    }
    let accounts = client
        .query()
        .table_name(table)
        .key_condition_expression("#pk = :pk AND begins_with(#sk, :account)")
        .expression_attribute_names("#pk", PK)
        .expression_attribute_names("#sk", SK)
        .expression_attribute_values(":pk", AttributeValue::S(ACCOUNTS_PK.into()))
        .expression_attribute_values(":account", AttributeValue::S("ACCT#".into()))
        .consistent_read(true)
        .limit(1)
        .send()
        .await
        .map_err(|e| PortError::new("Query (accounts, for the layout)", DisplayErrorContext(e)))?;
    let shards = if accounts.count > 0 {
        LOG_SHARDS_BEFORE_LAYOUT
    } else {
        LOG_SHARDS
    };
    let recorded = client
        .put_item()
        .table_name(table)
        .item(PK, AttributeValue::S(LAYOUT_KEY.into()))
        .item(SK, AttributeValue::S(LAYOUT_KEY.into()))
        .item(KIND, AttributeValue::S("layout".into()))
        .item(LOG_SHARDS_ATTRIBUTE, AttributeValue::N(shards.to_string()))
        .condition_expression("attribute_not_exists(#pk)")
        .expression_attribute_names("#pk", PK)
        .send()
        .await;
    match recorded {
        Ok(_) => {
            tracing::info!(log_shards = shards, "recorded the table's layout");
            Ok(shards)
        }
        // Another function recorded it first: its answer holds.
        Err(error) if crate::store::is_conditional_failure(&error) => {
            recorded_log_shards(client, table)
                .await?
                .ok_or_else(|| PortError("the table's layout item vanished".into()))
        }
        Err(error) => Err(PortError::new(
            "PutItem (the table's layout)",
            DisplayErrorContext(error),
        )),
    }
}

async fn recorded_log_shards(client: &Client, table: &str) -> Result<Option<u32>, PortError> {
    let item = client
        .get_item()
        .table_name(table)
        .key(PK, AttributeValue::S(LAYOUT_KEY.into()))
        .key(SK, AttributeValue::S(LAYOUT_KEY.into()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| PortError::new("GetItem (the table's layout)", DisplayErrorContext(e)))?
        .item;
    let Some(item) = item else {
        return Ok(None);
    };
    match item.get(LOG_SHARDS_ATTRIBUTE) {
        Some(AttributeValue::N(n)) => n
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| PortError(format!("the table's layout has logShards '{n}'"))),
        _ => Err(PortError("the table's layout item has no logShards".into())),
    }
}

/// How many partition keys share the writes of keys shaped like `key`: the shard count of a
/// sharded key (`LOG#..#NNN`, an index key `..#NNN`, `DUE#N`), else 1. The benchmark's heat
/// model spreads a shape's writes over them, as the hash does at production volume.
pub fn shards_of(key: &str) -> u32 {
    if key.starts_with("DUE#") {
        return DUE_SHARDS;
    }
    if key.starts_with("CNT#") {
        return COUNTER_PKS;
    }
    let sharded = key
        .rsplit_once('#')
        .is_some_and(|(_, shard)| shard.len() == 3 && shard.bytes().all(|b| b.is_ascii_digit()));
    if sharded { LOG_SHARDS } else { 1 }
}

/// The partition key of an account's events and deliveries in one shard.
pub fn log_pk(account_id: &str, shard: u32) -> String {
    format!("LOG#{account_id}#{shard:03}")
}

/// The hash key of a delivery in a log index: its account, the indexed value (a webhook id
/// or a status) and the delivery's shard, so an index partition never mixes accounts and no
/// webhook or status is one hot key.
pub fn log_index_key(account_id: &str, value: &str, shard: u32) -> String {
    format!("{account_id}#{value}#{shard:03}")
}

/// Creates the table (and its TTL) if it is missing. Lambda gets it from `template.yaml`.
pub async fn ensure_table(client: &Client, name: &str) -> Result<(), PortError> {
    ensure_table_with(client, name, false).await
}

/// [`ensure_table`], with a stream of new and old images when `stream` (what the Lambda
/// stack's counters are folded from: `Counting::FromStream`).
pub async fn ensure_table_with(client: &Client, name: &str, stream: bool) -> Result<(), PortError> {
    if let Ok(existing) = client.describe_table().table_name(name).send().await {
        // Data from before an index existed is not migrated (pre-release): say so plainly
        // instead of failing on the first query that needs it.
        let indexes: Vec<&str> = existing
            .table()
            .map(|t| t.global_secondary_indexes())
            .unwrap_or_default()
            .iter()
            .filter_map(|i| i.index_name())
            .collect();
        let missing: Vec<&str> = std::iter::once(DUE_INDEX)
            .chain(LOG_INDEXES.iter().map(|(index, ..)| *index))
            .filter(|index| !indexes.contains(index))
            .chain(
                OLD_INDEXES
                    .into_iter()
                    .filter(|index| indexes.contains(index)),
            )
            .collect();
        if !missing.is_empty() {
            return Err(PortError(format!(
                "table '{name}' has the layout of an older Hookline (indexes {missing:?} missing \
                 or left over); start with a new data directory"
            )));
        }
        return Ok(());
    }
    let err = |e| PortError::new("creating the table", e);
    let key = |n: &str, t| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .map_err(err)
    };
    let attr = |n: &str, t| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(t)
            .build()
            .map_err(err)
    };
    let mut log_indexes = Vec::new();
    for (index, hash) in LOG_INDEXES {
        log_indexes.push(
            GlobalSecondaryIndex::builder()
                .index_name(index)
                .key_schema(key(hash, KeyType::Hash)?)
                .key_schema(key(SK, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::KeysOnly)
                        .build(),
                )
                .build()
                .map_err(err)?,
        );
    }
    let created = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .attribute_definitions(attr(PK, ScalarAttributeType::S)?)
        .attribute_definitions(attr(SK, ScalarAttributeType::S)?)
        .attribute_definitions(attr(DUE_SHARD, ScalarAttributeType::S)?)
        .attribute_definitions(attr(DUE_AT, ScalarAttributeType::N)?)
        .attribute_definitions(attr(WEBHOOK_KEY, ScalarAttributeType::S)?)
        .attribute_definitions(attr(STATUS_KEY, ScalarAttributeType::S)?)
        .set_global_secondary_indexes(Some(log_indexes))
        .set_stream_specification(stream.then(|| {
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .expect("a stream specification")
        }))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(DUE_INDEX)
                .key_schema(key(DUE_SHARD, KeyType::Hash)?)
                .key_schema(key(DUE_AT, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::Include)
                        .set_non_key_attributes(Some(
                            [
                                KIND,
                                "id",
                                "accountId",
                                "eventId",
                                "webhookId",
                                "nextAttemptAt",
                            ]
                            .map(String::from)
                            .to_vec(),
                        ))
                        .build(),
                )
                .build()
                .map_err(err)?,
        )
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            return Ok(());
        }
        Err(e) => {
            return Err(PortError::new(
                "creating the table",
                aws_sdk_dynamodb::error::DisplayErrorContext(e),
            ));
        }
    }
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(EXPIRES_AT)
                .enabled(true)
                .build()
                .map_err(err)?,
        )
        .send()
        .await
        .map_err(|e| {
            PortError::new(
                "enabling TTL",
                aws_sdk_dynamodb::error::DisplayErrorContext(e),
            )
        })?;
    Ok(())
}
