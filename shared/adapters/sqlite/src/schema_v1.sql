-- Schema version 1. Records are kept whole as JSON in `body` (what the API returns); the
-- columns beside it are what the access patterns look up, filter, order and count by.
-- Times in `*_ms` columns are Unix milliseconds (the API's precision).

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX accounts_by_age ON accounts (created_ms, id);

CREATE TABLE api_keys (
    key_hash TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX api_keys_by_account ON api_keys (account_id, created_ms, id);

CREATE TABLE event_types (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL
);

CREATE TABLE webhooks (
    account_id TEXT NOT NULL,
    id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX webhooks_by_age ON webhooks (account_id, created_ms, id);

-- `due_ms` is set while the fan-out is unfinished (the sweep completes it).
CREATE TABLE events (
    account_id TEXT NOT NULL,
    id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    due_ms INTEGER,
    body TEXT NOT NULL,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX events_due ON events (due_ms) WHERE due_ms IS NOT NULL;
CREATE INDEX events_by_age ON events (created_ms);

-- `due_ms` is set while the delivery is not terminal (when the sweep steps in).
CREATE TABLE deliveries (
    account_id TEXT NOT NULL,
    id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    last_attempt_ms INTEGER,
    attempt_count INTEGER NOT NULL,
    next_attempt_at TEXT,
    due_ms INTEGER,
    body TEXT NOT NULL,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX deliveries_by_age ON deliveries (account_id, created_ms, id);
CREATE INDEX deliveries_by_webhook ON deliveries (account_id, webhook_id, created_ms);
CREATE INDEX deliveries_by_status ON deliveries (account_id, status, created_ms);
CREATE INDEX deliveries_by_type ON deliveries (account_id, event_type, created_ms);
CREATE INDEX deliveries_by_last_attempt ON deliveries (account_id, last_attempt_ms)
    WHERE last_attempt_ms IS NOT NULL;
CREATE INDEX deliveries_due ON deliveries (due_ms) WHERE due_ms IS NOT NULL;
CREATE INDEX deliveries_by_expiry ON deliveries (created_ms);

-- Exact per-account counts, moved in the same transaction as every status change.
CREATE TABLE status_counts (
    account_id TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (account_id, status)
) WITHOUT ROWID;

-- Small named values (the main key's check).
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID
