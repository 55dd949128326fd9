//! The plan's reports, each one SQL statement over the tenant's tables with the time window
//! bound as parameters (never spliced into the text). Definitions: `docs/analytics.md`.

use serde_json::{json, Map, Value};

use crate::{output, Analytics, AnalyticsError, QueryResult, ScalarValue};

/// A half-open time window `[from, to)` in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Window {
    fn params(&self) -> Vec<ScalarValue> {
        vec![
            ScalarValue::TimestampMillisecond(Some(self.from_ms), Some("UTC".into())),
            ScalarValue::TimestampMillisecond(Some(self.to_ms), Some("UTC".into())),
        ]
    }
}

/// `GET /v1/reports/ai-usage`: per UTC day, the AI turns of `interaction_type` (default
/// `ai_concierge_response`, the concierge's answers, which carry tokens and cost).
pub const AI_USAGE: &str = "SELECT CAST(date_trunc('day', \"timestamp\") AS DATE) AS day, \
       count(*) AS interactions, \
       avg(ai_total_tokens) AS avg_tokens, \
       sum(ai_total_tokens) AS total_tokens, \
       sum(ai_cost) AS total_cost \
     FROM interactions \
     WHERE interaction_type = $3 AND \"timestamp\" >= $1 AND \"timestamp\" < $2 \
     GROUP BY 1 ORDER BY 1";

/// `GET /v1/reports/funnel`: distinct contractors active in the window, and of them those whose
/// outcome chains (first recorded in the window, later changes merged) reached each step.
pub const FUNNEL: &str = "WITH active AS ( \
       SELECT count(DISTINCT user_id) AS contractors FROM interactions \
       WHERE user_type = 'contractor' AND \"timestamp\" >= $1 AND \"timestamp\" < $2), \
     steps AS ( \
       SELECT count(DISTINCT CASE WHEN partner_matched THEN user_id END) AS partner_matched, \
         count(DISTINCT CASE WHEN demo_booked THEN user_id END) AS demo_booked, \
         count(DISTINCT CASE WHEN deal_closed THEN user_id END) AS deal_closed \
       FROM outcomes_latest \
       WHERE user_type = 'contractor' AND first_outcome_at >= $1 AND first_outcome_at < $2) \
     SELECT active.contractors, steps.partner_matched, steps.demo_booked, steps.deal_closed \
     FROM active CROSS JOIN steps";

/// `GET /v1/reports/partners`: per partner, over outcome chains first recorded in the window.
pub const PARTNERS: &str = "SELECT partner_id, \
       count(*) FILTER (WHERE partner_matched) AS matches, \
       avg(match_score) AS avg_match_score, \
       avg(satisfaction_score) AS avg_satisfaction, \
       count(*) FILTER (WHERE demo_booked) AS demos_booked, \
       count(*) FILTER (WHERE deal_closed) AS deals, \
       COALESCE(sum(deal_value) FILTER (WHERE deal_closed), 0) AS deal_value \
     FROM outcomes_latest \
     WHERE partner_id IS NOT NULL AND first_outcome_at >= $1 AND first_outcome_at < $2 \
     GROUP BY partner_id ORDER BY matches DESC, partner_id";

/// `GET /v1/reports/models`: per provider and model, the gateway's calls (`ai_completion`,
/// `ai_embedding`; or the given `interaction_type`) with cost and latency percentiles.
pub const MODELS: &str = "SELECT split_part(ai_model, '/', 1) AS provider, \
       CASE WHEN strpos(ai_model, '/') > 0 \
         THEN substr(ai_model, strpos(ai_model, '/') + 1) ELSE ai_model END AS model, \
       count(*) AS calls, \
       sum(ai_total_tokens) AS total_tokens, \
       sum(ai_cost) AS total_cost, \
       count(ai_cost) AS priced_calls, \
       avg(ai_duration_ms) AS avg_duration_ms, \
       percentile_cont(0.5) WITHIN GROUP (ORDER BY ai_duration_ms) AS p50_duration_ms, \
       percentile_cont(0.95) WITHIN GROUP (ORDER BY ai_duration_ms) AS p95_duration_ms \
     FROM interactions \
     WHERE ai_model IS NOT NULL AND (interaction_type = $3 OR ($3 = '' AND interaction_type IN ('ai_completion', 'ai_embedding'))) \
       AND \"timestamp\" >= $1 AND \"timestamp\" < $2 \
     GROUP BY 1, 2 ORDER BY total_cost DESC NULLS LAST, calls DESC, provider, model";

/// Every row of `result` as a JSON object.
fn rows(result: &QueryResult) -> Result<Vec<Value>, AnalyticsError> {
    let bytes = output::json_rows(result)?;
    serde_json::from_slice(&bytes)
        .map_err(|err| AnalyticsError::Engine(format!("cannot read the report rows: {err}")))
}

fn window_json(window: Window) -> Value {
    let text = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    };
    json!({"from": text(window.from_ms), "to": text(window.to_ms)})
}

impl Analytics {
    pub async fn ai_usage(
        &self,
        tenant: &str,
        window: Window,
        interaction_type: &str,
    ) -> Result<Value, AnalyticsError> {
        let mut params = window.params();
        params.push(ScalarValue::Utf8(Some(interaction_type.to_owned())));
        let result = self.query(tenant, AI_USAGE, params, Some(100_000)).await?;
        Ok(json!({
            "window": window_json(window),
            "interaction_type": interaction_type,
            "days": rows(&result)?,
        }))
    }

    pub async fn funnel(&self, tenant: &str, window: Window) -> Result<Value, AnalyticsError> {
        let result = self.query(tenant, FUNNEL, window.params(), Some(1)).await?;
        let row = rows(&result)?.into_iter().next().unwrap_or(Value::Null);
        let count = |name: &str| row.get(name).and_then(Value::as_u64).unwrap_or(0);
        let total = count("contractors");
        let mut steps = Vec::new();
        let mut previous = total;
        for (step, users) in [
            ("contractors", total),
            ("partner_matched", count("partner_matched")),
            ("demo_booked", count("demo_booked")),
            ("deal_closed", count("deal_closed")),
        ] {
            let rate = |of: u64| (of > 0).then(|| users as f64 / of as f64);
            let mut entry = Map::new();
            entry.insert("step".into(), json!(step));
            entry.insert("users".into(), json!(users));
            entry.insert("rate_from_previous".into(), json!(rate(previous)));
            entry.insert("rate_from_total".into(), json!(rate(total)));
            steps.push(Value::Object(entry));
            previous = users;
        }
        Ok(json!({"window": window_json(window), "steps": steps}))
    }

    pub async fn partners(&self, tenant: &str, window: Window) -> Result<Value, AnalyticsError> {
        let result = self
            .query(tenant, PARTNERS, window.params(), Some(100_000))
            .await?;
        Ok(json!({"window": window_json(window), "partners": rows(&result)?}))
    }

    pub async fn models(
        &self,
        tenant: &str,
        window: Window,
        interaction_type: Option<&str>,
    ) -> Result<Value, AnalyticsError> {
        let mut params = window.params();
        params.push(ScalarValue::Utf8(Some(
            interaction_type.unwrap_or_default().to_owned(),
        )));
        let result = self.query(tenant, MODELS, params, Some(100_000)).await?;
        Ok(json!({"window": window_json(window), "models": rows(&result)?}))
    }
}
