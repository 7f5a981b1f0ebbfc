//! File formats other tools read: binary PLY, cameras JSON, timings JSON, COLMAP text model.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::error::ReconError;
use crate::model::{Camera, Point};
use crate::progress::StageTimings;
use crate::scene::Scene;

/// Binary little-endian PLY with `float x y z` and `uchar red green blue` per vertex.
pub fn ply_bytes(points: &[Point]) -> Vec<u8> {
    let header = format!(
        "ply\nformat binary_little_endian 1.0\nelement vertex {}\nproperty float x\nproperty float y\nproperty float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n",
        points.len()
    );
    let mut out = Vec::with_capacity(header.len() + points.len() * 15);
    out.extend_from_slice(header.as_bytes());
    for p in points {
        for c in p.position {
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.extend_from_slice(&p.color);
    }
    out
}

/// Write [`ply_bytes`] to a file.
pub fn write_ply(path: &Path, points: &[Point]) -> Result<(), ReconError> {
    std::fs::write(path, ply_bytes(points)).map_err(|e| ReconError::io(path, e))
}

/// Parse a PLY written by [`ply_bytes`] (used by tests and tools that read points back).
pub fn read_ply(bytes: &[u8]) -> Result<Vec<Point>, ReconError> {
    let bad = |d: &str| ReconError::Malformed {
        what: "PLY".into(),
        detail: d.into(),
    };
    let marker = b"end_header\n";
    let end = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .ok_or_else(|| bad("no end_header"))?;
    let header = std::str::from_utf8(bytes.get(..end).unwrap_or_default())
        .map_err(|_| bad("header not UTF-8"))?;
    let count: usize = header
        .lines()
        .find_map(|l| l.strip_prefix("element vertex "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| bad("no vertex count"))?;
    let body = bytes.get(end + marker.len()..).unwrap_or_default();
    if body.len() != count.saturating_mul(15) {
        return Err(bad("body length does not match vertex count"));
    }
    Ok(body
        .as_chunks::<15>()
        .0
        .iter()
        .map(|c| {
            let f = |i: usize| f32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
            Point {
                position: [f(0), f(4), f(8)],
                color: [c[12], c[13], c[14]],
            }
        })
        .collect())
}

/// One entry of `cameras.json`.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct CameraRecord {
    /// Photo id (file name for the CLI).
    pub image: String,
    /// Whether it got a pose.
    pub registered: bool,
    /// Row-major K at the original resolution (absent when not registered).
    #[serde(rename = "K")]
    pub k: Option<[[f64; 3]; 3]>,
    /// Row-major world-to-camera rotation.
    #[serde(rename = "R_world_to_camera")]
    pub rotation: Option<[[f64; 3]; 3]>,
    /// Camera centre.
    pub center: Option<[f64; 3]>,
}

/// `cameras.json` records for `ids`, in that order, from the registered `cameras`.
pub fn camera_records(ids: &[String], cameras: &[Camera]) -> Vec<CameraRecord> {
    ids.iter()
        .map(|id| match cameras.iter().find(|c| &c.image == id) {
            Some(c) => CameraRecord {
                image: id.clone(),
                registered: true,
                k: Some(c.k()),
                rotation: Some(c.rotation),
                center: Some(c.center),
            },
            None => CameraRecord {
                image: id.clone(),
                registered: false,
                k: None,
                rotation: None,
                center: None,
            },
        })
        .collect()
}

/// `timings.json`: per photo, seconds per stage (stage names in snake_case) and the total.
pub fn timings_json(per_photo: &[(String, StageTimings)]) -> serde_json::Value {
    let items = per_photo
        .iter()
        .map(|(id, t)| {
            let mut stages = serde_json::Map::new();
            for (stage, secs) in &t.0 {
                stages.insert(stage.name().to_string(), serde_json::json!(secs));
            }
            serde_json::json!({ "image": id, "stages": stages, "total": t.total() })
        })
        .collect::<Vec<_>>();
    serde_json::Value::Array(items)
}

/// Write a COLMAP text model (cameras.txt, images.txt, points3D.txt) into `dir`, in original
/// pixel coordinates with COLMAP's pixel convention (centre of the top-left pixel at 0.5, 0.5).
pub fn write_colmap_text(dir: &Path, scene: &Scene) -> Result<(), ReconError> {
    std::fs::create_dir_all(dir).map_err(|e| ReconError::io(dir, e))?;
    let (mut cameras, mut images, mut points) = (String::new(), String::new(), String::new());
    let _ = writeln!(
        cameras,
        "# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"
    );
    let _ = writeln!(
        images,
        "# Image list with two lines of data per image:\n#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n#   POINTS2D[] as (X, Y, POINT3D_ID)"
    );
    let _ = writeln!(
        points,
        "# 3D point list with one line of data per point:\n#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"
    );
    for (i, view) in scene.views.iter().enumerate() {
        let Some(pose) = view.pose else { continue };
        let id = i + 1;
        let k = view.intrinsics.scaled(1.0 / view.scale);
        let _ = writeln!(
            cameras,
            "{id} PINHOLE {} {} {} {} {} {}",
            view.original_width,
            view.original_height,
            k.fx,
            k.fy,
            k.cx + 0.5,
            k.cy + 0.5
        );
        let q = nalgebra::UnitQuaternion::from_rotation_matrix(&pose.rotation);
        let t = -(pose.rotation * pose.center);
        let _ = writeln!(
            images,
            "{id} {} {} {} {} {} {} {} {id} {}",
            q.w,
            q.i,
            q.j,
            q.k,
            t.x,
            t.y,
            t.z,
            view.id.replace(' ', "_")
        );
        let mut line = String::new();
        for (kp, px) in view.features.positions.iter().enumerate() {
            let p = view.point(kp as u32).map_or(-1i64, |p| i64::from(p) + 1);
            let x = (f64::from(px[0]) + 0.5) / view.scale;
            let y = (f64::from(px[1]) + 0.5) / view.scale;
            let _ = write!(line, "{x} {y} {p} ");
        }
        let _ = writeln!(images, "{}", line.trim_end());
    }
    for (&id, point) in &scene.points {
        let mut err = 0.0;
        let mut track = String::new();
        for &(v, kp) in &point.observations {
            if let Some(view) = scene.views.get(v as usize)
                && let (Some(pose), Some(px)) =
                    (view.pose, view.features.positions.get(kp as usize))
            {
                err += crate::geometry::reprojection_error(
                    &view.intrinsics,
                    &pose,
                    &point.position,
                    *px,
                ) / view.scale;
            }
            let _ = write!(track, " {} {kp}", v + 1);
        }
        err /= point.observations.len().max(1) as f64;
        let [r, g, b] = point.color;
        let p = point.position;
        let _ = writeln!(
            points,
            "{} {} {} {} {r} {g} {b} {err}{track}",
            id + 1,
            p.x,
            p.y,
            p.z
        );
    }
    for (name, text) in [
        ("cameras.txt", cameras),
        ("images.txt", images),
        ("points3D.txt", points),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| ReconError::io(&path, e))?;
    }
    Ok(())
}
