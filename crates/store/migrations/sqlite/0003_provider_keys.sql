-- Provider API keys stored by users ("bring your own key"), envelope-encrypted: the key is
-- sealed with AES-256-GCM under a random per-record data key, and the data key is wrapped by a
-- key-encryption key (KEK) whose id is `master_key_id`. Binary columns are BLOB here and BYTEA
-- in PostgreSQL; sqlx reads both as bytes, so the store's SQL text is the same.
CREATE TABLE provider_keys (
    id                   TEXT PRIMARY KEY NOT NULL,
    tenant_id            TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    owner                TEXT NOT NULL,
    provider             TEXT NOT NULL,
    name                 TEXT NOT NULL,
    last_four            TEXT NOT NULL,
    ciphertext           BLOB NOT NULL,
    nonce                BLOB NOT NULL,
    wrapped_data_key     BLOB NOT NULL,
    wrap_nonce           BLOB NOT NULL,
    master_key_id        TEXT NOT NULL,
    allowed_models       TEXT NOT NULL,
    monthly_token_limit  BIGINT,
    monthly_usd_micros   BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    CONSTRAINT provider_keys_name_key UNIQUE (tenant_id, owner, provider, name)
);

-- The gateway's lookup: one user's keys for one provider, newest first.
CREATE INDEX provider_keys_owner_provider_idx
    ON provider_keys (tenant_id, owner, provider, created_at);
