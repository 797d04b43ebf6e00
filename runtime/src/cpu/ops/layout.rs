//! Data-movement ops: concat, split, transpose, and the axis-separable gather that implements Slice,
//! Pad (all modes) and nearest Resize from per-axis index maps built at session creation.
use super::{View, ViewMut};
use crate::cpu::Par;
use crate::ir::{CoordMode, NearestMode, PadMode};
use alloc::vec::Vec;

/// Per-axis source offsets (element index × source stride); negative means "fill".
pub struct GatherMaps {
    /// One map per output axis.
    pub maps: Vec<Vec<isize>>,
    /// Value for filled cells.
    pub fill: f32,
    /// The last two axes' maps as one (entry `i·n + j` is `maps[r−2][i] + maps[r−1][j]`, negative where
    /// either is) when the last axis is short: [`gather`] then works on rows of the two axes together,
    /// where rows of a few values cost their index arithmetic per row (silero VAD's [64, 129, 4]
    /// slices: 8256 rows of 4). `None` otherwise.
    pub tail: Option<Vec<isize>>,
}

/// The last axis at most this long has its map merged with the one before ([`GatherMaps::tail`]), when
/// the two together hold at most [`TAIL_MAX`] entries.
const TAIL_LAST: usize = 16;
/// Most entries of a merged [`GatherMaps::tail`].
const TAIL_MAX: usize = 4096;

