//! Photo bytes to an upright, downscaled RGB image plus the EXIF facts the pipeline uses
//! ([`decode_photo`]), and a cheap proof that a photo is whole and decodable
//! ([`validate_photo`]).
//!
//! Sizes are checked from the header before any pixel buffer exists, so a hostile header cannot
//! make us allocate gigabytes. Validation never holds pixels: a JPEG's entropy data is walked
//! block by block without decoding (`jpeg_scan`), a PNG is inflated row by row. Decoding a PNG
//! also goes row by row into an area-average downscale, so its memory follows the output size,
//! not the input's. A JPEG is still decoded whole by zune-jpeg (through `image`) after the walk
//! has proved it complete: that decoder pads missing data with grey instead of failing.
//!
//! This module does not colour-manage (ICC profiles and PNG gamma are ignored) and reads only
//! the first image of an animated PNG.

mod box_scale;
mod jpeg_scan;
mod png_stream;

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits, RgbImage, imageops::FilterType};

use crate::error::ReconError;

/// Sides shorter than this cannot hold enough keypoints to register.
pub const MIN_SIDE: u32 = 32;

/// Longest accepted side, JPEG's own limit. A PNG may claim more; refusing it keeps the
/// row buffers of streamed decoding small.
pub const MAX_SIDE: u32 = 65_535;

/// The container of a photo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhotoFormat {
    /// JPEG: baseline, extended sequential or progressive, Huffman-coded, 8-bit.
    Jpeg,
    /// PNG.
    Png,
}

/// What [`validate_photo`] established about a whole photo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhotoFacts {
    /// Container format.
    pub format: PhotoFormat,
    /// Width as stored, before EXIF orientation.
    pub width: u32,
    /// Height as stored, before EXIF orientation.
    pub height: u32,
    /// EXIF orientation (1..=8), 1 when absent.
    pub orientation: u8,
}

/// EXIF facts that matter for reconstruction.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ExifFacts {
    /// EXIF orientation tag (1..=8), 1 when absent.
    pub orientation: u8,
    /// Focal length in millimetres, when recorded.
    pub focal_mm: Option<f64>,
    /// 35 mm-equivalent focal length, when recorded.
    pub focal_35mm: Option<f64>,
    /// EXIF make and model, hashed (FNV-1a over `make`, a NUL, `model`), when either is
    /// recorded: enough to tell cameras apart without keeping strings.
    pub camera_hash: Option<u64>,
}

