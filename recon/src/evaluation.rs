//! Scoring a reconstruction against ground truth and reading the shared datasets' files.

use std::path::{Path, PathBuf};

use nalgebra::{Matrix3, Point3, Rotation3, Vector3};
use openmvg_geometry::alignment::{AlignmentScale, fit_alignment};
use openmvg_geometry::correspondence::Point3Correspondence;
use serde::{Deserialize, Serialize};

use crate::error::ReconError;
use crate::model::Camera;
use crate::settings::Intrinsics;

/// `intrinsics.json` of a dataset: one K shared by all images, and the image names in order.
#[derive(Clone, Debug, Deserialize)]
pub struct DatasetIntrinsics {
    /// Row-major 3x3.
    #[serde(rename = "K")]
    pub k: [[f64; 3]; 3],
    /// Image file names in capture order.
    #[serde(default)]
    pub images: Vec<String>,
}

impl DatasetIntrinsics {
    /// Parse the file.
    pub fn load(path: &Path) -> Result<Self, ReconError> {
        let text = std::fs::read_to_string(path).map_err(|e| ReconError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| ReconError::Malformed {
            what: path.display().to_string(),
            detail: e.to_string(),
        })
    }

    /// As settings intrinsics.
    pub fn intrinsics(&self) -> Intrinsics {
        Intrinsics::from_matrix(&self.k)
    }
}

/// One true camera of `ground_truth.json`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct TrueCamera {
    /// Image file name.
    pub image: String,
    /// Row-major world-to-camera rotation.
    #[serde(rename = "R_world_to_camera")]
    pub rotation: [[f64; 3]; 3],
    /// Centre, metres.
    pub center: [f64; 3],
}

/// Read `ground_truth.json`, accepting either a list of cameras or an object holding one
/// (`cameras`/`images`), or a map keyed by image name.
pub fn load_ground_truth(path: &Path) -> Result<Vec<TrueCamera>, ReconError> {
    let text = std::fs::read_to_string(path).map_err(|e| ReconError::io(path, e))?;
    let malformed = |d: String| ReconError::Malformed {
        what: path.display().to_string(),
        detail: d,
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
    let list = match &value {
        serde_json::Value::Array(_) => value.clone(),
        serde_json::Value::Object(map) => match map.get("cameras").or_else(|| map.get("images")) {
            Some(v @ serde_json::Value::Array(_)) => v.clone(),
            Some(serde_json::Value::Object(inner)) => keyed(inner),
            _ => keyed(map),
        },
        _ => return Err(malformed("expected a list or an object".into())),
    };
    serde_json::from_value(list).map_err(|e| malformed(e.to_string()))
}

fn keyed(map: &serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    serde_json::Value::Array(
        map.iter()
            .filter_map(|(name, v)| {
                let mut obj = v.as_object()?.clone();
                obj.entry("image")
                    .or_insert_with(|| serde_json::Value::String(name.clone()));
                Some(serde_json::Value::Object(obj))
            })
            .collect(),
    )
}

/// Accuracy of registered cameras against the truth after a similarity alignment of centres.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PoseErrors {
    /// Cameras compared.
    pub compared: usize,
    /// Mean centre error, in the truth's units.
    pub mean_position: f64,
    /// Largest centre error.
    pub max_position: f64,
    /// Mean rotation error, degrees.
    pub mean_rotation_deg: f64,
    /// Largest rotation error, degrees.
    pub max_rotation_deg: f64,
    /// Median over every pair of compared cameras of the angle between the estimated and the
    /// true relative rotation `R_b R_a^T`, degrees. Needs no alignment, so a centre-only
    /// alignment of cameras near a line or plane cannot tilt it.
    pub pairwise_rotation_median_deg: f64,
    /// 90th percentile of the same pairwise errors, degrees.
    pub pairwise_rotation_p90_deg: f64,
}

fn rotation(m: &[[f64; 3]; 3]) -> Rotation3<f64> {
    let mat = Matrix3::from_fn(|r, c| m.get(r).and_then(|row| row.get(c)).copied().unwrap_or(0.0));
    Rotation3::from_matrix(&mat)
}

/// Align estimated centres to true ones (Umeyama, with scale) and measure the errors. Cameras
/// are paired by image name; `None` when fewer than three pair up or the fit fails. The truth's
/// `R_world_to_camera` is read as written (the shared files were corrected on 2026-12-03).
pub fn compare_with_truth(estimated: &[Camera], truth: &[TrueCamera]) -> Option<PoseErrors> {
    let pairs: Vec<(&Camera, &TrueCamera)> = estimated
        .iter()
        .filter_map(|e| truth.iter().find(|t| t.image == e.image).map(|t| (e, t)))
        .collect();
    if pairs.len() < 3 {
        return None;
    }
    let corr: Vec<Point3Correspondence> = pairs
        .iter()
        .map(|(e, t)| Point3Correspondence::new(Point3::from(e.center), Point3::from(t.center)))
        .collect();
    let sim = fit_alignment(&corr, None, AlignmentScale::Estimated).ok()?;
    let align_rot = sim.isometry.rotation.to_rotation_matrix();
    let mut errors = PoseErrors {
        compared: pairs.len(),
        ..PoseErrors::default()
    };
    for (e, t) in &pairs {
        let c = sim.transform_point(&Point3::from(e.center));
        let dp = (c.coords - Vector3::from(t.center)).norm();
        // A world point X_true = s R X_est + t, so R_est_aligned = R_est * R^T.
        let r_est = rotation(&e.rotation) * align_rot.inverse();
        let r_true = rotation(&t.rotation);
        let dr = crate::geometry::rotation_angle_deg(&(r_est.inverse() * r_true));
        errors.mean_position += dp;
        errors.mean_rotation_deg += dr;
        errors.max_position = errors.max_position.max(dp);
        errors.max_rotation_deg = errors.max_rotation_deg.max(dr);
    }
    errors.mean_position /= pairs.len() as f64;
    errors.mean_rotation_deg /= pairs.len() as f64;
    let pairwise = pairwise_rotation_errors(&pairs);
    errors.pairwise_rotation_median_deg = quantile(&pairwise, 0.5);
    errors.pairwise_rotation_p90_deg = quantile(&pairwise, 0.9);
    Some(errors)
}

