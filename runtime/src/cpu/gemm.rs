//! The f32 GEMM driver: `C[m×n] = A[m×k] · B[k×n]` (+ bias, activation) on packed panels.
//! Weights are packed once at session creation; activations are packed per run into session scratch,
//! in column chunks that fit L2. Threads split the column chunks (or the row panels when there are few
//! chunks); each writes its own part of C.
use super::kernels::Gemm;
use super::{copy_run, share, Par, SyncPtr};
use crate::ir::Unary;
use alloc::vec;
use alloc::vec::Vec;

/// Floats of packed B per chunk we aim for (≈128 KiB, half a typical L2).
const CHUNK_FLOATS: usize = 32 * 1024;

/// Geometry of an implicit im2col matrix over one image: B\[(c,ky,kx), (oy,ox)\].
#[derive(Clone, Copy, Debug)]
pub struct Im2col<'a> {
    /// Input channels of this group, `[c][h][w]`.
    pub x: &'a [f32],
    /// Channels.
    pub c: usize,
    /// Input height, width.
    pub hw: [usize; 2],
    /// Kernel height, width.
    pub k: [usize; 2],
    /// Strides.
    pub s: [usize; 2],
    /// Dilations.
    pub d: [usize; 2],
    /// Top and left padding.
    pub pad: [usize; 2],
    /// Output height, width.
    pub out: [usize; 2],
}

/// A convolution over its zero-padded input split into stride phases (for strides `s`, `s[0]·s[1]`
/// phase blocks, each `c` planes of `hw` = `[hq, wq]`: phase `(py, px)` holds padded pixels
/// `(i·s[0] + py, j·s[1] + px)`), in phase column coordinates: tap `(ky, kx)` of channel `ch` reads phase
/// `(ky·d[0] mod s[0], kx·d[1] mod s[1])` at rows `oy + ky·d[0] / s[0]`, columns `ox + kx·d[1] / s[1]`,
/// so `B[(ch,ky,kx), j]` is `x[offs[p] + j]` ([`Shifted::taps`]): the micro-kernel reads B's rows in
/// place, with no packing and no border checks. Column `j` is output pixel `(j / wq, j % wq)`, real
/// where `j % wq < out[1]`; the others are computed and dropped (`wq − out[1]` per output row). `x`
/// holds `nr` floats of slack past the planes (the last panel reads a whole panel width).
#[derive(Clone, Copy, Debug)]
pub struct Shifted<'a> {
    /// Phase blocks (`[s0·s1][c][hq][wq]`), then the slack.
    pub x: &'a [f32],
    /// Phase plane height and width.
    pub hw: [usize; 2],
    /// Output height, width.
    pub out: [usize; 2],
    /// Where each row of B starts in `x` (`k` offsets, [`Shifted::taps`]).
    pub offs: &'a [usize],
}

impl Shifted<'_> {
    /// Columns of the GEMM in phase coordinates (the last output row ends at its last real pixel).
    pub fn cols(&self) -> usize {
        (self.out[0] - 1) * self.hw[1] + self.out[1]
    }

    /// The row offsets of B for `c` channels over phase planes of `[hq, wq]`, kernel `k`, strides `s`
    /// and dilations `d`, in im2col order `(ch, ky, kx)`.
    pub fn taps(
        c: usize,
        [hq, wq]: [usize; 2],
        k: [usize; 2],
        s: [usize; 2],
        d: [usize; 2],
    ) -> Vec<usize> {
        let plane = hq * wq;
        super::phase_taps(c, wq, k, s, d, (plane, c * plane)).collect()
    }
}

