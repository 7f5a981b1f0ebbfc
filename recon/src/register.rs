//! Giving photos a pose: the initial two-view model, then P3P/PnP for each later photo.

use std::collections::BTreeSet;

use nalgebra::Vector3;

use crate::bundle::{Adjustment, adjust};
use crate::estimators::resect;
use crate::geometry::Pose;
use crate::scene::{PointId, Scene, ViewIdx};
use crate::triangulate::{Triangulator, triangulate_view};

/// Fewest 2D-3D inliers to accept a pose; fewer are too easily explained by chance.
pub const MIN_REGISTRATION_INLIERS: usize = 30;
/// Fewest points a starting pair must triangulate.
pub const MIN_INITIAL_POINTS: usize = 80;
/// Starting pairs tried before giving up for this photo.
const INITIAL_PAIR_TRIES: usize = 6;

/// Start the model from the best unregistered pair. Returns the two views on success.
pub(crate) fn try_initialize(
    scene: &mut Scene,
    max_error: f64,
    loss_scale: f64,
) -> Option<(ViewIdx, ViewIdx)> {
    let mut candidates: Vec<(usize, ViewIdx, ViewIdx)> = scene
        .pairs
        .iter()
        .filter(|(_, pair)| pair.relative.is_some())
        .map(|(&(a, b), pair)| (pair.matches.len(), a, b))
        .collect();
    candidates.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    for &(_, a, b) in candidates.iter().take(INITIAL_PAIR_TRIES) {
        let mut trial = scene.clone();
        let Some(relative) = trial.pairs.get(&(a, b)).and_then(|p| p.relative) else {
            continue;
        };
        if let Some(view) = trial.views.get_mut(a as usize) {
            view.pose = Some(Pose::identity());
        }
        if let Some(view) = trial.views.get_mut(b as usize) {
            view.pose = Some(relative);
        }
        let tri = Triangulator::new(&trial, max_error);
        let created = triangulate_view(&mut trial, b, &tri);
        if created.len() < MIN_INITIAL_POINTS {
            continue;
        }
        let free: BTreeSet<ViewIdx> = [a, b].into_iter().collect();
        let points: BTreeSet<PointId> = created.into_iter().collect();
        adjust(
            &mut trial,
            &Adjustment {
                free_views: &free,
                points: &points,
                refine_focal: false,
                loss_scale,
                max_iterations: 50,
            },
        );
        *scene = trial;
        return Some((a, b));
    }
    None
}

/// Register view `v` from its matches to existing points. On failure the reason is returned
/// and the scene is unchanged.
pub(crate) fn try_register(
    scene: &mut Scene,
    v: ViewIdx,
    pixel_threshold: f64,
) -> Result<usize, String> {
    let Some(view) = scene.view(v) else {
        return Err("unknown view".into());
    };
    let mut seen_kp = BTreeSet::new();
    let mut correspondences: Vec<([f32; 2], Vector3<f64>)> = Vec::new();
    let mut links: Vec<(u32, PointId)> = Vec::new();
    let mut linked_views = 0;
    for (u, _) in scene.neighbours(v) {
        let Some(other) = scene.view(u) else { continue };
        if !other.is_registered() {
            continue;
        }
        linked_views += 1;
        for (kv, ku) in scene.matches_between(v, u) {
            let Some(p) = other.point(ku) else { continue };
            let (Some(point), Some(px)) = (
                scene.points.get(&p),
                view.features.positions.get(kv as usize),
            ) else {
                continue;
            };
            if seen_kp.insert(kv) {
                correspondences.push((*px, point.position));
                links.push((kv, p));
            }
        }
    }
    if linked_views == 0 {
        return Err("no verified overlap with a registered photo yet".into());
    }
    if correspondences.len() < MIN_REGISTRATION_INLIERS {
        return Err(format!(
            "only {} matches to existing 3D points (need {MIN_REGISTRATION_INLIERS})",
            correspondences.len()
        ));
    }
    let k = view.intrinsics;
    let Some(found) = resect(&k, &correspondences, pixel_threshold) else {
        return Err("pose estimation found no consistent pose".into());
    };
    if found.inliers.len() < MIN_REGISTRATION_INLIERS {
        return Err(format!(
            "pose explains only {} of {} matches to 3D points (need {MIN_REGISTRATION_INLIERS})",
            found.inliers.len(),
            correspondences.len()
        ));
    }
    if let Some(view) = scene.views.get_mut(v as usize) {
        view.pose = Some(found.pose);
        view.last_failure = None;
    }
    for &i in &found.inliers {
        if let Some(&(kv, p)) = links.get(i) {
            scene.add_observation(p, v, kv);
        }
    }
    Ok(found.inliers.len())
}
