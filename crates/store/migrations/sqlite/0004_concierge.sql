-- The AI Concierge's operational copy of its conversations. Every turn is also an interaction
-- (the analytical copy, archived to the lake); these tables are what the concierge reads to
-- continue a conversation, and what a user's erasure request deletes.
CREATE TABLE concierge_sessions (
    id           TEXT PRIMARY KEY NOT NULL,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id      TEXT NOT NULL,
    user_type    TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    model        TEXT NOT NULL,
    status       TEXT NOT NULL,
    profile      TEXT,
    context      TEXT,
    created_at   BIGINT NOT NULL,
    ended_at     BIGINT
);
CREATE INDEX concierge_sessions_user_idx ON concierge_sessions (tenant_id, user_id, created_at);

-- One row per message: user turns, assistant answers (including tool-call requests) and tool
-- results, in `seq` order. An answer is inserted as `pending` before the model is called and
-- completed afterwards, so a crash mid-answer leaves a row that is later marked `incomplete`.
CREATE TABLE concierge_messages (
    id             TEXT PRIMARY KEY NOT NULL,
    session_id     TEXT NOT NULL REFERENCES concierge_sessions (id) ON DELETE CASCADE,
    tenant_id      TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    role           TEXT NOT NULL,
    content        TEXT,
    tool_calls     TEXT,
    tool_call_id   TEXT,
    tool_name      TEXT,
    status         TEXT NOT NULL,
    model          TEXT,
    input_tokens   BIGINT,
    output_tokens  BIGINT,
    cost_usd       REAL,
    duration_ms    BIGINT,
    details        TEXT,
    created_at     BIGINT NOT NULL,
    completed_at   BIGINT,
    CONSTRAINT concierge_messages_seq_key UNIQUE (session_id, seq)
);
CREATE INDEX concierge_messages_pending_idx ON concierge_messages (status, created_at);

-- Erasure requests ("right to erase"): who asked, for whom, when, and what was deleted. The
-- user id is kept so the lake's copies can be found and rewritten (docs/concierge.md).
CREATE TABLE concierge_erasures (
    id                    TEXT PRIMARY KEY NOT NULL,
    tenant_id             TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id               TEXT NOT NULL,
    requested_by          TEXT NOT NULL,
    requested_at          BIGINT NOT NULL,
    sessions_deleted      BIGINT NOT NULL,
    messages_deleted      BIGINT NOT NULL,
    interactions_deleted  BIGINT NOT NULL
);
CREATE INDEX concierge_erasures_user_idx ON concierge_erasures (tenant_id, user_id);
