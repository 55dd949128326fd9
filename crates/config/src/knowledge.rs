//! `[knowledge]`: the knowledge base — where its indexes live, which model embeds, how documents
//! are cut, and the limits of ingestion and search.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::models::{DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnowledgeConfig {
    /// Serve `/v1/knowledge/*` and the concierge's `search_knowledge` tool.
    pub enabled: bool,
    /// `embedded` (an HNSW and a BM25 index per collection under `data_dir/knowledge`) or
    /// `pgvector` (PostgreSQL with the vector extension at `pgvector_url`).
    pub backend: KnowledgeBackend,
    /// Where the embedded backend keeps its indexes (default `data_dir/knowledge`). They are
    /// derived from the database: an empty directory is rebuilt at start.
    pub index_dir: Option<PathBuf>,
    /// The PostgreSQL holding the vectors when `backend = "pgvector"` (a password goes in the
    /// URL or in `PGPASSWORD`; `config show` redacts it).
    pub pgvector_url: Option<String>,
    /// The gateway model that embeds chunks and queries (a new collection records it; a
    /// collection embedded by another model must be re-embedded before it is used).
    pub embedding_model: String,
    /// The gateway model that writes grounded answers (`POST /v1/knowledge/answer`).
    pub answer_model: String,
    /// Chunk size budget in tokens of the embedding model, and the overlap between
    /// consecutive chunks of one section.
    pub chunk_max_tokens: usize,
    pub chunk_overlap_tokens: usize,
    /// Texts per embedding call.
    pub embed_batch_size: usize,
    /// Largest accepted upload, in bytes.
    pub max_document_bytes: usize,
    /// Documents whose extracted text is longer are ingested by a background job (202 with
    /// the job); shorter ones are ingested before the request returns.
    pub sync_max_chars: usize,
    /// HNSW parameters (both backends): neighbours per node, build-time candidate list, and
    /// the default query-time candidate list.
    pub hnsw_m: usize,
    pub hnsw_ef_construction: usize,
    pub hnsw_ef_search: usize,
    /// How often the embedded backend snapshots changed vector indexes to disk (also at
    /// shutdown; the store is the source of truth, so a lost snapshot is rebuilt).
    #[serde(with = "crate::humantime_serde_compat")]
    pub flush_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KnowledgeBackend {
    Embedded,
    Pgvector,
}

impl Default for KnowledgeConfig {
    fn default() -> KnowledgeConfig {
        KnowledgeConfig {
            enabled: true,
            backend: KnowledgeBackend::Embedded,
            index_dir: None,
            pgvector_url: None,
            embedding_model: format!("local/{DEFAULT_EMBEDDING_MODEL}"),
            answer_model: format!("local/{DEFAULT_CHAT_MODEL}"),
            chunk_max_tokens: 200,
            chunk_overlap_tokens: 40,
            embed_batch_size: 32,
            max_document_bytes: 32 * 1024 * 1024,
            sync_max_chars: 20_000,
            hnsw_m: 16,
            hnsw_ef_construction: 64,
            hnsw_ef_search: 40,
            flush_interval: Duration::from_secs(60),
        }
    }
}
