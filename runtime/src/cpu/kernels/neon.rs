//! aarch64 NEON micro-kernel: 8 rows × 8 columns, 16 accumulator registers.
use super::{BRows, DwPairs};
use core::arch::aarch64::*;

/// Tile rows.
pub const MR: usize = 8;
/// Tile columns.
pub const NR: usize = 8;

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize, B: BRows>(
    k: usize,
    a: *const f32,
    b: B,
    c: *mut f32,
    ldc: usize,
    n: usize,
    acc: bool,
) {
    // SAFETY (whole fn): packed panels hold k*MR and k*NR floats; rows < R and cols < n of c are valid.
    unsafe {
        let mut lo = [vdupq_n_f32(0.0); R];
        let mut hi = [vdupq_n_f32(0.0); R];
        if R == MR && B::PANEL {
            let (l, h) = panel_8x8(k, a, b.row(0));
            lo.copy_from_slice(&l);
            hi.copy_from_slice(&h);
        } else {
            for p in 0..k {
                let row = b.row(p);
                let b0 = vld1q_f32(row);
                let b1 = vld1q_f32(row.add(4));
                for r in 0..R {
                    let av = *a.add(p * MR + r);
                    lo[r] = vfmaq_n_f32(lo[r], b0, av);
                    hi[r] = vfmaq_n_f32(hi[r], b1, av);
                }
            }
        }
        let mut buf = [0f32; NR];
        for r in 0..R {
            let d = c.add(r * ldc);
            if n == NR {
                let (mut v0, mut v1) = (lo[r], hi[r]);
                if acc {
                    v0 = vaddq_f32(v0, vld1q_f32(d));
                    v1 = vaddq_f32(v1, vld1q_f32(d.add(4)));
                }
                vst1q_f32(d, v0);
                vst1q_f32(d.add(4), v1);
            } else {
                vst1q_f32(buf.as_mut_ptr(), lo[r]);
                vst1q_f32(buf.as_mut_ptr().add(4), hi[r]);
                for (j, v) in buf.iter().enumerate().take(n) {
                    *d.add(j) = if acc { *d.add(j) + v } else { *v };
                }
            }
        }
    }
}

/// The full 8×8 tile's sums over a packed B panel: per k step one `ldp` of B's 8 floats, one of A's 8,
/// and 16 `fmla` by element into accumulators that stay in v0..v15 (20 instructions per 64 MACs; the
/// compiled loop loaded A's 8 values one by one, 27). The same fused multiply-adds in the same order as
/// the portable loop, so the same bits.
///
/// # Safety
/// `a` holds `k·8` floats and `b` `k·8`.
#[inline(always)]
unsafe fn panel_8x8(
    k: usize,
    a: *const f32,
    b: *const f32,
) -> ([float32x4_t; 8], [float32x4_t; 8]) {
    // SAFETY: the caller's bounds; k ≥ 1 inside the loop.
    unsafe {
        let z = vdupq_n_f32(0.0);
        let (mut l, mut h) = ([z; 8], [z; 8]);
        if k > 0 {
            core::arch::asm!(
                "2:",
                "ldp q16, q17, [{b}], #32",
                "ldp q18, q19, [{a}], #32",
                "fmla v0.4s, v16.4s, v18.s[0]",
                "fmla v1.4s, v17.4s, v18.s[0]",
                "fmla v2.4s, v16.4s, v18.s[1]",
                "fmla v3.4s, v17.4s, v18.s[1]",
                "fmla v4.4s, v16.4s, v18.s[2]",
                "fmla v5.4s, v17.4s, v18.s[2]",
                "fmla v6.4s, v16.4s, v18.s[3]",
                "fmla v7.4s, v17.4s, v18.s[3]",
                "fmla v8.4s, v16.4s, v19.s[0]",
                "fmla v9.4s, v17.4s, v19.s[0]",
                "fmla v10.4s, v16.4s, v19.s[1]",
                "fmla v11.4s, v17.4s, v19.s[1]",
                "fmla v12.4s, v16.4s, v19.s[2]",
                "fmla v13.4s, v17.4s, v19.s[2]",
                "fmla v14.4s, v16.4s, v19.s[3]",
                "fmla v15.4s, v17.4s, v19.s[3]",
                "subs {k}, {k}, #1",
                "b.ne 2b",
                a = inout(reg) a => _,
                b = inout(reg) b => _,
                k = inout(reg) k => _,
                inout("v0") l[0], inout("v1") h[0], inout("v2") l[1], inout("v3") h[1],
                inout("v4") l[2], inout("v5") h[2], inout("v6") l[3], inout("v7") h[3],
                inout("v8") l[4], inout("v9") h[4], inout("v10") l[5], inout("v11") h[5],
                inout("v12") l[6], inout("v13") h[6], inout("v14") l[7], inout("v15") h[7],
                out("v16") _, out("v17") _, out("v18") _, out("v19") _,
                options(nostack, readonly),
            );
        }
        (l, h)
    }
}

f32_kernels!(
    sgemm_8x8,
    sgemm_8x8_rows,
    tile,
    NR,
    [1, 2, 3, 4, 5, 6, 7; 8],
    "NEON is part of aarch64."
);

use crate::cpu::qgemm::Requant;

/// Requantization constants in registers for 8 accumulators, set up once per row (or per 8 outputs of a
/// matrix-vector product, each lane its own row: [`RowRq::lanes`]): [`Requant::apply`] 8 at a time, bit
/// for bit. Saturating bias add (`sqadd`), the exact 64-bit product and its rounding
/// ([`fm_apply4_lanes`]), then, on 8 i16 lanes, the clamp and the zero point (the i32 → i16 narrow
/// saturates, which keeps the clamp's result: its bounds `lo − z`, `hi − z` lie in ±255), and the narrow
/// to bytes. Only for shifts 0..=31 (total 31..=62), like the x86 epilogue; other rows take the scalar one.
#[derive(Clone, Copy)]
struct RowRq {
    /// Per half (lanes 0–3, 4–7): bias, multiplier mantissa, and −(31 + shift) for lanes 0–1 and 2–3.
    bias: [int32x4_t; 2],
    mult: [int32x4_t; 2],
    sh: [[int64x2_t; 2]; 2],
    lo: int16x8_t,
    hi: int16x8_t,
    z: int16x8_t,
    /// The 16-bit engine's f32 requantization (`crate::ir::quant::requant_f32`, format 12 on): its
    /// multiplier and the clamp as floats, used by [`RowRq::halves`] where `float` is set.
    fscale: float32x4_t,
    flo: float32x4_t,
    fhi: float32x4_t,
    float: bool,
    /// A fused HardSwish's constant (`crate::ir::quant::hard_swish_f32`), with `float`.
    hswish: Option<float32x4_t>,
}

