-- Schema version 2: fewer indexes on deliveries, so each publish and attempt writes fewer
-- b-trees. A status, type or last-attempt filter now reads the account's deliveries newest
-- first (`deliveries_by_age`, or `deliveries_by_webhook` with a webhook) and keeps the rows
-- that match: a filter costs reads, not a write on every delivery. `deliveries_by_status`
-- moved on every status change; `deliveries_by_last_attempt` on every attempt. Retention
-- walks each account's `deliveries_by_age` instead of `deliveries_by_expiry`.
DROP INDEX deliveries_by_status;
DROP INDEX deliveries_by_type;
DROP INDEX deliveries_by_last_attempt;
DROP INDEX deliveries_by_expiry;