/// Where the A operand comes from.
#[derive(Clone, Copy)]
pub enum ASrc<'a> {
    /// Already packed in MR panels (weights).
    Packed(&'a [f32]),
    /// `a[i*rs + p*cs]`, packed per run.
    Strided(&'a [f32], usize, usize),
}

/// Where the B operand comes from.
#[derive(Clone, Copy)]
pub enum BSrc<'a> {
    /// Already packed in NR panels over all n columns (weights).
    Packed(&'a [f32]),
    /// `b[p*rs + j*cs]`, packed per run.
    Strided(&'a [f32], usize, usize),
    /// Implicit im2col of a convolution input, packed per run.
    Im2col(Im2col<'a>),
}

/// What is applied to C after the product: per-row bias, per-column bias, activation, then a per-row
/// affine.
#[derive(Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// Added to every element of row i.
    pub row_bias: Option<&'a [f32]>,
    /// Added to every element of column j.
    pub col_bias: Option<&'a [f32]>,
    /// Applied after the biases.
    pub act: Option<Unary>,
    /// Row i's scale and shift after `act`: `v·scale[i] + shift[i]` ([`apply_post`]).
    pub post: Option<(&'a [f32], &'a [f32])>,
}

/// Packs `m×k` values `get(i, p)` into MR panels (done once for weights).
pub fn pack_a(g: &Gemm, m: usize, k: usize, get: impl Fn(usize, usize) -> f32) -> Vec<f32> {
    let panels = m.div_ceil(g.mr);
    let mut out = vec![0.0; panels * g.mr * k];
    for i in 0..m {
        let (pi, r) = (i / g.mr, i % g.mr);
        for p in 0..k {
            out[(pi * k + p) * g.mr + r] = get(i, p);
        }
    }
    out
}

/// Packs `k×n` values `get(p, j)` into NR panels (done once for weights).
pub fn pack_b(g: &Gemm, k: usize, n: usize, get: impl Fn(usize, usize) -> f32) -> Vec<f32> {
    let panels = n.div_ceil(g.nr);
    let mut out = vec![0.0; panels * g.nr * k];
    for j in 0..n {
        let (pj, c) = (j / g.nr, j % g.nr);
        for p in 0..k {
            out[(pj * k + p) * g.nr + c] = get(p, j);
        }
    }
    out
}

fn chunk_cols(g: &Gemm, k: usize, n: usize) -> usize {
    let nc = (CHUNK_FLOATS / k.max(1)) / g.nr * g.nr;
    nc.clamp(g.nr, 64 * g.nr).min(n.div_ceil(g.nr) * g.nr)
}

/// Scratch floats [`gemm`] needs for this problem with `threads` threads.
pub fn scratch_floats(
    g: &Gemm,
    m: usize,
    n: usize,
    k: usize,
    a_packed: bool,
    b_packed: bool,
    threads: usize,
) -> usize {
    let a = if a_packed {
        0
    } else {
        m.div_ceil(g.mr) * g.mr * k
    };
    let b = if b_packed {
        0
    } else {
        threads * chunk_cols(g, k, n) * k
    };
    a + b
}

/// [`pack_b_chunk`] compiled for AVX2 (and AVX-512 where the tile is 512-bit): its many short row copies
/// then stay vector moves instead of a `memmove` call each (18% of an f32 det736 run).
///
/// # Safety
/// The CPU has AVX2 and FMA (the AVX2 paths), plus AVX-512 F when `g` is the 512-bit tile.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_b_chunk_avx2(g: &Gemm, b: &BSrc, k: usize, j0: usize, cols: usize, dst: &mut [f32]) {
    pack_b_chunk(g, b, k, j0, cols, dst)
}

/// [`pack_b_chunk_avx2`] with AVX-512 F.
///
/// # Safety
/// The CPU has AVX-512 F, AVX2 and FMA.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma,avx512f")]
unsafe fn pack_b_chunk_avx512(
    g: &Gemm,
    b: &BSrc,
    k: usize,
    j0: usize,
    cols: usize,
    dst: &mut [f32],
) {
    pack_b_chunk(g, b, k, j0, cols, dst)
}

/// Packs with the code compiled for the path's CPU features.
fn pack_b_for(g: &Gemm, b: &BSrc, k: usize, j0: usize, cols: usize, dst: &mut [f32]) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if matches!(
        g.isa,
        crate::cpu::caps::Isa::Avx2 | crate::cpu::caps::Isa::AvxVnni
    ) {
        // SAFETY: the session selects an AVX2 path only on a CPU with AVX2 and FMA; the 512-bit tile
        // only where AVX-512 F exists.
        return unsafe {
            if g.nr == crate::cpu::kernels::x86::NR512 {
                pack_b_chunk_avx512(g, b, k, j0, cols, dst)
            } else {
                pack_b_chunk_avx2(g, b, k, j0, cols, dst)
            }
        };
    }
    pack_b_chunk(g, b, k, j0, cols, dst)
}