impl RowRq {
    /// `None` where row `r`'s shift has no vector form.
    #[inline(always)]
    fn new(rq: &Requant, r: usize) -> Option<RowRq> {
        (rq.fscale.get(r).is_some() || (0..=31).contains(&rq.mult[r].shift))
            .then(|| RowRq::any(rq, r))
    }

    /// [`RowRq::new`] without the shift check: only for rows whose shift is in 0..=31 (or f32 rows).
    #[inline(always)]
    fn any(rq: &Requant, r: usize) -> RowRq {
        let fm = rq.mult[r];
        let float = rq.fscale.get(r).copied();
        // SAFETY: NEON is part of aarch64 (register set-up only).
        let (bias, mult, sh) = unsafe {
            (
                vdupq_n_s32(rq.bias[r]),
                vdupq_n_s32(fm.mult),
                vdupq_n_s64(-(31 + fm.shift as i64)),
            )
        };
        let mut q = RowRq::with(rq, [bias; 2], [mult; 2], [[sh; 2]; 2]);
        if let Some(f) = float {
            // SAFETY: NEON is part of aarch64 (register set-up only).
            unsafe {
                q.fscale = vdupq_n_f32(f);
                q.hswish = rq.hswish.map(|k| vdupq_n_f32(k));
            }
            q.float = true;
        }
        q
    }

    /// The constants of rows `j..j + 8`, one per lane; `None` past `rq`'s rows or where a row's shift
    /// has no vector form.
    #[inline(always)]
    fn lanes(rq: &Requant, j: usize) -> Option<RowRq> {
        let fm = rq.mult.get(j..j + 8)?;
        let bias = rq.bias.get(j..j + 8)?;
        if !fm.iter().all(|f| (0..=31).contains(&f.shift)) {
            return None;
        }
        let mult: [i32; 8] = core::array::from_fn(|l| fm[l].mult);
        let sh: [i64; 8] = core::array::from_fn(|l| -(31 + fm[l].shift as i64));
        // SAFETY: the loads read the 8-value slice and arrays above.
        unsafe {
            let (b, m, s) = (bias.as_ptr(), mult.as_ptr(), sh.as_ptr());
            Some(RowRq::with(
                rq,
                [vld1q_s32(b), vld1q_s32(b.add(4))],
                [vld1q_s32(m), vld1q_s32(m.add(4))],
                core::array::from_fn(|h| [vld1q_s64(s.add(4 * h)), vld1q_s64(s.add(4 * h + 2))]),
            ))
        }
    }

    /// The per-lane constants plus `rq`'s clamp and zero point.
    #[inline(always)]
    fn with(
        rq: &Requant,
        bias: [int32x4_t; 2],
        mult: [int32x4_t; 2],
        sh: [[int64x2_t; 2]; 2],
    ) -> RowRq {
        let z = rq.zp_out;
        // SAFETY: NEON is part of aarch64 (register set-up only).
        unsafe {
            RowRq {
                bias,
                mult,
                sh,
                lo: vdupq_n_s16((rq.lo - z) as i16),
                hi: vdupq_n_s16((rq.hi - z) as i16),
                z: vdupq_n_s16(z as i16),
                fscale: vdupq_n_f32(0.0),
                flo: vdupq_n_f32((rq.lo - z) as f32),
                fhi: vdupq_n_f32((rq.hi - z) as f32),
                float: false,
                hswish: None,
            }
        }
    }

    /// 8 accumulators to 8 output bytes.
    #[inline(always)]
    fn bytes(&self, v: [int32x4_t; 2]) -> int8x8_t {
        // SAFETY: plain register arithmetic.
        unsafe {
            let half = |h: usize| {
                let x = vqaddq_s32(v[h], self.bias[h]);
                vqmovn_s32(fm_apply4_lanes(x, self.mult[h], self.sh[h]))
            };
            let w = vcombine_s16(half(0), half(1));
            vmovn_s16(vaddq_s16(vminq_s16(vmaxq_s16(w, self.lo), self.hi), self.z))
        }
    }

    /// 8 accumulators to 8 int16 outputs (the 16-bit engine: its clamp is an int16 range, zero point 0).
    #[inline(always)]
    fn halves(&self, v: [int32x4_t; 2]) -> int16x8_t {
        // SAFETY: plain register arithmetic.
        unsafe {
            if self.float {
                // `requant_f32`: scvtf and fcvtns round to nearest even (FPCR's default), the product
                // is one IEEE multiply, the clamp exact (inside int16, so the narrow keeps it)
                let half = |h: usize| {
                    let x = vcvtq_f32_s32(vqaddq_s32(v[h], self.bias[h]));
                    let mut f = vmulq_f32(x, self.fscale);
                    if let Some(k) = self.hswish {
                        // `hard_swish_f32` on the real sums, its steps in order (no fused multiply-add)
                        let g = vaddq_f32(f, vdupq_n_f32(3.0));
                        let g = vminq_f32(vmaxq_f32(g, vdupq_n_f32(0.0)), vdupq_n_f32(6.0));
                        f = vmulq_f32(vmulq_f32(f, g), k);
                    }
                    let f = vminq_f32(vmaxq_f32(f, self.flo), self.fhi);
                    vqmovn_s32(vcvtnq_s32_f32(f))
                };
                return vaddq_s16(vcombine_s16(half(0), half(1)), self.z);
            }
            let half = |h: usize| {
                let x = vqaddq_s32(v[h], self.bias[h]);
                vqmovn_s32(fm_apply4_lanes(x, self.mult[h], self.sh[h]))
            };
            let w = vcombine_s16(half(0), half(1));
            vaddq_s16(vminq_s16(vmaxq_s16(w, self.lo), self.hi), self.z)
        }
    }

    /// [`RowRq::bytes`] stored: `n` ≤ 8 bytes at `dst`.
    ///
    /// # Safety
    /// `dst` valid for `n` bytes.
    #[inline(always)]
    unsafe fn store(&self, v: [int32x4_t; 2], dst: *mut i8, n: usize) {
        // SAFETY: the caller's bound.
        unsafe {
            let b = self.bytes(v);
            if n == 8 {
                vst1_s8(dst, b);
            } else {
                let mut bytes = [0i8; 8];
                vst1_s8(bytes.as_mut_ptr(), b);
                core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, n);
            }
        }
    }
}

/// Block `b` of x (4 bytes from `4b`, zero past the end) replicated across a register.
#[inline(always)]
fn x_block(x: &[i8], b: usize) -> int8x16_t {
    // SAFETY: the 4-byte load reads within x (checked; unaligned: a row of x starts anywhere); the rest is
    // register arithmetic.
    unsafe {
        if 4 * b + 4 <= x.len() {
            let w = (x.as_ptr().add(4 * b) as *const i32).read_unaligned();
            vreinterpretq_s8_s32(vdupq_n_s32(w))
        } else {
            let mut q = [0u8; 4];
            for (e, v) in q.iter_mut().enumerate() {
                *v = x.get(4 * b + e).map_or(0, |&v| v as u8);
            }
            vreinterpretq_s8_s32(vdupq_n_s32(i32::from_le_bytes(q)))
        }
    }
}

