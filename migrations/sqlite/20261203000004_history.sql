-- History (SQLite): the same table and indexes as the PostgreSQL migration (see its comments);
-- times are TEXT as everywhere in this schema.
CREATE TABLE history_entries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    partnership_id  BLOB NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    change_hash     TEXT NOT NULL,
    author_id       BLOB,
    kind            TEXT NOT NULL,
    entity_id       TEXT NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('created', 'changed', 'removed')),
    reason          TEXT,
    changed_at      TEXT,
    received_at     TEXT NOT NULL,
    received_exact  INTEGER NOT NULL DEFAULT 1,
    fields          TEXT NOT NULL,
    UNIQUE (partnership_id, change_hash, kind, entity_id)
);
CREATE INDEX history_entries_partnership ON history_entries (partnership_id, id);
CREATE INDEX history_entries_entity ON history_entries (partnership_id, entity_id, id);
CREATE INDEX history_entries_author ON history_entries (partnership_id, author_id, id);
CREATE INDEX history_entries_kind ON history_entries (partnership_id, kind, id);
