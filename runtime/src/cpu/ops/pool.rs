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

/// Max pooling (any element type, `max` its maximum): with dilation 1 the kernel's rows are folded first
/// (straight runs that vectorize), then the columns of that one row — O(kh + kw) per output instead of
/// O(kh·kw) (YOLO's SPP pools 13×13 windows at stride 1). Cells in the padding (and beyond it, ceil mode)
/// never count, so each window is clipped to the input; max is associative and exact, so the values equal
/// the window walk's ([`windows`], which dilated windows take).
pub fn max_pool<T: Copy>(p: &Pool2d, x: View<T>, y: ViewMut<T>, min: T, max: impl Fn(T, T) -> T) {
    let (h, w) = (x.shape[2], x.shape[3]);
    let (oh, ow) = (y.shape[2], y.shape[3]);
    if p.dilations != [1, 1] || w > SEPARABLE_MAX_W || h == 0 || w == 0 {
        return windows(p, x, y, min, max, |a, _| a);
    }
    let (kh, kw) = (p.kernel[0] as usize, p.kernel[1] as usize);
    let (sh, sw) = (p.strides[0] as usize, p.strides[1] as usize);
    let (pt, pl) = (p.pads[0] as usize, p.pads[1] as usize);
    // the input range [start, end) a window starting at `o·s − pad` covers
    let clip = |o: usize, s: usize, pad: usize, k: usize, n: usize| {
        let a = (o * s).saturating_sub(pad).min(n);
        let b = (o * s + k).saturating_sub(pad).min(n);
        (a, b.max(a))
    };
    let mut row = [min; SEPARABLE_MAX_W];
    let row = &mut row[..w];
    for (src, dst) in x
        .data
        .chunks_exact(h * w)
        .zip(y.data.chunks_exact_mut(oh * ow))
    {
        for (oy, drow) in dst.chunks_exact_mut(ow).enumerate() {
            row.fill(min);
            let (y0, y1) = clip(oy, sh, pt, kh, h);
            for r in y0..y1 {
                for (a, &v) in row.iter_mut().zip(&src[r * w..(r + 1) * w]) {
                    *a = max(*a, v);
                }
            }
            if kw == 2 && sw == 2 && pl == 0 && row.len() >= 2 * ow {
                // the common 2×2 stride-2 window as disjoint pairs (the same folds from `min`, no
                // per-output slice bounds)
                for (d, pair) in drow.iter_mut().zip(row.chunks_exact(2)) {
                    *d = max(max(min, pair[0]), pair[1]);
                }
                continue;
            }
            for (ox, d) in drow.iter_mut().enumerate() {
                let (x0, x1) = clip(ox, sw, pl, kw, w);
                *d = row[x0..x1].iter().fold(min, |a, &c| max(a, c));
            }
        }
    }
}

