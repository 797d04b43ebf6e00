//! Max/average pooling over 2-D windows and global pooling.
use super::{View, ViewMut};
use crate::ir::{Pool2d, PoolKind};

/// 2-D pooling, NCHW.
pub fn pool2d(p: &Pool2d, x: View, y: ViewMut) {
    match p.kind {
        PoolKind::Max => max_pool(p, x, y, f32::NEG_INFINITY, f32::max),
        PoolKind::Avg { count_include_pad } => windows(
            p,
            x,
            y,
            0.0,
            |a, v| a + v,
            |a, (count, padded)| {
                let div = if count_include_pad {
                    count + padded
                } else {
                    count
                };
                if div == 0 {
                    0.0
                } else {
                    a / div as f32
                }
            },
        ),
    }
}

/// Widest row the separable max path keeps on the stack.
const SEPARABLE_MAX_W: usize = 4096;

/// Max pooling (any element type, `max` its maximum): where every window is whole (no padding, no
/// dilation) the kernel's rows are folded first (straight runs that vectorize), then the columns of
/// that one row (max is associative and exact, so the values equal the window walk's); otherwise
/// [`windows`].
pub fn max_pool<T: Copy>(p: &Pool2d, x: View<T>, y: ViewMut<T>, min: T, max: impl Fn(T, T) -> T) {
    let (h, w) = (x.shape[2], x.shape[3]);
    let (oh, ow) = (y.shape[2], y.shape[3]);
    let whole = p.pads == [0; 4] && p.ceil_extra == [0; 2] && p.dilations == [1, 1];
    if !whole || w > SEPARABLE_MAX_W || h == 0 || w == 0 {
        return windows(p, x, y, min, max, |a, _| a);
    }
    let (kh, kw) = (p.kernel[0] as usize, p.kernel[1] as usize);
    let (sh, sw) = (p.strides[0] as usize, p.strides[1] as usize);
    let mut row = [min; SEPARABLE_MAX_W];
    let row = &mut row[..w];
    for (src, dst) in x
        .data
        .chunks_exact(h * w)
        .zip(y.data.chunks_exact_mut(oh * ow))
    {
        for (oy, drow) in dst.chunks_exact_mut(ow).enumerate() {
            row.fill(min);
            for ky in 0..kh {
                let r = (oy * sh + ky) * w;
                for (a, &v) in row.iter_mut().zip(&src[r..r + w]) {
                    *a = max(*a, v);
                }
            }
            if kw == 2 && sw == 2 && row.len() >= 2 * ow {
                // the common 2×2 stride-2 window as disjoint pairs (the same folds from `min`, no
                // per-output slice bounds)
                for (d, pair) in drow.iter_mut().zip(row.chunks_exact(2)) {
                    *d = max(max(min, pair[0]), pair[1]);
                }
                continue;
            }
            for (ox, d) in drow.iter_mut().enumerate() {
                *d = row[ox * sw..ox * sw + kw]
                    .iter()
                    .fold(min, |a, &c| max(a, c));
            }
        }
    }
}

/// The window walk shared by every pooling kernel (any element type): folds each window's cells with
/// `step` from `init`, then `finish(acc, (cells inside, cells in the declared padding))` gives the output.
pub fn windows<T: Copy, A: Copy>(
    p: &Pool2d,
    x: View<T>,
    y: ViewMut<T>,
    init: A,
    step: impl Fn(A, T) -> A,
    finish: impl Fn(A, (usize, usize)) -> T,
) {
    let (h, w) = (x.shape[2], x.shape[3]);
    let (oh, ow) = (y.shape[2], y.shape[3]);
    let (kh, kw) = (p.kernel[0] as isize, p.kernel[1] as isize);
    let (sh, sw) = (p.strides[0] as isize, p.strides[1] as isize);
    let (dh, dw) = (p.dilations[0] as isize, p.dilations[1] as isize);
    let (pt, pl) = (p.pads[0] as isize, p.pads[1] as isize);
    for (src, dst) in x
        .data
        .chunks_exact(h * w)
        .zip(y.data.chunks_exact_mut(oh * ow))
    {
        for oy in 0..oh as isize {
            for ox in 0..ow as isize {
                let (y0, x0) = (oy * sh - pt, ox * sw - pl);
                let mut acc = init;
                let mut count = 0usize;
                let mut padded = 0usize;
                for ky in 0..kh {
                    let iy = y0 + ky * dh;
                    for kx in 0..kw {
                        let ix = x0 + kx * dw;
                        if iy < 0 || iy >= h as isize || ix < 0 || ix >= w as isize {
                            // cells beyond the declared padding (ceil mode) never count
                            if iy >= -pt
                                && iy < h as isize + (p.pads[2] - p.ceil_extra[0]) as isize
                                && ix >= -pl
                                && ix < w as isize + (p.pads[3] - p.ceil_extra[1]) as isize
                            {
                                padded += 1;
                            }
                            continue;
                        }
                        acc = step(acc, src[iy as usize * w + ix as usize]);
                        count += 1;
                    }
                }
                dst[oy as usize * ow + ox as usize] = finish(acc, (count, padded));
            }
        }
    }
}

/// Global pooling over axes 2.. .
pub fn global(kind: PoolKind, x: View, y: ViewMut) {
    let inner: usize = x.shape[2..].iter().product();
    for (o, src) in y.data.iter_mut().zip(x.data.chunks_exact(inner.max(1))) {
        *o = match kind {
            PoolKind::Max => src.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)),
            PoolKind::Avg { .. } => sum8(src) / inner as f32,
        };
    }
}

/// Sum with 8 independent partial sums, so the loop vectorizes (a single running sum cannot be reordered).
fn sum8(v: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}
