//! Bad input gives a typed error (never a panic, never a huge allocation), odd but valid photos
//! are accepted, and the online behaviour holds on real photos: pending retry, unrelated photos,
//! cancellation.

use std::io::Cursor;
use std::path::PathBuf;

use image::{DynamicImage, ImageFormat, RgbImage};
use recon::decode::decode_photo;
use recon::evaluation::datasets_dir;
use recon::{CancelToken, PhotoStatus, ReconError, Reconstruction, Settings, Stage};

fn dataset_image(set: &str, name: &str) -> Option<Vec<u8>> {
    let path: PathBuf = datasets_dir()?.join(set).join("images").join(name);
    std::fs::read(path).ok()
}

/// A real photo when the shared datasets are present; otherwise a textured stand-in, so the
/// input-handling checks still run.
fn sample_jpeg() -> Vec<u8> {
    if let Some(bytes) = dataset_image("fountain-P11-half", "0000.jpg") {
        return bytes;
    }
    eprintln!("shared datasets not found: bad-input checks use a synthetic photo");
    let img = RgbImage::from_fn(640, 480, |x, y| {
        let v = ((x * 7919 + y * 104729) ^ (x * y)) % 251;
        image::Rgb([v as u8, (v * 3 % 256) as u8, (255 - v) as u8])
    });
    encode(&DynamicImage::ImageRgb8(img), ImageFormat::Jpeg)
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format)
        .expect("encoding an in-memory image");
    out.into_inner()
}

fn add(
    recon: &mut Reconstruction,
    id: &str,
    bytes: &[u8],
) -> Result<recon::AddOutcome, ReconError> {
    recon.add_photo(id, bytes, &mut |_, _| {}, &CancelToken::new())
}

fn fresh() -> Reconstruction {
    Reconstruction::new(Settings::default()).expect("default settings are valid")
}

#[test]
fn zero_bytes_is_empty_input() {
    assert!(matches!(
        add(&mut fresh(), "a", &[]),
        Err(ReconError::EmptyInput)
    ));
}

#[test]
fn text_named_jpg_is_unsupported() {
    let text = b"this is not a photo, just text saved as photo.jpg\n".repeat(20);
    assert!(matches!(
        add(&mut fresh(), "photo.jpg", &text),
        Err(ReconError::UnsupportedFormat)
    ));
}

#[test]
fn truncated_jpeg_is_a_decode_error() {
    let bytes = sample_jpeg();
    for keep in [3, 200, bytes.len() / 2] {
        let cut = bytes.get(..keep).expect("shorter than the photo");
        let result = add(&mut fresh(), "cut", cut);
        assert!(
            matches!(result, Err(ReconError::Decode(_))),
            "kept {keep} bytes: {result:?}"
        );
    }
}

#[test]
fn one_pixel_image_is_too_small() {
    let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(1, 1, image::Rgb([9, 9, 9])));
    for format in [ImageFormat::Png, ImageFormat::Jpeg] {
        let result = add(&mut fresh(), "dot", &encode(&img, format));
        assert!(
            matches!(
                result,
                Err(ReconError::ImageTooSmall {
                    width: 1,
                    height: 1,
                    ..
                })
            ),
            "{result:?}"
        );
    }
}

/// Rewrite the frame header's height and width in place.
fn patch_jpeg_size(bytes: &mut [u8], width: u16, height: u16) {
    let at = bytes
        .windows(2)
        .position(|w| w[0] == 0xFF && matches!(w[1], 0xC0..=0xC2))
        .expect("a JPEG has a frame header");
    bytes[at + 5..at + 7].copy_from_slice(&height.to_be_bytes());
    bytes[at + 7..at + 9].copy_from_slice(&width.to_be_bytes());
}

#[test]
fn header_claiming_40000_squared_pixels_is_refused_before_decoding() {
    let mut bytes = sample_jpeg();
    patch_jpeg_size(&mut bytes, 40000, 40000);
    let result = add(&mut fresh(), "huge", &bytes);
    match result {
        Err(ReconError::ImageTooLarge {
            width: 40000,
            height: 40000,
            ..
        }) => {}
        other => panic!("expected ImageTooLarge, got {other:?}"),
    }
}

#[test]
fn grayscale_and_rgba_png_photos_are_accepted() {
    let original = image::load_from_memory(&sample_jpeg()).expect("sample decodes");
    let gray = encode(
        &DynamicImage::ImageLuma8(original.to_luma8()),
        ImageFormat::Jpeg,
    );
    let rgba = encode(
        &DynamicImage::ImageRgba8(original.to_rgba8()),
        ImageFormat::Png,
    );
    let mut recon = fresh();
    for (id, bytes) in [("gray", gray), ("rgba", rgba)] {
        let decoded = decode_photo(&bytes, 1600, 50_000_000).expect("decodes");
        assert_eq!(
            (decoded.rgb.width(), decoded.rgb.height()),
            (original.width(), original.height())
        );
        let outcome = add(&mut recon, id, &bytes).expect("accepted");
        assert_eq!(outcome.id, id);
        assert!(outcome.timings.get(Stage::Features) > 0.0);
    }
}

