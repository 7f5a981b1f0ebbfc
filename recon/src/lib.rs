//! Vestige's reconstruction core: incremental structure from motion on the CPU that grows a
//! coloured sparse 3D model one photo at a time.
//!
//! It is a plain library with no web, async or GPU dependencies. It is not a dense
//! reconstruction, not a mesher, and not a global (all-photos-at-once) SfM. Feature detection,
//! matching, the minimal solvers in RANSAC, triangulation and bundle adjustment come from the
//! `openmvg-*` crates; this crate owns the online orchestration: which photos to match, the
//! initial pair, registration with pending retries, track bookkeeping, refinement and I/O.
//!
//! # API used by the server
//!
//! - [`Settings`] (serde, `Default`, [`Settings::validate`]) and [`Intrinsics`].
//! - [`Reconstruction::new`]`(settings) -> Result<Reconstruction, ReconError>`.
//! - [`Reconstruction::add_photo`]`(&mut self, id: &str, bytes: &[u8], progress: &mut dyn
//!   FnMut(Stage, f32), cancel: &CancelToken) -> Result<AddOutcome, ReconError>`: the photo is
//!   either [`PhotoStatus::Registered`] (camera and new points) or
//!   [`PhotoStatus::NotRegistered`] (kept, retried automatically); `also_registered` lists
//!   pending photos that it unlocked, `model` is set when the periodic refinement ran, `timings`
//!   gives seconds per [`Stage`].
//! - [`Reconstruction::refine`]`(&mut self, progress, cancel) -> Result<Model, ReconError>`,
//!   [`Reconstruction::model`]`(&self) -> Model`, [`Reconstruction::remove_photo`] for a pending
//!   photo.
//! - [`Reconstruction::save`]`(&self, path)` / [`Reconstruction::load`]`(path)` (versioned binary
//!   format, [`persist::STATE_VERSION`]); also `to_bytes`/`from_bytes`.
//! - [`export::ply_bytes`], [`export::write_ply`], [`export::camera_records`],
//!   [`export::write_colmap_text`].
//!
//! A [`CancelToken`] is checked between stages; a cancelled or failed call leaves the model
//! unchanged. Everything is `Send`, and the same photos in the same order give byte-identical
//! output.
//!
//! # Intrinsics
//!
//! [`Settings::intrinsics`] (K at the original resolution, scaled to the processing size) is
//! held fixed. Without it, the EXIF 35 mm-equivalent focal length is used, else
//! [`intrinsics::PRIOR_FOCAL_FACTOR`] times the longer side; both are refined by global
//! adjustment.

pub mod bundle;
pub mod decode;
pub mod error;
pub mod estimators;
pub mod evaluation;
pub mod export;
pub mod feature;
pub mod geometry;
pub mod intrinsics;
pub mod matching;
pub mod model;
pub mod persist;
pub mod progress;
pub mod reconstruction;
pub mod register;
pub mod scene;
pub mod settings;
pub mod triangulate;

pub use error::ReconError;
pub use model::{AddOutcome, Camera, Model, PhotoStatus, Point, RegisteredPhoto};
pub use progress::{CancelToken, Stage, StageTimings};
pub use reconstruction::Reconstruction;
pub use settings::{Intrinsics, Settings};
