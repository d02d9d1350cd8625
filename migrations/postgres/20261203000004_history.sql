-- History (PostgreSQL): what each change of a couple's document did, one row per change and
-- entity, written in the commit transaction with the materialized rows and, like them, derived
-- from the document (`splitsave rebuild-history` writes it again from the changes). Read newest
-- first by `id`, the keyset cursor, so a page is one index range scan however long the couple's
-- history is.
--
-- `author_id`: the user (the actor binding of a synced change, or the user a REST write was
-- made for); NULL for the server's own changes, whose `reason` says why.
-- `changed_at`: the change's own time (its author's clock; NULL when it carries none).
-- `received_at`: when the server committed it; `received_exact` is false for entries rebuilt
-- after compaction dropped the change's receive time (then it is the change's own time).
-- `fields`: JSON array of {field, old, new}, values as the REST API shows them.
CREATE TABLE history_entries (
    id              BIGSERIAL PRIMARY KEY,
    partnership_id  UUID NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    change_hash     TEXT NOT NULL,
    author_id       UUID,
    kind            TEXT NOT NULL,
    entity_id       TEXT NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('created', 'changed', 'removed')),
    reason          TEXT,
    changed_at      TIMESTAMPTZ,
    received_at     TIMESTAMPTZ NOT NULL,
    received_exact  BOOLEAN NOT NULL DEFAULT true,
    fields          TEXT NOT NULL,
    UNIQUE (partnership_id, change_hash, kind, entity_id)
);
CREATE INDEX history_entries_partnership ON history_entries (partnership_id, id);
CREATE INDEX history_entries_entity ON history_entries (partnership_id, entity_id, id);
CREATE INDEX history_entries_author ON history_entries (partnership_id, author_id, id);
CREATE INDEX history_entries_kind ON history_entries (partnership_id, kind, id);
