-- Sync support (SQLite): per-peer sync states for resuming, and server-wide settings such as the
-- automerge-repo storageId the server advertises. Same tables and rules as the PostgreSQL schema.

CREATE TABLE sync_states (
    partnership_id   BLOB NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    user_id          BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    peer_storage_id  TEXT NOT NULL CHECK (length(peer_storage_id) BETWEEN 1 AND 200),
    state            BLOB NOT NULL,
    updated_at       TEXT NOT NULL,
    PRIMARY KEY (partnership_id, user_id, peer_storage_id)
);
CREATE INDEX sync_states_user ON sync_states (user_id);

CREATE TABLE server_meta (
    key    TEXT PRIMARY KEY NOT NULL,
    value  TEXT NOT NULL
);
