//! dynoxide-rs on SQLite under the data directory, reached in-process: the DynamoDB SDK client
//! gets an HTTP client of its own that hands each request to the `dynoxide::Database` on a
//! blocking thread, so the store opens no network listener (any local user could have talked to
//! one). The data directory is kept `0700` and its files `0600`. An hourly TTL sweep deletes
//! expired items.

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use dynoxide::{Database, DynoxideError};
use std::path::Path;
use std::time::Duration;

/// How often expired items (delivery logs past retention, kept for days) are deleted. A sweep
/// reads the whole table, 25 rows per hold of the store's lock, so while it runs every other
/// request waits longer (docs/BENCHMARKS.md): hourly, the first a few minutes after start.
const TTL_SWEEP_EVERY: Duration = Duration::from_secs(3600);
const FIRST_TTL_SWEEP_AFTER: Duration = Duration::from_secs(300);

/// The SDK needs an endpoint to sign for; nothing ever connects to it (`.invalid` cannot
/// resolve, RFC 6761), every request goes to the in-process client.
const IN_PROCESS_ENDPOINT: &str = "http://hookline-store.invalid";

pub struct EmbeddedDynamo {
    db: Database,
    sweeper: tokio::task::JoinHandle<()>,
}

impl EmbeddedDynamo {
    /// Opens (or creates) `<data_dir>/hookline.db`, makes the directory private, and starts the
    /// TTL sweep. Must be called inside a tokio runtime.
    pub fn start(data_dir: &Path) -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "the embedded store needs a tokio runtime".to_string())?;
        make_private(data_dir)?;
        let path = data_dir.join("hookline.db");
        create_private_file(&path)?;
        let db = Database::new(&path.to_string_lossy())
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        // synchronous=NORMAL (on WAL): a commit is durable once it is in the WAL, in the OS's
        // cache, so it survives the process dying (SIGKILL), though not a power cut. The
        // default (FULL) makes every write wait for an fsync, which caps local throughput.
        db.disable_bulk_loading()
            .map_err(|e| format!("configuring {}: {e}", path.display()))?;
        // SQLite gives the -wal and -shm files the database file's mode; this also fixes the
        // modes of files an older version left world-readable.
        make_private(data_dir)?;
        let sweeper = runtime.spawn(sweep_ttl_forever(db.clone()));
        Ok(Self { db, sweeper })
    }

    /// The SDK's HTTP client for this store: every request is answered in-process.
    pub fn http_client(&self) -> SharedHttpClient {
        SharedHttpClient::new(InProcessClient {
            connector: SharedHttpConnector::new(InProcessConnector {
                db: self.db.clone(),
            }),
        })
    }

    /// A DynamoDB client on this store (dummy credentials: there is nothing to authenticate
    /// to, and no endpoint anyone else can reach).
    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(IN_PROCESS_ENDPOINT)
            .credentials_provider(Credentials::new(
                "local",
                "local",
                None,
                None,
                "hookline-embedded",
            ))
            .http_client(self.http_client())
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }
}

impl Drop for EmbeddedDynamo {
    fn drop(&mut self) {
        self.sweeper.abort();
    }
}

async fn sweep_ttl_forever(db: Database) {
    let mut every = tokio::time::interval_at(
        tokio::time::Instant::now() + FIRST_TTL_SWEEP_AFTER,
        TTL_SWEEP_EVERY,
    );
    loop {
        every.tick().await;
        let db = db.clone();
        match tokio::task::spawn_blocking(move || db.sweep_ttl()).await {
            Ok(Ok(deleted)) if deleted > 0 => tracing::info!(deleted, "expired items removed"),
            Ok(Err(error)) => tracing::warn!(%error, "TTL sweep failed"),
            _ => {}
        }
    }
}

