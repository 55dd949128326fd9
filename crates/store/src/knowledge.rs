//! Storage of the knowledge base: collections, documents with their extracted text and versions,
//! chunks with their embeddings, and ingestion jobs.
//!
//! The store is the source of truth; the vector and lexical indexes (`flywheel-knowledge`) are
//! derived from it and can be rebuilt from the chunks' embeddings. A chunk belongs to one version
//! of its document and is visible only while that version is the document's `active_version`:
//! [`KnowledgeStore::activate`] switches versions and deletes the previous version's chunks in one
//! transaction, which is what makes a document searchable fully or not at all.
//! Writes use the backend's writer pool (on SQLite the one writer connection). Every read but
//! [`KnowledgeStore::unfinished_jobs`] (the resume scan at start) is tenant-scoped.

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use flywheel_core::TenantId;
use sqlx::FromRow;

use crate::identity::{PgBackend, SqliteBackend};
use crate::StoreError;

/// A collection of documents searched together.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeCollectionRecord {
    pub id: String,
    pub tenant_id: TenantId,
    pub name: String,
    pub description: Option<String>,
    /// The gateway model that made the collection's vectors, and their length.
    pub embedding_model: String,
    pub dimensions: i64,
    pub chunk_max_tokens: i64,
    pub chunk_overlap_tokens: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A collection with its counts.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeCollectionSummary {
    pub collection: KnowledgeCollectionRecord,
    pub documents: i64,
    pub ready_documents: i64,
    pub chunks: i64,
}

/// A document. `extracted_text` is the text of `version` (the latest submitted content).
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeDocumentRecord {
    pub id: String,
    pub tenant_id: TenantId,
    pub collection_id: String,
    /// The caller's key for the document (a file path, a URL); a new upload with the same
    /// source replaces the document.
    pub source: Option<String>,
    pub title: String,
    /// `markdown`, `text`, `html` or `pdf`.
    pub format: String,
    /// SHA-256 of the uploaded bytes and the ingestion parameters (hex).
    pub content_hash: String,
    /// JSON array of strings.
    pub tags: String,
    /// JSON object.
    pub metadata: String,
    pub extracted_text: String,
    pub bytes: i64,
    pub pages: Option<i64>,
    /// `pending` (being ingested), `ready` or `failed`.
    pub status: String,
    pub version: String,
    /// The version search shows; `None` until the first ingestion completes.
    pub active_version: Option<String>,
    pub error: Option<String>,
    pub chunk_count: i64,
    pub token_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A chunk of one version of a document. `id` is assigned by [`KnowledgeStore::insert_chunks`].
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeChunkRecord {
    pub id: i64,
    pub tenant_id: TenantId,
    pub collection_id: String,
    pub document_id: String,
    pub version: String,
    pub ordinal: i64,
    pub content: String,
    /// JSON array of the enclosing headings.
    pub heading_path: String,
    /// Character offsets into the document's extracted text.
    pub start_offset: i64,
    pub end_offset: i64,
    pub token_count: i64,
    /// Little-endian `f32`s.
    pub embedding: Vec<u8>,
}

/// A visible chunk with what a search result shows about its document.
#[derive(Debug, Clone, PartialEq)]
pub struct VisibleChunk {
    pub chunk: KnowledgeChunkRecord,
    pub title: String,
    pub source: Option<String>,
}

/// A document's filterable attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentAttributes {
    pub id: String,
    pub tags: String,
    pub metadata: String,
}

/// An ingestion job.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeJobRecord {
    pub id: String,
    pub tenant_id: TenantId,
    pub collection_id: String,
    pub document_id: String,
    pub version: String,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub status: String,
    /// `queued`, `chunking`, `embedding`, `indexing`, `done`.
    pub stage: String,
    pub done: i64,
    pub total: i64,
    pub error: Option<String>,
    /// Subject and role of who asked, `subject:role`.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The knowledge base's tables.
