//! Geometry on synthetic scenes with exact truth: random points seen by known cameras, with
//! pixel noise and wrong matches, through the estimators, triangulation and bundle adjustment.

use std::collections::BTreeSet;
use std::sync::Arc;

use nalgebra::{Rotation3, Vector3};
use recon::bundle::{Adjustment, adjust};
use recon::estimators::{resect, verify_pair};
use recon::evaluation::{TrueCamera, compare_with_truth};
use recon::feature::Features;
use recon::geometry::{Pose, project, rotation_angle_deg};
use recon::intrinsics::IntrinsicsSource;
use recon::scene::{NO_POINT, Scene, View};
use recon::triangulate::Triangulator;
use recon::{Camera, Intrinsics};

const K: Intrinsics = Intrinsics {
    fx: 1000.0,
    fy: 1000.0,
    cx: 639.5,
    cy: 479.5,
};

/// Deterministic generator so every run sees the same scene.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64) / ((1u64 << 53) as f64)
    }
    fn sym(&mut self) -> f64 {
        2.0 * self.next() - 1.0
    }
    fn gauss(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-12), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn points(rng: &mut Rng, n: usize) -> Vec<Vector3<f64>> {
    (0..n)
        .map(|_| Vector3::new(2.0 * rng.sym(), 1.5 * rng.sym(), 6.0 + 2.0 * rng.sym()))
        .collect()
}

/// A camera on an arc around the scene centre (0, 0, 6), looking at it.
fn arc_camera(angle_deg: f64) -> Pose {
    let a = angle_deg.to_radians();
    let center = Vector3::new(6.0 * a.sin(), 0.1 * a.cos(), 6.0 - 6.0 * a.cos());
    let rotation = Rotation3::from_axis_angle(&Vector3::y_axis(), -a);
    Pose { rotation, center }
}

fn observe(pose: &Pose, x: &Vector3<f64>, noise: f64, rng: &mut Rng) -> [f32; 2] {
    let p = project(&K, pose, x).expect("synthetic points are in front of every camera");
    [
        (p.x + noise * rng.gauss()) as f32,
        (p.y + noise * rng.gauss()) as f32,
    ]
}

/// Errors may grow linearly with the pixel noise from an exact-data floor.
fn within(noise: f64, what: &str, error: f64, floor: f64, per_pixel: f64) {
    assert!(
        error < floor + per_pixel * noise,
        "noise {noise} px: {what} {error}"
    );
}

fn features(positions: Vec<[f32; 2]>) -> Features {
    let n = positions.len();
    Features {
        positions,
        scales: vec![1.0; n],
        colors: vec![[200, 100, 50]; n],
        descriptors: vec![0; n * 128],
    }
}

#[test]
fn essential_matrix_recovers_relative_pose_under_noise_and_outliers() {
    for (noise, seed) in [(0.0, 1), (0.5, 2), (1.0, 3)] {
        let mut rng = Rng(seed);
        let world = points(&mut rng, 300);
        let (a, b) = (arc_camera(0.0), arc_camera(12.0));
        let mut pa = Vec::new();
        let mut pb = Vec::new();
        for (i, x) in world.iter().enumerate() {
            pa.push(observe(&a, x, noise, &mut rng));
            // Every fifth match is wrong: a random pixel.
            pb.push(if i % 5 == 0 {
                [(1280.0 * rng.next()) as f32, (960.0 * rng.next()) as f32]
            } else {
                observe(&b, x, noise, &mut rng)
            });
        }
        let matches: Vec<(u32, u32)> = (0..world.len() as u32).map(|i| (i, i)).collect();
        let geometry = verify_pair(&features(pa), &K, &features(pb), &K, &matches, 2.0)
            .expect("pair verifies");
        let outliers_kept = geometry.inliers.iter().filter(|(i, _)| i % 5 == 0).count();
        // A 2 px threshold keeps nearly all good matches up to 1 px noise (2 sigma).
        assert!(
            geometry.inliers.len() >= 200,
            "noise {noise}: kept {}",
            geometry.inliers.len()
        );
        assert!(
            outliers_kept <= 6,
            "noise {noise}: {outliers_kept} wrong matches kept"
        );
        let rel = geometry.relative.expect("decomposes");
        let true_rel = b.rotation * a.rotation.inverse();
        let rot_err = rotation_angle_deg(&(rel.rotation * true_rel.inverse()));
        let true_dir = (a.rotation * (b.center - a.center)).normalize();
        let dir_err = rel.center.normalize().angle(&true_dir).to_degrees();
        within(noise, "rotation error (deg)", rot_err, 0.05, 0.1);
        within(noise, "baseline direction error (deg)", dir_err, 0.5, 1.0);
    }
}

#[test]
fn p3p_registration_recovers_pose_under_noise_and_outliers() {
    for (noise, seed) in [(0.0, 4), (0.5, 5), (1.5, 6)] {
        let mut rng = Rng(seed);
        let world = points(&mut rng, 200);
        let truth = arc_camera(-20.0);
        let correspondences: Vec<([f32; 2], Vector3<f64>)> = world
            .iter()
            .enumerate()
            .map(|(i, x)| {
                // Three in ten 2D-3D links are wrong: a random 3D point.
                let x_used = if i % 10 < 3 {
                    world[(i * 7 + 3) % world.len()]
                } else {
                    *x
                };
                (observe(&truth, x, noise, &mut rng), x_used)
            })
            .collect();
        let found = resect(&K, &correspondences, 2.0 + noise).expect("registers");
        let rot_err = rotation_angle_deg(&(found.pose.rotation * truth.rotation.inverse()));
        let pos_err = (found.pose.center - truth.center).norm();
        assert!(
            found.inliers.len() >= 130,
            "noise {noise}: {} inliers",
            found.inliers.len()
        );
        within(noise, "rotation error (deg)", rot_err, 0.02, 0.05);
        within(noise, "centre error", pos_err, 0.002, 0.01);
    }
}

