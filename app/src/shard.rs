//! The binary format of a point shard: what `GET /api/rooms/{id}/shards/{hash}` returns.
//!
//! Points dominate the bytes a room sends, so they travel as 9 bytes each: three 16-bit
//! coordinates quantised inside the shard's bounding box, then 8-bit RGB. For a 20 m site the
//! quantisation step is 0.3 mm, far below what the reconstruction can resolve.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "VPT1"
//! 4       4     point count n, u32 little-endian
//! 8       12    bounding box minimum, 3 x f32 LE
//! 20      12    bounding box maximum, 3 x f32 LE
//! 32      9n    per point: x, y, z as u16 LE (0 = min, 65535 = max), then r, g, b as u8
//! ```
//!
//! Shards are immutable and named by the SHA-256 of their bytes, so clients cache them forever.

/// The first four bytes of every shard.
pub const MAGIC: [u8; 4] = *b"VPT1";
pub const HEADER_BYTES: usize = 32;
pub const BYTES_PER_POINT: usize = 9;
/// Shards hold at most this many points, so a client can draw a large model while the rest of
/// it is still arriving.
pub const MAX_POINTS: usize = 65_536;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("not a point shard (bad magic)")]
    BadMagic,
    #[error("the shard is truncated: {got} bytes where {expected} were announced")]
    Truncated { got: usize, expected: usize },
    #[error("the shard announces {0} points, more than the limit")]
    TooManyPoints(u32),
    #[error("the shard's bounding box is not finite")]
    BadBounds,
}

/// A point as shards carry it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShardPoint {
    pub position: [f32; 3],
    pub color: [u8; 3],
}

