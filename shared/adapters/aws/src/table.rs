//! The single table's layout, and creating it where no stack does (local mode, tests).
//!
//! | item | pk | sk |
//! |---|---|---|
//! | account | `ACCT#<id>` | `ACCOUNT` |
//! | API key | `KEY#<sha256>` | `KEY` |
//! | webhook | `ACCT#<account>` | `WH#<id>` |
//! | event | `ACCT#<account>` | `EVT#<id>` |
//! | delivery | `ACCT#<account>` | `DLV#<id>` (ULID: time-ordered) |
//! | API key reference (lists an account's keys) | `ACCT#<account>` | `KEY#<key id>` |
//! | status counters of one day and shard | `ACCT#<account>` | `COUNT#<yyyymmdd>#<shard>` |
//! | account list entry | `ACCOUNTS` | `ACCT#<id>` |
//! | number of accounts | `ACCOUNTS` | `COUNT` |
//! | registered event type | `EVENT_TYPES` | `TYPE#<name>` |
//!
//! Sparse GSIs (only deliveries carry their keys, and only unfinished work carries `dueShard`):
//! - `due` (`dueShard`, `dueAt` epoch ms): every unfinished event fan-out and delivery, what the
//!   sweep reads;
//! - `byWebhook` (`whKey` = `<account>#<webhook>`, `sk`), `byType` (`typeKey`, `sk`) and
//!   `byStatus` (`statusKey`, `sk`): the log filters, newest first;
//! - `byLastAttempt` (`pk`, `lastAttemptMs`): the log's last-retry time filters.
//!
//! `expiresAt` (epoch s) is the TTL of events, deliveries and counters.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
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
pub const BY_TYPE: &str = "byType";
pub const BY_STATUS: &str = "byStatus";
pub const BY_LAST_ATTEMPT: &str = "byLastAttempt";
pub const WEBHOOK_KEY: &str = "whKey";
pub const TYPE_KEY: &str = "typeKey";
pub const STATUS_KEY: &str = "statusKey";
pub const LAST_ATTEMPT_MS: &str = "lastAttemptMs";
/// What the log indexes carry besides keys: enough to filter on.
pub const LOG_INDEX_ATTRIBUTES: [&str; 4] = ["webhookId", "eventType", "status", LAST_ATTEMPT_MS];
/// The log GSIs: name, hash key, range key (and whether the range key is a number).
pub const LOG_INDEXES: [(&str, &str, &str, bool); 4] = [
    (BY_WEBHOOK, WEBHOOK_KEY, SK, false),
    (BY_TYPE, TYPE_KEY, SK, false),
    (BY_STATUS, STATUS_KEY, SK, false),
    (BY_LAST_ATTEMPT, PK, LAST_ATTEMPT_MS, true),
];
/// Spreads the due index over a few partitions; the sweep reads them all.
pub const DUE_SHARDS: u32 = 4;

pub fn account_pk(account_id: &str) -> String {
    format!("ACCT#{account_id}")
}

/// The hash key of a delivery in a log index: its account and the indexed value (a webhook
/// id, an event type or a status), so an index partition never mixes accounts.
pub fn log_index_key(account_id: &str, value: &str) -> String {
    format!("{account_id}#{value}")
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
            .collect();
        if !missing.is_empty() {
            return Err(PortError(format!(
                "table '{name}' lacks the indexes {missing:?}: it was made by an older Hookline; \
                 start with a new data directory"
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
    for (index, hash, range, _) in LOG_INDEXES {
        log_indexes.push(
            GlobalSecondaryIndex::builder()
                .index_name(index)
                .key_schema(key(hash, KeyType::Hash)?)
                .key_schema(key(range, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::Include)
                        .set_non_key_attributes(Some(
                            LOG_INDEX_ATTRIBUTES.map(String::from).to_vec(),
                        ))
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
        .attribute_definitions(attr(TYPE_KEY, ScalarAttributeType::S)?)
        .attribute_definitions(attr(STATUS_KEY, ScalarAttributeType::S)?)
        .attribute_definitions(attr(LAST_ATTEMPT_MS, ScalarAttributeType::N)?)
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