/// `dir` (created if missing) becomes `0700` and every file directly in it `0600`.
fn make_private(dir: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let set = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("setting the mode of {}: {e}", path.display()))
        };
        set(dir, 0o700)?;
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("reading {}: {e}", dir.display()))?;
            // Not followed: a symlink's target may be anyone's file.
            let kind = entry.file_type().map_err(|e| e.to_string())?;
            if kind.is_file() {
                set(&entry.path(), 0o600)?;
            }
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(())
}

/// Creates `path` empty with mode `0600` unless it exists (SQLite takes an empty file for a
/// new database), so the database is never readable by others, not even for an instant.
fn create_private_file(path: &Path) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map(drop)
        .map_err(|e| format!("creating {}: {e}", path.display()))
}

#[derive(Debug)]
struct InProcessClient {
    connector: SharedHttpConnector,
}

impl HttpClient for InProcessClient {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.connector.clone()
    }
}

#[derive(Clone)]
struct InProcessConnector {
    db: Database,
}

impl std::fmt::Debug for InProcessConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InProcessConnector")
    }
}

impl HttpConnector for InProcessConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let db = self.db.clone();
        HttpConnectorFuture::new(async move {
            let call = WireCall {
                method_is_post: request.method().eq_ignore_ascii_case("POST"),
                content_type: request.headers().get("content-type").map(str::to_owned),
                target: request.headers().get("x-amz-target").map(str::to_owned),
                body: request.body().bytes().map(<[u8]>::to_vec),
            };
            // Every Database call blocks on SQLite and the store's lock.
            let answer = tokio::task::spawn_blocking(move || answer(&db, call))
                .await
                .map_err(|e| ConnectorError::other(Box::new(e), None))?;
            answer.into_response()
        })
    }
}

/// What of an SDK request the store reads.
struct WireCall {
    method_is_post: bool,
    content_type: Option<String>,
    target: Option<String>,
    /// `None` for a streaming body, which DynamoDB's JSON protocol never sends.
    body: Option<Vec<u8>>,
}

/// A response as dynoxide's HTTP server would write it.
struct WireAnswer {
    status: u16,
    content_type: Option<&'static str>,
    body: String,
}

impl WireAnswer {
    fn into_response(self) -> Result<HttpResponse, ConnectorError> {
        let status = StatusCode::try_from(self.status)
            .map_err(|e| ConnectorError::other(Box::new(e), None))?;
        let length = self.body.len();
        let mut response = HttpResponse::new(status, SdkBody::from(self.body));
        if let Some(content_type) = self.content_type {
            response.headers_mut().insert("content-type", content_type);
        }
        response
            .headers_mut()
            .insert("content-length", length.to_string());
        response
            .headers_mut()
            .insert("x-amzn-requestid", ulid_like_request_id());
        Ok(response)
    }
}

const AMZ_JSON: &str = "application/x-amz-json-1.0";
const TARGET_PREFIX: &str = "DynamoDB_20120810.";
const STREAMS_TARGET_PREFIX: &str = "DynamoDBStreams_20120810.";
const NOT_FOUND_BODY: &str = "<UnknownOperationException/>\n";

