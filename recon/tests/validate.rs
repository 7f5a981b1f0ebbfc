//! `validate_photo` and the bounded-memory `decode_photo` on real and hand-built inputs: whole
//! photos pass, cut, patched and corrupted ones are refused with a typed error and never a panic,
//! and a huge, highly compressible PNG is handled row by row.
//!
//! The shared datasets (`VESTIGE_DATASETS`, else `../shared/datasets`) supply real photos; the
//! tests that need them say SKIPPED when they are absent. Progressive JPEGs and interlaced PNGs
//! are also written here by hand, since the `image` crate encodes neither.

use std::io::Cursor;
use std::path::PathBuf;
use std::time::Instant;

use image::{DynamicImage, ImageFormat, RgbImage};
use recon::ReconError;
use recon::decode::{PhotoFormat, decode_photo, validate_photo};
use recon::evaluation::{datasets_dir, image_files};

const MAX_PIXELS: u64 = 50_000_000;

fn dataset_image(set: &str, name: &str) -> Option<Vec<u8>> {
    let path: PathBuf = datasets_dir()?.join(set).join("images").join(name);
    std::fs::read(path).ok()
}

fn all_dataset_jpegs() -> Option<Vec<(String, Vec<u8>)>> {
    let root = datasets_dir()?;
    let mut sets: Vec<PathBuf> = std::fs::read_dir(&root)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("images")))
        .filter(|p| p.is_dir())
        .collect();
    sets.sort();
    let mut out = Vec::new();
    for dir in sets {
        for file in image_files(&dir).ok()? {
            let is_jpeg = file
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x.to_ascii_lowercase().as_str(), "jpg" | "jpeg"));
            if is_jpeg {
                let name = file
                    .strip_prefix(&root)
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                out.push((name, std::fs::read(&file).ok()?));
            }
        }
    }
    Some(out)
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format)
        .expect("encoding an in-memory image");
    out.into_inner()
}

/// Whether the frame header is SOF2 (progressive).
fn is_progressive(jpeg: &[u8]) -> bool {
    let mut at = 2;
    while let (Some(&0xFF), Some(&code)) = (jpeg.get(at), jpeg.get(at + 1)) {
        if matches!(code, 0xC0..=0xC3) {
            return code == 0xC2;
        }
        let len = jpeg
            .get(at + 2..at + 4)
            .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
        at += 2 + len;
    }
    false
}

/// Offset of the frame header's marker.
fn sof_offset(jpeg: &[u8]) -> usize {
    let mut at = 2;
    while let (Some(&0xFF), Some(&code)) = (jpeg.get(at), jpeg.get(at + 1)) {
        if matches!(code, 0xC0..=0xC2) {
            return at;
        }
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        at += 2 + len;
    }
    panic!("no frame header");
}

fn patch_size(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let at = sof_offset(&out);
    out[at + 5..at + 7].copy_from_slice(&height.to_be_bytes());
    out[at + 7..at + 9].copy_from_slice(&width.to_be_bytes());
    out
}

/// Offset just past the first scan header: where entropy-coded data starts.
fn first_scan_data(jpeg: &[u8]) -> usize {
    let mut at = 2;
    loop {
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        if jpeg[at + 1] == 0xDA {
            return at + 2 + len;
        }
        at += 2 + len;
    }
}

fn cut(bytes: &[u8], keep: usize, end_marker: bool) -> Vec<u8> {
    let mut out = bytes[..keep].to_vec();
    if end_marker {
        out.extend_from_slice(&[0xFF, 0xD9]);
    }
    out
}

fn assert_decode_error(result: Result<impl std::fmt::Debug, ReconError>, what: &str) {
    match result {
        Err(ReconError::Decode(_)) => {}
        other => panic!("{what}: expected a decode error, got {other:?}"),
    }
}

#[test]
fn every_dataset_jpeg_validates() {
    let Some(photos) = all_dataset_jpegs() else {
        eprintln!("SKIPPED: shared datasets not found; set VESTIGE_DATASETS");
        return;
    };
    assert!(!photos.is_empty());
    let mut progressive = Vec::new();
    let (mut bytes, mut seconds) = (0usize, 0f64);
    let mut slowest = (0f64, String::new(), 0usize);
    for (name, data) in &photos {
        let start = Instant::now();
        let facts = validate_photo(data, MAX_PIXELS).unwrap_or_else(|e| panic!("{name}: {e}"));
        let took = start.elapsed().as_secs_f64();
        if took > slowest.0 {
            slowest = (took, name.clone(), data.len());
        }
        seconds += took;
        bytes += data.len();
        assert_eq!(facts.format, PhotoFormat::Jpeg);
        let dims = image::ImageReader::with_format(Cursor::new(data), ImageFormat::Jpeg)
            .into_dimensions()
            .expect("header readable");
        assert_eq!((facts.width, facts.height), dims, "{name}");
        if is_progressive(data) {
            progressive.push(name.clone());
        }
    }
    eprintln!(
        "{} dataset JPEGs valid, {:.1} MB in {:.3} s ({:.0} MB/s); progressive: {}",
        photos.len(),
        bytes as f64 / 1e6,
        seconds,
        bytes as f64 / 1e6 / seconds,
        if progressive.is_empty() {
            "none".to_string()
        } else {
            progressive.join(", ")
        }
    );
    eprintln!(
        "slowest: {} ({:.1} MB) in {:.3} s",
        slowest.1,
        slowest.2 as f64 / 1e6,
        slowest.0
    );
}