/// The 16 sums of one matrix-vector panel (rows `j0..`) requantized into `out` (≤ 16 bytes): 8 lanes at a
/// time through [`RowRq::lanes`], the rest by the scalar rule.
#[inline(always)]
fn store_gemv16(s: &[int32x4_t; 4], rq: &Requant, j0: usize, out: &mut [i8]) {
    for (h, o) in out.chunks_mut(8).enumerate() {
        let (v, j) = ([s[2 * h], s[2 * h + 1]], j0 + 8 * h);
        match RowRq::lanes(rq, j).filter(|_| o.len() == 8) {
            // SAFETY: 8 bytes of out.
            Some(q) => unsafe { vst1_s8(o.as_mut_ptr(), q.bytes(v)) },
            None => {
                let mut acc = [0i32; 8];
                // SAFETY: 8 values into an 8-value array.
                unsafe {
                    vst1q_s32(acc.as_mut_ptr(), v[0]);
                    vst1q_s32(acc.as_mut_ptr().add(4), v[1]);
                }
                for (l, b) in o.iter_mut().enumerate() {
                    *b = rq.apply(j + l, acc[l]);
                }
            }
        }
    }
}

/// The matrix-vector loop over 16-row panels (`panel[kb][row][4]`, `kb·64` bytes each): `A` accumulators
/// per panel, `block(t, w, x)` adds one k-block (`w`: its 64 weight bytes, `x`: x's 4 bytes replicated),
/// `sums(t)` gives the panel's 16 sums, which [`store_gemv16`] requantizes.
///
/// # Safety
/// `panels` holds `y.len().div_ceil(16)·x.len().div_ceil(4)·64` bytes; `rq` has `y.len()` rows.
#[inline(always)]
unsafe fn gemv16<const A: usize>(
    panels: &[i8],
    x: &[i8],
    y: &mut [i8],
    rq: &Requant,
    block: impl Fn(&mut [int32x4_t; A], *const i8, int8x16_t),
    sums: impl Fn(&[int32x4_t; A]) -> [int32x4_t; 4],
) {
    let kb = x.len().div_ceil(4);
    for (q, out) in y.chunks_mut(16).enumerate() {
        // SAFETY: panel q's kb·64 bytes lie in `panels` (the caller's size).
        unsafe {
            let p = panels.as_ptr().add(q * kb * 64);
            let mut t = [vdupq_n_s32(0); A];
            for b in 0..kb {
                block(&mut t, p.add(b * 64), x_block(x, b));
            }
            store_gemv16(&sums(&t), rq, q * 16, out);
        }
    }
}

/// int8 matrix-vector product without dotprod (Pi 4): `y[j] = rq(j, Σ_p x[p]·w[j][p])` over `w` packed as
/// 16-row A panels (`panel[kb][row][4]`, zero padded): per block and 4 rows one `smull` and one `smull2`
/// (i8×i8 → i16) `sadalp`ed into i32, the pairs added at the end (no horizontal sum per output); then
/// per-output requantization 8 lanes at a time. The same integers as `qgemm::qgemv`.
///
/// # Safety
/// `panels` holds `y.len().div_ceil(16)·x.len().div_ceil(4)·64` bytes; `rq` has `y.len()` rows.
pub unsafe fn qgemv_smull(panels: &[i8], x: &[i8], y: &mut [i8], rq: &Requant) {
    // SAFETY: the caller's bounds; `block` reads the 64 bytes at w.
    unsafe {
        gemv16::<8>(
            panels,
            x,
            y,
            rq,
            |t, w, xv| {
                for r in 0..4 {
                    let wv = vld1q_s8(w.add(16 * r));
                    t[2 * r] = vpadalq_s16(t[2 * r], vmull_s8(vget_low_s8(wv), vget_low_s8(xv)));
                    t[2 * r + 1] = vpadalq_s16(t[2 * r + 1], vmull_high_s8(wv, xv));
                }
            },
            |t| core::array::from_fn(|r| vpaddq_s32(t[2 * r], t[2 * r + 1])),
        )
    }
}

/// [`qgemv_smull`] with SDOT (Pi 5, Jetson Orin): per block and 4 rows one `sdot` (16 MACs).
///
/// # Safety
/// As [`qgemv_smull`], and the CPU must have the dotprod extension.
#[target_feature(enable = "dotprod")]
pub unsafe fn qgemv_sdot(panels: &[i8], x: &[i8], y: &mut [i8], rq: &Requant) {
    // SAFETY: the caller's bounds; `block` reads the 64 bytes at w.
    unsafe {
        gemv16::<4>(
            panels,
            x,
            y,
            rq,
            |t, w, xv| {
                for (r, tr) in t.iter_mut().enumerate() {
                    let wv = vld1q_s8(w.add(16 * r));
                    core::arch::asm!("sdot {acc:v}.4s, {w:v}.16b, {x:v}.16b",
                        acc = inout(vreg) *tr, w = in(vreg) wv, x = in(vreg) xv,
                        options(pure, nomem, nostack));
                }
            },
            |t| *t,
        )
    }
}

/// Stores row `r` (8 accumulators as two vectors): `n` ≤ 8 bytes at `dst`, through [`RowRq`] where the
/// row has a vector form, else the scalar rule. Loops over one row set up a [`RowRq`] once instead.
#[inline(always)]
unsafe fn store_row8(v: [int32x4_t; 2], rq: &Requant, r: usize, dst: *mut i8, n: usize) {
    // SAFETY (whole fn): dst valid for n bytes.
    unsafe {
        match RowRq::new(rq, r) {
            Some(q) => q.store(v, dst, n),
            None => {
                let (mut wide, mut bytes) = ([0i32; 8], [0i8; 8]);
                vst1q_s32(wide.as_mut_ptr(), v[0]);
                vst1q_s32(wide.as_mut_ptr().add(4), v[1]);
                rq.row(r, &wide[..n], &mut bytes[..n]);
                core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, n);
            }
        }
    }
}