/// Where output columns `ox..ox + len` (stride `s`, dilated tap offset `off = k·d − pad`) read inside a
/// row of `w` inputs: the range of `t` in `0..len` with `0 ≤ ox·s + off + t·s < w`.
#[inline(always)]
pub(crate) fn inside(x0: isize, s: isize, len: usize, w: usize) -> core::ops::Range<usize> {
    if x0 >= 0 && x0 + (len as isize - 1) * s < w as isize {
        // all inside (the common case away from the borders)
        return 0..len;
    }
    if s == 1 {
        // no divisions on the common path
        let lo = (-x0).clamp(0, len as isize) as usize;
        let hi = (w as isize - x0).clamp(0, len as isize) as usize;
        return lo.min(hi)..hi;
    }
    let lo = if x0 < 0 {
        ((-x0 + s - 1) / s) as usize
    } else {
        0
    };
    let hi = if x0 >= w as isize {
        0
    } else {
        (((w as isize - 1 - x0) / s) as usize + 1).min(len)
    };
    lo.min(hi)..hi
}

#[inline(always)]
fn pack_b_chunk(g: &Gemm, b: &BSrc, k: usize, j0: usize, cols: usize, dst: &mut [f32]) {
    let nr = g.nr;
    match *b {
        BSrc::Packed(_) => {}
        BSrc::Strided(src, rs, cs) => {
            for (pj, panel) in dst
                .chunks_exact_mut(k * nr)
                .take(cols.div_ceil(nr))
                .enumerate()
            {
                let jb = j0 + pj * nr;
                let w = nr.min(j0 + cols - jb);
                for p in 0..k {
                    let row = &mut panel[p * nr..p * nr + nr];
                    if cs == 1 {
                        copy_run(&mut row[..w], &src[p * rs + jb..p * rs + jb + w]);
                    } else {
                        for (c, v) in row[..w].iter_mut().enumerate() {
                            *v = src[p * rs + (jb + c) * cs];
                        }
                    }
                    row[w..].iter_mut().for_each(|v| *v = 0.0);
                }
            }
        }
        BSrc::Im2col(ic) => {
            let [h, w] = ic.hw;
            let [kh, kw] = ic.k;
            let ow = ic.out[1];
            let pointwise = kh == 1 && kw == 1 && ic.s == [1, 1] && ic.pad == [0, 0];
            for (pj, panel) in dst
                .chunks_exact_mut(k * nr)
                .take(cols.div_ceil(nr))
                .enumerate()
            {
                let jb = j0 + pj * nr;
                let wdt = nr.min(j0 + cols - jb);
                if pointwise {
                    // row p of the panel is channel p's plane from column jb (iterators: no index
                    // arithmetic or bounds tests per row beyond the run's own)
                    debug_assert!(ic.x.len() >= k * h * w, "a plane per row of the panel");
                    let planes = ic.x[jb..].chunks(h * w);
                    for (row, plane) in panel.chunks_exact_mut(nr).take(k).zip(planes) {
                        copy_run(&mut row[..wdt], &plane[..wdt]);
                        if wdt < nr {
                            row[wdt..].fill(0.0);
                        }
                    }
                    continue;
                }
                // the panel's columns in runs that lie on one output row each: per (c, ky, kx) row of the
                // panel a run is a strided run of one input row (contiguous for stride 1), its border
                // columns (padding) clipped arithmetically
                let sx = ic.s[1] as isize;
                let mut off = 0;
                while off < wdt {
                    let (oy, ox) = ((jb + off) / ow, (jb + off) % ow);
                    let len = (ow - ox).min(wdt - off);
                    let iy0 = (oy * ic.s[0]) as isize - ic.pad[0] as isize;
                    let ix0 = (ox * ic.s[1]) as isize - ic.pad[1] as isize;
                    let mut p = 0;
                    for ch in 0..ic.c {
                        let plane = &ic.x[ch * h * w..(ch + 1) * h * w];
                        for ky in 0..kh {
                            let iy = iy0 + (ky * ic.d[0]) as isize;
                            for kx in 0..kw {
                                let row = &mut panel[p * nr + off..p * nr + off + len];
                                p += 1;
                                if iy < 0 || iy >= h as isize {
                                    row.fill(0.0);
                                    continue;
                                }
                                let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                                let x0 = ix0 + (kx * ic.d[1]) as isize;
                                let r = inside(x0, sx, len, w);
                                // (fills only where needed: a runtime-length fill is a `memset` call)
                                if r.start > 0 {
                                    row[..r.start].fill(0.0);
                                }
                                if r.end < len {
                                    row[r.end..].fill(0.0);
                                }
                                if r.is_empty() {
                                    continue;
                                }
                                let first = (x0 + r.start as isize * sx) as usize;
                                let dst = &mut row[r.clone()];
                                if sx == 1 {
                                    copy_run(dst, &src[first..first + dst.len()]);
                                } else {
                                    for (v, &s) in
                                        dst.iter_mut().zip(src[first..].iter().step_by(sx as usize))
                                    {
                                        *v = s;
                                    }
                                }
                            }
                        }
                    }
                    off += len;
                }
                if wdt < nr {
                    for p in 0..k {
                        panel[p * nr + wdt..(p + 1) * nr].fill(0.0);
                    }
                }
            }
        }
    }
}

