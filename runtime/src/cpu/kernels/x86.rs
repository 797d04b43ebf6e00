//! x86-64 AVX2+FMA micro-kernel: 6 rows × 16 columns, 12 accumulator registers.
use core::arch::x86_64::*;

/// Tile rows.
pub const MR: usize = 6;
/// Tile columns.
pub const NR: usize = 16;

#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize>(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    n: usize,
    acc: bool,
) {
    let mut lo = [_mm256_setzero_ps(); R];
    let mut hi = [_mm256_setzero_ps(); R];
    for p in 0..k {
        // SAFETY: packed panels hold k*MR and k*NR floats (caller contract).
        unsafe {
            let b0 = _mm256_loadu_ps(b.add(p * NR));
            let b1 = _mm256_loadu_ps(b.add(p * NR + 8));
            for r in 0..R {
                let av = _mm256_broadcast_ss(&*a.add(p * MR + r));
                lo[r] = _mm256_fmadd_ps(av, b0, lo[r]);
                hi[r] = _mm256_fmadd_ps(av, b1, hi[r]);
            }
        }
    }
    if n == NR {
        for r in 0..R {
            // SAFETY: row r < m with NR valid columns.
            unsafe {
                let d = c.add(r * ldc);
                let (mut v0, mut v1) = (lo[r], hi[r]);
                if acc {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(d));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(d.add(8)));
                }
                _mm256_storeu_ps(d, v0);
                _mm256_storeu_ps(d.add(8), v1);
            }
        }
    } else {
        let mut buf = [0f32; NR];
        for r in 0..R {
            // SAFETY: buf holds NR floats; only n < NR columns of row r are written to c.
            unsafe {
                _mm256_storeu_ps(buf.as_mut_ptr(), lo[r]);
                _mm256_storeu_ps(buf.as_mut_ptr().add(8), hi[r]);
                let d = c.add(r * ldc);
                for (j, v) in buf.iter().enumerate().take(n) {
                    *d.add(j) = if acc { *d.add(j) + v } else { *v };
                }
            }
        }
    }
}

/// See [`super::MicroKernel`]. Only call when AVX2 and FMA are detected.
///
/// # Safety
/// As [`super::MicroKernel`], plus the CPU must support AVX2 and FMA.
#[allow(clippy::too_many_arguments)] // the MicroKernel contract
pub unsafe fn sgemm_6x16(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    m: usize,
    n: usize,
    acc: bool,
) {
    // SAFETY: forwarded contract; R = m rows are valid.
    unsafe {
        match m {
            1 => tile::<1>(k, a, b, c, ldc, n, acc),
            2 => tile::<2>(k, a, b, c, ldc, n, acc),
            3 => tile::<3>(k, a, b, c, ldc, n, acc),
            4 => tile::<4>(k, a, b, c, ldc, n, acc),
            5 => tile::<5>(k, a, b, c, ldc, n, acc),
            _ => tile::<6>(k, a, b, c, ldc, n, acc),
        }
    }
}

/// int8 micro-kernel, 4 rows × 8 columns: bytes sign-extended to i16 and multiplied pairwise into i32 with
/// `vpmaddwd` (exact). `vpmaddubsw` is avoided on purpose: it saturates its i16 pair sums, so u8×i8 data
/// near the range ends would give wrong integers.
///
/// # Safety
/// As [`crate::cpu::qgemm::QKernel`], plus the CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn qgemm_4x8_avx2(kb: usize, a: *const i8, b: *const i8, acc: &mut [[i32; 8]; 4]) {
    // SAFETY (whole fn): packed panels hold kb·16 bytes (A) and kb·32 bytes (B) per the contract.
    unsafe {
        let mut lo = [_mm256_setzero_si256(); 4];
        let mut hi = [_mm256_setzero_si256(); 4];
        for blk in 0..kb {
            let bp = b.add(blk * 32);
            let b_lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp as *const __m128i));
            let b_hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp.add(16) as *const __m128i));
            let ap = a.add(blk * 16);
            for r in 0..4 {
                let four = (ap.add(r * 4) as *const i32).read_unaligned();
                let a16 = _mm256_cvtepi8_epi16(_mm_set1_epi32(four));
                lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(b_lo, a16));
                hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(b_hi, a16));
            }
        }
        for r in 0..4 {
            // pairs → columns [c0 c1 c4 c5 | c2 c3 c6 c7] → reorder the 64-bit lanes to c0..c7
            let s = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_hadd_epi32(lo[r], hi[r]));
            _mm256_storeu_si256(acc[r].as_mut_ptr() as *mut __m256i, s);
        }
    }
}
