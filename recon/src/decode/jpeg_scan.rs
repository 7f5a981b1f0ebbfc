//! A JPEG structure and entropy-data walker: proves that a baseline, extended-sequential or
//! progressive Huffman JPEG is whole, without decoding pixels.
//!
//! It parses the markers, builds the Huffman tables and decodes every Huffman symbol of every
//! block of every scan, skipping the extra bits (the coefficient values are never needed). A scan
//! whose data ends (at a marker or the end of the file) before its last MCU, an invalid Huffman
//! code, a missing or out-of-order restart marker, or a progressive file whose scans stop before
//! every coefficient of every component is complete is refused. This is the check that decoders
//! skip: they pad missing data with grey, so a cut file or one whose header claims more blocks
//! than its data holds would otherwise pass.
//!
//! It is not a decoder: no dequantisation, no IDCT, no colour conversion, and no buffer sized by
//! the pixel count. Memory is the Huffman tables plus, for progressive AC refinement scans, one
//! 64-bit "which coefficients are nonzero" mask per block, capped at [`REFINE_STATE_BYTES`]; a
//! larger image's refinement scans are only followed to their end marker (see `Walker::scan`).
//! Work is proportional to the size of the entropy data (runs of empty blocks are skipped in one
//! step), except those refinement scans, which touch each block once and are bounded by the cap
//! and [`MAX_SCANS`]. Lossless, hierarchical, arithmetic-coded and 12-bit JPEGs are refused as
//! unsupported, since the decoder used afterwards cannot read them either.

use crate::error::ReconError;

/// Longest Huffman code resolved by one table lookup; longer codes take the canonical walk.
const FAST_BITS: u32 = 11;

/// Cap on the per-block coefficient masks that AC refinement decoding needs (8 bytes a block):
/// 4 MiB covers a 22-megapixel 4:2:0 or an 11-megapixel 4:4:4 photo. Above it, refinement scans
/// are skipped rather than walked, so memory stays flat whatever the header claims.
pub(crate) const REFINE_STATE_BYTES: u64 = 4 << 20;

/// Real encoders write at most a few dozen scans (libjpeg's progression has 10). A cap keeps the
/// refinement scans, which cost one step per block even when their data is empty, cheap.
pub(crate) const MAX_SCANS: u32 = 256;

/// What the walk established about a whole JPEG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct JpegSummary {
    pub width: u32,
    pub height: u32,
    pub progressive: bool,
    pub scans: u32,
    /// Progressive refinement scans walked only to their end (state over the cap).
    pub skipped_refinements: u32,
}

fn truncated(detail: impl std::fmt::Display) -> ReconError {
    ReconError::Decode(format!("truncated JPEG: {detail}"))
}

fn corrupt(detail: impl std::fmt::Display) -> ReconError {
    ReconError::Decode(format!("corrupt JPEG: {detail}"))
}

/// A canonical Huffman table (JPEG Annex C) with a lookup for short codes.
struct Huffman {
    /// Indexed by the next FAST_BITS bits: `len << 8 | symbol`, or 0 when the code is longer.
    fast: [u16; 1 << FAST_BITS],
    /// Largest code of each length (index = length), -1 when that length has no codes.
    maxcode: [i32; 17],
    /// Added to a code of a given length to get its index in `values`.
    offset: [i32; 17],
    values: [u8; 256],
}

impl Huffman {
    fn build(counts: &[u8; 16], symbols: &[u8], dc: bool) -> Result<Self, ReconError> {
        // A DC symbol is a size category, at most 15 (11 for 8-bit data); libjpeg and
        // zune-jpeg refuse the table otherwise.
        if dc && symbols.iter().any(|&s| s > 15) {
            return Err(corrupt("DC Huffman table with a symbol over 15"));
        }
        let mut table = Huffman {
            fast: [0; 1 << FAST_BITS],
            maxcode: [-1; 17],
            offset: [0; 17],
            values: [0; 256],
        };
        for (slot, &s) in table.values.iter_mut().zip(symbols) {
            *slot = s;
        }
        let mut code: u32 = 0;
        let mut index: usize = 0;
        for len in 1..=16u32 {
            let count = u32::from(counts[len as usize - 1]);
            if count > 0 {
                // Codes of one length are consecutive; they must fit in `len` bits without
                // using the all-ones code, which libjpeg and zune-jpeg refuse.
                if code + count >= (1 << len) {
                    return Err(corrupt(
                        "Huffman table with more codes than its lengths allow",
                    ));
                }
                table.offset[len as usize] = index as i32 - code as i32;
                for _ in 0..count {
                    if len <= FAST_BITS {
                        let symbol = symbols.get(index).copied().unwrap_or(0);
                        let first = (code << (FAST_BITS - len)) as usize;
                        let span = 1usize << (FAST_BITS - len);
                        let entry = (len as u16) << 8 | u16::from(symbol);
                        for e in table.fast.iter_mut().skip(first).take(span) {
                            *e = entry;
                        }
                    }
                    code += 1;
                    index += 1;
                }
                table.maxcode[len as usize] = code as i32 - 1;
            }
            code <<= 1;
        }
        Ok(table)
    }
}

