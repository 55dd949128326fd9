//! The concierge's tools: a registry of named functions with JSON-Schema arguments, offered to
//! models that support function calling, and chosen by a deterministic router for models that
//! do not.
//!
//! The deterministic router is deliberately simple and visible: `lookup_profile` runs when the
//! message speaks about the user's own business (first-person words), `search_knowledge` when it
//! asks a question. Their results are given to the model as context. docs/concierge.md lists the
//! rules.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use flywheel_core::{Principal, TenantId};
use flywheel_llm::ToolDefinition;
use flywheel_store::{InteractionFilter, InteractionStore};
use serde_json::{json, Map, Value};

use crate::knowledge::KnowledgeService;
use crate::knowledge::{SearchFilter, SearchInput, SearchMode, SearchResult};

/// What a tool may know about the conversation it serves.
#[derive(Debug, Clone)]
pub struct ToolContext {
    /// Who the turn acts as (budgets and logging of the tools' own model calls).
    pub actor: Principal,
    pub tenant_id: TenantId,
    /// The user the conversation is with.
    pub user_id: String,
    /// The subject profile given when the session started.
    pub profile: Option<Value>,
    /// The session (conversation) the turn belongs to.
    pub session_id: Option<String>,
}

/// A failed tool call; the message is given to the model as the tool's result.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

/// A function the concierge can call.
#[async_trait]
pub trait ConciergeTool: Send + Sync {
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    /// JSON Schema of the arguments object.
    fn parameters(&self) -> Value;
    /// For the deterministic route: the arguments to call this tool with for `message`, or
    /// `None` when the message does not call for it.
    fn route(&self, message: &str) -> Option<Value>;
    async fn call(&self, context: &ToolContext, arguments: Value) -> Result<Value, ToolError>;
}

/// The tools the concierge has, in registration order (the built-in ones first).
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: Vec<Arc<dyn ConciergeTool>>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.tools.iter().map(|tool| tool.name()))
            .finish()
    }
}

impl ToolRegistry {
    /// The built-in tools: `lookup_profile` (over the session's profile and the user's recorded
    /// interactions) and `search_knowledge` (the tenant's knowledge base; without one it says
    /// that none is configured).
    pub fn builtin(
        interactions: Arc<dyn InteractionStore>,
        knowledge: Option<Arc<KnowledgeService>>,
    ) -> ToolRegistry {
        let mut registry = ToolRegistry::default();
        registry.register(Arc::new(LookupProfile { interactions }));
        registry.register(Arc::new(SearchKnowledge { knowledge }));
        registry
    }

    /// Adds a tool; one with the same name is replaced in its place.
    pub fn register(&mut self, tool: Arc<dyn ConciergeTool>) {
        match self
            .tools
            .iter_mut()
            .find(|existing| existing.name() == tool.name())
        {
            Some(existing) => *existing = tool,
            None => self.tools.push(tool),
        }
    }

    /// The tool of this name, e.g. to wrap it with a richer one.
    pub fn get(&self, name: &str) -> Option<Arc<dyn ConciergeTool>> {
        self.tools.iter().find(|tool| tool.name() == name).cloned()
    }

    pub fn definitions(&self) -> Vec<ToolDefinition> {
        self.tools
            .iter()
            .map(|tool| ToolDefinition {
                name: tool.name().to_owned(),
                description: Some(tool.description().to_owned()),
                parameters: tool.parameters(),
                strict: None,
            })
            .collect()
    }

    /// The deterministic route's choice for `message`: `(tool, arguments)` in registration
    /// order.
    pub fn route(&self, message: &str) -> Vec<(&'static str, Value)> {
        self.tools
            .iter()
            .filter_map(|tool| tool.route(message).map(|args| (tool.name(), args)))
            .collect()
    }

