//! The CPU backend: capability detection, the GEMM driver over per-ISA micro-kernels, and one module
//! per op family. Everything here runs inside a prepared [`crate::Session`] and allocates nothing.
pub mod caps;
pub mod gemm;
pub mod kernels;
pub mod ops;
#[cfg(feature = "std")]
pub mod pool;
pub mod q16;
pub mod qconv;
pub mod qgemm;

/// Runs data-parallel work on the session's threads (or inline without std).
pub struct Par<'a> {
    #[cfg(feature = "std")]
    pub(crate) pool: Option<&'a pool::Pool>,
    #[cfg(not(feature = "std"))]
    pub(crate) _p: core::marker::PhantomData<&'a ()>,
}

impl Par<'_> {
    /// A single-threaded runner.
    pub fn single() -> Par<'static> {
        Par {
            #[cfg(feature = "std")]
            pool: None,
            #[cfg(not(feature = "std"))]
            _p: core::marker::PhantomData,
        }
    }

    /// Number of threads `run` uses.
    pub fn threads(&self) -> usize {
        #[cfg(feature = "std")]
        if let Some(p) = self.pool {
            return p.threads();
        }
        1
    }

    /// Calls `f(t)` for `t` in `0..threads` (at most `threads()`), in parallel; inline when `threads` is 1.
    /// For work too small to pay for waking every thread.
    pub fn run_on(&self, threads: usize, f: &(dyn Fn(usize) + Sync)) {
        if threads <= 1 {
            f(0)
        } else {
            self.run(&|t| {
                if t < threads {
                    f(t)
                }
            })
        }
    }

    /// Calls `f(t)` for each thread index `t` in `0..threads()`, in parallel.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        #[cfg(feature = "std")]
        if let Some(p) = self.pool {
            p.broadcast(f);
            return;
        }
        f(0)
    }
}

/// `dst.copy_from_slice(src)` for short runs (at most a few dozen elements: a packed panel row, an output
/// row's run): fixed-size pieces of 16, 8 and 4 the compiler keeps in registers, where a runtime length
/// is a `memmove` call (up to 6% of a whole-model run). A run of exactly 8, 16 or 32 (a whole panel row
/// of the NEON, AVX2 or AVX-512 tile) is one fixed-size copy: the pieces' loop tests cost more than the
/// copy there (packing B was 16% of PP-OCR cls f32's instructions on aarch64).
#[inline(always)]
pub(crate) fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    #[inline(always)]
    fn piece<T: Copy, const N: usize>(dst: &mut [T], src: &[T], i: &mut usize) {
        while *i + N <= dst.len() {
            if let (Ok(d), Ok(s)) = (
                <&mut [T; N]>::try_from(&mut dst[*i..*i + N]),
                <&[T; N]>::try_from(&src[*i..*i + N]),
            ) {
                *d = *s;
            }
            *i += N;
        }
    }
    #[inline(always)]
    fn whole<T: Copy, const N: usize>(dst: &mut [T], src: &[T]) {
        if let (Ok(d), Ok(s)) = (<&mut [T; N]>::try_from(dst), <&[T; N]>::try_from(src)) {
            *d = *s;
        }
    }
    let src = &src[..dst.len()];
    match dst.len() {
        8 => return whole::<T, 8>(dst, src),
        16 => return whole::<T, 16>(dst, src),
        32 => return whole::<T, 32>(dst, src),
        _ => {}
    }
    let mut i = 0;
    piece::<T, 16>(dst, src, &mut i);
    piece::<T, 8>(dst, src, &mut i);
    piece::<T, 4>(dst, src, &mut i);
    for (d, &s) in dst[i..].iter_mut().zip(&src[i..]) {
        *d = s;
    }
}