/// Left-aligned bit reader over entropy-coded data. At a marker or the end of the data it feeds
/// zero bits, counting them, so a decode that used any of them is known to have run off the end.
struct Bits<'a> {
    data: &'a [u8],
    /// Next byte to load.
    pos: usize,
    acc: u64,
    nbits: u32,
    /// Zero bits appended after the data stopped; the real bits left are `nbits - padded`.
    padded: u32,
    /// A marker (or the end of the data) is at `pos`.
    stopped: bool,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Bits {
            data,
            pos,
            acc: 0,
            nbits: 0,
            padded: 0,
            stopped: false,
        }
    }

    /// Fill to at least 57 bits.
    #[inline]
    fn refill(&mut self) {
        if !self.stopped
            && let Some(chunk) = self.data.get(self.pos..self.pos.saturating_add(8))
            && let Ok(bytes) = <[u8; 8]>::try_from(chunk)
        {
            let word = u64::from_be_bytes(bytes);
            let inverted = !word;
            let has_ff =
                inverted.wrapping_sub(0x0101_0101_0101_0101) & !inverted & 0x8080_8080_8080_8080;
            if has_ff == 0 {
                // No stuffing or marker among the next 8 bytes: take as many whole bytes as fit.
                let take = (64 - self.nbits) / 8;
                if take > 0 {
                    let bits = take * 8;
                    let value = if bits == 64 {
                        word
                    } else {
                        word >> (64 - bits)
                    };
                    self.acc |= value << (64 - self.nbits - bits);
                    self.nbits += bits;
                    self.pos += take as usize;
                }
                return;
            }
        }
        self.refill_bytewise();
    }

    /// Near stuffing, a marker or the end of the data: one byte at a time.
    #[inline(never)]
    fn refill_bytewise(&mut self) {
        while self.nbits <= 56 {
            let mut byte = 0u8;
            if !self.stopped {
                match self.data.get(self.pos) {
                    Some(&0xFF) => {
                        if self.data.get(self.pos + 1) == Some(&0x00) {
                            byte = 0xFF;
                            self.pos += 2;
                        } else {
                            self.stopped = true;
                        }
                    }
                    Some(&b) => {
                        byte = b;
                        self.pos += 1;
                    }
                    None => self.stopped = true,
                }
            }
            if self.stopped {
                self.padded += 8;
            }
            self.acc |= u64::from(byte) << (56 - self.nbits);
            self.nbits += 8;
        }
    }

    #[inline]
    fn ensure(&mut self, bits: u32) {
        if self.nbits < bits {
            self.refill();
        }
    }

    /// Drop `n` (at most 32) bits; the caller made sure they are loaded.
    #[inline]
    fn skip(&mut self, n: u32) {
        self.acc = self.acc.wrapping_shl(n);
        self.nbits = self.nbits.saturating_sub(n);
    }

    /// Drop `n` bits, any number, loading as needed.
    fn skip_many(&mut self, mut n: u32) {
        while n > 0 {
            self.ensure(32);
            let step = n.min(32);
            self.skip(step);
            n -= step;
        }
    }

    /// Read `n` (at most 16) bits as an unsigned number.
    #[inline]
    fn read(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        let v = (self.acc >> (64 - n)) as u32;
        self.skip(n);
        v
    }

    /// Whether all that is left before the marker (or the end of the data) is the final byte's
    /// padding, as an encoder leaves it.
    fn at_end(&mut self) -> bool {
        if !self.stopped {
            self.refill();
        }
        self.stopped && self.nbits.saturating_sub(self.padded) < 8
    }

    /// Whether any of the padding bits were consumed: the data ended inside what was decoded.
    #[inline]
    fn overran(&self) -> bool {
        self.padded > self.nbits
    }

    /// Decode one Huffman symbol; `None` for a code the table does not hold. Needs 16 bits loaded.
    #[cfg(test)]
    fn decode(&mut self, table: &Huffman) -> Option<u8> {
        let entry = table.fast[(self.acc >> (64 - FAST_BITS)) as usize];
        if entry != 0 {
            self.skip(u32::from(entry >> 8));
            return Some(entry as u8);
        }
        self.decode_slow(table)
    }

    /// Decode one symbol and drop the extra bits its low nibble announces (a coefficient's
    /// value, or a correction's sign), in one shift. Needs 31 bits loaded.
    #[inline]
    fn symbol(&mut self, table: &Huffman) -> Option<u8> {
        let entry = table.fast[(self.acc >> (64 - FAST_BITS)) as usize];
        if entry != 0 {
            let symbol = entry as u8;
            self.skip(u32::from(entry >> 8) + u32::from(symbol & 15));
            return Some(symbol);
        }
        let symbol = self.decode_slow(table)?;
        self.skip(u32::from(symbol & 15));
        Some(symbol)
    }

    #[cold]
    fn decode_slow(&mut self, table: &Huffman) -> Option<u8> {
        for len in FAST_BITS + 1..=16 {
            let code = (self.acc >> (64 - len)) as i32;
            let max = table.maxcode[len as usize];
            if code <= max {
                let index = code + table.offset[len as usize];
                self.skip(len);
                return usize::try_from(index)
                    .ok()
                    .and_then(|i| table.values.get(i).copied());
            }
        }
        None
    }

    /// The next marker from where the reader stopped: the offset of its 0xFF and its code,
    /// `None` at the end of the data.
    fn next_marker(&self, skip_restarts: bool) -> Option<(usize, u8)> {
        find_marker(self.data, self.pos, skip_restarts)
    }
}

/// The next marker in entropy-coded data from `from`: 0xFF followed by a byte other than 0x00
/// (stuffing) or 0xFF (fill). Restart markers are passed over when `skip_restarts`.
fn find_marker(data: &[u8], from: usize, skip_restarts: bool) -> Option<(usize, u8)> {
    let mut at = from;
    loop {
        let ff = at + data.get(at..)?.iter().position(|&b| b == 0xFF)?;
        let mut code_at = ff + 1;
        while data.get(code_at) == Some(&0xFF) {
            code_at += 1;
        }
        let code = *data.get(code_at)?;
        if code == 0x00 || (skip_restarts && (0xD0..=0xD7).contains(&code)) {
            at = code_at + 1;
            continue;
        }
        return Some((code_at - 1, code));
    }
}