/// Insert an EXIF block (APP1) holding only an orientation tag, right after the JPEG SOI marker.
fn with_exif_orientation(jpeg: &[u8], orientation: u8) -> Vec<u8> {
    let mut app1 = vec![0xFF, 0xE1, 0x00, 0x22];
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&[b'I', b'I', 0x2A, 0x00, 0x08, 0x00, 0x00, 0x00]);
    app1.extend_from_slice(&[0x01, 0x00, 0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00]);
    app1.extend_from_slice(&[orientation, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);
    let mut out = jpeg.get(..2).expect("SOI").to_vec();
    out.extend_from_slice(&app1);
    out.extend_from_slice(jpeg.get(2..).expect("body"));
    out
}

#[test]
fn exif_rotated_photo_is_turned_upright() {
    let bytes = sample_jpeg();
    let plain = decode_photo(&bytes, 4000, 50_000_000).expect("decodes");
    let rotated_bytes = with_exif_orientation(&bytes, 6);
    let rotated = decode_photo(&rotated_bytes, 4000, 50_000_000).expect("decodes");
    assert_eq!(rotated.exif.orientation, 6);
    assert_eq!(
        (rotated.original_width, rotated.original_height),
        (plain.original_height, plain.original_width)
    );
    // Orientation 6 turns the photo 90 degrees clockwise: its top-left pixel was bottom-left.
    let h = plain.rgb.height();
    assert_eq!(rotated.rgb.get_pixel(0, 0), plain.rgb.get_pixel(0, h - 1));
    add(&mut fresh(), "turned", &rotated_bytes).expect("accepted");
}

#[test]
fn downscaling_a_full_resolution_photo_scales_known_intrinsics() {
    let Some(bytes) = dataset_image("fountain-P11-full", "0000.jpg") else {
        eprintln!("SKIPPED: shared datasets (fountain-P11-full) not found");
        return;
    };
    let decoded = decode_photo(&bytes, 1600, 50_000_000).expect("decodes");
    assert_eq!(
        (decoded.original_width, decoded.original_height),
        (3072, 2048)
    );
    assert_eq!(decoded.rgb.width(), 1600);
    let k = recon::Intrinsics {
        fx: 2759.48,
        fy: 2764.16,
        cx: 1520.69,
        cy: 1006.81,
    };
    let (scaled, _) = recon::intrinsics::resolve(Some(&k), &decoded);
    assert!((scaled.fx - 2759.48 * 1600.0 / 3072.0).abs() < 1e-6);
}

#[test]
fn pending_retry_unrelated_photo_and_cancellation_on_real_photos() {
    let set = "fountain-P11-half";
    let (Some(a), Some(b), Some(c), Some(other)) = (
        dataset_image(set, "0000.jpg"),
        dataset_image(set, "0001.jpg"),
        dataset_image(set, "0002.jpg"),
        dataset_image("sceaux-castle-half", "100_7100.JPG").or_else(|| {
            let dir = datasets_dir()?.join("sceaux-castle-half/images");
            let first = recon::evaluation::image_files(&dir)
                .ok()?
                .into_iter()
                .next()?;
            std::fs::read(first).ok()
        }),
    ) else {
        eprintln!("SKIPPED: shared datasets (fountain-P11-half, sceaux-castle-half) not found");
        return;
    };
    let mut recon = fresh();
    let first = add(&mut recon, "a", &a).expect("accepted");
    assert!(
        matches!(first.status, PhotoStatus::NotRegistered { .. }),
        "a lone photo waits"
    );
    let second = add(&mut recon, "b", &b).expect("accepted");
    assert!(
        matches!(second.status, PhotoStatus::Registered(_)),
        "{:?}",
        second.status
    );
    assert_eq!(
        second.also_registered.len(),
        1,
        "the pending photo registers with the second"
    );
    assert_eq!(second.also_registered[0].camera.image, "a");

    // Cancelling during matching fails the call and leaves the model as it was.
    let before = recon.model();
    let cancel = CancelToken::new();
    let trigger = cancel.clone();
    let result = recon.add_photo(
        "c",
        &c,
        &mut |stage, _| {
            if stage == Stage::Matching {
                trigger.cancel()
            }
        },
        &cancel,
    );
    assert!(matches!(result, Err(ReconError::Cancelled)), "{result:?}");
    assert_eq!(recon.model(), before);
    assert_eq!(recon.is_registered("c"), None);
    let third = add(&mut recon, "c", &c).expect("the id is free again");
    assert!(matches!(third.status, PhotoStatus::Registered(_)));

    // A photo of another building stays pending and changes nothing.
    let before = recon.model();
    let unrelated = add(&mut recon, "castle", &other).expect("accepted");
    assert!(
        matches!(unrelated.status, PhotoStatus::NotRegistered { .. }),
        "{:?}",
        unrelated.status
    );
    let after = recon.model();
    assert_eq!(after.cameras, before.cameras);
    assert_eq!(after.points, before.points);
    assert_eq!(after.pending, vec!["castle".to_string()]);
    recon
        .remove_photo("castle")
        .expect("pending photos can be removed");
    assert!(matches!(
        recon.remove_photo("a"),
        Err(ReconError::AlreadyRegistered(_))
    ));
    assert!(matches!(
        add(&mut recon, "a", &a),
        Err(ReconError::DuplicateId(_))
    ));
}
