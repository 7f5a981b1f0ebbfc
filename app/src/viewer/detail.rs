//! Level of detail: how many points a frame draws while the camera moves.
//!
//! Without a GPU the browser rasterises on the CPU (SwiftShader), where a frame costs roughly
//! in proportion to its points: about 0.6 µs a point on this project's machine, so a million
//! points make frames of more than half a second and orbiting stutters. While the camera
//! moves, the viewer therefore draws an evenly spread subset sized to a frame budget, using the
//! cost per point it measured on the frames it drew; once the camera has rested for
//! [`SETTLE_MS`] it draws everything again. On a GPU the measured cost is tiny and the subset is
//! the whole model, so nothing changes there.
//!
//! The subset is a prefix of each shard's GPU buffer, so no buffer is rebuilt while moving.
//! Shards arrive in Morton order (nearby points are adjacent), so a plain prefix would be one
//! corner of the shard; [`spread_order`] is the order points are uploaded in, which makes every
//! prefix an even sample of the whole shard.

/// What a moving frame may cost: fast enough to follow a drag, on any machine.
pub const FRAME_BUDGET_MS: f64 = 40.0;
/// A moving frame never drops below this many points: fewer no longer shows the model's shape,
/// and on slow machines the fixed cost of a frame dominates anyway.
pub const MIN_MOVING_POINTS: usize = 50_000;
/// The camera counts as moving until it has rested this long; then the full model is drawn.
pub const SETTLE_MS: f64 = 200.0;
/// Frames with fewer points than this measure the frame's fixed costs, not the points.
const MIN_SAMPLE_POINTS: usize = 10_000;

/// The measured cost of drawing points, and the points a moving frame can afford.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PointBudget {
    /// Milliseconds a point, smoothed over recent frames; `None` before the first measurement.
    ms_per_point: Option<f64>,
}

impl PointBudget {
    /// A frame of `points` points took `ms`, from its draw call until the browser could start
    /// the next frame.
    pub fn observe(&mut self, points: usize, ms: f64) {
        if points < MIN_SAMPLE_POINTS || !ms.is_finite() || ms <= 0.0 {
            return;
        }
        let sample = ms / points as f64;
        // Half-and-half smoothing: one slow frame (a collection pause) does not halve the detail,
        // and a real change is followed within a few frames.
        self.ms_per_point = Some(self.ms_per_point.map_or(sample, |old| 0.5 * old + 0.5 * sample));
    }

    /// Points to draw in a frame of a model of `total` points while the camera moves.
    pub fn moving(&self, total: usize) -> usize {
        match self.ms_per_point {
            None => total,
            Some(cost) => {
                let affordable = (FRAME_BUDGET_MS / cost).min(usize::MAX as f64) as usize;
                affordable.max(MIN_MOVING_POINTS).min(total)
            }
        }
    }
}

/// The points of a shard of `budget`'s share of a `total`-point model: `count * budget / total`,
/// rounded up so that no shard disappears.
pub fn share(count: usize, budget: usize, total: usize) -> usize {
    if budget >= total || total == 0 {
        return count;
    }
    ((count as u128 * budget as u128).div_ceil(total as u128) as usize).min(count)
}

/// A permutation of `0..n` whose every prefix is spread evenly over `0..n`: index `i` maps to
/// `i * step mod n`, with `step` near `n` times the golden ratio's fraction and coprime to `n`
/// (a rank-1 lattice, the most even such sequence).
pub fn spread_order(n: usize) -> impl Iterator<Item = usize> {
    let n64 = n as u64;
    let mut step = ((n as f64) * 0.618_033_988_75).round() as u64;
    step = step.max(1);
    while n64 > 1 && gcd(step, n64) != 1 {
        step += 1;
    }
    (0..n64).map(move |i| ((i * step) % n64.max(1)) as usize)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_order_is_a_permutation_whose_prefixes_cover_every_region() {
        for n in [0, 1, 2, 3, 10, 64, 1000, 65_536, 65_537] {
            let mut order: Vec<usize> = spread_order(n).collect();
            order.sort_unstable();
            assert_eq!(order, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
        // An eighth of a Morton-ordered shard: each of 16 index ranges (regions of space) gets
        // its share, within a point or two.
        let n = 65_536;
        let mut per_region = [0usize; 16];
        for i in spread_order(n).take(n / 8) {
            per_region[i * 16 / n] += 1;
        }
        for count in per_region {
            assert!(count.abs_diff(n / 8 / 16) <= 2, "{per_region:?}");
        }
    }

    #[test]
    fn the_budget_follows_measured_cost() {
        let mut budget = PointBudget::default();
        // Nothing measured: draw everything.
        assert_eq!(budget.moving(1_000_000), 1_000_000);
        // A software rasteriser: a million points in 600 ms.
        budget.observe(1_000_000, 600.0);
        let moving = budget.moving(1_000_000);
        assert_eq!(moving, 66_666);
        // A GPU: a million points within one 60 Hz frame, so the whole model moves.
        let mut gpu = PointBudget::default();
        gpu.observe(1_000_000, 16.7);
        assert_eq!(gpu.moving(1_000_000), 1_000_000);
        // A model smaller than the floor is drawn whole even on the slowest machine.
        budget.observe(1_000_000, 10_000.0);
        assert_eq!(budget.moving(30_000), 30_000);
        assert_eq!(budget.moving(1_000_000), MIN_MOVING_POINTS);
        // Tiny frames and nonsense say nothing about the cost per point.
        let before = budget.clone();
        budget.observe(500, 100.0);
        budget.observe(1_000_000, f64::NAN);
        budget.observe(1_000_000, 0.0);
        assert_eq!(budget, before);
    }

    #[test]
    fn shares_add_up_to_the_budget_and_never_empty_a_shard() {
        let counts = [65_536, 65_536, 10, 1];
        let total: usize = counts.iter().sum();
        let drawn: Vec<usize> = counts.iter().map(|&c| share(c, 50_000, total)).collect();
        assert!(drawn.iter().zip(counts).all(|(&d, c)| d >= 1 && d <= c));
        let sum: usize = drawn.iter().sum();
        assert!((50_000..50_000 + counts.len()).contains(&sum), "{sum}");
        assert_eq!(share(10, 2_000_000, total), 10);
        assert_eq!(share(0, 10, 0), 0);
    }
}
