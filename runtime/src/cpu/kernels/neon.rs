//! aarch64 NEON micro-kernel: 8 rows × 8 columns, 16 accumulator registers.
use super::BRows;
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

f32_kernels!(
    sgemm_8x8,
    sgemm_8x8_rows,
    tile,
    NR,
    [1, 2, 3, 4, 5, 6, 7; 8],
    "NEON is part of aarch64."
);

use crate::cpu::qgemm::Requant;

/// [`Requant::row`] on 4 accumulators of row `r`, bit for bit: saturating bias add (`sqadd`), the exact
/// 64-bit product (`smull`), round half away from zero (add half, subtract 1 for negatives), arithmetic
/// shift (`sshl` by a negative count), saturating narrow, clamp, zero point. Only for shifts 0..=31 (total
/// 31..=62), like the x86 epilogue; other rows take the scalar one.
#[inline(always)]
unsafe fn requant4(acc: int32x4_t, rq: &Requant, r: usize) -> int32x4_t {
    // SAFETY: plain register arithmetic.
    unsafe {
        let v = fm_apply4(vqaddq_s32(acc, vdupq_n_s32(rq.bias[r])), rq.mult[r]);
        let z = rq.zp_out;
        let v = vminq_s32(vmaxq_s32(v, vdupq_n_s32(rq.lo - z)), vdupq_n_s32(rq.hi - z));
        vaddq_s32(v, vdupq_n_s32(z))
    }
}

/// Stores row `r` (8 accumulators as two vectors): `n` ≤ 8 bytes at `dst`.
#[inline(always)]
unsafe fn store_row8(v: [int32x4_t; 2], rq: &Requant, r: usize, dst: *mut i8, n: usize) {
    // SAFETY (whole fn): dst valid for n bytes.
    unsafe {
        let mut bytes = [0i8; 8];
        if (0..=31).contains(&rq.mult[r].shift) {
            let w = vcombine_s16(
                vqmovn_s32(requant4(v[0], rq, r)),
                vqmovn_s32(requant4(v[1], rq, r)),
            );
            let b = vqmovn_s16(w);
            if n == 8 {
                vst1_s8(dst, b);
                return;
            }
            vst1_s8(bytes.as_mut_ptr(), b);
        } else {
            let mut wide = [0i32; 8];
            vst1q_s32(wide.as_mut_ptr(), v[0]);
            vst1q_s32(wide.as_mut_ptr().add(4), v[1]);
            rq.row(r, &wide[..n], &mut bytes[..n]);
        }
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, n);
    }
}

/// int8 micro-kernel for cores without dotprod (Pi 4): `smull` i8×i8 → i16 products, `sadalp` pairwise
/// accumulate into i32 (exact: |−128·−128| fits i16), 4 rows × 8 columns, 16 accumulators, fused epilogue.
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
            let b0 = vld1q_s8(b.add(blk * 32));
            let b1 = vld1q_s8(b.add(blk * 32 + 16));
            let ap = a.add(blk * 16);
            for (r, tr) in t.iter_mut().enumerate() {
                let av = vreinterpretq_s8_s32(vdupq_n_s32(
                    (ap.add(r * 4) as *const i32).read_unaligned(),
                ));
                tr[0] = vpadalq_s16(tr[0], vmull_s8(vget_low_s8(b0), vget_low_s8(av)));
                tr[1] = vpadalq_s16(tr[1], vmull_high_s8(b0, av));
                tr[2] = vpadalq_s16(tr[2], vmull_s8(vget_low_s8(b1), vget_low_s8(av)));
                tr[3] = vpadalq_s16(tr[3], vmull_high_s8(b1, av));
            }
        }
        for (r, tr) in t.iter().enumerate().take(m) {
            let v = [vpaddq_s32(tr[0], tr[1]), vpaddq_s32(tr[2], tr[3])];
            store_row8(v, rq, r, c.add(r * ldc), n);
        }
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
        for (r, v) in t.iter().enumerate().take(m) {
            store_row8(*v, rq, r, c.add(r * ldc), n);
        }
    }
}

