-- The knowledge base (docs/knowledge.md). Collections record the embedding model that made their
-- vectors; documents keep their extracted text and two versions: `version` (the latest submitted
-- content) and `active_version` (the one search shows). Chunks belong to one version of their
-- document; a chunk is visible only while its version is the document's active one, so a
-- document switches from one version to the next in one transaction (`activate`).
CREATE TABLE knowledge_collections (
    id                    TEXT PRIMARY KEY NOT NULL,
    tenant_id             TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    description           TEXT,
    embedding_model       TEXT NOT NULL,
    dimensions            BIGINT NOT NULL,
    chunk_max_tokens      BIGINT NOT NULL,
    chunk_overlap_tokens  BIGINT NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    CONSTRAINT knowledge_collections_name_key UNIQUE (tenant_id, name)
);

CREATE TABLE knowledge_documents (
    id              TEXT PRIMARY KEY NOT NULL,
    tenant_id       TEXT NOT NULL,
    collection_id   TEXT NOT NULL REFERENCES knowledge_collections (id) ON DELETE CASCADE,
    source          TEXT,
    title           TEXT NOT NULL,
    format          TEXT NOT NULL,
    content_hash    TEXT NOT NULL,
    tags            TEXT NOT NULL,
    metadata        TEXT NOT NULL,
    extracted_text  TEXT NOT NULL,
    bytes           BIGINT NOT NULL,
    pages           BIGINT,
    status          TEXT NOT NULL,
    version         TEXT NOT NULL,
    active_version  TEXT,
    error           TEXT,
    chunk_count     BIGINT NOT NULL,
    token_count     BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    CONSTRAINT knowledge_documents_source_key UNIQUE (collection_id, source)
);
CREATE INDEX knowledge_documents_hash_idx ON knowledge_documents (collection_id, content_hash);
CREATE INDEX knowledge_documents_list_idx ON knowledge_documents (tenant_id, collection_id, created_at);

CREATE TABLE knowledge_chunks (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    collection_id   TEXT NOT NULL,
    document_id     TEXT NOT NULL REFERENCES knowledge_documents (id) ON DELETE CASCADE,
    version         TEXT NOT NULL,
    ordinal         BIGINT NOT NULL,
    content         TEXT NOT NULL,
    heading_path    TEXT NOT NULL,
    start_offset    BIGINT NOT NULL,
    end_offset      BIGINT NOT NULL,
    token_count     BIGINT NOT NULL,
    embedding       BYTEA NOT NULL
);
CREATE INDEX knowledge_chunks_document_idx ON knowledge_chunks (document_id, version, ordinal);
CREATE INDEX knowledge_chunks_collection_idx ON knowledge_chunks (collection_id);

-- Ingestion jobs: what a background ingestion is doing, and what a restart resumes.
CREATE TABLE knowledge_jobs (
    id             TEXT PRIMARY KEY NOT NULL,
    tenant_id      TEXT NOT NULL,
    collection_id  TEXT NOT NULL REFERENCES knowledge_collections (id) ON DELETE CASCADE,
    document_id    TEXT NOT NULL REFERENCES knowledge_documents (id) ON DELETE CASCADE,
    version        TEXT NOT NULL,
    status         TEXT NOT NULL,
    stage          TEXT NOT NULL,
    done           BIGINT NOT NULL,
    total          BIGINT NOT NULL,
    error          TEXT,
    created_by     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    started_at     BIGINT,
    finished_at    BIGINT
);
CREATE INDEX knowledge_jobs_status_idx ON knowledge_jobs (status, created_at);