/// One k-block (4 deep) of the 4×8 `smull`/`sadalp` tile: `smull` i8×i8 → i16 products, `sadalp`
/// pairwise accumulate into i32 (exact: |−128·−128| fits i16).
///
/// # Safety
/// `a` holds 16 bytes (4 rows × 4), `b` 32 (8 columns × 4).
#[inline(always)]
unsafe fn smull_block(t: &mut [[int32x4_t; 4]; 4], a: *const i8, b: *const i8) {
    // SAFETY: the caller's bounds.
    unsafe {
        let (b0, b1) = (vld1q_s8(b), vld1q_s8(b.add(16)));
        for (r, tr) in t.iter_mut().enumerate() {
            let av =
                vreinterpretq_s8_s32(vdupq_n_s32((a.add(r * 4) as *const i32).read_unaligned()));
            tr[0] = vpadalq_s16(tr[0], vmull_s8(vget_low_s8(b0), vget_low_s8(av)));
            tr[1] = vpadalq_s16(tr[1], vmull_high_s8(b0, av));
            tr[2] = vpadalq_s16(tr[2], vmull_s8(vget_low_s8(b1), vget_low_s8(av)));
            tr[3] = vpadalq_s16(tr[3], vmull_high_s8(b1, av));
        }
    }
}

/// The 4×8 tile's sums (pairs of `sadalp` lanes, added by `addp`), requantized and stored.
///
/// # Safety
/// As [`crate::cpu::qgemm::QKernel`]'s `c`, `ldc`, `m`, `n`, `rq`.
#[inline(always)]
unsafe fn store_tile_4x8(
    t: &[[int32x4_t; 4]; 4],
    rq: &Requant,
    c: *mut i8,
    ldc: usize,
    m: usize,
    n: usize,
) {
    // SAFETY: plain register arithmetic; the stores per the caller's bounds.
    unsafe {
        let v = t.map(|tr| [vpaddq_s32(tr[0], tr[1]), vpaddq_s32(tr[2], tr[3])]);
        store_tile(&v, rq, c, ldc, m, n);
    }
}

/// An `R`×8 tile's i32 sums requantized and stored (rows `0..m`, `n` columns). A whole tile whose rows all
/// have vector multipliers (nearly every tile) is straight-line code, so the sums stay in registers (the
/// general loop's data-dependent exits made the compiler spill them to the stack and back).
///
/// # Safety
/// As [`crate::cpu::qgemm::QKernel`]'s `c`, `ldc`, `m`, `n`, `rq`.
#[inline(always)]
unsafe fn store_tile<const R: usize>(
    v: &[[int32x4_t; 2]; R],
    rq: &Requant,
    c: *mut i8,
    ldc: usize,
    m: usize,
    n: usize,
) {
    // SAFETY: the caller's bounds.
    unsafe {
        let vector =
            |f: &[crate::ir::quant::FixedMultiplier]| f.iter().all(|f| (0..=31).contains(&f.shift));
        if m == R && n == 8 && rq.mult.get(..R).is_some_and(vector) {
            for (r, vr) in v.iter().enumerate() {
                vst1_s8(c.add(r * ldc), RowRq::any(rq, r).bytes(*vr));
            }
            return;
        }
        for (r, vr) in v.iter().enumerate().take(m) {
            store_row8(*vr, rq, r, c.add(r * ldc), n);
        }
    }
}

/// int8 micro-kernel for cores without dotprod (Pi 4): 4 rows × 8 columns, 16 accumulators, one
/// `smull_block` per k-block, fused epilogue. Any int8 weights (−128 included).
///
/// # Safety
/// As [`crate::cpu::qgemm::QKernel`].
#[allow(clippy::too_many_arguments)] // the QKernel contract
pub unsafe fn qgemm_4x8_smlal(
    kb: usize,
    a: *const i8,
    b: *const i8,
    c: *mut i8,
    ldc: usize,
    m: usize,
    n: usize,
    rq: &Requant,
) {
    // SAFETY (whole fn): packed panels hold kb·16 bytes (A) and kb·32 bytes (B); c rows < m valid.
    unsafe {
        let mut t = [[vdupq_n_s32(0); 4]; 4];
        for blk in 0..kb {
            smull_block(&mut t, a.add(blk * 16), b.add(blk * 32));
        }
        store_tile_4x8(&t, rq, c, ldc, m, n);
    }
}

/// [`qgemm_4x8_smlal`] for weights in −127..=127 (what tern's quantizer writes): two k-blocks per step,
/// the second block's products added to the first's in i16 by `smlal` before one `sadalp` (exact: a
/// lane holds two products, each |w·x| ≤ 127·128, so their sum fits i16): 12 instead of 16 arithmetic
/// instructions per row and 64 MACs, in inline asm; an odd last block as `smull_block`.
/// [`crate::cpu::qgemm::QGemm::for_weights`] picks it.
///
/// # Safety
/// As [`crate::cpu::qgemm::QKernel`], and no weight in the A panel is −128.
#[allow(clippy::too_many_arguments)] // the QKernel contract
pub unsafe fn qgemm_4x8_smlal2(
    kb: usize,
    a: *const i8,
    b: *const i8,
    c: *mut i8,
    ldc: usize,
    m: usize,
    n: usize,
    rq: &Requant,
) {
    // One row of the step: its two 4-byte weight groups (this block, the next) replicated, the 16
    // products of each against the four B registers, pair-summed in i16 and `sadalp`ed into the row's
    // four accumulators.
    macro_rules! row {
        ($t0:literal, $t1:literal, $t2:literal, $t3:literal) => {
            concat!(
                "ld1r {{v20.4s}}, [{a0}], #4\n",
                "ld1r {{v21.4s}}, [{a1}], #4\n",
                "smull v22.8h, v16.8b, v20.8b\n",
                "smull2 v23.8h, v16.16b, v20.16b\n",
                "smull v24.8h, v17.8b, v20.8b\n",
                "smull2 v25.8h, v17.16b, v20.16b\n",
                "smlal v22.8h, v18.8b, v21.8b\n",
                "smlal2 v23.8h, v18.16b, v21.16b\n",
                "smlal v24.8h, v19.8b, v21.8b\n",
                "smlal2 v25.8h, v19.16b, v21.16b\n",
                "sadalp v",
                $t0,
                ".4s, v22.8h\n",
                "sadalp v",
                $t1,
                ".4s, v23.8h\n",
                "sadalp v",
                $t2,
                ".4s, v24.8h\n",
                "sadalp v",
                $t3,
                ".4s, v25.8h\n",
            )
        };
    }
    // SAFETY (whole fn): packed panels hold kb·16 bytes (A) and kb·32 bytes (B); c rows < m valid.
    unsafe {
        let z = vdupq_n_s32(0);
        let mut t = [[z; 4]; 4];
        let pairs = kb / 2;
        if pairs > 0 {
            // hand-scheduled: the accumulators stay in v0..v15 for the whole depth (the compiler's
            // version of this loop spilled and shuffled them, losing the pair sums' gain)
            core::arch::asm!(
                "2:",
                "ld1 {{v16.16b, v17.16b, v18.16b, v19.16b}}, [{b}], #64",
                "add {a1}, {a0}, #16",
                row!("0", "1", "2", "3"),
                row!("4", "5", "6", "7"),
                row!("8", "9", "10", "11"),
                row!("12", "13", "14", "15"),
                // a0 moved 16 (one block) through the rows; the next pair starts one block on
                "add {a0}, {a0}, #16",
                "subs {n}, {n}, #1",
                "b.ne 2b",
                a0 = inout(reg) a => _,
                a1 = out(reg) _,
                b = inout(reg) b => _,
                n = inout(reg) pairs => _,
                inout("v0") t[0][0], inout("v1") t[0][1], inout("v2") t[0][2], inout("v3") t[0][3],
                inout("v4") t[1][0], inout("v5") t[1][1], inout("v6") t[1][2], inout("v7") t[1][3],
                inout("v8") t[2][0], inout("v9") t[2][1], inout("v10") t[2][2], inout("v11") t[2][3],
                inout("v12") t[3][0], inout("v13") t[3][1], inout("v14") t[3][2], inout("v15") t[3][3],
                out("v16") _, out("v17") _, out("v18") _, out("v19") _, out("v20") _,
                out("v21") _, out("v22") _, out("v23") _, out("v24") _, out("v25") _,
                options(nostack, readonly),
            );
        }
        if kb % 2 == 1 {
            let blk = kb - 1;
            smull_block(&mut t, a.add(blk * 16), b.add(blk * 32));
        }
        store_tile_4x8(&t, rq, c, ldc, m, n);
    }
}

