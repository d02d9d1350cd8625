-- Several nodes: each merge commit of a document takes the next version, so two nodes can never
-- both commit on top of the same state (the second one's insert hits the primary key and is
-- answered `stale`: it catches up and merges again). One row per merge since the last compaction;
-- compaction removes the rows below the version its snapshot covers, the latest always stays.
CREATE TABLE doc_commits (
    partnership_id  UUID NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    version         BIGINT NOT NULL,
    committed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT doc_commits_pkey PRIMARY KEY (partnership_id, version)
);

-- The document version a snapshot covers: a compaction never replaces a newer snapshot.
ALTER TABLE doc_snapshots ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
