//! aarch64 NEON micro-kernel: 8 rows × 8 columns, 16 accumulator registers.
use core::arch::aarch64::*;

/// Tile rows.
pub const MR: usize = 8;
/// Tile columns.
pub const NR: usize = 8;

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize>(
    k: usize,
    a: *const f32,
    b: *const f32,
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
            let b0 = vld1q_f32(b.add(p * NR));
            let b1 = vld1q_f32(b.add(p * NR + 4));
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

/// See [`super::MicroKernel`].
///
/// # Safety
/// As [`super::MicroKernel`].
#[allow(clippy::too_many_arguments)] // the MicroKernel contract
pub unsafe fn sgemm_8x8(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    m: usize,
    n: usize,
    acc: bool,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match m {
            1 => tile::<1>(k, a, b, c, ldc, n, acc),
            2 => tile::<2>(k, a, b, c, ldc, n, acc),
            3 => tile::<3>(k, a, b, c, ldc, n, acc),
            4 => tile::<4>(k, a, b, c, ldc, n, acc),
            5 => tile::<5>(k, a, b, c, ldc, n, acc),
            6 => tile::<6>(k, a, b, c, ldc, n, acc),
            7 => tile::<7>(k, a, b, c, ldc, n, acc),
            _ => tile::<8>(k, a, b, c, ldc, n, acc),
        }
    }
}

/// int8 micro-kernel for cores without dotprod (Pi 4): `smull` i8×i8 → i16 products, `sadalp` pairwise
/// accumulate into i32 (exact: |−128·−128| fits i16), 4 rows × 8 columns, 16 accumulators.
///
/// # Safety
/// As [`crate::cpu::qgemm::QKernel`].
pub unsafe fn qgemm_4x8_smlal(kb: usize, a: *const i8, b: *const i8, acc: &mut [[i32; 8]; 4]) {
    // SAFETY (whole fn): packed panels hold kb·16 bytes (A) and kb·32 bytes (B) per the contract.
    unsafe {
        let mut t = [[vdupq_n_s32(0); 4]; 4];
        for blk in 0..kb {
            let b0 = vld1q_s8(b.add(blk * 32));
            let b1 = vld1q_s8(b.add(blk * 32 + 16));
            let ap = a.add(blk * 16);
            for r in 0..4 {
                let av = vreinterpretq_s8_s32(vdupq_n_s32(
                    (ap.add(r * 4) as *const i32).read_unaligned(),
                ));
                t[r][0] = vpadalq_s16(t[r][0], vmull_s8(vget_low_s8(b0), vget_low_s8(av)));
                t[r][1] = vpadalq_s16(t[r][1], vmull_high_s8(b0, av));
                t[r][2] = vpadalq_s16(t[r][2], vmull_s8(vget_low_s8(b1), vget_low_s8(av)));
                t[r][3] = vpadalq_s16(t[r][3], vmull_high_s8(b1, av));
            }
        }
        for r in 0..4 {
            vst1q_s32(acc[r].as_mut_ptr(), vpaddq_s32(t[r][0], t[r][1]));
            vst1q_s32(acc[r].as_mut_ptr().add(4), vpaddq_s32(t[r][2], t[r][3]));
        }
    }
}

/// int8 micro-kernel with SDOT (Pi 5, Jetson Orin): each `sdot` adds four 4-byte dot products,
/// 4 rows × 8 columns, 8 accumulators. `vdotq_s32` is unstable on stable Rust, hence inline asm.
///
/// # Safety
/// As [`crate::cpu::qgemm::QKernel`], plus the CPU must have the dotprod extension.
#[target_feature(enable = "dotprod")]
pub unsafe fn qgemm_4x8_sdot(kb: usize, a: *const i8, b: *const i8, acc: &mut [[i32; 8]; 4]) {
    // SAFETY (whole fn): packed panels hold kb·16 bytes (A) and kb·32 bytes (B) per the contract.
    unsafe {
        let mut t = [[vdupq_n_s32(0); 2]; 4];
        for blk in 0..kb {
            let b0 = vld1q_s8(b.add(blk * 32));
            let b1 = vld1q_s8(b.add(blk * 32 + 16));
            let ap = a.add(blk * 16);
            for r in 0..4 {
                let av = vreinterpretq_s8_s32(vdupq_n_s32(
                    (ap.add(r * 4) as *const i32).read_unaligned(),
                ));
                core::arch::asm!("sdot {acc:v}.4s, {b:v}.16b, {a:v}.16b",
                    acc = inout(vreg) t[r][0], b = in(vreg) b0, a = in(vreg) av, options(pure, nomem, nostack));
                core::arch::asm!("sdot {acc:v}.4s, {b:v}.16b, {a:v}.16b",
                    acc = inout(vreg) t[r][1], b = in(vreg) b1, a = in(vreg) av, options(pure, nomem, nostack));
            }
        }
        for r in 0..4 {
            vst1q_s32(acc[r].as_mut_ptr(), t[r][0]);
            vst1q_s32(acc[r].as_mut_ptr().add(4), t[r][1]);
        }
    }
}