/// int8 micro-kernel with SDOT (Pi 5, Jetson Orin): 8 rows × 8 columns, 16 accumulators; each by-element
/// `sdot` adds four 4-byte dot products (one row's 4 weights against 4 columns), 16 MACs per instruction.
/// `vdotq_s32` is unstable on stable Rust, hence inline asm. Fused epilogue.
///
/// # Safety
/// As [`crate::cpu::qgemm::QKernel`], plus the CPU must have the dotprod extension.
#[target_feature(enable = "dotprod")]
#[allow(clippy::too_many_arguments)] // the QKernel contract
pub unsafe fn qgemm_8x8_sdot(
    kb: usize,
    a: *const i8,
    b: *const i8,
    c: *mut i8,
    ldc: usize,
    m: usize,
    n: usize,
    rq: &Requant,
) {
    macro_rules! dot {
        ($acc:expr, $b:expr, $a:expr, $lane:literal) => {
            core::arch::asm!(concat!("sdot {acc:v}.4s, {b:v}.16b, {a:v}.4b[", $lane, "]"),
                acc = inout(vreg) $acc, b = in(vreg) $b, a = in(vreg) $a, options(pure, nomem, nostack))
        };
    }
    // SAFETY (whole fn): packed panels hold kb·32 bytes (A) and kb·32 bytes (B); c rows < m valid.
    unsafe {
        let mut t = [[vdupq_n_s32(0); 2]; 8];
        for blk in 0..kb {
            let b0 = vld1q_s8(b.add(blk * 32));
            let b1 = vld1q_s8(b.add(blk * 32 + 16));
            let a0 = vld1q_s8(a.add(blk * 32));
            let a1 = vld1q_s8(a.add(blk * 32 + 16));
            dot!(t[0][0], b0, a0, "0");
            dot!(t[0][1], b1, a0, "0");
            dot!(t[1][0], b0, a0, "1");
            dot!(t[1][1], b1, a0, "1");
            dot!(t[2][0], b0, a0, "2");
            dot!(t[2][1], b1, a0, "2");
            dot!(t[3][0], b0, a0, "3");
            dot!(t[3][1], b1, a0, "3");
            dot!(t[4][0], b0, a1, "0");
            dot!(t[4][1], b1, a1, "0");
            dot!(t[5][0], b0, a1, "1");
            dot!(t[5][1], b1, a1, "1");
            dot!(t[6][0], b0, a1, "2");
            dot!(t[6][1], b1, a1, "2");
            dot!(t[7][0], b0, a1, "3");
            dot!(t[7][1], b1, a1, "3");
        }
        store_tile(&t, rq, c, ldc, m, n);
    }
}

/// Row `r`'s vector epilogue over the first `n` accumulators, 8 at a time: `store(i, q, v)` for each group
/// of 8 at `i`; returns how many it covered (0 where the row's multiplier has no vector form).
///
/// # Safety
/// `acc` holds `n` values.
#[inline(always)]
unsafe fn requant_groups(
    rq: &Requant,
    r: usize,
    acc: &[i32],
    n: usize,
    mut store: impl FnMut(usize, &RowRq, [int32x4_t; 2]),
) -> usize {
    let mut i = 0;
    if let Some(q) = RowRq::new(rq, r) {
        while i + 8 <= n {
            // SAFETY: 8 values in bounds (the caller's n).
            let v = unsafe {
                [
                    vld1q_s32(acc.as_ptr().add(i)),
                    vld1q_s32(acc.as_ptr().add(i + 4)),
                ]
            };
            store(i, &q, v);
            i += 8;
        }
    }
    i
}

/// [`Requant::value`] over a row into int16 with the NEON epilogue, 8 values at a time; returns how many
/// leading values it wrote (0 where the row's multiplier has no vector form: the caller finishes).
///
/// # Safety
/// None beyond aarch64 (NEON is baseline); unsafe for symmetry with the other paths.
pub unsafe fn requant_row16_neon(rq: &Requant, r: usize, acc: &[i32], out: &mut [i16]) -> usize {
    let n = acc.len().min(out.len());
    // SAFETY: n values in both slices; 8 stored at i < n − 7.
    unsafe {
        requant_groups(rq, r, acc, n, |i, q, v| {
            vst1q_s16(out.as_mut_ptr().add(i), q.halves(v))
        })
    }
}

/// [`Requant::value`] of row 0 over int16 inputs `x` (widened, as sums) into `y`, 8 values at a time by
/// the row epilogue in registers (a Q16Unary: its f32 function is the epilogue's); returns how many
/// leading values it wrote (0 where the row has no vector form: the caller finishes).
///
/// # Safety
/// None beyond aarch64 (NEON is baseline); unsafe for symmetry with the other paths.
pub unsafe fn requant_i16_neon(rq: &Requant, x: &[i16], y: &mut [i16]) -> usize {
    let Some(q) = RowRq::new(rq, 0) else {
        return 0;
    };
    let n = x.len().min(y.len()) / 8 * 8;
    // SAFETY: 8 values in bounds of both slices per step; the rest is register arithmetic.
    unsafe {
        for i in (0..n).step_by(8) {
            let v = vld1q_s16(x.as_ptr().add(i));
            let w = q.halves([vmovl_s16(vget_low_s16(v)), vmovl_high_s16(v)]);
            vst1q_s16(y.as_mut_ptr().add(i), w);
        }
    }
    n
}