/// The window walk shared by every pooling kernel (any element type): folds each window's cells inside
/// the input with `step` from `init` (row-major), then `finish(acc, (cells inside, cells in the declared
/// padding))` gives the output. Only the taps inside the input are visited (the padded count is
/// arithmetic), so a hostile kernel size costs no more than the input it covers.
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
    if oh == 0 || ow == 0 {
        return;
    }
    // per axis, for the window of output `o`: the taps [lo, hi) that land inside the input (tap t reads
    // o·s − pad + t·d) and how many land inside the declared padded extent [−pad, n + pad_end)
    let span = |o: usize, a: usize, n: usize| {
        let (k, s, d) = (
            p.kernel[a] as i64,
            p.strides[a] as i64,
            p.dilations[a].max(1) as i64,
        );
        let pad_end = p.pads[a + 2] as i64 - p.ceil_extra[a] as i64;
        let c0 = o as i64 * s - p.pads[a] as i64;
        let first = if c0 >= 0 { 0 } else { (-c0 + d - 1) / d };
        let upto = |end: i64| {
            if end > c0 {
                ((end - c0 + d - 1) / d).min(k)
            } else {
                0
            }
        };
        let (lo, hi) = (first.min(k), upto(n as i64));
        let declared = upto(n as i64 + pad_end);
        (lo as usize, hi.max(lo) as usize, c0, d, declared as usize)
    };
    let plane = h * w;
    for (pi, dst) in y.data.chunks_exact_mut(oh * ow).enumerate() {
        let src = &x.data[(pi * plane).min(x.data.len())..((pi + 1) * plane).min(x.data.len())];
        for oy in 0..oh {
            let (ylo, yhi, y0, dh, ydecl) = span(oy, 0, h);
            for ox in 0..ow {
                let (xlo, xhi, x0, dw, xdecl) = span(ox, 1, w);
                let mut acc = init;
                for ky in ylo..yhi {
                    let row = (y0 + ky as i64 * dh) as usize * w;
                    for kx in xlo..xhi {
                        acc = step(acc, src[row + (x0 + kx as i64 * dw) as usize]);
                    }
                }
                let count = (yhi - ylo) * (xhi - xlo);
                let declared = ydecl.saturating_mul(xdecl).saturating_sub(count);
                dst[oy * ow + ox] = finish(acc, (count, declared));
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// `max_pool` equals the window walk on `x` (shape `xs`, output `[1, c, oh, ow]` from `ys`).
    fn same<T: Copy + Default + PartialEq + core::fmt::Debug>(
        p: &Pool2d,
        x: &[T],
        xs: [usize; 4],
        [c, oh, ow]: [usize; 3],
        min: T,
        max: impl Fn(T, T) -> T + Copy,
        what: &str,
    ) {
        let ys = [1, c, oh, ow];
        let (mut want, mut got) = (
            vec![T::default(); c * oh * ow],
            vec![T::default(); c * oh * ow],
        );
        let view = || View {
            data: x,
            shape: &xs,
        };
        let out = |d| ViewMut {
            data: d,
            shape: &ys,
        };
        windows(p, view(), out(&mut want), min, max, |a, _| a);
        max_pool(p, view(), out(&mut got), min, max);
        assert_eq!(got, want, "{} {what}", core::any::type_name::<T>());
    }

    /// The separable max path equals the window walk exactly (f32 and int8) over kernels, strides,
    /// paddings (YOLO's SPP: 5, 9, 13 at stride 1 with "same" padding) and ceil-mode extras, with tails.
    #[test]
    fn separable_max_equals_the_window_walk() {
        let mut seed = 7u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed >> 8
        };
        let (c, h, w) = (3usize, 13usize, 11usize);
        let xf: Vec<f32> = (0..c * h * w)
            .map(|_| (next() % 2001) as f32 / 100.0 - 10.0)
            .collect();
        let xq: Vec<i8> = xf.iter().map(|&v| (v * 12.0) as i8).collect();
        let mut cases = 0;
        for k in [1u32, 2, 3, 5, 9, 13] {
            for s in [1u32, 2, 3] {
                for pad in [0u32, k / 2, k.saturating_sub(1)] {
                    for extra in [0u32, 1] {
                        let pads = [pad, pad, pad + extra, pad + extra];
                        let p = Pool2d {
                            kind: PoolKind::Max,
                            kernel: [k, k],
                            strides: [s, s],
                            dilations: [1, 1],
                            pads,
                            ceil_extra: [extra, extra],
                        };
                        let span = |n: usize, pb: u32, pe: u32| {
                            (n + (pb + pe) as usize)
                                .checked_sub(k as usize)
                                .map(|v| v / s as usize + 1)
                        };
                        let (Some(oh), Some(ow)) =
                            (span(h, pads[0], pads[2]), span(w, pads[1], pads[3]))
                        else {
                            continue;
                        };
                        let (xs, ys) = ([1, c, h, w], [c, oh, ow]);
                        let what = format!("k{k} s{s} pad{pad} extra{extra}");
                        same(&p, &xf, xs, ys, f32::NEG_INFINITY, f32::max, &what);
                        same(&p, &xq, xs, ys, i8::MIN, |a: i8, v| a.max(v), &what);
                        cases += 1;
                    }
                }
            }
        }
        assert!(cases > 60, "{cases} cases");
    }
}
