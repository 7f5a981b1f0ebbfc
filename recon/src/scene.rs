//! The growing model: photos (views), 3D points with their observations, and verified pairs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use nalgebra::Vector3;
use serde::{Deserialize, Serialize};

use crate::feature::Features;
use crate::geometry::Pose;
use crate::intrinsics::IntrinsicsSource;
use crate::settings::Intrinsics;

/// Index of a view in [`Scene::views`] (insertion order).
pub type ViewIdx = u32;
/// Identifier of a 3D point, never reused within a scene.
pub type PointId = u32;
/// Marks a keypoint without a 3D point.
pub const NO_POINT: PointId = PointId::MAX;

/// One added photo.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct View {
    /// Caller's photo id.
    pub id: String,
    /// Keypoints, colours and descriptors; shared so that cloning a scene is cheap.
    pub features: Arc<Features>,
    /// Processing size.
    pub width: u32,
    /// Processing size.
    pub height: u32,
    /// Upright size of the original photo.
    pub original_width: u32,
    /// Upright size of the original photo.
    pub original_height: u32,
    /// Processing pixels per original pixel.
    pub scale: f64,
    /// Camera matrix at processing resolution.
    pub intrinsics: Intrinsics,
    /// Where the intrinsics came from (decides whether adjustment may refine them).
    pub intrinsics_source: IntrinsicsSource,
    /// Set once registered.
    pub pose: Option<Pose>,
    /// Per keypoint, the 3D point it observes or [`NO_POINT`].
    pub point_of: Vec<PointId>,
    /// Registration attempts that failed, reported back as the reason.
    pub last_failure: Option<String>,
    /// Which physical camera took the photo (see [`crate::intrinsics::camera_key`]): views with
    /// the same non-zero key share one set of intrinsics in global adjustment. Zero means the
    /// view has intrinsics of its own. Saved after the scene (state version 2), not with it.
    #[serde(skip)]
    pub camera: u64,
    /// Radial distortion k1 (normalized coordinates) of the camera group, estimated by global
    /// adjustment; 0 until then. The keypoint positions in `features` are kept undistorted
    /// with it, so everything but the adjustment sees a pinhole camera. Saved with `camera`.
    #[serde(skip)]
    pub radial: f64,
}

impl View {
    /// The 3D point observed by keypoint `kp`, if any.
    pub fn point(&self, kp: u32) -> Option<PointId> {
        self.point_of
            .get(kp as usize)
            .copied()
            .filter(|&p| p != NO_POINT)
    }

    /// Whether the view has a pose.
    pub fn is_registered(&self) -> bool {
        self.pose.is_some()
    }
}

/// A triangulated point.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Point {
    /// World position.
    pub position: Vector3<f64>,
    /// Mean colour of its observations.
    pub color: [u8; 3],
    /// (view, keypoint), at most one per view, sorted by view.
    pub observations: Vec<(ViewIdx, u32)>,
}

/// The verified matches of a view pair, keyed by (lower view, higher view).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pair {
    /// (keypoint in lower view, keypoint in higher view).
    pub matches: Vec<(u32, u32)>,
    /// Pose of the higher view relative to the lower one (unit baseline), when decomposable.
    pub relative: Option<Pose>,
}

/// Everything the reconstruction knows; cloned per photo so a cancelled or failed step leaves
/// the committed state untouched.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Scene {
    /// Views in insertion order.
    pub views: Vec<View>,
    /// Points by id; the map keeps a deterministic order.
    pub points: BTreeMap<PointId, Point>,
    /// Next unused point id.
    pub next_point: PointId,
    /// Verified pairs.
    pub pairs: BTreeMap<(ViewIdx, ViewIdx), Pair>,
}

impl Scene {
    /// The view with this photo id.
    pub fn find(&self, id: &str) -> Option<ViewIdx> {
        self.views
            .iter()
            .position(|v| v.id == id)
            .map(|i| i as ViewIdx)
    }

    /// Number of registered views.
    pub fn registered_count(&self) -> usize {
        self.views.iter().filter(|v| v.is_registered()).count()
    }

    /// Matches between `a` and `b` oriented as (keypoint in a, keypoint in b).
    pub fn matches_between(&self, a: ViewIdx, b: ViewIdx) -> Vec<(u32, u32)> {
        if a < b {
            self.pairs
                .get(&(a, b))
                .map(|p| p.matches.clone())
                .unwrap_or_default()
        } else {
            self.pairs
                .get(&(b, a))
                .map(|p| p.matches.iter().map(|&(x, y)| (y, x)).collect())
                .unwrap_or_default()
        }
    }

    /// Views paired with `v`, with their match counts, most matches first (ties by index).
    pub fn neighbours(&self, v: ViewIdx) -> Vec<(ViewIdx, usize)> {
        let mut out: Vec<(ViewIdx, usize)> = self
            .pairs
            .iter()
            .filter_map(|(&(a, b), p)| {
                if a == v {
                    Some((b, p.matches.len()))
                } else if b == v {
                    Some((a, p.matches.len()))
                } else {
                    None
                }
            })
            .collect();
        out.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
        out
    }

    pub fn view(&self, v: ViewIdx) -> Option<&View> {
        self.views.get(v as usize)
    }

    /// The points observed by any of `views`: what an adjustment of those views moves.
    pub fn points_seen_by(&self, views: &BTreeSet<ViewIdx>) -> BTreeSet<PointId> {
        self.points
            .iter()
            .filter(|(_, p)| p.observations.iter().any(|(v, _)| views.contains(v)))
            .map(|(&id, _)| id)
            .collect()
    }