/// Encodes up to [`MAX_POINTS`] points; non-finite positions are skipped (they cannot be drawn).
pub fn encode(points: &[ShardPoint]) -> Vec<u8> {
    let finite: Vec<&ShardPoint> =
        points.iter().filter(|p| p.position.iter().all(|c| c.is_finite())).take(MAX_POINTS).collect();
    let mut min = [f32::MAX; 3];
    let mut max = [f32::MIN; 3];
    for p in &finite {
        for axis in 0..3 {
            min[axis] = min[axis].min(p.position[axis]);
            max[axis] = max[axis].max(p.position[axis]);
        }
    }
    if finite.is_empty() {
        min = [0.0; 3];
        max = [0.0; 3];
    }
    let mut out = Vec::with_capacity(HEADER_BYTES + BYTES_PER_POINT * finite.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(finite.len() as u32).to_le_bytes());
    for v in min.iter().chain(max.iter()) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut quantised: Vec<([u16; 3], [u8; 3])> = finite
        .iter()
        .map(|p| {
            let mut q = [0u16; 3];
            for axis in 0..3 {
                let extent = max[axis] - min[axis];
                let t = if extent > 0.0 { (p.position[axis] - min[axis]) / extent } else { 0.0 };
                q[axis] = (t * 65535.0).round().clamp(0.0, 65535.0) as u16;
            }
            (q, p.color)
        })
        .collect();
    // In Morton (Z-curve) order, consecutive points are neighbours in space: their coordinates
    // share high bytes, which is what lets gzip shrink a shard on the wire.
    quantised.sort_by_key(|(q, _)| morton(*q));
    for (q, color) in quantised {
        for c in q {
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.extend_from_slice(&color);
    }
    out
}

/// Interleaves the bits of three 16-bit coordinates.
fn morton(q: [u16; 3]) -> u64 {
    fn spread(v: u16) -> u64 {
        let mut x = u64::from(v);
        x = (x | (x << 16)) & 0x0000_ff00_00ff;
        x = (x | (x << 8)) & 0x0000_00f0_0f00_f00f;
        x = (x | (x << 4)) & 0x00c3_0c30_c30c_30c3;
        x = (x | (x << 2)) & 0x0249_2492_4924_9249;
        x
    }
    spread(q[0]) | (spread(q[1]) << 1) | (spread(q[2]) << 2)
}

/// Decodes a shard, refusing anything malformed rather than drawing garbage.
pub fn decode(bytes: &[u8]) -> Result<Vec<ShardPoint>, ShardError> {
    if bytes.len() < HEADER_BYTES || bytes[..4] != MAGIC {
        return Err(ShardError::BadMagic);
    }
    let u32_at = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let f32_at = |at: usize| f32::from_bits(u32_at(at));
    let count = u32_at(4);
    if count as usize > MAX_POINTS {
        return Err(ShardError::TooManyPoints(count));
    }
    let expected = HEADER_BYTES + BYTES_PER_POINT * count as usize;
    if bytes.len() != expected {
        return Err(ShardError::Truncated { got: bytes.len(), expected });
    }
    let min = [f32_at(8), f32_at(12), f32_at(16)];
    let max = [f32_at(20), f32_at(24), f32_at(28)];
    if !min.iter().chain(max.iter()).all(|v| v.is_finite()) {
        return Err(ShardError::BadBounds);
    }
    Ok(bytes[HEADER_BYTES..]
        .as_chunks::<BYTES_PER_POINT>()
        .0
        .iter()
        .map(|p| {
            let mut position = [0f32; 3];
            for axis in 0..3 {
                let q = u16::from_le_bytes([p[2 * axis], p[2 * axis + 1]]);
                position[axis] = min[axis] + (max[axis] - min[axis]) * (f32::from(q) / 65535.0);
            }
            ShardPoint { position, color: [p[6], p[7], p[8]] }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloud(n: usize) -> Vec<ShardPoint> {
        (0..n)
            .map(|i| {
                let t = i as f32;
                ShardPoint {
                    position: [(t * 0.37).sin() * 10.0, (t * 0.11).cos() * 3.0, t * 0.002 - 1.0],
                    color: [(i % 256) as u8, (i * 7 % 256) as u8, 200],
                }
            })
            .collect()
    }

    #[test]
    fn morton_codes_interleave_bits() {
        assert_eq!(morton([1, 0, 0]), 1);
        assert_eq!(morton([0, 1, 0]), 2);
        assert_eq!(morton([0, 0, 1]), 4);
        assert_eq!(morton([2, 0, 0]), 8);
        assert_eq!(morton([u16::MAX; 3]), (1u64 << 48) - 1);
    }

    #[test]
    fn round_trip_is_within_a_quantisation_step_and_nine_bytes_a_point() {
        let points = cloud(5000);
        let bytes = encode(&points);
        assert_eq!(bytes.len(), HEADER_BYTES + 9 * points.len());
        let mut back = decode(&bytes).expect("decodes");
        assert_eq!(back.len(), points.len());
        // Points come back in spatial order; match them up by colour and index.
        let mut points = points;
        let key = |p: &ShardPoint| (p.color, (p.position[2] * 1000.0) as i64);
        points.sort_by_key(key);
        back.sort_by_key(key);
        for (a, b) in points.iter().zip(&back) {
            assert_eq!(a.color, b.color);
            for axis in 0..3 {
                // Extent at most 20 units: a step is 20 / 65535.
                assert!((a.position[axis] - b.position[axis]).abs() <= 20.0 / 65535.0, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn empty_and_flat_shards_work() {
        assert!(decode(&encode(&[])).expect("empty").is_empty());
        let flat = vec![ShardPoint { position: [1.0, 2.0, 3.0], color: [1, 2, 3] }; 3];
        assert_eq!(decode(&encode(&flat)).expect("flat"), flat);
    }

    #[test]
    fn malformed_shards_are_refused() {
        let bytes = encode(&cloud(10));
        assert_eq!(decode(b"nope"), Err(ShardError::BadMagic));
        assert!(matches!(decode(&bytes[..bytes.len() - 1]), Err(ShardError::Truncated { .. })));
        let mut huge = bytes.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&huge), Err(ShardError::TooManyPoints(_))));
        let mut nan = bytes;
        nan[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(decode(&nan), Err(ShardError::BadBounds));
    }

    #[test]
    fn non_finite_points_are_skipped() {
        let mut points = cloud(3);
        points[1].position[0] = f32::NAN;
        assert_eq!(decode(&encode(&points)).expect("decodes").len(), 2);
    }
}
