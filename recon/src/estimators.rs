//! Robust model fitting on matches: essential matrix (and a homography to judge parallax) for
//! two views, P3P for registration.
//! The RANSAC loops are openMVG's; this module only adapts our data and thresholds.

use nalgebra::{Point2, Point3, Vector3};
use openmvg_core::{AngularThreshold, NormalizedImageThreshold, PixelThreshold};
use openmvg_geometry::correspondence::{BearingCorrespondence, PixelCorrespondence};
use openmvg_geometry::essential::estimate_essential;
use openmvg_geometry::homography::estimate_homography;
use openmvg_geometry::pose::{
    AbsolutePoseOptions, BearingToPoint, PoseRefinement, estimate_absolute_pose,
};
use openmvg_geometry::robust::RobustOptions;

use crate::feature::Features;
use crate::geometry::{Pose, bearing};
use crate::settings::Intrinsics;

/// Fewest verified matches for a pair to count as connected.
pub const MIN_PAIR_INLIERS: usize = 30;

/// The verified geometry of a photo pair.
#[derive(Clone, Debug)]
pub struct PairGeometry {
    /// Matches consistent with the essential matrix, (keypoint in a, keypoint in b).
    pub inliers: Vec<(u32, u32)>,
    /// Pose of b when a is the identity pose; the baseline has unit length.
    pub relative: Option<Pose>,
}

/// Fit an essential matrix to the matches and keep its inliers; `None` when the pair does not
/// hold enough consistent matches.
pub fn verify_pair(
    a: &Features,
    ka: &Intrinsics,
    b: &Features,
    kb: &Intrinsics,
    matches: &[(u32, u32)],
    pixel_threshold: f64,
) -> Option<PairGeometry> {
    if matches.len() < MIN_PAIR_INLIERS {
        return None;
    }
    let mut used = Vec::with_capacity(matches.len());
    let mut data = Vec::with_capacity(matches.len());
    for &(ia, ib) in matches {
        let (Some(pa), Some(pb)) = (a.positions.get(ia as usize), b.positions.get(ib as usize))
        else {
            continue;
        };
        let c = BearingCorrespondence::try_new(
            bearing(ka, *pa).into_inner(),
            bearing(kb, *pb).into_inner(),
        );
        if let Ok(c) = c {
            data.push(c);
            used.push((ia, ib));
        }
    }
    let focal = 0.5 * (ka.fx + kb.fx);
    let threshold = NormalizedImageThreshold::try_new(pixel_threshold / focal).ok()?;
    let estimate = estimate_essential(&data, threshold, &RobustOptions::default()).ok()?;
    if estimate.inliers().len() < MIN_PAIR_INLIERS {
        return None;
    }
    let inlier_data: Vec<_> = estimate
        .inliers()
        .iter()
        .filter_map(|&i| data.get(i).copied())
        .collect();
    let relative = estimate
        .model()
        .decompose_with_cheirality(&inlier_data)
        .and_then(|rel| {
            let center = rel.baseline_direction_in_source().into_inner();
            let pose = Pose {
                rotation: *rel.rotation_source_to_target(),
                center,
            };
            pose.center.iter().all(|v| v.is_finite()).then_some(pose)
        });
    let inliers = estimate
        .inliers()
        .iter()
        .filter_map(|&i| used.get(i).copied())
        .collect();
    Some(PairGeometry { inliers, relative })
}

/// A registered pose with the indices (into the input) of the correspondences it explains.
#[derive(Clone, Debug)]
pub struct Resection {
    /// The estimated pose.
    pub pose: Pose,
    /// Inlier indices into the correspondence list.
    pub inliers: Vec<usize>,
}

/// P3P in RANSAC followed by a nonlinear polish on the inliers.
pub fn resect(
    k: &Intrinsics,
    correspondences: &[([f32; 2], Vector3<f64>)],
    pixel_threshold: f64,
) -> Option<Resection> {
    let mut data = Vec::with_capacity(correspondences.len());
    let mut index = Vec::with_capacity(correspondences.len());
    for (i, (pixel, point)) in correspondences.iter().enumerate() {
        if let Ok(c) = BearingToPoint::try_new(Point3::from(*point), bearing(k, *pixel)) {
            data.push(c);
            index.push(i);
        }
    }
    if data.len() < 4 {
        return None;
    }
    let threshold =
        AngularThreshold::from_pixels(PixelThreshold::try_new(pixel_threshold).ok()?, k.fx).ok()?;
    let options = AbsolutePoseOptions::default().with_refinement(PoseRefinement::Perspective);
    let estimate = estimate_absolute_pose(&data, threshold, &options).ok()?;
    let pose = Pose::from_openmvg(estimate.model());
    let inliers = estimate
        .inliers()
        .iter()
        .filter_map(|&i| index.get(i).copied())
        .collect();
    Some(Resection { pose, inliers })
}

/// How many of the matches one homography explains. A homography explains every match of a
/// pair without parallax (pure rotation, or a distant or planar scene seen from nearly one
/// place), so its share of the essential matrix's inliers measures how little depth the pair
/// can recover.
pub fn homography_inliers(
    a: &Features,
    b: &Features,
    matches: &[(u32, u32)],
    pixel_threshold: f64,
) -> usize {
    let data: Vec<PixelCorrespondence> = matches
        .iter()
        .filter_map(|&(ia, ib)| {
            let pa = a.positions.get(ia as usize)?;
            let pb = b.positions.get(ib as usize)?;
            Some(PixelCorrespondence::new(
                Point2::new(f64::from(pa[0]), f64::from(pa[1])),
                Point2::new(f64::from(pb[0]), f64::from(pb[1])),
            ))
        })
        .collect();
    if data.len() < 4 {
        return 0;
    }
    let Ok(threshold) = PixelThreshold::try_new(pixel_threshold) else {
        return 0;
    };
    estimate_homography(&data, threshold, &RobustOptions::default())
        .map_or(0, |e| e.inliers().len())
}
