-- See migrations/postgres: each merge commit of a document takes the next version. The embedded
-- store serves one node, where the version never conflicts; the schema and the queries are the
-- same as PostgreSQL's.
CREATE TABLE doc_commits (
    partnership_id  BLOB NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    version         INTEGER NOT NULL,
    committed_at    TEXT NOT NULL,
    PRIMARY KEY (partnership_id, version)
);

ALTER TABLE doc_snapshots ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
