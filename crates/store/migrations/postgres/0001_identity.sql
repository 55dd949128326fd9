-- Tenants and API keys. Timestamps are Unix milliseconds (UTC) in both backends.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    operator    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    prefix       TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    subject      TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    CONSTRAINT api_keys_prefix_key UNIQUE (prefix)
);

CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, created_at);
