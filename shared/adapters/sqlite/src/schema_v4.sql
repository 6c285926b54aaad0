-- Schema version 4: ordered delivery (issue 15 item 4). The sweep hands a delivery of an
-- ordered webhook back to that webhook's lane, so it reads the flag beside the due index.
ALTER TABLE deliveries ADD COLUMN ordered INTEGER NOT NULL DEFAULT 0;