/// One 16-bit GEMM tile (`crate::cpu::q16`): 4 rows of the packed panel `a` (k-pairs) times 16 columns of
/// `b` (row-major, stride `ldb`), requantized into `rows` rows of `c` (stride `ldc`): per k, each row's
/// weight from its lane multiplies the 16 values of b's row with `smlal`/`smlal2` (16 accumulators).
///
/// # Safety
/// `a` holds `k.div_ceil(2)·8` values; `b` is valid for `k` rows of 16 values at stride `ldb`, `c` for
/// `rows` (≤ 4) rows of 16 at stride `ldc`; `rq` has 4 rows or `rows` of them.
#[allow(clippy::too_many_arguments)]
pub unsafe fn q16_tile_neon(
    k: usize,
    a: &[i16],
    b: *const i16,
    ldb: usize,
    c: *mut i16,
    ldc: usize,
    rows: usize,
    rq: &Requant,
) {
    let kp = k.div_ceil(2);
    // (always true from q16::gemm16: `pack_a` panels hold kp·8 values, rows ≤ MR = 4; it guards this
    // function's own reads without a panic: a skipped tile would leave its outputs unwritten, which the
    // kernel tests against the scalar oracle would see)
    if a.len() < kp * 8 || rows > 4 {
        return;
    }
    macro_rules! row {
        ($t:expr, $b0:expr, $b1:expr, $w:expr, $lane:literal) => {
            $t[0] = vmlal_laneq_s16::<$lane>($t[0], vget_low_s16($b0), $w);
            $t[1] = vmlal_high_laneq_s16::<$lane>($t[1], $b0, $w);
            $t[2] = vmlal_laneq_s16::<$lane>($t[2], vget_low_s16($b1), $w);
            $t[3] = vmlal_high_laneq_s16::<$lane>($t[3], $b1, $w);
        };
    }
    // SAFETY (whole fn): the bounds above and the caller's contract.
    unsafe {
        let mut t = [[vdupq_n_s32(0); 4]; 4];
        for q in 0..kp {
            let w = vld1q_s16(a.as_ptr().add(q * 8));
            let p = b.add(2 * q * ldb);
            let (b0, b1) = (vld1q_s16(p), vld1q_s16(p.add(8)));
            row!(t[0], b0, b1, w, 0);
            row!(t[1], b0, b1, w, 2);
            row!(t[2], b0, b1, w, 4);
            row!(t[3], b0, b1, w, 6);
            if 2 * q + 1 < k {
                let p = b.add((2 * q + 1) * ldb);
                let (b0, b1) = (vld1q_s16(p), vld1q_s16(p.add(8)));
                row!(t[0], b0, b1, w, 1);
                row!(t[1], b0, b1, w, 3);
                row!(t[2], b0, b1, w, 5);
                row!(t[3], b0, b1, w, 7);
            }
        }
        for (r, v) in t.iter().enumerate().take(rows) {
            let dst = c.add(r * ldc);
            match RowRq::new(rq, r) {
                Some(q) => {
                    vst1q_s16(dst, q.halves([v[0], v[1]]));
                    vst1q_s16(dst.add(8), q.halves([v[2], v[3]]));
                }
                None => {
                    let mut wide = [0i32; 16];
                    for (h, x) in v.iter().enumerate() {
                        vst1q_s32(wide.as_mut_ptr().add(4 * h), *x);
                    }
                    for (j, &x) in wide.iter().enumerate() {
                        *dst.add(j) = rq.value(r, x) as i16;
                    }
                }
            }
        }
    }
}

/// [`Requant::row`] with the NEON epilogue, 8 values at a time (scalar tail and fallback rows).
///
/// # Safety
/// None beyond aarch64 (NEON is baseline); unsafe for symmetry with the other paths.
pub unsafe fn requant_row_neon(rq: &Requant, r: usize, acc: &[i32], out: &mut [i8]) {
    let n = acc.len().min(out.len());
    // SAFETY: n values in both slices; 8 stored at i < n − 7.
    let i = unsafe {
        requant_groups(rq, r, acc, n, |i, q, v| {
            vst1_s8(out.as_mut_ptr().add(i), q.bytes(v))
        })
    };
    rq.row(r, &acc[i..n], &mut out[i..n]);
}

/// `out[i] = rq(r, (a[i] − za)·qb)`: an int8 row times one integer (a broadcast Mul, an SE gate), the
/// products formed in registers (`smull` of i16 values: |a − za| ≤ 255, |qb| ≤ 255) and requantized
/// there, 8 at a time (the NEON form of x86 `scale_row_avx2`); the tail, and rows whose multiplier has no
/// vector form, by [`Requant::apply`].
///
/// # Safety
/// None beyond aarch64 (NEON is baseline); `za` and `qb` must lie in −255..=255.
pub unsafe fn scale_row_neon(
    rq: &Requant,
    r: usize,
    (a, za, qb): (&[i8], i32, i32),
    out: &mut [i8],
) {
    let n = a.len().min(out.len());
    let mut i = 0;
    if let Some(q) = RowRq::new(rq, r) {
        // SAFETY: 8 bytes in bounds of both slices per step.
        unsafe {
            let z = vdupq_n_s16(za as i16);
            while i + 8 <= n {
                let x = vsubq_s16(vmovl_s8(vld1_s8(a.as_ptr().add(i))), z);
                let v = [
                    vmull_n_s16(vget_low_s16(x), qb as i16),
                    vmull_high_n_s16(x, qb as i16),
                ];
                vst1_s8(out.as_mut_ptr().add(i), q.bytes(v));
                i += 8;
            }
        }
    }
    for (o, &v) in out[i..n].iter_mut().zip(&a[i..n]) {
        *o = rq.apply(r, (v as i32 - za) * qb);
    }
}

/// `y[i] = t[x[i] + 128]` (an int8 lookup table), 16 at a time: the index `x + 128` (a sign-bit flip) is
/// looked up in each 64-byte quarter of the table with `tbl` (an index past a quarter gives 0; the index
/// moves down 64 per quarter, wrapping below zero to out of range), and the four results are or'ed.
///
/// # Safety
/// NEON (part of aarch64).
pub unsafe fn lut_neon(t: &[i8; 256], x: &[i8], y: &mut [i8]) {
    let n = x.len().min(y.len());
    // SAFETY (whole fn): the table holds 256 bytes; loads and stores stay below n.
    unsafe {
        let tp = t.as_ptr() as *const u8;
        let q = [
            vld1q_u8_x4(tp),
            vld1q_u8_x4(tp.add(64)),
            vld1q_u8_x4(tp.add(128)),
            vld1q_u8_x4(tp.add(192)),
        ];
        let (flip, step) = (vdupq_n_u8(0x80), vdupq_n_u8(64));
        let mut i = 0;
        while i + 16 <= n {
            let i0 = veorq_u8(vld1q_u8(x.as_ptr().add(i) as *const u8), flip);
            let i1 = vsubq_u8(i0, step);
            let i2 = vsubq_u8(i1, step);
            let i3 = vsubq_u8(i2, step);
            let r = vorrq_u8(
                vorrq_u8(vqtbl4q_u8(q[0], i0), vqtbl4q_u8(q[1], i1)),
                vorrq_u8(vqtbl4q_u8(q[2], i2), vqtbl4q_u8(q[3], i3)),
            );
            vst1q_u8(y.as_mut_ptr().add(i) as *mut u8, r);
            i += 16;
        }
        for (o, &v) in y[i..n].iter_mut().zip(&x[i..n]) {
            *o = t[(v as i32 + 128) as usize];
        }
    }
}

