//! Files that survive a power cut: written under a temporary name unique to the writer, fsynced,
//! moved into place, and the directory fsynced.
//!
//! Unique temporary names matter: two writers of the same path (the same photo uploaded twice at
//! once) must never share, truncate or rename each other's half-written file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Suffix of every temporary file; leftovers from a killed process are swept at start.
pub const PARTIAL_SUFFIX: &str = ".part";

/// A temporary path next to `path`, never handed to another writer in this process.
pub fn partial_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}-{n}{PARTIAL_SUFFIX}", std::process::id()))
}

/// Writes `bytes` to `path` atomically and durably, replacing any previous file: after this
/// returns, a power cut cannot lose or half-write it.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent(path)?;
    std::fs::create_dir_all(dir)?;
    let tmp = partial_path(path);
    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_dir(dir)
}

/// Moves a complete, fsynced temporary file to `path` unless a file is there already (same name,
/// same content, for content-addressed files), then makes the directory entry durable. Returns
/// whether this call put it there.
pub fn publish(tmp: &Path, path: &Path) -> std::io::Result<bool> {
    let dir = parent(path)?;
    let placed = match std::fs::hard_link(tmp, path) {
        Ok(()) => true,
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(err) => return Err(err),
    };
    let _ = std::fs::remove_file(tmp);
    // Also when another writer placed it: its rename may not be durable yet, and the caller is
    // about to acknowledge the file.
    sync_dir(dir)?;
    Ok(placed)
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> std::io::Result<&Path> {
    path.parent().ok_or_else(|| std::io::Error::other("no parent directory"))
}

/// Removes the temporary files a killed process left under `dir`, recursively. Returns how many.
pub fn sweep_partials(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => removed += sweep_partials(&path),
            Ok(_) if entry.file_name().to_string_lossy().ends_with(PARTIAL_SUFFIX) => {
                removed += usize::from(std::fs::remove_file(&path).is_ok());
            }
            _ => {}
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_writes_replace_nothing_partially() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/photo");
        write_durably(&path, b"bytes").expect("write");
        write_durably(&path, b"other").expect("overwrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"other");
        assert_eq!(sweep_partials(dir.path()), 0, "no temporary file is left behind");
    }

    #[test]
    fn concurrent_writers_never_share_a_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("photo");
        let a = partial_path(&path);
        let b = partial_path(&path);
        assert_ne!(a, b);
        std::fs::write(&a, b"same").expect("a");
        std::fs::write(&b, b"same").expect("b");
        assert!(publish(&a, &path).expect("first"));
        assert!(!publish(&b, &path).expect("second"));
        assert_eq!(std::fs::read(&path).expect("read"), b"same");
        assert!(!a.exists() && !b.exists());
    }

    #[test]
    fn leftovers_are_swept() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("rooms/r/photos")).expect("dirs");
        let left = partial_path(&dir.path().join("rooms/r/photos/abc"));
        std::fs::write(&left, b"half").expect("write");
        std::fs::write(dir.path().join("rooms/r/photos/abc"), b"whole").expect("write");
        assert_eq!(sweep_partials(dir.path()), 1);
        assert!(dir.path().join("rooms/r/photos/abc").exists());
    }
}
