//! Settings of a reconstruction, validated up front so bad values fail at creation time.

use serde::{Deserialize, Serialize};

use crate::error::ReconError;

/// A pinhole camera matrix: focal lengths and principal point in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Intrinsics {
    /// Horizontal focal length, pixels.
    pub fx: f64,
    /// Vertical focal length, pixels.
    pub fy: f64,
    /// Principal point x, pixels (pixel centres on integer coordinates).
    pub cx: f64,
    /// Principal point y, pixels.
    pub cy: f64,
}

impl Intrinsics {
    /// The 3x3 matrix, row-major.
    pub fn matrix(&self) -> [[f64; 3]; 3] {
        [
            [self.fx, 0.0, self.cx],
            [0.0, self.fy, self.cy],
            [0.0, 0.0, 1.0],
        ]
    }

    /// From a 3x3 matrix; skew is ignored because the pipeline models none.
    pub fn from_matrix(k: &[[f64; 3]; 3]) -> Self {
        Self {
            fx: k[0][0],
            fy: k[1][1],
            cx: k[0][2],
            cy: k[1][2],
        }
    }

    /// The same camera after resizing the image by `factor` (new pixels per old pixel).
    /// Pixel centres sit on integer coordinates, so the principal point shifts by half a pixel.
    pub fn scaled(&self, factor: f64) -> Self {
        Self {
            fx: self.fx * factor,
            fy: self.fy * factor,
            cx: (self.cx + 0.5) * factor - 0.5,
            cy: (self.cy + 0.5) * factor - 0.5,
        }
    }

    pub(crate) fn is_valid(&self) -> bool {
        [self.fx, self.fy, self.cx, self.cy]
            .iter()
            .all(|v| v.is_finite())
            && self.fx > 0.0
            && self.fy > 0.0
    }
}

/// How a reconstruction is run. `Default` gives the documented defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Run a global refinement after every this many added photos (0 disables the automatic
    /// refinement; [`crate::Reconstruction::refine`] still works). Default 10.
    pub refine_every: u32,
    /// Photos are downscaled so that their longer side is at most this many pixels. Default 1600.
    pub max_image_side: u32,
    /// Known camera matrix at the original photo resolution (after EXIF orientation), shared by
    /// all photos. When absent, EXIF focal length is used, else a prior that adjustment refines.
    pub intrinsics: Option<Intrinsics>,
    /// Most keypoints kept per photo. Default 8000.
    pub max_features: u32,
    /// Most registered photos a new photo is fully matched against. Default 12.
    pub max_match_candidates: u32,
    /// Inlier threshold of the robust estimators and outlier filter, in processing pixels.
    /// Default 2.0.
    pub pixel_threshold: f64,
    /// Largest decoded image accepted, in pixels (checked from the header before decoding).
    /// Default 50 MP.
    pub max_input_pixels: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            refine_every: 10,
            max_image_side: 1600,
            intrinsics: None,
            max_features: 8000,
            max_match_candidates: 12,
            pixel_threshold: 2.0,
            max_input_pixels: 50_000_000,
        }
    }
}

impl Settings {
    /// Check every field against its documented bound.
    pub fn validate(&self) -> Result<(), ReconError> {
        let fail = |m: &str| Err(ReconError::InvalidSettings(m.to_string()));
        if !(64..=8192).contains(&self.max_image_side) {
            return fail("max_image_side must be within 64..=8192");
        }
        if !(100..=50_000).contains(&self.max_features) {
            return fail("max_features must be within 100..=50000");
        }
        if !(1..=200).contains(&self.max_match_candidates) {
            return fail("max_match_candidates must be within 1..=200");
        }
        if !(self.pixel_threshold.is_finite() && (0.25..=20.0).contains(&self.pixel_threshold)) {
            return fail("pixel_threshold must be within 0.25..=20");
        }
        if !(10_000..=400_000_000).contains(&self.max_input_pixels) {
            return fail("max_input_pixels must be within 10000..=400000000");
        }
        if let Some(k) = &self.intrinsics
            && !k.is_valid()
        {
            return fail("intrinsics must be finite with positive focal lengths");
        }
        Ok(())
    }
}
