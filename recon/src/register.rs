//! Giving photos a pose: the initial two-view model, then P3P/PnP for each later photo.

use std::collections::BTreeSet;

use nalgebra::Vector3;
use tracing::debug;

use crate::bundle::{Adjustment, adjust};
use crate::estimators::homography_inliers;
use crate::estimators::resect;
use crate::evaluation::quantile;
use crate::geometry::Pose;
use crate::geometry::{ray_angle, reprojection_error};
use crate::scene::{PointId, Scene, ViewIdx};
use crate::triangulate::{Triangulator, triangulate_view};

/// Fewest 2D-3D inliers to accept any pose: below this, a consensus is too easily found by
/// chance.
pub const MIN_REGISTRATION_INLIERS: usize = 15;
/// Inliers that make a pose trustworthy whatever share of the matches they are. Between
/// [`MIN_REGISTRATION_INLIERS`] and this, the pose must also explain most of its matches and
/// its inliers must be spread over the image.
pub const CONFIDENT_REGISTRATION_INLIERS: usize = 40;
/// Share of 2D-3D matches a pose with few inliers must explain.
const MIN_INLIER_RATIO: f64 = 0.3;
/// Grid (per side) used to measure how spread a pose's inliers are.
const SPREAD_GRID: usize = 4;
/// Grid cells that must hold an inlier: inliers in one corner leave the pose's rotation about
/// them free.
const MIN_SPREAD_CELLS: usize = 3;
/// Share of 2D-3D matches above which a pose with few inliers needs no spread: chance does not
/// explain nearly all matches, and walking forward, the points shared with photos further
/// along sit in the middle of the image.
const CONSISTENT_INLIER_RATIO: f64 = 0.8;
/// PnP's inlier threshold in units of the pixel threshold. Points triangulated from short
/// baselines carry depth errors that reproject a few pixels off in a new view; local adjustment
/// right after registration pulls them in, and its outlier filter uses the tight threshold.
const PNP_THRESHOLD_FACTOR: f64 = 2.0;
/// Fewest points a starting pair must triangulate.
pub const MIN_INITIAL_POINTS: usize = 80;
/// Starting pairs scored (most verified matches first) each time the model is started.
const INITIAL_PAIR_CANDIDATES: usize = 15;
/// Median triangulation angle a starting pair needs: below it, depths are mostly noise and
/// every later photo registers against a distorted model.
pub const MIN_INITIAL_MEDIAN_ANGLE_DEG: f64 = 3.0;
/// Largest share of a starting pair's essential inliers that a homography may also explain.
pub const MAX_INITIAL_HOMOGRAPHY_RATIO: f64 = 0.9;
/// Median triangulation angle beyond which a starting pair gains nothing more from parallax.
const SATURATING_ANGLE_DEG: f64 = 8.0;

/// A starting pair's trial model and the evidence it is scored on.
struct InitialTrial {
    views: (ViewIdx, ViewIdx),
    score: f64,
    scene: Scene,
}

/// Start the model from the unregistered pair best for geometry: of the best connected pairs,
/// the one whose trial triangulation gives the most points weighted by their median
/// triangulation angle and by how little of the pair a homography explains. Returns the two
/// views on success.
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
    let mut best: Option<InitialTrial> = None;
    for &(_, a, b) in candidates.iter().take(INITIAL_PAIR_CANDIDATES) {
        let Some(trial) = initial_trial(scene, a, b, max_error) else {
            continue;
        };
        // Strictly better only, so ties keep the better connected pair.
        if best.as_ref().is_none_or(|b| trial.score > b.score) {
            best = Some(trial);
        }
    }
    let InitialTrial {
        views: (a, b),
        scene: mut trial,
        ..
    } = best?;
    let free: BTreeSet<ViewIdx> = [a, b].into_iter().collect();
    let points = trial.points_seen_by(&free);
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
    Some((a, b))
}

