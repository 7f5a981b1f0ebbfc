//! `recon`: run the reconstruction core on a folder of photos, or benchmark it on the shared
//! datasets.
//!
//! ```text
//! recon reconstruct --images DIR [--intrinsics FILE] [--refine-every N]
//!                   [--order name|shuffled --seed S] [--max-side PX] --out DIR
//! recon bench [--datasets DIR] [--sets a,b,...] [--seed S] [--no-colmap] [--no-full] [--no-memory]
//! recon bench-captures [--datasets DIR] [--seed S]
//! ```

mod colmap;
mod log;

use std::path::{Path, PathBuf};
use std::time::Instant;

use recon::evaluation::{
    DatasetIntrinsics, compare_with_truth, datasets_dir, image_files, load_ground_truth,
    mean_reprojection_error, quantile, shuffled_order,
};
use recon::export::{camera_records, timings_json, write_colmap_text, write_ply};
use recon::{CancelToken, PhotoStatus, Reconstruction, Settings, StageTimings};

type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

fn main() {
    log::init_from_env();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("reconstruct") => reconstruct(&args[1..]).map(|_| ()),
        Some("bench") => bench(&args[1..]),
        Some("bench-one") => bench_one(&args[1..]),
        Some("bench-captures") => bench_captures(&args[1..]),
        _ => Err(USAGE.into()),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

const USAGE: &str = "usage:\n  recon reconstruct --images DIR [--intrinsics FILE] [--refine-every N] [--order name|shuffled --seed S] [--max-side PX] --out DIR\n  recon bench [--datasets DIR] [--sets a,b] [--seed S] [--no-colmap] [--no-full] [--no-memory]\n  recon bench-captures [--datasets DIR] [--seed S]";

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn has(args: &[String], name: &str) -> bool {
    args.iter().any(|a| a == name)
}

/// What one run produced, for the bench.
struct RunSummary {
    names: Vec<String>,
    latencies: Vec<f64>,
    final_refine_seconds: f64,
    recon: Reconstruction,
}

fn run_photos(
    files: &[PathBuf],
    settings: Settings,
    quiet: bool,
) -> Fallible<(RunSummary, Vec<(String, StageTimings)>)> {
    let mut recon = Reconstruction::new(settings)?;
    let cancel = CancelToken::new();
    let mut timings = Vec::new();
    let mut latencies = Vec::new();
    let mut names = Vec::new();
    for file in files {
        let mut name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("photo")
            .to_string();
        if names.contains(&name) {
            // Photos from several sets can share file names; the set folder tells them apart.
            let set = file
                .parent()
                .and_then(Path::parent)
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str());
            name = format!("{}/{name}", set.unwrap_or("other"));
        }
        let bytes = std::fs::read(file)?;
        let start = Instant::now();
        let outcome = recon.add_photo(&name, &bytes, &mut |_, _| {}, &cancel);
        let elapsed = start.elapsed().as_secs_f64();
        match outcome {
            Ok(outcome) => {
                if !quiet {
                    let status = match &outcome.status {
                        PhotoStatus::Registered(p) => {
                            format!("registered, {} new points", p.new_points.len())
                        }
                        PhotoStatus::NotRegistered { reason } => format!("pending: {reason}"),
                    };
                    let also: Vec<&str> = outcome
                        .also_registered
                        .iter()
                        .map(|p| p.camera.image.as_str())
                        .collect();
                    eprintln!(
                        "{name}: {status}{} ({elapsed:.2}s)",
                        if also.is_empty() {
                            String::new()
                        } else {
                            format!("; also registered {also:?}")
                        }
                    );
                }
                timings.push((name.clone(), outcome.timings));
            }
            Err(e) => {
                eprintln!("{name}: rejected: {e}");
                timings.push((name.clone(), StageTimings::default()));
            }
        }
        latencies.push(elapsed);
        names.push(name);
    }
    let start = Instant::now();
    recon.refine(&mut |_, _| {}, &cancel)?;
    let final_refine_seconds = start.elapsed().as_secs_f64();
    Ok((
        RunSummary {
            names,
            latencies,
            final_refine_seconds,
            recon,
        },
        timings,
    ))
}

fn ordered(files: Vec<PathBuf>, order: &str, seed: u64) -> Fallible<Vec<PathBuf>> {
    match order {
        "name" => Ok(files),
        "shuffled" => Ok(shuffled_order(files.len(), seed)
            .into_iter()
            .filter_map(|i| files.get(i).cloned())
            .collect()),
        other => Err(format!("unknown order {other:?} (name or shuffled)").into()),
    }
}

