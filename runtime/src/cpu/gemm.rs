//! The f32 GEMM driver: `C[m×n] = A[m×k] · B[k×n]` (+ bias, activation) on packed panels.
//! Weights are packed once at session creation; activations are packed per run into session scratch,
//! in column chunks that fit L2. Threads split the column chunks (or the row panels when there are few
//! chunks); each writes its own part of C.
use super::kernels::Gemm;
use super::{share, Par, SyncPtr};
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

/// What is applied to C after the product: per-row bias, per-column bias, activation.
#[derive(Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// Added to every element of row i.
    pub row_bias: Option<&'a [f32]>,
    /// Added to every element of column j.
    pub col_bias: Option<&'a [f32]>,
    /// Applied last.
    pub act: Option<Unary>,
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

/// `dst.copy_from_slice(src)` for the short runs B packing copies (one panel row, usually a whole panel
/// width): a fixed-size copy the compiler keeps in registers, where a runtime length is a `memmove` call.
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    #[inline(always)]
    fn fixed<const N: usize>(dst: &mut [f32], src: &[f32]) -> bool {
        match (<&mut [f32; N]>::try_from(dst), <&[f32; N]>::try_from(src)) {
            (Ok(d), Ok(s)) => {
                *d = *s;
                true
            }
            _ => false,
        }
    }
    let done = match dst.len() {
        32 => fixed::<32>(dst, src),
        16 => fixed::<16>(dst, src),
        8 => fixed::<8>(dst, src),
        _ => false,
    };
    if !done {
        dst.copy_from_slice(src);
    }
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
                    for p in 0..k {
                        let row = &mut panel[p * nr..p * nr + nr];
                        copy_run(&mut row[..wdt], &ic.x[p * h * w + jb..p * h * w + jb + wdt]);
                        row[wdt..].iter_mut().for_each(|v| *v = 0.0);
                    }
                    continue;
                }
                let (oy0, ox0) = (jb / ow, jb % ow);
                if ox0 + wdt <= ow {
                    // all columns of the panel lie on one output row: each (c, ky, kx) row of the panel is
                    // a strided run of one input row (contiguous for stride 1), clipped at the borders
                    let iy0 = (oy0 * ic.s[0]) as isize - ic.pad[0] as isize;
                    let ix0 = (ox0 * ic.s[1]) as isize - ic.pad[1] as isize;
                    let sx = ic.s[1] as isize;
                    let mut p = 0;
                    for ch in 0..ic.c {
                        let plane = &ic.x[ch * h * w..(ch + 1) * h * w];
                        for ky in 0..kh {
                            let iy = iy0 + (ky * ic.d[0]) as isize;
                            for kx in 0..kw {
                                let row = &mut panel[p * nr..p * nr + nr];
                                p += 1;
                                if iy < 0 || iy >= h as isize {
                                    row.iter_mut().for_each(|v| *v = 0.0);
                                    continue;
                                }
                                let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                                let x0 = ix0 + (kx * ic.d[1]) as isize;
                                let last = x0 + (wdt as isize - 1) * sx;
                                if x0 >= 0 && last < w as isize {
                                    // inside the row: a plain (strided) copy, no per-element checks
                                    let run = &src[x0 as usize..=last as usize];
                                    if sx == 1 {
                                        copy_run(&mut row[..wdt], run);
                                    } else {
                                        for (v, &s) in row[..wdt]
                                            .iter_mut()
                                            .zip(run.iter().step_by(sx as usize))
                                        {
                                            *v = s;
                                        }
                                    }
                                } else {
                                    for (c, v) in row[..wdt].iter_mut().enumerate() {
                                        let ix = x0 + c as isize * sx;
                                        *v = if ix >= 0 && ix < w as isize {
                                            src[ix as usize]
                                        } else {
                                            0.0
                                        };
                                    }
                                }
                                row[wdt..].iter_mut().for_each(|v| *v = 0.0);
                            }
                        }
                    }
                    continue;
                }
                // general case: the panel wraps to the next output row
                let mut ys = [0isize; 64];
                let mut xs = [0isize; 64];
                for c in 0..wdt {
                    let (oy, ox) = ((jb + c) / ow, (jb + c) % ow);
                    ys[c] = (oy * ic.s[0]) as isize - ic.pad[0] as isize;
                    xs[c] = (ox * ic.s[1]) as isize - ic.pad[1] as isize;
                }
                let mut p = 0;
                for ch in 0..ic.c {
                    let plane = &ic.x[ch * h * w..(ch + 1) * h * w];
                    for ky in 0..kh {
                        let dy = (ky * ic.d[0]) as isize;
                        for kx in 0..kw {
                            let dx = (kx * ic.d[1]) as isize;
                            let row = &mut panel[p * nr..p * nr + nr];
                            for c in 0..nr {
                                let (iy, ix) = (ys[c] + dy, xs[c] + dx);
                                row[c] = if c < wdt
                                    && iy >= 0
                                    && (iy as usize) < h
                                    && ix >= 0
                                    && (ix as usize) < w
                                {
                                    plane[iy as usize * w + ix as usize]
                                } else {
                                    0.0
                                };
                            }
                            p += 1;
                        }
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
                if epi.row_bias.is_some() || epi.col_bias.is_some() || epi.act.is_some() {
                    for i in i0..i0 + rows {
                        // SAFETY: same rows/cols as written just above, owned by this thread.
                        let row = unsafe {
                            core::slice::from_raw_parts_mut(cptr.get().add(i * ldc + j0), cols)
                        };
                        apply_epilogue(
                            row,
                            epi.row_bias.map(|b| b[i]),
                            epi.col_bias.map(|b| &b[j0..j0 + cols]),
                            epi.act,
                        );
                    }
                }
            }
        }
    };
    par.run(&work);
}