    /// Calls a tool by name with arguments given as JSON text (as a model produces them).
    /// Unknown tools and malformed arguments are errors the model is told about.
    pub async fn call(
        &self,
        context: &ToolContext,
        name: &str,
        arguments: &str,
    ) -> Result<Value, ToolError> {
        let tool = self.get(name).ok_or_else(|| {
            ToolError(format!(
                "there is no tool `{name}`; available: {}",
                self.tools
                    .iter()
                    .map(|tool| tool.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let arguments: Value = if arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(arguments)
                .map_err(|err| ToolError(format!("the arguments are not valid JSON: {err}")))?
        };
        if !arguments.is_object() {
            return Err(ToolError("the arguments must be a JSON object".to_owned()));
        }
        tool.call(context, arguments).await
    }
}

/// Words by which a message speaks about the user's own business.
const FIRST_PERSON: [&str; 9] = ["i", "i'm", "me", "my", "mine", "we", "we're", "our", "us"];
/// Words that open a question.
const QUESTION_WORDS: [&str; 14] = [
    "how", "what", "which", "why", "when", "where", "who", "can", "could", "should", "do", "does",
    "is", "are",
];

fn words(message: &str) -> impl Iterator<Item = String> + '_ {
    message
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
}

/// Whether a message speaks about the user's own business: a first-person word or "profile".
fn speaks_about_self(message: &str) -> bool {
    words(message).any(|word| FIRST_PERSON.contains(&word.as_str()) || word == "profile")
}

/// `lookup_profile`: who the user is (the session's profile) and what they have done (a
/// summary of their recorded interactions and outcomes).
struct LookupProfile {
    interactions: Arc<dyn InteractionStore>,
}

/// How many of the user's latest interactions the activity summary reads.
const PROFILE_ACTIVITY_WINDOW: u32 = 500;

#[async_trait]
impl ConciergeTool for LookupProfile {
    fn name(&self) -> &'static str {
        "lookup_profile"
    }

    fn description(&self) -> &'static str {
        "The profile of the person in this conversation (company, focus areas, revenue tier, \
         team size, goals) and a summary of their recorded activity: partner matches, demos \
         booked, deals closed and their value."
    }

    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {}, "additionalProperties": false})
    }

    fn route(&self, message: &str) -> Option<Value> {
        speaks_about_self(message).then(|| json!({}))
    }

    async fn call(&self, context: &ToolContext, _arguments: Value) -> Result<Value, ToolError> {
        let filter = InteractionFilter {
            user_id: Some(context.user_id.clone()),
            ..InteractionFilter::default()
        };
        let recent = self
            .interactions
            .list_interactions(&context.tenant_id, &filter, None, PROFILE_ACTIVITY_WINDOW)
            .await
            .map_err(|err| ToolError(format!("the activity could not be read: {err}")))?;
        let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
        let (mut matches, mut demos, mut deals) = (0u64, 0u64, 0u64);
        let mut deal_value = 0.0f64;
        let mut partners = std::collections::BTreeSet::new();
        for interaction in &recent {
            *by_type
                .entry(interaction.interaction_type.clone())
                .or_default() += 1;
            let Some(Value::Object(outcomes)) = interaction.document.get("outcomes") else {
                continue;
            };
            let flag = |name: &str| outcomes.get(name).and_then(Value::as_bool) == Some(true);
            if flag("partner_matched") {
                matches += 1;
            }
            if flag("demo_booked") {
                demos += 1;
            }
            if flag("deal_closed") {
                deals += 1;
                deal_value += outcomes
                    .get("deal_value")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
            }
            if let Some(partner) = outcomes.get("partner_id").and_then(Value::as_str) {
                partners.insert(partner.to_owned());
            }
        }
        let mut activity = Map::new();
        activity.insert("interactions_read".into(), json!(recent.len()));
        activity.insert("by_type".into(), json!(by_type));
        activity.insert("partner_matches".into(), json!(matches));
        activity.insert("demos_booked".into(), json!(demos));
        activity.insert("deals_closed".into(), json!(deals));
        activity.insert("deal_value_total".into(), json!(deal_value));
        activity.insert("partners".into(), json!(partners));
        activity.insert(
            "last_interaction_at".into(),
            json!(recent.first().map(|i| i.timestamp.to_rfc3339())),
        );
        Ok(json!({
            "user_id": context.user_id,
            "profile": context.profile.clone().unwrap_or(Value::Null),
            "activity": activity,
        }))
    }
}

/// `search_knowledge`: passages from the tenant's knowledge base (hybrid search over one
/// collection, or over all of the tenant's collections fused by reciprocal rank). Passages are
/// numbered so the answer can cite them as `[1]`, `[2]`; the tool's result (with document and
/// chunk ids) is stored with the turn's interactions, so every citation can be traced.
struct SearchKnowledge {
    knowledge: Option<Arc<KnowledgeService>>,
}

/// Passages the tool returns.
const KNOWLEDGE_TOP_K: usize = 4;