fn settings_from(args: &[String]) -> Fallible<Settings> {
    let mut settings = Settings::default();
    if let Some(path) = flag(args, "--intrinsics") {
        settings.intrinsics = Some(DatasetIntrinsics::load(Path::new(&path))?.intrinsics());
    }
    if let Some(n) = flag(args, "--refine-every") {
        settings.refine_every = n.parse()?;
    }
    if let Some(n) = flag(args, "--max-side") {
        settings.max_image_side = n.parse()?;
    }
    settings.validate()?;
    Ok(settings)
}

fn reconstruct(args: &[String]) -> Fallible<RunSummary> {
    let images = flag(args, "--images").ok_or(USAGE)?;
    let out = PathBuf::from(flag(args, "--out").ok_or(USAGE)?);
    let seed: u64 = flag(args, "--seed")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(0);
    let order = flag(args, "--order").unwrap_or_else(|| "name".into());
    let settings = settings_from(args)?;
    let files = ordered(image_files(Path::new(&images))?, &order, seed)?;
    let (summary, timings) = run_photos(&files, settings, false)?;
    std::fs::create_dir_all(&out)?;
    let model = summary.recon.model();
    let mut ids = summary.names.clone();
    ids.sort();
    let records = camera_records(&ids, &model.cameras);
    std::fs::write(
        out.join("cameras.json"),
        serde_json::to_string_pretty(&records)?,
    )?;
    write_ply(&out.join("points.ply"), &model.points)?;
    let t = serde_json::json!({ "photos": timings_json(&timings), "final_refinement": summary.final_refine_seconds });
    std::fs::write(out.join("timings.json"), serde_json::to_string_pretty(&t)?)?;
    write_colmap_text(&out.join("colmap"), summary.recon.scene())?;
    eprintln!(
        "{} of {} registered, {} points; written to {}",
        model.cameras.len(),
        ids.len(),
        model.points.len(),
        out.display()
    );
    Ok(summary)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One dataset and order in a fresh process, so peak RSS is this run's alone. Prints one JSON line.
fn bench_one(args: &[String]) -> Fallible<()> {
    let dir = PathBuf::from(flag(args, "--set").ok_or(USAGE)?);
    let order = flag(args, "--order").unwrap_or_else(|| "name".into());
    let seed: u64 = flag(args, "--seed")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1);
    let mut settings = Settings::default();
    let with_k = !has(args, "--no-k");
    if with_k && let Ok(k) = DatasetIntrinsics::load(&dir.join("intrinsics.json")) {
        settings.intrinsics = Some(k.intrinsics());
    }
    let mut files = Vec::new();
    for set in dir.to_string_lossy().split(',') {
        files.extend(image_files(&Path::new(set).join("images"))?);
    }
    if let Some(n) = flag(args, "--limit") {
        files.truncate(n.parse()?);
    }
    let files = ordered(files, &order, seed)?;
    let fixes: Vec<(String, [f64; 2])> = files
        .iter()
        .filter_map(|f| {
            let name = f.file_name()?.to_str()?.to_string();
            let gps = recon::evaluation::exif_gps(&std::fs::read(f).ok()?)?;
            Some((name, gps))
        })
        .collect();
    let (summary, _) = run_photos(&files, settings, false)?;
    let model = summary.recon.model();
    let gps = recon::evaluation::compare_with_gps(&model.cameras, &fixes);
    let errors = load_ground_truth(&dir.join("ground_truth.json"))
        .ok()
        .and_then(|gt| compare_with_truth(&model.cameras, &gt));
    // With several sets fed together, score each set's cameras against its own truth, so a
    // photo registered into the wrong place would show up as a large error.
    let mut per_set = serde_json::Map::new();
    let sets: Vec<&str> = dir.to_str().unwrap_or_default().split(',').collect();
    if sets.len() > 1 {
        for (i, set) in sets.iter().enumerate() {
            let set_path = Path::new(set);
            let Ok(gt) = load_ground_truth(&set_path.join("ground_truth.json")) else {
                continue;
            };
            let name = set_path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let prefix = format!("{name}/");
            let cams: Vec<recon::Camera> = model
                .cameras
                .iter()
                .filter_map(|c| {
                    let local = if i == 0 {
                        Some(c.image.as_str()).filter(|id| !id.contains('/'))
                    } else {
                        c.image.strip_prefix(&prefix)
                    };
                    local.map(|id| recon::Camera {
                        image: id.to_string(),
                        ..c.clone()
                    })
                })
                .collect();
            let e = compare_with_truth(&cams, &gt);
            per_set.insert(
                name.to_string(),
                serde_json::json!({
                    "registered": cams.len(),
                    "mean_position_error": e.as_ref().map(|e| e.mean_position),
                    "mean_rotation_error_deg": e.as_ref().map(|e| e.mean_rotation_deg),
                }),
            );
        }
    }
    let line = serde_json::json!({
        "per_set": per_set,
        "registered": model.cameras.len(),
        "total": summary.names.len(),
        "points": model.points.len(),
        "mean_position_error": errors.as_ref().map(|e| e.mean_position),
        "mean_rotation_error_deg": errors.as_ref().map(|e| e.mean_rotation_deg),
        "pairwise_rotation_median_deg": errors.as_ref().map(|e| e.pairwise_rotation_median_deg),
        "pairwise_rotation_p90_deg": errors.as_ref().map(|e| e.pairwise_rotation_p90_deg),
        "focal_px": focal_summary(&model.cameras),
        "gps_error_m": gps,
        "radial_k1": radial_summary(summary.recon.scene()),
        "reprojection_px": mean_reprojection_error(summary.recon.scene()),
        "latency_p50": quantile(&summary.latencies, 0.5),
        "latency_p95": quantile(&summary.latencies, 0.95),
        "refinement_seconds": summary.final_refine_seconds,
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("{line}");
    Ok(())
}

/// Median focal length of the registered cameras, in original-resolution pixels, with the
/// smallest and largest.
fn focal_summary(cameras: &[recon::Camera]) -> Option<[f64; 3]> {
    let f: Vec<f64> = cameras.iter().map(|c| c.intrinsics.fx).collect();
    if f.is_empty() {
        return None;
    }
    Some([
        quantile(&f, 0.5),
        f.iter().copied().fold(f64::INFINITY, f64::min),
        f.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    ])
}

/// Median radial distortion k1 of the registered views (0 when none was estimated).
fn radial_summary(scene: &recon::scene::Scene) -> f64 {
    let k1: Vec<f64> = scene
        .views
        .iter()
        .filter(|v| v.is_registered())
        .map(|v| v.radial)
        .collect();
    quantile(&k1, 0.5)
}

fn bench(args: &[String]) -> Fallible<()> {
    let root = match flag(args, "--datasets") {
        Some(d) => PathBuf::from(d),
        None => datasets_dir().ok_or("datasets folder not found (set VESTIGE_DATASETS)")?,
    };
    let seed = flag(args, "--seed").unwrap_or_else(|| "1".into());
    let default_sets = "fountain-P11-half,Herz-Jesus-P8-half,entry-P10-half,sceaux-castle-half";
    let sets = flag(args, "--sets").unwrap_or_else(|| default_sets.into());
    let exe = std::env::current_exe()?;
    let with_colmap = !has(args, "--no-colmap") && colmap::available();
    if !with_colmap {
        println!(
            "COLMAP: not run ({})\n",
            if has(args, "--no-colmap") {
                "--no-colmap"
            } else {
                "colmap not installed"
            }
        );
    }
    println!(
        "| set | order | registered | position err | rotation err | reproj px | points | latency p50/p95 s | final refine s | peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for set in sets.split(',') {
        let dir = root.join(set);
        if !dir.is_dir() {
            println!("| {set} | - | missing | | | | | | | |");
            continue;
        }
        for order in ["name", "shuffled"] {
            let v = match run_child(
                &exe,
                &[
                    "bench-one",
                    "--set",
                    &dir.to_string_lossy(),
                    "--order",
                    order,
                    "--seed",
                    &seed,
                ],
            ) {
                Ok(v) => v,
                Err(e) => {
                    println!("| {set} | {order} | failed: {e} | | | | | | | |");
                    continue;
                }
            };
            print_row(set, order, &v);
        }
        if with_colmap && dir.join("intrinsics.json").is_file() {
            match colmap::figures(&dir, 1600) {
                Ok(v) => print_row(set, "COLMAP 3.8 (name)", &v),
                Err(e) => println!("| {set} | COLMAP | failed: {e} | | | | | | | |"),
            }
        }
    }
    if !has(args, "--no-full") {
        let dir = root.join("fountain-P11-full");
        if dir.is_dir() {
            let v = run_child(
                &exe,
                &[
                    "bench-one",
                    "--set",
                    &dir.to_string_lossy(),
                    "--order",
                    "name",
                ],
            )?;
            print_row("fountain-P11-full (3072x2048, K scaled)", "name", &v);
        }
    }
    if !has(args, "--no-memory") {
        // 30 photos of several scenes, without K: memory with many photos, and unrelated
        // scenes that must stay pending or form their own model without corrupting the first.
        let sets = [
            "fountain-P11-full",
            "Herz-Jesus-P8-half",
            "entry-P10-half",
            "sceaux-castle-half",
        ];
        let dirs: Vec<String> = sets
            .iter()
            .map(|s| root.join(s).to_string_lossy().into_owned())
            .collect();
        let v = run_child(
            &exe,
            &[
                "bench-one",
                "--set",
                &dirs.join(","),
                "--order",
                "name",
                "--limit",
                "30",
                "--no-k",
            ],
        )?;
        print_row("30 photos, 4 scenes, no K", "name", &v);
    }
    Ok(())
}

/// Issue 10's real captures, all without K: registered count, focal, pairwise relative rotation
/// error against the reference poses where there are any, reprojection error.
fn bench_captures(args: &[String]) -> Fallible<()> {
    let root = match flag(args, "--datasets") {
        Some(d) => PathBuf::from(d),
        None => datasets_dir().ok_or("datasets folder not found (set VESTIGE_DATASETS)")?,
    };
    let seed = flag(args, "--seed").unwrap_or_else(|| "1".into());
    let exe = std::env::current_exe()?;
    println!(
        "| set | order | registered | focal px (median, min-max) | k1 | pairwise rot err median/p90 deg | GPS fit mean/max m | reproj px | points | latency p50/p95 s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let runs = [
        ("lund-street-iphone4s", "name"),
        ("lund-street-iphone4s", "shuffled"),
        ("lund-door-nikon", "name"),
        ("cyprus-ruins-nikon", "name"),
    ];
    for (set, order) in runs {
        let dir = root.join(set);
        if !dir.is_dir() {
            println!("| {set} | {order} | missing | | | | | | | |");
            continue;
        }
        let dir = dir.to_string_lossy().into_owned();
        let child = [
            "bench-one",
            "--set",
            &dir,
            "--order",
            order,
            "--seed",
            &seed,
            "--no-k",
        ];
        let v = match run_child(&exe, &child) {
            Ok(v) => v,
            Err(e) => {
                println!("| {set} | {order} | failed: {e} | | | | | | | |");
                continue;
            }
        };
        let num = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
        let focal = v
            .get("focal_px")
            .and_then(serde_json::Value::as_array)
            .map(|f| {
                f.iter()
                    .filter_map(serde_json::Value::as_f64)
                    .collect::<Vec<_>>()
            })
            .filter(|f| f.len() == 3)
            .map_or("-".into(), |f| {
                format!("{:.0} ({:.0}-{:.0})", f[0], f[1], f[2])
            });
        let rot = match (
            num("pairwise_rotation_median_deg"),
            num("pairwise_rotation_p90_deg"),
        ) {
            (Some(a), Some(b)) => format!("{a:.3}/{b:.3}"),
            _ => "- (no reference)".into(),
        };
        let gps = v
            .get("gps_error_m")
            .and_then(serde_json::Value::as_array)
            .map(|g| {
                g.iter()
                    .filter_map(serde_json::Value::as_f64)
                    .collect::<Vec<_>>()
            })
            .filter(|g| g.len() == 2)
            .map_or("-".into(), |g| format!("{:.1}/{:.1}", g[0], g[1]));
        let order_label = if order == "shuffled" {
            format!("shuffled (seed {seed})")
        } else {
            order.to_string()
        };
        println!(
            "| {set} | {order_label} | {}/{} | {focal} | {:.4} | {rot} | {gps} | {:.2} | {} | {:.2}/{:.2} |",
            num("registered").unwrap_or(0.0),
            num("total").unwrap_or(0.0),
            num("radial_k1").unwrap_or(0.0),
            num("reprojection_px").unwrap_or(0.0),
            num("points").unwrap_or(0.0),
            num("latency_p50").unwrap_or(0.0),
            num("latency_p95").unwrap_or(0.0),
        );
    }
    Ok(())
}

fn run_child(exe: &Path, args: &[&str]) -> Fallible<serde_json::Value> {
    let out = std::process::Command::new(exe).args(args).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .map_err(|_| format!("bench-one failed: {}", String::from_utf8_lossy(&out.stderr)).into())
}

fn print_row(set: &str, order: &str, v: &serde_json::Value) {
    let num = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
    let mm = num("mean_position_error").map_or("-".into(), |e| format!("{:.1} mm", e * 1000.0));
    let deg = num("mean_rotation_error_deg").map_or("-".into(), |e| format!("{e:.3} deg"));
    let latency = match (num("latency_p50"), num("latency_p95")) {
        (Some(a), Some(b)) => format!("{a:.2}/{b:.2}"),
        _ => num("seconds").map_or("-".into(), |s| format!("{s:.0} s total")),
    };
    println!(
        "| {set} | {order} | {}/{} | {mm} | {deg} | {:.2} | {} | {latency} | {} | {} |",
        num("registered").unwrap_or(0.0),
        num("total").unwrap_or(0.0),
        num("reprojection_px").unwrap_or(0.0),
        num("points").unwrap_or(0.0),
        num("refinement_seconds").map_or("-".into(), |s| format!("{s:.2}")),
        num("peak_rss_mib").map_or("-".into(), |m| format!("{m:.0}")),
    );
}
