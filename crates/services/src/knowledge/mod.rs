//! The knowledge base: collections of documents, ingestion (extraction, chunking, embedding
//! through the gateway, indexing), search and grounded answers.
//!
//! The operational store is the source of truth (documents, their extracted text, chunks with
//! their embeddings); the index backend (`flywheel_knowledge::index`) is derived from it. A
//! document becomes searchable in one store transaction once every chunk of it is indexed
//! ([`flywheel_store::KnowledgeStore::activate`]); search results are joined with the store, so
//! chunks of an unfinished or superseded version are never shown. Ingestion jobs are rows: a
//! restart resumes the unfinished ones, and [`KnowledgeService::reconcile`] re-indexes what the
//! embedded backend lost with a snapshot.
//!
//! Who may do what: admins manage collections; admins and services add and delete documents;
//! every role of the tenant may read, search and ask.

mod search;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use flywheel_config::KnowledgeConfig;
use flywheel_core::{AuthMethod, Principal, Role, Subject, ValidationErrors};
use flywheel_knowledge::chunk::{chunk_text, ChunkOptions, EstimatedTokens, TokenCounter};
use flywheel_knowledge::extract::{extract, ExtractError, SourceFormat};
use flywheel_knowledge::index::{IndexError, IndexedChunk, KnowledgeIndex, Scope};
use flywheel_store::{
    KnowledgeChunkRecord, KnowledgeCollectionRecord, KnowledgeCollectionSummary,
    KnowledgeDocumentRecord, KnowledgeJobRecord, KnowledgeStore,
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::enrich::ClientContext;
use crate::gateway::{EmbeddingsInput, GatewayService};
use crate::ingest::IngestService;
use crate::ServiceError;

pub use search::{
    AnswerInput, AnswerOutcome, Citation, SearchFilter, SearchInput, SearchMode, SearchOutcome,
    SearchResult,
};

/// Most tags per document, and their length.
const MAX_TAGS: usize = 32;
const MAX_TAG_CHARS: usize = 64;
/// Queued background jobs before uploads are refused with 503.
const JOB_QUEUE: usize = 1_024;

/// A collection to create.
#[derive(Debug, Clone)]
pub struct NewCollectionInput {
    pub name: String,
    pub description: Option<String>,
    /// Defaults to `knowledge.embedding_model`.
    pub embedding_model: Option<String>,
}

/// A document to add (or a new version of one, by `source`).
#[derive(Debug, Clone, Default)]
pub struct DocumentInput {
    /// The collection's id or name.
    pub collection: String,
    pub bytes: Vec<u8>,
    /// `markdown`, `text`, `html` or `pdf`; else from the media type, the file name, the bytes.
    pub format: Option<String>,
    pub media_type: Option<String>,
    pub file_name: Option<String>,
    pub title: Option<String>,
    /// The caller's stable key (a path, a URL): a new upload with the same source replaces
    /// the document.
    pub source: Option<String>,
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
    /// Ingest in the background even when the document is small.
    pub background: bool,
}

/// What adding a document did.
#[derive(Debug, Clone)]
pub enum DocumentSubmitted {
    /// The same content was already there (idempotent by content hash): nothing was done.
    Unchanged(KnowledgeDocumentRecord),
    /// Ingested before returning: searchable now.
    Ingested(KnowledgeDocumentRecord),
    /// Ingestion runs in the background; the job shows its progress.
    Queued(KnowledgeDocumentRecord, Box<KnowledgeJobRecord>),
}

/// The knowledge base service. Cheap to share behind an `Arc`.
pub struct KnowledgeService {
    store: Arc<dyn KnowledgeStore>,
    index: Arc<dyn KnowledgeIndex>,
    gateway: Arc<GatewayService>,
    ingest: Arc<IngestService>,
    config: KnowledgeConfig,
    token_counter: Arc<dyn TokenCounter>,
    jobs: mpsc::Sender<String>,
    job_receiver: tokio::sync::Mutex<Option<mpsc::Receiver<String>>>,
}

impl std::fmt::Debug for KnowledgeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeService")
            .field("backend", &self.index.backend())
            .finish_non_exhaustive()
    }
}

impl KnowledgeService {
    pub fn new(
        store: Arc<dyn KnowledgeStore>,
        index: Arc<dyn KnowledgeIndex>,
        gateway: Arc<GatewayService>,
        ingest: Arc<IngestService>,
        config: KnowledgeConfig,
        token_counter: Option<Arc<dyn TokenCounter>>,
    ) -> KnowledgeService {
        let (jobs, job_receiver) = mpsc::channel(JOB_QUEUE);
        KnowledgeService {
            store,
            index,
            gateway,
            ingest,
            config,
            token_counter: token_counter.unwrap_or_else(|| Arc::new(EstimatedTokens)),
            jobs,
            job_receiver: tokio::sync::Mutex::new(Some(job_receiver)),
        }
    }