/// Mirrors `dynoxide::server::handle_request` (dynoxide-rs 3.2.0, `src/server/mod.rs`): the same
/// checks in the same order, the same status codes and `__type` error bodies, minus the
/// request signature check (nothing outside this process can reach the store).
fn answer(db: &Database, call: WireCall) -> WireAnswer {
    if !call.method_is_post {
        return WireAnswer {
            status: 404,
            content_type: None,
            body: NOT_FOUND_BODY.into(),
        };
    }
    let Some(body) = call.body.map(String::from_utf8) else {
        return serialization_exception_bare(AMZ_JSON);
    };
    let Ok(body) = body else {
        // axum's `String` extractor refuses it before the handler runs.
        return WireAnswer {
            status: 400,
            content_type: Some("text/plain; charset=utf-8"),
            body: "request body didn't contain valid UTF-8".into(),
        };
    };
    let raw_content_type = call.content_type.unwrap_or_default();
    let base = raw_content_type.split(';').next().unwrap_or("").trim();
    let is_amz_json = base.eq_ignore_ascii_case(AMZ_JSON);
    if !is_amz_json
        && !base.eq_ignore_ascii_case("application/json")
        && (!body.is_empty() || !raw_content_type.is_empty())
    {
        return WireAnswer {
            status: 404,
            content_type: None,
            body: NOT_FOUND_BODY.into(),
        };
    }
    let content_type = if is_amz_json {
        AMZ_JSON
    } else {
        "application/json"
    };
    if !body.is_empty() && serde_json::from_str::<serde_json::Value>(&body).is_err() {
        return serialization_exception_bare(content_type);
    }
    let operation = call.target.as_deref().and_then(|target| {
        target
            .strip_prefix(TARGET_PREFIX)
            .or_else(|| target.strip_prefix(STREAMS_TARGET_PREFIX))
    });
    let Some(operation) = operation.filter(|op| OPERATIONS.contains(op)) else {
        return WireAnswer {
            status: 400,
            content_type: Some(content_type),
            body: r#"{"__type":"com.amazon.coral.service#UnknownOperationException"}"#.into(),
        };
    };
    if body.is_empty() {
        return serialization_exception_bare(content_type);
    }
    match dispatch(db, operation, &body) {
        Ok(json) => WireAnswer {
            status: 200,
            content_type: Some(content_type),
            body: json,
        },
        Err(error) => {
            // The in-process API envelopes PutItem/UpdateItem/DeleteItem validation itself;
            // a tag left from reading the request is reported bare, as the server does.
            let error = match error {
                DynoxideError::EnvelopedValidation(message) => {
                    DynoxideError::ValidationException(message)
                }
                other => other,
            };
            tracing::debug!(operation, status = error.status_code(), "store error");
            WireAnswer {
                status: error.status_code(),
                content_type: Some(content_type),
                body: error.to_json(),
            }
        }
    }
}

fn serialization_exception_bare(content_type: &'static str) -> WireAnswer {
    WireAnswer {
        status: 400,
        content_type: Some(content_type),
        body: r#"{"__type":"com.amazon.coral.service#SerializationException"}"#.into(),
    }
}

/// The operations dispatched below (DynamoDB's, less SearchVectors and PartiQL, which neither
/// Hookline nor the SDK operations it uses need).
const OPERATIONS: &[&str] = &[
    "CreateTable",
    "DeleteTable",
    "DescribeTable",
    "ListTables",
    "UpdateTable",
    "PutItem",
    "GetItem",
    "DeleteItem",
    "UpdateItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactWriteItems",
    "TransactGetItems",
    "UpdateTimeToLive",
    "DescribeTimeToLive",
    "TagResource",
    "UntagResource",
    "ListTagsOfResource",
];

fn dispatch(db: &Database, operation: &str, body: &str) -> dynoxide::Result<String> {
    macro_rules! run {
        ($method:ident) => {
            serialize(&db.$method(deserialize(body)?)?)
        };
    }
    match operation {
        "CreateTable" => run!(create_table),
        "DeleteTable" => run!(delete_table),
        "DescribeTable" => run!(describe_table),
        "ListTables" => run!(list_tables),
        "UpdateTable" => run!(update_table),
        "PutItem" => run!(put_item),
        "GetItem" => run!(get_item),
        "DeleteItem" => run!(delete_item),
        "UpdateItem" => run!(update_item),
        "Query" => run!(query),
        "Scan" => run!(scan),
        "BatchGetItem" => run!(batch_get_item),
        "BatchWriteItem" => run!(batch_write_item),
        "TransactWriteItems" => run!(transact_write_items),
        "TransactGetItems" => run!(transact_get_items),
        "UpdateTimeToLive" => run!(update_time_to_live),
        "DescribeTimeToLive" => run!(describe_time_to_live),
        "TagResource" => run!(tag_resource),
        "UntagResource" => run!(untag_resource),
        "ListTagsOfResource" => run!(list_tags_of_resource),
        _ => Err(DynoxideError::SerializationException(
            "UnknownOperationException".into(),
        )),
    }
}