    /// Create a point from observations; keypoints already holding a point are skipped.
    pub fn add_point(
        &mut self,
        position: Vector3<f64>,
        observations: &[(ViewIdx, u32)],
    ) -> Option<PointId> {
        let mut obs: Vec<(ViewIdx, u32)> = Vec::with_capacity(observations.len());
        for &(v, kp) in observations {
            let free = self
                .view(v)
                .is_some_and(|view| view.point_of.get(kp as usize) == Some(&NO_POINT));
            if free && !obs.iter().any(|&(w, _)| w == v) {
                obs.push((v, kp));
            }
        }
        if obs.len() < 2 {
            return None;
        }
        obs.sort_unstable();
        let id = self.next_point;
        self.next_point = self.next_point.checked_add(1)?;
        for &(v, kp) in &obs {
            if let Some(slot) = self
                .views
                .get_mut(v as usize)
                .and_then(|view| view.point_of.get_mut(kp as usize))
            {
                *slot = id;
            }
        }
        let color = self.mean_color(&obs);
        self.points.insert(
            id,
            Point {
                position,
                color,
                observations: obs,
            },
        );
        Some(id)
    }

    /// Attach keypoint `kp` of view `v` to point `p`, unless `v` already observes `p`.
    pub(crate) fn add_observation(&mut self, p: PointId, v: ViewIdx, kp: u32) -> bool {
        let free = self
            .view(v)
            .is_some_and(|view| view.point_of.get(kp as usize) == Some(&NO_POINT));
        let Some(point) = self.points.get_mut(&p) else {
            return false;
        };
        if !free || point.observations.iter().any(|&(w, _)| w == v) {
            return false;
        }
        let at = point.observations.partition_point(|&(w, _)| w < v);
        point.observations.insert(at, (v, kp));
        if let Some(slot) = self
            .views
            .get_mut(v as usize)
            .and_then(|view| view.point_of.get_mut(kp as usize))
        {
            *slot = p;
        }
        true
    }

    /// Detach one observation; the point is deleted when fewer than two remain.
    pub(crate) fn remove_observation(&mut self, p: PointId, v: ViewIdx) {
        let Some(point) = self.points.get_mut(&p) else {
            return;
        };
        if let Some(at) = point.observations.iter().position(|&(w, _)| w == v) {
            let (_, kp) = point.observations.remove(at);
            if let Some(slot) = self
                .views
                .get_mut(v as usize)
                .and_then(|view| view.point_of.get_mut(kp as usize))
            {
                *slot = NO_POINT;
            }
        }
        if point.observations.len() < 2 {
            self.remove_point(p);
        }
    }

    /// Take view `v`'s pose away: its observations are detached (points left with fewer than
    /// two views go) and it is pending again with `reason`.
    pub(crate) fn unregister(&mut self, v: ViewIdx, reason: String) {
        let observed: Vec<PointId> = self
            .view(v)
            .map(|view| {
                view.point_of
                    .iter()
                    .copied()
                    .filter(|&p| p != NO_POINT)
                    .collect()
            })
            .unwrap_or_default();
        for p in observed {
            self.remove_observation(p, v);
        }
        if let Some(view) = self.views.get_mut(v as usize) {
            view.pose = None;
            view.last_failure = Some(reason);
        }
    }

    /// Delete a point and release its keypoints.
    pub(crate) fn remove_point(&mut self, p: PointId) {
        if let Some(point) = self.points.remove(&p) {
            for (v, kp) in point.observations {
                if let Some(slot) = self
                    .views
                    .get_mut(v as usize)
                    .and_then(|view| view.point_of.get_mut(kp as usize))
                {
                    *slot = NO_POINT;
                }
            }
        }
    }

    /// Fold point `b` into `a` when no view observes both.
    pub(crate) fn merge_points(&mut self, a: PointId, b: PointId) -> bool {
        if a == b {
            return false;
        }
        let (Some(pa), Some(pb)) = (self.points.get(&a), self.points.get(&b)) else {
            return false;
        };
        if pb
            .observations
            .iter()
            .any(|&(v, _)| pa.observations.iter().any(|&(w, _)| w == v))
        {
            return false;
        }
        let (na, nb) = (pa.observations.len() as f64, pb.observations.len() as f64);
        let position = (pa.position * na + pb.position * nb) / (na + nb);
        let Some(pb) = self.points.remove(&b) else {
            return false;
        };
        for &(v, kp) in &pb.observations {
            if let Some(slot) = self
                .views
                .get_mut(v as usize)
                .and_then(|view| view.point_of.get_mut(kp as usize))
            {
                *slot = a;
            }
        }
        let color = {
            let Some(pa) = self.points.get_mut(&a) else {
                return false;
            };
            pa.observations.extend(pb.observations);
            pa.observations.sort_unstable();
            pa.position = position;
            pa.observations.clone()
        };
        let mean = self.mean_color(&color);
        if let Some(pa) = self.points.get_mut(&a) {
            pa.color = mean;
        }
        true
    }

    fn mean_color(&self, obs: &[(ViewIdx, u32)]) -> [u8; 3] {
        let mut sum = [0u32; 3];
        let mut n = 0u32;
        for &(v, kp) in obs {
            if let Some(c) = self
                .view(v)
                .and_then(|view| view.features.colors.get(kp as usize))
            {
                for (s, &x) in sum.iter_mut().zip(c) {
                    *s += u32::from(x);
                }
                n += 1;
            }
        }
        if n == 0 {
            return [0, 0, 0];
        }
        sum.map(|s| ((s + n / 2) / n).min(255) as u8)
    }
}