    pub fn max_document_bytes(&self) -> usize {
        self.config.max_document_bytes
    }

    pub fn backend(&self) -> &'static str {
        self.index.backend()
    }

    pub fn index(&self) -> &Arc<dyn KnowledgeIndex> {
        &self.index
    }

    // ----- collections -----

    pub async fn create_collection(
        &self,
        actor: &Principal,
        input: NewCollectionInput,
    ) -> Result<KnowledgeCollectionRecord, ServiceError> {
        require_admin(actor)?;
        let mut errors = ValidationErrors::new();
        let name = input.name.trim().to_owned();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            errors.push(
                "name",
                "must be 1 to 64 characters: letters, digits, '-', '_' or '.'",
            );
        }
        if input
            .description
            .as_ref()
            .is_some_and(|description| description.chars().count() > 2_000)
        {
            errors.push("description", "must be at most 2000 characters");
        }
        errors.into_result()?;
        if self
            .store
            .get_collection_by_name(&actor.tenant_id, &name)
            .await?
            .is_some()
        {
            return Err(ServiceError::Conflict(format!(
                "a knowledge collection named {name} already exists"
            )));
        }
        let model = input
            .embedding_model
            .filter(|model| !model.trim().is_empty())
            .unwrap_or_else(|| self.config.embedding_model.clone());
        // The probe proves the model works for this tenant and tells its dimensions.
        let probe = self
            .embed(actor, &model, vec!["dimension probe".to_owned()])
            .await?;
        let dimensions = probe.first().map(Vec::len).unwrap_or(0);
        if dimensions == 0 {
            return Err(ServiceError::Unavailable(format!(
                "the embedding model {model} returned no vector"
            )));
        }
        let now = Utc::now();
        let collection = KnowledgeCollectionRecord {
            id: Uuid::now_v7().to_string(),
            tenant_id: actor.tenant_id.clone(),
            name,
            description: input.description,
            embedding_model: model,
            dimensions: dimensions as i64,
            chunk_max_tokens: self.config.chunk_max_tokens as i64,
            chunk_overlap_tokens: self.config.chunk_overlap_tokens as i64,
            created_at: now,
            updated_at: now,
        };
        self.index
            .create_scope(&scope_of(&collection), dimensions)
            .await
            .map_err(index_error)?;
        self.store
            .insert_collection(&collection)
            .await
            .map_err(|err| match err {
                flywheel_store::StoreError::Conflict { .. } => ServiceError::Conflict(format!(
                    "a knowledge collection named {} already exists",
                    collection.name
                )),
                other => other.into(),
            })?;
        Ok(collection)
    }

    pub async fn list_collections(
        &self,
        actor: &Principal,
    ) -> Result<Vec<KnowledgeCollectionSummary>, ServiceError> {
        Ok(self.store.list_collections(&actor.tenant_id).await?)
    }

    /// A collection by id or name.
    pub async fn collection(
        &self,
        actor: &Principal,
        id_or_name: &str,
    ) -> Result<KnowledgeCollectionRecord, ServiceError> {
        let tenant = &actor.tenant_id;
        if let Some(found) = self.store.get_collection(tenant, id_or_name).await? {
            return Ok(found);
        }
        self.store
            .get_collection_by_name(tenant, id_or_name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("knowledge collection {id_or_name}")))
    }

    pub async fn delete_collection(
        &self,
        actor: &Principal,
        id_or_name: &str,
    ) -> Result<(), ServiceError> {
        require_admin(actor)?;
        let collection = self.collection(actor, id_or_name).await?;
        self.store
            .delete_collection(&actor.tenant_id, &collection.id)
            .await?;
        self.index
            .drop_scope(&scope_of(&collection))
            .await
            .map_err(index_error)?;
        Ok(())
    }

    /// Re-embeds every document of a collection with another model: the index is emptied
    /// and rebuilt, documents become searchable again as their jobs finish (never a mix of
    /// two models' vectors in one index).
    pub async fn reembed(
        &self,
        actor: &Principal,
        id_or_name: &str,
        model: Option<String>,
    ) -> Result<(KnowledgeCollectionRecord, usize), ServiceError> {
        require_admin(actor)?;
        let collection = self.collection(actor, id_or_name).await?;
        let model = model.unwrap_or_else(|| self.config.embedding_model.clone());
        let probe = self
            .embed(actor, &model, vec!["dimension probe".to_owned()])
            .await?;
        let dimensions = probe.first().map(Vec::len).unwrap_or(0);
        let scope = scope_of(&collection);
        self.index.drop_scope(&scope).await.map_err(index_error)?;
        self.index
            .create_scope(&scope, dimensions)
            .await
            .map_err(index_error)?;
        let now = Utc::now();
        self.store
            .set_collection_model(
                &actor.tenant_id,
                &collection.id,
                &model,
                dimensions as i64,
                now,
            )
            .await?;
        let collection = self.collection(actor, &collection.id).await?;
        let mut after = None;
        let mut queued = 0;
        loop {
            let page = self
                .store
                .list_documents(&actor.tenant_id, &collection.id, after.clone(), 500)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.created_at, last.id.clone()));
            for mut document in page {
                let version = version_of(&document.content_hash, &collection);
                document.version = version.clone();
                document.status = "pending".to_owned();
                document.updated_at = now;
                let job = new_job(actor, &document, now);
                self.store.submit_document(&document, &job).await?;
                self.enqueue(job.id.clone())?;
                queued += 1;
            }
        }
        Ok((collection, queued))
    }

    // ----- documents -----

    pub async fn add_document(
        &self,
        actor: &Principal,
        input: DocumentInput,
    ) -> Result<DocumentSubmitted, ServiceError> {
        require_writer(actor)?;
        let collection = self.collection(actor, &input.collection).await?;
        let label = input
            .file_name
            .clone()
            .or_else(|| input.source.clone())
            .unwrap_or_else(|| "the document".to_owned());
        if input.bytes.len() > self.config.max_document_bytes {
            return Err(ServiceError::TooLarge(format!(
                "{label} is {} bytes; knowledge.max_document_bytes is {}",
                input.bytes.len(),
                self.config.max_document_bytes
            )));
        }
        let mut errors = ValidationErrors::new();
        if input.tags.len() > MAX_TAGS {
            errors.push("tags", format!("at most {MAX_TAGS} tags"));
        }
        for (idx, tag) in input.tags.iter().enumerate() {
            if tag.trim().is_empty() || tag.chars().count() > MAX_TAG_CHARS {
                errors.push(
                    format!("tags[{idx}]"),
                    format!("must be 1 to {MAX_TAG_CHARS} characters"),
                );
            }
        }
        if input
            .source
            .as_ref()
            .is_some_and(|source| source.is_empty() || source.chars().count() > 1_000)
        {
            errors.push("source", "must be 1 to 1000 characters");
        }
        if input.bytes.is_empty() {
            errors.push("content", format!("{label} is empty"));
        }
        errors.into_result()?;
        let format = detect_format(&input, &label)?;
        let bytes = input.bytes;
        let extracted =
            tokio::task::spawn_blocking(move || extract(format, &bytes).map(|e| (e, bytes)))
                .await
                .map_err(|err| ServiceError::Internal(anyhow::anyhow!("extraction task: {err}")))?
                .map_err(|err| extract_error(&label, err))?;
        let (extracted, bytes) = extracted;
        let mut tags: Vec<String> = input.tags.iter().map(|tag| tag.trim().to_owned()).collect();
        tags.sort();
        tags.dedup();
        let tags_json = Value::from(tags).to_string();
        let metadata_json = Value::Object(input.metadata).to_string();
        let content_hash = {
            let mut hasher = Sha256::new();
            hasher.update(format.as_str().as_bytes());
            hasher.update([0]);
            hasher.update(&bytes);
            hex::encode(hasher.finalize())
        };
        let title = input
            .title
            .filter(|title| !title.trim().is_empty())
            .or(extracted.title.clone())
            .or(input.file_name.clone())
            .unwrap_or_else(|| first_line(&extracted.text));
        let version = version_of(&content_hash, &collection);
        let existing = match &input.source {
            Some(source) => {
                self.store
                    .find_document_by_source(&actor.tenant_id, &collection.id, source)
                    .await?
            }
            None => {
                self.store
                    .find_document_by_hash(&actor.tenant_id, &collection.id, &content_hash)
                    .await?
            }
        };
        if let Some(existing) = &existing {
            let same_attributes = existing.title == title
                && existing.tags == tags_json
                && existing.metadata == metadata_json;
            if existing.version == version && existing.status != "failed" && same_attributes {
                return Ok(DocumentSubmitted::Unchanged(existing.clone()));
            }
        }
        let now = Utc::now();
        let document = KnowledgeDocumentRecord {
            id: existing
                .as_ref()
                .map(|doc| doc.id.clone())
                .unwrap_or_else(|| Uuid::now_v7().to_string()),
            tenant_id: actor.tenant_id.clone(),
            collection_id: collection.id.clone(),
            source: input.source,
            title: title.chars().take(500).collect(),
            format: format.as_str().to_owned(),
            content_hash,
            tags: tags_json,
            metadata: metadata_json,
            extracted_text: extracted.text,
            bytes: bytes.len() as i64,
            pages: extracted.pages.map(|pages| pages as i64),
            status: "pending".to_owned(),
            version,
            active_version: existing.as_ref().and_then(|doc| doc.active_version.clone()),
            error: None,
            chunk_count: existing.as_ref().map_or(0, |doc| doc.chunk_count),
            token_count: existing.as_ref().map_or(0, |doc| doc.token_count),
            created_at: existing.as_ref().map_or(now, |doc| doc.created_at),
            updated_at: now,
        };
        let job = new_job(actor, &document, now);
        self.store.submit_document(&document, &job).await?;
        let background = input.background
            || document.extracted_text.chars().count() > self.config.sync_max_chars;
        if background {
            self.enqueue(job.id.clone())?;
            return Ok(DocumentSubmitted::Queued(document, Box::new(job)));
        }
        let (_, failure) = self.run_job(job, Some(actor.clone()), false).await?;
        if let Some(err) = failure {
            // The document keeps its previous version (if any) and shows the failure.
            return Err(err);
        }
        let document = self
            .store
            .get_document(&actor.tenant_id, &document.id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("document {}", document.id)))?;
        Ok(DocumentSubmitted::Ingested(document))
    }

    pub async fn get_document(
        &self,
        actor: &Principal,
        id: &str,
    ) -> Result<KnowledgeDocumentRecord, ServiceError> {
        self.store
            .get_document(&actor.tenant_id, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("document {id}")))
    }

    /// A document and its visible chunks (what search can return from it).
    pub async fn document_chunks(
        &self,
        actor: &Principal,
        id: &str,
    ) -> Result<Vec<KnowledgeChunkRecord>, ServiceError> {
        let document = self.get_document(actor, id).await?;
        match &document.active_version {
            Some(version) => Ok(self
                .store
                .document_chunks(&actor.tenant_id, id, version)
                .await?),
            None => Ok(Vec::new()),
        }
    }

    pub async fn list_documents(
        &self,
        actor: &Principal,
        collection: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<KnowledgeDocumentRecord>, ServiceError> {
        let collection = self.collection(actor, collection).await?;
        let after = match after {
            Some(id) => {
                let document = self.get_document(actor, id).await?;
                Some((document.created_at, document.id))
            }
            None => None,
        };
        Ok(self
            .store
            .list_documents(&actor.tenant_id, &collection.id, after, limit.clamp(1, 500))
            .await?)
    }

    pub async fn delete_document(&self, actor: &Principal, id: &str) -> Result<(), ServiceError> {
        require_writer(actor)?;
        let document = self.get_document(actor, id).await?;
        // The store first: from then on the chunks are invisible whatever the index holds.
        self.store.delete_document(&actor.tenant_id, id).await?;
        let scope = Scope {
            tenant_id: actor.tenant_id.as_str().to_owned(),
            collection_id: document.collection_id,
        };
        self.index
            .delete_document(&scope, id)
            .await
            .map_err(index_error)?;
        Ok(())
    }

    pub async fn get_job(
        &self,
        actor: &Principal,
        id: &str,
    ) -> Result<KnowledgeJobRecord, ServiceError> {
        self.store
            .get_job(&actor.tenant_id, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("ingestion job {id}")))
    }

    // ----- ingestion -----

    fn enqueue(&self, job_id: String) -> Result<(), ServiceError> {
        self.jobs.try_send(job_id).map_err(|_| {
            ServiceError::Overloaded(
                "the knowledge ingestion queue is full; retry in a minute".to_owned(),
            )
        })
    }

    /// Runs queued jobs one at a time until `stop` turns true; first resumes the jobs a
    /// previous run left unfinished. Owned by `serve` (and by `flywheel knowledge ingest`).
    pub async fn run_worker(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(mut receiver) = self.job_receiver.lock().await.take() else {
            return;
        };
        match self.store.unfinished_jobs().await {
            Ok(jobs) => {
                for job in jobs {
                    if let Err(err) = self.enqueue(job.id.clone()) {
                        tracing::warn!(job = %job.id, error = %err, "could not resume an ingestion job");
                    }
                }
            }
            Err(err) => tracing::error!(error = %err, "could not list unfinished ingestion jobs"),
        }
        // Jobs that met a transient failure (a model still loading, a provider rate limit)
        // wait here for their next attempt, with a doubling delay.
        let mut waiting: Vec<(tokio::time::Instant, String)> = Vec::new();
        let mut attempts: HashMap<String, u32> = HashMap::new();
        loop {
            let next_due = waiting.iter().map(|(due, _)| *due).min();
            let job_id = tokio::select! {
                job_id = receiver.recv() => job_id,
                () = sleep_until_or_forever(next_due) => {
                    let now = tokio::time::Instant::now();
                    let position = waiting.iter().position(|(due, _)| *due <= now);
                    position.map(|idx| waiting.swap_remove(idx).1)
                }
                _ = stop.changed() => None,
            };
            if *stop.borrow() {
                break;
            }
            let Some(job_id) = job_id else {
                if next_due.is_some() {
                    continue;
                }
                break;
            };
            let retry = attempts.get(&job_id).copied().unwrap_or(0) < MAX_ATTEMPTS;
            match self.run_job_by_id(&job_id, retry).await {
                Ok(Some(job)) if job.status == "queued" => {
                    let attempt = attempts.entry(job_id.clone()).or_insert(0);
                    *attempt += 1;
                    let delay = RETRY_BASE.saturating_mul(1 << (*attempt).min(6));
                    waiting.push((tokio::time::Instant::now() + delay, job_id));
                }
                Ok(_) => {
                    attempts.remove(&job_id);
                }
                Err(err) => {
                    tracing::error!(job = %job_id, error = %err, "ingestion job failed");
                }
            }
        }
    }

    async fn run_job_by_id(
        &self,
        job_id: &str,
        retry_transient: bool,
    ) -> Result<Option<KnowledgeJobRecord>, ServiceError> {
        // Jobs are found across tenants by id: the queue holds ids of jobs this service
        // created or resumed, so the tenant is read from the unfinished-jobs scan.
        let jobs = self.store.unfinished_jobs().await?;
        let Some(job) = jobs.into_iter().find(|job| job.id == job_id) else {
            return Ok(None);
        };
        let (job, _) = self.run_job(job, None, retry_transient).await?;
        Ok(Some(job))
    }

    /// Ingests one version of a document: chunk, embed, store chunks, index, activate.
    /// Errors are recorded on the job and the document (whose previous version stays
    /// searchable) and returned in the job.
    /// With `retry_transient`, a transient failure (a model still loading, a provider's rate
    /// limit or outage) puts the job back to `queued` for the worker to retry, instead of
    /// failing it.
    async fn run_job(
        &self,
        mut job: KnowledgeJobRecord,
        actor: Option<Principal>,
        retry_transient: bool,
    ) -> Result<(KnowledgeJobRecord, Option<ServiceError>), ServiceError> {
        let actor = match actor {
            Some(actor) => actor,
            None => principal_of(&job)?,
        };
        job.status = "running".to_owned();
        job.started_at = Some(Utc::now());
        job.stage = "chunking".to_owned();
        self.store.update_job(&job).await?;
        let started = Instant::now();
        let outcome = self.ingest_version(&actor, &mut job).await;
        job.finished_at = Some(Utc::now());
        let mut failure = None;
        match outcome {
            Ok(IngestEnd::Activated { chunks, tokens }) => {
                job.status = "succeeded".to_owned();
                job.stage = "done".to_owned();
                tracing::info!(
                    job = %job.id,
                    document = %job.document_id,
                    chunks,
                    tokens,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "document ingested"
                );
            }
            Ok(IngestEnd::Superseded) => {
                job.status = "cancelled".to_owned();
                job.stage = "superseded".to_owned();
                job.error = Some("a newer version of the document was submitted".to_owned());
            }
            Err(err) if retry_transient && is_transient(&err) => {
                job.status = "queued".to_owned();
                job.error = Some(format!("{err}; retrying"));
                job.finished_at = None;
                tracing::info!(job = %job.id, error = %err, "ingestion job will be retried");
            }
            Err(err) => {
                let message = err.to_string();
                job.status = "failed".to_owned();
                job.error = Some(message.clone());
                self.store
                    .fail_document(
                        &job.tenant_id,
                        &job.document_id,
                        &job.version,
                        &message,
                        Utc::now(),
                    )
                    .await?;
                failure = Some(err);
            }
        }
        self.store.update_job(&job).await?;
        Ok((job, failure))
    }

    async fn ingest_version(
        &self,
        actor: &Principal,
        job: &mut KnowledgeJobRecord,
    ) -> Result<IngestEnd, ServiceError> {
        let tenant = job.tenant_id.clone();
        let document = self
            .store
            .get_document(&tenant, &job.document_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("document {}", job.document_id)))?;
        if document.version != job.version {
            return Ok(IngestEnd::Superseded);
        }
        let collection = self
            .store
            .get_collection(&tenant, &document.collection_id)
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(format!("knowledge collection {}", document.collection_id))
            })?;
        let options = ChunkOptions {
            max_tokens: collection.chunk_max_tokens.max(16) as usize,
            overlap_tokens: collection.chunk_overlap_tokens.max(0) as usize,
        };
        let counter = self.token_counter.clone();
        let text = document.extracted_text.clone();
        let chunks =
            tokio::task::spawn_blocking(move || chunk_text(&text, &options, counter.as_ref()))
                .await
                .map_err(|err| ServiceError::Internal(anyhow::anyhow!("chunking task: {err}")))?;
        if chunks.is_empty() {
            return Err(ServiceError::Validation(ValidationErrors::single(
                "content",
                "the document has no text to index",
            )));
        }
        job.stage = "embedding".to_owned();
        job.total = chunks.len() as i64;
        job.done = 0;
        self.store.update_job(job).await?;
        let texts: Vec<String> = chunks
            .iter()
            .map(|chunk| embedding_text(&document.title, &chunk.heading_path, &chunk.text))
            .collect();
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.config.embed_batch_size.max(1)) {
            let embedded = self
                .embed(actor, &collection.embedding_model, batch.to_vec())
                .await?;
            for vector in embedded {
                if vector.len() as i64 != collection.dimensions {
                    return Err(ServiceError::Conflict(format!(
                        "the embedding model {} returned {} dimensions but collection {} holds \
                         {}-dimension vectors; re-embed the collection \
                         (POST /v1/knowledge/collections/{}/reembed)",
                        collection.embedding_model,
                        vector.len(),
                        collection.name,
                        collection.dimensions,
                        collection.id
                    )));
                }
                vectors.push(normalised(vector));
            }
            job.done = vectors.len() as i64;
            self.store.update_job(job).await?;
        }
        job.stage = "indexing".to_owned();
        self.store.update_job(job).await?;
        let mut records: Vec<KnowledgeChunkRecord> = chunks
            .iter()
            .zip(&vectors)
            .enumerate()
            .map(|(ordinal, (chunk, vector))| KnowledgeChunkRecord {
                id: 0,
                tenant_id: tenant.clone(),
                collection_id: collection.id.clone(),
                document_id: document.id.clone(),
                version: document.version.clone(),
                ordinal: ordinal as i64,
                content: chunk.text.clone(),
                heading_path: Value::from(chunk.heading_path.clone()).to_string(),
                start_offset: chunk.start as i64,
                end_offset: chunk.end as i64,
                token_count: chunk.token_count as i64,
                embedding: vector_bytes(vector),
            })
            .collect();
        self.store.insert_chunks(&mut records).await?;
        let indexed = records
            .iter()
            .zip(vectors)
            .zip(&chunks)
            .map(|((record, embedding), chunk)| IndexedChunk {
                chunk_id: record.id as u64,
                text: lexical_text(&document.title, &chunk.heading_path, &chunk.text),
                embedding,
            })
            .collect();
        self.index
            .upsert_document(&scope_of(&collection), &document.id, indexed)
            .await
            .map_err(index_error)?;
        let tokens: i64 = records.iter().map(|record| record.token_count).sum();
        let activated = self
            .store
            .activate(
                &tenant,
                &document.id,
                &document.version,
                records.len() as i64,
                tokens,
                Utc::now(),
            )
            .await?;
        if !activated {
            return Ok(IngestEnd::Superseded);
        }
        job.done = job.total;
        Ok(IngestEnd::Activated {
            chunks: records.len(),
            tokens,
        })
    }

    /// Brings the index in line with the store for every collection: re-indexes documents
    /// whose visible chunks the index lacks (a lost snapshot, a crash between indexing and
    /// activation) and removes documents the store no longer shows. Returns how many
    /// documents were re-indexed and removed.
    pub async fn reconcile(&self) -> Result<(usize, usize), ServiceError> {
        let mut reindexed = 0;
        let mut removed = 0;
        for collection in self.store.all_collections().await? {
            let scope = scope_of(&collection);
            self.index
                .create_scope(&scope, collection.dimensions.max(1) as usize)
                .await
                .map_err(index_error)?;
            let in_store = group_ids(
                self.store
                    .visible_chunk_ids(&collection.tenant_id, &collection.id)
                    .await?
                    .into_iter()
                    .map(|(doc, id)| (doc, id as u64)),
            );
            let in_index = group_ids(
                self.index
                    .chunk_ids(&scope)
                    .await
                    .map_err(index_error)?
                    .into_iter(),
            );
            for (document_id, ids) in &in_store {
                if in_index.get(document_id) == Some(ids) {
                    continue;
                }
                let Some(document) = self
                    .store
                    .get_document(&collection.tenant_id, document_id)
                    .await?
                else {
                    continue;
                };
                let Some(version) = document.active_version.clone() else {
                    continue;
                };
                let chunks = self
                    .store
                    .document_chunks(&collection.tenant_id, document_id, &version)
                    .await?;
                let indexed = chunks
                    .iter()
                    .map(|chunk| IndexedChunk {
                        chunk_id: chunk.id as u64,
                        text: lexical_text(
                            &document.title,
                            &serde_json::from_str::<Vec<String>>(&chunk.heading_path)
                                .unwrap_or_default(),
                            &chunk.content,
                        ),
                        embedding: vector_from_bytes(&chunk.embedding),
                    })
                    .collect();
                self.index
                    .upsert_document(&scope, document_id, indexed)
                    .await
                    .map_err(index_error)?;
                reindexed += 1;
            }
            for document_id in in_index.keys() {
                if !in_store.contains_key(document_id) {
                    self.index
                        .delete_document(&scope, document_id)
                        .await
                        .map_err(index_error)?;
                    removed += 1;
                }
            }
        }
        if reindexed + removed > 0 {
            self.index.flush().await.map_err(index_error)?;
        }
        Ok((reindexed, removed))
    }

    /// Snapshots the index (periodically and at shutdown).
    pub async fn flush(&self) -> Result<(), ServiceError> {
        self.index.flush().await.map_err(index_error)
    }

    /// Embeds texts with a gateway model, as `actor` (so budgets and logging apply).
    async fn embed(
        &self,
        actor: &Principal,
        model: &str,
        inputs: Vec<String>,
    ) -> Result<Vec<Vec<f32>>, ServiceError> {
        let outcome = self
            .gateway
            .embeddings(
                actor,
                EmbeddingsInput {
                    model: model.to_owned(),
                    inputs,
                    dimensions: None,
                    user: None,
                    client: ClientContext::default(),
                },
            )
            .await?;
        Ok(outcome.vectors)
    }
}