/// `C = A·B` then the epilogue. `c` is row-major with row stride `ldc` and must hold `m` rows.
/// `scratch` must hold [`scratch_floats`] floats for `par.threads()`.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    g: &Gemm,
    par: &Par,
    (m, n, k): (usize, usize, usize),
    a: ASrc,
    b: BSrc,
    c: &mut [f32],
    ldc: usize,
    epi: Epilogue,
    scratch: &mut [f32],
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(g.nr <= 64, "im2col packing assumes NR ≤ 64");
    assert!(c.len() >= (m - 1) * ldc + n, "gemm output too small");
    let (mr, nr) = (g.mr, g.nr);
    let m_panels = m.div_ceil(mr);
    // A: packed weights, or pack the activation into the front of scratch
    let (a_packed, rest): (&[f32], &mut [f32]) = match a {
        ASrc::Packed(p) => (p, scratch),
        ASrc::Strided(src, rs, cs) => {
            let (dst, rest) = scratch.split_at_mut(m_panels * mr * k);
            for pi in 0..m_panels {
                for p in 0..k {
                    for r in 0..mr {
                        let i = pi * mr + r;
                        dst[(pi * k + p) * mr + r] = if i < m { src[i * rs + p * cs] } else { 0.0 };
                    }
                }
            }
            (&*dst, rest)
        }
    };
    let threads = par.threads();
    let nc = chunk_cols(g, k, n);
    if n == 1 && g.mr <= GEMV_MR {
        return gemv_panels(g, par, (m, k), a_packed, b, c, ldc, epi, rest);
    }
    let chunks = n.div_ceil(nc);
    let split_cols = chunks >= threads || m_panels < threads;
    let per_thread = if matches!(b, BSrc::Packed(_)) {
        0
    } else {
        nc * k
    };
    let bufs = SyncPtr(rest.as_mut_ptr());
    let cptr = SyncPtr(c.as_mut_ptr());
    let work = |t: usize| {
        let (chunk_range, panel_range) = if split_cols {
            (share(chunks, t, threads), 0..m_panels)
        } else {
            (0..chunks, share(m_panels, t, threads))
        };
        if chunk_range.is_empty() || panel_range.is_empty() {
            return;
        }
        // SAFETY: each thread uses its own `per_thread` slice of scratch (sized by scratch_floats).
        let buf =
            unsafe { core::slice::from_raw_parts_mut(bufs.get().add(t * per_thread), per_thread) };
        for ch in chunk_range {
            let j0 = ch * nc;
            let cols = nc.min(n - j0);
            let bp: &[f32] = match b {
                BSrc::Packed(p) => &p[(j0 / nr) * k * nr..],
                _ => {
                    pack_b_for(g, &b, k, j0, cols, buf);
                    buf
                }
            };
            for pi in panel_range.clone() {
                let i0 = pi * mr;
                let rows = mr.min(m - i0);
                let ap = &a_packed[pi * k * mr..(pi + 1) * k * mr];
                for pj in 0..cols.div_ceil(nr) {
                    let jb = j0 + pj * nr;
                    let w = nr.min(n - jb);
                    // SAFETY: panels hold k*mr / k*nr floats; rows i0..i0+rows, cols jb..jb+w of C are in
                    // bounds (asserted above) and owned by this thread (disjoint chunk or panel ranges).
                    unsafe {
                        (g.kernel)(
                            k,
                            ap.as_ptr(),
                            bp[pj * k * nr..].as_ptr(),
                            cptr.get().add(i0 * ldc + jb),
                            ldc,
                            rows,
                            w,
                            false,
                        )
                    };
                }
                if epi.row_bias.is_some()
                    || epi.col_bias.is_some()
                    || epi.act.is_some()
                    || epi.post.is_some()
                {
                    for i in i0..i0 + rows {
                        // SAFETY: same rows/cols as written just above, owned by this thread.
                        let row = unsafe {
                            core::slice::from_raw_parts_mut(cptr.get().add(i * ldc + j0), cols)
                        };
                        finish_row(
                            row,
                            epi.row_bias.map(|b| b[i]),
                            epi.col_bias.map(|b| &b[j0..j0 + cols]),
                            epi.act,
                            epi.post.map(|(s, t)| (s[i], t[i])),
                        );
                    }
                }
            }
        }
    };
    par.run(&work);
}