/// Triangulate the pair (a, b) from its relative pose and score it; `None` when it fails the
/// starting pair's minimums.
fn initial_trial(scene: &Scene, a: ViewIdx, b: ViewIdx, max_error: f64) -> Option<InitialTrial> {
    let pair = scene.pairs.get(&(a, b))?;
    let relative = pair.relative?;
    let (view_a, view_b) = (scene.view(a)?, scene.view(b)?);
    let h = homography_inliers(&view_a.features, &view_b.features, &pair.matches, max_error);
    let h_ratio = h as f64 / pair.matches.len().max(1) as f64;
    if h_ratio > MAX_INITIAL_HOMOGRAPHY_RATIO {
        debug!(
            a,
            b, h_ratio, "starting pair rejected: a homography explains it"
        );
        return None;
    }
    let mut trial = scene.clone();
    if let Some(view) = trial.views.get_mut(a as usize) {
        view.pose = Some(Pose::identity());
    }
    if let Some(view) = trial.views.get_mut(b as usize) {
        view.pose = Some(relative);
    }
    let tri = Triangulator::new(&trial, max_error);
    let created = triangulate_view(&mut trial, b, &tri);
    let origin = Vector3::zeros();
    let angles: Vec<f64> = created
        .iter()
        .filter_map(|p| trial.points.get(p))
        .map(|p| ray_angle(&origin, &relative.center, &p.position).to_degrees())
        .collect();
    let median_angle = quantile(&angles, 0.5);
    debug!(
        a,
        b,
        matches = pair.matches.len(),
        h_ratio,
        points = created.len(),
        median_angle,
        "starting pair scored"
    );
    if created.len() < MIN_INITIAL_POINTS || median_angle < MIN_INITIAL_MEDIAN_ANGLE_DEG {
        return None;
    }
    let score = created.len() as f64
        * (median_angle / SATURATING_ANGLE_DEG).min(1.0)
        * (1.0 - h_ratio).max(0.05);
    Some(InitialTrial {
        views: (a, b),
        score,
        scene: trial,
    })
}