/// FNV-1a, 64 bit: stable across builds and platforms, unlike `std`'s hasher.
pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>, seed: u64) -> u64 {
    bytes.into_iter().fold(seed, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// FNV-1a's offset basis.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

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

fn sniff_format(bytes: &[u8]) -> Result<PhotoFormat, ReconError> {
    if bytes.is_empty() {
        return Err(ReconError::EmptyInput);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok(PhotoFormat::Jpeg)
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Ok(PhotoFormat::Png)
    } else {
        Err(ReconError::UnsupportedFormat)
    }
}

/// The header-size rules shared by both formats and both entry points.
fn check_size(width: u32, height: u32, max_pixels: u64) -> Result<(), ReconError> {
    if u64::from(width) * u64::from(height) > max_pixels {
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
    Ok(())
}

/// Walk a whole JPEG (see `jpeg_scan`), checking its size first.
fn walk_jpeg(bytes: &[u8], max_pixels: u64) -> Result<jpeg_scan::JpegSummary, ReconError> {
    let summary = jpeg_scan::walk(bytes, |w, h| check_size(w, h, max_pixels))?;
    if summary.skipped_refinements > 0 {
        tracing::debug!(
            width = summary.width,
            height = summary.height,
            scans = summary.scans,
            skipped = summary.skipped_refinements,
            "progressive JPEG too large to walk its refinement scans bit by bit"
        );
    }
    Ok(summary)
}

/// Processing size of an upright `width` x `height` photo and the processing pixels per
/// original pixel. The rounded width defines the factor, as the sides agree to within half a
/// pixel.
fn target_size(width: u32, height: u32, max_side: u32) -> (u32, u32, f64) {
    let long_side = width.max(height);
    if long_side <= max_side {
        return (width, height, 1.0);
    }
    let scale = f64::from(max_side) / f64::from(long_side);
    let w = ((f64::from(width) * scale).round() as u32).clamp(1, width);
    let h = ((f64::from(height) * scale).round() as u32).clamp(1, height);
    (w, h, f64::from(w) / f64::from(width))
}

/// Prove that `bytes` is a whole, decodable JPEG or PNG of at most `max_pixels` pixels and at
/// least [`MIN_SIDE`] a side, without decoding it to pixels.
///
/// Size errors ([`ReconError::ImageTooLarge`], [`ReconError::ImageTooSmall`]) come from the
/// header, before any image data is read. A JPEG's every scan is entropy-decoded to its last
/// block (a cut file, even one patched with an end marker, or a header claiming more blocks
/// than the data holds is [`ReconError::Decode`]); a PNG is inflated and unfiltered row by row
/// with every checksum verified up to IEND. Memory stays at a few MiB whatever the header
/// claims; time is proportional to the file's data (for PNG, to its decompressed size).
///
/// One gap: a progressive JPEG of more than about 11 to 22 megapixels (see
/// `jpeg_scan::REFINE_STATE_BYTES`) has its AC refinement scans followed only to their end, so a
/// cut inside such a scan, which loses the lowest bit of some coefficients, is not noticed.
pub fn validate_photo(bytes: &[u8], max_pixels: u64) -> Result<PhotoFacts, ReconError> {
    let format = sniff_format(bytes)?;
    let (width, height) = match format {
        PhotoFormat::Jpeg => {
            let summary = walk_jpeg(bytes, max_pixels)?;
            (summary.width, summary.height)
        }
        PhotoFormat::Png => png_stream::validate(bytes, max_pixels)?,
    };
    Ok(PhotoFacts {
        format,
        width,
        height,
        orientation: read_exif(bytes).orientation,
    })
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
    let text = |tag| {
        field(tag).map(|f| match &f.value {
            exif::Value::Ascii(parts) => parts.iter().flatten().copied().collect::<Vec<u8>>(),
            _ => Vec::new(),
        })
    };
    let (make, model) = (text(exif::Tag::Make), text(exif::Tag::Model));
    if make.is_some() || model.is_some() {
        let bytes = make
            .unwrap_or_default()
            .into_iter()
            .chain([0])
            .chain(model.unwrap_or_default());
        facts.camera_hash = Some(fnv1a(bytes, FNV_OFFSET));
    }
    facts
}

/// Decode `bytes` (JPEG or PNG), apply EXIF orientation and downscale to `max_side`.
///
/// Refuses what [`validate_photo`] refuses. A PNG is reduced row by row (area average) and
/// never held at full size; a JPEG is proved whole first, then decoded at full size and
/// resized.
pub fn decode_photo(
    bytes: &[u8],
    max_side: u32,
    max_pixels: u64,
) -> Result<DecodedPhoto, ReconError> {
    match sniff_format(bytes)? {
        PhotoFormat::Png => png_stream::decode(bytes, max_side, max_pixels, read_exif(bytes)),
        PhotoFormat::Jpeg => {
            let summary = walk_jpeg(bytes, max_pixels)?;
            decode_jpeg(bytes, summary.width, summary.height, max_side)
        }
    }
}

fn decode_jpeg(
    bytes: &[u8],
    width: u32,
    height: u32,
    max_side: u32,
) -> Result<DecodedPhoto, ReconError> {
    let pixels = u64::from(width) * u64::from(height);
    let mut limits = Limits::default();
    // Room for the widest pixel type plus decoder scratch.
    limits.max_alloc = Some(pixels.saturating_mul(8).saturating_add(64 << 20));
    let mut reader = ImageReader::with_format(Cursor::new(bytes), ImageFormat::Jpeg);
    reader.limits(limits);
    let image = reader
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
    let mut rgb = image.into_rgb8();
    let (w, h, scale) = target_size(original_width, original_height, max_side);
    if (w, h) != (original_width, original_height) {
        rgb = image::imageops::resize(&rgb, w, h, FilterType::Triangle);
    }
    Ok(DecodedPhoto {
        rgb,
        original_width,
        original_height,
        scale,
        exif,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_size_keeps_small_photos_and_rounds_the_factor() {
        assert_eq!(target_size(100, 50, 200), (100, 50, 1.0));
        assert_eq!(target_size(200, 200, 200), (200, 200, 1.0));
        let (w, h, scale) = target_size(3072, 2048, 1600);
        assert_eq!((w, h), (1600, 1067));
        assert_eq!(scale, 1600.0 / 3072.0);
        // A sliver keeps at least one pixel.
        assert_eq!(target_size(60_000, 32, 256).1, 1);
    }

    #[test]
    fn size_rules_refuse_too_large_before_too_small() {
        assert!(check_size(32, 32, 1024).is_ok());
        assert!(matches!(
            check_size(100_000, 1, 1000),
            Err(ReconError::ImageTooLarge { .. })
        ));
        assert!(matches!(
            check_size(31, 100, 1_000_000),
            Err(ReconError::ImageTooSmall { .. })
        ));
    }
}