#[derive(Clone, Copy)]
struct Component {
    id: u8,
    h: u32,
    v: u32,
    tq: u8,
    /// Blocks across and down when the component is coded alone (not MCU-padded).
    blocks_w: u64,
    blocks_h: u64,
}

struct Frame {
    width: u32,
    height: u32,
    progressive: bool,
    components: Vec<Component>,
    mcus_w: u64,
    mcus_h: u64,
}

/// Per component of a progressive frame: the successive-approximation low bit each coefficient
/// is known down to, -1 before its first scan.
type Progression = [i8; 64];

/// Refinement state of one component, decided at its first AC scan: every AC scan of the
/// component must have been tracked for the masks to be right.
enum Masks {
    Undecided,
    Tracked(Vec<u64>),
    Untracked,
}

struct ScanComponent {
    index: usize,
    dc: u8,
    ac: u8,
}

struct Walker<'a> {
    bytes: &'a [u8],
    dc_tables: [Option<Box<Huffman>>; 4],
    ac_tables: [Option<Box<Huffman>>; 4],
    quant_defined: [bool; 4],
    restart_interval: u64,
    frame: Option<Frame>,
    progression: Vec<Progression>,
    /// Sequential frames: whether each component was in a scan.
    scanned: Vec<bool>,
    /// Nonzero-coefficient masks per block, per component, for AC refinement scans.
    nonzero: Vec<Masks>,
    state_bytes: u64,
    scans: u32,
    skipped_refinements: u32,
}

fn segment(bytes: &[u8], at: usize) -> Result<&[u8], ReconError> {
    let len = bytes
        .get(at..at + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or_else(|| truncated(format!("segment length at offset {at} is cut off")))?;
    if len < 2 {
        return Err(corrupt(format!("segment length {len} at offset {at}")));
    }
    bytes
        .get(at + 2..at + len)
        .ok_or_else(|| truncated(format!("segment at offset {at} is cut off")))
}

/// Walk a whole JPEG. `check_size(width, height)` runs as soon as the frame header is read,
/// before any entropy data is touched.
pub(crate) fn walk(
    bytes: &[u8],
    check_size: impl FnOnce(u32, u32) -> Result<(), ReconError>,
) -> Result<JpegSummary, ReconError> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(ReconError::UnsupportedFormat);
    }
    let mut walker = Walker {
        bytes,
        dc_tables: Default::default(),
        ac_tables: Default::default(),
        quant_defined: [false; 4],
        restart_interval: 0,
        frame: None,
        progression: Vec::new(),
        scanned: Vec::new(),
        nonzero: Vec::new(),
        state_bytes: 0,
        scans: 0,
        skipped_refinements: 0,
    };
    let mut check_size = Some(check_size);
    let mut pos = 2;
    loop {
        // Between segments only fill bytes are allowed; libjpeg skips other stray bytes with a
        // warning, and so do we (they cannot hide a truncation: scans are checked separately).
        let Some((at, code)) = find_marker(bytes, pos, false) else {
            return Err(truncated("no end-of-image marker"));
        };
        let body = at + 2;
        match code {
            0xD9 => return walker.finish(),
            0xD8 => return Err(corrupt("second start-of-image marker")),
            0xD0..=0xD7 | 0x01 => pos = body,
            0xC0..=0xC2 => {
                let seg = segment(bytes, body)?;
                walker.frame_header(code == 0xC2, seg)?;
                if let (Some(check), Some(frame)) = (check_size.take(), &walker.frame) {
                    check(frame.width, frame.height)?;
                }
                pos = body + 2 + seg.len();
            }
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xCC | 0xDE | 0xDF => {
                // Lossless, differential/hierarchical or arithmetic coding.
                return Err(ReconError::UnsupportedFormat);
            }
            0xC4 => {
                let seg = segment(bytes, body)?;
                walker.huffman_tables(seg)?;
                pos = body + 2 + seg.len();
            }
            0xDB => {
                let seg = segment(bytes, body)?;
                walker.quant_tables(seg)?;
                pos = body + 2 + seg.len();
            }
            0xDD => {
                let seg = segment(bytes, body)?;
                let [hi, lo] = seg else {
                    return Err(corrupt("restart interval segment of the wrong length"));
                };
                walker.restart_interval = u64::from(u16::from_be_bytes([*hi, *lo]));
                pos = body + 4;
            }
            0xDA => {
                let seg = segment(bytes, body)?;
                pos = walker.scan(seg, body + 2 + seg.len())?;
            }
            // APPn, COM, JPGn extensions and DNL carry nothing the walk needs.
            0xE0..=0xEF | 0xF0..=0xFE | 0xDC => {
                let seg = segment(bytes, body)?;
                pos = body + 2 + seg.len();
            }
            other => return Err(corrupt(format!("unknown marker 0xFF{other:02X}"))),
        }
    }
}

