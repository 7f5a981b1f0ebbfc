//! Photo bytes to an upright, downscaled RGB image plus the EXIF facts the pipeline uses.
//!
//! Sizes are checked from the header before any pixel buffer exists, so a hostile header cannot
//! make us allocate gigabytes.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits, RgbImage, imageops::FilterType};

use crate::error::ReconError;

/// Sides shorter than this cannot hold enough keypoints to register.
pub const MIN_SIDE: u32 = 32;

/// EXIF facts that matter for reconstruction.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ExifFacts {
    /// EXIF orientation tag (1..=8), 1 when absent.
    pub orientation: u8,
    /// Focal length in millimetres, when recorded.
    pub focal_mm: Option<f64>,
    /// 35 mm-equivalent focal length, when recorded.
    pub focal_35mm: Option<f64>,
}

/// A decoded photo ready for feature extraction.
#[derive(Clone, Debug)]
pub struct DecodedPhoto {
    /// Upright pixels at processing resolution.
    pub rgb: RgbImage,
    /// Width of the upright photo at its original resolution.
    pub original_width: u32,
    /// Height of the upright photo at its original resolution.
    pub original_height: u32,
    /// Processing pixels per original pixel (1.0 when not downscaled).
    pub scale: f64,
    /// What EXIF said.
    pub exif: ExifFacts,
}

fn sniff_format(bytes: &[u8]) -> Result<ImageFormat, ReconError> {
    if bytes.is_empty() {
        return Err(ReconError::EmptyInput);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok(ImageFormat::Jpeg)
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Ok(ImageFormat::Png)
    } else {
        Err(ReconError::UnsupportedFormat)
    }
}

/// Whether an end-of-image marker follows the last start-of-scan. The JPEG decoder pads a
/// truncated scan with grey instead of failing, which would feed half an image to matching.
/// Entropy-coded data stuffs every 0xFF, so 0xFFD9 after the scan can only be the real marker.
fn jpeg_has_end(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_scan {
        Some(at) => bytes
            .get(at..)
            .is_some_and(|tail| tail.windows(2).any(|w| w == [0xFF, 0xD9])),
        None => false,
    }
}

fn read_exif(bytes: &[u8]) -> ExifFacts {
    let mut facts = ExifFacts {
        orientation: 1,
        ..ExifFacts::default()
    };
    // A photo without (or with broken) EXIF is still a photo: fall back silently.
    let Ok(exif) = exif::Reader::new().read_from_container(&mut Cursor::new(bytes)) else {
        return facts;
    };
    let field = |tag| exif.get_field(tag, exif::In::PRIMARY);
    if let Some(o) = field(exif::Tag::Orientation).and_then(|f| f.value.get_uint(0))
        && (1..=8).contains(&o)
    {
        facts.orientation = o as u8;
    }
    if let Some(f) = field(exif::Tag::FocalLengthIn35mmFilm).and_then(|f| f.value.get_uint(0))
        && (8..=2000).contains(&f)
    {
        facts.focal_35mm = Some(f64::from(f));
    }
    if let Some(exif::Value::Rational(v)) = field(exif::Tag::FocalLength).map(|f| &f.value)
        && let Some(mm) = v.first().map(|r| r.to_f64())
        && mm.is_finite()
        && mm > 0.5
        && mm < 2000.0
    {
        facts.focal_mm = Some(mm);
    }
    facts
}

/// Decode `bytes` (JPEG or PNG), apply EXIF orientation and downscale to `max_side`.
pub fn decode_photo(
    bytes: &[u8],
    max_side: u32,
    max_pixels: u64,
) -> Result<DecodedPhoto, ReconError> {
    let format = sniff_format(bytes)?;
    if format == ImageFormat::Jpeg && !jpeg_has_end(bytes) {
        return Err(ReconError::Decode(
            "truncated JPEG: no end-of-image marker after the scan".into(),
        ));
    }
    let reader = |limits: Limits| {
        let mut r = ImageReader::with_format(Cursor::new(bytes), format);
        r.limits(limits);
        r
    };
    let (width, height) = reader(Limits::default())
        .into_dimensions()
        .map_err(|e| ReconError::Decode(e.to_string()))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(ReconError::ImageTooLarge {
            width,
            height,
            max_pixels,
        });
    }
    if width < MIN_SIDE || height < MIN_SIDE {
        return Err(ReconError::ImageTooSmall {
            width,
            height,
            min_side: MIN_SIDE,
        });
    }
    let mut limits = Limits::default();
    // Room for the widest pixel type (16-bit RGBA) plus decoder scratch.
    limits.max_alloc = Some(pixels.saturating_mul(8).saturating_add(64 << 20));
    let image = reader(limits)
        .decode()
        .map_err(|e| ReconError::Decode(e.to_string()))?;
    let exif = read_exif(bytes);
    let mut image = match image {
        DynamicImage::ImageRgb8(_) => image,
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    };
    if let Some(orientation) = image::metadata::Orientation::from_exif(exif.orientation) {
        image.apply_orientation(orientation);
    }
    let (original_width, original_height) = (image.width(), image.height());
    let long_side = original_width.max(original_height);
    let mut rgb = image.into_rgb8();
    let mut scale = 1.0;
    if long_side > max_side {
        scale = f64::from(max_side) / f64::from(long_side);
        let w = ((f64::from(original_width) * scale).round() as u32).max(1);
        let h = ((f64::from(original_height) * scale).round() as u32).max(1);
        rgb = image::imageops::resize(&rgb, w, h, FilterType::Triangle);
        // The rounded size defines the real factor; use the horizontal one, as the sides agree
        // to within half a pixel.
        scale = f64::from(w) / f64::from(original_width);
    }
    Ok(DecodedPhoto {
        rgb,
        original_width,
        original_height,
        scale,
        exif,
    })
}
