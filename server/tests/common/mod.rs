//! Helpers shared by the integration tests.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The shared photo sets, or `None` (after saying so) when they are not next to the project.
pub fn datasets() -> Option<PathBuf> {
    let dir = std::env::var_os("VESTIGE_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIP: no datasets at {} (set VESTIGE_DATASETS)", dir.display());
        None
    }
}

/// A set's photos in name order.
pub fn photos(datasets: &Path, set: &str) -> Vec<PathBuf> {
    let dir = datasets.join(set).join("images");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("images folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    paths
}

/// The photo id a client computes: SHA-256 as lowercase hex.
pub fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
