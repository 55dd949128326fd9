//! Building what the model sees for one concierge turn: the persona, the subject's profile as
//! structured context, tool results, the conversation so far trimmed to the context window by
//! token count (oldest turns first, never the system prompt or the new message), and the new
//! message.

use flywheel_llm::{ChatMessage, Role};
use flywheel_store::ConciergeMessageRecord;
use serde_json::{json, Value};

/// Everything the prompt is built from.
#[derive(Debug)]
pub struct ContextInput<'a> {
    pub persona: &'a str,
    pub profile: Option<&'a Value>,
    pub context: Option<&'a Value>,
    /// Results of tools run before the model call (the deterministic route), by tool name.
    pub tool_results: &'a [(String, Value)],
    /// The session's earlier messages, in order.
    pub history: &'a [ConciergeMessageRecord],
    pub user_text: &'a str,
    /// The model's context window in tokens.
    pub window: usize,
    /// Tokens kept free for the answer.
    pub reserved_for_answer: usize,
}

/// What trimming did, recorded with the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextReport {
    pub window: usize,
    pub budget: usize,
    pub prompt_tokens: usize,
    /// True when counted with the model's own tokenizer and template, false when estimated.
    pub exact: bool,
    pub history_messages: usize,
    pub sent_history_messages: usize,
    pub trimmed_messages: usize,
}

impl ContextReport {
    pub fn to_json(&self) -> Value {
        json!({
            "window": self.window,
            "budget": self.budget,
            "prompt_tokens": self.prompt_tokens,
            "counted": if self.exact { "exact" } else { "estimated" },
            "history_messages": self.history_messages,
            "sent_history_messages": self.sent_history_messages,
            "trimmed_messages": self.trimmed_messages,
        })
    }
}

/// The prompt does not fit even without any history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextOverflow {
    pub prompt_tokens: usize,
    pub budget: usize,
}

/// Counts a whole prompt's tokens: exactly (the model's tokenizer and template) when `Some`.
pub type ExactCounter<'a> = &'a dyn Fn(&[ChatMessage]) -> Option<usize>;

/// Builds the prompt, dropping the oldest turns until it fits `window - reserved_for_answer`.
/// A turn is a user message and the answer that followed it, so the model never sees an
/// answer without its question.
pub fn build(
    input: &ContextInput<'_>,
    exact: ExactCounter<'_>,
) -> Result<(Vec<ChatMessage>, ContextReport), ContextOverflow> {
    let system = ChatMessage::text(Role::System, system_prompt(input));
    let history: Vec<ChatMessage> = input
        .history
        .iter()
        .filter(|message| usable(message))
        .filter_map(|message| {
            let role = match message.role.as_str() {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                _ => return None,
            };
            message
                .content
                .as_ref()
                .map(|content| ChatMessage::text(role, content.clone()))
        })
        .collect();
    // Turn boundaries: the indexes where a user message starts a turn.
    let starts: Vec<usize> = history
        .iter()
        .enumerate()
        .filter(|(_, message)| message.role == Role::User)
        .map(|(index, _)| index)
        .chain(std::iter::once(history.len()))
        .collect();
    let user = ChatMessage::text(Role::User, input.user_text);
    let budget = input.window.saturating_sub(input.reserved_for_answer);
    let assemble = |from: usize| -> Vec<ChatMessage> {
        let mut messages = Vec::with_capacity(history.len() - from + 2);
        messages.push(system.clone());
        messages.extend(history[from..].iter().cloned());
        messages.push(user.clone());
        messages
    };
    let count = |messages: &[ChatMessage]| -> (usize, bool) {
        match exact(messages) {
            Some(tokens) => (tokens, true),
            None => (estimate(messages), false),
        }
    };
    // Fewer dropped turns means more tokens, so the smallest number of dropped turns that fits
    // is found by binary search over turn starts (each probe counts the whole prompt once).
    let fits = |start_idx: usize| -> (bool, usize, bool) {
        let (tokens, is_exact) = count(&assemble(starts[start_idx]));
        (tokens <= budget, tokens, is_exact)
    };
    let (mut low, mut high) = (0usize, starts.len() - 1);
    let (all_fit, tokens_all, exact_all) = fits(0);
    let (chosen, tokens, is_exact) = if all_fit {
        (0, tokens_all, exact_all)
    } else {
        let (last_fits, tokens_last, exact_last) = fits(high);
        if !last_fits {
            return Err(ContextOverflow {
                prompt_tokens: tokens_last,
                budget,
            });
        }
        let mut best = (high, tokens_last, exact_last);
        // Invariant: starts[low] does not fit, starts[high] fits.
        while high - low > 1 {
            let middle = (low + high) / 2;
            let (ok, tokens_middle, exact_middle) = fits(middle);
            if ok {
                high = middle;
                best = (middle, tokens_middle, exact_middle);
            } else {
                low = middle;
            }
        }
        best
    };
    let from = starts[chosen];
    let report = ContextReport {
        window: input.window,
        budget,
        prompt_tokens: tokens,
        exact: is_exact,
        history_messages: history.len(),
        sent_history_messages: history.len() - from,
        trimmed_messages: from,
    };
    Ok((assemble(from), report))
}

/// A message that belongs in the model's view of the conversation: complete user messages and
/// complete answers (a cut-off or failed answer is shown in the transcript, not to the model).
fn usable(message: &ConciergeMessageRecord) -> bool {
    message.status == "complete" && message.content.is_some()
}

