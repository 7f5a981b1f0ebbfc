//! Saving and restoring a reconstruction, so a restarted server continues a room.
//!
//! Format: the 8-byte magic `VSTRECON`, a little-endian u32 format version, then the state in
//! postcard encoding. Encoding is deterministic, so the same state gives the same bytes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ReconError;
use crate::reconstruction::Reconstruction;
use crate::scene::Scene;
use crate::settings::Settings;

const MAGIC: &[u8; 8] = b"VSTRECON";
/// Version of the saved-state format written by this build. Version 2 appends each view's
/// camera group and radial distortion ([`crate::scene::View::camera`], `radial`); version 1
/// states still load, with every view keeping distortion-free intrinsics of its own as then.
pub const STATE_VERSION: u32 = 2;

/// The version 1 layout, which version 2 extends at the end.
#[derive(Deserialize)]
struct StateV1 {
    settings: Settings,
    photos_added: u64,
    scene: Scene,
}

#[derive(Deserialize)]
struct State {
    settings: Settings,
    photos_added: u64,
    scene: Scene,
    cameras: Vec<(u64, f64)>,
}

impl Reconstruction {
    /// The saved-state bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ReconError> {
        let state = StateRef {
            settings: &self.settings,
            photos_added: self.photos_added,
            scene: &self.scene,
            cameras: self
                .scene
                .views
                .iter()
                .map(|v| (v.camera, v.radial))
                .collect(),
        };
        let body =
            postcard::to_stdvec(&state).map_err(|e| ReconError::CorruptState(e.to_string()))?;
        let mut out = Vec::with_capacity(body.len() + 12);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&STATE_VERSION.to_le_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Restore from saved-state bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ReconError> {
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| ReconError::CorruptState("not a saved reconstruction".into()))?;
        let (version, body) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| ReconError::CorruptState("truncated header".into()))?;
        let found = u32::from_le_bytes(*version);
        let corrupt = |e: postcard::Error| ReconError::CorruptState(e.to_string());
        let state = match found {
            1 => {
                let old: StateV1 = postcard::from_bytes(body).map_err(corrupt)?;
                let cameras = vec![(0, 0.0); old.scene.views.len()];
                State {
                    settings: old.settings,
                    photos_added: old.photos_added,
                    scene: old.scene,
                    cameras,
                }
            }
            STATE_VERSION => postcard::from_bytes(body).map_err(corrupt)?,
            _ => {
                return Err(ReconError::StateVersion {
                    found,
                    expected: STATE_VERSION,
                });
            }
        };
        if state.cameras.len() != state.scene.views.len() {
            return Err(ReconError::CorruptState(
                "camera groups disagree with the views".into(),
            ));
        }
        let mut state = state;
        for (view, &(camera, radial)) in state.scene.views.iter_mut().zip(&state.cameras) {
            if !radial.is_finite() {
                return Err(ReconError::CorruptState("non-finite distortion".into()));
            }
            view.camera = camera;
            view.radial = radial;
        }
        check(&state.scene)?;
        Reconstruction::from_parts(state.settings, state.scene, state.photos_added)
    }

    /// Write the state to `path` (through a temporary file, so a crash never leaves half a file).
    pub fn save(&self, path: &Path) -> Result<(), ReconError> {
        let bytes = self.to_bytes()?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &bytes).map_err(|e| ReconError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| ReconError::io(path, e))
    }

    /// Read a state written by [`Reconstruction::save`].
    pub fn load(path: &Path) -> Result<Self, ReconError> {
        let bytes = std::fs::read(path).map_err(|e| ReconError::io(path, e))?;
        Self::from_bytes(&bytes)
    }
}

#[derive(Serialize)]
struct StateRef<'a> {
    settings: &'a Settings,
    photos_added: u64,
    scene: &'a Scene,
    cameras: Vec<(u64, f64)>,
}

/// Reject states whose cross references would make later indexing go out of range.
fn check(scene: &Scene) -> Result<(), ReconError> {
    let bad = |m: &str| Err(ReconError::CorruptState(m.to_string()));
    for view in &scene.views {
        let f = &view.features;
        let k = f.len();
        if view.point_of.len() != k
            || f.colors.len() != k
            || f.scales.len() != k
            || f.descriptors.len() != k * crate::feature::DESCRIPTOR_LEN
        {
            return bad("feature arrays disagree in length");
        }
    }
    for (&(a, b), pair) in &scene.pairs {
        let (Some(va), Some(vb)) = (scene.views.get(a as usize), scene.views.get(b as usize))
        else {
            return bad("pair refers to a missing view");
        };
        if a >= b
            || pair
                .matches
                .iter()
                .any(|&(x, y)| x as usize >= va.point_of.len() || y as usize >= vb.point_of.len())
        {
            return bad("pair match out of range");
        }
    }
    for point in scene.points.values() {
        if point.observations.iter().any(|&(v, kp)| {
            scene
                .views
                .get(v as usize)
                .is_none_or(|view| view.point_of.len() <= kp as usize)
        }) {
            return bad("point observation out of range");
        }
    }
    Ok(())
}