/// Where an input row's column phases go in a padded plane: phase `px` holds padded columns `j·s + px`
/// for `j < wq`, padded column `pl + x` being input column `x`; phase `px`'s row starts `px·pitch`
/// after phase 0's. The one place the phase-plane builders (f32 and int8 GEMM convs, f32 and int8
/// depthwise) do this column arithmetic.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PhaseRows {
    /// Left padding.
    pub pl: usize,
    /// Column stride (number of phases).
    pub s: usize,
    /// Phase width.
    pub wq: usize,
    /// Distance between two phases' rows.
    pub pitch: usize,
}

impl PhaseRows {
    /// Writes `row` into its phases at `dst`: `f(row[x])` at padded column `pl + x`, `pad` in every
    /// other column (`None`: the caller filled the phases with it already, as one fill instead of a
    /// short one per row edge: those are `memset` calls). At stride 2 the row's column pairs are split
    /// in one pass (the loop vectorizes); no divisions at stride 1.
    #[inline(always)]
    pub fn write<S: Copy, D: Copy>(
        &self,
        row: &[S],
        pad: Option<D>,
        f: impl Fn(S) -> D,
        dst: &mut [D],
    ) {
        let &PhaseRows { s, wq, pitch, .. } = self;
        assert!(s >= 1 && pitch >= wq && (s - 1) * pitch + wq <= dst.len());
        // SAFETY: the s rows lie in `dst` (asserted), are disjoint (pitch ≥ wq) and `dst` is borrowed
        // exclusively.
        unsafe { self.write_raw(row, pad, f, dst.as_mut_ptr()) }
    }

    /// [`PhaseRows::write`] through a raw pointer: for a caller whose threads write rows interleaved
    /// with other threads' rows (no `&mut` slice may span them).
    ///
    /// # Safety
    /// For every `px < s`, `wq` values at `dst + px·pitch` are valid, written by no one else
    /// meanwhile, and `pitch ≥ wq` (the rows are disjoint).
    #[inline(always)]
    pub unsafe fn write_raw<S: Copy, D: Copy>(
        &self,
        row: &[S],
        pad: Option<D>,
        f: impl Fn(S) -> D,
        dst: *mut D,
    ) {
        let split = |src: &[S], a: &mut [D], b: &mut [D]| {
            for ((a, b), p) in a.iter_mut().zip(b).zip(src.chunks_exact(2)) {
                *a = f(p[0]);
                *b = f(p[1]);
            }
        };
        // SAFETY: the caller's contract.
        unsafe { self.write_with(row, pad, &f, dst, split) }
    }

    /// [`PhaseRows::write`] of int8 values as they are (no padding written): at stride 2 the column
    /// pairs are split by [`split_pairs_i8`]'s vector loop (scalar, a byte at a time, it was ~5% of
    /// YOLOv8n's int8 run).
    #[inline(always)]
    pub fn write_i8(&self, row: &[i8], dst: &mut [i8]) {
        let &PhaseRows { s, wq, pitch, .. } = self;
        assert!(s >= 1 && pitch >= wq && (s - 1) * pitch + wq <= dst.len());
        // SAFETY: as in `write`.
        unsafe { self.write_with(row, None, &|v| v, dst.as_mut_ptr(), split_pairs_i8) }
    }