/// A baseline photo, one with 1x2 chroma sampling, one with restart intervals and a progressive
/// one, each when present.
fn varied_dataset_jpegs() -> Vec<(&'static str, Vec<u8>)> {
    [
        ("fountain-P11-half", "0000.jpg"),
        ("lund-door-nikon", "DSC_0001.JPG"),
        ("monstree-iphone7", "IMG_1025.JPG"),
        ("cyprus-ruins-nikon", "DSC_6466.JPG"),
    ]
    .into_iter()
    .filter_map(|(set, name)| Some((name, dataset_image(set, name)?)))
    .collect()
}

#[test]
fn cut_dataset_jpegs_are_refused_with_or_without_an_end_marker() {
    let photos = varied_dataset_jpegs();
    if photos.is_empty() {
        eprintln!("SKIPPED: shared datasets not found; set VESTIGE_DATASETS");
        return;
    }
    for (name, data) in &photos {
        for percent in [10, 50, 90, 99] {
            let keep = data.len() * percent / 100;
            for end_marker in [true, false] {
                let bytes = cut(data, keep, end_marker);
                let what = format!("{name} cut at {percent}% (end marker: {end_marker})");
                assert_decode_error(validate_photo(&bytes, MAX_PIXELS), &what);
                assert_decode_error(decode_photo(&bytes, 256, MAX_PIXELS), &what);
            }
        }
        // Missing only the end-of-image marker.
        let whole = data.len() - 2;
        assert_eq!(&data[whole..], &[0xFF, 0xD9], "{name} ends with EOI");
        assert_decode_error(validate_photo(&data[..whole], MAX_PIXELS), name);
    }
}

#[test]
fn headers_claiming_more_blocks_than_the_data_holds_are_refused() {
    let photos = varied_dataset_jpegs();
    if photos.is_empty() {
        eprintln!("SKIPPED: shared datasets not found; set VESTIGE_DATASETS");
        return;
    }
    for (name, data) in &photos {
        for (w, h) in [(7000, 7000), (65535, 700)] {
            let bytes = patch_size(data, w, h);
            let what = format!("{name} patched to {w}x{h}");
            assert_decode_error(validate_photo(&bytes, MAX_PIXELS), &what);
            assert_decode_error(decode_photo(&bytes, 256, MAX_PIXELS), &what);
        }
    }
}

#[test]
fn a_flipped_entropy_byte_is_refused_or_still_decodes() {
    let photos = varied_dataset_jpegs();
    if photos.is_empty() {
        eprintln!("SKIPPED: shared datasets not found; set VESTIGE_DATASETS");
        return;
    }
    for (name, data) in &photos {
        let start = first_scan_data(data);
        let (mut refused, mut accepted) = (0, 0);
        for i in 0..8 {
            let at = start + (data.len() - start) * (2 * i + 1) / 17;
            let mut bytes = data.clone();
            bytes[at] ^= 0x5A;
            match validate_photo(&bytes, MAX_PIXELS) {
                Ok(_) => accepted += 1,
                Err(ReconError::Decode(_)) => refused += 1,
                Err(e) => panic!("{name} flipped at {at}: {e:?}"),
            }
        }
        eprintln!("{name}: {refused} flips refused, {accepted} still valid");
    }
}