/// Fraction of a coarse grid over the image that holds at least one of `pixels`.
fn spread_cells(pixels: impl Iterator<Item = [f32; 2]>, width: u32, height: u32) -> usize {
    let mut cells = [false; SPREAD_GRID * SPREAD_GRID];
    let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    for p in pixels {
        let cx = ((f64::from(p[0]) / w) * SPREAD_GRID as f64).clamp(0.0, SPREAD_GRID as f64 - 1.0);
        let cy = ((f64::from(p[1]) / h) * SPREAD_GRID as f64).clamp(0.0, SPREAD_GRID as f64 - 1.0);
        if let Some(c) = cells.get_mut(cy as usize * SPREAD_GRID + cx as usize) {
            *c = true;
        }
    }
    cells.iter().filter(|&&c| c).count()
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
    let Some(found) = resect(&k, &correspondences, PNP_THRESHOLD_FACTOR * pixel_threshold) else {
        return Err("pose estimation found no consistent pose".into());
    };
    let inliers = found.inliers.len();
    let ratio = inliers as f64 / correspondences.len() as f64;
    let cells = spread_cells(
        found
            .inliers
            .iter()
            .filter_map(|&i| correspondences.get(i).map(|c| c.0)),
        view.width,
        view.height,
    );
    debug!(
        matches = correspondences.len(),
        inliers, ratio, cells, "pose found"
    );
    if inliers < MIN_REGISTRATION_INLIERS {
        return Err(format!(
            "pose explains only {inliers} of {} matches to 3D points (need {MIN_REGISTRATION_INLIERS})",
            correspondences.len()
        ));
    }
    if inliers < CONFIDENT_REGISTRATION_INLIERS {
        if ratio < MIN_INLIER_RATIO {
            return Err(format!(
                "pose explains only {inliers} of {} matches to 3D points (need {CONFIDENT_REGISTRATION_INLIERS}, or {:.0} %)",
                correspondences.len(),
                MIN_INLIER_RATIO * 100.0
            ));
        }
        if cells < MIN_SPREAD_CELLS && ratio < CONSISTENT_INLIER_RATIO {
            return Err(format!(
                "the pose's {inliers} inliers cover only {cells} of {} image cells (need {MIN_SPREAD_CELLS})",
                SPREAD_GRID * SPREAD_GRID
            ));
        }
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

/// Check a registered view against its own observations after adjustment: enough of them must
/// reproject within `max_error`, and the typical (median) one within `pixel_threshold`. A pose
/// that RANSAC accepted but adjustment could not reconcile with the model fails here.
pub(crate) fn verify_pose(
    scene: &Scene,
    v: ViewIdx,
    pixel_threshold: f64,
    max_error: f64,
) -> Result<(), String> {
    let Some(view) = scene.view(v) else {
        return Err("unknown view".into());
    };
    let Some(pose) = view.pose else {
        return Err("no pose".into());
    };
    let errors: Vec<f64> = view
        .point_of
        .iter()
        .enumerate()
        .filter_map(|(kp, &p)| {
            let point = scene.points.get(&p)?;
            let px = view.features.positions.get(kp)?;
            Some(reprojection_error(
                &view.intrinsics,
                &pose,
                &point.position,
                *px,
            ))
        })
        .collect();
    let good = errors.iter().filter(|&&e| e <= max_error).count();
    let median = quantile(&errors, 0.5);
    if good < MIN_REGISTRATION_INLIERS {
        return Err(format!(
            "only {good} of its points reproject within {max_error:.1} px after adjustment (need {MIN_REGISTRATION_INLIERS})"
        ));
    }
    if median > pixel_threshold {
        return Err(format!(
            "its points reproject {median:.1} px off (median) after adjustment (limit {pixel_threshold:.1})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use nalgebra::{Rotation3, Vector3};

    use super::verify_pose;
    use crate::feature::{DESCRIPTOR_LEN, Features};
    use crate::geometry::{Pose, project};
    use crate::intrinsics::IntrinsicsSource;
    use crate::scene::{NO_POINT, Scene, View};
    use crate::settings::Intrinsics;

    const K: Intrinsics = Intrinsics {
        fx: 1000.0,
        fy: 1000.0,
        cx: 639.5,
        cy: 479.5,
    };

    /// Three cameras along x seeing a grid of 48 points, each observed exactly.
    fn scene() -> Scene {
        let world: Vec<Vector3<f64>> = (0..48)
            .map(|i| {
                let (r, c) = (f64::from(i / 8), f64::from(i % 8));
                Vector3::new(c - 3.5, r - 2.5, 8.0 + 0.3 * ((i * 7) % 5) as f64)
            })
            .collect();
        let mut scene = Scene::default();
        for i in 0..3 {
            let pose = Pose {
                rotation: Rotation3::identity(),
                center: Vector3::new(f64::from(i) * 0.5, 0.0, 0.0),
            };
            let positions: Vec<[f32; 2]> = world
                .iter()
                .map(|x| {
                    let p = project(&K, &pose, x).expect("in front");
                    [p.x as f32, p.y as f32]
                })
                .collect();
            let n = positions.len();
            scene.views.push(View {
                id: format!("cam{i}"),
                features: Arc::new(Features {
                    positions,
                    scales: vec![1.0; n],
                    colors: vec![[0, 0, 0]; n],
                    descriptors: vec![0; n * DESCRIPTOR_LEN],
                }),
                width: 1280,
                height: 960,
                original_width: 1280,
                original_height: 960,
                scale: 1.0,
                intrinsics: K,
                intrinsics_source: IntrinsicsSource::Given,
                pose: Some(pose),
                point_of: vec![NO_POINT; n],
                last_failure: None,
                camera: 0,
                radial: 0.0,
            });
        }
        for (kp, x) in world.iter().enumerate() {
            let kp = kp as u32;
            scene.add_point(*x, &[(0, kp), (1, kp), (2, kp)]);
        }
        scene
    }

    #[test]
    fn a_pose_its_points_disagree_with_fails_verification_and_is_taken_out() {
        let mut scene = scene();
        assert_eq!(verify_pose(&scene, 2, 2.0, 4.0), Ok(()));
        // Half a degree of yaw is about 9 px at this focal: RANSAC would not have found it,
        // but an adjustment dragged off by bad matches could leave it there.
        if let Some(view) = scene.views.get_mut(2) {
            view.pose = view.pose.map(|p| Pose {
                rotation: Rotation3::from_euler_angles(0.0, 0.5f64.to_radians(), 0.0) * p.rotation,
                ..p
            });
        }
        let why = verify_pose(&scene, 2, 2.0, 4.0).expect_err("off by ~9 px");
        assert!(why.contains("reproject"), "{why}");
        scene.unregister(2, format!("pose rejected: {why}"));
        let view = scene.view(2).expect("view kept");
        assert!(!view.is_registered());
        assert!(view.point_of.iter().all(|&p| p == NO_POINT));
        assert!(
            view.last_failure
                .as_deref()
                .is_some_and(|r| r.starts_with("pose rejected"))
        );
        // The other two cameras keep every point.
        assert_eq!(scene.points.len(), 48);
        assert!(scene.points.values().all(|p| p.observations.len() == 2));
    }
}
