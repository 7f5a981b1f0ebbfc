//! PNG through the `png` crate one row at a time: validation (every row inflated and
//! unfiltered, every chunk CRC and the zlib checksum verified, up to IEND) and decoding straight
//! into an area-average downscale.
//!
//! Nothing here holds the image at full size: the `png` reader keeps a few rows, this module one
//! converted row, and the downscale its output plus two accumulator rows (a whole output-sized
//! accumulator for Adam7-interlaced files, whose rows arrive pass by pass). It is not a PNG
//! parser of its own, and reads only the default image of an animated PNG.

use std::io::Cursor;

use image::RgbImage;
use png::{BitDepth, ColorType, DecodeOptions, Decoder, DecodingError, Reader, Transformations};

use super::box_scale::BoxScaler;
use super::{DecodedPhoto, ExifFacts, MAX_SIDE, check_size, target_size};
use crate::error::ReconError;

/// What the `png` reader may allocate for itself: rows of the widest accepted image (65535
/// pixels of 16-bit RGBA are 512 KiB) several times over, and the metadata chunks it keeps.
const DECODER_BYTES: usize = 16 << 20;

/// Adam7 passes: column step, first column, row step, first row.
const ADAM7: [(u32, u32, u32, u32); 7] = [
    (8, 0, 8, 0),
    (8, 4, 8, 0),
    (4, 0, 8, 4),
    (4, 2, 4, 0),
    (2, 0, 4, 2),
    (2, 1, 2, 0),
    (1, 0, 2, 1),
];

fn png_error(e: DecodingError) -> ReconError {
    match &e {
        DecodingError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            ReconError::Decode("truncated PNG: the file ends before its last chunk".into())
        }
        _ => ReconError::Decode(format!("truncated or corrupt PNG: {e}")),
    }
}

/// Read the header, refuse bad sizes before anything else is read, then read up to the image
/// data. Rows come as stored, except that with `expand` palettes and bit depths under 8 are
/// expanded to 8-bit samples.
fn open(bytes: &[u8], max_pixels: u64, expand: bool) -> Result<Reader<Cursor<&[u8]>>, ReconError> {
    let mut options = DecodeOptions::default();
    // Whole-file integrity: the default skips the zlib checksum and bad ancillary CRCs.
    options.set_ignore_adler32(false);
    options.set_ignore_crc(false);
    options.set_skip_ancillary_crc_failures(false);
    // Text and ICC chunks can be compressed; nothing here needs them inflated.
    options.set_ignore_text_chunk(true);
    options.set_ignore_iccp_chunk(true);
    let mut decoder = Decoder::new_with_options(Cursor::new(bytes), options);
    decoder.set_limits(png::Limits {
        bytes: DECODER_BYTES,
    });
    let info = decoder.read_header_info().map_err(png_error)?;
    let (width, height) = (info.width, info.height);
    check_size(width, height, max_pixels)?;
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(ReconError::Decode(format!(
            "PNG of {width}x{height} pixels has a side over {MAX_SIDE} pixels"
        )));
    }
    if expand && (info.color_type == ColorType::Indexed || (info.bit_depth as u8) < 8) {
        decoder.set_transformations(Transformations::EXPAND);
    }
    decoder.read_info().map_err(png_error)
}

/// The rest of the file after the last row: the end of the zlib stream, then every chunk up to
/// IEND.
fn finish(reader: &mut Reader<Cursor<&[u8]>>) -> Result<(), ReconError> {
    if reader.next_row().map_err(png_error)?.is_some() {
        return Err(ReconError::Decode(
            "corrupt PNG: more rows than its height".into(),
        ));
    }
    reader.finish().map_err(png_error)
}

/// Prove the PNG whole and return its size. Rows are decoded as stored, the cheapest way to
/// run the inflater and unfiltering over all of them.
pub(super) fn validate(bytes: &[u8], max_pixels: u64) -> Result<(u32, u32), ReconError> {
    let mut reader = open(bytes, max_pixels, false)?;
    let (width, height) = (reader.info().width, reader.info().height);
    let rows = row_layout(width, height, reader.info().interlaced).count();
    for _ in 0..rows {
        if reader.next_row().map_err(png_error)?.is_none() {
            return Err(ReconError::Decode("truncated PNG: rows missing".into()));
        }
    }
    finish(&mut reader)?;
    Ok((width, height))
}

/// Each row the reader will return, in order: (image row, first column, column step, pixels).
fn row_layout(
    width: u32,
    height: u32,
    interlaced: bool,
) -> impl Iterator<Item = (u32, u32, u32, u32)> {
    let passes: &[(u32, u32, u32, u32)] = if interlaced { &ADAM7 } else { &[(1, 0, 1, 0)] };
    passes.iter().flat_map(move |&(dx, x0, dy, y0)| {
        let samples = width.saturating_sub(x0).div_ceil(dx);
        let lines = if samples == 0 {
            0
        } else {
            height.saturating_sub(y0).div_ceil(dy)
        };
        (0..lines).map(move |line| (y0 + line * dy, x0, dx, samples))
    })
}

