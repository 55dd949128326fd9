//! The tables derived from `interactions`, defined in SQL (see `docs/analytics.md`).
//!
//! `outcomes_latest`: one row per interaction that has an outcome — its own `outcomes`
//! overlaid, field by field, by the non-null fields of the outcomes linked to it later (roots
//! first, then linked records in `timestamp` order; the last value wins). This is the merge
//! rule of `GET /v1/interactions/{id}` and of `processed/outcomes/`. Linked records carry their
//! parent's user and conversation, so those columns need no join.
//!
//! `conversations`: one row per `conversation_id`. Tokens, cost and turns count the records
//! that carry model usage; a product's own turn records (e.g. `ai_concierge_response`) are
//! preferred, and the gateway's call records (`ai_completion`, `ai_embedding`) count only in
//! conversations that have none — so a concierge conversation is not counted twice.

/// The SQL dialects the views are written in: Flywheel's engine, and the engines the
/// generated DDL targets (`flywheel lake ddl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    DataFusion,
    DuckDb,
    Athena,
}

impl Dialect {
    /// The value of the last row in `order` (an ordered aggregate).
    fn last_by(self, value: &str, order: &Order) -> String {
        match self {
            Dialect::DataFusion => format!("last_value({value} ORDER BY {})", order.keys),
            Dialect::DuckDb => format!("last({value} ORDER BY {})", order.keys),
            Dialect::Athena => format!("max_by({value}, {})", order.numeric),
        }
    }

    /// `last_by` for a BOOLEAN column. DataFusion 55 has a fast grouped accumulator for
    /// `last_value` over numbers but not over booleans (which fall back to one accumulator
    /// per group, several times slower on large groups counts), so there the value travels as
    /// a TINYINT and is cast back; `filter` is the aggregate's FILTER clause, if any.
    fn last_bool_by(self, value: &str, order: &Order, filter: &str) -> String {
        match self {
            Dialect::DataFusion => format!(
                "CAST(last_value(CAST({value} AS TINYINT) ORDER BY {}){filter} AS BOOLEAN)",
                order.keys
            ),
            _ => format!("{}{filter}", self.last_by(value, order)),
        }
    }

    /// The value of the first row in `order`.
    fn first_by(self, value: &str, order: &Order) -> String {
        match self {
            Dialect::DataFusion => format!("first_value({value} ORDER BY {})", order.keys),
            Dialect::DuckDb => format!("first({value} ORDER BY {})", order.keys),
            Dialect::Athena => format!("min_by({value}, {})", order.numeric),
        }
    }

    /// A timestamp as Unix milliseconds (BIGINT).
    fn epoch_ms(self, timestamp: &str) -> String {
        match self {
            Dialect::DataFusion => format!("CAST({timestamp} AS BIGINT)"),
            Dialect::DuckDb => format!("epoch_ms({timestamp})"),
            Dialect::Athena => format!("CAST(to_unixtime({timestamp}) * 1000 AS BIGINT)"),
        }
    }
}

/// An ordering as sort keys, and as one number for engines whose "value at the last row"
/// aggregate takes a single key (`max_by`).
struct Order {
    keys: &'static str,
    numeric: &'static str,
}

/// Roots first, then linked records, each in `timestamp` order.
const ROOTS_THEN_LINKED: Order = Order {
    keys: "parent_interaction_id IS NOT NULL, \"timestamp\"",
    numeric: "(CASE WHEN parent_interaction_id IS NULL THEN 0 ELSE 100000000000000 END) \
              + to_unixtime(\"timestamp\") * 1000",
};

const BY_TIME: Order = Order {
    keys: "\"timestamp\"",
    numeric: "to_unixtime(\"timestamp\")",
};

const BY_LAST_OUTCOME: Order = Order {
    keys: "last_outcome_at",
    numeric: "to_unixtime(last_outcome_at)",
};

/// The outcome fields, in order.
const OUTCOME_FIELDS: [&str; 7] = [
    "partner_matched",
    "partner_id",
    "match_score",
    "demo_booked",
    "deal_closed",
    "deal_value",
    "satisfaction_score",
];

/// The outcome fields of type BOOLEAN.
const BOOLEAN_OUTCOME_FIELDS: [&str; 3] = ["partner_matched", "demo_booked", "deal_closed"];

/// Whether a row of `interactions` carries any outcome field.
pub(crate) fn has_outcome() -> String {
    OUTCOME_FIELDS
        .map(|field| format!("outcomes_{field} IS NOT NULL"))
        .join(" OR ")
}

pub(crate) fn outcomes_latest(d: Dialect) -> String {
    let mut merged = String::new();
    for field in OUTCOME_FIELDS {
        let column = format!("outcomes_{field}");
        let filter = format!(" FILTER (WHERE {column} IS NOT NULL)");
        let last = if BOOLEAN_OUTCOME_FIELDS.contains(&field) {
            d.last_bool_by(&column, &ROOTS_THEN_LINKED, &filter)
        } else {
            format!("{}{filter}", d.last_by(&column, &ROOTS_THEN_LINKED))
        };
        merged.push_str(&format!("{last} AS {field}, "));
    }
    format!(
        "SELECT tenant_id, \
           COALESCE(parent_interaction_id, interaction_id) AS interaction_id, \
           min(user_id) AS user_id, \
           min(user_type) AS user_type, \
           min(conversation_id) AS conversation_id, \
           {merged}\
           count(parent_interaction_id) AS linked_outcomes, \
           min(\"timestamp\") AS first_outcome_at, \
           max(\"timestamp\") AS last_outcome_at \
         FROM interactions WHERE {has_outcome} \
         GROUP BY tenant_id, COALESCE(parent_interaction_id, interaction_id)",
        has_outcome = has_outcome()
    )
}

