//! The room page's 3D viewer: the growing point cloud and the photographers' cameras.
//!
//! The viewer is split so that everything that can be wrong without a GPU is tested natively:
//!
//! - [`camera`]: the orbit camera (orbit, pan, zoom, pinch, fit) and its matrices;
//! - [`bounds`]: robust model bounds, so one stray point does not shrink the model to a dot;
//! - [`frustum`]: a registered photo drawn as a small pyramid in world coordinates;
//! - [`scene`]: [`SceneData`], what is drawn: shards in manifest order, progressive loading, the
//!   swap to a refined generation without ever showing an empty model, the highlight of the
//!   newest photo;
//! - [`input`]: pointer, touch and keyboard gestures turned into camera moves;
//! - [`loader`]: shard URLs and retry delays, and (in the browser) fetching shards into the scene;
//! - [`detail`]: level of detail, an even subset of the points while the camera moves when
//!   frames are slow (no GPU), everything once it rests;
//! - `render` (browser only): WebGL2 through three-d, points as `GL_POINTS`, one vertex buffer
//!   per shard;
//! - [`component`]: the [`Viewer`] Leptos component, which renders plain markup on the server.
//!
//! It is not a model store or a network client of the room stream: the page owns a
//! `RwSignal<SceneData>`, feeds it the room's snapshot and events, and hands it to [`Viewer`].
//!
//! Coordinates: the reconstruction's world has `y` pointing down (cameras look along `+z` with
//! image `y` down, and the first camera is usually upright), so the viewer orbits around world
//! `-y` as "up". The flip lives only in [`camera::OrbitCamera::view_matrix`]; every other
//! position here, shard points and frustum lines alike, is in world coordinates.

pub mod bounds;
pub mod camera;
pub mod component;
pub mod detail;
pub mod frustum;
pub mod input;
pub mod loader;
#[cfg(feature = "hydrate")]
pub mod render;
pub mod scene;

pub use bounds::{Bounds, robust_bounds};
pub use camera::OrbitCamera;
pub use component::{ViewRequest, Viewer};
pub use frustum::{FrustumError, frustum_segments};
pub use scene::{Inserted, SceneData};

/// Milliseconds on the clock the viewer's fades use: `performance.now()` in the browser, and 0
/// elsewhere (the server renders no animation). Pass it to [`SceneData`]'s `now_ms` arguments.
pub fn now_ms() -> f64 {
    #[cfg(feature = "hydrate")]
    {
        web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or(0.0)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        0.0
    }
}
