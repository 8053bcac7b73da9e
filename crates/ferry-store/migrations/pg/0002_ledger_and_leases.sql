-- ferry schema v2 (PostgreSQL): the running SHA-256's state with the offset, object storage's
-- multipart ledger, and upload leases with fencing tokens. Never edit a released migration.
ALTER TABLE uploads ADD COLUMN sha_state BYTEA;
ALTER TABLE uploads ADD COLUMN multipart_id TEXT;
ALTER TABLE uploads ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
ALTER TABLE uploads ADD COLUMN lease_node TEXT;
ALTER TABLE uploads ADD COLUMN lease_until BIGINT;
CREATE TABLE upload_parts (
    upload_id   TEXT NOT NULL,
    part_index  BIGINT NOT NULL,
    etag        TEXT NOT NULL,
    base        BIGINT NOT NULL,
    size        BIGINT NOT NULL,
    PRIMARY KEY (upload_id, part_index)
);
CREATE TABLE upload_tail (
    upload_id   TEXT NOT NULL,
    base        BIGINT NOT NULL,
    len         BIGINT NOT NULL,
    data        BYTEA NOT NULL,
    PRIMARY KEY (upload_id, base)
);
