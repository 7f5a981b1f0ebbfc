//! Where each photo's camera matrix comes from: settings, EXIF, or a prior.

use serde::{Deserialize, Serialize};

use crate::decode::{DecodedPhoto, FNV_OFFSET, fnv1a};
use crate::settings::Intrinsics;

/// Focal length prior, in units of the longer image side, when nothing better is known. It is
/// the middle of typical phone and compact-camera fields of view (about 50 degrees horizontally);
/// adjustment refines it once the photo is registered.
pub const PRIOR_FOCAL_FACTOR: f64 = 1.2;

/// Diagonal of a 36x24 mm full frame, the reference of 35 mm-equivalent focal lengths.
pub const FULL_FRAME_DIAGONAL_MM: f64 = 43.266_615_305_567_87;

/// Which evidence gave a photo's intrinsics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntrinsicsSource {
    /// From [`crate::Settings::intrinsics`]; held fixed.
    Given,
    /// From the EXIF 35 mm-equivalent focal length; refined by global adjustment.
    Exif,
    /// From [`PRIOR_FOCAL_FACTOR`]; refined by global adjustment.
    Prior,
}

/// Intrinsics at processing resolution for a decoded photo.
pub fn resolve(given: Option<&Intrinsics>, photo: &DecodedPhoto) -> (Intrinsics, IntrinsicsSource) {
    if let Some(k) = given {
        return (k.scaled(photo.scale), IntrinsicsSource::Given);
    }
    let (w, h) = (f64::from(photo.rgb.width()), f64::from(photo.rgb.height()));
    let long_side = w.max(h);
    let centre = |f: f64| Intrinsics {
        fx: f,
        fy: f,
        cx: (w - 1.0) / 2.0,
        cy: (h - 1.0) / 2.0,
    };
    // The 35 mm equivalent keeps the field of view across the diagonal of a 36x24 mm frame
    // (the crop factor is a ratio of diagonals). For 3:2 photos this is the same as scaling the
    // long side by 36 mm; for 4:3 phone photos the long side alone gives a focal about 4 % short.
    let diagonal = w.hypot(h);
    match photo.exif.focal_35mm {
        Some(f35) => (
            centre(f35 / FULL_FRAME_DIAGONAL_MM * diagonal),
            IntrinsicsSource::Exif,
        ),
        None => (
            centre(PRIOR_FOCAL_FACTOR * long_side),
            IntrinsicsSource::Prior,
        ),
    }
}

/// The key grouping photos from one camera: EXIF make and model, focal lengths and the photo's
/// decoded (not EXIF-stated) size at original and processing resolution. Zero (no group) when
/// the intrinsics are given, since those are fixed anyway, or when EXIF names no camera and no
/// focal length, since photos of unknown cameras cannot be assumed to share a lens.
pub fn camera_key(source: IntrinsicsSource, photo: &DecodedPhoto) -> u64 {
    let exif = &photo.exif;
    if source == IntrinsicsSource::Given
        || (exif.camera_hash.is_none() && exif.focal_mm.is_none() && exif.focal_35mm.is_none())
    {
        return 0;
    }
    let mut bytes = Vec::with_capacity(48);
    bytes.extend(exif.camera_hash.unwrap_or(0).to_le_bytes());
    bytes.extend(exif.focal_mm.unwrap_or(0.0).to_bits().to_le_bytes());
    bytes.extend(exif.focal_35mm.unwrap_or(0.0).to_bits().to_le_bytes());
    for side in [
        photo.original_width,
        photo.original_height,
        photo.rgb.width(),
        photo.rgb.height(),
    ] {
        bytes.extend(side.to_le_bytes());
    }
    // Never zero, which means "no group".
    fnv1a(bytes, FNV_OFFSET).max(1)
}
