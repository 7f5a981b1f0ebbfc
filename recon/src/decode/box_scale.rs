//! Area-average (box) downscaling fed one source row at a time, so a large image is reduced
//! without ever being held at full size.
//!
//! Each output pixel is the mean of the source area it covers, with source pixels split
//! exactly (in rational weights) between the output pixels they straddle; the sampling geometry
//! is the usual one, output pixel `j` spanning source `[j * n / m, (j + 1) * n / m)`. It only
//! reduces (or keeps) a size, never enlarges. Rows that arrive top to bottom need two output
//! rows of accumulators; rows in any order (Adam7 passes) need one accumulator for the whole
//! output. It is not a general resampler: no filter kernels, no gamma handling.

use image::RgbImage;

/// The share of one source pixel (along one axis) in output pixel `first` and `first + 1`,
/// normalised so each output pixel's shares sum to one.
#[derive(Clone, Copy, Debug)]
struct Split {
    first: u32,
    w0: f32,
    w1: f32,
}

fn splits(n: u32, m: u32) -> Vec<Split> {
    let n = n.max(1);
    let (n, m) = (u64::from(n), u64::from(m.clamp(1, n)));
    (0..n)
        .map(|i| {
            // In units where a source pixel is m long and an output pixel n long.
            let start = i * m;
            let first = start / n;
            let overlap = ((first + 1) * n).min(start + m) - start;
            Split {
                first: first as u32,
                w0: overlap as f32 / n as f32,
                w1: (m - overlap) as f32 / n as f32,
            }
        })
        .collect()
}

enum Mode {
    /// Same size: rows go straight into the output.
    Direct,
    /// Rows arrive top to bottom: output rows `row` and `row + 1` are still open.
    Rolling { row: u32, open: [Vec<f32>; 2] },
    /// Rows arrive in any order.
    Whole(Vec<f32>),
}

/// Reduces a `src_w` x `src_h` image fed as RGB8 rows to `dst_w` x `dst_h`.
pub(super) struct BoxScaler {
    dst_w: u32,
    dst_h: u32,
    xs: Vec<Split>,
    ys: Vec<Split>,
    /// The current source row reduced horizontally.
    reduced: Vec<f32>,
    mode: Mode,
    out: RgbImage,
}

impl BoxScaler {
    /// `in_order`: rows will come top to bottom, each once.
    pub(super) fn new(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32, in_order: bool) -> Self {
        let (dst_w, dst_h) = (dst_w.clamp(1, src_w.max(1)), dst_h.clamp(1, src_h.max(1)));
        let row_len = 3 * dst_w as usize;
        let mode = if (dst_w, dst_h) == (src_w, src_h) {
            Mode::Direct
        } else if in_order {
            Mode::Rolling {
                row: 0,
                open: [vec![0.0; row_len], vec![0.0; row_len]],
            }
        } else {
            Mode::Whole(vec![0.0; row_len * dst_h as usize])
        };
        BoxScaler {
            dst_w,
            dst_h,
            xs: splits(src_w, dst_w),
            ys: splits(src_h, dst_h),
            reduced: vec![0.0; row_len],
            mode,
            out: RgbImage::new(dst_w, dst_h),
        }
    }

    /// Add source row `y`, whose pixel `i` is at column `x0 + i * dx` (Adam7 passes skip
    /// columns). Pixels outside the image are ignored.
    pub(super) fn add_row(&mut self, y: u32, x0: u32, dx: u32, rgb: &[u8]) {
        let Some(&ys) = self.ys.get(y as usize) else {
            return;
        };
        let columns = rgb
            .as_chunks::<3>()
            .0
            .iter()
            .enumerate()
            .map(|(i, px)| (x0 as usize + i * dx as usize, px));
        if let Mode::Direct = self.mode {
            for (x, px) in columns {
                if let Some(p) = self.out.get_pixel_mut_checked(x as u32, y) {
                    p.0.copy_from_slice(px);
                }
            }
            return;
        }
        self.reduced.fill(0.0);
        for (x, px) in columns {
            let Some(s) = self.xs.get(x) else {
                break;
            };
            let at = 3 * s.first as usize;
            let v = [f32::from(px[0]), f32::from(px[1]), f32::from(px[2])];
            if let Some(d) = self.reduced.get_mut(at..at + 3) {
                d[0] += s.w0 * v[0];
                d[1] += s.w0 * v[1];
                d[2] += s.w0 * v[2];
            }
            // Most source pixels lie inside one output pixel.
            if s.w1 > 0.0
                && let Some(d) = self.reduced.get_mut(at + 3..at + 6)
            {
                d[0] += s.w1 * v[0];
                d[1] += s.w1 * v[1];
                d[2] += s.w1 * v[2];
            }
        }
        let row_len = self.reduced.len();
        match &mut self.mode {
            Mode::Direct => {}
            Mode::Rolling { row, open } => {
                while *row < ys.first {
                    emit(&mut self.out, *row, &open[0]);
                    open.swap(0, 1);
                    open[1].fill(0.0);
                    *row += 1;
                }
                if *row == ys.first {
                    accumulate(&mut open[0], &self.reduced, ys.w0);
                    if ys.w1 > 0.0 {
                        accumulate(&mut open[1], &self.reduced, ys.w1);
                    }
                }
            }
            Mode::Whole(acc) => {
                let at = ys.first as usize * row_len;
                if let Some(dst) = acc.get_mut(at..at + row_len) {
                    accumulate(dst, &self.reduced, ys.w0);
                }
                if ys.w1 > 0.0
                    && let Some(dst) = acc.get_mut(at + row_len..at + 2 * row_len)
                {
                    accumulate(dst, &self.reduced, ys.w1);
                }
            }
        }
    }

