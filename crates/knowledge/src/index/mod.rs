//! The index backends behind one trait.
//!
//! An index holds, per scope (a tenant's collection), each document's chunks as vectors and as
//! text, and answers two kinds of query: nearest vectors (cosine) and BM25-style lexical matches.
//! It stores no chunk text for display and decides nothing about visibility: it returns chunk ids
//! with scores, and the services layer joins them with the operational store, where a document
//! becomes visible in one transaction once every chunk of it is indexed.
//!
//! Replacing a document is atomic in every backend: after `upsert_document` returns, a query sees
//! all of the new chunks (and none of the document's previous ones); if it fails or the process
//! dies during it, a query sees the previous state or a state the services layer filters out.

pub mod embedded;
pub mod pgvector;

use std::collections::HashSet;
use std::fmt;

use async_trait::async_trait;

/// Where a document's chunks live: a tenant's collection. Backends keep scopes apart physically
/// (a directory per scope, or a `tenant_id, collection_id` key on every row and every query).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub tenant_id: String,
    pub collection_id: String,
}

/// One chunk as an index receives it.
#[derive(Debug, Clone)]
pub struct IndexedChunk {
    /// The chunk's id in the operational store; unique across all scopes.
    pub chunk_id: u64,
    /// The text the lexical index searches (the chunk, prefixed by its heading path and title).
    pub text: String,
    /// The chunk's embedding: `dimensions` floats, L2-normalised by the caller.
    pub embedding: Vec<f32>,
}

/// What a query may return. `document_ids = None` means every document of the scope.
#[derive(Debug, Clone, Default)]
pub struct Restriction {
    pub document_ids: Option<HashSet<String>>,
}

impl Restriction {
    pub fn allows(&self, document_id: &str) -> bool {
        self.document_ids
            .as_ref()
            .is_none_or(|ids| ids.contains(document_id))
    }
}

/// A ranked chunk. `score` is a similarity (higher is better): cosine similarity for vector
/// queries, the backend's lexical score (BM25 or `ts_rank_cd`) for lexical ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub chunk_id: u64,
    pub document_id: String,
    pub score: f32,
}

/// Parameters of a vector query.
#[derive(Debug, Clone, Copy)]
pub struct VectorQuery<'a> {
    pub embedding: &'a [f32],
    pub top_k: usize,
    /// The candidate pool (HNSW's `ef_search`): larger is slower and more exact. At least `top_k`.
    pub num_candidates: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("the index of {scope} expects vectors of {expected} dimensions, got {actual}")]
    Dimensions {
        scope: String,
        expected: usize,
        actual: usize,
    },
    #[error("the lexical query {query:?} cannot be parsed: {reason}")]
    Query { query: String, reason: String },
    #[error("{action}: {message}")]
    Backend { action: String, message: String },
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{action}: {source}")]
    Database {
        action: String,
        #[source]
        source: sqlx::Error,
    },
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "collection {} of tenant {}",
            self.collection_id, self.tenant_id
        )
    }
}

/// The contract both backends pass (the shared suite in `tests/backends.rs`).
#[async_trait]
pub trait KnowledgeIndex: Send + Sync + fmt::Debug {
    /// The backend's name as configured (`embedded`, `pgvector`).
    fn backend(&self) -> &'static str;

    /// Creates the scope's structures for vectors of `dimensions` (idempotent).
    async fn create_scope(&self, scope: &Scope, dimensions: usize) -> Result<(), IndexError>;

    /// Replaces every chunk of `document_id` in `scope` by `chunks`, atomically.
    async fn upsert_document(
        &self,
        scope: &Scope,
        document_id: &str,
        chunks: Vec<IndexedChunk>,
    ) -> Result<(), IndexError>;

    /// Removes a document's chunks (no error when it has none).
    async fn delete_document(&self, scope: &Scope, document_id: &str) -> Result<(), IndexError>;

    /// Removes the scope and everything in it (no error when it does not exist).
    async fn drop_scope(&self, scope: &Scope) -> Result<(), IndexError>;

    /// The `top_k` chunks nearest to the query embedding, best first.
    async fn vector_search(
        &self,
        scope: &Scope,
        query: VectorQuery<'_>,
        restriction: &Restriction,
    ) -> Result<Vec<Hit>, IndexError>;

    /// The `top_k` chunks matching the words of `query`, best first.
    async fn lexical_search(
        &self,
        scope: &Scope,
        query: &str,
        top_k: usize,
        restriction: &Restriction,
    ) -> Result<Vec<Hit>, IndexError>;

    /// The chunk ids the scope holds per document (for reconciliation with the store and tests).
    async fn chunk_ids(&self, scope: &Scope) -> Result<Vec<(String, u64)>, IndexError>;

    /// Makes everything written so far durable (snapshots in-memory structures); called
    /// periodically and at shutdown.
    async fn flush(&self) -> Result<(), IndexError>;
}
