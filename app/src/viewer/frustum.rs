//! A registered photo drawn as a small pyramid: where the camera stood and what it saw.
//!
//! The reconstruction's convention: `x_cam = R (X - C)`, the camera looks along its `+z`, image
//! `x` right and `y` down, pixels `u = fx·x/z + cx`, `v = fy·y/z + cy`. The pyramid's apex is
//! the centre `C`; its base is the image rectangle pushed out to a depth chosen from the model's
//! size, so frustums read the same in a room 5 m or 500 m across. A small triangle on the
//! image's top edge shows which way the photo was held. Output is world coordinates; the
//! display flip is the camera's business, not this module's.

use crate::protocol::CameraView;

/// A line from one point to another, in world coordinates.
pub type Segment = [[f32; 3]; 2];

/// Segments per frustum: 4 edges from the apex, 4 around the image, 2 for the up marker.
pub const SEGMENTS_PER_FRUSTUM: usize = 10;

/// How deep a frustum is drawn, as a fraction of the model's radius.
pub const DEPTH_PER_MODEL_RADIUS: f64 = 0.08;

/// Why a camera cannot be drawn. The message is for logs; the viewer simply skips the camera.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FrustumError {
    #[error("camera {photo}: the pose has a non-finite number")]
    NonFinitePose { photo: String },
    #[error("camera {photo}: the intrinsics need finite values, positive focal lengths and a nonzero image size")]
    BadIntrinsics { photo: String },
    #[error("frustum depth must be positive and finite (got {0})")]
    BadDepth(f64),
}

/// The frustum depth for a model of the given radius (never zero, so a one-point model still
/// shows its cameras).
pub fn depth_for_model(radius: f64) -> f64 {
    if radius.is_finite() && radius > 0.0 { radius * DEPTH_PER_MODEL_RADIUS } else { 0.1 }
}

/// The frustum of `camera` with its image plane at `depth` world units in front of it.
pub fn frustum_segments(camera: &CameraView, depth: f64) -> Result<[Segment; SEGMENTS_PER_FRUSTUM], FrustumError> {
    if !(depth.is_finite() && depth > 0.0) {
        return Err(FrustumError::BadDepth(depth));
    }
    let r = camera.rotation;
    let c = camera.center;
    if !r.iter().flatten().chain(c.iter()).all(|v| v.is_finite()) {
        return Err(FrustumError::NonFinitePose { photo: camera.photo.clone() });
    }
    let intrinsics_ok = [camera.fx, camera.fy, camera.cx, camera.cy].iter().all(|v| v.is_finite())
        && camera.fx > 0.0
        && camera.fy > 0.0
        && camera.width > 0
        && camera.height > 0;
    if !intrinsics_ok {
        return Err(FrustumError::BadIntrinsics { photo: camera.photo.clone() });
    }
    // Pixel (u, v) at depth z in camera coordinates, then X = C + Rᵀ x_cam (R is a rotation, so
    // its transpose is its inverse).
    let at = |u: f64, v: f64| -> [f32; 3] {
        let x = [(u - camera.cx) / camera.fx * depth, (v - camera.cy) / camera.fy * depth, depth];
        std::array::from_fn(|i| (c[i] + r[0][i] * x[0] + r[1][i] * x[1] + r[2][i] * x[2]) as f32)
    };
    let (w, h) = (f64::from(camera.width), f64::from(camera.height));
    let apex = c.map(|v| v as f32);
    let corners = [at(0.0, 0.0), at(w, 0.0), at(w, h), at(0.0, h)];
    let marker_left = at(w * 0.35, 0.0);
    let marker_tip = at(w * 0.5, -h * 0.15);
    let marker_right = at(w * 0.65, 0.0);
    Ok([
        [apex, corners[0]],
        [apex, corners[1]],
        [apex, corners[2]],
        [apex, corners[3]],
        [corners[0], corners[1]],
        [corners[1], corners[2]],
        [corners[2], corners[3]],
        [corners[3], corners[0]],
        [marker_left, marker_tip],
        [marker_tip, marker_right],
    ])
}