/// The first retry delay of a job that met a transient failure (then doubled, up to 64×).
const RETRY_BASE: std::time::Duration = std::time::Duration::from_secs(1);
/// Attempts of a job before a transient failure fails it (about ten minutes of retries).
const MAX_ATTEMPTS: u32 = 12;

fn is_transient(err: &ServiceError) -> bool {
    matches!(
        err,
        ServiceError::Unavailable(_)
            | ServiceError::Overloaded(_)
            | ServiceError::RateLimited(_)
            | ServiceError::Upstream(_)
    )
}

async fn sleep_until_or_forever(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

enum IngestEnd {
    Activated { chunks: usize, tokens: i64 },
    Superseded,
}

pub(crate) fn scope_of(collection: &KnowledgeCollectionRecord) -> Scope {
    Scope {
        tenant_id: collection.tenant_id.as_str().to_owned(),
        collection_id: collection.id.clone(),
    }
}

fn require_admin(actor: &Principal) -> Result<(), ServiceError> {
    if actor.role == Role::Admin {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "managing knowledge collections needs an admin credential".to_owned(),
        ))
    }
}

fn require_writer(actor: &Principal) -> Result<(), ServiceError> {
    if matches!(actor.role, Role::Admin | Role::Service) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "adding or deleting knowledge documents needs an admin or service credential"
                .to_owned(),
        ))
    }
}

