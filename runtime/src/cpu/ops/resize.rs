//! Bilinear resize over the last two axes, with per-axis taps built at session creation.
use super::layout::source_coord;
use super::{View, ViewMut};
use crate::ir::CoordMode;
use alloc::vec::Vec;

/// Per output index: the two source indices and the weight of the second.
pub struct Taps {
    /// Rows.
    pub y: Vec<(usize, usize, f32)>,
    /// Columns.
    pub x: Vec<(usize, usize, f32)>,
}

fn taps(coord: CoordMode, in_len: usize, out_len: usize, scale: f32) -> Vec<(usize, usize, f32)> {
    (0..out_len)
        .map(|o| {
            let c = source_coord(coord, o, in_len, out_len, scale).clamp(0.0, (in_len - 1) as f32);
            let i0 = libm::floorf(c) as usize;
            let i1 = (i0 + 1).min(in_len - 1);
            (i0, i1, c - i0 as f32)
        })
        .collect()
}

/// Builds the taps for input shape `x`, output shape `y`.
pub fn prepare(coord: CoordMode, x: &[usize], y: &[usize], scales: &[f32]) -> Taps {
    let r = x.len();
    Taps {
        y: taps(coord, x[r - 2], y[r - 2], scales[r - 2]),
        x: taps(coord, x[r - 1], y[r - 1], scales[r - 1]),
    }
}

/// Bilinear interpolation of every plane.
pub fn linear(t: &Taps, x: View, y: ViewMut) {
    let r = x.shape.len();
    let (h, w) = (x.shape[r - 2], x.shape[r - 1]);
    let (oh, ow) = (y.shape[r - 2], y.shape[r - 1]);
    for (src, dst) in x
        .data
        .chunks_exact(h * w)
        .zip(y.data.chunks_exact_mut(oh * ow))
    {
        for (oy, &(y0, y1, fy)) in t.y.iter().enumerate() {
            let (r0, r1) = (&src[y0 * w..(y0 + 1) * w], &src[y1 * w..(y1 + 1) * w]);
            for (o, &(x0, x1, fx)) in dst[oy * ow..(oy + 1) * ow].iter_mut().zip(&t.x) {
                let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
                let bot = r1[x0] + (r1[x1] - r1[x0]) * fx;
                *o = top + (bot - top) * fy;
            }
        }
    }
}