impl Walker<'_> {
    fn frame_header(&mut self, progressive: bool, seg: &[u8]) -> Result<(), ReconError> {
        if self.frame.is_some() {
            return Err(corrupt("second frame header"));
        }
        let [precision, h1, h0, w1, w0, count, rest @ ..] = seg else {
            return Err(corrupt("frame header too short"));
        };
        if *precision != 8 {
            return Err(ReconError::UnsupportedFormat);
        }
        let height = u32::from(u16::from_be_bytes([*h1, *h0]));
        let width = u32::from(u16::from_be_bytes([*w1, *w0]));
        let count = usize::from(*count);
        if count == 0 || rest.len() != 3 * count {
            return Err(corrupt("frame header with a bad component count"));
        }
        if count > 4 {
            return Err(ReconError::UnsupportedFormat);
        }
        let mut components = Vec::with_capacity(count);
        for c in rest.as_chunks::<3>().0 {
            let (id, h, v, tq) = (c[0], u32::from(c[1] >> 4), u32::from(c[1] & 15), c[2]);
            if !(1..=4).contains(&h) || !(1..=4).contains(&v) || tq > 3 {
                return Err(corrupt("bad sampling factors or table in the frame header"));
            }
            if components.iter().any(|k: &Component| k.id == id) {
                return Err(corrupt("duplicate component id"));
            }
            components.push(Component {
                id,
                h,
                v,
                tq,
                blocks_w: 0,
                blocks_h: 0,
            });
        }
        let h_max = components.iter().map(|c| c.h).max().unwrap_or(1);
        let v_max = components.iter().map(|c| c.v).max().unwrap_or(1);
        for c in &mut components {
            // A component alone covers ceil(width * h / h_max) samples, not the MCU-padded
            // width (ITU T.81 A.1.1).
            let samples_w = (u64::from(width) * u64::from(c.h)).div_ceil(u64::from(h_max));
            let samples_h = (u64::from(height) * u64::from(c.v)).div_ceil(u64::from(v_max));
            c.blocks_w = samples_w.div_ceil(8);
            c.blocks_h = samples_h.div_ceil(8);
        }
        self.frame = Some(Frame {
            width,
            height,
            progressive,
            mcus_w: u64::from(width).div_ceil(8 * u64::from(h_max)),
            mcus_h: u64::from(height).div_ceil(8 * u64::from(v_max)),
            components,
        });
        self.progression = vec![[-1; 64]; count];
        self.scanned = vec![false; count];
        self.nonzero = (0..count).map(|_| Masks::Undecided).collect();
        Ok(())
    }

    fn huffman_tables(&mut self, mut seg: &[u8]) -> Result<(), ReconError> {
        while let [class_id, rest @ ..] = seg {
            let (class, id) = (class_id >> 4, usize::from(class_id & 15));
            if class > 1 || id > 3 {
                return Err(corrupt("Huffman table with a bad class or id"));
            }
            let counts: [u8; 16] = rest
                .get(..16)
                .and_then(|c| c.try_into().ok())
                .ok_or_else(|| corrupt("Huffman table segment too short"))?;
            let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
            if total > 256 {
                return Err(corrupt("Huffman table with more than 256 symbols"));
            }
            let symbols = rest
                .get(16..16 + total)
                .ok_or_else(|| corrupt("Huffman table segment too short"))?;
            let table = Some(Box::new(Huffman::build(&counts, symbols, class == 0)?));
            if class == 0 {
                self.dc_tables[id] = table;
            } else {
                self.ac_tables[id] = table;
            }
            seg = rest.get(16 + total..).unwrap_or(&[]);
        }
        Ok(())
    }

    fn quant_tables(&mut self, mut seg: &[u8]) -> Result<(), ReconError> {
        while let [precision_id, rest @ ..] = seg {
            let (precision, id) = (precision_id >> 4, usize::from(precision_id & 15));
            if precision > 1 || id > 3 {
                return Err(corrupt("quantization table with a bad precision or id"));
            }
            let len = 64 * (usize::from(precision) + 1);
            seg = rest
                .get(len..)
                .ok_or_else(|| corrupt("quantization table segment too short"))?;
            self.quant_defined[id] = true;
        }
        Ok(())
    }

    /// Parse a scan header, walk its entropy data from `data_at`, and return where the next
    /// marker starts.
    fn scan(&mut self, seg: &[u8], data_at: usize) -> Result<usize, ReconError> {
        self.scans += 1;
        if self.scans > MAX_SCANS {
            return Err(corrupt(format!("more than {MAX_SCANS} scans")));
        }
        let frame = self
            .frame
            .as_ref()
            .ok_or_else(|| corrupt("scan before the frame header"))?;
        let [count, rest @ ..] = seg else {
            return Err(corrupt("empty scan header"));
        };
        let count = usize::from(*count);
        if !(1..=4).contains(&count) || rest.len() != 2 * count + 3 {
            return Err(corrupt("scan header with a bad component count"));
        }
        let mut comps: Vec<ScanComponent> = Vec::with_capacity(count);
        for pair in rest.as_chunks::<2>().0.iter().take(count) {
            let index = frame
                .components
                .iter()
                .position(|c| c.id == pair[0])
                .ok_or_else(|| corrupt("scan of a component the frame does not have"))?;
            if comps.iter().any(|c| c.index == index) {
                return Err(corrupt("component twice in one scan"));
            }
            let (dc, ac) = (pair[1] >> 4, pair[1] & 15);
            if dc > 3 || ac > 3 {
                return Err(corrupt("scan header with a bad table id"));
            }
            if !self.quant_defined[usize::from(frame.components[index].tq)] {
                return Err(corrupt(
                    "scan of a component whose quantization table is missing",
                ));
            }
            comps.push(ScanComponent { index, dc, ac });
        }
        let tail = rest.get(2 * count..).unwrap_or(&[]);
        let [ss, se, a] = tail else {
            return Err(corrupt("scan header too short"));
        };
        let (ss, se, ah, al) = (*ss, *se, a >> 4, a & 15);
        let kind = if !frame.progressive {
            // Ss, Se, Ah and Al are meaningless in sequential mode; libjpeg ignores them too.
            ScanKind::Sequential
        } else {
            if ss > se || se > 63 || (ss == 0 && se != 0) || (ss > 0 && count != 1) || al > 13 {
                return Err(corrupt("progressive scan with a bad spectral range"));
            }
            match (ss, ah) {
                (0, 0) => ScanKind::DcFirst,
                (0, _) => ScanKind::DcRefine,
                (_, 0) => ScanKind::AcFirst,
                _ => ScanKind::AcRefine,
            }
        };
        if count > 1 {
            let blocks: u32 = comps
                .iter()
                .map(|c| frame.components[c.index].h * frame.components[c.index].v)
                .sum();
            if blocks > 10 {
                return Err(corrupt("more than 10 blocks in an interleaved MCU"));
            }
        }
        for c in &comps {
            let needs_dc = matches!(kind, ScanKind::Sequential | ScanKind::DcFirst);
            let needs_ac = matches!(
                kind,
                ScanKind::Sequential | ScanKind::AcFirst | ScanKind::AcRefine
            );
            if (needs_dc && self.dc_tables[usize::from(c.dc)].is_none())
                || (needs_ac && self.ac_tables[usize::from(c.ac)].is_none())
            {
                return Err(corrupt("scan uses a Huffman table that was not defined"));
            }
        }
        if frame.progressive {
            for c in &comps {
                let coefs = self.progression[c.index]
                    .get_mut(usize::from(ss)..=usize::from(se))
                    .ok_or_else(|| corrupt("progressive scan with a bad spectral range"))?;
                for known in coefs {
                    // A first scan codes a coefficient not coded before; a refinement scan adds
                    // one bit below the last known one (ITU T.81 G.1.1.1.1).
                    let fits = if ah == 0 {
                        *known < 0
                    } else {
                        i16::from(*known) == i16::from(ah) && al < ah
                    };
                    if !fits {
                        return Err(corrupt("progressive scans out of order"));
                    }
                    *known = al as i8;
                }
            }
        } else {
            for c in &comps {
                self.scanned[c.index] = true;
            }
        }
        let scan = ScanShape::new(frame, &comps, kind, ss, se);
        let number = self.scans;
        let first = comps.first().map_or(0, |c| c.index);
        if kind == ScanKind::AcFirst
            && let Some(slot @ Masks::Undecided) = self.nonzero.get_mut(first)
        {
            let bytes = scan.mcus * 8;
            *slot = if self.state_bytes + bytes <= REFINE_STATE_BYTES {
                self.state_bytes += bytes;
                Masks::Tracked(vec![0; scan.mcus as usize])
            } else {
                Masks::Untracked
            };
        }
        if kind == ScanKind::AcRefine && !matches!(self.nonzero.get(first), Some(Masks::Tracked(_)))
        {
            // Without the masks the number of correction bits per block is unknown, so the
            // scan is only followed to its end marker. Its data can then be short without
            // notice; what is lost is the lowest bit of some AC coefficients, not whole blocks.
            self.skipped_refinements += 1;
            return find_marker(self.bytes, data_at, true)
                .map(|(at, _)| at)
                .ok_or_else(|| truncated(format!("scan {number} has no end")));
        }
        let mut bits = Bits::new(self.bytes, data_at);
        let dc: Vec<Option<&Huffman>> = comps
            .iter()
            .map(|c| self.dc_tables[usize::from(c.dc)].as_deref())
            .collect();
        let ac: Vec<Option<&Huffman>> = comps
            .iter()
            .map(|c| self.ac_tables[usize::from(c.ac)].as_deref())
            .collect();
        let mask = match self.nonzero.get_mut(first) {
            Some(Masks::Tracked(m)) if count == 1 => Some(m.as_mut_slice()),
            _ => None,
        };
        let mut decoder = ScanDecoder {
            bits: &mut bits,
            shape: &scan,
            dc: &dc,
            ac: &ac,
            mask,
            eobrun: 0,
            number,
        };
        decoder.run(self.restart_interval)?;
        // A stray restart marker after the last MCU is tolerated, as libjpeg does.
        bits.next_marker(true)
            .map(|(at, _)| at)
            .ok_or_else(|| truncated(format!("no marker after scan {number}")))
    }

    fn finish(&self) -> Result<JpegSummary, ReconError> {
        let frame = self
            .frame
            .as_ref()
            .ok_or_else(|| truncated("end of image before any frame header"))?;
        if frame.progressive {
            for (i, coefs) in self.progression.iter().enumerate() {
                if let Some(k) = coefs.iter().position(|&al| al != 0) {
                    return Err(truncated(format!(
                        "progressive scans end before coefficient {k} of component {} is complete",
                        i + 1
                    )));
                }
            }
        } else if let Some(i) = self.scanned.iter().position(|&s| !s) {
            return Err(truncated(format!("component {} has no scan", i + 1)));
        }
        Ok(JpegSummary {
            width: frame.width,
            height: frame.height,
            progressive: frame.progressive,
            scans: self.scans,
            skipped_refinements: self.skipped_refinements,
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ScanKind {
    Sequential,
    DcFirst,
    DcRefine,
    AcFirst,
    AcRefine,
}

/// How many MCUs a scan has and how many blocks of each of its components one MCU holds.
struct ScanShape {
    kind: ScanKind,
    mcus: u64,
    blocks_per_mcu: Vec<u32>,
    ss: u32,
    se: u32,
}

impl ScanShape {
    fn new(frame: &Frame, comps: &[ScanComponent], kind: ScanKind, ss: u8, se: u8) -> Self {
        let (mcus, blocks_per_mcu) = match comps {
            [only] => {
                // A scan of one component is not interleaved: one block per MCU, no padding
                // to whole MCUs.
                let c = &frame.components[only.index];
                (c.blocks_w * c.blocks_h, vec![1])
            }
            _ => (
                frame.mcus_w * frame.mcus_h,
                comps
                    .iter()
                    .map(|c| frame.components[c.index].h * frame.components[c.index].v)
                    .collect(),
            ),
        };
        ScanShape {
            kind,
            mcus,
            blocks_per_mcu,
            ss: u32::from(ss),
            se: u32::from(se),
        }
    }
}

struct ScanDecoder<'s, 'a> {
    bits: &'s mut Bits<'a>,
    shape: &'s ScanShape,
    dc: &'s [Option<&'s Huffman>],
    ac: &'s [Option<&'s Huffman>],
    /// Nonzero masks of the scanned component's blocks (single-component AC scans only).
    mask: Option<&'s mut [u64]>,
    eobrun: u64,
    number: u32,
}

impl ScanDecoder<'_, '_> {
    fn run(&mut self, restart_interval: u64) -> Result<(), ReconError> {
        let total = self.shape.mcus;
        let mut mcu = 0;
        let mut restarts: u8 = 0;
        while mcu < total {
            let end = if restart_interval == 0 {
                total
            } else {
                total.min(mcu + restart_interval)
            };
            self.interval(mcu, end)?;
            mcu = end;
            // Bytes left over mean the blocks were decoded out of step with how they were
            // written: corrupt data (libjpeg warns of "extraneous bytes" and shows garbage).
            if !self.bits.at_end() {
                return Err(corrupt(format!(
                    "entropy data of scan {} goes on after MCU {mcu} of {total}, where a marker belongs",
                    self.number
                )));
            }
            if mcu < total {
                self.restart(0xD0 + (restarts & 7), mcu)?;
                restarts = restarts.wrapping_add(1);
            }
        }
        Ok(())
    }

    fn ran_out(&self, mcu: u64) -> ReconError {
        truncated(format!(
            "entropy data of scan {} ends (at a marker or the end of the file) in MCU {} of {}",
            self.number,
            mcu + 1,
            self.shape.mcus
        ))
    }

    fn bad_code(&self, mcu: u64) -> ReconError {
        if self.bits.stopped && self.bits.nbits < self.bits.padded + 16 {
            return self.ran_out(mcu);
        }
        corrupt(format!(
            "invalid Huffman code in scan {} at MCU {} of {}",
            self.number,
            mcu + 1,
            self.shape.mcus
        ))
    }

    /// Expect restart marker `code` where the bits of the interval ended.
    fn restart(&mut self, code: u8, mcu: u64) -> Result<(), ReconError> {
        let found = self.bits.next_marker(false);
        match found {
            Some((at, c)) if c == code => {
                *self.bits = Bits::new(self.bits.data, at + 2);
                self.eobrun = 0;
                Ok(())
            }
            Some((_, 0xD0..=0xD7)) => Err(corrupt(format!(
                "restart marker out of order in scan {} after MCU {}",
                self.number, mcu
            ))),
            _ => Err(truncated(format!(
                "scan {} stops after MCU {} of {} (no restart marker)",
                self.number, mcu, self.shape.mcus
            ))),
        }
    }

    fn interval(&mut self, start: u64, end: u64) -> Result<(), ReconError> {
        match self.shape.kind {
            ScanKind::Sequential => self.sequential(start, end),
            ScanKind::DcFirst => self.dc_first(start, end),
            ScanKind::DcRefine => self.dc_refine(start, end),
            ScanKind::AcFirst => self.ac_first(start, end),
            ScanKind::AcRefine => self.ac_refine(start, end),
        }
    }

    fn sequential(&mut self, start: u64, end: u64) -> Result<(), ReconError> {
        let shape = self.shape;
        for mcu in start..end {
            for (c, &blocks) in shape.blocks_per_mcu.iter().enumerate() {
                let (Some(Some(dc)), Some(Some(ac))) = (self.dc.get(c), self.ac.get(c)) else {
                    return Err(corrupt("missing Huffman table"));
                };
                for _ in 0..blocks {
                    if !self.sequential_block(dc, ac) {
                        return Err(self.bad_code(mcu));
                    }
                }
            }
            if self.bits.overran() {
                return Err(self.ran_out(mcu));
            }
        }
        Ok(())
    }

    /// One block: the DC difference and up to 63 AC coefficients. False on a bad code.
    #[inline]
    fn sequential_block(&mut self, dc: &Huffman, ac: &Huffman) -> bool {
        let bits = &mut *self.bits;
        bits.ensure(32);
        // DC tables hold no symbol over 15, so this is the difference's size and bits.
        if bits.symbol(dc).is_none() {
            return false;
        }
        let mut k = 1u32;
        while k < 64 {
            bits.ensure(32);
            let Some(symbol) = bits.symbol(ac) else {
                return false;
            };
            let (run, size) = (u32::from(symbol >> 4), symbol & 15);
            if size == 0 {
                if run != 15 {
                    break;
                }
                k += 16;
            } else {
                k += run + 1;
            }
            if k > 64 {
                return false;
            }
        }
        true
    }

    fn dc_first(&mut self, start: u64, end: u64) -> Result<(), ReconError> {
        let shape = self.shape;
        for mcu in start..end {
            for (c, &blocks) in shape.blocks_per_mcu.iter().enumerate() {
                let Some(Some(dc)) = self.dc.get(c) else {
                    return Err(corrupt("missing Huffman table"));
                };
                for _ in 0..blocks {
                    self.bits.ensure(32);
                    if self.bits.symbol(dc).is_none() {
                        return Err(self.bad_code(mcu));
                    }
                }
            }
            if self.bits.overran() {
                return Err(self.ran_out(mcu));
            }
        }
        Ok(())
    }

    fn dc_refine(&mut self, start: u64, end: u64) -> Result<(), ReconError> {
        let per_mcu: u32 = self.shape.blocks_per_mcu.iter().sum();
        for mcu in start..end {
            // One correction bit per block.
            self.bits.skip_many(per_mcu);
            if self.bits.overran() {
                return Err(self.ran_out(mcu));
            }
        }
        Ok(())
    }

    fn ac_first(&mut self, start: u64, end: u64) -> Result<(), ReconError> {
        let Some(Some(ac)) = self.ac.first() else {
            return Err(corrupt("missing Huffman table"));
        };
        let (ss, se) = (self.shape.ss, self.shape.se);
        let mut block = start;
        while block < end {
            if self.eobrun > 0 {
                // A run of blocks with nothing left in this band costs no bits: skip it whole.
                let skip = self.eobrun.min(end - block);
                self.eobrun -= skip;
                block += skip;
                continue;
            }
            let mut k = ss;
            while k <= se {
                self.bits.ensure(32);
                let Some(symbol) = self.bits.symbol(ac) else {
                    return Err(self.bad_code(block));
                };
                let (run, size) = (u32::from(symbol >> 4), symbol & 15);
                if size == 0 {
                    if run < 15 {
                        // End of band here and in the next `eobrun` blocks.
                        self.eobrun = (1u64 << run) + u64::from(self.bits.read(run)) - 1;
                        break;
                    }
                    k += 16;
                    if k > se + 1 {
                        return Err(self.bad_code(block));
                    }
                } else {
                    k += run;
                    if k > se {
                        return Err(self.bad_code(block));
                    }
                    if let Some(m) = self
                        .mask
                        .as_deref_mut()
                        .and_then(|m| m.get_mut(block as usize))
                    {
                        *m |= 1 << k;
                    }
                    k += 1;
                }
            }
            if self.bits.overran() {
                return Err(self.ran_out(block));
            }
            block += 1;
        }
        Ok(())
    }

    /// An AC refinement scan sends one correction bit for every coefficient that earlier scans
    /// made nonzero, interleaved with the newly nonzero ones (ITU T.81 G.1.2.3); which bits are
    /// which depends on each block's history, hence the masks.
    fn ac_refine(&mut self, start: u64, end: u64) -> Result<(), ReconError> {
        let Some(Some(ac)) = self.ac.first() else {
            return Err(corrupt("missing Huffman table"));
        };
        let (ss, se) = (self.shape.ss, self.shape.se);
        for block in start..end {
            let Some(mut nz) = self
                .mask
                .as_deref()
                .and_then(|m| m.get(block as usize))
                .copied()
            else {
                return Err(corrupt("refinement state missing"));
            };
            let bits = &mut *self.bits;
            let mut k = ss;
            if self.eobrun == 0 {
                while k <= se {
                    bits.ensure(32);
                    // A new coefficient's sign bit is dropped with its code.
                    let Some(symbol) = bits.symbol(ac) else {
                        return Err(self.bad_code(block));
                    };
                    let (mut run, size) = (u32::from(symbol >> 4), symbol & 15);
                    if size > 1 {
                        return Err(self.bad_code(block));
                    }
                    if size == 0 && run != 15 {
                        self.eobrun = (1u64 << run) + u64::from(bits.read(run));
                        break;
                    }
                    // Pass `run` coefficients with no history (and correct those with one),
                    // stopping where the new coefficient goes.
                    while k <= se {
                        if nz & (1 << k) != 0 {
                            bits.ensure(1);
                            bits.skip(1);
                        } else {
                            if run == 0 {
                                break;
                            }
                            run -= 1;
                        }
                        k += 1;
                    }
                    if size != 0 {
                        if k > se {
                            return Err(self.bad_code(block));
                        }
                        nz |= 1 << k;
                    }
                    k += 1;
                }
            }
            if self.eobrun > 0 {
                // Inside an end-of-band run only the coefficients with history get a bit.
                if k <= se {
                    let rest = (nz >> k << k) & (u64::MAX >> (63 - se));
                    bits.skip_many(rest.count_ones());
                }
                self.eobrun -= 1;
            }
            if let Some(m) = self
                .mask
                .as_deref_mut()
                .and_then(|m| m.get_mut(block as usize))
            {
                *m = nz;
            }
            if self.bits.overran() {
                return Err(self.ran_out(block));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_jpeg() -> Vec<u8> {
        let img = image::RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x * y) % 256) as u8])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut out, image::ImageFormat::Jpeg)
            .expect("encodes");
        out.into_inner()
    }

    fn walk_all(bytes: &[u8]) -> Result<JpegSummary, ReconError> {
        walk(bytes, |_, _| Ok(()))
    }

    fn is_decode_error(r: Result<JpegSummary, ReconError>) -> bool {
        matches!(r, Err(ReconError::Decode(_)))
    }

    /// Bits of `codes` (value, length) packed MSB first, padded with ones, stuffed.
    fn pack(codes: &[(u32, u32)]) -> Vec<u8> {
        let mut bits: Vec<u8> = Vec::new();
        for &(v, n) in codes {
            for i in (0..n).rev() {
                bits.push(((v >> i) & 1) as u8);
            }
        }
        while !bits.len().is_multiple_of(8) {
            bits.push(1);
        }
        let mut out = Vec::new();
        for byte in bits.chunks(8) {
            let b = byte.iter().fold(0u8, |acc, &bit| acc << 1 | bit);
            out.push(b);
            if b == 0xFF {
                out.push(0);
            }
        }
        out
    }

    #[test]
    fn huffman_codes_of_every_length_decode_through_both_paths() {
        // One code of each length 1..=16: 0, 10, 110, ... (never all ones).
        let counts = [1u8; 16];
        let symbols: Vec<u8> = (1..=16).collect();
        let table = Huffman::build(&counts, &symbols, false).expect("valid table");
        let code = |len: u32| ((1u32 << len) - 2, len);
        let sent = [3u32, 16, 1, 10, 9, 12, 2, 15];
        let data = pack(&sent.map(code));
        let mut bits = Bits::new(&data, 0);
        for &len in &sent {
            bits.ensure(32);
            assert_eq!(bits.decode(&table), Some(len as u8));
            assert!(!bits.overran());
        }
        // Only the final byte's padding is left: one more symbol runs over the end.
        bits.ensure(32);
        let _ = bits.decode(&table);
        assert!(bits.overran());
    }

    #[test]
    fn over_full_tables_and_big_dc_symbols_are_refused() {
        let mut counts = [0u8; 16];
        counts[0] = 2; // codes 0 and 1: the second is all ones
        assert!(Huffman::build(&counts, &[0, 1], false).is_err());
        counts[0] = 1;
        counts[1] = 2; // 0, 10, 11
        assert!(Huffman::build(&counts, &[0, 1, 2], false).is_err());
        counts[1] = 1;
        assert!(Huffman::build(&counts, &[0, 1], false).is_ok());
        assert!(Huffman::build(&counts, &[0, 16], true).is_err());
    }

    #[test]
    fn bits_unstuff_stop_at_markers_and_count_what_ran_over() {
        let data = [0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56];
        let mut bits = Bits::new(&data, 0);
        bits.ensure(32);
        assert_eq!(bits.read(8), 0x12);
        assert_eq!(bits.read(8), 0xFF);
        assert_eq!(bits.read(8), 0x34);
        assert!(!bits.overran());
        assert_eq!(bits.pos, 4);
        bits.skip(1);
        assert!(bits.overran());
        assert_eq!(bits.next_marker(false), Some((4, 0xD0)));
        assert_eq!(find_marker(&data, 0, true), None);
        assert_eq!(
            find_marker(&[0xFF, 0xFF, 0xFF, 0xD9], 0, true),
            Some((2, 0xD9))
        );
    }

    #[test]
    fn the_end_marker_is_required_and_what_follows_it_ignored() {
        let jpeg = tiny_jpeg();
        let summary = walk_all(&jpeg).expect("whole");
        assert_eq!(
            (summary.width, summary.height, summary.progressive),
            (64, 48, false)
        );
        assert!(is_decode_error(walk_all(&jpeg[..jpeg.len() - 2])));
        let mut trailing = jpeg.clone();
        trailing.extend_from_slice(b"camera maker's trailer");
        assert!(walk_all(&trailing).is_ok());
        // Only the headers, then an end marker: what `jpeg_has_end` used to let through when
        // the marker followed the scan header.
        let sos = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xDA])
            .expect("a scan");
        let len = usize::from(u16::from_be_bytes([jpeg[sos + 2], jpeg[sos + 3]]));
        let mut headers = jpeg[..sos + 2 + len].to_vec();
        headers.extend_from_slice(&[0xFF, 0xD9]);
        assert!(is_decode_error(walk_all(&headers)));
    }

    #[test]
    fn broken_structure_is_a_decode_error() {
        let jpeg = tiny_jpeg();
        let sof = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("SOF0");
        let sof_len = usize::from(u16::from_be_bytes([jpeg[sof + 2], jpeg[sof + 3]]));
        let mut no_frame = jpeg[..sof].to_vec();
        no_frame.extend_from_slice(&jpeg[sof + 2 + sof_len..]);
        let mut twice = jpeg[..sof + 2 + sof_len].to_vec();
        twice.extend_from_slice(&jpeg[sof..]);
        let mut unknown = jpeg.clone();
        unknown[sof + 1] = 0x02;
        let mut soi_again = jpeg[..2].to_vec();
        soi_again.extend_from_slice(&jpeg);
        for (what, bytes) in [
            ("no frame header", no_frame),
            ("two frame headers", twice),
            ("unknown marker", unknown),
            ("two SOI", soi_again),
        ] {
            assert!(is_decode_error(walk_all(&bytes)), "{what}");
        }
    }

    #[test]
    fn size_check_runs_before_the_scans() {
        let jpeg = tiny_jpeg();
        let sos = jpeg
            .windows(2)
            .position(|w| w == [0xFF, 0xDA])
            .expect("a scan");
        // Garbage scan data: only the size check can fail first.
        let mut bytes = jpeg[..sos + 14].to_vec();
        bytes.extend_from_slice(&[0xFF, 0xD9]);
        let result = walk(&bytes, |w, h| {
            Err(ReconError::ImageTooLarge {
                width: w,
                height: h,
                max_pixels: 1,
            })
        });
        assert!(matches!(
            result,
            Err(ReconError::ImageTooLarge {
                width: 64,
                height: 48,
                ..
            })
        ));
    }
}