/// The tallest tile [`gemv_panels`] takes (every path's today: 4, 6 or 8 rows).
const GEMV_MR: usize = 16;

/// [`gemm`] for one column of B (a conv over a 1×1 map: a squeeze-excitation FC, a classifier head's
/// conv): the tile would compute NR columns for one, so each A panel meets B's column alone, the MR
/// rows of a k step in one vector, `acc[r] = fmadd(a[p][r], b[p], acc[r])` in k order from zero: the
/// tile's chain, so the same bits (then the same epilogue). Four panels at a time hide the FMA latency;
/// threads split the panels.
#[allow(clippy::too_many_arguments)]
fn gemv_panels(
    g: &Gemm,
    par: &Par,
    (m, k): (usize, usize),
    a: &[f32],
    b: BSrc,
    c: &mut [f32],
    ldc: usize,
    epi: Epilogue,
    scratch: &mut [f32],
) {
    let mr = g.mr;
    // B's column: packed weights as they are, else packed once (an NR-wide panel, column 0 real)
    let col: &[f32] = match b {
        BSrc::Packed(p) => p,
        _ => {
            pack_b_for(g, &b, k, 0, 1, scratch);
            scratch
        }
    };
    let m_panels = m.div_ceil(mr);
    let threads = par.threads().min(m_panels.div_ceil(4)).max(1);
    let cptr = SyncPtr(c.as_mut_ptr());
    let work = |t: usize| {
        let panels = share(m_panels, t, threads);
        let mut sums = [0f32; 4 * GEMV_MR];
        for p0 in panels.clone().step_by(4) {
            let q = (panels.end - p0).min(4);
            let dot = PanelDot {
                k,
                a: &a[p0 * k * mr..(p0 + q) * k * mr],
                col,
                stride: g.nr,
            };
            let sums = &mut sums[..q * mr];
            panel_sums(g, dot, sums);
            for (j, &v) in sums.iter().enumerate() {
                let i = p0 * mr + j;
                if i >= m {
                    break;
                }
                // SAFETY: row i < m of C's column 0; panels (so rows) are split disjointly between
                // threads.
                let dst = unsafe { core::slice::from_raw_parts_mut(cptr.get().add(i * ldc), 1) };
                dst[0] = v;
                finish_row(
                    dst,
                    epi.row_bias.map(|b| b[i]),
                    epi.col_bias.map(|b| &b[..1]),
                    epi.act,
                    epi.post.map(|(s, t)| (s[i], t[i])),
                );
            }
        }
    };
    par.run_on(threads, &work);
}

/// Consecutive A panels (`a`: whole panels of `k·MR` floats) against B's column, its depth-p value at
/// `col[p·stride]`.
#[derive(Clone, Copy)]
struct PanelDot<'a> {
    k: usize,
    a: &'a [f32],
    col: &'a [f32],
    stride: usize,
}

