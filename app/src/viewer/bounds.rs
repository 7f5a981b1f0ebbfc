//! Axis-aligned bounds of the model, robust to stray points.
//!
//! Reconstructions always carry a few wild points (a mismatched feature triangulated far
//! behind a camera). Framing the plain min/max would shrink the real model to a dot, so
//! "fit to model" frames the 2nd to 98th percentile of each axis instead. This module only
//! measures; it does not filter what is drawn.

use crate::shard::ShardPoint;

/// An axis-aligned box in world coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    pub min: [f32; 3],
    pub max: [f32; 3],
}

impl Bounds {
    /// The smallest box holding `points`; `None` when no point is finite.
    pub fn of_points(points: impl IntoIterator<Item = [f32; 3]>) -> Option<Self> {
        let mut bounds: Option<Self> = None;
        for p in points.into_iter().filter(|p| p.iter().all(|v| v.is_finite())) {
            let b = bounds.get_or_insert(Self { min: p, max: p });
            for ((lo, hi), v) in b.min.iter_mut().zip(b.max.iter_mut()).zip(p) {
                *lo = lo.min(v);
                *hi = hi.max(v);
            }
        }
        bounds
    }

    /// The centre, or `None` for a box that is not finite or is inside out.
    pub fn center(&self) -> Option<[f32; 3]> {
        let valid = (0..3).all(|a| self.min[a].is_finite() && self.max[a].is_finite() && self.min[a] <= self.max[a]);
        valid.then(|| std::array::from_fn(|a| (self.min[a] + self.max[a]) / 2.0))
    }

    /// Half the diagonal: the radius of the sphere through the corners.
    pub fn radius(&self) -> f32 {
        let d2: f32 = (0..3).map(|a| (self.max[a] - self.min[a]).powi(2)).sum();
        let r = d2.sqrt() / 2.0;
        if r.is_finite() { r } else { 0.0 }
    }
}

/// The share of points cut off at each end of each axis.
pub const OUTLIER_FRACTION: f64 = 0.02;
/// Percentiles are estimated from at most this many points (an even spread over all of them),
/// so fitting a million-point model stays a few milliseconds.
const MAX_SAMPLES: usize = 200_000;

/// The 2nd to 98th percentile box of every finite point in `shards`; `None` when there are none.
pub fn robust_bounds<'a>(shards: impl IntoIterator<Item = &'a [ShardPoint]> + Clone) -> Option<Bounds> {
    let total: usize = shards.clone().into_iter().map(<[ShardPoint]>::len).sum();
    if total == 0 {
        return None;
    }
    let stride = total.div_ceil(MAX_SAMPLES);
    let mut axes: [Vec<f32>; 3] = std::array::from_fn(|_| Vec::with_capacity(total / stride + 1));
    for p in shards.into_iter().flatten().step_by(stride) {
        if p.position.iter().all(|v| v.is_finite()) {
            for (axis, values) in axes.iter_mut().enumerate() {
                values.push(p.position[axis]);
            }
        }
    }
    let n = axes[0].len();
    if n == 0 {
        return None;
    }
    let lo = ((n - 1) as f64 * OUTLIER_FRACTION).round() as usize;
    let hi = ((n - 1) as f64 * (1.0 - OUTLIER_FRACTION)).round() as usize;
    let mut min = [0f32; 3];
    let mut max = [0f32; 3];
    for (axis, values) in axes.iter_mut().enumerate() {
        min[axis] = *values.select_nth_unstable_by(lo, f32::total_cmp).1;
        max[axis] = *values.select_nth_unstable_by(hi, f32::total_cmp).1;
    }
    Some(Bounds { min, max })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(position: [f32; 3]) -> ShardPoint {
        ShardPoint { position, color: [0; 3] }
    }

    #[test]
    fn stray_points_do_not_stretch_the_box() {
        // A 10 x 10 x 10 grid in [0, 9], plus three points very far away.
        let mut points: Vec<ShardPoint> = (0..1000)
            .map(|i| point([(i % 10) as f32, (i / 10 % 10) as f32, (i / 100) as f32]))
            .collect();
        points.push(point([1e6, 0.0, 0.0]));
        points.push(point([0.0, -1e6, 0.0]));
        points.push(point([f32::NAN, 0.0, 0.0]));
        let bounds = robust_bounds([points.as_slice()]).expect("bounds");
        for axis in 0..3 {
            assert!(bounds.min[axis] >= 0.0 && bounds.min[axis] <= 1.0, "{bounds:?}");
            assert!(bounds.max[axis] >= 8.0 && bounds.max[axis] <= 9.0, "{bounds:?}");
        }
        let plain = Bounds::of_points(points.iter().map(|p| p.position)).expect("plain");
        assert_eq!(plain.max[0], 1e6, "the plain box does see the outlier");
    }

    #[test]
    fn several_shards_count_as_one_cloud() {
        let a: Vec<ShardPoint> = (0..50).map(|i| point([i as f32, 0.0, 0.0])).collect();
        let b: Vec<ShardPoint> = (50..100).map(|i| point([i as f32, 0.0, 0.0])).collect();
        let bounds = robust_bounds([a.as_slice(), b.as_slice()]).expect("bounds");
        assert_eq!(bounds.min[0], 2.0);
        assert_eq!(bounds.max[0], 97.0);
    }

    #[test]
    fn large_clouds_are_sampled_evenly() {
        let points: Vec<ShardPoint> = (0..1_000_000).map(|i| point([i as f32, 0.0, 0.0])).collect();
        let bounds = robust_bounds([points.as_slice()]).expect("bounds");
        assert!((bounds.min[0] - 20_000.0).abs() < 1_000.0, "{bounds:?}");
        assert!((bounds.max[0] - 980_000.0).abs() < 1_000.0, "{bounds:?}");
    }

    #[test]
    fn empty_and_degenerate_inputs() {
        assert_eq!(robust_bounds(std::iter::empty::<&[ShardPoint]>()), None);
        assert_eq!(robust_bounds([[point([f32::NAN; 3])].as_slice()]), None);
        let one = robust_bounds([[point([1.0, 2.0, 3.0])].as_slice()]).expect("one point");
        assert_eq!(one.center(), Some([1.0, 2.0, 3.0]));
        assert_eq!(one.radius(), 0.0);
        assert_eq!(Bounds { min: [1.0; 3], max: [0.0; 3] }.center(), None);
    }
}
