//! Reciprocal-rank fusion: merging rankings whose scores are not comparable.
//!
//! A cosine similarity and a BM25 score live on different scales, so hybrid search does not add
//! them; it adds `1 / (k + rank)` for every list an item appears in (Cormack, Clarke and
//! Büttcher, 2009), with `k = 60` as in that paper and in most engines that offer it.

use std::collections::HashMap;
use std::hash::Hash;

/// The constant of the paper; larger values flatten the advantage of the first ranks.
pub const DEFAULT_RRF_K: f32 = 60.0;

/// Fuses ranked lists (best first) into one, best first. Each list carries a weight (1.0 for an
/// unweighted fusion). Ties are broken by the best rank the item reached in any list, then by the
/// order of the lists, so the result is deterministic.
pub fn reciprocal_rank_fusion<T: Clone + Eq + Hash>(
    rankings: &[(f32, Vec<T>)],
    k: f32,
) -> Vec<(T, f32)> {
    struct Entry {
        score: f32,
        best_rank: usize,
        first_list: usize,
        first_position: usize,
    }
    let mut entries: HashMap<T, Entry> = HashMap::new();
    for (list_idx, (weight, ranking)) in rankings.iter().enumerate() {
        for (rank_idx, item) in ranking.iter().enumerate() {
            let contribution = weight / (k + (rank_idx + 1) as f32);
            let entry = entries.entry(item.clone()).or_insert(Entry {
                score: 0.0,
                best_rank: rank_idx,
                first_list: list_idx,
                first_position: rank_idx,
            });
            entry.score += contribution;
            entry.best_rank = entry.best_rank.min(rank_idx);
        }
    }
    let mut fused: Vec<(T, Entry)> = entries.into_iter().collect();
    fused.sort_by(|(_, a), (_, b)| {
        b.score
            .total_cmp(&a.score)
            .then(a.best_rank.cmp(&b.best_rank))
            .then(a.first_list.cmp(&b.first_list))
            .then(a.first_position.cmp(&b.first_position))
    });
    fused
        .into_iter()
        .map(|(item, entry)| (item, entry.score))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_high_in_both_lists_wins_over_one_first_in_a_single_list() {
        let vector = vec!["a", "b", "c"];
        let lexical = vec!["b", "d", "a"];
        let fused = reciprocal_rank_fusion(&[(1.0, vector), (1.0, lexical)], DEFAULT_RRF_K);
        let order: Vec<&str> = fused.iter().map(|(item, _)| *item).collect();
        assert_eq!(order, vec!["b", "a", "d", "c"]);
        // b: 1/62 + 1/61; a: 1/61 + 1/63.
        assert!((fused[0].1 - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-6);
        assert!((fused[1].1 - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-6);
    }

    #[test]
    fn ties_are_broken_by_best_rank_then_list_order() {
        // "x" is first in the first list, "y" first in the second: equal scores.
        let fused = reciprocal_rank_fusion(&[(1.0, vec!["x"]), (1.0, vec!["y"])], DEFAULT_RRF_K);
        assert_eq!(fused[0].0, "x");
        assert_eq!(fused[1].0, "y");
    }

    #[test]
    fn weights_scale_a_list() {
        let fused = reciprocal_rank_fusion(
            &[(1.0, vec!["x", "y"]), (3.0, vec!["y", "x"])],
            DEFAULT_RRF_K,
        );
        assert_eq!(fused[0].0, "y");
    }
}