/// The sums of `dot`'s panels (at most 4) into `out` (MR per panel, panel after panel): [`panel_sums_mr`]
/// for the path's MR, compiled with FMA where the path has it.
fn panel_sums(g: &Gemm, dot: PanelDot, out: &mut [f32]) {
    #[inline(always)]
    fn any(mr: usize, dot: PanelDot, out: &mut [f32]) {
        match mr {
            4 => panel_sums_mr::<4>(dot, out),
            6 => panel_sums_mr::<6>(dot, out),
            8 => panel_sums_mr::<8>(dot, out),
            // another tile height (none has one today): the same chain, one row at a time
            _ => {
                for (j, o) in out.iter_mut().enumerate() {
                    let at = (j / mr) * dot.k * mr + j % mr;
                    *o = (0..dot.k).fold(0.0, |acc, p| {
                        crate::ir::fmadd(dot.a[at + p * mr], dot.col[p * dot.stride], acc)
                    });
                }
            }
        }
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if matches!(
        g.isa,
        crate::cpu::caps::Isa::Avx2 | crate::cpu::caps::Isa::AvxVnni
    ) {
        #[target_feature(enable = "avx2,fma")]
        fn fma(mr: usize, dot: PanelDot, out: &mut [f32]) {
            any(mr, dot, out)
        }
        // SAFETY: the session selects an AVX2 path only on a CPU with AVX2 and FMA.
        return unsafe { fma(g.mr, dot, out) };
    }
    any(g.mr, dot, out)
}

/// [`panel_sums`] for tile rows `MR`: per k step one `MR`-wide fused multiply-add per panel.
#[inline(always)]
fn panel_sums_mr<const MR: usize>(dot: PanelDot, out: &mut [f32]) {
    let q = out.len() / MR;
    let mut acc = [[0f32; MR]; 4];
    for p in 0..dot.k {
        let bv = dot.col[p * dot.stride];
        for (qi, acc) in acc.iter_mut().enumerate().take(q) {
            let a = &dot.a[(qi * dot.k + p) * MR..(qi * dot.k + p + 1) * MR];
            for (v, &w) in acc.iter_mut().zip(a) {
                *v = crate::ir::fmadd(w, bv, *v);
            }
        }
    }
    for (o, acc) in out.chunks_exact_mut(MR).zip(&acc) {
        o.copy_from_slice(acc);
    }
}

/// Floats of the largest micro-kernel tile (AVX-512's 8×32).
const TILE: usize = 256;

/// `C = A·B` then the epilogue (per-row bias, `act`, per-row affine; no column bias), for packed
/// weights `a` (`m` rows, depth `k`) and B read in
/// place from stride-phase planes ([`Shifted`]; `C` gets the `out` pixels, row stride `ldc`): threads
/// split the column panels; each panel meets every A panel while its B rows are in cache, each tile is
/// computed into a buffer, the epilogue applied there (whole vectors) and only the real columns stored,
/// in runs that lie on one output row each.
#[allow(clippy::too_many_arguments)]
pub fn gemm_shifted(
    g: &Gemm,
    par: &Par,
    (m, k): (usize, usize),
    a: &[f32],
    sh: &Shifted,
    c: &mut [f32],
    ldc: usize,
    epi: Epilogue,
) {
    if m == 0 {
        return;
    }
    debug_assert!(epi.col_bias.is_none(), "gemm_shifted takes no column bias");
    let (bias, act) = (epi.row_bias, epi.act);
    let (mr, nr) = (g.mr, g.nr);
    let (wq, [oh, ow]) = (sh.hw[1], sh.out);
    let n = sh.cols();
    let panels = n.div_ceil(nr);
    let m_panels = m.div_ceil(mr);
    assert!(mr * nr <= TILE, "tile larger than the store buffer");
    assert!(a.len() >= m_panels * mr * k, "packed A too small");
    assert!(c.len() >= (m - 1) * ldc + oh * ow, "gemm output too small");
    // every B row of every panel, a whole panel wide, lies in x
    let last = sh
        .offs
        .iter()
        .max()
        .map_or(0, |&o| o + (panels - 1) * nr + nr);
    assert!(
        sh.offs.len() == k && last <= sh.x.len(),
        "shifted B out of bounds"
    );
    let threads = par.threads().min(panels);
    let cptr = SyncPtr(c.as_mut_ptr());
    let work = |t: usize| {
        let mut tile = [0f32; TILE];
        // runs of real columns in a tile: (offset in the tile, column of C, length)
        let mut runs = [(0usize, 0usize, 0usize); TILE];
        for pj in share(panels, t, threads) {
            let jb = pj * nr;
            let w = nr.min(n - jb);
            let mut nruns = 0;
            let mut off = 0;
            while off < w {
                let (oy, ox) = ((jb + off) / wq, (jb + off) % wq);
                if ox >= ow {
                    off += wq - ox;
                    continue;
                }
                let len = (ow - ox).min(w - off);
                runs[nruns] = (off, oy * ow + ox, len);
                nruns += 1;
                off += len;
            }
            for pi in 0..m_panels {
                let i0 = pi * mr;
                let rows = mr.min(m - i0);
                // SAFETY: the A panel holds k*mr floats; every B row is readable a panel wide (asserted
                // above); the buffer holds mr*nr floats.
                unsafe {
                    (g.kernel_rows)(
                        k,
                        a[pi * k * mr..].as_ptr(),
                        sh.x[jb..].as_ptr(),
                        sh.offs.as_ptr(),
                        tile.as_mut_ptr(),
                        nr,
                        rows,
                        w,
                        false,
                    )
                };
                // the epilogue over the whole tile (whole vectors, dropped columns too): the activation
                // in one call (per 32-float row, SiLU's vector kernel setup cost YOLOX 9%)
                if let Some(b) = bias {
                    for (r, row) in tile.chunks_exact_mut(nr).take(rows).enumerate() {
                        row.iter_mut().for_each(|v| *v += b[i0 + r]);
                    }
                }
                if let Some(act) = act {
                    apply_act(&mut tile[..rows * nr], act);
                }
                if let Some((s, t)) = epi.post {
                    for (r, row) in tile.chunks_exact_mut(nr).take(rows).enumerate() {
                        apply_post(row, s[i0 + r], t[i0 + r]);
                    }
                }
                for (r, row) in tile.chunks_exact(nr).take(rows).enumerate() {
                    for &(o, j, len) in &runs[..nruns] {
                        // SAFETY: row i0 + r, columns j..j+len of C are in bounds (asserted above) and
                        // owned by this thread (its own column panels).
                        let dst = unsafe {
                            core::slice::from_raw_parts_mut(cptr.get().add((i0 + r) * ldc + j), len)
                        };
                        copy_run(dst, &row[o..o + len]);
                    }
                }
            }
        }
    };
    par.run_on(threads, &work);
}

/// `v·s + t` over a row in two roundings (a multiply, then an add: no fused multiply-add), exactly as
/// the ChannelAffine op computes it, so a conv with its affine fused gives the same bits as the two ops.
#[inline]
pub fn apply_post(row: &mut [f32], s: f32, t: f32) {
    row.iter_mut().for_each(|v| *v = *v * s + t);
}

/// Elements the epilogue's separate steps take at a time (a column bias or an activation without a
/// one-pass form): each step is a pass of its own, so a long row goes in pieces that stay in L1.
const EPI_PIECE: usize = 1024;

/// The epilogue's element-wise steps on one row: scalar bias, column bias, activation, then the affine `post`
/// (scale, shift). Without a column bias and with an activation the one-pass loop computes (or none) it is
/// one pass, compiled for the widest vectors the CPU has (a row of a 368×368 map read and written once per
/// step made the fused affine cost what the separate op had); else the steps go piece by piece (1024
/// elements). The same IEEE operations in the same order either way: the same bits.
#[inline]
pub fn finish_row(
    row: &mut [f32],
    bias: Option<f32>,
    col_bias: Option<&[f32]>,
    act: Option<Unary>,
    post: Option<(f32, f32)>,
) {
    if col_bias.is_none() && one_pass_act(act) {
        return one_pass_widest(row, bias, act, post);
    }
    for (i, piece) in row.chunks_mut(EPI_PIECE).enumerate() {
        if let Some(b) = bias {
            piece.iter_mut().for_each(|v| *v += b);
        }
        if let Some(cb) = col_bias {
            let cb = &cb[i * EPI_PIECE..];
            piece.iter_mut().zip(cb).for_each(|(v, b)| *v += b);
        }
        if let Some(a) = act {
            apply_act(piece, a);
        }
        if let Some((s, t)) = post {
            apply_post(piece, s, t);
        }
    }
}

/// No activation, or one that [`one_pass`] computes in its loop: Relu, Clip, HardSwish, HardSigmoid,
/// LeakyRelu (compares, multiplies and a divide: no library call, so the loop vectorizes).
fn one_pass_act(act: Option<Unary>) -> bool {
    act.is_none_or(|a| {
        matches!(
            a,
            Unary::Relu
                | Unary::Clip { .. }
                | Unary::HardSwish
                | Unary::HardSigmoid { .. }
                | Unary::LeakyRelu { .. }
        )
    })
}

/// [`one_pass`] compiled for the widest vectors this CPU has (the portable build is SSE2: its 4-lane
/// division made hard-swish epilogues 12% of a PicoDet f32 run); IEEE operations without contraction,
/// so the same bits on every build.
#[inline]
fn one_pass_widest(
    row: &mut [f32],
    bias: Option<f32>,
    act: Option<Unary>,
    post: Option<(f32, f32)>,
) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        #[target_feature(enable = "avx512f")]
        fn wide(row: &mut [f32], b: Option<f32>, a: Option<Unary>, p: Option<(f32, f32)>) {
            one_pass(row, b, a, p)
        }
        #[target_feature(enable = "avx2")]
        fn narrow(row: &mut [f32], b: Option<f32>, a: Option<Unary>, p: Option<(f32, f32)>) {
            one_pass(row, b, a, p)
        }
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512 F detected just above.
            return unsafe { wide(row, bias, act, post) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 detected just above.
            return unsafe { narrow(row, bias, act, post) };
        }
    }
    one_pass(row, bias, act, post)
}

