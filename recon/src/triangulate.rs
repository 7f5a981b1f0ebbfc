//! New 3D points from registered views, track extension, and the outlier filter.

use std::collections::{BTreeMap, BTreeSet};

use nalgebra::{Matrix3, Point2, Vector3};
use openmvg_core::AngularResidual;
use openmvg_core::PixelThreshold;
use openmvg_core::model::{ViewId, WorldToCameraPose};
use openmvg_geometry::triangulation::{TriangulationConfig, TriangulationMethod, triangulate};

use crate::geometry::{k_matrix, ray_angle, reprojection_error};
use crate::scene::{PointId, Scene, ViewIdx};

/// Smallest angle between two rays of a new point. Narrower rays leave its depth unconstrained.
pub const MIN_TRIANGULATION_ANGLE_DEG: f64 = 1.0;

/// The registered cameras in the form openMVG's triangulation takes, built once per batch.
pub struct Triangulator {
    poses: BTreeMap<ViewId, WorldToCameraPose>,
    ks: BTreeMap<ViewId, Matrix3<f64>>,
    config: TriangulationConfig,
    max_error: f64,
}

impl Triangulator {
    pub fn new(scene: &Scene, max_error: f64) -> Self {
        let mut poses = BTreeMap::new();
        let mut ks = BTreeMap::new();
        for (i, view) in scene.views.iter().enumerate() {
            if let Some(pose) = view.pose.and_then(|p| p.to_openmvg()) {
                poses.insert(ViewId::new(i), pose);
                ks.insert(ViewId::new(i), k_matrix(&view.intrinsics));
            }
        }
        let mut config = TriangulationConfig::default();
        if let Ok(angle) = AngularResidual::from_degrees(MIN_TRIANGULATION_ANGLE_DEG) {
            config = config.with_min_parallax(angle);
        }
        if let Ok(px) = PixelThreshold::try_new(max_error) {
            config = config.with_max_pixel_residual(px);
        }
        Self {
            poses,
            ks,
            config,
            max_error,
        }
    }

    /// A point seen at these pixels, or `None` when the rays are too parallel, it falls behind a
    /// camera, or some view sees it further than the error bound from its keypoint.
    pub fn point(&self, scene: &Scene, observations: &[(ViewIdx, u32)]) -> Option<Vector3<f64>> {
        let mut seen = Vec::with_capacity(observations.len());
        for &(v, kp) in observations {
            let p = scene.view(v)?.features.positions.get(kp as usize)?;
            seen.push((
                ViewId::new(v as usize),
                Point2::new(f64::from(p[0]), f64::from(p[1])),
            ));
        }
        let estimate = triangulate(
            TriangulationMethod::Dlt,
            &seen,
            &self.poses,
            &self.ks,
            &self.config,
        )
        .ok()?;
        let x = estimate.point.coords;
        self.fits(scene, &x, observations).then_some(x)
    }

    fn fits(&self, scene: &Scene, x: &Vector3<f64>, observations: &[(ViewIdx, u32)]) -> bool {
        observations
            .iter()
            .all(|&(v, kp)| self.reprojects(scene, x, v, kp))
    }

    /// Whether `x` lands within the error bound of keypoint `kp` in view `v`.
    pub fn reprojects(&self, scene: &Scene, x: &Vector3<f64>, v: ViewIdx, kp: u32) -> bool {
        let Some(view) = scene.view(v) else {
            return false;
        };
        let (Some(pose), Some(px)) = (view.pose, view.features.positions.get(kp as usize)) else {
            return false;
        };
        reprojection_error(&view.intrinsics, &pose, x, *px) <= self.max_error
    }
}

/// Triangulate the matches of registered view `v` with every other registered view: extend
/// existing points to keypoints that see them and create points for unexplained matches.
/// Returns the ids of created points.
pub fn triangulate_view(scene: &mut Scene, v: ViewIdx, tri: &Triangulator) -> Vec<PointId> {
    let mut created = Vec::new();
    if !scene.view(v).is_some_and(|view| view.is_registered()) {
        return created;
    }
    let mut fresh: BTreeMap<u32, Vec<(ViewIdx, u32)>> = BTreeMap::new();
    for (u, _) in scene.neighbours(v) {
        if !scene.view(u).is_some_and(|view| view.is_registered()) {
            continue;
        }
        for (kv, ku) in scene.matches_between(v, u) {
            let (Some(view_v), Some(view_u)) = (scene.view(v), scene.view(u)) else {
                continue;
            };
            // A match with one side on a point extends that point's track to the other side.
            let (p, view, key) = match (view_v.point(kv), view_u.point(ku)) {
                (None, Some(p)) => (p, v, kv),
                (Some(p), None) => (p, u, ku),
                (None, None) => {
                    fresh.entry(kv).or_default().push((u, ku));
                    continue;
                }
                (Some(_), Some(_)) => continue,
            };
            let ok = scene
                .points
                .get(&p)
                .is_some_and(|pt| tri.reprojects(scene, &pt.position, view, key));
            if ok {
                scene.add_observation(p, view, key);
            }
        }
    }
    for (kv, others) in fresh {
        if scene.view(v).and_then(|view| view.point(kv)).is_some() {
            continue;
        }
        let others: Vec<(ViewIdx, u32)> = others
            .into_iter()
            .filter(|&(u, ku)| scene.view(u).is_some_and(|view| view.point(ku).is_none()))
            .collect();
        let mut obs = vec![(v, kv)];
        obs.extend(&others);
        if obs.len() < 2 {
            continue;
        }
        let mut position = tri.point(scene, &obs);
        if position.is_none() && others.len() > 1 {
            // One bad match should not lose the whole track: fall back to the first pair that fits.
            for &o in &others {
                let two = [(v, kv), o];
                if let Some(x) = tri.point(scene, &two) {
                    obs = two.to_vec();
                    position = Some(x);
                    break;
                }
            }
        }
        if let Some(x) = position
            && let Some(id) = scene.add_point(x, &obs)
        {
            created.push(id);
        }
    }
    created
}

