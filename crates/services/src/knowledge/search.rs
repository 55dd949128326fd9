//! Search (vector, lexical, hybrid by reciprocal-rank fusion) and grounded answers with
//! citations.
//!
//! Every query is confined to one collection of the caller's tenant: the index is asked about
//! that scope only, and its hits are joined with the store's visible chunks of the same tenant,
//! so an index that somehow held another tenant's chunk could still not show it.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use flywheel_core::{Principal, ValidationErrors};
use flywheel_knowledge::fusion::{reciprocal_rank_fusion, DEFAULT_RRF_K};
use flywheel_knowledge::index::{Hit, Restriction, VectorQuery};
use flywheel_llm::{ChatMessage, ChatRequest, Role as ChatRole};
use flywheel_store::{KnowledgeCollectionRecord, VisibleChunk};
use serde_json::{json, Map, Value};

use super::{index_error, scope_of, vector_from_bytes, KnowledgeService};
use crate::enrich::ClientContext;
use crate::gateway::ChatInput;
use crate::ingest::Submission;
use crate::ServiceError;

/// How results are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchMode {
    Vector,
    Lexical,
    #[default]
    Hybrid,
}

impl SearchMode {
    pub fn parse(raw: &str) -> Option<SearchMode> {
        match raw {
            "vector" => Some(SearchMode::Vector),
            "lexical" => Some(SearchMode::Lexical),
            "hybrid" => Some(SearchMode::Hybrid),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Vector => "vector",
            SearchMode::Lexical => "lexical",
            SearchMode::Hybrid => "hybrid",
        }
    }
}

/// Which documents a query may return: all tags, metadata equalities, document ids (all
/// conditions must hold).
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
    pub document_ids: Option<Vec<String>>,
}

