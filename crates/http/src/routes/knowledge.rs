//! The knowledge base: collections, documents (JSON text or a raw upload of Markdown, text,
//! HTML or PDF), ingestion jobs, search and grounded answers (`/v1/knowledge/…`).

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use chrono::{DateTime, Utc};
use flywheel_core::ValidationErrors;
use flywheel_services::knowledge::{
    AnswerInput, AnswerOutcome, DocumentInput, DocumentSubmitted, KnowledgeService,
    NewCollectionInput, SearchFilter, SearchInput, SearchMode, SearchOutcome, SearchResult,
};
use flywheel_services::ServiceError;
use flywheel_store::{
    KnowledgeChunkRecord, KnowledgeCollectionRecord, KnowledgeCollectionSummary,
    KnowledgeDocumentRecord, KnowledgeJobRecord,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::interactions::is_json;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, Authenticated};
use crate::state::AppState;

fn service(state: &AppState) -> Result<&KnowledgeService, ApiError> {
    state.knowledge.as_deref().ok_or_else(|| {
        ApiError::from(ServiceError::Disabled(
            "the knowledge base is disabled (knowledge.enabled = false)".to_owned(),
        ))
    })
}

// ----- collections -----

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollectionRequest {
    /// Unique per tenant: letters, digits, `-`, `_`, `.`.
    name: String,
    description: Option<String>,
    /// A gateway model (`provider/model` or alias); default `knowledge.embedding_model`.
    embedding_model: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionResponse {
    id: String,
    name: String,
    description: Option<String>,
    /// The model that made the collection's vectors; queries are embedded with it too.
    embedding_model: String,
    dimensions: i64,
    chunk_max_tokens: i64,
    chunk_overlap_tokens: i64,
    documents: Option<i64>,
    /// Documents with a searchable version.
    ready_documents: Option<i64>,
    chunks: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl CollectionResponse {
    fn of(record: KnowledgeCollectionRecord, counts: Option<(i64, i64, i64)>) -> Self {
        CollectionResponse {
            id: record.id,
            name: record.name,
            description: record.description,
            embedding_model: record.embedding_model,
            dimensions: record.dimensions,
            chunk_max_tokens: record.chunk_max_tokens,
            chunk_overlap_tokens: record.chunk_overlap_tokens,
            documents: counts.map(|c| c.0),
            ready_documents: counts.map(|c| c.1),
            chunks: counts.map(|c| c.2),
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }

    fn of_summary(summary: KnowledgeCollectionSummary) -> Self {
        let counts = (summary.documents, summary.ready_documents, summary.chunks);
        CollectionResponse::of(summary.collection, Some(counts))
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionList {
    data: Vec<CollectionResponse>,
}

/// Creates a collection (admins). Its embedding model is probed for its dimensions.
#[utoipa::path(post, path = "/v1/knowledge/collections", tag = "knowledge", security(("bearer" = [])),
    request_body = CreateCollectionRequest,
    responses((status = 201, body = CollectionResponse), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the name is taken"), (status = 422, body = ErrorBody)))]
pub async fn create_collection(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<CreateCollectionRequest>,
) -> Result<(StatusCode, Json<CollectionResponse>), ApiError> {
    let collection = service(&state)?
        .create_collection(
            &principal,
            NewCollectionInput {
                name: body.name,
                description: body.description,
                embedding_model: body.embedding_model,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CollectionResponse::of(collection, Some((0, 0, 0)))),
    ))
}

/// The tenant's collections with their counts.
#[utoipa::path(get, path = "/v1/knowledge/collections", tag = "knowledge", security(("bearer" = [])),
    responses((status = 200, body = CollectionList)))]
pub async fn list_collections(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Json<CollectionList>, ApiError> {
    let summaries = service(&state)?.list_collections(&principal).await?;
    Ok(Json(CollectionList {
        data: summaries
            .into_iter()
            .map(CollectionResponse::of_summary)
            .collect(),
    }))
}

/// One collection, by id or name.
#[utoipa::path(get, path = "/v1/knowledge/collections/{collection}", tag = "knowledge", security(("bearer" = [])),
    params(("collection" = String, Path, description = "id or name")),
    responses((status = 200, body = CollectionResponse), (status = 404, body = ErrorBody)))]
pub async fn get_collection(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(collection): Path<String>,
) -> Result<Json<CollectionResponse>, ApiError> {
    let service = service(&state)?;
    let record = service.collection(&principal, &collection).await?;
    let summary = service
        .list_collections(&principal)
        .await?
        .into_iter()
        .find(|summary| summary.collection.id == record.id);
    Ok(Json(match summary {
        Some(summary) => CollectionResponse::of_summary(summary),
        None => CollectionResponse::of(record, None),
    }))
}

/// Deletes a collection with its documents and indexes (admins).
#[utoipa::path(delete, path = "/v1/knowledge/collections/{collection}", tag = "knowledge", security(("bearer" = [])),
    params(("collection" = String, Path, description = "id or name")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_collection(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(collection): Path<String>,
) -> Result<StatusCode, ApiError> {
    service(&state)?
        .delete_collection(&principal, &collection)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReembedRequest {
    /// Default `knowledge.embedding_model`.
    embedding_model: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReembedResponse {
    collection: CollectionResponse,
    /// Documents queued for re-embedding; each is searchable again when its job is done.
    queued_documents: usize,
}

/// Re-embeds every document of a collection with another model (admins).
#[utoipa::path(post, path = "/v1/knowledge/collections/{collection}/reembed", tag = "knowledge", security(("bearer" = [])),
    params(("collection" = String, Path, description = "id or name")), request_body = ReembedRequest,
    responses((status = 202, body = ReembedResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reembed_collection(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(collection): Path<String>,
    ApiJson(body): ApiJson<ReembedRequest>,
) -> Result<(StatusCode, Json<ReembedResponse>), ApiError> {
    let (collection, queued) = service(&state)?
        .reembed(&principal, &collection, body.embedding_model)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ReembedResponse {
            collection: CollectionResponse::of(collection, None),
            queued_documents: queued,
        }),
    ))
}

// ----- documents -----

/// A document as JSON: `text` for text formats, or `content_base64` for any format.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentRequest {
    text: Option<String>,
    content_base64: Option<String>,
    /// `markdown`, `text`, `html` or `pdf`; default from `file_name`, then the content.
    format: Option<String>,
    file_name: Option<String>,
    title: Option<String>,
    /// Your stable key for the document (a path, a URL): sending the same source again
    /// replaces the document (re-ingested only if its content changed).
    source: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    metadata: Map<String, Value>,
    /// Ingest in the background (202 with a job) even when the document is small.
    #[serde(default)]
    background: bool,
}

/// For a raw upload (any content type but JSON): the document's attributes.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    format: Option<String>,
    file_name: Option<String>,
    title: Option<String>,
    source: Option<String>,
    /// Comma-separated.
    tags: Option<String>,
    /// A JSON object.
    metadata: Option<String>,
    background: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobResponse {
    id: String,
    document_id: String,
    collection_id: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled` (superseded by a newer upload).
    status: String,
    /// `queued`, `chunking`, `embedding`, `indexing`, `done`.
    stage: String,
    /// Chunks embedded so far and in all.
    done: i64,
    total: i64,
    error: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<KnowledgeJobRecord> for JobResponse {
    fn from(job: KnowledgeJobRecord) -> Self {
        JobResponse {
            id: job.id,
            document_id: job.document_id,
            collection_id: job.collection_id,
            status: job.status,
            stage: job.stage,
            done: job.done,
            total: job.total,
            error: job.error,
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkResponse {
    id: i64,
    ordinal: i64,
    content: String,
    heading_path: Vec<String>,
    /// Character offsets into the document's extracted text.
    start_offset: i64,
    end_offset: i64,
    token_count: i64,
}

impl From<KnowledgeChunkRecord> for ChunkResponse {
    fn from(chunk: KnowledgeChunkRecord) -> Self {
        ChunkResponse {
            id: chunk.id,
            ordinal: chunk.ordinal,
            content: chunk.content,
            heading_path: serde_json::from_str(&chunk.heading_path).unwrap_or_default(),
            start_offset: chunk.start_offset,
            end_offset: chunk.end_offset,
            token_count: chunk.token_count,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentResponse {
    id: String,
    collection_id: String,
    title: String,
    source: Option<String>,
    format: String,
    /// `pending`, `ready` or `failed`.
    status: String,
    /// True when a version of the document is searchable (while a new version is ingested,
    /// the previous one stays searchable).
    searchable: bool,
    /// SHA-256 of the format and the uploaded bytes.
    content_hash: String,
    tags: Vec<String>,
    #[schema(value_type = Object)]
    metadata: Value,
    bytes: i64,
    pages: Option<i64>,
    chunk_count: i64,
    token_count: i64,
    error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// On upload: `created` (ingested), `unchanged` (same content already there) or `queued`.
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<JobResponse>,
    /// With `?include=text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    extracted_text: Option<String>,
    /// With `?include=chunks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    chunks: Option<Vec<ChunkResponse>>,
}

impl DocumentResponse {
    fn of(document: KnowledgeDocumentRecord) -> Self {
        DocumentResponse {
            searchable: document.active_version.is_some(),
            id: document.id,
            collection_id: document.collection_id,
            title: document.title,
            source: document.source,
            format: document.format,
            status: document.status,
            content_hash: document.content_hash,
            tags: serde_json::from_str(&document.tags).unwrap_or_default(),
            metadata: serde_json::from_str(&document.metadata).unwrap_or(Value::Null),
            bytes: document.bytes,
            pages: document.pages,
            chunk_count: document.chunk_count,
            token_count: document.token_count,
            error: document.error,
            created_at: document.created_at,
            updated_at: document.updated_at,
            outcome: None,
            job: None,
            extracted_text: None,
            chunks: None,
        }
    }
}

fn invalid(field: &str, problem: impl Into<String>) -> ApiError {
    ApiError::from(ServiceError::from(ValidationErrors::single(field, problem)))
}

/// Adds a document, or a new version of one (same `source`), to a collection (admins and
/// services). Send JSON (`DocumentRequest`) or the file itself with its content type
/// (`text/markdown`, `text/plain`, `text/html`, `application/pdf`) and the attributes as query
/// parameters. Small documents are searchable when this returns (201); larger ones are ingested
/// by a job (202). The same content again is a no-op (200, `unchanged`).
#[utoipa::path(post, path = "/v1/knowledge/collections/{collection}/documents", tag = "knowledge", security(("bearer" = [])),
    params(("collection" = String, Path, description = "id or name"), UploadParams),
    request_body(content = DocumentRequest, description = "JSON, or the raw file with its content type"),
    responses((status = 201, body = DocumentResponse, description = "ingested"),
        (status = 200, body = DocumentResponse, description = "unchanged"),
        (status = 202, body = DocumentResponse, description = "queued: see the job"),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody, description = "unsupported, corrupt or empty file")))]
