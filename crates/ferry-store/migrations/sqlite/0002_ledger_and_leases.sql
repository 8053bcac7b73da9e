-- ferry schema v2 (SQLite): the running SHA-256's state with the offset, object storage's
-- multipart ledger, and upload leases with fencing tokens. Never edit a released migration.
ALTER TABLE uploads ADD COLUMN sha_state BLOB;
ALTER TABLE uploads ADD COLUMN multipart_id TEXT;
ALTER TABLE uploads ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
ALTER TABLE uploads ADD COLUMN lease_node TEXT;
ALTER TABLE uploads ADD COLUMN lease_until INTEGER;
CREATE TABLE upload_parts (
    upload_id   TEXT NOT NULL,
    part_index  INTEGER NOT NULL,
    etag        TEXT NOT NULL,
    base        INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    PRIMARY KEY (upload_id, part_index)
);
CREATE TABLE upload_tail (
    upload_id   TEXT NOT NULL,
    base        INTEGER NOT NULL,
    len         INTEGER NOT NULL,
    data        BLOB NOT NULL,
    PRIMARY KEY (upload_id, base)
);
