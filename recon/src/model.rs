//! What callers get back: cameras, coloured points and per-photo outcomes.

use serde::{Deserialize, Serialize};

use crate::progress::StageTimings;
use crate::settings::Intrinsics;

/// A coloured 3D point.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// World position.
    pub position: [f32; 3],
    /// sRGB colour.
    pub color: [u8; 3],
}

/// A registered photo's camera, at the photo's original resolution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Camera {
    /// The caller's photo id.
    pub image: String,
    /// Camera matrix for the upright original photo, pixels.
    pub intrinsics: Intrinsics,
    /// Upright original width, pixels.
    pub width: u32,
    /// Upright original height, pixels.
    pub height: u32,
    /// World-to-camera rotation, row-major: a world point X maps to `R (X - center)`.
    pub rotation: [[f64; 3]; 3],
    /// Camera centre in world coordinates.
    pub center: [f64; 3],
}

impl Camera {
    /// K as a row-major 3x3 matrix.
    pub fn k(&self) -> [[f64; 3]; 3] {
        self.intrinsics.matrix()
    }
}

/// The whole model: registered cameras in photo order and every point in id order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Registered cameras, in the order the photos were added.
    pub cameras: Vec<Camera>,
    /// All points.
    pub points: Vec<Point>,
    /// Ids of photos that are kept but not registered (yet).
    pub pending: Vec<String>,
}

/// A photo that got a pose, with the points its registration created.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegisteredPhoto {
    /// Its camera.
    pub camera: Camera,
    /// Points created when it was registered (after local adjustment).
    pub new_points: Vec<Point>,
}

/// What happened to the photo passed to `add_photo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PhotoStatus {
    /// It has a pose and contributed points.
    Registered(RegisteredPhoto),
    /// It is kept and retried when later photos connect it.
    NotRegistered {
        /// Why it could not be registered now.
        reason: String,
    },
}

/// A photo whose camera was taken out of the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unregistered {
    /// The photo's id.
    pub id: String,
    /// Why its camera was removed.
    pub reason: String,
}

/// The result of adding one photo.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AddOutcome {
    /// The photo's id.
    pub id: String,
    /// This photo's status.
    pub status: PhotoStatus,
    /// Previously pending photos that this photo allowed to register, in registration order.
    pub also_registered: Vec<RegisteredPhoto>,
    /// Photos reported registered by earlier calls whose cameras the refinement in this call
    /// found inconsistent and removed; they are pending again and retried like any other.
    /// Absent in outcomes serialized before this field existed.
    #[serde(default)]
    pub unregistered: Vec<Unregistered>,
    /// The whole model when a global refinement ran during this call.
    pub model: Option<Model>,
    /// Seconds per stage for this call.
    pub timings: StageTimings,
}
