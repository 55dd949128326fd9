//! Power100's concierge tools: `find_partners` (the matching for the conversation's user),
//! `book_demo` (a demo with a partner, by default the best match of the conversation's latest
//! ranking), and a `lookup_profile` that adds the stored contractor profile to the built-in
//! one. Each acts as the turn's principal through [`Power100Service`], so roles and tenant
//! scope are checked there, and each step is logged like its API call.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{MatchRequest, NewBookingInput, Power100Service};
use crate::concierge::tools::{ConciergeTool, ToolContext, ToolError, ToolRegistry};
use crate::ServiceError;

/// Most partners `find_partners` returns.
const MAX_TOOL_TOP: u64 = 5;

/// Adds the Power100 tools to a registry; `lookup_profile`, when present, is wrapped so that it
/// also returns the stored contractor profile.
pub fn register_tools(registry: &mut ToolRegistry, power100: Arc<Power100Service>) {
    if let Some(inner) = registry.get("lookup_profile") {
        registry.register(Arc::new(LookupStoredProfile {
            inner,
            power100: power100.clone(),
        }));
    }
    registry.register(Arc::new(FindPartners {
        power100: power100.clone(),
    }));
    registry.register(Arc::new(BookDemo { power100 }));
}

fn tool_error(err: ServiceError) -> ToolError {
    match err {
        ServiceError::NotFound(what) => ToolError(format!("{what} was not found")),
        ServiceError::Validation(errors) => ToolError(format!("invalid arguments: {errors}")),
        ServiceError::Forbidden(reason) | ServiceError::Conflict(reason) => ToolError(reason),
        other => {
            tracing::warn!(error = %other, "a Power100 tool failed");
            ToolError("the Power100 service could not answer right now".to_owned())
        }
    }
}

fn lower_words(message: &str) -> Vec<String> {
    message
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

struct FindPartners {
    power100: Arc<Power100Service>,
}

#[async_trait]
impl ConciergeTool for FindPartners {
    fn name(&self) -> &'static str {
        "find_partners"
    }

    fn description(&self) -> &'static str {
        "Ranks the strategic partners that fit the contractor in this conversation (focus \
         areas, revenue tier, service areas, goals, PowerConfidence), with a score in [0, 1] \
         and the reasons for each. Needs the contractor's stored profile."
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {"top": {"type": "integer", "minimum": 1, "maximum": MAX_TOOL_TOP,
                "description": "how many partners (default 3)"}},
        })
    }

    /// Runs when the message asks to find, match, recommend or suggest partners.
    fn route(&self, message: &str) -> Option<Value> {
        let words = lower_words(message);
        let asks = words
            .iter()
            .any(|w| matches!(w.as_str(), "find" | "match" | "recommend" | "suggest"));
        let partners = words
            .iter()
            .any(|w| matches!(w.as_str(), "partner" | "partners"));
        (asks && partners).then(|| json!({}))
    }

    async fn call(&self, context: &ToolContext, arguments: Value) -> Result<Value, ToolError> {
        let top = arguments
            .get("top")
            .and_then(Value::as_u64)
            .map(|top| top.clamp(1, MAX_TOOL_TOP))
            .unwrap_or(3);
        let outcome = self
            .power100
            .matches(
                &context.actor,
                MatchRequest {
                    contractor_id: context.user_id.clone(),
                    top: usize::try_from(top).ok(),
                    conversation_id: context.session_id.clone(),
                },
            )
            .await
            .map_err(tool_error)?;
        Ok(json!({
            "contractor_id": outcome.contractor_id,
            "matches": outcome.matches.iter().map(|found| json!({
                "match_id": found.match_id,
                "rank": found.rank,
                "partner_id": found.result.partner_id.as_str(),
                "company_name": found.partner_company_name,
                "score": (found.result.score * 1000.0).round() / 1000.0,
                "reasons": found.result.reasons(),
            })).collect::<Vec<_>>(),
            "semantic_fit_used": outcome.semantic.used,
        }))
    }
}

struct BookDemo {
    power100: Arc<Power100Service>,
}

#[async_trait]
impl ConciergeTool for BookDemo {
    fn name(&self) -> &'static str {
        "book_demo"
    }

    fn description(&self) -> &'static str {
        "Books a demo for the contractor in this conversation with a partner: by match_id or \
         partner_id, or, with neither, the best match of the latest find_partners result."
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "match_id": {"type": "string"},
                "partner_id": {"type": "string"},
                "notes": {"type": "string", "description": "what the contractor wants to see"},
            },
        })
    }

    /// Never chosen by the deterministic route: booking is an action the model must ask for.
    fn route(&self, _message: &str) -> Option<Value> {
        None
    }

    async fn call(&self, context: &ToolContext, arguments: Value) -> Result<Value, ToolError> {
        let text = |key: &str| {
            arguments
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let partner_id = text("partner_id");
        let mut match_id = text("match_id");
        if match_id.is_none() && partner_id.is_none() {
            match_id = self
                .power100
                .latest_match_id(
                    &context.actor,
                    &context.user_id,
                    context.session_id.as_deref(),
                )
                .await
                .map_err(tool_error)?;
            if match_id.is_none() {
                return Err(ToolError(
                    "no partner was named and no match was found yet; call find_partners first"
                        .to_owned(),
                ));
            }
        }
        let booking = self
            .power100
            .create_booking(
                &context.actor,
                NewBookingInput {
                    contractor_id: Some(context.user_id.clone()),
                    partner_id,
                    match_id,
                    conversation_id: context.session_id.clone(),
                    scheduled_for: None,
                    notes: text("notes"),
                },
            )
            .await
            .map_err(tool_error)?;
        Ok(json!({
            "booking_id": booking.id,
            "partner_id": booking.partner_id,
            "match_id": booking.match_id,
            "status": booking.status,
        }))
    }
}

struct LookupStoredProfile {
    inner: Arc<dyn ConciergeTool>,
    power100: Arc<Power100Service>,
}

#[async_trait]
impl ConciergeTool for LookupStoredProfile {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn description(&self) -> &'static str {
        "The profile of the person in this conversation (the session's profile and, for a \
         contractor, the stored Power100 profile: company, focus areas, revenue tier, service \
         areas, team size, goals and challenges) and a summary of their recorded activity: \
         partner matches, demos booked, deals closed and their value."
    }

    fn parameters(&self) -> Value {
        self.inner.parameters()
    }

    fn route(&self, message: &str) -> Option<Value> {
        self.inner.route(message)
    }

    async fn call(&self, context: &ToolContext, arguments: Value) -> Result<Value, ToolError> {
        let mut result = self.inner.call(context, arguments).await?;
        let stored = match self
            .power100
            .find_contractor(&context.actor, &context.user_id)
            .await
        {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(error = %err, "the stored contractor profile could not be read");
                None
            }
        };
        if let (Some(view), Value::Object(map)) = (stored, &mut result) {
            map.insert("stored_profile".to_owned(), view.profile);
            map.insert("stored_profile_version".to_owned(), json!(view.version));
        }
        Ok(result)
    }
}
