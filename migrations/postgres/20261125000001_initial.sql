-- SplitSave schema 1 (PostgreSQL). Money is NUMERIC (exact, scale kept as written); times are
-- TIMESTAMPTZ; ids are UUIDs chosen by the application.

-- Accounts ------------------------------------------------------------------------------------

CREATE TABLE users (
    id             UUID PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE CHECK (email = lower(email) AND length(email) <= 254),
    password_hash  TEXT NOT NULL,
    name           TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    income         NUMERIC CHECK (income >= 0),
    currency       TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    country        TEXT CHECK (country ~ '^[A-Z]{2}$'),
    payday         TEXT,
    token_version  BIGINT NOT NULL DEFAULT 0,
    last_seen      TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE refresh_tokens (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    family_id   UUID NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    expires_at  TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    used_at     TIMESTAMPTZ,
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE password_resets (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL UNIQUE,
    expires_at  TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    used_at     TIMESTAMPTZ
);
CREATE INDEX password_resets_user ON password_resets (user_id);

CREATE TABLE device_tokens (
    token       TEXT PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    platform    TEXT NOT NULL CHECK (platform IN ('android', 'ios', 'web')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX device_tokens_user ON device_tokens (user_id);

-- Partnerships --------------------------------------------------------------------------------

-- A pending partnership is an invitation: user2_id stays NULL until the invitee accepts.
CREATE TABLE partnerships (
    id                  UUID PRIMARY KEY,
    user1_id            UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    user2_id            UUID REFERENCES users(id) ON DELETE CASCADE,
    invitee_email       TEXT NOT NULL CHECK (invitee_email = lower(invitee_email)),
    status              TEXT NOT NULL CHECK (status IN ('pending', 'active', 'paused')),
    currency            TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    approval_threshold  NUMERIC NOT NULL CHECK (approval_threshold >= 0),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    accepted_at         TIMESTAMPTZ,
    CHECK (user2_id IS NULL OR user2_id <> user1_id),
    CHECK ((status = 'pending') = (user2_id IS NULL))
);
-- One pending-or-active-or-paused partnership per user and column; the cross-column rule (not
-- inviter in one and invitee in another) is checked by the store with both users' rows locked.
CREATE UNIQUE INDEX partnerships_one_per_user1 ON partnerships (user1_id)
    WHERE status IN ('pending', 'active', 'paused');
CREATE UNIQUE INDEX partnerships_one_per_user2 ON partnerships (user2_id)
    WHERE status IN ('pending', 'active', 'paused');
CREATE INDEX partnerships_invitee_email ON partnerships (invitee_email) WHERE status = 'pending';

-- Documents (source of truth for shared data) -------------------------------------------------

CREATE TABLE actor_bindings (
    partnership_id  UUID NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    actor_id        TEXT NOT NULL CHECK (actor_id ~ '^[0-9a-f]+$'),
    user_id         UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (partnership_id, actor_id)
);

CREATE TABLE doc_snapshots (
    id              BIGSERIAL PRIMARY KEY,
    partnership_id  UUID NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    bytes           BYTEA NOT NULL,
    heads           TEXT NOT NULL,
    change_count    BIGINT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX doc_snapshots_partnership ON doc_snapshots (partnership_id, id);

CREATE TABLE doc_changes (
    id              BIGSERIAL PRIMARY KEY,
    partnership_id  UUID NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    hash            TEXT NOT NULL,
    actor           TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    user_id         UUID,
    bytes           BYTEA NOT NULL,
    received_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (partnership_id, hash)
);

-- Materialized rows (derived from the documents; rebuildable) ---------------------------------
-- Keyed by (partnership_id, id): entity ids are chosen by clients, so one couple's document can
-- never name, and so overwrite, another couple's row.

CREATE TABLE expenses (
    id              UUID NOT NULL,
    partnership_id  UUID NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    amount          NUMERIC NOT NULL CHECK (amount >= 0),
    category        TEXT NOT NULL,
    frequency       TEXT NOT NULL,
    added_by        UUID NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'pending_approval', 'archived')),
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (partnership_id, id)
);
CREATE INDEX expenses_partnership ON expenses (partnership_id, created_at);

CREATE TABLE goals (
    id              UUID NOT NULL,
    partnership_id  UUID NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    target_amount   NUMERIC NOT NULL CHECK (target_amount >= 0),
    saved_amount    NUMERIC NOT NULL,
    goal_type       TEXT NOT NULL,
    priority        TEXT NOT NULL,
    added_by        UUID NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'pending_approval', 'archived')),
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (partnership_id, id)
);
CREATE INDEX goals_partnership ON goals (partnership_id, created_at);

CREATE TABLE goal_contributions (
    id              UUID NOT NULL,
    partnership_id  UUID NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    goal_id         UUID NOT NULL,
    user_id         UUID NOT NULL,
    amount          NUMERIC NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (partnership_id, id)
);
CREATE INDEX goal_contributions_goal ON goal_contributions (partnership_id, goal_id);

CREATE TABLE approval_requests (
    id              UUID NOT NULL,
    partnership_id  UUID NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    requested_by    UUID NOT NULL,
    request_type    TEXT NOT NULL,
    target_id       UUID,
    request_data    JSONB NOT NULL DEFAULT '{}'::jsonb,
    message         TEXT,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'declined')),
    responded_by    UUID,
    responded_at    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (partnership_id, id)
);
CREATE INDEX approval_requests_partnership ON approval_requests (partnership_id, status, created_at);

CREATE TABLE messages (
    id                  UUID NOT NULL,
    partnership_id      UUID NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    sender_id           UUID NOT NULL,
    text                TEXT NOT NULL,
    message_type        TEXT NOT NULL,
    read_by_recipient   BOOLEAN NOT NULL DEFAULT false,
    created_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (partnership_id, id)
);
CREATE INDEX messages_partnership ON messages (partnership_id, created_at);

-- One row per partnership and month ("YYYY-MM"), and one share per partner of that month.
CREATE TABLE contributions (
    partnership_id  UUID NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    month           TEXT NOT NULL CHECK (month ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    total_required  NUMERIC NOT NULL CHECK (total_required >= 0),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (partnership_id, month)
);

CREATE TABLE contribution_shares (
    partnership_id  UUID NOT NULL,
    month           TEXT NOT NULL,
    user_id         UUID NOT NULL,
    amount          NUMERIC NOT NULL CHECK (amount >= 0),
    paid_at         TIMESTAMPTZ,
    PRIMARY KEY (partnership_id, month, user_id),
    FOREIGN KEY (partnership_id, month) REFERENCES contributions(partnership_id, month) ON DELETE CASCADE
);
