-- Power100: contractor and partner profiles, matches, demo bookings and deals.
-- A profile is stored as the canonical JSON of its validated domain value (the services layer
-- owns its shape); `version` increases by one on every update (optimistic concurrency).
CREATE TABLE power100_contractors (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    profile     TEXT NOT NULL,
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE power100_partners (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    profile     TEXT NOT NULL,
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- One row per match shown to a contractor; `id` is also the id of the `partner_match`
-- interaction that logged it. `details` holds the factors and reasons (JSON text).
CREATE TABLE power100_matches (
    id             TEXT PRIMARY KEY NOT NULL,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    contractor_id  TEXT NOT NULL,
    partner_id     TEXT NOT NULL,
    match_rank     BIGINT NOT NULL,
    score          REAL NOT NULL,
    details        TEXT NOT NULL,
    conversation_id TEXT,
    created_at     BIGINT NOT NULL
);
CREATE INDEX power100_matches_contractor_idx ON power100_matches (tenant_id, contractor_id, created_at);

-- Demo bookings with their lifecycle; `interaction_id` is the `demo_booking` interaction.
CREATE TABLE power100_demo_bookings (
    id              TEXT PRIMARY KEY NOT NULL,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    contractor_id   TEXT NOT NULL,
    partner_id      TEXT NOT NULL,
    match_id        TEXT,
    conversation_id TEXT,
    status          TEXT NOT NULL,
    scheduled_for   BIGINT,
    notes           TEXT,
    version         BIGINT NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX power100_demo_bookings_contractor_idx ON power100_demo_bookings (tenant_id, contractor_id, created_at);

-- Closed deals; `id` is also the `deal_closed` interaction's id.
CREATE TABLE power100_deals (
    id              TEXT PRIMARY KEY NOT NULL,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    contractor_id   TEXT NOT NULL,
    partner_id      TEXT NOT NULL,
    booking_id      TEXT,
    match_id        TEXT,
    conversation_id TEXT,
    value           REAL NOT NULL,
    closed_on       TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX power100_deals_contractor_idx ON power100_deals (tenant_id, contractor_id, created_at);
