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