#[test]
fn size_and_format_errors_come_from_the_header() {
    assert!(matches!(
        validate_photo(&[], MAX_PIXELS),
        Err(ReconError::EmptyInput)
    ));
    assert!(matches!(
        validate_photo(b"GIF89a not a photo", MAX_PIXELS),
        Err(ReconError::UnsupportedFormat)
    ));
    let tiny = DynamicImage::ImageRgb8(RgbImage::from_pixel(8, 40, image::Rgb([1, 2, 3])));
    for format in [ImageFormat::Jpeg, ImageFormat::Png] {
        assert!(matches!(
            validate_photo(&encode(&tiny, format), MAX_PIXELS),
            Err(ReconError::ImageTooSmall {
                width: 8,
                height: 40,
                ..
            })
        ));
    }
    let jpeg = encode(
        &DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 48, image::Rgb([9, 9, 9]))),
        ImageFormat::Jpeg,
    );
    assert!(matches!(
        validate_photo(&patch_size(&jpeg, 40000, 40000), MAX_PIXELS),
        Err(ReconError::ImageTooLarge {
            width: 40000,
            height: 40000,
            ..
        })
    ));
    // Lossless and arithmetic-coded frames, and 12-bit samples.
    for (code, precision) in [(0xC3, 8), (0xC9, 8), (0xC1, 12)] {
        let mut bytes = jpeg.clone();
        let at = sof_offset(&bytes);
        bytes[at + 1] = code;
        bytes[at + 4] = precision;
        let result = validate_photo(&bytes, MAX_PIXELS);
        assert!(
            matches!(result, Err(ReconError::UnsupportedFormat)),
            "SOF {code:02X}/{precision}: {result:?}"
        );
    }
    // A PNG header claiming 40000 squared pixels, and one too wide for streamed decoding.
    for (w, h, too_large) in [(40000u32, 40000u32, true), (100_000, 40, false)] {
        let mut png = png_header(w, h);
        png.extend_from_slice(&[0; 64]);
        let result = validate_photo(&png, MAX_PIXELS);
        if too_large {
            assert!(
                matches!(result, Err(ReconError::ImageTooLarge { .. })),
                "{result:?}"
            );
        } else {
            assert!(matches!(result, Err(ReconError::Decode(_))), "{result:?}");
        }
        assert!(decode_photo(&png, 256, MAX_PIXELS).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-built JPEGs: the same quantised coefficients written baseline and progressive.

mod mini_jpeg {
    //! A small JPEG writer for tests, from quantised coefficients (zigzag order) straight to
    //! markers and Huffman-coded scans, baseline or progressive with successive approximation
    //! (following libjpeg's jcphuff.c). One Huffman table holds all 256 symbols, so any
    //! coefficient set and any end-of-band run can be written. It is not an encoder of pixels:
    //! no DCT, no table optimisation.

    pub struct Component {
        pub id: u8,
        pub h: usize,
        pub v: usize,
        /// Blocks across, padded to whole MCUs.
        pub padded_w: usize,
        pub coef: Vec<[i32; 64]>,
    }

    pub struct Image {
        pub width: usize,
        pub height: usize,
        pub comps: Vec<Component>,
        h_max: usize,
        v_max: usize,
    }

    pub struct Scan {
        pub comps: Vec<usize>,
        pub ss: usize,
        pub se: usize,
        pub ah: u32,
        pub al: u32,
    }

    fn scan(comps: &[usize], ss: usize, se: usize, ah: u32, al: u32) -> Scan {
        Scan {
            comps: comps.to_vec(),
            ss,
            se,
            ah,
            al,
        }
    }

    /// libjpeg's `jpeg_simple_progression`.
    pub fn simple_progression(components: usize) -> Vec<Scan> {
        if components == 1 {
            vec![
                scan(&[0], 0, 0, 0, 1),
                scan(&[0], 1, 5, 0, 2),
                scan(&[0], 6, 63, 0, 2),
                scan(&[0], 1, 63, 2, 1),
                scan(&[0], 0, 0, 1, 0),
                scan(&[0], 1, 63, 1, 0),
            ]
        } else {
            vec![
                scan(&[0, 1, 2], 0, 0, 0, 1),
                scan(&[0], 1, 5, 0, 2),
                scan(&[2], 1, 63, 0, 1),
                scan(&[1], 1, 63, 0, 1),
                scan(&[0], 6, 63, 0, 2),
                scan(&[0], 1, 63, 2, 1),
                scan(&[0, 1, 2], 0, 0, 1, 0),
                scan(&[2], 1, 63, 1, 0),
                scan(&[1], 1, 63, 1, 0),
                scan(&[0], 1, 63, 1, 0),
            ]
        }
    }

    impl Image {
        /// Pseudo-random coefficients: busy low frequencies, sparse high ones, some empty
        /// blocks; or, when `sparse`, little but DC (a small file for a large image).
        pub fn random(
            width: usize,
            height: usize,
            sampling: &[(usize, usize)],
            seed: u64,
            sparse: bool,
        ) -> Image {
            let mut state = seed;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let h_max = sampling.iter().map(|s| s.0).max().unwrap_or(1);
            let v_max = sampling.iter().map(|s| s.1).max().unwrap_or(1);
            let (mcus_w, mcus_h) = (width.div_ceil(8 * h_max), height.div_ceil(8 * v_max));
            let comps = sampling
                .iter()
                .enumerate()
                .map(|(i, &(h, v))| {
                    let (padded_w, padded_h) = (mcus_w * h, mcus_h * v);
                    let coef = (0..padded_w * padded_h)
                        .map(|_| {
                            let mut block = [0i32; 64];
                            block[0] = (next() % 121) as i32 - 60;
                            if next() % 5 == 0 {
                                return block;
                            }
                            if sparse {
                                block[1] = (next() % 7) as i32 - 3;
                                return block;
                            }
                            for (k, c) in block.iter_mut().enumerate().skip(1) {
                                let (chance, size) = match k {
                                    1..=5 => (2, 40),
                                    6..=20 => (6, 9),
                                    _ => (40, 3),
                                };
                                if next() % chance == 0 {
                                    let m = (next() % size) as i32 + 1;
                                    *c = if next() % 2 == 0 { m } else { -m };
                                }
                            }
                            block
                        })
                        .collect();
                    Component {
                        id: i as u8 + 1,
                        h,
                        v,
                        padded_w,
                        coef,
                    }
                })
                .collect();
            Image {
                width,
                height,
                comps,
                h_max,
                v_max,
            }
        }

        fn mcus(&self) -> (usize, usize) {
            (
                self.width.div_ceil(8 * self.h_max),
                self.height.div_ceil(8 * self.v_max),
            )
        }

        /// Blocks of a component coded alone (not padded to MCUs).
        fn alone(&self, c: usize) -> (usize, usize) {
            let comp = &self.comps[c];
            (
                (self.width * comp.h).div_ceil(self.h_max).div_ceil(8),
                (self.height * comp.v).div_ceil(self.v_max).div_ceil(8),
            )
        }

        /// Each MCU of a scan as a list of (component, block index).
        fn mcu_list(&self, comps: &[usize]) -> Vec<Vec<(usize, usize)>> {
            let mut out = Vec::new();
            if let [c] = comps {
                let (w, h) = self.alone(*c);
                for by in 0..h {
                    for bx in 0..w {
                        out.push(vec![(*c, by * self.comps[*c].padded_w + bx)]);
                    }
                }
            } else {
                let (mw, mh) = self.mcus();
                for my in 0..mh {
                    for mx in 0..mw {
                        let mut mcu = Vec::new();
                        for &c in comps {
                            let comp = &self.comps[c];
                            for by in 0..comp.v {
                                for bx in 0..comp.h {
                                    let row = my * comp.v + by;
                                    mcu.push((c, row * comp.padded_w + mx * comp.h + bx));
                                }
                            }
                        }
                        out.push(mcu);
                    }
                }
            }
            out
        }
    }

    /// The AC table: symbols 0..=253 get 8-bit codes, 254 and 255 a 9- and a 10-bit code
    /// (decoders refuse an all-ones code).
    fn code(symbol: u32) -> (u32, u32) {
        match symbol {
            0..=253 => (symbol, 8),
            254 => (508, 9),
            _ => (1018, 10),
        }
    }

    /// The DC table: sizes 0..=14 in 4 bits, 15 in 5.
    fn dc_code(size: u32) -> (u32, u32) {
        if size < 15 { (size, 4) } else { (30, 5) }
    }

    struct Writer {
        out: Vec<u8>,
        acc: u32,
        n: u32,
        eobrun: u32,
        /// Correction bits waiting for the end-of-band run they belong to.
        be: Vec<u32>,
    }

    impl Writer {
        fn put(&mut self, bits: u32, n: u32) {
            for i in (0..n).rev() {
                self.acc = (self.acc << 1) | ((bits >> i) & 1);
                self.n += 1;
                if self.n == 8 {
                    let byte = self.acc as u8;
                    self.out.push(byte);
                    if byte == 0xFF {
                        self.out.push(0);
                    }
                    self.acc = 0;
                    self.n = 0;
                }
            }
        }

        fn flush(&mut self) {
            while self.n != 0 {
                self.put(1, 1);
            }
        }

        fn symbol(&mut self, symbol: u32) {
            let (c, n) = code(symbol);
            self.put(c, n);
        }

        fn dc_symbol(&mut self, size: u32) {
            let (c, n) = dc_code(size);
            self.put(c, n);
        }

        /// Size category and the value's bits, JPEG style (negative values one's-complemented).
        fn value(v: i32) -> (u32, u32) {
            let n = 32 - v.unsigned_abs().leading_zeros();
            let bits = if v >= 0 {
                v as u32
            } else {
                (v - 1) as u32 & ((1 << n) - 1)
            };
            (n, bits)
        }

        fn emit_eobrun(&mut self) {
            if self.eobrun > 0 {
                let n = 31 - self.eobrun.leading_zeros();
                self.symbol(n << 4);
                self.put(self.eobrun & ((1 << n) - 1), n);
                self.eobrun = 0;
                for b in std::mem::take(&mut self.be) {
                    self.put(b, 1);
                }
            }
        }

        fn sequential(&mut self, block: &[i32; 64], pred: &mut i32) {
            let (n, bits) = Self::value(block[0] - *pred);
            *pred = block[0];
            self.dc_symbol(n);
            self.put(bits, n);
            let mut run = 0;
            for &c in &block[1..] {
                if c == 0 {
                    run += 1;
                    continue;
                }
                while run > 15 {
                    self.symbol(0xF0);
                    run -= 16;
                }
                let (n, bits) = Self::value(c);
                self.symbol((run << 4) | n);
                self.put(bits, n);
                run = 0;
            }
            if run > 0 {
                self.symbol(0);
            }
        }

        fn ac_first(&mut self, block: &[i32; 64], ss: usize, se: usize, al: u32) {
            let mut run = 0;
            for &c in &block[ss..=se] {
                let (t, bits) = if c < 0 {
                    let t = (-c) >> al;
                    (t, !t)
                } else {
                    (c >> al, c >> al)
                };
                if t == 0 {
                    run += 1;
                    continue;
                }
                self.emit_eobrun();
                while run > 15 {
                    self.symbol(0xF0);
                    run -= 16;
                }
                let n = 32 - t.unsigned_abs().leading_zeros();
                self.symbol((run << 4) | n);
                self.put(bits as u32 & ((1 << n) - 1), n);
                run = 0;
            }
            if run > 0 {
                self.eobrun += 1;
                if self.eobrun == 0x7FFF {
                    self.emit_eobrun();
                }
            }
        }

        fn ac_refine(&mut self, block: &[i32; 64], ss: usize, se: usize, al: u32) {
            let abs: Vec<i32> = block[ss..=se].iter().map(|c| c.abs() >> al).collect();
            let eob = abs.iter().rposition(|&t| t == 1);
            let mut run = 0;
            let mut br: Vec<u32> = Vec::new();
            for (i, &t) in abs.iter().enumerate() {
                if t == 0 {
                    run += 1;
                    continue;
                }
                while run > 15 && eob.is_some_and(|e| i <= e) {
                    self.emit_eobrun();
                    self.symbol(0xF0);
                    run -= 16;
                    for b in br.drain(..) {
                        self.put(b, 1);
                    }
                }
                if t > 1 {
                    br.push((t & 1) as u32);
                    continue;
                }
                self.emit_eobrun();
                self.symbol((run << 4) | 1);
                self.put(u32::from(block[ss + i] >= 0), 1);
                for b in br.drain(..) {
                    self.put(b, 1);
                }
                run = 0;
            }
            if run > 0 || !br.is_empty() {
                self.eobrun += 1;
                self.be.extend(br);
                if self.eobrun == 0x7FFF || self.be.len() > 937 {
                    self.emit_eobrun();
                }
            }
        }
    }

    fn segment(out: &mut Vec<u8>, marker: u8, body: &[u8]) {
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(body);
    }

    fn header(img: &Image, sof: u8, restart: u16) -> Vec<u8> {
        let mut out = vec![0xFF, 0xD8];
        segment(&mut out, 0xFE, b"written by recon's validate tests");
        let mut dqt = vec![0u8];
        dqt.extend_from_slice(&[8; 64]);
        segment(&mut out, 0xDB, &dqt);
        let mut frame = vec![8];
        frame.extend_from_slice(&(img.height as u16).to_be_bytes());
        frame.extend_from_slice(&(img.width as u16).to_be_bytes());
        frame.push(img.comps.len() as u8);
        for c in &img.comps {
            frame.extend_from_slice(&[c.id, (c.h << 4 | c.v) as u8, 0]);
        }
        segment(&mut out, sof, &frame);
        let mut dht = vec![0x00];
        let mut counts = [0u8; 16];
        counts[3] = 15;
        counts[4] = 1;
        dht.extend_from_slice(&counts);
        dht.extend(0..=15u8);
        dht.push(0x10);
        let mut counts = [0u8; 16];
        counts[7] = 254;
        counts[8] = 1;
        counts[9] = 1;
        dht.extend_from_slice(&counts);
        dht.extend(0..=255u8);
        segment(&mut out, 0xC4, &dht);
        if restart > 0 {
            segment(&mut out, 0xDD, &restart.to_be_bytes());
        }
        out
    }

    fn write_scan(img: &Image, out: &mut Vec<u8>, scan: &Scan, restart: u16, sequential: bool) {
        let mut sos = vec![scan.comps.len() as u8];
        for &c in &scan.comps {
            sos.extend_from_slice(&[img.comps[c].id, 0x00]);
        }
        sos.extend_from_slice(&[scan.ss as u8, scan.se as u8, (scan.ah << 4 | scan.al) as u8]);
        segment(out, 0xDA, &sos);
        let mut w = Writer {
            out: std::mem::take(out),
            acc: 0,
            n: 0,
            eobrun: 0,
            be: Vec::new(),
        };
        let mcus = img.mcu_list(&scan.comps);
        let mut preds = vec![0i32; img.comps.len()];
        let mut restarts = 0u8;
        for (i, mcu) in mcus.iter().enumerate() {
            for &(c, b) in mcu {
                let block = &img.comps[c].coef[b];
                if sequential {
                    w.sequential(block, &mut preds[c]);
                } else if scan.ss == 0 && scan.ah == 0 {
                    let v = block[0] >> scan.al;
                    let (n, bits) = Writer::value(v - preds[c]);
                    preds[c] = v;
                    w.dc_symbol(n);
                    w.put(bits, n);
                } else if scan.ss == 0 {
                    w.put(((block[0] >> scan.al) & 1) as u32, 1);
                } else if scan.ah == 0 {
                    w.ac_first(block, scan.ss, scan.se, scan.al);
                } else {
                    w.ac_refine(block, scan.ss, scan.se, scan.al);
                }
            }
            let done = i + 1;
            if restart > 0 && done % usize::from(restart) == 0 && done < mcus.len() {
                w.emit_eobrun();
                w.flush();
                w.out.extend_from_slice(&[0xFF, 0xD0 + (restarts & 7)]);
                restarts = restarts.wrapping_add(1);
                preds.iter_mut().for_each(|p| *p = 0);
            }
        }
        w.emit_eobrun();
        w.flush();
        *out = w.out;
    }

    /// Baseline (SOF0): one interleaved scan.
    pub fn baseline(img: &Image, restart: u16) -> Vec<u8> {
        let mut out = header(img, 0xC0, restart);
        let all: Vec<usize> = (0..img.comps.len()).collect();
        let one = Scan {
            comps: all,
            ss: 0,
            se: 63,
            ah: 0,
            al: 0,
        };
        write_scan(img, &mut out, &one, restart, true);
        out.extend_from_slice(&[0xFF, 0xD9]);
        out
    }

    /// Progressive (SOF2) with the given scans.
    pub fn progressive(img: &Image, restart: u16, scans: &[Scan]) -> Vec<u8> {
        let mut out = header(img, 0xC2, restart);
        for s in scans {
            write_scan(img, &mut out, s, restart, false);
        }
        out.extend_from_slice(&[0xFF, 0xD9]);
        out
    }
}

/// Hand-built test images: colour 4:2:0 and grey, sizes that leave partial MCUs.
fn hand_built() -> Vec<(String, mini_jpeg::Image, u16)> {
    let mut out = Vec::new();
    for restart in [0u16, 3] {
        out.push((
            format!("colour 4:2:0 100x75, restart {restart}"),
            mini_jpeg::Image::random(100, 75, &[(2, 2), (1, 1), (1, 1)], 7, false),
            restart,
        ));
        out.push((
            format!("grey 61x45, restart {restart}"),
            mini_jpeg::Image::random(61, 45, &[(1, 1)], 11, false),
            restart,
        ));
    }
    out.push((
        "colour 4:4:4 40x200, restart 1".into(),
        mini_jpeg::Image::random(40, 200, &[(1, 1), (1, 1), (1, 1)], 5, false),
        1,
    ));
    out
}

#[test]
fn hand_built_progressive_jpegs_validate_and_decode_like_their_baseline_twins() {
    for (name, img, restart) in hand_built() {
        let baseline = mini_jpeg::baseline(&img, restart);
        let scans = mini_jpeg::simple_progression(img.comps.len());
        let progressive = mini_jpeg::progressive(&img, restart, &scans);
        assert!(is_progressive(&progressive));
        for bytes in [&baseline, &progressive] {
            let facts = validate_photo(bytes, MAX_PIXELS).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                (facts.width, facts.height),
                (img.width as u32, img.height as u32)
            );
        }
        // The writer is right if zune-jpeg reads the same pixels from both.
        let a = image::load_from_memory(&baseline).expect("baseline decodes");
        let b = image::load_from_memory(&progressive).expect("progressive decodes");
        assert_eq!(a.as_bytes(), b.as_bytes(), "{name}");
    }
}

#[test]
fn hand_built_jpegs_cut_anywhere_are_refused() {
    for (name, img, restart) in hand_built() {
        let scans = mini_jpeg::simple_progression(img.comps.len());
        for bytes in [
            mini_jpeg::baseline(&img, restart),
            mini_jpeg::progressive(&img, restart, &scans),
        ] {
            let data_start = first_scan_data(&bytes);
            for keep in data_start..bytes.len() - 2 {
                for end_marker in [true, false] {
                    let result = validate_photo(&cut(&bytes, keep, end_marker), MAX_PIXELS);
                    assert!(
                        matches!(result, Err(ReconError::Decode(_))),
                        "{name} (progressive: {}) cut at {keep} of {} (end marker: {end_marker}): {result:?}",
                        is_progressive(&bytes),
                        bytes.len()
                    );
                }
            }
        }
    }
}

#[test]
fn progressive_scans_must_complete_every_coefficient() {
    let img = mini_jpeg::Image::random(100, 75, &[(2, 2), (1, 1), (1, 1)], 3, false);
    let scans = mini_jpeg::simple_progression(3);
    // Without the last scan (Y's lowest AC bit) or without the DC refinement.
    for drop in [scans.len() - 1, 6] {
        let kept: Vec<mini_jpeg::Scan> = scans
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != drop)
            .map(|(_, s)| mini_jpeg::Scan {
                comps: s.comps.clone(),
                ss: s.ss,
                se: s.se,
                ah: s.ah,
                al: s.al,
            })
            .collect();
        let bytes = mini_jpeg::progressive(&img, 0, &kept);
        assert_decode_error(
            validate_photo(&bytes, MAX_PIXELS),
            &format!("scan {drop} dropped"),
        );
    }
    // A header claiming more blocks than the scans hold.
    let bytes = mini_jpeg::progressive(&img, 0, &scans);
    for (w, h) in [(7000, 7000), (65535, 700), (100, 90)] {
        assert_decode_error(
            validate_photo(&patch_size(&bytes, w, h), MAX_PIXELS),
            &format!("patched to {w}x{h}"),
        );
    }
}