/// Decode a PNG to an upright RGB image whose longer side is at most `max_side`, reducing rows
/// as they are decoded.
pub(super) fn decode(
    bytes: &[u8],
    max_side: u32,
    max_pixels: u64,
    exif: ExifFacts,
) -> Result<DecodedPhoto, ReconError> {
    // 8- and 16-bit rows are converted here, taking 16-bit samples by their high byte: one pass
    // over each row instead of the reader's STRIP_16 and then ours.
    let mut reader = open(bytes, max_pixels, true)?;
    let (width, height, interlaced) = {
        let info = reader.info();
        (info.width, info.height, info.interlaced)
    };
    let (color, depth) = reader.output_color_type();
    let channels = match color {
        ColorType::Grayscale => 1,
        ColorType::GrayscaleAlpha => 2,
        ColorType::Rgb => 3,
        ColorType::Rgba => 4,
        ColorType::Indexed => {
            return Err(ReconError::Decode(
                "PNG palette rows were not expanded".into(),
            ));
        }
    };
    let sample_bytes = match depth {
        BitDepth::Eight => 1,
        BitDepth::Sixteen => 2,
        other => {
            return Err(ReconError::Decode(format!(
                "PNG rows of {other:?} bits were not expanded"
            )));
        }
    };
    let stride = channels * sample_bytes;
    debug_assert!((1..=4).contains(&channels) && (1..=2).contains(&sample_bytes));
    // Orientations 5..=8 swap the axes: size the output upright, then store it transposed.
    let transposed = exif.orientation >= 5;
    let (upright_w, upright_h) = if transposed {
        (height, width)
    } else {
        (width, height)
    };
    let (out_w, out_h, scale) = target_size(upright_w, upright_h, max_side);
    let (stored_w, stored_h) = if transposed {
        (out_h, out_w)
    } else {
        (out_w, out_h)
    };
    let mut scaler = BoxScaler::new(width, height, stored_w, stored_h, !interlaced);
    let mut rgb = Vec::with_capacity(3 * width as usize);
    for (y, x0, dx, samples) in row_layout(width, height, interlaced) {
        let row = reader
            .next_row()
            .map_err(png_error)?
            .ok_or_else(|| ReconError::Decode("truncated PNG: rows missing".into()))?;
        let data = row.data();
        if data.len() != samples as usize * stride {
            return Err(ReconError::Decode(
                "corrupt PNG: a row of the wrong length".into(),
            ));
        }
        rgb.resize(3 * samples as usize, 0);
        match (channels, sample_bytes) {
            (1, 1) => to_rgb::<1, 1>(data, &mut rgb),
            (2, 1) => to_rgb::<2, 1>(data, &mut rgb),
            (3, 1) => to_rgb::<3, 1>(data, &mut rgb),
            (4, 1) => to_rgb::<4, 1>(data, &mut rgb),
            (1, _) => to_rgb::<1, 2>(data, &mut rgb),
            (2, _) => to_rgb::<2, 2>(data, &mut rgb),
            (3, _) => to_rgb::<3, 2>(data, &mut rgb),
            _ => to_rgb::<4, 2>(data, &mut rgb),
        }
        scaler.add_row(y, x0, dx, &rgb);
    }
    finish(&mut reader)?;
    let stored = scaler.finish();
    let rgb = upright(stored, exif.orientation);
    Ok(DecodedPhoto {
        rgb,
        original_width: upright_w,
        original_height: upright_h,
        scale,
        exif,
    })
}

/// One row of `C` channels of `B`-byte (big-endian) samples to RGB8: grey is repeated, alpha
/// dropped (as `image`'s conversion does), 16-bit samples keep their high byte.
fn to_rgb<const C: usize, const B: usize>(row: &[u8], rgb: &mut [u8]) {
    for (dst, px) in rgb
        .as_chunks_mut::<3>()
        .0
        .iter_mut()
        .zip(row.chunks_exact(C * B))
    {
        if C >= 3 {
            dst[0] = px[0];
            dst[1] = px[B];
            dst[2] = px[2 * B];
        } else {
            dst.fill(px[0]);
        }
    }
}

fn upright(stored: RgbImage, orientation: u8) -> RgbImage {
    match image::metadata::Orientation::from_exif(orientation) {
        Some(o) => {
            let mut image = image::DynamicImage::ImageRgb8(stored);
            image.apply_orientation(o);
            image.into_rgb8()
        }
        None => stored,
    }
}
