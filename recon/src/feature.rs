//! Keypoints with RootSIFT descriptors (openMVG's SIFT detector) and their colours.

use image::RgbImage;
use openmvg_features::extraction::{FeatureBudgetPolicy, GrayImage, SiftExtractor, SiftPreset};
use serde::{Deserialize, Serialize};

use crate::error::ReconError;

/// Bytes per descriptor.
pub const DESCRIPTOR_LEN: usize = 128;

/// The features of one photo, immutable once extracted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Features {
    /// Keypoint positions in processing pixels (x, y), pixel centres on integers.
    pub positions: Vec<[f32; 2]>,
    /// Keypoint scale (detector sigma), used to weigh nothing yet but kept for exports.
    pub scales: Vec<f32>,
    /// RGB colour under each keypoint.
    pub colors: Vec<[u8; 3]>,
    /// Descriptors, `DESCRIPTOR_LEN` bytes each, concatenated.
    pub descriptors: Vec<u8>,
}

impl Features {
    /// Number of keypoints.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Whether there are no keypoints.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// The descriptors as slices, the form the matchers take.
    pub fn descriptor_slices(&self) -> Vec<&[u8]> {
        self.descriptors
            .as_chunks::<DESCRIPTOR_LEN>()
            .0
            .iter()
            .map(|d| d.as_slice())
            .collect()
    }
}

fn gray(rgb: &RgbImage) -> GrayImage {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let raw = rgb.as_raw();
    GrayImage::from_fn(h, w, |y, x| {
        let i = 3 * (y * w + x);
        match raw.get(i..i + 3) {
            Some(p) => 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]),
            None => 0.0,
        }
    })
}

/// openMVG's classic SIFT (`High` preset) rather than its ALP detector: on the
/// Strecha sets SIFT gave 10-15% lower camera position errors on Herz-Jesus-P8 and entry-P10 at
/// the same speed (see docs/benchmarks.md).
const PRESET: SiftPreset = SiftPreset::High;

/// Longest side (processing pixels) below which the image is doubled before detection
/// ([`SiftPreset::Ultra`]). A 1024x768 phone photo otherwise gives about 2000 keypoints, and
/// photos a few steps apart along a street share too few of them to chain.
pub const SMALL_IMAGE_SIDE: u32 = 1200;

/// Detect and describe up to `max_features` keypoints, spread over a grid so that one textured
/// corner cannot take the whole budget.
pub fn extract(rgb: &RgbImage, max_features: usize) -> Result<Features, ReconError> {
    let preset = if rgb.width().max(rgb.height()) < SMALL_IMAGE_SIDE {
        SiftPreset::Ultra
    } else {
        PRESET
    };
    let extractor = SiftExtractor::with_preset(preset)
        .with_feature_budget(FeatureBudgetPolicy::spatial_grid(max_features, 4, 4));
    let found = extractor
        .extract_u8(&gray(rgb))
        .map_err(|e| ReconError::Decode(format!("feature extraction failed: {e}")))?;
    let mut out = Features::default();
    let (w, h) = (rgb.width(), rgb.height());
    for (kp, desc) in found.keypoints().iter().zip(found.descriptors()) {
        if !(kp.x.is_finite() && kp.y.is_finite()) {
            continue;
        }
        let px = (kp.x.round().max(0.0) as u32).min(w.saturating_sub(1));
        let py = (kp.y.round().max(0.0) as u32).min(h.saturating_sub(1));
        let color = rgb.get_pixel_checked(px, py).map_or([0, 0, 0], |p| p.0);
        out.positions.push([kp.x, kp.y]);
        out.scales.push(kp.sigma);
        out.colors.push(color);
        out.descriptors.extend_from_slice(desc.as_array());
    }
    Ok(out)
}