/// The epilogue in one pass: one loop per combination of bias, activation ([`one_pass_act`]) and
/// affine, each element loaded and stored once; the steps computed as [`finish_row`]'s piecewise
/// path and [`apply_post`] would, in their order. The one place these activations' formulas live.
#[inline(always)]
fn one_pass(row: &mut [f32], bias: Option<f32>, act: Option<Unary>, post: Option<(f32, f32)>) {
    #[inline(always)]
    fn with_post(row: &mut [f32], f: impl Fn(f32) -> f32, post: Option<(f32, f32)>) {
        match post {
            Some((s, t)) => row.iter_mut().for_each(|v| *v = f(*v) * s + t),
            None => row.iter_mut().for_each(|v| *v = f(*v)),
        }
    }
    #[inline(always)]
    fn with_act(
        row: &mut [f32],
        f: impl Fn(f32) -> f32,
        act: Option<Unary>,
        post: Option<(f32, f32)>,
    ) {
        match act {
            Some(Unary::Relu) => with_post(row, |v| f(v).max(0.0), post),
            Some(Unary::Clip { min, max }) => with_post(row, |v| f(v).max(min).min(max), post),
            Some(Unary::HardSwish) => with_post(
                row,
                |v| {
                    let v = f(v);
                    v * (v / 6.0 + 0.5).clamp(0.0, 1.0)
                },
                post,
            ),
            Some(Unary::HardSigmoid { alpha, beta }) => {
                with_post(row, |v| (alpha * f(v) + beta).clamp(0.0, 1.0), post)
            }
            Some(Unary::LeakyRelu { alpha }) => with_post(
                row,
                |v| {
                    let v = f(v);
                    if v >= 0.0 {
                        v
                    } else {
                        alpha * v
                    }
                },
                post,
            ),
            _ => with_post(row, f, post),
        }
    }
    match bias {
        Some(b) => with_act(row, |v| v + b, act, post),
        None => with_act(row, |v| v, act, post),
    }
}