fn new_job(
    actor: &Principal,
    document: &KnowledgeDocumentRecord,
    now: DateTime<Utc>,
) -> KnowledgeJobRecord {
    KnowledgeJobRecord {
        id: Uuid::now_v7().to_string(),
        tenant_id: document.tenant_id.clone(),
        collection_id: document.collection_id.clone(),
        document_id: document.id.clone(),
        version: document.version.clone(),
        status: "queued".to_owned(),
        stage: "queued".to_owned(),
        done: 0,
        total: 0,
        error: None,
        created_by: format!("{}|{}", actor.subject, actor.role.as_str()),
        created_at: now,
        started_at: None,
        finished_at: None,
    }
}

/// The principal a background job acts as: who submitted it.
fn principal_of(job: &KnowledgeJobRecord) -> Result<Principal, ServiceError> {
    let (subject, role) = job.created_by.rsplit_once('|').ok_or_else(|| {
        ServiceError::Internal(anyhow::anyhow!("job {} has no submitter", job.id))
    })?;
    Ok(Principal {
        tenant_id: job.tenant_id.clone(),
        subject: Subject::parse(subject)
            .map_err(|err| ServiceError::Internal(anyhow::anyhow!("job submitter: {err}")))?,
        role: role
            .parse()
            .map_err(|err| ServiceError::Internal(anyhow::anyhow!("job submitter: {err}")))?,
        operator: false,
        auth: AuthMethod::Jwt,
    })
}