/// Per view and keypoint, the keypoints matched to it in registered views; the correspondence
/// graph used to grow and merge tracks.
fn correspondence_graph(scene: &Scene) -> Vec<BTreeMap<u32, Vec<(ViewIdx, u32)>>> {
    let mut graph = vec![BTreeMap::<u32, Vec<(ViewIdx, u32)>>::new(); scene.views.len()];
    for (&(a, b), pair) in &scene.pairs {
        let registered = |x: ViewIdx| scene.view(x).is_some_and(|view| view.is_registered());
        if !(registered(a) && registered(b)) {
            continue;
        }
        for &(ka, kb) in &pair.matches {
            if let Some(g) = graph.get_mut(a as usize) {
                g.entry(ka).or_default().push((b, kb));
            }
            if let Some(g) = graph.get_mut(b as usize) {
                g.entry(kb).or_default().push((a, ka));
            }
        }
    }
    graph
}

/// Grow every point along the correspondence graph and merge points that the graph links and
/// that agree geometrically. Longer tracks tie more cameras together in adjustment.
pub(crate) fn complete_and_merge(scene: &mut Scene, tri: &Triangulator) {
    let graph = correspondence_graph(scene);
    let ids: Vec<PointId> = scene.points.keys().copied().collect();
    for p in ids {
        let Some(point) = scene.points.get(&p) else {
            continue;
        };
        let position = point.position;
        let observations = point.observations.clone();
        for (v, kp) in observations {
            let Some(links) = graph.get(v as usize).and_then(|g| g.get(&kp)) else {
                continue;
            };
            for &(w, kw) in links {
                let Some(view_w) = scene.view(w) else {
                    continue;
                };
                match view_w.point(kw) {
                    None => {
                        if tri.reprojects(scene, &position, w, kw) {
                            scene.add_observation(p, w, kw);
                        }
                    }
                    Some(q) if q != p => {
                        let agree = scene.points.get(&q).is_some_and(|other| {
                            other
                                .observations
                                .iter()
                                .all(|&(x, kx)| tri.reprojects(scene, &position, x, kx))
                        });
                        if agree {
                            scene.merge_points(p, q);
                        }
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

/// Drop observations that reproject further than `max_error` pixels, then points left with
/// fewer than two views or whose widest ray angle is under `min_angle_deg`. Returns the number
/// of observations removed.
pub(crate) fn filter_points(
    scene: &mut Scene,
    points: Option<&BTreeSet<PointId>>,
    max_error: f64,
    min_angle_deg: f64,
) -> usize {
    let ids: Vec<PointId> = match points {
        Some(set) => set.iter().copied().collect(),
        None => scene.points.keys().copied().collect(),
    };
    let mut removed = 0;
    for p in ids {
        let Some(point) = scene.points.get(&p) else {
            continue;
        };
        let x = point.position;
        let mut bad = Vec::new();
        let mut centers = Vec::new();
        for &(v, kp) in &point.observations {
            let Some(view) = scene.view(v) else { continue };
            let (Some(pose), Some(px)) = (view.pose, view.features.positions.get(kp as usize))
            else {
                continue;
            };
            if reprojection_error(&view.intrinsics, &pose, &x, *px) > max_error {
                bad.push(v);
            } else {
                centers.push(pose.center);
            }
        }
        removed += bad.len();
        for v in bad {
            scene.remove_observation(p, v);
        }
        if !scene.points.contains_key(&p) {
            continue;
        }
        let mut widest = 0.0f64;
        for (i, a) in centers.iter().enumerate() {
            for b in centers.iter().skip(i + 1) {
                widest = widest.max(ray_angle(a, b, &x));
            }
        }
        if widest.to_degrees() < min_angle_deg {
            scene.remove_point(p);
        }
    }
    removed
}