#[test]
fn large_progressive_jpeg_over_the_refinement_state_cap_validates() {
    // 4:4:4 at 3400x3400: three components of 180625 blocks, 4.3 MiB of masks in all, so the
    // third component's refinement is followed only to its end marker.
    let img = mini_jpeg::Image::random(3400, 3400, &[(1, 1), (1, 1), (1, 1)], 17, true);
    let bytes = mini_jpeg::progressive(&img, 0, &mini_jpeg::simple_progression(3));
    let start = Instant::now();
    let facts = validate_photo(&bytes, MAX_PIXELS).expect("valid");
    eprintln!(
        "3400x3400 progressive, {} bytes, validated in {:.3} s",
        bytes.len(),
        start.elapsed().as_secs_f64()
    );
    assert_eq!((facts.width, facts.height), (3400, 3400));
    for percent in [30, 60, 95] {
        let keep = bytes.len() * percent / 100;
        assert_decode_error(
            validate_photo(&cut(&bytes, keep, true), MAX_PIXELS),
            &format!("cut at {percent}%"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// PNG.

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Signature and IHDR of an 8-bit RGB PNG.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    out
}

/// An Adam7-interlaced RGB PNG of `img`, its zlib stream made of stored blocks.
fn interlaced_png(img: &RgbImage) -> Vec<u8> {
    const ADAM7: [(u32, u32, u32, u32); 7] = [
        (8, 0, 8, 0),
        (8, 4, 8, 0),
        (4, 0, 8, 4),
        (4, 2, 4, 0),
        (2, 0, 4, 2),
        (2, 1, 2, 0),
        (1, 0, 2, 1),
    ];
    let (w, h) = img.dimensions();
    let mut raw = Vec::new();
    for (dx, x0, dy, y0) in ADAM7 {
        let samples = w.saturating_sub(x0).div_ceil(dx);
        let lines = h.saturating_sub(y0).div_ceil(dy);
        if samples == 0 {
            continue;
        }
        for line in 0..lines {
            raw.push(0);
            for i in 0..samples {
                raw.extend_from_slice(&img.get_pixel(x0 + i * dx, y0 + line * dy).0);
            }
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = png_header(w, h);
    out[8 + 8 + 12] = 1; // interlace method in IHDR
    let crc = crc32(&out[12..29]);
    out[29..33].copy_from_slice(&crc.to_be_bytes());
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A PNG written by the `png` crate, optionally with an EXIF orientation.
fn png_of(img: &RgbImage, orientation: Option<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut info = png::Info::with_size(img.width(), img.height());
    info.color_type = png::ColorType::Rgb;
    info.bit_depth = png::BitDepth::Eight;
    if let Some(o) = orientation {
        let tiff = vec![
            b'I', b'I', 0x2A, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x12, 0x01, 0x03, 0x00,
            0x01, 0x00, 0x00, 0x00, o, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        info.exif_metadata = Some(tiff.into());
    }
    let encoder = png::Encoder::with_info(&mut out, info).expect("valid info");
    let mut writer = encoder.write_header().expect("header");
    writer.write_image_data(img.as_raw()).expect("data");
    writer.finish().expect("finish");
    out
}

/// The 7000x7000 16-bit RGBA PNG of the security report: smooth ramps, a few hundred KB.
fn huge_png() -> Vec<u8> {
    const SIDE: u32 = 7000;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, SIDE, SIDE);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Sixteen);
    let mut writer = encoder.write_header().expect("header");
    let mut stream = writer.stream_writer().expect("stream");
    let mut row = vec![0u8; SIDE as usize * 8];
    for y in 0..SIDE {
        let g = (u64::from(y) * 65535 / u64::from(SIDE - 1)) as u16;
        for (x, px) in row.as_chunks_mut::<8>().0.iter_mut().enumerate() {
            let r = (x as u64 * 65535 / u64::from(SIDE - 1)) as u16;
            px[..2].copy_from_slice(&r.to_be_bytes());
            px[2..4].copy_from_slice(&g.to_be_bytes());
            px[4..6].copy_from_slice(&0x8000u16.to_be_bytes());
            px[6..8].copy_from_slice(&0xFFFFu16.to_be_bytes());
        }
        std::io::Write::write_all(&mut stream, &row).expect("row");
    }
    stream.finish().expect("stream end");
    drop(writer);
    out
}

#[test]
fn huge_16_bit_png_validates_and_decodes_row_by_row() {
    let bytes = huge_png();
    eprintln!("7000x7000 16-bit RGBA PNG: {} bytes", bytes.len());
    let start = Instant::now();
    let facts = validate_photo(&bytes, MAX_PIXELS).expect("valid");
    eprintln!("validated in {:.2} s", start.elapsed().as_secs_f64());
    assert_eq!(
        facts,
        recon::decode::PhotoFacts {
            format: PhotoFormat::Png,
            width: 7000,
            height: 7000,
            orientation: 1
        }
    );
    let start = Instant::now();
    let decoded = decode_photo(&bytes, 256, MAX_PIXELS).expect("decodes");
    eprintln!("decoded to 256 in {:.2} s", start.elapsed().as_secs_f64());
    assert_eq!(decoded.rgb.dimensions(), (256, 256));
    assert_eq!(
        (decoded.original_width, decoded.original_height),
        (7000, 7000)
    );
    assert!((decoded.scale - 256.0 / 7000.0).abs() < 1e-12);
    // Red ramps left to right, green top to bottom; the box means sit at the box centres.
    for (x, y) in [(0u32, 0u32), (128, 64), (255, 255)] {
        let p = decoded.rgb.get_pixel(x, y).0;
        let expect = |i: u32| (f64::from(i) + 0.5) / 256.0 * 255.0;
        assert!((f64::from(p[0]) - expect(x)).abs() < 1.5, "{x},{y}: {p:?}");
        assert!((f64::from(p[1]) - expect(y)).abs() < 1.5, "{x},{y}: {p:?}");
        assert_eq!(p[2], 0x80);
    }
    for keep in [
        bytes.len() / 2,
        bytes.len() * 9 / 10,
        bytes.len() - 12,
        bytes.len() - 1,
    ] {
        assert_decode_error(
            validate_photo(&bytes[..keep], MAX_PIXELS),
            &format!("kept {keep}"),
        );
        assert_decode_error(
            decode_photo(&bytes[..keep], 256, MAX_PIXELS),
            &format!("kept {keep}"),
        );
    }
}

fn sample_photo(width: u32) -> RgbImage {
    let original = dataset_image("fountain-P11-half", "0000.jpg")
        .and_then(|b| image::load_from_memory(&b).ok())
        .map(|i| i.to_rgb8())
        .unwrap_or_else(|| {
            // Without the datasets: smooth gradients with coarse blocks, like a photo and unlike
            // per-pixel noise, which no two downscaling filters agree on.
            RgbImage::from_fn(1536, 1024, |x, y| {
                let block = if (x / 64 + y / 64) % 2 == 0 { 40 } else { 0 };
                image::Rgb([(x / 8) as u8, (y / 5) as u8, (100 + block + (x + y) / 32) as u8])
            })
        });
    let height = width * original.height() / original.width();
    image::imageops::resize(
        &original,
        width,
        height,
        image::imageops::FilterType::Triangle,
    )
}

fn max_difference(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

#[test]
fn png_decoding_keeps_pixels_and_area_averages_when_reducing() {
    let photo = sample_photo(640);
    let png = png_of(&photo, None);
    let whole = decode_photo(&png, 1000, MAX_PIXELS).expect("decodes");
    assert_eq!(whole.rgb, photo);
    assert_eq!(whole.scale, 1.0);
    let small = decode_photo(&png, 320, MAX_PIXELS).expect("decodes");
    assert_eq!(small.rgb.dimensions(), (320, 213));
    // Exact 2x2 means here, a triangle filter there: close, not equal.
    let reference =
        image::imageops::resize(&photo, 320, 213, image::imageops::FilterType::Triangle);
    let mean: f64 = small
        .rgb
        .as_raw()
        .iter()
        .zip(reference.as_raw())
        .map(|(a, b)| f64::from(a.abs_diff(*b)))
        .sum::<f64>()
        / reference.as_raw().len() as f64;
    assert!(
        mean < 4.0,
        "mean difference to a triangle-filtered resize: {mean}"
    );
}

#[test]
fn png_colour_types_and_depths_decode_like_the_image_crate() {
    let photo = sample_photo(120);
    let (w, h) = photo.dimensions();
    let grey: Vec<u8> = photo.pixels().map(|p| p.0[1]).collect();
    let palette: Vec<u8> = (0..16u8)
        .flat_map(|i| [i * 16, 255 - i * 16, i * 7])
        .collect();
    let mut cases: Vec<(&str, png::ColorType, png::BitDepth, Vec<u8>)> = vec![
        (
            "RGB 8",
            png::ColorType::Rgb,
            png::BitDepth::Eight,
            photo.as_raw().clone(),
        ),
        (
            "RGB 16",
            png::ColorType::Rgb,
            png::BitDepth::Sixteen,
            photo.as_raw().iter().flat_map(|&v| [v, v ^ 0x5A]).collect(),
        ),
        (
            "RGBA 8",
            png::ColorType::Rgba,
            png::BitDepth::Eight,
            photo
                .pixels()
                .flat_map(|p| [p.0[0], p.0[1], p.0[2], 77])
                .collect(),
        ),
        (
            "grey 8",
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
            grey.clone(),
        ),
        (
            "grey-alpha 16",
            png::ColorType::GrayscaleAlpha,
            png::BitDepth::Sixteen,
            grey.iter().flat_map(|&v| [v, 3, 200, 9]).collect(),
        ),
    ];
    // 1-bit grey and a 4-bit palette: rows packed to whole bytes.
    let pack = |bits: u32, value: &dyn Fn(u32, u32) -> u8| -> Vec<u8> {
        let per_byte = 8 / bits;
        let row_bytes = w.div_ceil(per_byte);
        let mut out = vec![0u8; (row_bytes * h) as usize];
        for y in 0..h {
            for x in 0..w {
                let shift = 8 - bits * (x % per_byte + 1);
                out[(y * row_bytes + x / per_byte) as usize] |= value(x, y) << shift;
            }
        }
        out
    };
    let g = |x: u32, y: u32| photo.get_pixel(x, y).0[1];
    cases.push((
        "grey 1",
        png::ColorType::Grayscale,
        png::BitDepth::One,
        pack(1, &|x, y| u8::from(g(x, y) > 127)),
    ));
    cases.push((
        "palette 4",
        png::ColorType::Indexed,
        png::BitDepth::Four,
        pack(4, &|x, y| g(x, y) >> 4),
    ));
    for (name, color, depth, data) in cases {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(color);
        encoder.set_depth(depth);
        if color == png::ColorType::Indexed {
            encoder.set_palette(palette.clone());
        }
        let mut writer = encoder.write_header().expect("header");
        writer.write_image_data(&data).expect("data");
        writer.finish().expect("finish");
        validate_photo(&out, MAX_PIXELS).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ours = decode_photo(&out, 1000, MAX_PIXELS).expect("decodes").rgb;
        let theirs = image::load_from_memory(&out)
            .expect("image decodes")
            .to_rgb8();
        // 16-bit samples: `image` rounds, we keep the high byte.
        assert!(max_difference(&ours, &theirs) <= 1, "{name}");
    }
}

#[test]
fn interlaced_png_decodes_like_the_plain_one() {
    let photo = sample_photo(203);
    let plain = png_of(&photo, None);
    let interlaced = interlaced_png(&photo);
    let facts = validate_photo(&interlaced, MAX_PIXELS).expect("valid");
    assert_eq!((facts.width, facts.height), photo.dimensions());
    let whole = decode_photo(&interlaced, 1000, MAX_PIXELS).expect("decodes");
    assert_eq!(whole.rgb, photo);
    let a = decode_photo(&interlaced, 64, MAX_PIXELS).expect("decodes");
    let b = decode_photo(&plain, 64, MAX_PIXELS).expect("decodes");
    assert!(max_difference(&a.rgb, &b.rgb) <= 1);
    for keep in [interlaced.len() / 2, interlaced.len() - 12] {
        assert_decode_error(
            validate_photo(&interlaced[..keep], MAX_PIXELS),
            "cut interlaced",
        );
    }
}

#[test]
fn png_exif_orientation_turns_the_reduced_photo_upright() {
    let photo = sample_photo(400);
    let (w, h) = photo.dimensions();
    let plain = decode_photo(&png_of(&photo, None), 200, MAX_PIXELS).expect("decodes");
    let turned_bytes = png_of(&photo, Some(6));
    assert_eq!(
        validate_photo(&turned_bytes, MAX_PIXELS)
            .expect("valid")
            .orientation,
        6
    );
    let turned = decode_photo(&turned_bytes, 200, MAX_PIXELS).expect("decodes");
    assert_eq!(turned.exif.orientation, 6);
    assert_eq!((turned.original_width, turned.original_height), (h, w));
    // Long side 400 -> 200 either way; the upright photo is the plain one turned clockwise.
    assert_eq!(
        turned.rgb.dimensions(),
        (plain.rgb.height(), plain.rgb.width())
    );
    assert_eq!(turned.rgb, image::imageops::rotate90(&plain.rgb));
    assert!((turned.scale - f64::from(turned.rgb.width()) / f64::from(h)).abs() < 1e-12);
}

// ---------------------------------------------------------------------------------------------
// No panics, whatever the bytes.

fn small_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let photo = sample_photo(96);
    let img = mini_jpeg::Image::random(50, 35, &[(2, 2), (1, 1), (1, 1)], 99, false);
    vec![
        (
            "baseline JPEG",
            encode(&DynamicImage::ImageRgb8(photo.clone()), ImageFormat::Jpeg),
        ),
        (
            "progressive JPEG",
            mini_jpeg::progressive(&img, 2, &mini_jpeg::simple_progression(3)),
        ),
        ("PNG", png_of(&photo, None)),
        ("interlaced PNG", interlaced_png(&photo)),
    ]
}

fn check_no_panic(bytes: &[u8]) -> bool {
    let valid = validate_photo(bytes, MAX_PIXELS);
    let decoded = decode_photo(bytes, 64, MAX_PIXELS);
    if let Ok(d) = &decoded {
        assert!(d.rgb.width() > 0 && d.rgb.height() > 0);
    }
    valid.is_ok()
}

#[test]
fn every_prefix_is_refused_without_panicking() {
    for (name, bytes) in small_inputs() {
        assert!(check_no_panic(&bytes), "{name} whole");
        for keep in 0..bytes.len() {
            assert!(
                !check_no_panic(&bytes[..keep]),
                "{name} cut at {keep} accepted"
            );
        }
    }
}

#[test]
fn random_byte_flips_never_panic() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (name, bytes) in small_inputs() {
        let mut accepted = 0;
        for _ in 0..1500 {
            let mut flipped = bytes.clone();
            for _ in 0..=next() % 3 {
                let at = (next() % bytes.len() as u64) as usize;
                flipped[at] ^= 1 << (next() % 8);
            }
            accepted += usize::from(check_no_panic(&flipped));
        }
        eprintln!("{name}: {accepted} of 1500 flipped copies still valid");
    }
}
