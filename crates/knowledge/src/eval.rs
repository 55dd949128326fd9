//! Retrieval metrics over a labelled set: recall@k, MRR and nDCG@k with binary relevance.
//!
//! Items are document ids; a ranking may hold a document more than once (several of its chunks),
//! so rankings are deduplicated first — the metrics count documents, as the labels do.

use std::collections::HashSet;

/// Metrics of one query.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QueryMetrics {
    pub recall_at_5: f64,
    pub recall_at_10: f64,
    pub reciprocal_rank: f64,
    pub ndcg_at_10: f64,
}

/// Means over a set of queries.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    pub queries: usize,
    pub recall_at_5: f64,
    pub recall_at_10: f64,
    pub mrr: f64,
    pub ndcg_at_10: f64,
}

/// The ranking with later repeats of an item removed.
pub fn dedup_ranking<T: AsRef<str>>(ranking: &[T]) -> Vec<String> {
    let mut seen = HashSet::new();
    ranking
        .iter()
        .filter(|item| seen.insert(item.as_ref().to_owned()))
        .map(|item| item.as_ref().to_owned())
        .collect()
}

/// Metrics of one ranking (best first, deduplicated or not) against the relevant items.
/// A query without relevant items has no defined metrics and yields `None`.
pub fn score_query<T: AsRef<str>>(
    ranking: &[T],
    relevant: &HashSet<String>,
) -> Option<QueryMetrics> {
    if relevant.is_empty() {
        return None;
    }
    let ranking = dedup_ranking(ranking);
    let hits_within = |k: usize| {
        ranking
            .iter()
            .take(k)
            .filter(|id| relevant.contains(*id))
            .count()
    };
    let recall_at = |k: usize| hits_within(k) as f64 / relevant.len() as f64;
    let reciprocal_rank = ranking
        .iter()
        .position(|id| relevant.contains(id))
        .map_or(0.0, |idx| 1.0 / (idx + 1) as f64);
    let dcg: f64 = ranking
        .iter()
        .take(10)
        .enumerate()
        .filter(|(_, id)| relevant.contains(*id))
        .map(|(idx, _)| 1.0 / ((idx + 2) as f64).log2())
        .sum();
    let ideal: f64 = (0..relevant.len().min(10))
        .map(|idx| 1.0 / ((idx + 2) as f64).log2())
        .sum();
    Some(QueryMetrics {
        recall_at_5: recall_at(5),
        recall_at_10: recall_at(10),
        reciprocal_rank,
        ndcg_at_10: dcg / ideal,
    })
}

/// The mean of each metric.
pub fn summarise(metrics: &[QueryMetrics]) -> Summary {
    let n_queries = metrics.len();
    if n_queries == 0 {
        return Summary::default();
    }
    let mean =
        |field: fn(&QueryMetrics) -> f64| metrics.iter().map(field).sum::<f64>() / n_queries as f64;
    Summary {
        queries: n_queries,
        recall_at_5: mean(|m| m.recall_at_5),
        recall_at_10: mean(|m| m.recall_at_10),
        mrr: mean(|m| m.reciprocal_rank),
        ndcg_at_10: mean(|m| m.ndcg_at_10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> HashSet<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    #[test]
    fn metrics_match_hand_computation() {
        // Relevant: a, b. Ranking: x, a, a (repeat), y, z, b.
        let metrics = score_query(&["x", "a", "a", "y", "z", "b"], &set(&["a", "b"]))
            .expect("relevant items exist");
        // Deduplicated: x a y z b → a at 2, b at 5.
        assert_eq!(metrics.recall_at_5, 1.0);
        assert_eq!(metrics.reciprocal_rank, 0.5);
        let dcg = 1.0 / 3f64.log2() + 1.0 / 6f64.log2();
        let ideal = 1.0 + 1.0 / 3f64.log2();
        assert!((metrics.ndcg_at_10 - dcg / ideal).abs() < 1e-12);
    }

    #[test]
    fn a_miss_scores_zero_and_no_labels_is_undefined() {
        let metrics = score_query(&["x", "y"], &set(&["a"])).expect("relevant items exist");
        assert_eq!(metrics, QueryMetrics::default());
        assert!(score_query(&["x"], &HashSet::new()).is_none());
    }

    #[test]
    fn summary_is_the_mean() {
        let summary = summarise(&[
            QueryMetrics {
                recall_at_5: 1.0,
                recall_at_10: 1.0,
                reciprocal_rank: 1.0,
                ndcg_at_10: 1.0,
            },
            QueryMetrics::default(),
        ]);
        assert_eq!(summary.queries, 2);
        assert_eq!(summary.mrr, 0.5);
    }
}
