-- ferry schema v1 (PostgreSQL). Never edit a released migration: add the next file.
CREATE TABLE uploads (
    id          TEXT PRIMARY KEY,
    length      BIGINT,
    "offset"    BIGINT NOT NULL DEFAULT 0,
    metadata    TEXT NOT NULL DEFAULT '',
    concat      TEXT,
    state       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    sha256      BYTEA,
    tree_path   TEXT,
    placed      BIGINT NOT NULL DEFAULT 0,
    reason      TEXT,
    host        TEXT,
    host_base   BIGINT,
    owner       BIGINT,
    relay_to    TEXT
);
CREATE INDEX uploads_expiry ON uploads(state, expires_at);
CREATE TABLE tree_files (
    path      TEXT PRIMARY KEY,
    size      BIGINT NOT NULL,
    mtime_ns  BIGINT NOT NULL,
    sha256    BYTEA NOT NULL
);
CREATE INDEX tree_files_digest ON tree_files(sha256, size);
CREATE TABLE users (
    id          BIGINT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    pw_hash     TEXT NOT NULL,
    admin       BIGINT NOT NULL DEFAULT 0,
    quota       BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE TABLE id_counters (
    name        TEXT PRIMARY KEY,
    next        BIGINT NOT NULL
);
CREATE TABLE tokens (
    sha256      BYTEA PRIMARY KEY,
    user_id     BIGINT NOT NULL,
    label       TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
);
CREATE TABLE relay_items (
    id          TEXT PRIMARY KEY,
    sender_id   BIGINT NOT NULL,
    name        TEXT NOT NULL,
    size        BIGINT NOT NULL,
    sha256      BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE TABLE relay_deliveries (
    item_id       TEXT NOT NULL,
    recipient_id  BIGINT NOT NULL,
    state         TEXT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (item_id, recipient_id)
);
CREATE TABLE grants (
    user_id     BIGINT NOT NULL,
    path        TEXT NOT NULL,
    write       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, path)
);