/// The gateway's own call records.
const GATEWAY_TYPES: &str = "('ai_completion', 'ai_embedding')";

pub(crate) fn conversations(d: Dialect) -> String {
    let first_user = d.first_by("user_id", &BY_TIME);
    let first_user_type = d.first_by("user_type", &BY_TIME);
    let last_helpful = d.last_bool_by(
        "feedback_helpful",
        &BY_TIME,
        " FILTER (WHERE feedback_helpful IS NOT NULL)",
    );
    let last_recommend = d.last_bool_by(
        "feedback_would_recommend",
        &BY_TIME,
        " FILTER (WHERE feedback_would_recommend IS NOT NULL)",
    );
    let last_partner = d.last_by("partner_id", &BY_LAST_OUTCOME);
    let duration = format!(
        "{} - {}",
        d.epoch_ms("per.ended_at"),
        d.epoch_ms("per.started_at")
    );
    format!(
        "WITH per AS ( \
           SELECT tenant_id, conversation_id, \
             {first_user} AS user_id, \
             {first_user_type} AS user_type, \
             count(*) AS interactions, \
             min(\"timestamp\") AS started_at, \
             max(\"timestamp\") AS ended_at, \
             count(ai_total_tokens) FILTER (WHERE interaction_type NOT IN {GATEWAY_TYPES}) AS own_turns, \
             sum(ai_total_tokens) FILTER (WHERE interaction_type NOT IN {GATEWAY_TYPES}) AS own_tokens, \
             sum(ai_cost) FILTER (WHERE interaction_type NOT IN {GATEWAY_TYPES}) AS own_cost, \
             sum(ai_duration_ms) FILTER (WHERE interaction_type NOT IN {GATEWAY_TYPES}) AS own_model_ms, \
             count(ai_total_tokens) FILTER (WHERE interaction_type IN {GATEWAY_TYPES}) AS call_turns, \
             sum(ai_total_tokens) FILTER (WHERE interaction_type IN {GATEWAY_TYPES}) AS call_tokens, \
             sum(ai_cost) FILTER (WHERE interaction_type IN {GATEWAY_TYPES}) AS call_cost, \
             sum(ai_duration_ms) FILTER (WHERE interaction_type IN {GATEWAY_TYPES}) AS call_model_ms, \
             count(*) FILTER (WHERE feedback_helpful IS NOT NULL OR feedback_accuracy IS NOT NULL \
               OR feedback_would_recommend IS NOT NULL OR feedback_comments IS NOT NULL) AS feedback_count, \
             {last_helpful} AS feedback_helpful, \
             avg(feedback_accuracy) AS feedback_accuracy, \
             {last_recommend} AS feedback_would_recommend \
           FROM interactions WHERE conversation_id IS NOT NULL \
           GROUP BY tenant_id, conversation_id), \
         outcome AS ( \
           SELECT tenant_id, conversation_id, \
             bool_or(partner_matched) AS partner_matched, \
             {last_partner} FILTER (WHERE partner_id IS NOT NULL) AS partner_id, \
             bool_or(demo_booked) AS demo_booked, \
             bool_or(deal_closed) AS deal_closed, \
             sum(deal_value) FILTER (WHERE deal_closed) AS deal_value, \
             avg(satisfaction_score) AS satisfaction_score \
           FROM outcomes_latest WHERE conversation_id IS NOT NULL \
           GROUP BY tenant_id, conversation_id) \
         SELECT per.tenant_id, per.conversation_id, per.user_id, per.user_type, \
           per.started_at, per.ended_at, \
           {duration} AS duration_ms, \
           per.interactions, \
           CASE WHEN per.own_turns > 0 THEN per.own_turns ELSE per.call_turns END AS turns, \
           CASE WHEN per.own_turns > 0 THEN per.own_tokens ELSE per.call_tokens END AS total_tokens, \
           CASE WHEN per.own_turns > 0 THEN per.own_cost ELSE per.call_cost END AS total_cost, \
           CASE WHEN per.own_turns > 0 THEN per.own_model_ms ELSE per.call_model_ms END AS model_duration_ms, \
           outcome.partner_matched, outcome.partner_id, outcome.demo_booked, outcome.deal_closed, \
           outcome.deal_value, outcome.satisfaction_score, \
           per.feedback_count, per.feedback_helpful, per.feedback_accuracy, per.feedback_would_recommend \
         FROM per LEFT JOIN outcome \
           ON per.tenant_id = outcome.tenant_id AND per.conversation_id = outcome.conversation_id"
    )
}

/// The derived tables in the order they must be created (each reads the ones before it).
pub fn definitions(dialect: Dialect) -> Vec<(&'static str, String)> {
    vec![
        ("outcomes_latest", outcomes_latest(dialect)),
        ("conversations", conversations(dialect)),
    ]
}