/// Angle between estimated and true `R_b R_a^T` for every pair, degrees.
fn pairwise_rotation_errors(pairs: &[(&Camera, &TrueCamera)]) -> Vec<f64> {
    let mut out = Vec::new();
    for (i, (ea, ta)) in pairs.iter().enumerate() {
        for (eb, tb) in pairs.iter().skip(i + 1) {
            let est = rotation(&eb.rotation) * rotation(&ea.rotation).inverse();
            let tru = rotation(&tb.rotation) * rotation(&ta.rotation).inverse();
            out.push(crate::geometry::rotation_angle_deg(&(est.inverse() * tru)));
        }
    }
    out
}

/// The `q` quantile (nearest rank) of `values`; 0 when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v.get(rank - 1).copied().unwrap_or(0.0)
}

/// The shared datasets folder: `VESTIGE_DATASETS` when set, else `../shared/datasets` relative to
/// the workspace root. `None` when absent.
pub fn datasets_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("VESTIGE_DATASETS") {
        let dir = PathBuf::from(dir);
        return dir.is_dir().then_some(dir);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets");
    dir.is_dir().then_some(dir)
}

/// Image files (jpg/jpeg/png) of a folder, sorted by name.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>, ReconError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ReconError::io(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Mean reprojection error over all observations, in original-resolution pixels.
pub fn mean_reprojection_error(scene: &crate::scene::Scene) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for point in scene.points.values() {
        for &(v, kp) in &point.observations {
            let Some(view) = scene.views.get(v as usize) else {
                continue;
            };
            let (Some(pose), Some(px)) = (view.pose, view.features.positions.get(kp as usize))
            else {
                continue;
            };
            let e =
                crate::geometry::reprojection_error(&view.intrinsics, &pose, &point.position, *px);
            if e.is_finite() {
                sum += e / view.scale;
                n += 1;
            }
        }
    }
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// A deterministic permutation of `0..n` from `seed` (splitmix64 driving Fisher-Yates), so a
/// shuffled order is reproducible everywhere.
pub fn shuffled_order(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// The EXIF GPS fix of a photo as (latitude, longitude) in degrees, when it has one.
pub fn exif_gps(bytes: &[u8]) -> Option<[f64; 2]> {
    let exif = exif::Reader::new()
        .read_from_container(&mut std::io::Cursor::new(bytes))
        .ok()?;
    let angle = |tag, negative: u8, reference| {
        let exif::Value::Rational(v) = &exif.get_field(tag, exif::In::PRIMARY)?.value else {
            return None;
        };
        let [d, m, s] = [v.first()?, v.get(1)?, v.get(2)?].map(|r| r.to_f64());
        let sign = match &exif.get_field(reference, exif::In::PRIMARY)?.value {
            exif::Value::Ascii(parts) if parts.first()?.first() == Some(&negative) => -1.0,
            _ => 1.0,
        };
        Some(sign * (d + m / 60.0 + s / 3600.0)).filter(|a: &f64| a.is_finite())
    };
    Some([
        angle(exif::Tag::GPSLatitude, b'S', exif::Tag::GPSLatitudeRef)?,
        angle(exif::Tag::GPSLongitude, b'W', exif::Tag::GPSLongitudeRef)?,
    ])
}

/// How well the camera centres follow the photos' GPS track: centres aligned to the fixes (as
/// flat local metres; a street's height change is below GPS noise) by a similarity, then the
/// mean and largest horizontal distance, metres. `None` with fewer than three fixes paired by
/// image name, or when the fit fails. Phone GPS is good to about 5 m, so this catches a
/// wrongly placed or folded trajectory, not centimetre errors.
pub fn compare_with_gps(estimated: &[Camera], fixes: &[(String, [f64; 2])]) -> Option<[f64; 2]> {
    let (lat0, lon0) = fixes.first().map(|(_, f)| (f[0], f[1]))?;
    // Equirectangular metres: exact enough over a few hundred metres.
    const EARTH_RADIUS_M: f64 = 6_371_000.0;
    let local = |f: &[f64; 2]| {
        Point3::new(
            (f[1] - lon0).to_radians() * EARTH_RADIUS_M * lat0.to_radians().cos(),
            (f[0] - lat0).to_radians() * EARTH_RADIUS_M,
            0.0,
        )
    };
    let pairs: Vec<(Point3<f64>, Point3<f64>)> = estimated
        .iter()
        .filter_map(|e| {
            let (_, f) = fixes.iter().find(|(name, _)| *name == e.image)?;
            Some((Point3::from(e.center), local(f)))
        })
        .collect();
    if pairs.len() < 3 {
        return None;
    }
    let corr: Vec<Point3Correspondence> = pairs
        .iter()
        .map(|(e, g)| Point3Correspondence::new(*e, *g))
        .collect();
    let sim = fit_alignment(&corr, None, AlignmentScale::Estimated).ok()?;
    let errors: Vec<f64> = pairs
        .iter()
        .map(|(e, g)| {
            let a = sim.transform_point(e);
            (a.x - g.x).hypot(a.y - g.y)
        })
        .collect();
    let mean = errors.iter().sum::<f64>() / errors.len() as f64;
    Some([mean, errors.iter().copied().fold(0.0, f64::max)])
}
