//! COLMAP's figures on the same photos, for the bench: its CPU pipeline with K fixed, run
//! through the `colmap` command line when it is installed.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use nalgebra::{Quaternion, UnitQuaternion, Vector3};
use recon::evaluation::{DatasetIntrinsics, compare_with_truth, image_files, load_ground_truth};
use recon::{Camera, Intrinsics};

/// Whether `colmap` runs here.
pub fn available() -> bool {
    Command::new("colmap")
        .arg("help")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(args: &[&str], log: &Path) -> Result<(), String> {
    let out = Command::new("colmap")
        .args(args)
        .env("QT_QPA_PLATFORM", "offscreen")
        .output()
        .map_err(|e| e.to_string())?;
    let _ = std::fs::write(log, [out.stdout.as_slice(), out.stderr.as_slice()].concat());
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("colmap {} failed, see {}", args[0], log.display()))
    }
}

/// Run COLMAP on `set` (K from its intrinsics.json, 1600 px) and return its figures as JSON.
pub fn figures(set: &Path, max_side: u32) -> Result<serde_json::Value, String> {
    let k = DatasetIntrinsics::load(&set.join("intrinsics.json"))
        .map_err(|e| e.to_string())?
        .intrinsics();
    let work = std::env::temp_dir().join(format!("recon-colmap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("sparse")).map_err(|e| e.to_string())?;
    let db = work.join("db.db");
    let (db, images, sparse) = (
        db.to_string_lossy(),
        set.join("images"),
        work.join("sparse"),
    );
    let images = images.to_string_lossy();
    // COLMAP puts the centre of the top-left pixel at (0.5, 0.5); ours is at (0, 0).
    let params = format!("{},{},{},{}", k.fx, k.fy, k.cx + 0.5, k.cy + 0.5);
    let side = max_side.to_string();
    let start = Instant::now();
    run(
        &[
            "feature_extractor",
            "--database_path",
            &db,
            "--image_path",
            &images,
            "--ImageReader.camera_model",
            "PINHOLE",
            "--ImageReader.single_camera",
            "1",
            "--ImageReader.camera_params",
            &params,
            "--SiftExtraction.use_gpu",
            "0",
            "--SiftExtraction.max_image_size",
            &side,
        ],
        &work.join("features.log"),
    )?;
    run(
        &[
            "exhaustive_matcher",
            "--database_path",
            &db,
            "--SiftMatching.use_gpu",
            "0",
        ],
        &work.join("matching.log"),
    )?;
    run(
        &[
            "mapper",
            "--database_path",
            &db,
            "--image_path",
            &images,
            "--output_path",
            &sparse.to_string_lossy(),
            "--Mapper.ba_refine_focal_length",
            "0",
            "--Mapper.ba_refine_principal_point",
            "0",
            "--Mapper.ba_refine_extra_params",
            "0",
        ],
        &work.join("mapper.log"),
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let model = sparse.join("0");
    let model_s = model.to_string_lossy();
    run(
        &[
            "model_converter",
            "--input_path",
            &model_s,
            "--output_path",
            &model_s,
            "--output_type",
            "TXT",
        ],
        &work.join("convert.log"),
    )?;
    let cameras = read_images(&model.join("images.txt"), k)?;
    let (points, reprojection) = read_points(&model.join("points3D.txt"))?;
    let total = image_files(&set.join("images"))
        .map(|f| f.len())
        .unwrap_or(0);
    let errors = load_ground_truth(&set.join("ground_truth.json"))
        .ok()
        .and_then(|gt| compare_with_truth(&cameras, &gt));
    let _ = std::fs::remove_dir_all(&work);
    Ok(serde_json::json!({
        "registered": cameras.len(),
        "total": total,
        "points": points,
        "mean_position_error": errors.as_ref().map(|e| e.mean_position),
        "mean_rotation_error_deg": errors.as_ref().map(|e| e.mean_rotation_deg),
        "reprojection_px": reprojection,
        "seconds": seconds,
    }))
}

fn data_lines(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

fn read_images(path: &Path, k: Intrinsics) -> Result<Vec<Camera>, String> {
    let lines = data_lines(path)?;
    let mut cameras = Vec::new();
    // Two lines per image: the pose, then its keypoints.
    for line in lines.iter().step_by(2) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let n: Vec<f64> = f[1..8].iter().filter_map(|x| x.parse().ok()).collect();
        if n.len() != 7 {
            return Err(format!("bad pose line in {}", path.display()));
        }
        let q = UnitQuaternion::from_quaternion(Quaternion::new(n[0], n[1], n[2], n[3]));
        let r = q.to_rotation_matrix();
        let c = -(r.inverse() * Vector3::new(n[4], n[5], n[6]));
        let m = r.matrix();
        cameras.push(Camera {
            image: f[9..].join(" "),
            intrinsics: k,
            width: 0,
            height: 0,
            rotation: [0, 1, 2].map(|i| [m[(i, 0)], m[(i, 1)], m[(i, 2)]]),
            center: [c.x, c.y, c.z],
        });
    }
    Ok(cameras)
}

/// Point count and the mean reprojection error, weighting each point's error by its track length
/// so the figure is per observation, like ours.
fn read_points(path: &Path) -> Result<(usize, f64), String> {
    let lines = data_lines(path)?;
    let (mut sum, mut n) = (0.0, 0usize);
    for line in &lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let err: f64 = f[7].parse().unwrap_or(0.0);
        let track = (f.len() - 8) / 2;
        sum += err * track as f64;
        n += track;
    }
    Ok((lines.len(), if n == 0 { 0.0 } else { sum / n as f64 }))
}