#[async_trait]
pub trait KnowledgeStore: Send + Sync {
    async fn insert_collection(
        &self,
        collection: &KnowledgeCollectionRecord,
    ) -> Result<(), StoreError>;
    async fn get_collection(
        &self,
        tenant_id: &TenantId,
        id: &str,
    ) -> Result<Option<KnowledgeCollectionRecord>, StoreError>;
    async fn get_collection_by_name(
        &self,
        tenant_id: &TenantId,
        name: &str,
    ) -> Result<Option<KnowledgeCollectionRecord>, StoreError>;
    async fn list_collections(
        &self,
        tenant_id: &TenantId,
    ) -> Result<Vec<KnowledgeCollectionSummary>, StoreError>;
    /// Deletes a collection with its documents, chunks and jobs; false when it did not exist.
    async fn delete_collection(&self, tenant_id: &TenantId, id: &str) -> Result<bool, StoreError>;
    /// Records a new embedding model for the collection (after a re-embedding).
    async fn set_collection_model(
        &self,
        tenant_id: &TenantId,
        id: &str,
        embedding_model: &str,
        dimensions: i64,
        updated_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    async fn get_document(
        &self,
        tenant_id: &TenantId,
        id: &str,
    ) -> Result<Option<KnowledgeDocumentRecord>, StoreError>;
    async fn find_document_by_source(
        &self,
        tenant_id: &TenantId,
        collection_id: &str,
        source: &str,
    ) -> Result<Option<KnowledgeDocumentRecord>, StoreError>;
    async fn find_document_by_hash(
        &self,
        tenant_id: &TenantId,
        collection_id: &str,
        content_hash: &str,
    ) -> Result<Option<KnowledgeDocumentRecord>, StoreError>;
    /// A collection's documents, oldest first, after `after_id` (keyset pagination by
    /// `(created_at, id)` of that document).
    async fn list_documents(
        &self,
        tenant_id: &TenantId,
        collection_id: &str,
        after: Option<(DateTime<Utc>, String)>,
        limit: u32,
    ) -> Result<Vec<KnowledgeDocumentRecord>, StoreError>;
    /// Inserts a new document or records a new version of an existing one (by id), together
    /// with its ingestion job, in one transaction.
    async fn submit_document(
        &self,
        document: &KnowledgeDocumentRecord,
        job: &KnowledgeJobRecord,
    ) -> Result<(), StoreError>;
    async fn delete_document(&self, tenant_id: &TenantId, id: &str) -> Result<bool, StoreError>;

    /// Stores the chunks of one version of a document, replacing chunks of that version left
    /// by an interrupted attempt; assigns their ids.
    async fn insert_chunks(&self, chunks: &mut [KnowledgeChunkRecord]) -> Result<(), StoreError>;
    /// Makes `version` the document's visible version and deletes every other version's
    /// chunks, in one transaction; false when the document's latest version is no longer
    /// `version` (a newer upload won) or the document is gone.
    async fn activate(
        &self,
        tenant_id: &TenantId,
        document_id: &str,
        version: &str,
        chunk_count: i64,
        token_count: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    async fn fail_document(
        &self,
        tenant_id: &TenantId,
        document_id: &str,
        version: &str,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The visible chunks among `ids` (in no particular order).
    async fn visible_chunks(
        &self,
        tenant_id: &TenantId,
        ids: &[i64],
    ) -> Result<Vec<VisibleChunk>, StoreError>;
    /// The chunks of one version of a document, in order, with embeddings.
    async fn document_chunks(
        &self,
        tenant_id: &TenantId,
        document_id: &str,
        version: &str,
    ) -> Result<Vec<KnowledgeChunkRecord>, StoreError>;
    /// `(document_id, chunk_id)` of every visible chunk of a collection.
    async fn visible_chunk_ids(
        &self,
        tenant_id: &TenantId,
        collection_id: &str,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Attributes of a collection's documents that have a visible version.
    async fn document_attributes(
        &self,
        tenant_id: &TenantId,
        collection_id: &str,
    ) -> Result<Vec<DocumentAttributes>, StoreError>;
    /// Every collection of every tenant (the index reconciliation at start).
    async fn all_collections(&self) -> Result<Vec<KnowledgeCollectionRecord>, StoreError>;

    async fn get_job(
        &self,
        tenant_id: &TenantId,
        id: &str,
    ) -> Result<Option<KnowledgeJobRecord>, StoreError>;
    async fn update_job(&self, job: &KnowledgeJobRecord) -> Result<(), StoreError>;
    /// Jobs of every tenant that are queued or were running when the process stopped.
    async fn unfinished_jobs(&self) -> Result<Vec<KnowledgeJobRecord>, StoreError>;
}

#[derive(FromRow)]
struct CollectionRow {
    id: String,
    tenant_id: String,
    name: String,
    description: Option<String>,
    embedding_model: String,
    dimensions: i64,
    chunk_max_tokens: i64,
    chunk_overlap_tokens: i64,
    created_at: i64,
    updated_at: i64,
}

#[derive(FromRow)]
struct CollectionSummaryRow {
    #[sqlx(flatten)]
    collection: CollectionRow,
    documents: i64,
    ready_documents: i64,
    chunks: i64,
}

#[derive(FromRow)]
struct DocumentRow {
    id: String,
    tenant_id: String,
    collection_id: String,
    source: Option<String>,
    title: String,
    format: String,
    content_hash: String,
    tags: String,
    metadata: String,
    extracted_text: String,
    bytes: i64,
    pages: Option<i64>,
    status: String,
    version: String,
    active_version: Option<String>,
    error: Option<String>,
    chunk_count: i64,
    token_count: i64,
    created_at: i64,
    updated_at: i64,
}

#[derive(FromRow)]
struct ChunkRow {
    id: i64,
    tenant_id: String,
    collection_id: String,
    document_id: String,
    version: String,
    ordinal: i64,
    content: String,
    heading_path: String,
    start_offset: i64,
    end_offset: i64,
    token_count: i64,
    embedding: Vec<u8>,
}

#[derive(FromRow)]
struct VisibleChunkRow {
    #[sqlx(flatten)]
    chunk: ChunkRow,
    title: String,
    source: Option<String>,
}

#[derive(FromRow)]
struct JobRow {
    id: String,
    tenant_id: String,
    collection_id: String,
    document_id: String,
    version: String,
    status: String,
    stage: String,
    done: i64,
    total: i64,
    error: Option<String>,
    created_by: String,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
}

const COLLECTION_COLUMNS: &str = "id, tenant_id, name, description, embedding_model, dimensions, \
     chunk_max_tokens, chunk_overlap_tokens, created_at, updated_at";

const DOCUMENT_COLUMNS: &str = "id, tenant_id, collection_id, source, title, format, \
     content_hash, tags, metadata, extracted_text, bytes, pages, status, version, active_version, \
     error, chunk_count, token_count, created_at, updated_at";

const CHUNK_COLUMNS: &str = "c.id, c.tenant_id, c.collection_id, c.document_id, c.version, \
     c.ordinal, c.content, c.heading_path, c.start_offset, c.end_offset, c.token_count, \
     c.embedding";

const JOB_COLUMNS: &str = "id, tenant_id, collection_id, document_id, version, status, stage, \
     done, total, error, created_by, created_at, started_at, finished_at";

fn corrupt(table: &'static str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table,
        problem: err.to_string(),
    }
}

fn time(table: &'static str, millis: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(millis)
        .single()
        .ok_or_else(|| corrupt(table, format!("timestamp {millis} out of range")))
}

fn tenant(table: &'static str, raw: &str) -> Result<TenantId, StoreError> {
    TenantId::parse(raw).map_err(|err| corrupt(table, err))
}

impl TryFrom<CollectionRow> for KnowledgeCollectionRecord {
    type Error = StoreError;

    fn try_from(row: CollectionRow) -> Result<Self, StoreError> {
        const TABLE: &str = "knowledge_collections";
        Ok(KnowledgeCollectionRecord {
            id: row.id,
            tenant_id: tenant(TABLE, &row.tenant_id)?,
            name: row.name,
            description: row.description,
            embedding_model: row.embedding_model,
            dimensions: row.dimensions,
            chunk_max_tokens: row.chunk_max_tokens,
            chunk_overlap_tokens: row.chunk_overlap_tokens,
            created_at: time(TABLE, row.created_at)?,
            updated_at: time(TABLE, row.updated_at)?,
        })
    }
}

impl TryFrom<DocumentRow> for KnowledgeDocumentRecord {
    type Error = StoreError;

    fn try_from(row: DocumentRow) -> Result<Self, StoreError> {
        const TABLE: &str = "knowledge_documents";
        Ok(KnowledgeDocumentRecord {
            id: row.id,
            tenant_id: tenant(TABLE, &row.tenant_id)?,
            collection_id: row.collection_id,
            source: row.source,
            title: row.title,
            format: row.format,
            content_hash: row.content_hash,
            tags: row.tags,
            metadata: row.metadata,
            extracted_text: row.extracted_text,
            bytes: row.bytes,
            pages: row.pages,
            status: row.status,
            version: row.version,
            active_version: row.active_version,
            error: row.error,
            chunk_count: row.chunk_count,
            token_count: row.token_count,
            created_at: time(TABLE, row.created_at)?,
            updated_at: time(TABLE, row.updated_at)?,
        })
    }
}

impl TryFrom<ChunkRow> for KnowledgeChunkRecord {
    type Error = StoreError;

    fn try_from(row: ChunkRow) -> Result<Self, StoreError> {
        Ok(KnowledgeChunkRecord {
            id: row.id,
            tenant_id: tenant("knowledge_chunks", &row.tenant_id)?,
            collection_id: row.collection_id,
            document_id: row.document_id,
            version: row.version,
            ordinal: row.ordinal,
            content: row.content,
            heading_path: row.heading_path,
            start_offset: row.start_offset,
            end_offset: row.end_offset,
            token_count: row.token_count,
            embedding: row.embedding,
        })
    }
}

impl TryFrom<JobRow> for KnowledgeJobRecord {
    type Error = StoreError;

    fn try_from(row: JobRow) -> Result<Self, StoreError> {
        const TABLE: &str = "knowledge_jobs";
        Ok(KnowledgeJobRecord {
            id: row.id,
            tenant_id: tenant(TABLE, &row.tenant_id)?,
            collection_id: row.collection_id,
            document_id: row.document_id,
            version: row.version,
            status: row.status,
            stage: row.stage,
            done: row.done,
            total: row.total,
            error: row.error,
            created_by: row.created_by,
            created_at: time(TABLE, row.created_at)?,
            started_at: row.started_at.map(|at| time(TABLE, at)).transpose()?,
            finished_at: row.finished_at.map(|at| time(TABLE, at)).transpose()?,
        })
    }
}

/// `$first, $first+1, …` for `count` parameters.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One implementation for both backends: the SQL below is valid for SQLite and PostgreSQL.
macro_rules! impl_knowledge_store {
    ($store:ty) => {
        #[async_trait]
        impl KnowledgeStore for $store {
            async fn insert_collection(
                &self,
                collection: &KnowledgeCollectionRecord,
            ) -> Result<(), StoreError> {
                sqlx::query(&format!(
                    "INSERT INTO knowledge_collections ({COLLECTION_COLUMNS}) VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ))
                .bind(&collection.id)
                .bind(collection.tenant_id.as_str())
                .bind(&collection.name)
                .bind(&collection.description)
                .bind(&collection.embedding_model)
                .bind(collection.dimensions)
                .bind(collection.chunk_max_tokens)
                .bind(collection.chunk_overlap_tokens)
                .bind(collection.created_at.timestamp_millis())
                .bind(collection.updated_at.timestamp_millis())
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn get_collection(
                &self,
                tenant_id: &TenantId,
                id: &str,
            ) -> Result<Option<KnowledgeCollectionRecord>, StoreError> {
                let row: Option<CollectionRow> = sqlx::query_as(&format!(
                    "SELECT {COLLECTION_COLUMNS} FROM knowledge_collections \
                     WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant_id.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(KnowledgeCollectionRecord::try_from).transpose()
            }

            async fn get_collection_by_name(
                &self,
                tenant_id: &TenantId,
                name: &str,
            ) -> Result<Option<KnowledgeCollectionRecord>, StoreError> {
                let row: Option<CollectionRow> = sqlx::query_as(&format!(
                    "SELECT {COLLECTION_COLUMNS} FROM knowledge_collections \
                     WHERE tenant_id = $1 AND name = $2"
                ))
                .bind(tenant_id.as_str())
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
                row.map(KnowledgeCollectionRecord::try_from).transpose()
            }

            async fn list_collections(
                &self,
                tenant_id: &TenantId,
            ) -> Result<Vec<KnowledgeCollectionSummary>, StoreError> {
                let rows: Vec<CollectionSummaryRow> = sqlx::query_as(
                    "SELECT k.id, k.tenant_id, k.name, k.description, k.embedding_model, \
                     k.dimensions, k.chunk_max_tokens, k.chunk_overlap_tokens, k.created_at, \
                     k.updated_at, \
                     (SELECT COUNT(*) FROM knowledge_documents d WHERE d.collection_id = k.id) \
                        AS documents, \
                     (SELECT COUNT(*) FROM knowledge_documents d WHERE d.collection_id = k.id \
                        AND d.active_version IS NOT NULL) AS ready_documents, \
                     CAST((SELECT COALESCE(SUM(d.chunk_count), 0) FROM knowledge_documents d \
                        WHERE d.collection_id = k.id AND d.active_version IS NOT NULL) AS BIGINT) AS chunks \
                     FROM knowledge_collections k WHERE k.tenant_id = $1 ORDER BY k.name",
                )
                .bind(tenant_id.as_str())
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|row| {
                        Ok(KnowledgeCollectionSummary {
                            documents: row.documents,
                            ready_documents: row.ready_documents,
                            chunks: row.chunks,
                            collection: KnowledgeCollectionRecord::try_from(row.collection)?,
                        })
                    })
                    .collect()
            }

            async fn delete_collection(
                &self,
                tenant_id: &TenantId,
                id: &str,
            ) -> Result<bool, StoreError> {
                let result = sqlx::query(
                    "DELETE FROM knowledge_collections WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant_id.as_str())
                .bind(id)
                .execute(&self.writer)
                .await?;
                Ok(result.rows_affected() > 0)
            }

            async fn set_collection_model(
                &self,
                tenant_id: &TenantId,
                id: &str,
                embedding_model: &str,
                dimensions: i64,
                updated_at: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE knowledge_collections SET embedding_model = $3, dimensions = $4, \
                     updated_at = $5 WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant_id.as_str())
                .bind(id)
                .bind(embedding_model)
                .bind(dimensions)
                .bind(updated_at.timestamp_millis())
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn get_document(
                &self,
                tenant_id: &TenantId,
                id: &str,
            ) -> Result<Option<KnowledgeDocumentRecord>, StoreError> {
                let row: Option<DocumentRow> = sqlx::query_as(&format!(
                    "SELECT {DOCUMENT_COLUMNS} FROM knowledge_documents \
                     WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant_id.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(KnowledgeDocumentRecord::try_from).transpose()
            }

            async fn find_document_by_source(
                &self,
                tenant_id: &TenantId,
                collection_id: &str,
                source: &str,
            ) -> Result<Option<KnowledgeDocumentRecord>, StoreError> {
                let row: Option<DocumentRow> = sqlx::query_as(&format!(
                    "SELECT {DOCUMENT_COLUMNS} FROM knowledge_documents \
                     WHERE tenant_id = $1 AND collection_id = $2 AND source = $3"
                ))
                .bind(tenant_id.as_str())
                .bind(collection_id)
                .bind(source)
                .fetch_optional(&self.pool)
                .await?;
                row.map(KnowledgeDocumentRecord::try_from).transpose()
            }

            async fn find_document_by_hash(
                &self,
                tenant_id: &TenantId,
                collection_id: &str,
                content_hash: &str,
            ) -> Result<Option<KnowledgeDocumentRecord>, StoreError> {
                let row: Option<DocumentRow> = sqlx::query_as(&format!(
                    "SELECT {DOCUMENT_COLUMNS} FROM knowledge_documents \
                     WHERE tenant_id = $1 AND collection_id = $2 AND content_hash = $3 \
                     ORDER BY created_at LIMIT 1"
                ))
                .bind(tenant_id.as_str())
                .bind(collection_id)
                .bind(content_hash)
                .fetch_optional(&self.pool)
                .await?;
                row.map(KnowledgeDocumentRecord::try_from).transpose()
            }

            async fn list_documents(
                &self,
                tenant_id: &TenantId,
                collection_id: &str,
                after: Option<(DateTime<Utc>, String)>,
                limit: u32,
            ) -> Result<Vec<KnowledgeDocumentRecord>, StoreError> {
                let (after_at, after_id) = match after {
                    Some((at, id)) => (Some(at.timestamp_millis()), Some(id)),
                    None => (None, None),
                };
                let rows: Vec<DocumentRow> = sqlx::query_as(&format!(
                    "SELECT {DOCUMENT_COLUMNS} FROM knowledge_documents \
                     WHERE tenant_id = $1 AND collection_id = $2 \
                     AND (CAST($3 AS BIGINT) IS NULL OR created_at > $3 \
                          OR (created_at = $3 AND id > $4)) \
                     ORDER BY created_at, id LIMIT $5"
                ))
                .bind(tenant_id.as_str())
                .bind(collection_id)
                .bind(after_at)
                .bind(after_id)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(KnowledgeDocumentRecord::try_from)
                    .collect()
            }

            async fn submit_document(
                &self,
                document: &KnowledgeDocumentRecord,
                job: &KnowledgeJobRecord,
            ) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                // An upsert by id: a new version keeps the document's identity, creation time
                // and active version (still searchable until the new one is activated).
                sqlx::query(&format!(
                    "INSERT INTO knowledge_documents ({DOCUMENT_COLUMNS}) VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                      $17, $18, $19, $20) \
                     ON CONFLICT (id) DO UPDATE SET source = excluded.source, \
                     title = excluded.title, format = excluded.format, \
                     content_hash = excluded.content_hash, tags = excluded.tags, \
                     metadata = excluded.metadata, extracted_text = excluded.extracted_text, \
                     bytes = excluded.bytes, pages = excluded.pages, status = excluded.status, \
                     version = excluded.version, error = NULL, updated_at = excluded.updated_at"
                ))
                .bind(&document.id)
                .bind(document.tenant_id.as_str())
                .bind(&document.collection_id)
                .bind(&document.source)
                .bind(&document.title)
                .bind(&document.format)
                .bind(&document.content_hash)
                .bind(&document.tags)
                .bind(&document.metadata)
                .bind(&document.extracted_text)
                .bind(document.bytes)
                .bind(document.pages)
                .bind(&document.status)
                .bind(&document.version)
                .bind(&document.active_version)
                .bind(&document.error)
                .bind(document.chunk_count)
                .bind(document.token_count)
                .bind(document.created_at.timestamp_millis())
                .bind(document.updated_at.timestamp_millis())
                .execute(&mut *tx)
                .await?;
                sqlx::query(&format!(
                    "INSERT INTO knowledge_jobs ({JOB_COLUMNS}) VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                ))
                .bind(&job.id)
                .bind(job.tenant_id.as_str())
                .bind(&job.collection_id)
                .bind(&job.document_id)
                .bind(&job.version)
                .bind(&job.status)
                .bind(&job.stage)
                .bind(job.done)
                .bind(job.total)
                .bind(&job.error)
                .bind(&job.created_by)
                .bind(job.created_at.timestamp_millis())
                .bind(job.started_at.map(|at| at.timestamp_millis()))
                .bind(job.finished_at.map(|at| at.timestamp_millis()))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_document(
                &self,
                tenant_id: &TenantId,
                id: &str,
            ) -> Result<bool, StoreError> {
                let result =
                    sqlx::query("DELETE FROM knowledge_documents WHERE tenant_id = $1 AND id = $2")
                        .bind(tenant_id.as_str())
                        .bind(id)
                        .execute(&self.writer)
                        .await?;
                Ok(result.rows_affected() > 0)
            }

            async fn insert_chunks(
                &self,
                chunks: &mut [KnowledgeChunkRecord],
            ) -> Result<(), StoreError> {
                let Some(first) = chunks.first() else {
                    return Ok(());
                };
                let (document_id, version) = (first.document_id.clone(), first.version.clone());
                let mut tx = self.writer.begin().await?;
                sqlx::query("DELETE FROM knowledge_chunks WHERE document_id = $1 AND version = $2")
                    .bind(&document_id)
                    .bind(&version)
                    .execute(&mut *tx)
                    .await?;
                for chunk in chunks.iter_mut() {
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO knowledge_chunks (tenant_id, collection_id, document_id, \
                         version, ordinal, content, heading_path, start_offset, end_offset, \
                         token_count, embedding) VALUES \
                         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                    )
                    .bind(chunk.tenant_id.as_str())
                    .bind(&chunk.collection_id)
                    .bind(&chunk.document_id)
                    .bind(&chunk.version)
                    .bind(chunk.ordinal)
                    .bind(&chunk.content)
                    .bind(&chunk.heading_path)
                    .bind(chunk.start_offset)
                    .bind(chunk.end_offset)
                    .bind(chunk.token_count)
                    .bind(&chunk.embedding)
                    .fetch_one(&mut *tx)
                    .await?;
                    chunk.id = id;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn activate(
                &self,
                tenant_id: &TenantId,
                document_id: &str,
                version: &str,
                chunk_count: i64,
                token_count: i64,
                at: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer.begin().await?;
                let updated = sqlx::query(
                    "UPDATE knowledge_documents SET active_version = $3, status = 'ready', \
                     error = NULL, chunk_count = $4, token_count = $5, updated_at = $6 \
                     WHERE tenant_id = $1 AND id = $2 AND version = $3",
                )
                .bind(tenant_id.as_str())
                .bind(document_id)
                .bind(version)
                .bind(chunk_count)
                .bind(token_count)
                .bind(at.timestamp_millis())
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() == 0 {
                    return Ok(false);
                }
                sqlx::query(
                    "DELETE FROM knowledge_chunks WHERE document_id = $1 AND version <> $2",
                )
                .bind(document_id)
                .bind(version)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn fail_document(
                &self,
                tenant_id: &TenantId,
                document_id: &str,
                version: &str,
                error: &str,
                at: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE knowledge_documents SET status = 'failed', error = $4, \
                     updated_at = $5 WHERE tenant_id = $1 AND id = $2 AND version = $3",
                )
                .bind(tenant_id.as_str())
                .bind(document_id)
                .bind(version)
                .bind(error)
                .bind(at.timestamp_millis())
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn visible_chunks(
                &self,
                tenant_id: &TenantId,
                ids: &[i64],
            ) -> Result<Vec<VisibleChunk>, StoreError> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT {CHUNK_COLUMNS}, d.title, d.source FROM knowledge_chunks c \
                     JOIN knowledge_documents d ON d.id = c.document_id \
                     AND d.active_version = c.version \
                     WHERE c.tenant_id = $1 AND c.id IN ({})",
                    placeholders(2, ids.len())
                );
                let mut query = sqlx::query_as::<_, VisibleChunkRow>(&sql).bind(tenant_id.as_str());
                for id in ids {
                    query = query.bind(*id);
                }
                let rows = query.fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map(|row| {
                        Ok(VisibleChunk {
                            chunk: KnowledgeChunkRecord::try_from(row.chunk)?,
                            title: row.title,
                            source: row.source,
                        })
                    })
                    .collect()
            }

            async fn document_chunks(
                &self,
                tenant_id: &TenantId,
                document_id: &str,
                version: &str,
            ) -> Result<Vec<KnowledgeChunkRecord>, StoreError> {
                let rows: Vec<ChunkRow> = sqlx::query_as(&format!(
                    "SELECT {CHUNK_COLUMNS} FROM knowledge_chunks c \
                     WHERE c.tenant_id = $1 AND c.document_id = $2 AND c.version = $3 \
                     ORDER BY c.ordinal"
                ))
                .bind(tenant_id.as_str())
                .bind(document_id)
                .bind(version)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(KnowledgeChunkRecord::try_from).collect()
            }

            async fn visible_chunk_ids(
                &self,
                tenant_id: &TenantId,
                collection_id: &str,
            ) -> Result<Vec<(String, i64)>, StoreError> {
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT c.document_id, c.id FROM knowledge_chunks c \
                     JOIN knowledge_documents d ON d.id = c.document_id \
                     AND d.active_version = c.version \
                     WHERE c.tenant_id = $1 AND c.collection_id = $2 ORDER BY c.id",
                )
                .bind(tenant_id.as_str())
                .bind(collection_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows)
            }

            async fn document_attributes(
                &self,
                tenant_id: &TenantId,
                collection_id: &str,
            ) -> Result<Vec<DocumentAttributes>, StoreError> {
                let rows: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT id, tags, metadata FROM knowledge_documents \
                     WHERE tenant_id = $1 AND collection_id = $2 \
                     AND active_version IS NOT NULL",
                )
                .bind(tenant_id.as_str())
                .bind(collection_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, tags, metadata)| DocumentAttributes { id, tags, metadata })
                    .collect())
            }

            async fn all_collections(&self) -> Result<Vec<KnowledgeCollectionRecord>, StoreError> {
                let rows: Vec<CollectionRow> = sqlx::query_as(&format!(
                    "SELECT {COLLECTION_COLUMNS} FROM knowledge_collections ORDER BY tenant_id, id"
                ))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(KnowledgeCollectionRecord::try_from)
                    .collect()
            }

            async fn get_job(
                &self,
                tenant_id: &TenantId,
                id: &str,
            ) -> Result<Option<KnowledgeJobRecord>, StoreError> {
                let row: Option<JobRow> = sqlx::query_as(&format!(
                    "SELECT {JOB_COLUMNS} FROM knowledge_jobs WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant_id.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(KnowledgeJobRecord::try_from).transpose()
            }

            async fn update_job(&self, job: &KnowledgeJobRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE knowledge_jobs SET status = $3, stage = $4, done = $5, total = $6, \
                     error = $7, started_at = $8, finished_at = $9 \
                     WHERE tenant_id = $1 AND id = $2",
                )
                .bind(job.tenant_id.as_str())
                .bind(&job.id)
                .bind(&job.status)
                .bind(&job.stage)
                .bind(job.done)
                .bind(job.total)
                .bind(&job.error)
                .bind(job.started_at.map(|at| at.timestamp_millis()))
                .bind(job.finished_at.map(|at| at.timestamp_millis()))
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn unfinished_jobs(&self) -> Result<Vec<KnowledgeJobRecord>, StoreError> {
                let rows: Vec<JobRow> = sqlx::query_as(&format!(
                    "SELECT {JOB_COLUMNS} FROM knowledge_jobs \
                     WHERE status IN ('queued', 'running') ORDER BY created_at, id"
                ))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(KnowledgeJobRecord::try_from).collect()
            }
        }
    };
}

impl_knowledge_store!(SqliteBackend);
impl_knowledge_store!(PgBackend);