/// The version id of a document's content as indexed in a collection: the same bytes under
/// another embedding model or chunk budget are another version.
fn version_of(content_hash: &str, collection: &KnowledgeCollectionRecord) -> String {
    let mut hasher = Sha256::new();
    hasher.update(content_hash.as_bytes());
    hasher.update(
        format!(
            "|{}|{}|{}|{}",
            collection.embedding_model,
            collection.dimensions,
            collection.chunk_max_tokens,
            collection.chunk_overlap_tokens
        )
        .as_bytes(),
    );
    hex::encode(&hasher.finalize()[..16])
}

fn detect_format(input: &DocumentInput, label: &str) -> Result<SourceFormat, ServiceError> {
    if let Some(name) = &input.format {
        return SourceFormat::parse(name).ok_or_else(|| {
            ValidationErrors::single(
                "format",
                format!("unknown format {name:?}: expected markdown, text, html or pdf"),
            )
            .into()
        });
    }
    let from_media_type = input
        .media_type
        .as_deref()
        .filter(|media_type| !media_type.starts_with("application/octet-stream"))
        .and_then(SourceFormat::from_media_type);
    from_media_type
        .or_else(|| {
            input
                .file_name
                .as_deref()
                .and_then(SourceFormat::from_file_name)
        })
        .or_else(|| SourceFormat::sniff(&input.bytes))
        .ok_or_else(|| {
            ValidationErrors::single(
                "format",
                format!(
                    "cannot tell the format of {label}: give `format` (markdown, text, html or \
                     pdf) or a file name with one of the extensions .md, .txt, .html, .pdf"
                ),
            )
            .into()
        })
}