/// Adds a scalar bias and/or a bias vector, then applies the activation, in place.
#[inline]
pub fn apply_epilogue(
    row: &mut [f32],
    bias: Option<f32>,
    col_bias: Option<&[f32]>,
    act: Option<Unary>,
) {
    if let Some(b) = bias {
        row.iter_mut().for_each(|v| *v += b);
    }
    if let Some(cb) = col_bias {
        row.iter_mut().zip(cb).for_each(|(v, b)| *v += b);
    }
    if let Some(a) = act {
        apply_act(row, a);
    }
}

/// Applies an element-wise function in place, with the hot cases in branch-free loops.
#[inline]
pub fn apply_act(row: &mut [f32], act: Unary) {
    match act {
        Unary::Relu => row.iter_mut().for_each(|v| *v = v.max(0.0)),
        Unary::Clip { min, max } => row.iter_mut().for_each(|v| *v = v.max(min).min(max)),
        Unary::HardSwish => row
            .iter_mut()
            .for_each(|v| *v *= (*v / 6.0 + 0.5).clamp(0.0, 1.0)),
        Unary::HardSigmoid { alpha, beta } => row
            .iter_mut()
            .for_each(|v| *v = (alpha * *v + beta).clamp(0.0, 1.0)),
        Unary::Sigmoid | Unary::Silu => {
            // the 8-lane kernel where the CPU has it, on any path: it gives the scalar rule's bits, and
            // the scalar rule's fused multiply-adds are library calls on x86-64 without FMA in the
            // compiled target (a fused Sigmoid over det736's 736×736 map took 11 ms)
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                use crate::cpu::kernels::x86::sigmoid_avx2;
                // SAFETY: AVX2 and FMA detected just above.
                let done = unsafe {
                    match act {
                        Unary::Silu => sigmoid_avx2::<true>(row),
                        _ => sigmoid_avx2::<false>(row),
                    }
                };
                row[done..].iter_mut().for_each(|v| *v = act.apply(*v));
                return;
            }
            row.iter_mut().for_each(|v| *v = act.apply(*v))
        }
        a => row.iter_mut().for_each(|v| *v = a.apply(*v)),
    }
}