impl SearchFilter {
    fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.metadata.is_empty() && self.document_ids.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct SearchInput {
    /// The collection's id or name.
    pub collection: String,
    pub query: String,
    /// 1–20; default 5.
    pub top_k: Option<usize>,
    /// The candidate pool; default `min(10 · top_k, 100)`, at least `top_k`, at most 1000.
    pub num_candidates: Option<usize>,
    pub mode: SearchMode,
    pub filter: SearchFilter,
    /// Re-score the fused candidates by exact cosine similarity to the query (hybrid only).
    pub rescore: bool,
}

#[derive(Debug, Clone)]
pub struct SearchResult {
    pub chunk_id: i64,
    pub document_id: String,
    pub title: String,
    pub source: Option<String>,
    pub content: String,
    pub score: f32,
    pub heading_path: Vec<String>,
    pub start_offset: i64,
    pub end_offset: i64,
}

#[derive(Debug, Clone)]
pub struct SearchOutcome {
    pub collection_id: String,
    pub mode: SearchMode,
    pub top_k: usize,
    pub num_candidates: usize,
    pub results: Vec<SearchResult>,
    pub took_ms: u64,
}

#[derive(Debug, Clone)]
pub struct AnswerInput {
    pub search: SearchInput,
    /// Defaults to `knowledge.answer_model`.
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
}

/// A passage given to the model, numbered as the answer cites it.
#[derive(Debug, Clone)]
pub struct Citation {
    /// The `n` of `[n]`.
    pub number: usize,
    /// Whether the answer cites it.
    pub cited: bool,
    pub result: SearchResult,
}

#[derive(Debug, Clone)]
pub struct AnswerOutcome {
    pub answer: String,
    pub citations: Vec<Citation>,
    pub model: String,
    pub interaction_id: String,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

const MAX_QUERY_CHARS: usize = 2_000;

impl KnowledgeService {
    pub async fn search(
        &self,
        actor: &Principal,
        input: SearchInput,
    ) -> Result<SearchOutcome, ServiceError> {
        let started = Instant::now();
        let collection = self.collection(actor, &input.collection).await?;
        let mut errors = ValidationErrors::new();
        let query = input.query.trim().to_owned();
        if query.is_empty() {
            errors.push("query", "must not be empty");
        } else if query.chars().count() > MAX_QUERY_CHARS {
            errors.push(
                "query",
                format!("must be at most {MAX_QUERY_CHARS} characters"),
            );
        }
        let top_k = input.top_k.unwrap_or(5);
        if !(1..=20).contains(&top_k) {
            errors.push("top_k", "must be between 1 and 20");
        }
        let num_candidates = input.num_candidates.unwrap_or((10 * top_k).min(100));
        if num_candidates < top_k || num_candidates > 1_000 {
            errors.push("num_candidates", "must be between top_k and 1000");
        }
        errors.into_result()?;
        let restriction = self.restriction(actor, &collection, &input.filter).await?;
        let scope = scope_of(&collection);
        let mut query_vector = None;
        let hits: Vec<(u64, f32)> = match input.mode {
            SearchMode::Vector => {
                let vector = self.embed_query(actor, &collection, &query).await?;
                let hits = self
                    .index
                    .vector_search(
                        &scope,
                        VectorQuery {
                            embedding: &vector,
                            top_k: num_candidates.min(top_k * 2),
                            num_candidates,
                        },
                        &restriction,
                    )
                    .await
                    .map_err(index_error)?;
                scored(hits)
            }
            SearchMode::Lexical => {
                let hits = self
                    .index
                    .lexical_search(&scope, &query, top_k * 2, &restriction)
                    .await
                    .map_err(index_error)?;
                scored(hits)
            }
            SearchMode::Hybrid => {
                let vector = self.embed_query(actor, &collection, &query).await?;
                let pool = num_candidates.max(top_k);
                let (vector_hits, lexical_hits) = tokio::join!(
                    self.index.vector_search(
                        &scope,
                        VectorQuery {
                            embedding: &vector,
                            top_k: pool,
                            num_candidates: pool,
                        },
                        &restriction,
                    ),
                    self.index
                        .lexical_search(&scope, &query, pool, &restriction)
                );
                let vector_ids: Vec<u64> = vector_hits
                    .map_err(index_error)?
                    .into_iter()
                    .map(|hit| hit.chunk_id)
                    .collect();
                let lexical_ids: Vec<u64> = lexical_hits
                    .map_err(index_error)?
                    .into_iter()
                    .map(|hit| hit.chunk_id)
                    .collect();
                query_vector = Some(vector);
                reciprocal_rank_fusion(&[(1.0, vector_ids), (1.0, lexical_ids)], DEFAULT_RRF_K)
            }
        };
        let ids: Vec<i64> = hits.iter().map(|(id, _)| *id as i64).collect();
        let mut visible: HashMap<i64, VisibleChunk> = self
            .store
            .visible_chunks(&actor.tenant_id, &ids)
            .await?
            .into_iter()
            .map(|chunk| (chunk.chunk.id, chunk))
            .collect();
        let mut results: Vec<SearchResult> = Vec::with_capacity(top_k);
        let mut embeddings: Vec<Vec<f32>> = Vec::new();
        for (id, score) in hits {
            let Some(chunk) = visible.remove(&(id as i64)) else {
                continue;
            };
            if input.rescore {
                embeddings.push(vector_from_bytes(&chunk.chunk.embedding));
            }
            results.push(result_of(chunk, score));
        }
        if let (true, Some(query_vector)) = (input.rescore, &query_vector) {
            let mut rescored: Vec<(SearchResult, f32)> = results
                .into_iter()
                .zip(embeddings)
                .map(|(mut result, embedding)| {
                    let cosine = dot(query_vector, &embedding);
                    result.score = cosine;
                    (result, cosine)
                })
                .collect();
            rescored.sort_by(|a, b| b.1.total_cmp(&a.1));
            results = rescored.into_iter().map(|(result, _)| result).collect();
        }
        results.truncate(top_k);
        Ok(SearchOutcome {
            collection_id: collection.id,
            mode: input.mode,
            top_k,
            num_candidates,
            results,
            took_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Retrieval and generation in one call: the answer cites its passages as `[n]`, and the
    /// question, answer and citations are logged as one `knowledge_answer` interaction.
    pub async fn answer(
        &self,
        actor: &Principal,
        input: AnswerInput,
    ) -> Result<AnswerOutcome, ServiceError> {
        let question = input.search.query.clone();
        let found = self.search(actor, input.search).await?;
        let model = input
            .model
            .unwrap_or_else(|| self.config.answer_model.clone());
        let (system, user) = grounded_prompt(&question, &found.results);
        let request = ChatRequest {
            model: String::new(),
            messages: vec![
                ChatMessage::text(ChatRole::System, system),
                ChatMessage::text(ChatRole::User, user),
            ],
            max_tokens: Some(input.max_tokens.unwrap_or(400)),
            temperature: Some(0.0),
            ..ChatRequest::default()
        };
        let outcome = self
            .gateway
            .chat(
                actor,
                ChatInput {
                    model: model.clone(),
                    request,
                    conversation_id: None,
                    client: ClientContext::default(),
                },
            )
            .await?;
        let answer = outcome.response.content.clone().unwrap_or_default();
        let cited = cited_numbers(&answer, found.results.len());
        let citations: Vec<Citation> = found
            .results
            .into_iter()
            .enumerate()
            .map(|(idx, result)| Citation {
                number: idx + 1,
                cited: cited.contains(&(idx + 1)),
                result,
            })
            .collect();
        let interaction_id = uuid::Uuid::now_v7().to_string();
        let document = json!({
            "interaction_id": interaction_id,
            "interaction_type": "knowledge_answer",
            "user_id": actor.subject.to_string(),
            "user_type": actor.role.as_str(),
            "user_message": question,
            "ai_response": answer,
            "model": outcome.route.model,
            "knowledge": {
                "collection_id": found.collection_id,
                "mode": found.mode.as_str(),
                "gateway_interaction_id": outcome.interaction_id.to_string(),
                "citations": citations_json(&citations),
            },
        });
        match self
            .ingest
            .ingest(actor, Submission::One(document), &ClientContext::default())
            .await
        {
            Ok(_) | Err(ServiceError::Disabled(_)) => {}
            Err(err) => tracing::error!(error = %err, "could not log a knowledge answer"),
        }
        let usage = outcome.response.usage;
        Ok(AnswerOutcome {
            answer,
            citations,
            model: outcome.route.model,
            interaction_id,
            input_tokens: usage.map(|usage| usage.input_tokens),
            output_tokens: usage.map(|usage| usage.output_tokens),
        })
    }

    /// Searches every collection of the tenant (the concierge's `search_knowledge` without a
    /// collection), fusing the per-collection rankings.
    pub async fn search_all(
        &self,
        actor: &Principal,
        query: &str,
        top_k: usize,
    ) -> Result<Vec<SearchResult>, ServiceError> {
        let collections = self.store.list_collections(&actor.tenant_id).await?;
        let mut rankings = Vec::new();
        let mut by_id: HashMap<i64, SearchResult> = HashMap::new();
        for summary in collections {
            if summary.ready_documents == 0 {
                continue;
            }
            let outcome = self
                .search(
                    actor,
                    SearchInput {
                        collection: summary.collection.id.clone(),
                        query: query.to_owned(),
                        top_k: Some(top_k),
                        num_candidates: None,
                        mode: SearchMode::Hybrid,
                        filter: SearchFilter::default(),
                        rescore: false,
                    },
                )
                .await?;
            let ids: Vec<i64> = outcome.results.iter().map(|r| r.chunk_id).collect();
            for result in outcome.results {
                by_id.insert(result.chunk_id, result);
            }
            rankings.push((1.0, ids));
        }
        Ok(reciprocal_rank_fusion(&rankings, DEFAULT_RRF_K)
            .into_iter()
            .take(top_k)
            .filter_map(|(id, score)| {
                by_id.remove(&id).map(|mut result| {
                    result.score = score;
                    result
                })
            })
            .collect())
    }

    async fn embed_query(
        &self,
        actor: &Principal,
        collection: &KnowledgeCollectionRecord,
        query: &str,
    ) -> Result<Vec<f32>, ServiceError> {
        let vectors = self
            .embed(actor, &collection.embedding_model, vec![query.to_owned()])
            .await?;
        let vector = vectors.into_iter().next().unwrap_or_default();
        if vector.len() as i64 != collection.dimensions {
            return Err(ServiceError::Conflict(format!(
                "collection {} holds {}-dimension vectors of {}, but the model returned {} \
                 dimensions; re-embed the collection",
                collection.name,
                collection.dimensions,
                collection.embedding_model,
                vector.len()
            )));
        }
        Ok(super::normalised(vector))
    }

    async fn restriction(
        &self,
        actor: &Principal,
        collection: &KnowledgeCollectionRecord,
        filter: &SearchFilter,
    ) -> Result<Restriction, ServiceError> {
        if filter.is_empty() {
            return Ok(Restriction::default());
        }
        let wanted_ids: Option<HashSet<&str>> = filter
            .document_ids
            .as_ref()
            .map(|ids| ids.iter().map(String::as_str).collect());
        let mut allowed = HashSet::new();
        for attributes in self
            .store
            .document_attributes(&actor.tenant_id, &collection.id)
            .await?
        {
            if wanted_ids
                .as_ref()
                .is_some_and(|ids| !ids.contains(attributes.id.as_str()))
            {
                continue;
            }
            let tags: Vec<String> = serde_json::from_str(&attributes.tags).unwrap_or_default();
            if !filter.tags.iter().all(|tag| tags.contains(tag)) {
                continue;
            }
            if !filter.metadata.is_empty() {
                let metadata: Map<String, Value> =
                    serde_json::from_str(&attributes.metadata).unwrap_or_default();
                if !filter
                    .metadata
                    .iter()
                    .all(|(key, value)| metadata.get(key) == Some(value))
                {
                    continue;
                }
            }
            allowed.insert(attributes.id);
        }
        Ok(Restriction {
            document_ids: Some(allowed),
        })
    }
}

fn scored(hits: Vec<Hit>) -> Vec<(u64, f32)> {
    hits.into_iter()
        .map(|hit| (hit.chunk_id, hit.score))
        .collect()
}

fn result_of(chunk: VisibleChunk, score: f32) -> SearchResult {
    SearchResult {
        chunk_id: chunk.chunk.id,
        document_id: chunk.chunk.document_id,
        title: chunk.title,
        source: chunk.source,
        content: chunk.chunk.content,
        score,
        heading_path: serde_json::from_str(&chunk.chunk.heading_path).unwrap_or_default(),
        start_offset: chunk.chunk.start_offset,
        end_offset: chunk.chunk.end_offset,
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The instructions and the numbered passages.
pub(crate) fn grounded_prompt(question: &str, results: &[SearchResult]) -> (String, String) {
    let system = "Answer the question using only the numbered passages. After each statement, \
                  cite the passages it comes from as [1], [2]. If the passages do not contain \
                  the answer, say that the knowledge base does not cover it."
        .to_owned();
    let mut user = String::new();
    for (idx, result) in results.iter().enumerate() {
        let mut location = result.title.clone();
        for heading in &result.heading_path {
            if *heading != result.title {
                location.push_str(" > ");
                location.push_str(heading);
            }
        }
        user.push_str(&format!(
            "[{}] ({location})\n{}\n\n",
            idx + 1,
            result.content
        ));
    }
    if results.is_empty() {
        user.push_str("(no passages were found)\n\n");
    }
    user.push_str("Question: ");
    user.push_str(question);
    (system, user)
}

/// The passage numbers `[n]` (also `[1, 2]` and `[1][2]`) an answer cites, within 1..=count.
pub(crate) fn cited_numbers(answer: &str, count: usize) -> HashSet<usize> {
    let mut cited = HashSet::new();
    let mut rest = answer;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find(']') else { break };
        for part in rest[..close].split(',') {
            if let Ok(number) = part.trim().parse::<usize>() {
                if (1..=count).contains(&number) {
                    cited.insert(number);
                }
            }
        }
        rest = &rest[close + 1..];
    }
    cited
}

pub(crate) fn citations_json(citations: &[Citation]) -> Value {
    Value::Array(
        citations
            .iter()
            .map(|citation| {
                json!({
                    "number": citation.number,
                    "cited": citation.cited,
                    "document_id": citation.result.document_id,
                    "chunk_id": citation.result.chunk_id,
                    "title": citation.result.title,
                    "heading_path": citation.result.heading_path,
                    "start_offset": citation.result.start_offset,
                    "end_offset": citation.result.end_offset,
                    "score": citation.result.score,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cited_numbers_reads_the_usual_forms_and_ignores_out_of_range() {
        let cited = cited_numbers("A [1]. B [2, 3]. C [3][4]. D [9]. E [x].", 4);
        let mut cited: Vec<usize> = cited.into_iter().collect();
        cited.sort_unstable();
        assert_eq!(cited, vec![1, 2, 3, 4]);
    }
}
