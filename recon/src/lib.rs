//! Vestige's reconstruction core: incremental structure from motion on the CPU that grows a
//! coloured sparse 3D model one photo at a time.
//!
//! It is a plain library with no web, async or GPU dependencies. It is not a dense
//! reconstruction, not a mesher, and not a global (all-photos-at-once) SfM; it keeps one model
//! per [`Reconstruction`], and photos of other scenes stay pending. Feature detection (SIFT),
//! matching (HNSW with a mutual ratio test), the minimal solvers in RANSAC (five-point essential
//! matrix, P3P), triangulation and bundle adjustment come from the `openmvg-*` crates; this crate
//! owns the online orchestration: which photos to match, the initial pair, registration with
//! pending retries, track bookkeeping, refinement, persistence and I/O.
//!
//! # API used by the server
//!
//! - [`Settings`] (serde, `Default`, [`Settings::validate`]) and [`Intrinsics`].
//! - [`Reconstruction::new`]`(settings) -> Result<Reconstruction, ReconError>`.
//! - [`Reconstruction::add_photo`]`(&mut self, id: &str, bytes: &[u8], progress: &mut dyn
//!   FnMut(Stage, f32), cancel: &CancelToken) -> Result<AddOutcome, ReconError>`: the photo is
//!   either [`PhotoStatus::Registered`] (camera and new points) or
//!   [`PhotoStatus::NotRegistered`] (kept, retried automatically); `also_registered` lists
//!   pending photos that it unlocked, `unregistered` lists photos registered earlier whose
//!   cameras the refinement in this call found inconsistent and removed (pending again, with a
//!   reason), `model` is set when the periodic refinement ran, `timings` gives seconds per
//!   [`Stage`].
//! - [`Reconstruction::refine`]`(&mut self, progress, cancel) -> Result<Model, ReconError>`,
//!   [`Reconstruction::model`]`(&self) -> Model`, [`Reconstruction::remove_photo`]`(id)` for a
//!   pending photo, [`Reconstruction::is_registered`]`(id)`,
//!   [`Reconstruction::pending_reason`]`(id)`.
//! - [`Reconstruction::save`]`(&self, path)` / [`Reconstruction::load`]`(path)` (versioned binary
//!   format, [`persist::STATE_VERSION`]); also `to_bytes`/`from_bytes`.
//! - [`export::ply_bytes`], [`export::write_ply`], [`export::read_ply`],
//!   [`export::camera_records`], [`export::timings_json`], [`export::write_colmap_text`].
//!
//! A [`CancelToken`] is checked between stages; a cancelled or failed call leaves the model
//! unchanged (each call works on a copy of the scene and commits at the end). Everything is
//! `Send`, and the same photos in the same order give byte-identical output: RANSAC and HNSW are
//! seeded, and parallel work is collected in input order.
//!
//! # Conventions
//!
//! Cameras are world-to-camera: a world point X is at `R (X - center)` in the camera, which
//! looks down +z with x right and y down; pixel centres sit on integer coordinates. [`Camera`]
//! and [`Model`] give K for the upright photo at its original resolution. The first registered
//! camera is the origin and the first baseline has unit length; the model's scale is arbitrary.
//!
//! # Intrinsics
//!
//! [`Settings::intrinsics`] (K at the original resolution, after EXIF orientation, scaled to the
//! processing size) is held fixed. Without it, the EXIF 35 mm-equivalent focal length is used
//! (scaled by the decoded image's diagonal, never by EXIF's stated pixel size), else
//! [`intrinsics::PRIOR_FOCAL_FACTOR`] times the longer side. Photos from one camera (same EXIF
//! make, model, focal lengths and decoded size; [`intrinsics::camera_key`]) share one focal
//! length and one radial distortion k1, refined jointly by global adjustment; the solver moves
//! them only when the observations constrain them. Keypoints are kept undistorted with the
//! current k1, so everything but the adjustment works with a pinhole camera; [`Camera`]
//! gives that pinhole K, and the k1 is in [`scene::View::radial`]. A plain EXIF focal length in
//! millimetres is read but not used, since the sensor width is unknown. Photos with given
//! intrinsics, or from cameras EXIF does not identify, keep their own focal and no distortion.
//!
//! # Registration
//!
//! The model starts from the pair best for geometry among the best connected ones (points
//! triangulated, median triangulation angle, share a homography explains). A later photo is
//! registered on geometric evidence: enough PnP inliers, and when they are few, a fair share
//! of its 2D-3D matches spread over the image; after local adjustment its observations must
//! still reproject well, or the registration is undone. After each global refinement every
//! camera is checked the same way and removed when it fails. Pending photos are retried after
//! every registration and refinement.
//!
//! # Modules
//!
//! [`decode`] (bytes, EXIF, size limits, downscale), [`intrinsics`], [`feature`], [`matching`],
//! [`estimators`] (essential matrix, P3P), [`register`] (initial pair, PnP), [`triangulate`]
//! (new points, track growth, outlier filter), [`bundle`] (adjustment), [`scene`] (the model's
//! bookkeeping), [`reconstruction`] (the online loop), [`persist`], [`export`], [`evaluation`]
//! (ground truth comparison and dataset helpers for tests and the bench), [`progress`],
//! [`settings`], [`model`], [`error`].

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
pub use model::{AddOutcome, Camera, Model, PhotoStatus, Point, RegisteredPhoto, Unregistered};
pub use progress::{CancelToken, Stage, StageTimings};
pub use reconstruction::Reconstruction;
pub use settings::{Intrinsics, Settings};