#[async_trait]
impl ConciergeTool for SearchKnowledge {
    fn name(&self) -> &'static str {
        "search_knowledge"
    }

    fn description(&self) -> &'static str {
        "Search the knowledge base (partner information, guides, FAQs) for passages relevant \
         to a query. Cite the passages you use as [1], [2]."
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for."},
                "collection": {"type": "string", "description": "A collection name; default: all."}
            },
            "required": ["query"],
            "additionalProperties": false
        })
    }

    fn route(&self, message: &str) -> Option<Value> {
        let is_question = message.contains('?')
            || words(message)
                .next()
                .is_some_and(|first| QUESTION_WORDS.contains(&first.as_str()));
        is_question.then(|| json!({"query": message}))
    }

    async fn call(&self, context: &ToolContext, arguments: Value) -> Result<Value, ToolError> {
        let query = arguments
            .get("query")
            .and_then(Value::as_str)
            .filter(|query| !query.trim().is_empty())
            .ok_or_else(|| ToolError("`query` (a non-empty string) is required".to_owned()))?;
        let Some(knowledge) = &self.knowledge else {
            return Ok(json!({
                "query": query,
                "available": false,
                "results": [],
                "note": "no knowledge base is configured; answer from general knowledge and say so",
            }));
        };
        let results: Vec<SearchResult> =
            match arguments.get("collection").and_then(Value::as_str) {
                Some(collection) => knowledge
                    .search(
                        &context.actor,
                        SearchInput {
                            collection: collection.to_owned(),
                            query: query.to_owned(),
                            top_k: Some(KNOWLEDGE_TOP_K),
                            num_candidates: None,
                            mode: SearchMode::Hybrid,
                            filter: SearchFilter::default(),
                            rescore: false,
                        },
                    )
                    .await
                    .map(|outcome| outcome.results),
                None => {
                    knowledge
                        .search_all(&context.actor, query, KNOWLEDGE_TOP_K)
                        .await
                }
            }
            .map_err(|err| ToolError(format!("the knowledge base could not be searched: {err}")))?;
        let passages: Vec<Value> = results
            .iter()
            .enumerate()
            .map(|(idx, result)| {
                json!({
                    "citation": format!("[{}]", idx + 1),
                    "document_id": result.document_id,
                    "chunk_id": result.chunk_id,
                    "title": result.title,
                    "heading_path": result.heading_path,
                    "content": result.content,
                    "score": result.score,
                })
            })
            .collect();
        Ok(json!({
            "query": query,
            "available": true,
            "results": passages,
            "note": if results.is_empty() {
                "nothing relevant was found in the knowledge base; say so"
            } else {
                "answer from these passages and cite them as [1], [2]"
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deterministic_route_follows_its_rules() {
        let registry = ToolRegistry {
            tools: vec![Arc::new(SearchKnowledge { knowledge: None }) as Arc<dyn ConciergeTool>],
        };
        assert_eq!(registry.route("How do I grow?").len(), 1);
        assert_eq!(registry.route("Tell me a joke").len(), 0);
        assert!(speaks_about_self("What fits my company"));
        assert!(speaks_about_self("Show my PROFILE"));
        assert!(!speaks_about_self("Tell a joke"));
        assert!(!speaks_about_self("Summarise it"));
    }

    #[tokio::test]
    async fn search_knowledge_requires_a_query() {
        let tenant_id = TenantId::parse("t1").unwrap_or_else(|_| unreachable!());
        let context = ToolContext {
            actor: Principal {
                tenant_id: tenant_id.clone(),
                subject: flywheel_core::Subject::parse("u").unwrap_or_else(|_| unreachable!()),
                role: flywheel_core::Role::Contractor,
                operator: false,
                auth: flywheel_core::AuthMethod::Jwt,
            },
            tenant_id,
            user_id: "u".into(),
            profile: None,
            session_id: None,
        };
        let registry = ToolRegistry {
            tools: vec![Arc::new(SearchKnowledge { knowledge: None }) as Arc<dyn ConciergeTool>],
        };
        assert!(registry
            .call(&context, "search_knowledge", "{}")
            .await
            .is_err());
        assert!(registry
            .call(&context, "search_knowledge", "not json")
            .await
            .is_err());
        assert!(registry.call(&context, "nope", "{}").await.is_err());
        let found = registry
            .call(&context, "search_knowledge", r#"{"query":"roofing"}"#)
            .await;
        assert_eq!(
            found.map(|v| v["available"].clone()).ok(),
            Some(json!(false))
        );
    }
}