/// One output row of a depthwise convolution, 32 (then 16) outputs at a time with every tap's products
/// summed in registers (`smlal` by the tap's weight, i16 × i16 into i32: exact), then the row's epilogue
/// on those registers (`RowRq`, set up once for the row). `ops` pairs two taps per entry as on x86
/// ([`super::DwPairs`]); `pp` holds the padded plane minus the input zero point.
///
/// # Safety
/// NEON (part of aarch64); every `off + out.len().next_multiple_of(16)` ≤ `pp.len()` (the caller checks).
pub unsafe fn dw_row_neon(pp: &[i16], ops: DwPairs, rq: &Requant, r: usize, out: &mut [i8]) {
    let (ow, p) = (out.len(), pp.as_ptr());
    // the row's requantization set up once (a row without a vector form: the scalar rule per vector)
    let q = RowRq::new(rq, r);
    // SAFETY: dst valid for n ≤ 8 bytes (the callers below).
    let store = |v: [int32x4_t; 2], dst: *mut i8, n: usize| unsafe {
        match &q {
            Some(q) => q.store(v, dst, n),
            None => store_row8(v, rq, r, dst, n),
        }
    };
    let mut x0 = 0;
    while x0 < ow {
        let left = ow - x0;
        // SAFETY: reads below the caller's bound (a 32-wide block starts where more than 16 outputs are
        // left, so it ends within the row rounded up to 16); min(left, width) bytes written at out[x0..].
        unsafe {
            let dst = out.as_mut_ptr().add(x0);
            if left > 16 {
                let acc = dw_block_i16::<8>(p, ops, x0);
                for k in 0..4 {
                    if left > 8 * k {
                        let v = [acc[2 * k], acc[2 * k + 1]];
                        store(v, dst.add(8 * k), (left - 8 * k).min(8));
                    }
                }
                x0 += 32;
            } else {
                let acc = dw_block_i16::<4>(p, ops, x0);
                store([acc[0], acc[1]], dst, left.min(8));
                if left > 8 {
                    store([acc[2], acc[3]], dst.add(8), left - 8);
                }
                x0 += 16;
            }
        }
    }
}

/// `A·4` depthwise sums from `x0` of [`dw_row_neon`]: both weights of a tap pair in one register, each
/// multiplied by lane (`smlal` by element: no broadcast per tap); 8 accumulators (32 outputs) take the
/// tap's offset arithmetic and weight load once per 64 MACs instead of 32.
///
/// # Safety
/// NEON; `4·A` values readable at `p + off + x0` for every tap.
#[inline(always)]
unsafe fn dw_block_i16<const A: usize>(
    p: *const i16,
    (w, offs): DwPairs,
    x0: usize,
) -> [int32x4_t; A] {
    // SAFETY: the caller's bounds.
    unsafe {
        let mut acc = [vdupq_n_s32(0); A];
        for (&wp, &(oa, ob)) in w.iter().zip(offs) {
            let w = vreinterpret_s16_s32(vdup_n_s32(wp));
            let (pa, pb) = (p.add(oa + x0), p.add(ob + x0));
            for v in 0..A / 2 {
                let x = vld1q_s16(pa.add(8 * v));
                acc[2 * v] = vmlal_lane_s16::<0>(acc[2 * v], vget_low_s16(x), w);
                acc[2 * v + 1] = vmlal_high_lane_s16::<0>(acc[2 * v + 1], x, w);
            }
            for v in 0..A / 2 {
                let x = vld1q_s16(pb.add(8 * v));
                acc[2 * v] = vmlal_lane_s16::<1>(acc[2 * v], vget_low_s16(x), w);
                acc[2 * v + 1] = vmlal_high_lane_s16::<1>(acc[2 * v + 1], x, w);
            }
        }
        acc
    }
}

/// One output row of an f32 depthwise convolution over stride-phase planes (`taps`: weight and offset
/// from `p` of each tap's first input): 64, then 32, then 16 outputs at a time, accumulated in registers
/// across all taps from the bias with fused multiply-adds: the portable loop's chain, bit for bit (the
/// x86 `dw_row_f32`'s twin). Sixteen accumulators cover the FMA latency of an A72/A76 (two pipes).
///
/// # Safety
/// NEON (part of aarch64); 16 floats readable at `p + off + x0` for every tap and every `x0 < out.len()`
/// that is a multiple of 16 (the caller checks).
pub unsafe fn dw_row_f32(p: *const f32, taps: &[(f32, usize)], bias: f32, out: &mut [f32]) {
    super::dw_row_blocks(out.len(), |x0, width| {
        // SAFETY: the caller's contract; every block ends within out.len() rounded up to 16.
        unsafe {
            match width {
                64 => dw_block_f32::<16>(p, taps, bias, x0, out),
                32 => dw_block_f32::<8>(p, taps, bias, x0, out),
                _ => dw_block_f32::<4>(p, taps, bias, x0, out),
            }
        }
    });
}

/// `V` vectors of 4 outputs of [`dw_row_f32`] from `x0`; those past `out.len()` are dropped.
///
/// # Safety
/// NEON; `4·V` floats readable at `p + off + x0` for every tap.
#[inline(always)]
unsafe fn dw_block_f32<const V: usize>(
    p: *const f32,
    taps: &[(f32, usize)],
    bias: f32,
    x0: usize,
    out: &mut [f32],
) {
    // SAFETY (whole fn): the caller's contract for the loads; stores stay below out.len().
    unsafe {
        let mut acc = [vdupq_n_f32(bias); V];
        for &(w, off) in taps {
            for (v, a) in acc.iter_mut().enumerate() {
                *a = vfmaq_n_f32(*a, vld1q_f32(p.add(off + x0 + 4 * v)), w);
            }
        }
        let ow = out.len();
        for (v, a) in acc.iter().enumerate() {
            let at = x0 + 4 * v;
            if at + 4 <= ow {
                vst1q_f32(out.as_mut_ptr().add(at), *a);
            } else if at < ow {
                let mut buf = [0f32; 4];
                vst1q_f32(buf.as_mut_ptr(), *a);
                out[at..].copy_from_slice(&buf[..ow - at]);
            }
        }
    }
}