impl GatherMaps {
    /// Maps with `fill`, the last two merged where that pays ([`GatherMaps::tail`]).
    fn new(maps: Vec<Vec<isize>>, fill: f32) -> GatherMaps {
        let r = maps.len();
        let tail = (r >= 2)
            .then(|| (&maps[r - 2], &maps[r - 1]))
            .filter(|(a, b)| b.len() < TAIL_LAST && a.len() * b.len() <= TAIL_MAX)
            .map(|(a, b)| {
                a.iter()
                    .flat_map(|&i| {
                        b.iter()
                            .map(move |&j| if i < 0 || j < 0 { -1 } else { i + j })
                    })
                    .collect()
            });
        GatherMaps { maps, fill, tail }
    }
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = alloc::vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// Maps for a strided slice.
pub fn slice_maps(x: &[usize], y: &[usize], starts: &[i64], steps: &[i64]) -> GatherMaps {
    let st = strides(x);
    let maps = (0..x.len())
        .map(|d| {
            (0..y[d])
                .map(|i| (starts[d] + i as i64 * steps[d]) as isize * st[d] as isize)
                .collect()
        })
        .collect();
    GatherMaps::new(maps, 0.0)
}

/// Maps for padding (positive) or cropping (negative) in any mode.
pub fn pad_maps(x: &[usize], y: &[usize], pads: &[i64], mode: PadMode) -> GatherMaps {
    let st = strides(x);
    let r = x.len();
    let maps = (0..r)
        .map(|d| {
            let n = x[d] as i64;
            (0..y[d])
                .map(|i| {
                    let mut s = i as i64 - pads[d];
                    match mode {
                        PadMode::Constant(_) => {}
                        PadMode::Edge => s = s.clamp(0, n - 1),
                        PadMode::Reflect => {
                            if n == 1 {
                                s = 0;
                            } else {
                                let period = 2 * (n - 1);
                                s = s.rem_euclid(period);
                                if s >= n {
                                    s = period - s;
                                }
                            }
                        }
                    }
                    if s < 0 || s >= n {
                        -1
                    } else {
                        s as isize * st[d] as isize
                    }
                })
                .collect()
        })
        .collect();
    let fill = if let PadMode::Constant(v) = mode {
        v
    } else {
        0.0
    };
    GatherMaps::new(maps, fill)
}

/// Source coordinate of output index `o` under a coordinate transformation.
pub fn source_coord(coord: CoordMode, o: usize, in_len: usize, out_len: usize, scale: f32) -> f32 {
    let o = o as f32;
    match coord {
        CoordMode::HalfPixel => (o + 0.5) / scale - 0.5,
        CoordMode::PytorchHalfPixel => {
            if out_len > 1 {
                (o + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        CoordMode::Asymmetric => o / scale,
        CoordMode::AlignCorners => {
            // ONNX uses the unrounded resized length in·scale here (it equals out_len when sizes are given)
            let resized = in_len as f32 * scale;
            if out_len == 1 || resized <= 1.0 {
                0.0
            } else {
                o * (in_len as f32 - 1.0) / (resized - 1.0)
            }
        }
        CoordMode::TfHalfPixelForNearest => (o + 0.5) / scale,
    }
}

/// Maps for nearest-neighbour resize.
pub fn nearest_maps(
    x: &[usize],
    y: &[usize],
    scales: &[f32],
    coord: CoordMode,
    mode: NearestMode,
) -> GatherMaps {
    let st = strides(x);
    let maps = (0..x.len())
        .map(|d| {
            (0..y[d])
                .map(|o| {
                    let c = source_coord(coord, o, x[d], y[d], scales[d]);
                    let i = match mode {
                        NearestMode::RoundPreferFloor => libm::ceilf(c - 0.5),
                        NearestMode::RoundPreferCeil => libm::floorf(c + 0.5),
                        NearestMode::Floor => libm::floorf(c),
                        NearestMode::Ceil => libm::ceilf(c),
                    };
                    (i.clamp(0.0, (x[d] - 1) as f32) as isize) * st[d] as isize
                })
                .collect()
        })
        .collect();
    GatherMaps::new(maps, 0.0)
}

/// `y[i0,..,in] = x[Σ maps_d[i_d]]`, or `fill` where any map is negative. Threads split the rows.
pub fn gather<T: Copy + Send + Sync>(
    par: &Par,
    g: &GatherMaps,
    fill: T,
    x: View<T>,
    y: ViewMut<T>,
) {
    let r = y.shape.len();
    if r == 0 {
        y.data[0] = x.data[0];
        return;
    }
    if y.data.is_empty() {
        return; // a zero-sized axis: nothing to write (and no index arithmetic on it)
    }
    // with a merged tail, the last two axes are one: rank r − 1, rows of both
    let (r, inner, last) = match &g.tail {
        Some(t) => (r - 1, t.len(), t),
        None => (r, y.shape[r - 1], &g.maps[r - 1]),
    };
    let outer = y.data.len().checked_div(inner).unwrap_or(0);
    let threads = if y.data.len() >= 1 << 15 {
        par.threads()
    } else {
        1
    };
    let yp = crate::cpu::SyncPtr(y.data.as_mut_ptr());
    let shape = y.shape;
    // the last axis reads consecutive sources, each `f` times (a copy for f = 1, nearest upsampling for
    // f = 2, 3, ...): a run, not a gather
    let run =
        (1..=inner.min(8)).find(|&f| last.iter().enumerate().all(|(i, &m)| m == (i / f) as isize));
    par.run_on(threads, &|t| {
        let rows = crate::cpu::share(outer, t, threads);
        let mut idx = [0usize; 8];
        let mut rem = rows.start;
        for d in (0..r - 1).rev() {
            idx[d] = rem % shape[d];
            rem /= shape[d];
        }
        let first = rows.start;
        let mut prev = None;
        for o in rows {
            let mut base = 0isize;
            let mut filled = false;
            for (map, &i) in g.maps[..r - 1].iter().zip(&idx) {
                let m = map[i];
                filled |= m < 0;
                base += m;
            }
            // SAFETY: threads write disjoint rows.
            let out = unsafe { core::slice::from_raw_parts_mut(yp.get().add(o * inner), inner) };
            let key = (!filled).then_some(base);
            if o > first && key.is_some() && key == prev {
                // the same source row as the row just written (this thread's): copy it
                // SAFETY: row o − 1 was written by this thread and does not overlap row o.
                let before = unsafe {
                    core::slice::from_raw_parts(yp.get().add((o - 1) * inner) as *const T, inner)
                };
                out.copy_from_slice(before);
            } else if filled {
                out.iter_mut().for_each(|v| *v = fill);
            } else if let Some(f) = run {
                let src = &x.data[base as usize..base as usize + inner.div_ceil(f)];
                match f {
                    1 => out.copy_from_slice(src),
                    2 => repeat::<T, 2>(out, src),
                    3 => repeat::<T, 3>(out, src),
                    4 => repeat::<T, 4>(out, src),
                    _ => {
                        for (o, &v) in out.chunks_mut(f).zip(src) {
                            o.fill(v);
                        }
                    }
                }
            } else {
                for (v, &m) in out.iter_mut().zip(last) {
                    *v = if m < 0 {
                        fill
                    } else {
                        x.data[(base + m) as usize]
                    };
                }
            }
            prev = key;
            for d in (0..r - 1).rev() {
                idx[d] += 1;
                if idx[d] < shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    });
}

/// `out[i] = src[i / F]`: whole groups as fixed-size stores (a `fill` per group would be a memset call
/// per 2–4 elements), then the partial last group.
#[inline]
fn repeat<T: Copy, const F: usize>(out: &mut [T], src: &[T]) {
    let whole = out.len() / F * F;
    let (body, tail) = out.split_at_mut(whole);
    for (o, &v) in body.chunks_exact_mut(F).zip(src) {
        o.copy_from_slice(&[v; F]);
    }
    if let Some(&v) = src.get(whole / F) {
        tail.iter_mut().for_each(|o| *o = v);
    }
}

/// Axis permutation.
pub fn transpose<T: Copy>(perm: &[u32], x: View<T>, y: ViewMut<T>) {
    let r = y.shape.len();
    if r == 0 {
        y.data.copy_from_slice(x.data);
        return;
    }
    let xs = strides(x.shape);
    let mut s = [0usize; 8];
    for d in 0..r {
        s[d] = xs[perm[d] as usize];
    }
    let inner = y.shape[r - 1];
    let outer = y.data.len().checked_div(inner).unwrap_or(0);
    let mut idx = [0usize; 8];
    for o in 0..outer {
        let base: usize = (0..r - 1).map(|d| idx[d] * s[d]).sum();
        let out = &mut y.data[o * inner..(o + 1) * inner];
        let sl = s[r - 1];
        for (j, v) in out.iter_mut().enumerate() {
            *v = x.data[base + j * sl];
        }
        for d in (0..r - 1).rev() {
            idx[d] += 1;
            if idx[d] < y.shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// Concatenation along `axis`; `copy(k, src, dst)` moves one run of input `k` (a plain copy, or a rescale
/// for int8 inputs whose parameters differ from the output's).
pub fn concat<T: Copy>(
    axis: usize,
    xs: &[View<T>],
    y: ViewMut<T>,
    copy: impl Fn(usize, &[T], &mut [T]),
) {
    let outer: usize = y.shape[..axis].iter().product();
    let inner: usize = y.shape[axis + 1..].iter().product();
    let mut off = 0;
    for o in 0..outer {
        for (k, x) in xs.iter().enumerate() {
            let n = x.shape[axis] * inner;
            copy(k, &x.data[o * n..(o + 1) * n], &mut y.data[off..off + n]);
            off += n;
        }
    }
}