pub async fn add_document(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(collection): Path<String>,
    Query(params): Query<UploadParams>,
    request: Request,
) -> Result<Response, ApiError> {
    let service = service(&state)?;
    let (parts, body) = request.into_parts();
    // Base64 in JSON is a third larger than the file.
    let limit = service.max_document_bytes() / 3 * 4 + 64 * 1024;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::from(ServiceError::TooLarge(format!(
            "the document is larger than knowledge.max_document_bytes ({} bytes)",
            service.max_document_bytes()
        )))
    })?;
    let input = if is_json(&parts.headers) {
        let request: DocumentRequest =
            serde_json::from_slice(&bytes).map_err(|err| crate::extract::json_error(".", &err))?;
        let content = match (request.text, request.content_base64) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|err| invalid("content_base64", format!("is not valid base64: {err}")))?,
            _ => {
                return Err(invalid(
                    "text",
                    "give exactly one of `text` and `content_base64`",
                ))
            }
        };
        DocumentInput {
            collection,
            bytes: content,
            format: request.format,
            media_type: None,
            file_name: request.file_name,
            title: request.title,
            source: request.source,
            tags: request.tags,
            metadata: request.metadata,
            background: request.background,
        }
    } else {
        let metadata = match params.metadata.as_deref() {
            None => Map::new(),
            Some(raw) => match serde_json::from_str::<Value>(raw) {
                Ok(Value::Object(map)) => map,
                _ => return Err(invalid("metadata", "must be a JSON object")),
            },
        };
        DocumentInput {
            collection,
            bytes: bytes.to_vec(),
            format: params.format,
            media_type: parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
            file_name: params.file_name,
            title: params.title,
            source: params.source,
            tags: params
                .tags
                .map(|tags| {
                    tags.split(',')
                        .map(|tag| tag.trim().to_owned())
                        .filter(|tag| !tag.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            metadata,
            background: params.background.unwrap_or(false),
        }
    };
    let submitted = service.add_document(&principal, input).await?;
    let (status, response) = match submitted {
        DocumentSubmitted::Unchanged(document) => {
            let mut response = DocumentResponse::of(document);
            response.outcome = Some("unchanged");
            (StatusCode::OK, response)
        }
        DocumentSubmitted::Ingested(document) => {
            let mut response = DocumentResponse::of(document);
            response.outcome = Some("created");
            (StatusCode::CREATED, response)
        }
        DocumentSubmitted::Queued(document, job) => {
            let mut response = DocumentResponse::of(document);
            response.outcome = Some("queued");
            response.job = Some((*job).into());
            (StatusCode::ACCEPTED, response)
        }
    };
    Ok((status, Json(response)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListDocumentsParams {
    /// At most 500; default 100.
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentList {
    data: Vec<DocumentResponse>,
    next_cursor: Option<String>,
}

/// A collection's documents, oldest first.
#[utoipa::path(get, path = "/v1/knowledge/collections/{collection}/documents", tag = "knowledge", security(("bearer" = [])),
    params(("collection" = String, Path, description = "id or name"), ListDocumentsParams),
    responses((status = 200, body = DocumentList), (status = 404, body = ErrorBody)))]
pub async fn list_documents(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(collection): Path<String>,
    Query(params): Query<ListDocumentsParams>,
) -> Result<Json<DocumentList>, ApiError> {
    let limit = params.limit.unwrap_or(100).clamp(1, 500);
    let documents = service(&state)?
        .list_documents(&principal, &collection, params.cursor.as_deref(), limit)
        .await?;
    let next_cursor = (documents.len() == limit as usize)
        .then(|| documents.last().map(|doc| doc.id.clone()))
        .flatten();
    Ok(Json(DocumentList {
        data: documents.into_iter().map(DocumentResponse::of).collect(),
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DocumentParams {
    /// Comma-separated: `text` (the extracted text), `chunks` (the searchable chunks).
    include: Option<String>,
}

async fn document_in(
    service: &KnowledgeService,
    principal: &flywheel_core::Principal,
    collection: &str,
    id: &str,
) -> Result<KnowledgeDocumentRecord, ApiError> {
    let collection = service.collection(principal, collection).await?;
    let document = service.get_document(principal, id).await?;
    if document.collection_id != collection.id {
        return Err(ServiceError::NotFound(format!(
            "document {id} in collection {}",
            collection.name
        ))
        .into());
    }
    Ok(document)
}

/// A document; `?include=text,chunks` adds its extracted text and its chunks.
#[utoipa::path(get, path = "/v1/knowledge/collections/{collection}/documents/{id}", tag = "knowledge", security(("bearer" = [])),
    params(("collection" = String, Path, description = "id or name"), ("id" = String, Path), DocumentParams),
    responses((status = 200, body = DocumentResponse), (status = 404, body = ErrorBody)))]
pub async fn get_document(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path((collection, id)): Path<(String, String)>,
    Query(params): Query<DocumentParams>,
) -> Result<Json<DocumentResponse>, ApiError> {
    let service = service(&state)?;
    let document = document_in(service, &principal, &collection, &id).await?;
    let include: Vec<&str> = params
        .include
        .as_deref()
        .map(|raw| raw.split(',').map(str::trim).collect())
        .unwrap_or_default();
    for item in &include {
        if !matches!(*item, "text" | "chunks") {
            return Err(invalid(
                "include",
                format!("unknown item {item:?}: use text, chunks"),
            ));
        }
    }
    let text = include
        .contains(&"text")
        .then(|| document.extracted_text.clone());
    let mut response = DocumentResponse::of(document);
    response.extracted_text = text;
    if include.contains(&"chunks") {
        let chunks = service.document_chunks(&principal, &id).await?;
        response.chunks = Some(chunks.into_iter().map(ChunkResponse::from).collect());
    }
    Ok(Json(response))
}

/// Deletes a document (admins and services); its chunks stop being searchable at once.
#[utoipa::path(delete, path = "/v1/knowledge/collections/{collection}/documents/{id}", tag = "knowledge", security(("bearer" = [])),
    params(("collection" = String, Path, description = "id or name"), ("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_document(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path((collection, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let service = service(&state)?;
    document_in(service, &principal, &collection, &id).await?;
    service.delete_document(&principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An ingestion job's status and progress.
#[utoipa::path(get, path = "/v1/knowledge/jobs/{id}", tag = "knowledge", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = JobResponse), (status = 404, body = ErrorBody)))]
pub async fn get_job(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<JobResponse>, ApiError> {
    let job = service(&state)?.get_job(&principal, &id).await?;
    Ok(Json(job.into()))
}

// ----- search and answers -----

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterRequest {
    /// Documents carrying all of these tags.
    #[serde(default)]
    tags: Vec<String>,
    /// Documents whose metadata has these values (equality per key).
    #[serde(default)]
    #[schema(value_type = Object)]
    metadata: Map<String, Value>,
    document_ids: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    query: String,
    /// The collection's id or name.
    collection: String,
    /// 1–20, default 5.
    top_k: Option<usize>,
    /// The candidate pool, default `min(10·top_k, 100)`.
    num_candidates: Option<usize>,
    /// `vector`, `lexical` or `hybrid` (default: reciprocal-rank fusion of both).
    mode: Option<String>,
    filter: Option<FilterRequest>,
    /// Hybrid only: re-score the fused candidates by exact cosine similarity.
    #[serde(default)]
    rescore: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHit {
    document_id: String,
    chunk_id: i64,
    title: String,
    source: Option<String>,
    /// The chunk.
    content: String,
    /// Cosine similarity (vector), BM25 (lexical) or the fused reciprocal-rank score (hybrid).
    score: f32,
    heading_path: Vec<String>,
    start_offset: i64,
    end_offset: i64,
}

impl From<SearchResult> for SearchHit {
    fn from(result: SearchResult) -> Self {
        SearchHit {
            document_id: result.document_id,
            chunk_id: result.chunk_id,
            title: result.title,
            source: result.source,
            content: result.content,
            score: result.score,
            heading_path: result.heading_path,
            start_offset: result.start_offset,
            end_offset: result.end_offset,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse {
    collection_id: String,
    mode: &'static str,
    top_k: usize,
    num_candidates: usize,
    took_ms: u64,
    results: Vec<SearchHit>,
}

fn search_input(
    query: String,
    collection: String,
    top_k: Option<usize>,
    num_candidates: Option<usize>,
    mode: Option<String>,
    filter: Option<FilterRequest>,
    rescore: bool,
) -> Result<SearchInput, ApiError> {
    let mode = match mode.as_deref() {
        None => SearchMode::Hybrid,
        Some(raw) => SearchMode::parse(raw).ok_or_else(|| {
            invalid(
                "mode",
                format!("unknown mode {raw:?}: use vector, lexical or hybrid"),
            )
        })?,
    };
    let filter = filter.unwrap_or_default();
    Ok(SearchInput {
        collection,
        query,
        top_k,
        num_candidates,
        mode,
        filter: SearchFilter {
            tags: filter.tags,
            metadata: filter.metadata,
            document_ids: filter.document_ids,
        },
        rescore,
    })
}

impl From<SearchOutcome> for SearchResponse {
    fn from(outcome: SearchOutcome) -> Self {
        SearchResponse {
            collection_id: outcome.collection_id,
            mode: outcome.mode.as_str(),
            top_k: outcome.top_k,
            num_candidates: outcome.num_candidates,
            took_ms: outcome.took_ms,
            results: outcome.results.into_iter().map(SearchHit::from).collect(),
        }
    }
}

/// Searches a collection: vector, lexical (BM25) or hybrid.
#[utoipa::path(post, path = "/v1/knowledge/search", tag = "knowledge", security(("bearer" = [])),
    request_body = SearchRequest,
    responses((status = 200, body = SearchResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<SearchRequest>,
) -> Result<Json<SearchResponse>, ApiError> {
    let input = search_input(
        body.query,
        body.collection,
        body.top_k,
        body.num_candidates,
        body.mode,
        body.filter,
        body.rescore,
    )?;
    let outcome = service(&state)?.search(&principal, input).await?;
    Ok(Json(outcome.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    question: String,
    collection: String,
    top_k: Option<usize>,
    num_candidates: Option<usize>,
    mode: Option<String>,
    filter: Option<FilterRequest>,
    /// Default `knowledge.answer_model`.
    model: Option<String>,
    max_tokens: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CitationResponse {
    /// The `n` of `[n]` in the answer.
    number: usize,
    /// Whether the answer cites this passage.
    cited: bool,
    #[serde(flatten)]
    passage: SearchHit,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnswerResponse {
    answer: String,
    /// The passages given to the model, numbered as cited.
    citations: Vec<CitationResponse>,
    model: String,
    /// The `knowledge_answer` interaction that records question, answer and citations.
    interaction_id: String,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

impl From<AnswerOutcome> for AnswerResponse {
    fn from(outcome: AnswerOutcome) -> Self {
        AnswerResponse {
            answer: outcome.answer,
            citations: outcome
                .citations
                .into_iter()
                .map(|citation| CitationResponse {
                    number: citation.number,
                    cited: citation.cited,
                    passage: citation.result.into(),
                })
                .collect(),
            model: outcome.model,
            interaction_id: outcome.interaction_id,
            input_tokens: outcome.input_tokens,
            output_tokens: outcome.output_tokens,
        }
    }
}

/// Retrieval and generation in one call: an answer grounded in the collection, citing its
/// passages as `[n]`.
#[utoipa::path(post, path = "/v1/knowledge/answer", tag = "knowledge", security(("bearer" = [])),
    request_body = AnswerRequest,
    responses((status = 200, body = AnswerResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn answer(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<AnswerRequest>,
) -> Result<Json<AnswerResponse>, ApiError> {
    let search = search_input(
        body.question,
        body.collection,
        body.top_k,
        body.num_candidates,
        body.mode,
        body.filter,
        false,
    )?;
    let outcome = service(&state)?
        .answer(
            &principal,
            AnswerInput {
                search,
                model: body.model,
                max_tokens: body.max_tokens,
            },
        )
        .await?;
    Ok(Json(outcome.into()))
}
