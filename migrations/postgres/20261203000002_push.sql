-- Push notifications (PostgreSQL): the devices that receive them, what each user wants, and the
-- durable outbox a sender works through. The outbox row of a notification is written in the same
-- transaction as the merge or REST write that caused it, so a crash loses none.

-- A device that receives push notifications: an FCM registration token (Android, iOS, or a web
-- app on the Firebase SDK) or a browser's Web Push subscription. A token or an endpoint names
-- one device: registering it again moves the row to whoever registers it (one row, not two).
-- `session_id` is the refresh-token family (the login) that registered it: signing out of that
-- session removes the device.
CREATE TABLE devices (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    platform    TEXT NOT NULL CHECK (platform IN ('android', 'ios', 'web')),
    kind        TEXT NOT NULL CHECK (kind IN ('fcm', 'webpush')),
    fcm_token   TEXT UNIQUE,
    endpoint    TEXT UNIQUE,
    p256dh      TEXT,
    auth        TEXT,
    session_id  UUID,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
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
SELECT gen_random_uuid(), user_id, platform, 'fcm', token, created_at FROM device_tokens;
DROP TABLE device_tokens;

-- What a user wants to be notified of. No row: every kind, with details.
-- `disabled_kinds`: the kinds turned off, comma-separated (`message,partner_paid`).
-- `show_details`: whether amounts and names may appear on the lock screen; off, a message says
-- only who asked for what and carries ids.
CREATE TABLE notification_preferences (
    user_id         UUID PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    disabled_kinds  TEXT NOT NULL DEFAULT '',
    show_details    BOOLEAN NOT NULL DEFAULT TRUE,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Notifications waiting to be sent, one row per recipient and event (`dedupe_key`: the same
-- event enqueued twice is one row). A sender claims due rows (`claimed_until`, with
-- FOR UPDATE SKIP LOCKED so two nodes never claim one), and deletes a row once sent; a failed
-- attempt moves `next_attempt_at`; past `give_up_at` the sender drops it. `payload` is the
-- sender's JSON, opaque to the store. The rows of a partnership go with it: their texts may name
-- a partner whose account is deleted.
CREATE TABLE notification_outbox (
    id               UUID PRIMARY KEY,
    user_id          UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    partnership_id   UUID REFERENCES partnerships(id) ON DELETE CASCADE,
    kind             TEXT NOT NULL,
    dedupe_key       TEXT NOT NULL,
    payload          TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    claimed_until    TIMESTAMPTZ,
    give_up_at       TIMESTAMPTZ NOT NULL,
    CONSTRAINT notification_outbox_dedupe UNIQUE (user_id, dedupe_key)
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at);
CREATE INDEX notification_outbox_partnership ON notification_outbox (partnership_id);

-- The devices a notification already reached: a retry, or a claim made again after a crash,
-- never sends it twice to one device.
CREATE TABLE notification_deliveries (
    outbox_id  UUID NOT NULL REFERENCES notification_outbox(id) ON DELETE CASCADE,
    device_id  UUID NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    PRIMARY KEY (outbox_id, device_id)
);
CREATE INDEX notification_deliveries_device ON notification_deliveries (device_id);
