//! Descriptor matching between two photos: approximate nearest neighbours (HNSW) with Lowe's
//! ratio test in both directions, so every match is one-to-one.

use openmvg_features::matching::{HnswMatcher, MatchAcceptance, MatcherError, SquaredL2DistanceU8};
use rayon::prelude::*;

use crate::feature::Features;

/// Lowe's ratio on plain (not squared) distances; openMVG's and SIFT's customary value.
pub const RATIO: f32 = 0.8;

/// Queries per parallel chunk; results are concatenated in order, so the output does not depend
/// on the thread count.
const CHUNK: usize = 256;

/// A search index over one photo's descriptors. It is rebuilt from the features when needed, so
/// it is never saved.
pub struct MatchIndex {
    hnsw: HnswMatcher<u8, SquaredL2DistanceU8>,
}

impl std::fmt::Debug for MatchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatchIndex")
            .field("descriptors", &self.hnsw.indexed_descriptor_count())
            .finish()
    }
}

impl MatchIndex {
    /// Build the index; `None` when there are too few descriptors to match at all.
    pub fn build(features: &Features) -> Option<Self> {
        if features.len() < 2 {
            return None;
        }
        let mut hnsw = HnswMatcher::new();
        hnsw.build(&features.descriptor_slices()).ok()?;
        Some(Self { hnsw })
    }

    fn query(
        &self,
        queries: &[&[u8]],
    ) -> Result<Vec<Vec<openmvg_features::matching::Match>>, MatcherError> {
        let parts: Result<Vec<_>, _> = queries
            .par_chunks(CHUNK)
            .map(|chunk| self.hnsw.query_batch(chunk, 2))
            .collect();
        Ok(parts?.into_iter().flatten().collect())
    }
}

/// Mutual ratio-test matches between `a` and `b` as (keypoint in a, keypoint in b), sorted.
pub fn match_pair(
    a: &Features,
    index_a: &MatchIndex,
    b: &Features,
    index_b: &MatchIndex,
) -> Vec<(u32, u32)> {
    let queries = a.descriptor_slices();
    let database = b.descriptor_slices();
    if !MatchAcceptance::Reciprocal.can_match(queries.len(), database.len()) {
        return Vec::new();
    }
    let Ok(forward) = index_b.query(&queries) else {
        return Vec::new();
    };
    let kept = MatchAcceptance::Reciprocal.filter_squared(&forward, RATIO, |targets| {
        let rows: Vec<&[u8]> = targets
            .iter()
            .filter_map(|&t| database.get(t).copied())
            .collect();
        index_a.query(&rows)
    });
    let mut pairs: Vec<(u32, u32)> = kept
        .unwrap_or_default()
        .iter()
        .map(|m| (m.query_index() as u32, m.target_index() as u32))
        .collect();
    pairs.sort_unstable();
    pairs
}

/// A cheap overlap score: how many of a spread subset of `a`'s descriptors pass the one-way ratio
/// test against `b`. Used to pick which photos deserve full matching.
pub fn overlap_score(a: &Features, index_b: &MatchIndex, sample: usize) -> usize {
    let all = a.descriptor_slices();
    let step = (all.len() / sample.max(1)).max(1);
    let queries: Vec<&[u8]> = all.iter().step_by(step).copied().collect();
    let Ok(found) = index_b.query(&queries) else {
        return 0;
    };
    found
        .iter()
        .filter(|n| match (n.first(), n.get(1)) {
            (Some(best), Some(second)) => best.distance() < RATIO * RATIO * second.distance(),
            _ => false,
        })
        .count()
}