/// A scene of `cams` known cameras seeing `world`, with noisy observations.
fn synthetic_scene(world: &[Vector3<f64>], cams: &[Pose], noise: f64, rng: &mut Rng) -> Scene {
    let mut scene = Scene::default();
    for (i, pose) in cams.iter().enumerate() {
        let positions = world.iter().map(|x| observe(pose, x, noise, rng)).collect();
        scene.views.push(View {
            id: format!("cam{i}"),
            features: Arc::new(features(positions)),
            width: 1280,
            height: 960,
            original_width: 1280,
            original_height: 960,
            scale: 1.0,
            intrinsics: K,
            intrinsics_source: IntrinsicsSource::Given,
            pose: Some(*pose),
            point_of: vec![NO_POINT; world.len()],
            last_failure: None,
            camera: 0,
            radial: 0.0,
        });
    }
    scene
}

fn cameras_of(scene: &Scene) -> Vec<Camera> {
    scene
        .views
        .iter()
        .filter_map(|v| {
            let p = v.pose?;
            Some(Camera {
                image: v.id.clone(),
                intrinsics: v.intrinsics,
                width: v.width,
                height: v.height,
                rotation: p.rotation_rows(),
                center: [p.center.x, p.center.y, p.center.z],
            })
        })
        .collect()
}

#[test]
fn triangulation_is_exact_without_noise_and_refuses_parallel_rays() {
    let mut rng = Rng(7);
    let world = points(&mut rng, 50);
    let cams = [arc_camera(0.0), arc_camera(10.0), arc_camera(10.001)];
    let scene = synthetic_scene(&world, &cams, 0.0, &mut rng);
    let tri = Triangulator::new(&scene, 4.0);
    for (i, x) in world.iter().enumerate() {
        let kp = i as u32;
        let found = tri
            .point(&scene, &[(0, kp), (1, kp)])
            .expect("wide rays triangulate");
        assert!(
            (found - x).norm() < 1e-3,
            "point {i} off by {}",
            (found - x).norm()
        );
        assert!(
            tri.point(&scene, &[(1, kp), (2, kp)]).is_none(),
            "near-parallel rays must be refused"
        );
    }
}

#[test]
fn bundle_adjustment_pulls_a_perturbed_scene_back_to_the_truth() {
    let mut rng = Rng(8);
    let world = points(&mut rng, 400);
    let cams: Vec<Pose> = [0.0, 8.0, 16.0, 24.0, 32.0].map(arc_camera).to_vec();
    let mut scene = synthetic_scene(&world, &cams, 0.3, &mut rng);
    let obs: Vec<(u32, u32)> = (0..cams.len() as u32).map(|v| (v, 0)).collect();
    for (i, x) in world.iter().enumerate() {
        let noisy = x + Vector3::new(rng.sym(), rng.sym(), rng.sym()) * 0.02;
        let track: Vec<(u32, u32)> = obs.iter().map(|&(v, _)| (v, i as u32)).collect();
        scene.add_point(noisy, &track).expect("fresh keypoints");
    }
    for view in scene.views.iter_mut().skip(1) {
        let pose = view.pose.as_mut().expect("posed");
        let wobble =
            Rotation3::from_scaled_axis(Vector3::new(rng.sym(), rng.sym(), rng.sym()) * 0.008);
        pose.rotation = wobble * pose.rotation;
        pose.center += Vector3::new(rng.sym(), rng.sym(), rng.sym()) * 0.03;
    }
    let truth: Vec<TrueCamera> = cams
        .iter()
        .enumerate()
        .map(|(i, p)| TrueCamera {
            image: format!("cam{i}"),
            rotation: p.rotation_rows(),
            center: [p.center.x, p.center.y, p.center.z],
        })
        .collect();
    let before = compare_with_truth(&cameras_of(&scene), &truth).expect("comparable");
    let free: BTreeSet<u32> = (0..cams.len() as u32).collect();
    let pts: BTreeSet<u32> = scene.points.keys().copied().collect();
    let report = adjust(
        &mut scene,
        &Adjustment {
            free_views: &free,
            points: &pts,
            refine_focal: false,
            loss_scale: 2.0,
            max_iterations: 50,
        },
    );
    assert!(report.applied, "solver result accepted");
    assert!(
        report.final_rmse < 0.6,
        "rmse {} px for 0.3 px noise",
        report.final_rmse
    );
    let after = compare_with_truth(&cameras_of(&scene), &truth).expect("comparable");
    assert!(
        after.mean_position < before.mean_position / 5.0 && after.mean_position < 0.005,
        "position error {} -> {}",
        before.mean_position,
        after.mean_position
    );
    // Rotations are compared without the centre alignment: five centres on a short arc fix the
    // alignment's rotation poorly, while the adjuster keeps the first (true) camera as its anchor.
    for (view, truth) in scene.views.iter().zip(&cams) {
        let pose = view.pose.expect("posed");
        let err = rotation_angle_deg(&(pose.rotation * truth.rotation.inverse()));
        assert!(
            err < 0.02,
            "{}: rotation error {err} deg (started at {} mean)",
            view.id,
            before.mean_rotation_deg
        );
    }
}