    /// The reduced image (rows never fed stay black).
    pub(super) fn finish(mut self) -> RgbImage {
        match &mut self.mode {
            Mode::Direct => {}
            Mode::Rolling { row, open } => {
                while *row < self.dst_h {
                    emit(&mut self.out, *row, &open[0]);
                    open.swap(0, 1);
                    open[1].fill(0.0);
                    *row += 1;
                }
            }
            Mode::Whole(acc) => {
                let row_len = 3 * self.dst_w as usize;
                for (y, src) in acc.chunks_exact(row_len.max(1)).enumerate() {
                    emit(&mut self.out, y as u32, src);
                }
            }
        }
        self.out
    }
}

fn accumulate(dst: &mut [f32], src: &[f32], weight: f32) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += weight * s;
    }
}

fn emit(out: &mut RgbImage, y: u32, values: &[f32]) {
    let width = 3 * out.width() as usize;
    let at = y as usize * width;
    if let Some(dst) = out.get_mut(at..at + width) {
        for (d, v) in dst.iter_mut().zip(values) {
            *d = (v + 0.5).clamp(0.0, 255.0) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(src: &RgbImage, dst_w: u32, dst_h: u32, in_order: bool) -> RgbImage {
        let mut s = BoxScaler::new(src.width(), src.height(), dst_w, dst_h, in_order);
        let rows: Vec<u32> = if in_order {
            (0..src.height()).collect()
        } else {
            (0..src.height()).rev().collect()
        };
        for y in rows {
            let start = (y * src.width() * 3) as usize;
            let row = &src.as_raw()[start..start + (src.width() * 3) as usize];
            s.add_row(y, 0, 1, row);
        }
        s.finish()
    }

    #[test]
    fn splits_share_each_output_pixel_exactly_once() {
        for (n, m) in [(10, 3), (7000, 256), (33, 32), (5, 5), (1000, 1)] {
            let mut total = vec![0.0f64; m as usize];
            for s in splits(n, m) {
                total[s.first as usize] += f64::from(s.w0);
                if s.w1 > 0.0 {
                    total[s.first as usize + 1] += f64::from(s.w1);
                }
            }
            for t in total {
                assert!((t - 1.0).abs() < 1e-3, "{n}->{m}: {t}");
            }
        }
    }

    #[test]
    fn halving_averages_two_by_two_blocks_in_any_row_order() {
        let src = RgbImage::from_fn(6, 4, |x, y| image::Rgb([(x * 40) as u8, (y * 60) as u8, 7]));
        for in_order in [true, false] {
            let out = feed(&src, 3, 2, in_order);
            assert_eq!(out.dimensions(), (3, 2));
            // Columns 0,1 -> 20; rows 0,1 -> 30.
            assert_eq!(out.get_pixel(0, 0).0, [20, 30, 7]);
            assert_eq!(out.get_pixel(2, 1).0, [180, 150, 7]);
        }
    }

    #[test]
    fn same_size_is_a_copy_and_flat_stays_flat() {
        let src = RgbImage::from_fn(9, 5, |x, y| image::Rgb([x as u8, y as u8, 3]));
        assert_eq!(feed(&src, 9, 5, true), src);
        let flat = RgbImage::from_pixel(37, 23, image::Rgb([200, 100, 50]));
        let out = feed(&flat, 5, 4, true);
        assert!(out.pixels().all(|p| p.0 == [200, 100, 50]));
    }
}
