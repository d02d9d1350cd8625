-- SplitSave schema 1 (SQLite). Same tables and rules as the PostgreSQL schema. Differences that
-- SQLite imposes: money is TEXT holding an exact decimal string (never REAL); UUIDs are 16-byte
-- BLOBs; times are RFC 3339 TEXT; JSON is TEXT.

CREATE TABLE users (
    id             BLOB PRIMARY KEY NOT NULL,
    email          TEXT NOT NULL UNIQUE CHECK (email = lower(email) AND length(email) <= 254),
    password_hash  TEXT NOT NULL,
    name           TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    income         TEXT CHECK (income IS NULL OR substr(income, 1, 1) <> '-'),
    currency       TEXT NOT NULL CHECK (currency GLOB '[A-Z][A-Z][A-Z]'),
    country        TEXT CHECK (country IS NULL OR country GLOB '[A-Z][A-Z]'),
    payday         TEXT,
    token_version  INTEGER NOT NULL DEFAULT 0,
    last_seen      TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

CREATE TABLE refresh_tokens (
    id          BLOB PRIMARY KEY NOT NULL,
    user_id     BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    family_id   BLOB NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    expires_at  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    used_at     TEXT,
    revoked_at  TEXT
);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE password_resets (
    id          BLOB PRIMARY KEY NOT NULL,
    user_id     BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL UNIQUE,
    expires_at  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    used_at     TEXT
);
CREATE INDEX password_resets_user ON password_resets (user_id);

CREATE TABLE device_tokens (
    token       TEXT PRIMARY KEY NOT NULL,
    user_id     BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    platform    TEXT NOT NULL CHECK (platform IN ('android', 'ios', 'web')),
    created_at  TEXT NOT NULL
);
CREATE INDEX device_tokens_user ON device_tokens (user_id);

CREATE TABLE partnerships (
    id                  BLOB PRIMARY KEY NOT NULL,
    user1_id            BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    user2_id            BLOB REFERENCES users(id) ON DELETE CASCADE,
    invitee_email       TEXT NOT NULL CHECK (invitee_email = lower(invitee_email)),
    status              TEXT NOT NULL CHECK (status IN ('pending', 'active', 'paused')),
    currency            TEXT NOT NULL CHECK (currency GLOB '[A-Z][A-Z][A-Z]'),
    approval_threshold  TEXT NOT NULL CHECK (substr(approval_threshold, 1, 1) <> '-'),
    created_at          TEXT NOT NULL,
    accepted_at         TEXT,
    CHECK (user2_id IS NULL OR user2_id <> user1_id),
    CHECK ((status = 'pending') = (user2_id IS NULL))
);
CREATE UNIQUE INDEX partnerships_one_per_user1 ON partnerships (user1_id)
    WHERE status IN ('pending', 'active', 'paused');
CREATE UNIQUE INDEX partnerships_one_per_user2 ON partnerships (user2_id)
    WHERE status IN ('pending', 'active', 'paused');
CREATE INDEX partnerships_invitee_email ON partnerships (invitee_email) WHERE status = 'pending';

CREATE TABLE actor_bindings (
    partnership_id  BLOB NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    actor_id        TEXT NOT NULL CHECK (actor_id NOT GLOB '*[^0-9a-f]*' AND length(actor_id) > 0),
    user_id         BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (partnership_id, actor_id)
);

CREATE TABLE doc_snapshots (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    partnership_id  BLOB NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    bytes           BLOB NOT NULL,
    heads           TEXT NOT NULL,
    change_count    INTEGER NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX doc_snapshots_partnership ON doc_snapshots (partnership_id, id);

CREATE TABLE doc_changes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    partnership_id  BLOB NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    hash            TEXT NOT NULL,
    actor           TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    user_id         BLOB,
    bytes           BLOB NOT NULL,
    received_at     TEXT NOT NULL,
    UNIQUE (partnership_id, hash)
);

-- Materialized rows, keyed by (partnership_id, id): entity ids are chosen by clients, so one
-- couple's document can never name, and so overwrite, another couple's row.
CREATE TABLE expenses (
    id              BLOB NOT NULL,
    partnership_id  BLOB NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    amount          TEXT NOT NULL,
    category        TEXT NOT NULL,
    frequency       TEXT NOT NULL,
    added_by        BLOB NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'pending_approval', 'archived')),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (partnership_id, id)
);
CREATE INDEX expenses_partnership ON expenses (partnership_id, created_at);

CREATE TABLE goals (
    id              BLOB NOT NULL,
    partnership_id  BLOB NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    target_amount   TEXT NOT NULL,
    saved_amount    TEXT NOT NULL,
    goal_type       TEXT NOT NULL,
    priority        TEXT NOT NULL,
    added_by        BLOB NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'pending_approval', 'archived')),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (partnership_id, id)
);
CREATE INDEX goals_partnership ON goals (partnership_id, created_at);

CREATE TABLE goal_contributions (
    id              BLOB NOT NULL,
    partnership_id  BLOB NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    goal_id         BLOB NOT NULL,
    user_id         BLOB NOT NULL,
    amount          TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (partnership_id, id)
);
CREATE INDEX goal_contributions_goal ON goal_contributions (partnership_id, goal_id);

CREATE TABLE approval_requests (
    id              BLOB NOT NULL,
    partnership_id  BLOB NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    requested_by    BLOB NOT NULL,
    request_type    TEXT NOT NULL,
    target_id       BLOB,
    request_data    TEXT NOT NULL DEFAULT '{}',
    message         TEXT,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'declined')),
    responded_by    BLOB,
    responded_at    TEXT,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (partnership_id, id)
);
CREATE INDEX approval_requests_partnership ON approval_requests (partnership_id, status, created_at);

CREATE TABLE messages (
    id                  BLOB NOT NULL,
    partnership_id      BLOB NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    sender_id           BLOB NOT NULL,
    text                TEXT NOT NULL,
    message_type        TEXT NOT NULL,
    read_by_recipient   INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL,
    PRIMARY KEY (partnership_id, id)
);
CREATE INDEX messages_partnership ON messages (partnership_id, created_at);

CREATE TABLE contributions (
    partnership_id  BLOB NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    month           TEXT NOT NULL CHECK (month GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]'),
    total_required  TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (partnership_id, month)
);

CREATE TABLE contribution_shares (
    partnership_id  BLOB NOT NULL,
    month           TEXT NOT NULL,
    user_id         BLOB NOT NULL,
    amount          TEXT NOT NULL,
    paid_at         TEXT,
    PRIMARY KEY (partnership_id, month, user_id),
    FOREIGN KEY (partnership_id, month) REFERENCES contributions(partnership_id, month) ON DELETE CASCADE
);
