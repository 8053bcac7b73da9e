-- ferry schema v3 (SQLite): WebDAV dead properties and locks (locks survive a restart).
-- Never edit a released migration.
CREATE TABLE dav_props (
    path        TEXT NOT NULL,
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    prefix      TEXT,
    xml         BLOB,
    PRIMARY KEY (path, namespace, name)
);
CREATE TABLE dav_locks (
    token       TEXT PRIMARY KEY,
    path        TEXT NOT NULL,
    url         TEXT NOT NULL,
    principal   TEXT,
    owner_xml   TEXT,
    timeout_at  INTEGER,
    timeout_ms  INTEGER,
    shared      BOOLEAN NOT NULL,
    deep        BOOLEAN NOT NULL
);
CREATE INDEX dav_locks_path ON dav_locks (path);
CREATE INDEX uploads_tree_path ON uploads (tree_path) WHERE state = 'active';