/// Every drawable camera's segments as a flat list of line vertices (two per segment), ready
/// for `GL_LINES`. Cameras that cannot be drawn are skipped rather than failing the rest.
pub fn frustum_vertices(cameras: &[CameraView], depth: f64) -> Vec<[f32; 3]> {
    cameras
        .iter()
        .filter_map(|camera| frustum_segments(camera, depth).ok())
        .flat_map(|segments| segments.into_iter().flatten())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn camera(rotation: [[f64; 3]; 3], center: [f64; 3]) -> CameraView {
        CameraView::example("p", rotation, center)
    }

    const IDENTITY: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

    fn close(a: [f32; 3], b: [f64; 3]) -> bool {
        (0..3).all(|i| (f64::from(a[i]) - b[i]).abs() < 1e-5)
    }

    #[test]
    fn an_identity_camera_sees_its_image_at_plus_z() {
        let s = frustum_segments(&camera(IDENTITY, [0.0; 3]), 2.0).expect("drawable");
        assert_eq!(s[0][0], [0.0; 3]);
        // Top-left pixel (0, 0): x = -50/100·2, y = -40/100·2 (image y down = world -y here).
        assert!(close(s[0][1], [-1.0, -0.8, 2.0]), "{:?}", s[0][1]);
        assert!(close(s[2][1], [1.0, 0.8, 2.0]), "{:?}", s[2][1]);
        // The up marker sits above the top edge, i.e. at smaller y.
        assert!(s[8][1][1] < s[0][1][1]);
    }

    #[test]
    fn a_turned_and_moved_camera_looks_along_r_transposed_z() {
        // Turned 90° about y: x_cam = R (X - C) with R's rows the camera axes in the world.
        let r = [[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]];
        let c = [5.0, 1.0, -2.0];
        let s = frustum_segments(&camera(r, c), 1.0).expect("drawable");
        let centre: [f64; 3] = std::array::from_fn(|i| {
            (0..4).map(|k| f64::from(s[k][1][i])).sum::<f64>() / 4.0
        });
        // Optical axis = third row of R = world +x; principal point is the image centre here.
        assert!((centre[0] - 6.0).abs() < 1e-5 && (centre[1] - 1.0).abs() < 1e-5 && (centre[2] + 2.0).abs() < 1e-5, "{centre:?}");
        // Every corner projects back to its pixel.
        for (k, (u, v)) in [(0.0, 0.0), (100.0, 0.0), (100.0, 80.0), (0.0, 80.0)].into_iter().enumerate() {
            let x: [f64; 3] = std::array::from_fn(|i| f64::from(s[k][1][i]) - c[i]);
            let cam: [f64; 3] = std::array::from_fn(|row| (0..3).map(|j| r[row][j] * x[j]).sum());
            assert!((100.0 * cam[0] / cam[2] + 50.0 - u).abs() < 1e-3);
            assert!((100.0 * cam[1] / cam[2] + 40.0 - v).abs() < 1e-3);
        }
    }

    #[test]
    fn bad_cameras_are_refused_and_skipped() {
        let mut nan = camera(IDENTITY, [f64::NAN, 0.0, 0.0]);
        assert!(matches!(frustum_segments(&nan, 1.0), Err(FrustumError::NonFinitePose { .. })));
        nan.center = [0.0; 3];
        nan.fx = 0.0;
        assert!(matches!(frustum_segments(&nan, 1.0), Err(FrustumError::BadIntrinsics { .. })));
        assert_eq!(frustum_segments(&camera(IDENTITY, [0.0; 3]), 0.0), Err(FrustumError::BadDepth(0.0)));
        let vertices = frustum_vertices(&[nan, camera(IDENTITY, [0.0; 3])], 1.0);
        assert_eq!(vertices.len(), 2 * SEGMENTS_PER_FRUSTUM);
    }

    #[test]
    fn depth_follows_the_model_size() {
        assert!((depth_for_model(10.0) - 0.8).abs() < 1e-12);
        assert!(depth_for_model(0.0) > 0.0);
        assert!(depth_for_model(f64::NAN) > 0.0);
    }
}
