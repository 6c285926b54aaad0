-- Schema version 3: background jobs (replay and recovery). `due_ms` is set while a job runs
-- (when the sweep resumes it if its worker stops); `version` moves on with every write.
CREATE TABLE jobs (
    account_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    due_ms INTEGER,
    body TEXT NOT NULL,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX jobs_due ON jobs (due_ms) WHERE due_ms IS NOT NULL;
CREATE INDEX jobs_by_age ON jobs (created_ms);
-- A recovery walks one account's events by age (`walk_events`): without this index each page
-- read and sorted all of the account's events.
CREATE INDEX events_by_account_age ON events (account_id, created_ms, id);