    /// [`PhaseRows::write_raw`] with `split(src, a, b)` writing `f(src[2t])` to `a[t]` and `f(src[2t+1])`
    /// to `b[t]` for every `t < a.len()` (`b` as long, `src` twice) at stride 2 (a `split` that ignores
    /// `f`, like [`split_pairs_i8`], goes with the identity).
    ///
    /// # Safety
    /// As [`PhaseRows::write_raw`].
    #[inline(always)]
    unsafe fn write_with<S: Copy, D: Copy>(
        &self,
        row: &[S],
        pad: Option<D>,
        f: &impl Fn(S) -> D,
        dst: *mut D,
        split: impl FnOnce(&[S], &mut [D], &mut [D]),
    ) {
        let &PhaseRows { pl, s, wq, pitch } = self;
        let w = row.len();
        // SAFETY: the caller's contract; each row is made a slice of its own.
        let out = |px: usize| unsafe { core::slice::from_raw_parts_mut(dst.add(px * pitch), wq) };
        if s == 2 {
            let (o0, o1) = (out(0), out(1));
            if let Some(pad) = pad {
                o0.fill(pad);
                o1.fill(pad);
            }
            // pair (2t, 2t+1) lands at column pl/2 + t of phase pl % 2 and (pl+1)/2 + t of the other
            let (oa, ob) = if pl.is_multiple_of(2) {
                (o0, o1)
            } else {
                (o1, o0)
            };
            let (oa, ob) = (
                &mut oa[(pl / 2).min(wq)..],
                &mut ob[pl.div_ceil(2).min(wq)..],
            );
            let pairs = row.chunks_exact(2);
            if let (Some(&last), Some(v)) = (pairs.remainder().first(), oa.get_mut(w / 2)) {
                *v = f(last);
            }
            let (na, nb) = (pairs.len().min(oa.len()), pairs.len().min(ob.len()));
            let m = na.min(nb);
            split(&row[..2 * m], &mut oa[..m], &mut ob[..m]);
            // (the one phase that may hold a pair more than the other fits)
            for (a, p) in oa[m..na].iter_mut().zip(pairs.clone().skip(m)) {
                *a = f(p[0]);
            }
            for (b, p) in ob[m..nb].iter_mut().zip(pairs.skip(m)) {
                *b = f(p[1]);
            }
            return;
        }
        if s == 1 {
            // (no divisions: this runs once per row of every plane, hundreds of small planes a layer)
            let o = out(0);
            let (first, end) = (pl.min(wq), (pl + w).min(wq));
            if let Some(pad) = pad {
                o[..first].fill(pad);
                o[end..].fill(pad);
            }
            for (v, &r) in o[first..end].iter_mut().zip(row) {
                *v = f(r);
            }
            return;
        }
        for px in 0..s {
            let o = out(px);
            // the phase's columns j with an input pixel: pl <= j·s + px < pl + w
            let first = pl.saturating_sub(px).div_ceil(s).min(wq);
            let end = (pl + w).saturating_sub(px).div_ceil(s).min(wq).max(first);
            if let Some(pad) = pad {
                o[..first].fill(pad);
                o[end..].fill(pad);
            }
            // (x0 < w whenever the phase has a column to fill; a narrow row can leave it past the end)
            let x0 = first * s + px - pl;
            for (v, &r) in o[first..end].iter_mut().zip(row.iter().skip(x0).step_by(s)) {
                *v = f(r);
            }
        }
    }
}

/// `a[t] = src[2t]`, `b[t] = src[2t + 1]` for `t < a.len()` (`b` as long, `src` twice): 16 pairs at a
/// time (SSE2's pack of the even and odd bytes, NEON's `ld2`), the rest one by one.
fn split_pairs_i8(src: &[i8], a: &mut [i8], b: &mut [i8]) {
    let m = a.len().min(b.len()).min(src.len() / 2);
    #[allow(unused_mut)]
    let mut t = 0;
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use core::arch::x86_64::*;
        while t + 16 <= m {
            // SAFETY: SSE2 is part of x86-64; 32 source bytes from 2t and 16 bytes at t of a and b are
            // in bounds (t + 16 ≤ m).
            unsafe {
                let p = src.as_ptr().add(2 * t) as *const __m128i;
                let (v0, v1) = (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)));
                let lo = _mm_set1_epi16(0xff);
                let even = _mm_packus_epi16(_mm_and_si128(v0, lo), _mm_and_si128(v1, lo));
                let odd = _mm_packus_epi16(_mm_srli_epi16::<8>(v0), _mm_srli_epi16::<8>(v1));
                _mm_storeu_si128(a.as_mut_ptr().add(t) as *mut __m128i, even);
                _mm_storeu_si128(b.as_mut_ptr().add(t) as *mut __m128i, odd);
            }
            t += 16;
        }
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    {
        use core::arch::aarch64::*;
        while t + 16 <= m {
            // SAFETY: NEON is part of aarch64; bounds as above.
            unsafe {
                let v = vld2q_s8(src.as_ptr().add(2 * t));
                vst1q_s8(a.as_mut_ptr().add(t), v.0);
                vst1q_s8(b.as_mut_ptr().add(t), v.1);
            }
            t += 16;
        }
    }
    for ((a, b), p) in a[t..m]
        .iter_mut()
        .zip(&mut b[t..m])
        .zip(src[2 * t..2 * m].chunks_exact(2))
    {
        *a = p[0];
        *b = p[1];
    }
}