/// Applies an element-wise function in place, with the hot cases in branch-free loops.
#[inline]
pub fn apply_act(row: &mut [f32], act: Unary) {
    if one_pass_act(Some(act)) {
        return one_pass_widest(row, None, Some(act), None);
    }
    match act {
        Unary::Sigmoid | Unary::Silu => {
            // the 8-lane kernel where the CPU has it, on any path: it gives the scalar rule's bits, and
            // the scalar rule's fused multiply-adds are library calls on x86-64 without FMA in the
            // compiled target (a fused Sigmoid over det736's 736×736 map took 11 ms)
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                let done = crate::cpu::kernels::x86::sigmoid_vec(row, matches!(act, Unary::Silu));
                row[done..].iter_mut().for_each(|v| *v = act.apply(*v));
                return;
            }
            row.iter_mut().for_each(|v| *v = act.apply(*v))
        }
        Unary::Tanh | Unary::Exp => {
            // as for the sigmoid: the vector kernels give the scalar rule's bits
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            let done = if act == Unary::Exp {
                crate::cpu::kernels::x86::exp_vec(row)
            } else {
                crate::cpu::kernels::x86::tanh_vec(row)
            };
            #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
            let done = 0;
            row[done..].iter_mut().for_each(|v| *v = act.apply(*v))
        }
        a => row.iter_mut().for_each(|v| *v = a.apply(*v)),
    }
}
