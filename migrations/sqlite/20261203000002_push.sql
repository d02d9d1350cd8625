-- Push notifications (SQLite): the devices that receive them, what each user wants, and the
-- durable outbox a sender works through. Same tables and rules as the PostgreSQL schema (see its
-- comments); UUIDs are 16-byte BLOBs, times RFC 3339 TEXT, booleans 0/1.

CREATE TABLE devices (
    id          BLOB PRIMARY KEY NOT NULL,
    user_id     BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    platform    TEXT NOT NULL CHECK (platform IN ('android', 'ios', 'web')),
    kind        TEXT NOT NULL CHECK (kind IN ('fcm', 'webpush')),
    fcm_token   TEXT UNIQUE,
    endpoint    TEXT UNIQUE,
    p256dh      TEXT,
    auth        TEXT,
    session_id  BLOB,
    created_at  TEXT NOT NULL,
    CHECK (CASE kind
        WHEN 'fcm' THEN fcm_token IS NOT NULL AND endpoint IS NULL AND p256dh IS NULL
            AND auth IS NULL
        ELSE fcm_token IS NULL AND endpoint IS NOT NULL AND p256dh IS NOT NULL
            AND auth IS NOT NULL AND platform = 'web'
    END)
);
CREATE INDEX devices_user ON devices (user_id);

-- The tokens of the table this one replaces were FCM registration tokens, whatever the platform.
INSERT INTO devices (id, user_id, platform, kind, fcm_token, created_at)
SELECT randomblob(16), user_id, platform, 'fcm', token, created_at FROM device_tokens;
DROP TABLE device_tokens;

CREATE TABLE notification_preferences (
    user_id         BLOB PRIMARY KEY NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    disabled_kinds  TEXT NOT NULL DEFAULT '',
    show_details    INTEGER NOT NULL DEFAULT 1,
    updated_at      TEXT NOT NULL
);

CREATE TABLE notification_outbox (
    id               BLOB PRIMARY KEY NOT NULL,
    user_id          BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    partnership_id   BLOB REFERENCES partnerships(id) ON DELETE CASCADE,
    kind             TEXT NOT NULL,
    dedupe_key       TEXT NOT NULL,
    payload          TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    next_attempt_at  TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    claimed_until    TEXT,
    give_up_at       TEXT NOT NULL,
    UNIQUE (user_id, dedupe_key)
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at);
CREATE INDEX notification_outbox_partnership ON notification_outbox (partnership_id);

CREATE TABLE notification_deliveries (
    outbox_id  BLOB NOT NULL REFERENCES notification_outbox(id) ON DELETE CASCADE,
    device_id  BLOB NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    PRIMARY KEY (outbox_id, device_id)
);
CREATE INDEX notification_deliveries_device ON notification_deliveries (device_id);
