-- Interactions (the operational copy), the lake archive bookkeeping, and the quarantine.
CREATE TABLE interactions (
    seq                    INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id              TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    interaction_id         TEXT NOT NULL,
    interaction_type       TEXT NOT NULL,
    user_id                TEXT NOT NULL,
    user_type              TEXT NOT NULL,
    session_id             TEXT,
    conversation_id        TEXT,
    parent_interaction_id  TEXT,
    partner_id             TEXT,
    timestamp_ms           BIGINT NOT NULL,
    received_at_ms         BIGINT NOT NULL,
    document               TEXT NOT NULL,
    CONSTRAINT interactions_tenant_interaction_key UNIQUE (tenant_id, interaction_id)
);
CREATE INDEX interactions_time_idx ON interactions (tenant_id, timestamp_ms, interaction_id);
CREATE INDEX interactions_user_idx ON interactions (tenant_id, user_id, timestamp_ms);
CREATE INDEX interactions_conversation_idx ON interactions (tenant_id, conversation_id, timestamp_ms);
-- Partial: most interactions have no parent, so they cost this index nothing.
CREATE INDEX interactions_parent_idx ON interactions (tenant_id, parent_interaction_id)
    WHERE parent_interaction_id IS NOT NULL;

-- An archive batch is a range of `seq`. Commit order equals `seq` order (SQLite has one
-- writer; on PostgreSQL every insert transaction holds an advisory lock), so a range below
-- the highest committed `seq` never gains rows later.
CREATE TABLE archive_batches (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    min_seq       BIGINT NOT NULL,
    max_seq       BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    completed_at  BIGINT,
    n_rows        BIGINT NOT NULL,
    files         TEXT,
    CONSTRAINT archive_batches_min_seq_key UNIQUE (min_seq)
);

CREATE TABLE rejected_interactions (
    id              TEXT PRIMARY KEY NOT NULL,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    received_at_ms  BIGINT NOT NULL,
    principal       TEXT NOT NULL,
    batch_index     BIGINT,
    reason          TEXT NOT NULL,
    payload         TEXT NOT NULL
);
CREATE INDEX rejected_tenant_idx ON rejected_interactions (tenant_id, received_at_ms, id);
