-- ferry schema v1 (SQLite). Never edit a released migration: add the next file.
CREATE TABLE IF NOT EXISTS uploads (
    id          TEXT PRIMARY KEY,
    length      INTEGER,
    "offset"    INTEGER NOT NULL DEFAULT 0,
    metadata    TEXT NOT NULL DEFAULT '',
    concat      TEXT,
    state       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    sha256      BLOB,
    tree_path   TEXT,
    placed      INTEGER NOT NULL DEFAULT 0,
    reason      TEXT,
    host        TEXT,
    host_base   INTEGER,
    owner       INTEGER,
    relay_to    TEXT
);
CREATE INDEX IF NOT EXISTS uploads_expiry ON uploads(state, expires_at);
CREATE TABLE IF NOT EXISTS tree_files (
    path      TEXT PRIMARY KEY,
    size      INTEGER NOT NULL,
    mtime_ns  INTEGER NOT NULL,
    sha256    BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS tree_files_digest ON tree_files(sha256, size);
CREATE TABLE IF NOT EXISTS users (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    pw_hash     TEXT NOT NULL,
    admin       INTEGER NOT NULL DEFAULT 0,
    quota       INTEGER,
    created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS id_counters (
    name        TEXT PRIMARY KEY,
    next        INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    sha256      BLOB PRIMARY KEY,
    user_id     INTEGER NOT NULL,
    label       TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS relay_items (
    id          TEXT PRIMARY KEY,
    sender_id   INTEGER NOT NULL,
    name        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    sha256      BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS relay_deliveries (
    item_id       TEXT NOT NULL,
    recipient_id  INTEGER NOT NULL,
    state         TEXT NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (item_id, recipient_id)
);
CREATE TABLE IF NOT EXISTS grants (
    user_id     INTEGER NOT NULL,
    path        TEXT NOT NULL,
    write       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, path)
);