/// Where each im2col row `(ch, ky, kx)` of a convolution starts in its zero-padded input split into
/// stride phases (phase `(py, px)` holds padded pixels `(i·s[0] + py, j·s[1] + px)` in planes `wq` wide),
/// in im2col order: tap `(ky, kx)` reads phase `(ky·d[0] mod s[0], kx·d[1] mod s[1])` from row
/// `ky·d[0] / s[0]`, column `kx·d[1] / s[1]`. `ch_stride` / `phase_stride`: the distance between two
/// channels' planes and between two phases' planes (the f32 and int8 layouts nest them the other way).
pub(crate) fn phase_taps(
    c: usize,
    wq: usize,
    k: [usize; 2],
    s: [usize; 2],
    d: [usize; 2],
    (ch_stride, phase_stride): (usize, usize),
) -> impl Iterator<Item = usize> {
    (0..c).flat_map(move |ch| {
        (0..k[0]).flat_map(move |ky| {
            let (py, ry) = ((ky * d[0]) % s[0], (ky * d[0]) / s[0]);
            (0..k[1]).map(move |kx| {
                let (px, rx) = ((kx * d[1]) % s[1], (kx * d[1]) / s[1]);
                ch * ch_stride + (py * s[1] + px) * phase_stride + ry * wq + rx
            })
        })
    })
}

/// The range of `0..n` that thread `t` of `threads` takes.
pub fn share(n: usize, t: usize, threads: usize) -> core::ops::Range<usize> {
    (n * t / threads)..(n * (t + 1) / threads)
}

/// A raw pointer that may cross threads: each thread writes a disjoint part of the data behind it.
pub struct SyncPtr<T = f32>(pub *mut T);
impl<T> Clone for SyncPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SyncPtr<T> {}
// SAFETY: users only write disjoint ranges from different threads (documented at each use).
unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper, not the raw field).
    #[inline]
    pub fn get(&self) -> *mut T {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// `write_i8` (the vector pair split at stride 2) writes what `write` with the identity writes, at
    /// strides 1-3, both parities of the left padding, rows of every length around the 16-pair vector
    /// (and phases narrower than the row), every other cell left as it was.
    #[test]
    fn write_i8_equals_write() {
        for s in 1..=3 {
            for pl in 0..=3 {
                for w in [0usize, 1, 2, 5, 31, 32, 33, 47, 64, 70] {
                    for wq in [(pl + w).div_ceil(s), (pl + w).div_ceil(s) + 2, w / 3 + 1] {
                        let at = PhaseRows {
                            pl,
                            s,
                            wq,
                            pitch: wq + 3,
                        };
                        let row: Vec<i8> = (0..w).map(|i| (i as i32 * 37 - 128) as i8).collect();
                        let len = (s - 1) * (wq + 3) + wq;
                        let (mut a, mut b) = (alloc::vec![99i8; len], alloc::vec![99i8; len]);
                        at.write(&row, None, |v| v, &mut a);
                        at.write_i8(&row, &mut b);
                        assert_eq!(a, b, "s {s} pl {pl} w {w} wq {wq}");
                    }
                }
            }
        }
    }
}
