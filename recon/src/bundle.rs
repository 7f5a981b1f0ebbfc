//! Bundle adjustment of a subset of the scene with openMVG's native adjuster.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use nalgebra::{Point2, Point3};
use openmvg_ba::{
    BundleAdjuster, BundleIntrinsic, BundleObservation, BundlePoint, BundlePose, BundleProblem,
    IntrinsicVariables, NativeBundleAdjuster, PoseVariables, ResidualScale, RobustLoss,
    SolveConfig,
};
use openmvg_core::PixelThreshold;
use openmvg_core::camera::{Camera, RadialDistortion, TangentialDistortion};
use openmvg_core::model::CameraIntrinsics;

use crate::geometry::{Pose, distort_pixel, undistort_pixel};
use crate::intrinsics::IntrinsicsSource;
use crate::scene::{PointId, Scene, View, ViewIdx};

/// What to adjust.
pub struct Adjustment<'a> {
    /// Views whose pose is optimised.
    pub free_views: &'a BTreeSet<ViewIdx>,
    /// Points optimised (with every registered view that observes them; views not in
    /// `free_views` are held fixed).
    pub points: &'a BTreeSet<PointId>,
    /// Also refine focal lengths that did not come from the settings.
    pub refine_focal: bool,
    /// Cauchy loss scale in pixels.
    pub loss_scale: f64,
    /// Iteration cap.
    pub max_iterations: usize,
}

/// Which intrinsic block a view's observations use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum IntrinsicKey {
    /// Photos of one camera ([`View::camera`]).
    Shared(u64),
    /// A view with intrinsics of its own.
    Own(ViewIdx),
}

fn intrinsic_key(v: ViewIdx, view: &View) -> IntrinsicKey {
    if view.camera != 0 && view.intrinsics_source != IntrinsicsSource::Given {
        IntrinsicKey::Shared(view.camera)
    } else {
        IntrinsicKey::Own(v)
    }
}

/// Figures from one solve.
#[derive(Clone, Copy, Debug, Default)]
#[allow(dead_code)] // read in debug logs and tests
pub struct AdjustReport {
    /// Root-mean-square reprojection error after the solve, pixels.
    pub final_rmse: f64,
    /// Whether the result was written back.
    pub applied: bool,
}