/// Reads a request the way dynoxide's server classifies serde failures: a missing field, an
/// unknown enum variant or a null is a ValidationException, any other type mismatch a
/// SerializationException. (Its exact DynamoDB wording of the latter is crate-private; the
/// `__type` and status are the same.)
fn deserialize<T: serde::de::DeserializeOwned>(body: &str) -> dynoxide::Result<T> {
    serde_json::from_str(body).map_err(|e| {
        let message = e.to_string();
        let message = strip_marker(&message);
        if message.contains("missing field")
            || message.contains("unknown variant")
            || message.contains("invalid type: null")
            || message.contains("Supplied AttributeValue")
        {
            DynoxideError::ValidationException(message)
        } else {
            DynoxideError::SerializationException(message)
        }
    })
}

/// dynoxide's own Deserialize impls prefix their messages with a class marker
/// (`VALIDATION:` and the like) and serde_json appends a position: neither may reach the wire.
fn strip_marker(message: &str) -> String {
    let message = message
        .split_once(" at line ")
        .map_or(message, |(head, _)| head);
    let message = match message.split_once(':') {
        Some((marker, rest))
            if !marker.is_empty() && marker.chars().all(|c| c.is_ascii_uppercase() || c == '_') =>
        {
            rest.trim_start()
        }
        _ => message,
    };
    message.to_string()
}

fn serialize<T: serde::Serialize>(value: &T) -> dynoxide::Result<String> {
    serde_json::to_string(value).map_err(|e| DynoxideError::InternalServerError(e.to_string()))
}

/// DynamoDB request ids are 52 characters of `[0-9A-Z]`; the SDK only reports them.
fn ulid_like_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:0>52X}", n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(target: Option<&str>, body: &str) -> WireCall {
        WireCall {
            method_is_post: true,
            content_type: Some(AMZ_JSON.into()),
            target: target.map(str::to_owned),
            body: Some(body.as_bytes().to_vec()),
        }
    }

    #[test]
    fn answers_like_the_http_server() {
        let db = Database::memory().unwrap();
        let missing_target = answer(&db, call(None, "{}"));
        assert_eq!(missing_target.status, 400);
        assert!(missing_target.body.contains("UnknownOperationException"));

        let not_json = answer(&db, call(Some("DynamoDB_20120810.GetItem"), "{nope"));
        assert_eq!(not_json.status, 400);
        assert_eq!(
            not_json.body,
            r#"{"__type":"com.amazon.coral.service#SerializationException"}"#
        );

        let no_table = answer(
            &db,
            call(
                Some("DynamoDB_20120810.GetItem"),
                r#"{"TableName":"missing","Key":{"pk":{"S":"a"}}}"#,
            ),
        );
        assert_eq!(no_table.status, 400);
        assert!(no_table.body.contains("ResourceNotFoundException"));

        let mistyped = answer(
            &db,
            call(Some("DynamoDB_20120810.GetItem"), r#"{"TableName":5}"#),
        );
        assert_eq!(mistyped.status, 400);
        assert!(
            mistyped.body.contains("#SerializationException"),
            "{}",
            mistyped.body
        );
        assert!(!mistyped.body.contains("line 1"), "{}", mistyped.body);

        let no_method = answer(
            &db,
            WireCall {
                method_is_post: false,
                ..call(Some("DynamoDB_20120810.GetItem"), "{}")
            },
        );
        assert_eq!(no_method.status, 404);
    }

    #[test]
    fn markers_and_positions_never_reach_the_wire() {
        assert_eq!(
            strip_marker("VALIDATION_REQUEST: bad value at line 1 column 9"),
            "bad value"
        );
        assert_eq!(strip_marker("missing field `Key`"), "missing field `Key`");
    }
}