fn extract_error(label: &str, err: ExtractError) -> ServiceError {
    ValidationErrors::single("content", format!("{label}: {err}")).into()
}

fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .map(|line| line.trim_start_matches('#').trim())
        .find(|line| !line.is_empty())
        .unwrap_or("Untitled");
    line.chars().take(120).collect()
}

/// What is embedded for a chunk: the document title and heading path give a passage the
/// context its words alone may lack.
fn embedding_text(title: &str, heading_path: &[String], content: &str) -> String {
    let mut text = String::with_capacity(title.len() + content.len() + 64);
    text.push_str(title);
    for heading in heading_path {
        if heading != title {
            text.push_str(" > ");
            text.push_str(heading);
        }
    }
    text.push('\n');
    text.push_str(content);
    text
}

/// What the lexical index holds for a chunk (the same context as the embedding).
fn lexical_text(title: &str, heading_path: &[String], content: &str) -> String {
    embedding_text(title, heading_path, content)
}

fn normalised(mut vector: Vec<f32>) -> Vec<f32> {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut vector {
            *x /= norm;
        }
    }
    vector
}

pub(crate) fn vector_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn vector_from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn group_ids(pairs: impl Iterator<Item = (String, u64)>) -> BTreeMap<String, HashSet<u64>> {
    let mut grouped: BTreeMap<String, HashSet<u64>> = BTreeMap::new();
    for (document, id) in pairs {
        grouped.entry(document).or_default().insert(id);
    }
    grouped
}

pub(crate) fn index_error(err: IndexError) -> ServiceError {
    match err {
        IndexError::Query { query, reason } => {
            ValidationErrors::single("query", format!("cannot be searched ({reason}): {query:?}"))
                .into()
        }
        IndexError::Dimensions { .. } => ServiceError::Conflict(err.to_string()),
        other => ServiceError::Unavailable(format!("the knowledge index failed: {other}")),
    }
}
