-- Sync support (PostgreSQL): per-peer sync states for resuming, and server-wide settings such as
-- the automerge-repo storageId every node sharing this database advertises.

-- A peer's automerge sync state, kept by the storageId it announces, so a reconnecting client
-- resumes with a few messages instead of a full exchange.
CREATE TABLE sync_states (
    partnership_id   UUID NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    user_id          UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    peer_storage_id  TEXT NOT NULL CHECK (length(peer_storage_id) BETWEEN 1 AND 200),
    state            BYTEA NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (partnership_id, user_id, peer_storage_id)
);
CREATE INDEX sync_states_user ON sync_states (user_id);

-- Settings of the server itself (not of any user): `storage_id`.
CREATE TABLE server_meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