/// About four bytes per token for English text plus a few tokens of chat framing per message:
/// used when the provider cannot count exactly (remote models).
pub fn estimate(messages: &[ChatMessage]) -> usize {
    messages
        .iter()
        .map(|message| {
            4 + message
                .content
                .as_deref()
                .map_or(0, |c| c.len().div_ceil(4))
        })
        .sum()
}

fn system_prompt(input: &ContextInput<'_>) -> String {
    let mut prompt = input.persona.trim().to_owned();
    if let Some(profile) = input.profile {
        prompt.push_str("\n\nProfile of the person you are talking to:\n");
        prompt.push_str(&render_fields(profile));
    }
    if let Some(context) = input.context {
        prompt.push_str("\n\nContext for this conversation:\n");
        prompt.push_str(&render_fields(context));
    }
    if !input.tool_results.is_empty() {
        prompt.push_str("\n\nInformation looked up for this message (use it when relevant):");
        for (name, result) in input.tool_results {
            prompt.push_str(&format!("\n[{name}] {result}"));
        }
    }
    prompt
}

/// `key: value` lines for an object (lists joined by commas, nested objects as JSON); other
/// JSON values as they are.
fn render_fields(value: &Value) -> String {
    let Value::Object(map) = value else {
        return value.to_string();
    };
    map.iter()
        .map(|(key, value)| {
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            format!("- {}: {text}", key.replace('_', " "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use flywheel_core::TenantId;

    fn message(seq: i64, role: &str, content: &str, status: &str) -> ConciergeMessageRecord {
        ConciergeMessageRecord {
            id: format!("m{seq}"),
            session_id: "s".into(),
            tenant_id: TenantId::parse("t1").unwrap_or_else(|_| unreachable!()),
            seq,
            role: role.into(),
            content: Some(content.into()),
            tool_calls: None,
            tool_call_id: None,
            tool_name: None,
            status: status.into(),
            model: None,
            input_tokens: None,
            output_tokens: None,
            cost_usd: None,
            duration_ms: None,
            details: None,
            created_at: Utc::now(),
            completed_at: None,
        }
    }

    fn input<'a>(history: &'a [ConciergeMessageRecord], window: usize) -> ContextInput<'a> {
        ContextInput {
            persona: "You help.",
            profile: None,
            context: None,
            tool_results: &[],
            history,
            user_text: "next question",
            window,
            reserved_for_answer: 10,
        }
    }

    fn long_history() -> Vec<ConciergeMessageRecord> {
        (0..10)
            .map(|i| {
                let role = if i % 2 == 0 { "user" } else { "assistant" };
                message(i + 1, role, &"word ".repeat(20), "complete")
            })
            .collect()
    }

    #[test]
    fn everything_is_sent_when_it_fits() {
        let history = long_history();
        let (messages, report) = build(&input(&history, 10_000), &|_| None).unwrap();
        assert_eq!(messages.len(), 12);
        assert_eq!(report.trimmed_messages, 0);
        assert!(!report.exact);
    }

    #[test]
    fn the_oldest_whole_turns_are_dropped_first_and_the_system_prompt_stays() {
        let history = long_history();
        // Each history message estimates to 4 + 25 = 29 tokens; system ~7, user ~7.
        let (messages, report) = build(&input(&history, 150), &|_| None).unwrap();
        assert_eq!(messages[0].role, Role::System);
        assert_eq!(
            messages.last().map(|m| m.content.clone()),
            Some(Some("next question".into()))
        );
        assert!(report.prompt_tokens <= report.budget);
        assert_eq!(report.trimmed_messages % 2, 0, "whole turns are dropped");
        assert_eq!(
            messages[1].role,
            Role::User,
            "history starts with a question"
        );
        // The newest turns are kept: one more turn would not have fitted.
        assert_eq!(report.sent_history_messages, 4);
        assert_eq!(report.trimmed_messages, 6);
    }

    #[test]
    fn exact_counts_are_used_when_available() {
        let history = long_history();
        let counter = |messages: &[ChatMessage]| Some(messages.len() * 10);
        let (messages, report) = build(&input(&history, 60), &counter).unwrap();
        assert!(report.exact);
        assert_eq!(messages.len(), 4);
        assert_eq!(report.prompt_tokens, 40);
    }

    #[test]
    fn a_prompt_too_large_alone_is_an_overflow() {
        let history = long_history();
        let counter = |_: &[ChatMessage]| Some(1_000);
        assert_eq!(
            build(&input(&history, 100), &counter),
            Err(ContextOverflow {
                prompt_tokens: 1_000,
                budget: 90
            })
        );
    }

    #[test]
    fn unfinished_answers_are_not_shown_to_the_model() {
        let history = vec![
            message(1, "user", "a", "complete"),
            message(2, "assistant", "partial", "incomplete"),
        ];
        let (messages, _) = build(&input(&history, 10_000), &|_| None).unwrap();
        assert_eq!(messages.len(), 3);
    }

    #[test]
    fn the_profile_is_rendered_as_fields() {
        let profile = json!({"company": "Acme Roofing", "focus_areas": ["roofing", "solar"], "team_size": 12});
        let rendered = render_fields(&profile);
        assert!(rendered.contains("- company: Acme Roofing"));
        assert!(rendered.contains("- focus areas: roofing, solar"));
        assert!(rendered.contains("- team size: 12"));
    }
}