/// `FixedMultiplier::apply` on 4 lanes for shifts 0..=31 (without bias and clamp): exact 64-bit products,
/// round half away from zero, arithmetic shift, saturating narrow.
#[inline(always)]
unsafe fn fm_apply4(x: int32x4_t, fm: crate::ir::quant::FixedMultiplier) -> int32x4_t {
    // SAFETY: plain register arithmetic.
    unsafe {
        let sh = vdupq_n_s64(-(31 + fm.shift as i64));
        fm_apply4_lanes(x, vdupq_n_s32(fm.mult), [sh, sh])
    }
}

/// [`fm_apply4`] with a multiplier per lane in registers: mantissas `mult`, −(31 + shift) in `sh` (lanes
/// 0–1, 2–3).
#[inline(always)]
unsafe fn fm_apply4_lanes(x: int32x4_t, mult: int32x4_t, sh: [int64x2_t; 2]) -> int32x4_t {
    // SAFETY: plain register arithmetic.
    unsafe {
        // `srshl` by −total adds 2^(total−1) and shifts: round half up. Taking 1 from a negative product
        // first makes it half away from zero (an exact negative half, −(2k+1)·2^(total−1), then lands on
        // −(k+1); other values keep their floor): the scalar rule. The multiplier is positive, so the
        // product is negative exactly where x is (a zero multiplier's −1 still rounds to 0): x's sign
        // (−1 or 0), widened into the product by `saddw`. |product| < 2^62: no overflow.
        let neg = vshrq_n_s32::<31>(x);
        let lo = vaddw_s32(
            vmull_s32(vget_low_s32(x), vget_low_s32(mult)),
            vget_low_s32(neg),
        );
        let hi = vaddw_high_s32(vmull_high_s32(x, mult), neg);
        vcombine_s32(
            vqmovn_s64(vrshlq_s64(lo, sh[0])),
            vqmovn_s64(vrshlq_s64(hi, sh[1])),
        )
    }
}

/// Integer Add/Sub computed 8 lanes at a time (the NEON form of x86 `qadd_arith_avx2`): each operand's
/// `m.apply((v − z) << 16)` (`ops::quant::QBin`'s table entry, evaluated instead of looked up), summed,
/// rounded half away from zero off the 16 fraction bits, output zero point, clamp. Both multipliers must
/// have shifts 0..=31 and the sums fit i32 (the caller checks). Returns how many leading elements it wrote.
///
/// # Safety
/// NEON (part of aarch64).
#[allow(clippy::too_many_arguments)]
pub unsafe fn qadd_neon(
    (ma, za): (crate::ir::quant::FixedMultiplier, i32),
    (mb, zb): (crate::ir::quant::FixedMultiplier, i32),
    sub: bool,
    (zy, lo, hi): (i32, i32, i32),
    a: &[i8],
    b: &[i8],
    out: &mut [i8],
) -> usize {
    let n = a.len().min(b.len()).min(out.len());
    let mut i = 0;
    // SAFETY (whole loop): 8 bytes in bounds of a, b and out.
    unsafe {
        let (vza, vzb, half) = (vdupq_n_s32(za), vdupq_n_s32(zb), vdupq_n_s32(1 << 15));
        let (vlo, vhi, vz) = (vdupq_n_s32(lo - zy), vdupq_n_s32(hi - zy), vdupq_n_s32(zy));
        let side = |x: int16x8_t, z: int32x4_t, fm| {
            [
                fm_apply4(
                    vshlq_n_s32::<16>(vsubq_s32(vmovl_s16(vget_low_s16(x)), z)),
                    fm,
                ),
                fm_apply4(vshlq_n_s32::<16>(vsubq_s32(vmovl_high_s16(x), z)), fm),
            ]
        };
        while i + 8 <= n {
            let xa = vmovl_s8(vld1_s8(a.as_ptr().add(i)));
            let xb = vmovl_s8(vld1_s8(b.as_ptr().add(i)));
            let (va, vb) = (side(xa, vza, ma), side(xb, vzb, mb));
            let v: [int32x4_t; 2] = core::array::from_fn(|k| {
                let s = if sub {
                    vsubq_s32(va[k], vb[k])
                } else {
                    vaddq_s32(va[k], vb[k])
                };
                let r = vshrq_n_s32::<16>(vaddq_s32(vaddq_s32(s, half), vshrq_n_s32::<31>(s)));
                vaddq_s32(vminq_s32(vmaxq_s32(r, vlo), vhi), vz)
            });
            let w = vcombine_s16(vqmovn_s32(v[0]), vqmovn_s32(v[1]));
            vst1_s8(out.as_mut_ptr().add(i), vqmovn_s16(w));
            i += 8;
        }
    }
    i
}

/// A chunk of the int8 recurrence's row sums (`rnn::dot_rows_i8_i16`), the NEON twin of the x86
/// `dot_chunk_avx2` / `dot_chunk_512`: rows `r..r + R` of `m` times h over columns `c0..c1`, sixteen columns a step
/// (`smlal`/`smlal2`, i16 × i16 into i32: exact over at most `rnn::I16_CHUNK` columns).
///
/// # Safety
/// Rows `r..r + R` of `m` (`h.len()` values each) exist; `c1 ≤ h.len()` and `c1 − c0` is a multiple of
/// 16.
#[inline]
pub unsafe fn dot_chunk_neon<const R: usize>(
    m: &[i8],
    h: &[i16],
    r: usize,
    c0: usize,
    c1: usize,
) -> [i64; R] {
    let n = h.len();
    // SAFETY (block): columns c..c + 16 of h and of each row are in bounds (the contract).
    unsafe {
        let mut acc = [vdupq_n_s32(0); R];
        let mut c = c0;
        while c < c1 {
            let h0 = vld1q_s16(h.as_ptr().add(c));
            let h1 = vld1q_s16(h.as_ptr().add(c + 8));
            for (j, a) in acc.iter_mut().enumerate() {
                let w = vld1q_s8(m.as_ptr().add((r + j) * n + c));
                let (w0, w1) = (vmovl_s8(vget_low_s8(w)), vmovl_high_s8(w));
                *a = vmlal_s16(*a, vget_low_s16(w0), vget_low_s16(h0));
                *a = vmlal_high_s16(*a, w0, h0);
                *a = vmlal_s16(*a, vget_low_s16(w1), vget_low_s16(h1));
                *a = vmlal_high_s16(*a, w1, h1);
            }
            c += 16;
        }
        acc.map(|a| vaddlvq_s32(a))
    }
}
