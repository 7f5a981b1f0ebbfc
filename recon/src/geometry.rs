//! Camera poses, projection and the conversions to openMVG's types.

use nalgebra::{Matrix3, Point2, Point3, Rotation3, UnitVector3, Vector3};
use openmvg_core::model::WorldToCameraPose;
use serde::{Deserialize, Serialize};

use crate::settings::Intrinsics;

/// A world-to-camera pose: a world point X is at `rotation * (X - center)` in the camera frame.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pose {
    /// World-to-camera rotation.
    pub rotation: Rotation3<f64>,
    /// Camera centre in world coordinates.
    pub center: Vector3<f64>,
}

impl Pose {
    /// The pose at the origin looking down +z.
    pub fn identity() -> Self {
        Self {
            rotation: Rotation3::identity(),
            center: Vector3::zeros(),
        }
    }

    /// The point in camera coordinates.
    pub fn to_camera(&self, world: &Vector3<f64>) -> Vector3<f64> {
        self.rotation * (world - self.center)
    }

    /// Direction of the optical axis in world coordinates.
    pub fn viewing_direction(&self) -> Vector3<f64> {
        self.rotation.inverse() * Vector3::z()
    }

    pub(crate) fn to_openmvg(self) -> Option<WorldToCameraPose> {
        WorldToCameraPose::from_rotation_center(self.rotation, Point3::from(self.center)).ok()
    }

    pub(crate) fn from_openmvg(pose: &WorldToCameraPose) -> Self {
        Self {
            rotation: *pose.rotation(),
            center: pose.center().coords,
        }
    }

    /// Row-major rotation matrix.
    pub fn rotation_rows(&self) -> [[f64; 3]; 3] {
        let m = self.rotation.matrix();
        [0, 1, 2].map(|r| [m[(r, 0)], m[(r, 1)], m[(r, 2)]])
    }
}

/// Pixel of a world point, or `None` when it is behind (or on) the camera plane.
pub fn project(k: &Intrinsics, pose: &Pose, world: &Vector3<f64>) -> Option<Point2<f64>> {
    let c = pose.to_camera(world);
    if c.z <= 1e-12 {
        return None;
    }
    Some(Point2::new(
        k.fx * c.x / c.z + k.cx,
        k.fy * c.y / c.z + k.cy,
    ))
}

/// Reprojection error in pixels (infinite when the point is behind the camera).
pub fn reprojection_error(
    k: &Intrinsics,
    pose: &Pose,
    world: &Vector3<f64>,
    pixel: [f32; 2],
) -> f64 {
    match project(k, pose, world) {
        Some(p) => {
            ((p.x - f64::from(pixel[0])).powi(2) + (p.y - f64::from(pixel[1])).powi(2)).sqrt()
        }
        None => f64::INFINITY,
    }
}

/// Unit bearing in the camera frame of a pixel.
pub fn bearing(k: &Intrinsics, pixel: [f32; 2]) -> UnitVector3<f64> {
    let v = Vector3::new(
        (f64::from(pixel[0]) - k.cx) / k.fx,
        (f64::from(pixel[1]) - k.cy) / k.fy,
        1.0,
    );
    UnitVector3::new_normalize(v)
}

/// The camera matrix as nalgebra.
pub fn k_matrix(k: &Intrinsics) -> Matrix3<f64> {
    Matrix3::new(k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0)
}

/// Angle in radians between the rays from two centres to a point.
pub fn ray_angle(a: &Vector3<f64>, b: &Vector3<f64>, point: &Vector3<f64>) -> f64 {
    let (ra, rb) = (point - a, point - b);
    let (na, nb) = (ra.norm(), rb.norm());
    if na < 1e-15 || nb < 1e-15 {
        return 0.0;
    }
    (ra.dot(&rb) / (na * nb)).clamp(-1.0, 1.0).acos()
}

/// Angle in degrees of a rotation. Goes through a quaternion because `acos` of a trace that
/// rounds just above 3 gives NaN for (near) identities.
pub fn rotation_angle_deg(r: &Rotation3<f64>) -> f64 {
    nalgebra::UnitQuaternion::from_rotation_matrix(r)
        .angle()
        .to_degrees()
}

/// Where a pinhole pixel lands through radial distortion `k1` (on normalized coordinates,
/// factor `1 + k1 r²`, the convention of openMVG and COLMAP).
pub fn distort_pixel(k: &Intrinsics, k1: f64, pixel: [f32; 2]) -> [f32; 2] {
    let x = (f64::from(pixel[0]) - k.cx) / k.fx;
    let y = (f64::from(pixel[1]) - k.cy) / k.fy;
    let f = 1.0 + k1 * (x * x + y * y);
    [(k.fx * x * f + k.cx) as f32, (k.fy * y * f + k.cy) as f32]
}

/// The pinhole pixel that radial distortion `k1` sends to `pixel`: the inverse of
/// [`distort_pixel`], by fixed-point iteration (it converges for the mild distortion of
/// ordinary lenses; the photo is returned unchanged if it does not).
pub fn undistort_pixel(k: &Intrinsics, k1: f64, pixel: [f32; 2]) -> [f32; 2] {
    let xd = (f64::from(pixel[0]) - k.cx) / k.fx;
    let yd = (f64::from(pixel[1]) - k.cy) / k.fy;
    let (mut x, mut y) = (xd, yd);
    for _ in 0..20 {
        let f = 1.0 + k1 * (x * x + y * y);
        if f.abs() < 1e-6 {
            return pixel;
        }
        (x, y) = (xd / f, yd / f);
    }
    if !(x.is_finite() && y.is_finite()) {
        return pixel;
    }
    [(k.fx * x + k.cx) as f32, (k.fy * y + k.cy) as f32]
}