/// Solve and write the result back into the scene when the solver's own audit accepts it.
pub fn adjust(scene: &mut Scene, job: &Adjustment<'_>) -> AdjustReport {
    let mut pose_of: BTreeMap<ViewIdx, usize> = BTreeMap::new();
    let mut intrinsic_of: BTreeMap<IntrinsicKey, usize> = BTreeMap::new();
    let mut distorted: BTreeSet<usize> = BTreeSet::new();
    let mut poses = Vec::new();
    let mut intrinsics = Vec::new();
    let mut point_index: Vec<PointId> = Vec::new();
    let mut points = Vec::new();
    let mut observations = Vec::new();
    for &p in job.points {
        let Some(point) = scene.points.get(&p) else {
            continue;
        };
        let registered: Vec<(ViewIdx, u32)> = point
            .observations
            .iter()
            .copied()
            .filter(|&(v, _)| scene.view(v).is_some_and(|view| view.is_registered()))
            .collect();
        if registered.len() < 2 {
            continue;
        }
        let Ok(bp) = BundlePoint::try_new(Point3::from(point.position)) else {
            continue;
        };
        let pi = points.len();
        points.push(bp);
        point_index.push(p);
        for (v, kp) in registered {
            let Some(view) = scene.view(v) else { continue };
            let (Some(pose), Some(pixel)) = (view.pose, view.features.positions.get(kp as usize))
            else {
                continue;
            };
            let slot = match pose_of.get(&v) {
                Some(&s) => s,
                None => {
                    let Some(om_pose) = pose.to_openmvg() else {
                        continue;
                    };
                    let free = job.free_views.contains(&v);
                    let vars = if free {
                        PoseVariables::FREE
                    } else {
                        PoseVariables::FIXED
                    };
                    poses.push(BundlePose::new(om_pose, vars));
                    let s = poses.len() - 1;
                    pose_of.insert(v, s);
                    s
                }
            };
            let key = intrinsic_key(v, view);
            let ki = match intrinsic_of.get(&key) {
                Some(&k) => k,
                None => {
                    let k = &view.intrinsics;
                    // A shared block is refined when the first view met in it is free; in a
                    // global adjustment all are.
                    let refine = job.refine_focal
                        && job.free_views.contains(&v)
                        && view.intrinsics_source != IntrinsicsSource::Given;
                    // Radial distortion is estimated for a camera group only: one photo's k1
                    // trades off against its focal and pose.
                    let radial = refine && matches!(key, IntrinsicKey::Shared(_));
                    let camera = if radial {
                        Camera::try_brown_conrady(
                            k.fx,
                            k.fy,
                            k.cx,
                            k.cy,
                            RadialDistortion::K1(view.radial),
                            TangentialDistortion::None,
                        )
                    } else {
                        Camera::try_pinhole(k.fx, k.fy, k.cx, k.cy)
                    };
                    let Ok(camera) = camera else {
                        continue;
                    };
                    let Ok(ci) = CameraIntrinsics::try_new(camera, view.width, view.height) else {
                        continue;
                    };
                    // The solver's certification stays required: forward motion leaves focal
                    // and depth nearly interchangeable, and a waived focal on
                    // lund-street-iphone4s collapsed from 1035 to 728 px. Shared by all photos
                    // of a camera, a block is constrained enough to be certified on the
                    // others (lund-door-nikon: 2312 px from EXIF to 2455, reference 2435).
                    let bi = if refine {
                        BundleIntrinsic::try_new(
                            ci,
                            IntrinsicVariables::FIXED
                                .with_focal(true)
                                .with_radial(radial),
                        )
                    } else {
                        BundleIntrinsic::try_new(ci.with_fixed(true), IntrinsicVariables::FIXED)
                    };
                    let Ok(bi) = bi else { continue };
                    intrinsics.push(bi);
                    let k = intrinsics.len() - 1;
                    intrinsic_of.insert(key, k);
                    if radial {
                        distorted.insert(k);
                    }
                    k
                }
            };
            // A distorting block sees the photo's own pixels, not the undistorted ones.
            let pixel = if distorted.contains(&ki) {
                distort_pixel(&view.intrinsics, view.radial, *pixel)
            } else {
                *pixel
            };
            let pixel = Point2::new(f64::from(pixel[0]), f64::from(pixel[1]));
            if let Ok(o) = BundleObservation::try_new(slot, ki, pi, pixel) {
                observations.push(o);
            }
        }
    }
    if observations.is_empty() || !pose_of.keys().any(|v| job.free_views.contains(v)) {
        return AdjustReport::default();
    }
    let Ok(scale) = PixelThreshold::try_new(job.loss_scale) else {
        return AdjustReport::default();
    };
    let problem = BundleProblem::builder(poses, intrinsics, points, observations)
        .with_robust_loss(RobustLoss::Cauchy(ResidualScale::Pixels(scale)))
        .build();
    let Ok(problem) = problem else {
        return AdjustReport::default();
    };
    let config = SolveConfig::default().with_max_iterations(job.max_iterations);
    let audit_config = config;
    let Ok(solution) = NativeBundleAdjuster::new().solve(&problem, config) else {
        return AdjustReport::default();
    };
    let final_rmse = solution.report().final_rmse();
    if solution.audit_for_commit(&problem, &audit_config).is_err() {
        return AdjustReport {
            final_rmse,
            applied: false,
        };
    }
    let quarantined: BTreeSet<usize> = solution.quarantined_points().iter().copied().collect();
    for (&v, &slot) in &pose_of {
        if !job.free_views.contains(&v) {
            continue;
        }
        let (Some(pose), Some(view)) =
            (solution.poses().get(slot), scene.views.get_mut(v as usize))
        else {
            continue;
        };
        view.pose = Some(Pose::from_openmvg(pose));
    }
    // Every registered view of a refined block takes its intrinsics, free or not, so that views
    // of one camera never disagree.
    for (v, view) in scene.views.iter_mut().enumerate() {
        let key = intrinsic_key(v as ViewIdx, view);
        let Some((slot, ci)) = intrinsic_of
            .get(&key)
            .and_then(|&slot| Some((slot, solution.intrinsics().get(slot)?)))
        else {
            continue;
        };
        use openmvg_core::camera::CameraModel;
        let Some(k) = ci.camera().intrinsic_matrix() else {
            continue;
        };
        let old = view.intrinsics;
        let mut new = old;
        new.fx = k[(0, 0)];
        new.fy = k[(1, 1)];
        new.cx = k[(0, 2)];
        new.cy = k[(1, 2)];
        if distorted.contains(&slot)
            && let Camera::BrownConrady(bc) = ci.camera()
        {
            let k1 = bc.radial_distortion().k1();
            // Keep the keypoints undistorted for the new focal and k1: back to the photo's
            // pixels with the old ones, then through the new.
            let mut features = (*view.features).clone();
            for p in &mut features.positions {
                *p = undistort_pixel(&new, k1, distort_pixel(&old, view.radial, *p));
            }
            view.features = Arc::new(features);
            view.radial = k1;
        }
        view.intrinsics = new;
    }
    for (i, &p) in point_index.iter().enumerate() {
        if quarantined.contains(&i) {
            continue;
        }
        if let (Some(x), Some(point)) = (solution.points().get(i), scene.points.get_mut(&p)) {
            point.position = x.coords;
        }
    }
    AdjustReport {
        final_rmse,
        applied: true,
    }
}