/// [`Requant::row`] with the NEON epilogue, 8 values at a time (scalar tail and fallback rows).
///
/// # Safety
/// None beyond aarch64 (NEON is baseline); unsafe for symmetry with the other paths.
pub unsafe fn requant_row_neon(rq: &Requant, r: usize, acc: &[i32], out: &mut [i8]) {
    let n = acc.len().min(out.len());
    let mut i = 0;
    if (0..=31).contains(&rq.mult[r].shift) {
        while i + 8 <= n {
            // SAFETY: 8 values in bounds of both slices.
            unsafe {
                let v = [
                    vld1q_s32(acc.as_ptr().add(i)),
                    vld1q_s32(acc.as_ptr().add(i + 4)),
                ];
                store_row8(v, rq, r, out.as_mut_ptr().add(i), 8);
            }
            i += 8;
        }
    }
    rq.row(r, &acc[i..n], &mut out[i..n]);
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

/// One output row of a depthwise convolution, 16 outputs at a time with every tap's products summed in
/// registers (`smlal` by the tap's weight, i16 × i16 into i32: exact), then the row's epilogue on those
/// registers (`store_row8`). `ops` pairs two taps per entry as on x86: (weights `wa | wb << 16`, offset a,
/// offset b); `pp` holds the padded plane minus the input zero point.
///
/// # Safety
/// NEON (part of aarch64); every `off + out.len().next_multiple_of(16)` ≤ `pp.len()` (the caller checks).
pub unsafe fn dw_row_neon(
    pp: &[i16],
    ops: &[(i32, usize, usize)],
    rq: &Requant,
    r: usize,
    out: &mut [i8],
) {
    let (ow, p) = (out.len(), pp.as_ptr());
    let mut x0 = 0;
    while x0 < ow {
        let n = (ow - x0).min(16);
        // SAFETY: reads below the caller's bound; n bytes written at out[x0..].
        unsafe {
            let mut acc = [vdupq_n_s32(0); 4];
            for &(wp, oa, ob) in ops {
                for (w, off) in [(wp as i16, oa), ((wp >> 16) as i16, ob)] {
                    let a0 = vld1q_s16(p.add(off + x0));
                    let a1 = vld1q_s16(p.add(off + x0 + 8));
                    acc[0] = vmlal_n_s16(acc[0], vget_low_s16(a0), w);
                    acc[1] = vmlal_high_n_s16(acc[1], a0, w);
                    acc[2] = vmlal_n_s16(acc[2], vget_low_s16(a1), w);
                    acc[3] = vmlal_high_n_s16(acc[3], a1, w);
                }
            }
            // requantized from the registers (no store and reload of the sums)
            let dst = out.as_mut_ptr().add(x0);
            store_row8([acc[0], acc[1]], rq, r, dst, n.min(8));
            if n > 8 {
                store_row8([acc[2], acc[3]], rq, r, dst.add(8), n - 8);
            }
        }
        x0 += 16;
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

/// `FixedMultiplier::apply` on 4 lanes for shifts 0..=31 (the core of [`requant4`], without bias and
/// clamp): exact 64-bit products, round half away from zero, arithmetic shift, saturating narrow.
#[inline(always)]
unsafe fn fm_apply4(x: int32x4_t, fm: crate::ir::quant::FixedMultiplier) -> int32x4_t {
    // SAFETY: plain register arithmetic.
    unsafe {
        let total = 31 + fm.shift as i64;
        let sh = vdupq_n_s64(-total);
        let lo = vmull_s32(vget_low_s32(x), vdup_n_s32(fm.mult));
        let hi = vmull_high_s32(x, vdupq_n_s32(fm.mult));
        // `srshl` by −total adds 2^(total−1) and shifts: round half up. Taking 1 from a negative product
        // first makes it half away from zero (an exact negative half, −(2k+1)·2^(total−1), then lands on
        // −(k+1); other values keep their floor): the scalar rule, one instruction fewer per pair.
        // |product| < 2^62, so neither the −1 nor the rounding add overflows.
        let lo = vrshlq_s64(vaddq_s64(lo, vshrq_n_s64::<63>(lo)), sh);
        let hi = vrshlq_s64(vaddq_s64(hi, vshrq_n_s64::<63>(hi)), sh);
        vcombine_s32(vqmovn_s64(lo), vqmovn_s64(hi))
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
