//! x86-64 AVX2+FMA micro-kernel: 6 rows × 16 columns, 12 accumulator registers.
use super::{BRows, DwPairs};
use core::arch::x86_64::*;

/// Tile rows.
pub const MR: usize = 6;
/// Tile columns.
pub const NR: usize = 16;

#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize, B: BRows>(
    k: usize,
    a: *const f32,
    b: B,
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
            let row = b.row(p);
            let b0 = _mm256_loadu_ps(row);
            let b1 = _mm256_loadu_ps(row.add(8));
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

f32_kernels!(
    sgemm_6x16,
    sgemm_6x16_rows,
    tile,
    NR,
    [1, 2, 3, 4, 5; 6],
    "Only call when AVX2 and FMA are detected (the CPU must support them)."
);

/// AVX-512 f32 tile rows.
pub const MR512: usize = 8;
/// AVX-512 f32 tile columns.
pub const NR512: usize = 32;

/// [`tile`] on 512-bit registers: 8 rows × 32 columns, 16 accumulators, the same fused multiply-add chain
/// per output (k in order, then + C), so the same bits.
#[target_feature(enable = "avx512f")]
unsafe fn tile512<const R: usize, B: BRows>(
    k: usize,
    a: *const f32,
    b: B,
    c: *mut f32,
    ldc: usize,
    n: usize,
    acc: bool,
) {
    // SAFETY (whole fn): packed panels hold k*MR512 and k*NR512 floats; rows < R and cols < n of c valid.
    unsafe {
        let mut lo = [_mm512_setzero_ps(); R];
        let mut hi = [_mm512_setzero_ps(); R];
        for p in 0..k {
            let row = b.row(p);
            let b0 = _mm512_loadu_ps(row);
            let b1 = _mm512_loadu_ps(row.add(16));
            for r in 0..R {
                let av = _mm512_set1_ps(*a.add(p * MR512 + r));
                lo[r] = _mm512_fmadd_ps(av, b0, lo[r]);
                hi[r] = _mm512_fmadd_ps(av, b1, hi[r]);
            }
        }
        // columns past n are masked off (no partial-tile buffer)
        let m0 = if n >= 16 {
            0xffff
        } else {
            (1u32 << n) as u16 - 1
        };
        let m1 = if n >= 32 {
            0xffff
        } else if n > 16 {
            (1u32 << (n - 16)) as u16 - 1
        } else {
            0
        };
        for r in 0..R {
            let d = c.add(r * ldc);
            let (mut v0, mut v1) = (lo[r], hi[r]);
            if acc {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, d));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, d.add(16)));
            }
            _mm512_mask_storeu_ps(d, m0, v0);
            _mm512_mask_storeu_ps(d.add(16), m1, v1);
        }
    }
}

f32_kernels!(
    sgemm_8x32_512,
    sgemm_8x32_512_rows,
    tile512,
    NR512,
    [1, 2, 3, 4, 5, 6, 7; 8],
    "The 8×32 AVX-512 tile: only call when AVX-512 F is detected (the CPU must support it)."
);

use crate::cpu::qgemm::Requant;
use crate::ir::quant::FixedMultiplier;

/// One output row's requantization constants, broadcast once per tile row.
struct RowRq {
    bias: __m256i,
    // acc clamped to [sat_lo, sat_hi] before adding the bias: the saturating add in two instructions
    sat_lo: __m256i,
    sat_hi: __m256i,
    mult: __m256i,
    round: __m256i,
    left: __m128i,
    right: __m128i,
    lo: __m256i,
    hi: __m256i,
    zp: __m256i,
    /// The 16-bit engine's f32 requantization (`crate::ir::quant::requant_f32`): its multiplier, and
    /// the clamp as floats; `float` selects it over the Q31 one.
    fscale: __m256,
    flo: __m256,
    fhi: __m256,
    float: bool,
    /// A fused HardSwish's constant (`crate::ir::quant::hard_swish_f32`), with `float`.
    hswish: Option<__m256>,
}

/// The vector epilogue covers shifts 0..=31 (total right shift 31..=62: every multiplier below 1 down to
/// 2^-32); other rows take the scalar epilogue.
#[inline(always)]
fn vec_ok(fm: FixedMultiplier) -> bool {
    (0..=31).contains(&fm.shift)
}

/// [`vec_ok`] for a 16-bit row, which the f32 form covers whatever its multiplier.
#[inline(always)]
fn vec_ok16(rq: &Requant, r: usize) -> bool {
    rq.fscale.get(r).is_some() || vec_ok(rq.mult[r])
}

#[inline]
#[target_feature(enable = "avx2")]
fn row_rq(rq: &Requant, r: usize) -> RowRq {
    let (fm, z) = (rq.mult[r], rq.zp_out);
    let float = rq.fscale.get(r).copied();
    // (an f32 row's Q31 constants go unused: any shift in range keeps them well-defined)
    let total = 31 + if float.is_some() { 0 } else { fm.shift };
    let b = rq.bias[r];
    // acc + b stays in i32 exactly when acc ∈ [MIN − b, MAX − b] (one side is vacuous for each sign of b)
    let (sat_lo, sat_hi) = if b >= 0 {
        (i32::MIN, i32::MAX - b)
    } else {
        (i32::MIN - b, i32::MAX)
    };
    RowRq {
        bias: _mm256_set1_epi32(b),
        sat_lo: _mm256_set1_epi32(sat_lo),
        sat_hi: _mm256_set1_epi32(sat_hi),
        mult: _mm256_set1_epi32(fm.mult),
        round: _mm256_set1_epi64x(1i64 << (total - 1)),
        left: _mm_cvtsi32_si128((total == 31) as i32),
        right: _mm_cvtsi32_si128((total - 32).max(0)),
        lo: _mm256_set1_epi32(rq.lo - z),
        hi: _mm256_set1_epi32(rq.hi - z),
        zp: _mm256_set1_epi32(z),
        fscale: _mm256_set1_ps(float.unwrap_or(0.0)),
        flo: _mm256_set1_ps((rq.lo - z) as f32),
        fhi: _mm256_set1_ps((rq.hi - z) as f32),
        float: float.is_some(),
        hswish: rq
            .hswish
            .filter(|_| float.is_some())
            .map(|k| _mm256_set1_ps(k)),
    }
}

/// [`Requant::row`] on 8 accumulators of one row, bit for bit: saturating bias add (as a clamp of the
/// accumulator to the range where the sum cannot wrap), the 32×32→64
/// product in even/odd lanes, round half away from zero (add half, subtract 1 for negatives), then the
/// arithmetic shift as "high dword of (q << left)" followed by a 32-bit shift by `right` (AVX2 has no
/// 64-bit arithmetic shift), clamp, zero point. An f32 row (the 16-bit engine, format 12 on) takes
/// `requant_f32` after the bias instead.
#[inline]
#[target_feature(enable = "avx2")]
fn requant8(acc: __m256i, p: &RowRq) -> __m256i {
    let s = _mm256_add_epi32(
        _mm256_min_epi32(_mm256_max_epi32(acc, p.sat_lo), p.sat_hi),
        p.bias,
    );
    if p.float {
        // `requant_f32`: cvtdq2ps and cvtps2dq round to nearest even (MXCSR's default, which Rust
        // keeps), the product is one IEEE multiply, the clamp exact
        let mut f = _mm256_mul_ps(_mm256_cvtepi32_ps(s), p.fscale);
        if let Some(k) = p.hswish {
            // `hard_swish_f32` on the real sums, its steps in order
            let g = _mm256_add_ps(f, _mm256_set1_ps(3.0));
            let g = _mm256_min_ps(_mm256_max_ps(g, _mm256_setzero_ps()), _mm256_set1_ps(6.0));
            f = _mm256_mul_ps(_mm256_mul_ps(f, g), k);
        }
        let f = _mm256_min_ps(_mm256_max_ps(f, p.flo), p.fhi);
        return _mm256_add_epi32(_mm256_cvtps_epi32(f), p.zp);
    }
    let zero = _mm256_setzero_si256();
    let pe = _mm256_mul_epi32(s, p.mult);
    let po = _mm256_mul_epi32(_mm256_srli_epi64::<32>(s), p.mult);
    let qe = _mm256_add_epi64(_mm256_add_epi64(pe, p.round), _mm256_cmpgt_epi64(zero, pe));
    let qo = _mm256_add_epi64(_mm256_add_epi64(po, p.round), _mm256_cmpgt_epi64(zero, po));
    let (qe, qo) = (_mm256_sll_epi64(qe, p.left), _mm256_sll_epi64(qo, p.left));
    let r = _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(qe), qo);
    let r = _mm256_sra_epi32(r, p.right);
    _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(r, p.lo), p.hi), p.zp)
}

/// Stores row `r` of a tile held as `V` vectors of 8 accumulators: `n` bytes at `dst`.
///
/// # Safety
/// `dst` valid for `n` ≤ 8·V bytes; AVX2 available.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store_row<const V: usize>(
    acc: &[__m256i; V],
    rq: &Requant,
    r: usize,
    dst: *mut i8,
    n: usize,
) {
    if vec_ok(rq.mult[r]) {
        // SAFETY: forwarded contract.
        unsafe { store_rq::<V>(acc, &row_rq(rq, r), dst, n) };
    } else {
        let mut wide = [0i32; 16];
        let mut bytes = [0i8; 16];
        for (i, v) in acc.iter().enumerate() {
            // SAFETY: wide holds 8·V ≤ 16 values.
            unsafe { _mm256_storeu_si256(wide.as_mut_ptr().add(8 * i) as *mut __m256i, *v) };
        }
        rq.row(r, &wide[..n], &mut bytes[..n]);
        // SAFETY: n bytes valid at dst.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, n) };
    }
}

/// [`store_row`] with the row's constants already broadcast (hoisted out of a loop over the row).
///
/// # Safety
/// `dst` valid for `n` ≤ 8·V bytes; AVX2 available.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store_rq<const V: usize>(acc: &[__m256i; V], p: &RowRq, dst: *mut i8, n: usize) {
    let v0 = requant8(acc[0], p);
    let b = if V == 2 {
        let v1 = requant8(acc[1], p);
        let w = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(v0, v1));
        _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256::<1>(w))
    } else {
        let w = _mm_packs_epi32(
            _mm256_castsi256_si128(v0),
            _mm256_extracti128_si256::<1>(v0),
        );
        _mm_packs_epi16(w, w)
    };
    // SAFETY (all stores): n bytes valid at dst.
    if n == 16 {
        unsafe { _mm_storeu_si128(dst as *mut __m128i, b) };
    } else if n == 8 {
        unsafe { _mm_storel_epi64(dst as *mut __m128i, b) };
    } else {
        let mut bytes = [0i8; 16];
        // SAFETY: bytes holds 16.
        unsafe { _mm_storeu_si128(bytes.as_mut_ptr() as *mut __m128i, b) };
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, n) };
    }
}

/// AVX2 tile: R rows × 8 columns, 2R accumulators. Weights arrive as i16 (sign-extended once at packing:
/// [`crate::cpu::qgemm::QGemm::a_wide`]), activations as bytes widened once per block for all R rows;
/// `vpmaddwd` multiplies pairs into i32 (exact). `vpmaddubsw` is avoided on purpose: it saturates its i16
/// pair sums, so u8×i8 data near the range ends would give wrong integers. Fused vector epilogue.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn madd_tile<const R: usize>(
    kb: usize,
    a: *const i8,
    b: *const i8,
    c: *mut i8,
    ldc: usize,
    n: usize,
    rq: &Requant,
) {
    // SAFETY (whole fn): packed panels hold kb·48 bytes (A: 6 rows × 4 i16) and kb·32 bytes (B); c rows
    // < R valid.
    unsafe {
        let mut lo = [_mm256_setzero_si256(); R];
        let mut hi = [_mm256_setzero_si256(); R];
        for blk in 0..kb {
            let bp = b.add(blk * 32);
            let b_lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp as *const __m128i));
            let b_hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp.add(16) as *const __m128i));
            let ap = a.add(blk * 48);
            for r in 0..R {
                // four i16 weights (k .. k+3) repeated across the register, pairs against b's pairs
                let a16 = _mm256_set1_epi64x((ap.add(r * 8) as *const i64).read_unaligned());
                lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(b_lo, a16));
                hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(b_hi, a16));
            }
        }
        for r in 0..R {
            // pairs → columns [c0 c1 c4 c5 | c2 c3 c6 c7] → reorder the 64-bit lanes to c0..c7
            let s = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_hadd_epi32(lo[r], hi[r]));
            store_row::<1>(&[s], rq, r, c.add(r * ldc), n);
        }
    }
}

/// int8 micro-kernel for AVX2: 6 rows × 8 columns on i16 weight panels (`madd_tile`).
///
/// # Safety
/// As [`crate::cpu::qgemm::QKernel`] (A packed wide), plus the CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)] // the QKernel contract
pub unsafe fn qgemm_6x8_avx2(
    kb: usize,
    a: *const i8,
    b: *const i8,
    c: *mut i8,
    ldc: usize,
    m: usize,
    n: usize,
    rq: &Requant,
) {
    // SAFETY: forwarded contract; rows ≥ m of the tile are computed from zero padding, never stored.
    unsafe { tile_rows!(m, madd_tile, [1, 2, 3, 4, 5; 6], (kb, a, b, c, ldc, n, rq)) }
}

/// AVX-VNNI tile: R rows × 16 columns, 2R accumulators. `vpdpbusd` multiplies unsigned by signed bytes and
/// adds each group of four products into i32 without intermediate saturation (exact), so activations are
/// offset to unsigned (x + 128, a sign-bit flip) and the offset comes back out through the folded bias.
#[inline]
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn vnni_tile<const R: usize>(
    kb: usize,
    a: *const i8,
    b: *const i8,
    c: *mut i8,
    ldc: usize,
    n: usize,
    rq: &Requant,
) {
    // SAFETY (whole fn): packed panels hold kb·24 bytes (A) and kb·64 bytes (B); c rows < R valid.
    unsafe {
        let flip = _mm256_set1_epi8(-128);
        let mut acc = [[_mm256_setzero_si256(); 2]; R];
        for blk in 0..kb {
            let bp = b.add(blk * 64);
            let b0 = _mm256_xor_si256(_mm256_loadu_si256(bp as *const __m256i), flip);
            let b1 = _mm256_xor_si256(_mm256_loadu_si256(bp.add(32) as *const __m256i), flip);
            let ap = a.add(blk * 24);
            for (r, t) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_epi32((ap.add(r * 4) as *const i32).read_unaligned());
                t[0] = _mm256_dpbusd_avx_epi32(t[0], b0, av);
                t[1] = _mm256_dpbusd_avx_epi32(t[1], b1, av);
            }
        }
        for (r, t) in acc.iter().enumerate() {
            store_row::<2>(t, rq, r, c.add(r * ldc), n);
        }
    }
}

/// int8 micro-kernel for AVX-VNNI CPUs (Zen 4, Alder Lake and later): 6 rows × 16 columns with
/// `vpdpbusd` (16 MACs per instruction per 128 bits), fused vector epilogue. `x_offset` = 128.
///
/// # Safety
/// As [`crate::cpu::qgemm::QKernel`], plus the CPU must support AVX2 and AVX-VNNI.
#[target_feature(enable = "avx2,avxvnni")]
#[allow(clippy::too_many_arguments)] // the QKernel contract
pub unsafe fn qgemm_6x16_vnni(
    kb: usize,
    a: *const i8,
    b: *const i8,
    c: *mut i8,
    ldc: usize,
    m: usize,
    n: usize,
    rq: &Requant,
) {
    // SAFETY: forwarded contract; rows ≥ m of the tile are computed from zero padding, never stored.
    unsafe { tile_rows!(m, vnni_tile, [1, 2, 3, 4, 5; 6], (kb, a, b, c, ldc, n, rq)) }
}

/// `y[i] = quantize_f32_i16(x[i], s)` ([`crate::ir::quant::quantize_f32_i16`]) over the leading multiple
/// of 16 values; returns how many it did. The rule's own steps, 8 lanes at a time: the quotient clamped
/// to ±65536, rounded by the magic number (exact below 2^22), clamped to int16, converted (integral, so
/// exact) and packed.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn quantize16_avx2(x: &[f32], s: f32, y: &mut [i16]) -> usize {
    let n = x.len().min(y.len()) / 16 * 16;
    // SAFETY (whole fn): 16 values at i < n of both slices.
    unsafe {
        let sv = _mm256_set1_ps(s);
        let (lo, hi) = (_mm256_set1_ps(-65536.0), _mm256_set1_ps(65536.0));
        let (lo16, hi16) = (_mm256_set1_ps(-32768.0), _mm256_set1_ps(32767.0));
        let magic = _mm256_set1_ps(12_582_912.0);
        let q = |p: *const f32| {
            let v = _mm256_div_ps(_mm256_loadu_ps(p), sv);
            // (a NaN quotient is 0, as the rule's saturating cast gives)
            let num = _mm256_cmp_ps::<_CMP_ORD_Q>(v, v);
            let v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
            let r = _mm256_sub_ps(_mm256_add_ps(v, magic), magic);
            let r = _mm256_and_ps(_mm256_min_ps(_mm256_max_ps(r, lo16), hi16), num);
            _mm256_cvtps_epi32(r)
        };
        for i in (0..n).step_by(16) {
            let (a, b) = (q(x.as_ptr().add(i)), q(x.as_ptr().add(i + 8)));
            let v = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(a, b));
            _mm256_storeu_si256(y.as_mut_ptr().add(i) as *mut __m256i, v);
        }
    }
    n
}

/// `v = lut16(t, v, shift)` ([`crate::ir::quant::lut16`]) over the leading multiple of 16 values of
/// `data`; returns how many it did. Each lane's two entries `t[j]`, `t[j+1]` come in one dword gather at
/// byte offset `2j` (the low half `t[j]`, the high `t[j+1]`), then the interpolation in i32 lanes, as the
/// rule (a scalar loop spends about 4 cycles an element on the two bounds-checked loads: on PP-OCR cls's
/// 16-bit artifact the tables took 46% of the run).
///
/// # Safety
/// The CPU must support AVX2; `t` must hold at least `lut16_len(shift)` entries and `shift` lie in
/// `LUT16_MIN_SHIFT..=LUT16_MAX_SHIFT` (so every `j + 1` is in `t`).
#[target_feature(enable = "avx2")]
pub unsafe fn lut16_avx2(t: &[i16], shift: u32, data: &mut [i16]) -> usize {
    let n = data.len() / 16 * 16;
    // SAFETY (whole fn): `j = (x + 32768) >> shift` and `j + 1 <= 65536 >> shift` lie in `t` (the
    // caller's contract), so each dword read at `t + j` is inside it; data chunks are 16 values.
    unsafe {
        let base = t.as_ptr() as *const i32;
        let sh = _mm_cvtsi32_si128(shift as i32);
        let mask = _mm256_set1_epi32((1 << shift) - 1);
        let half = _mm256_set1_epi32(1 << (shift - 1));
        let bias = _mm256_set1_epi32(32768);
        let lerp = |x: __m256i| {
            let u = _mm256_add_epi32(x, bias);
            let (j, f) = (_mm256_srl_epi32(u, sh), _mm256_and_si256(u, mask));
            let pair = _mm256_i32gather_epi32::<2>(base, j);
            let a = _mm256_srai_epi32::<16>(_mm256_slli_epi32::<16>(pair));
            let b = _mm256_srai_epi32::<16>(pair);
            let d = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_sub_epi32(b, a), f), half);
            _mm256_add_epi32(a, _mm256_sra_epi32(d, sh))
        };
        for i in (0..n).step_by(16) {
            let p = data.as_mut_ptr().add(i);
            let x = _mm256_loadu_si256(p as *const __m256i);
            let lo = lerp(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(x)));
            let hi = lerp(_mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(x)));
            // (every result lies between two int16 entries: the saturating pack is exact)
            let y = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(lo, hi));
            _mm256_storeu_si256(p as *mut __m256i, y);
        }
    }
    n
}

/// [`Requant::value`] of row 0 over int16 inputs `x` (widened, as sums) into `y`, 16 values at a time by
/// the row epilogue in registers (a Q16Unary: its f32 function is the epilogue's); returns how many
/// leading values it wrote (0 where the row has no vector form: the caller finishes).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn requant_i16_avx2(rq: &Requant, x: &[i16], y: &mut [i16]) -> usize {
    if !vec_ok16(rq, 0) {
        return 0;
    }
    let n = x.len().min(y.len()) / 16 * 16;
    let p = row_rq(rq, 0);
    for i in (0..n).step_by(16) {
        // SAFETY: 16 values in bounds of both slices.
        unsafe {
            let q = _mm256_loadu_si256(x.as_ptr().add(i) as *const __m256i);
            let a = requant8(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(q)), &p);
            let b = requant8(_mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(q)), &p);
            let w = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(a, b));
            _mm256_storeu_si256(y.as_mut_ptr().add(i) as *mut __m256i, w);
        }
    }
    n
}

/// [`Requant::value`] over a row into int16 with the AVX2 epilogue, 16 values at a time; returns how many
/// leading values it wrote (0 where the row's multiplier has no vector form: the caller finishes).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn requant_row16_avx2(rq: &Requant, r: usize, acc: &[i32], out: &mut [i16]) -> usize {
    let n = acc.len().min(out.len());
    let mut i = 0;
    if vec_ok16(rq, r) {
        let p = row_rq(rq, r);
        while i + 16 <= n {
            // SAFETY: 16 values in bounds of both slices.
            unsafe {
                let a = acc.as_ptr().add(i) as *const __m256i;
                let v0 = requant8(_mm256_loadu_si256(a), &p);
                let v1 = requant8(_mm256_loadu_si256(a.add(1)), &p);
                let w = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(v0, v1));
                _mm256_storeu_si256(out.as_mut_ptr().add(i) as *mut __m256i, w);
            }
            i += 16;
        }
    }
    i
}

/// A 16-bit Add/Sub (`crate::ir::quant::add16`) 16 elements at a time: `(a, b)` interleaved and
/// multiplied by the int16 pair `(A, B)` with `vpmaddwd` (|a·A + b·B| ≤ 2^30), rounded half away from
/// zero by adding `2^(S−1)` and the sign, shifted, clamped to `[lo, hi]`; `packssdw` of the two halves
/// restores the element order. Returns how many leading elements it wrote.
///
/// # Safety
/// The CPU must support AVX2; `|A|, |B| < 2^14` (`add16_params`).
#[target_feature(enable = "avx2")]
pub unsafe fn add16_avx2(
    a: &[i16],
    b: &[i16],
    (ma, mb, s): (i32, i32, u32),
    (lo, hi): (i32, i32),
    out: &mut [i16],
) -> usize {
    let n = a.len().min(b.len()).min(out.len());
    let w = _mm256_set1_epi32((ma as u16 as i32) | ((mb as u16 as i32) << 16));
    let half = _mm256_set1_epi32(if s == 0 { 0 } else { 1 << (s - 1) });
    let sh = _mm_cvtsi32_si128(s as i32);
    let (vlo, vhi) = (_mm256_set1_epi32(lo), _mm256_set1_epi32(hi));
    let round = |v: __m256i| {
        // v + half − [v < 0] (zero when S is 0: the sum is exact), arithmetic shift, clamp
        let r = if s == 0 {
            v
        } else {
            let t = _mm256_add_epi32(_mm256_add_epi32(v, half), _mm256_srai_epi32::<31>(v));
            _mm256_sra_epi32(t, sh)
        };
        _mm256_min_epi32(_mm256_max_epi32(r, vlo), vhi)
    };
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: 16 values in bounds of all three slices.
        unsafe {
            let x = _mm256_loadu_si256(a.as_ptr().add(i) as *const __m256i);
            let y = _mm256_loadu_si256(b.as_ptr().add(i) as *const __m256i);
            let v0 = round(_mm256_madd_epi16(_mm256_unpacklo_epi16(x, y), w));
            let v1 = round(_mm256_madd_epi16(_mm256_unpackhi_epi16(x, y), w));
            _mm256_storeu_si256(
                out.as_mut_ptr().add(i) as *mut __m256i,
                _mm256_packs_epi32(v0, v1),
            );
        }
        i += 16;
    }
    i
}

/// A 16-bit Mul of a row by one value in the f32 form (`crate::ir::quant::requant_f32` of `a[i]·q`, exact
/// in i32: |a·q| ≤ 2^30), 16 at a time: `(a, 0)` pairs by `(q, q)` in one `vpmaddwd`, then the f32
/// epilogue; the in-lane unpacks and `packssdw` keep the element order. Returns how many leading elements
/// it wrote.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn mul16_f32_avx2(
    a: &[i16],
    q: i16,
    (f, lo, hi): (f32, i32, i32),
    out: &mut [i16],
) -> usize {
    let n = a.len().min(out.len()) / 16 * 16;
    let w = _mm256_set1_epi16(q);
    let (vf, vlo, vhi) = (
        _mm256_set1_ps(f),
        _mm256_set1_ps(lo as f32),
        _mm256_set1_ps(hi as f32),
    );
    let rq = |p: __m256i| {
        let v = _mm256_mul_ps(_mm256_cvtepi32_ps(p), vf);
        _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, vlo), vhi))
    };
    let zero = _mm256_setzero_si256();
    for i in (0..n).step_by(16) {
        // SAFETY: 16 values in bounds of both slices.
        unsafe {
            let x = _mm256_loadu_si256(a.as_ptr().add(i) as *const __m256i);
            let v0 = rq(_mm256_madd_epi16(_mm256_unpacklo_epi16(x, zero), w));
            let v1 = rq(_mm256_madd_epi16(_mm256_unpackhi_epi16(x, zero), w));
            _mm256_storeu_si256(
                out.as_mut_ptr().add(i) as *mut __m256i,
                _mm256_packs_epi32(v0, v1),
            );
        }
    }
    n
}

/// How the 16-bit kernels multiply-accumulate int16 pairs into i32 lanes: `vpmaddwd` then `vpaddd` (AVX2),
/// or one `vpdpwssd` (AVX-VNNI's VEX form, or AVX512-VNNI's EVEX form on 256-bit registers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mac16 {
    /// `vpmaddwd` + `vpaddd`.
    Avx2,
    /// AVX-VNNI `vpdpwssd`.
    Vex,
    /// AVX512-VNNI (with VL) `vpdpwssd`.
    Evex,
}

/// How many 4-row panels the 16-bit GEMM in form `mac` takes at once ([`q16_panel`]).
pub fn panels16(mac: Mac16) -> usize {
    match mac {
        Mac16::Evex => 2,
        _ => 1,
    }
}

/// The 16-bit kernels' form on path `isa` of this CPU: `vpdpwssd` on the AVX-VNNI path (VEX where the CPU
/// has AVX-VNNI, else EVEX), `vpmaddwd` + `vpaddd` on the AVX2 path (what `TERN_CPU=avx2` tests).
pub fn mac16(isa: crate::cpu::caps::Isa) -> Mac16 {
    if isa != crate::cpu::caps::Isa::AvxVnni {
        Mac16::Avx2
    } else if std::is_x86_feature_detected!("avxvnni") {
        Mac16::Vex
    } else if has_avx512vnni() {
        Mac16::Evex
    } else {
        Mac16::Avx2
    }
}

/// `t + Σ pairs x·w` by `vpmaddwd` and `vpaddd` (the AVX2 form of `vpdpwssd`).
#[inline]
#[target_feature(enable = "avx2")]
fn madd_acc(t: __m256i, x: __m256i, w: __m256i) -> __m256i {
    _mm256_add_epi32(t, _mm256_madd_epi16(x, w))
}

/// Rows `2q` and `2q + 1` of a 16-bit GEMM's b (16 columns; zeros past row `k`), interleaved as the
/// int16 pairs a multiply-accumulate takes: columns 0-3 | 8-11 and 4-7 | 12-15 (within 128-bit lanes).
/// A macro so that it inlines into each kernel with that kernel's features. Use in `unsafe`, with `b`
/// valid for `k` rows of 16 values at stride `ldb` and `2q < k`.
macro_rules! k_pair16 {
    ($b:expr, $ldb:expr, $k:expr, $q:expr) => {{
        let (b, ldb, k, q): (*const i16, usize, usize, usize) = ($b, $ldb, $k, $q);
        let r0 = _mm256_loadu_si256(b.add(2 * q * ldb) as *const __m256i);
        let r1 = if 2 * q + 1 < k {
            _mm256_loadu_si256(b.add((2 * q + 1) * ldb) as *const __m256i)
        } else {
            _mm256_setzero_si256()
        };
        (_mm256_unpacklo_epi16(r0, r1), _mm256_unpackhi_epi16(r0, r1))
    }};
}

/// Row `r` of a 16-bit GEMM tile (its sums as [`k_pair16`] orders them) requantized into 16 int16 at
/// `dst`: by the row's constants in registers (lane-wise, and `packssdw`'s in-lane halves put the
/// columns back in order), else (a multiplier without a vector form) by the scalar rule. A macro, as
/// [`k_pair16`]; use in `unsafe`, with `dst` valid for 16 values.
macro_rules! store_row16 {
    ($t:expr, $p:expr, $rq:expr, $r:expr, $dst:expr) => {{
        let (t, p, rq, r, dst): (&[__m256i; 2], Option<&RowRq>, &Requant, usize, *mut i16) =
            ($t, $p, $rq, $r, $dst);
        if let Some(p) = p {
            let (v0, v1) = (requant8(t[0], p), requant8(t[1], p));
            _mm256_storeu_si256(dst as *mut __m256i, _mm256_packs_epi32(v0, v1));
        } else {
            // back to column order: 0-7 and 8-15
            let c0 = _mm256_permute2x128_si256::<0x20>(t[0], t[1]);
            let c1 = _mm256_permute2x128_si256::<0x31>(t[0], t[1]);
            let mut wide = [0i32; 16];
            _mm256_storeu_si256(wide.as_mut_ptr() as *mut __m256i, c0);
            _mm256_storeu_si256(wide.as_mut_ptr().add(8) as *mut __m256i, c1);
            for (j, &v) in wide.iter().enumerate() {
                *dst.add(j) = rq.value(r, v) as i16;
            }
        }
    }};
}

/// The 16-bit engine's GEMM panel and depthwise block for one multiply-accumulate form: one body, one
/// function per encoding, each carrying only its own CPU features.
macro_rules! q16_kernels {
    ($panel:ident, $tile:ident, $dw:ident, $features:literal, $mac:ident) => {
        /// A 16-bit depthwise output row (`crate::cpu::q16`), `blocks` blocks of 16 outputs: for each
        /// tap pair `(p, w)` (`p` its input row's column pairs `(x[c], x[c + second])` as dwords, from a
        /// zero-padded row, advanced to the pair's first column; `w` its weights `(w[2q], w[2q+1])` as
        /// one dword), `acc[j] = Σ w·p[j]` as int16-pair multiply-accumulates (exact: the loader bounds
        /// every sum below 2^31, so any order gives the same sums). Two blocks at a time, the taps
        /// alternating between two sets of accumulators (8 independent chains: the multiply-accumulate's
        /// latency, not its issue rate, bounded one chain per 8 outputs).
        ///
        /// # Safety
        /// The CPU features named in `target_feature`; each `p` valid for `16·blocks` pairs; `acc` for
        /// `16·blocks` values.
        #[target_feature(enable = $features)]
        unsafe fn $dw(taps: &[(*const i32, i32)], blocks: usize, acc: *mut i32) {
            // SAFETY (whole fn): the caller's contract.
            unsafe {
                let ld = |p: *const i32, j: usize| _mm256_loadu_si256(p.add(j) as *const __m256i);
                let mut b = 0;
                while b < blocks {
                    let o = 16 * b;
                    let two = b + 2 <= blocks;
                    let z = _mm256_setzero_si256();
                    let (mut a, mut c) = ([z; 4], [z; 4]);
                    for pair in taps.chunks(2) {
                        let (p, w) = pair[0];
                        let (p, wv) = (p.add(o), _mm256_set1_epi32(w));
                        a[0] = $mac(a[0], ld(p, 0), wv);
                        a[1] = $mac(a[1], ld(p, 8), wv);
                        if two {
                            a[2] = $mac(a[2], ld(p, 16), wv);
                            a[3] = $mac(a[3], ld(p, 24), wv);
                        }
                        if let Some(&(p, w)) = pair.get(1) {
                            let (p, wv) = (p.add(o), _mm256_set1_epi32(w));
                            c[0] = $mac(c[0], ld(p, 0), wv);
                            c[1] = $mac(c[1], ld(p, 8), wv);
                            if two {
                                c[2] = $mac(c[2], ld(p, 16), wv);
                                c[3] = $mac(c[3], ld(p, 24), wv);
                            }
                        }
                    }
                    for (v, (x, y)) in a.iter().zip(&c).enumerate().take(if two { 4 } else { 2 }) {
                        _mm256_storeu_si256(
                            acc.add(o + 8 * v) as *mut __m256i,
                            _mm256_add_epi32(*x, *y),
                        );
                    }
                    b += if two { 2 } else { 1 };
                }
            }
        }

        /// A 16-bit GEMM panel (`crate::cpu::q16`): 4 rows of the packed panel `a` (k-pairs) times the
        /// first `n` (a multiple of 16) columns of `b` (row-major, stride `ldb`), requantized into `rows`
        /// rows of `c` (stride `ldc`), 16 columns a tile, each row's requantization constants set up once.
        ///
        /// # Safety
        /// The CPU features named in `target_feature`; `a` holds `k.div_ceil(2)·8` values; `b` is valid
        /// for `k` rows of `n` values at stride `ldb`, `c` for `rows` (≤ 4) rows of `n` at stride `ldc`;
        /// `rq` has `rows` rows.
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $panel(
            k: usize,
            a: &[i16],
            b: *const i16,
            ldb: usize,
            c: *mut i16,
            ldc: usize,
            (rows, n): (usize, usize),
            rq: &Requant,
        ) {
            let kp = k.div_ceil(2);
            // (always true from q16::gemm16: `pack_a` panels hold kp·8 values, rows ≤ MR = 4, n is the
            // 16-column part or the overlapping last 16; it guards this function's own reads without a
            // panic: a skipped panel would leave its outputs unwritten, which the kernel tests against
            // the scalar oracle would see)
            if a.len() < kp * 8 || rows > 4 || n % 16 != 0 {
                return;
            }
            let consts: [Option<RowRq>; 4] =
                core::array::from_fn(|r| (r < rows && vec_ok16(rq, r)).then(|| row_rq(rq, r)));
            for j in (0..n).step_by(16) {
                // SAFETY: forwarded, at column j.
                unsafe { $tile(kp, k, a, b.add(j), ldb, c.add(j), ldc, rows, rq, &consts) };
            }
        }

        /// One tile of the panel: per k-pair the two rows of b are interleaved (`vpunpck*wd`: column
        /// pairs within 128-bit lanes) and each weight pair, broadcast as one dword, multiply-accumulated
        /// with them: exact, since |w·x| ≤ 2^22 and the loader bounds every sum below 2^31.
        ///
        /// # Safety
        /// As the panel's, for 16 columns.
        #[inline]
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $tile(
            kp: usize,
            k: usize,
            a: &[i16],
            b: *const i16,
            ldb: usize,
            c: *mut i16,
            ldc: usize,
            rows: usize,
            rq: &Requant,
            consts: &[Option<RowRq>; 4],
        ) {
            let mut acc = [[_mm256_setzero_si256(); 2]; 4];
            // SAFETY (whole fn): the bounds above and the caller's contract.
            unsafe {
                for q in 0..kp {
                    let (lo, hi) = k_pair16!(b, ldb, k, q);
                    let ap = a.as_ptr().add(q * 8) as *const i32;
                    for (r, t) in acc.iter_mut().enumerate() {
                        let w = _mm256_set1_epi32(ap.add(r).read_unaligned());
                        t[0] = $mac(t[0], lo, w);
                        t[1] = $mac(t[1], hi, w);
                    }
                }
                for (r, t) in acc.iter().enumerate().take(rows) {
                    store_row16!(t, consts[r].as_ref(), rq, r, c.add(r * ldc));
                }
            }
        }
    };
}

q16_kernels!(q16_panel_madd, q16_tile_madd, dw16_madd, "avx2", madd_acc);
q16_kernels!(
    q16_panel_vex,
    q16_tile_vex,
    dw16_vex,
    "avx2,avxvnni",
    _mm256_dpwssd_avx_epi32
);
q16_kernels!(
    q16_panel_evex,
    q16_tile_evex,
    dw16_evex,
    "avx2,avx512f,avx512vl,avx512vnni",
    _mm256_dpwssd_epi32
);

/// The 16-bit GEMM panel in form `mac` (see the `q16_kernels` bodies); in the EVEX form more than 4 rows
/// are two panels at once ([`q16_panel8_evex`], what [`panels16`] asks of the caller).
///
/// # Safety
/// The CPU has `mac`'s features ([`mac16`]); `a` holds `k.div_ceil(2)·8` values per 4 rows; `b` is valid
/// for `k` rows of `n` (a multiple of 16) values at stride `ldb`, `c` for `rows` (≤ 4, or ≤ 8 in the EVEX
/// form) rows of `n` at stride `ldc`; `rq` has `rows` rows.
#[allow(clippy::too_many_arguments)]
pub unsafe fn q16_panel(
    mac: Mac16,
    k: usize,
    a: &[i16],
    b: *const i16,
    ldb: usize,
    c: *mut i16,
    ldc: usize,
    rn: (usize, usize),
    rq: &Requant,
) {
    // SAFETY: forwarded.
    unsafe {
        match mac {
            Mac16::Avx2 => q16_panel_madd(k, a, b, ldb, c, ldc, rn, rq),
            Mac16::Vex => q16_panel_vex(k, a, b, ldb, c, ldc, rn, rq),
            Mac16::Evex if rn.0 > 4 => q16_panel8_evex(k, a, b, ldb, c, ldc, rn, rq),
            Mac16::Evex => q16_panel_evex(k, a, b, ldb, c, ldc, rn, rq),
        }
    }
}

/// Two consecutive 16-bit GEMM panels at once (8 rows; AVX512-VNNI, whose 32 vector registers hold the 16
/// accumulators): as the 4-row panel of the `q16_kernels` bodies, with each k-pair's interleaved columns
/// of b loaded once for 8 rows and 16 independent accumulation chains (4 rows' 8 chains left the
/// multiply-accumulate's latency exposed on short depths).
///
/// # Safety
/// AVX2, AVX512F/VL and AVX512-VNNI; `a` holds two panels (`2·k.div_ceil(2)·8` values); `b` is valid for
/// `k` rows of `n` (a multiple of 16) values at stride `ldb`, `c` for `rows` (≤ 8) rows of `n` at stride
/// `ldc`; `rq` has `rows` rows.
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn q16_panel8_evex(
    k: usize,
    a: &[i16],
    b: *const i16,
    ldb: usize,
    c: *mut i16,
    ldc: usize,
    (rows, n): (usize, usize),
    rq: &Requant,
) {
    let kp = k.div_ceil(2);
    // (always true from q16::gemm16, as in the 4-row panel; a skipped panel would leave its outputs
    // unwritten, which the kernel tests see)
    if a.len() < 2 * kp * 8 || rows > 8 || n % 16 != 0 {
        return;
    }
    let consts: [Option<RowRq>; 8] =
        core::array::from_fn(|r| (r < rows && vec_ok16(rq, r)).then(|| row_rq(rq, r)));
    let (a0, a1) = (a.as_ptr() as *const i32, a[kp * 8..].as_ptr() as *const i32);
    for j in (0..n).step_by(16) {
        // SAFETY (loop body): the bounds above and the caller's contract, at column j.
        unsafe {
            let b = b.add(j);
            let mut acc = [[_mm256_setzero_si256(); 2]; 8];
            for q in 0..kp {
                let (lo, hi) = k_pair16!(b, ldb, k, q);
                for (r, t) in acc.iter_mut().enumerate() {
                    let ap = if r < 4 { a0 } else { a1 };
                    let w = _mm256_set1_epi32(ap.add(q * 4 + r % 4).read_unaligned());
                    t[0] = _mm256_dpwssd_epi32(t[0], lo, w);
                    t[1] = _mm256_dpwssd_epi32(t[1], hi, w);
                }
            }
            for (r, t) in acc.iter().enumerate().take(rows) {
                store_row16!(t, consts[r].as_ref(), rq, r, c.add(j + r * ldc));
            }
        }
    }
}

/// A 16-bit depthwise output row in form `mac` (see the `q16_kernels` bodies).
///
/// # Safety
/// The CPU has `mac`'s features; each tap's pairs valid for `16·blocks` values; `acc` for `16·blocks`.
pub unsafe fn dw16_row(mac: Mac16, taps: &[(*const i32, i32)], blocks: usize, acc: *mut i32) {
    // SAFETY: forwarded.
    unsafe {
        match mac {
            Mac16::Avx2 => dw16_madd(taps, blocks, acc),
            Mac16::Vex => dw16_vex(taps, blocks, acc),
            Mac16::Evex => dw16_evex(taps, blocks, acc),
        }
    }
}

/// [`Requant::row`] with the AVX2 epilogue, 8 values at a time (scalar tail and fallback rows).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn requant_row_avx2(rq: &Requant, r: usize, acc: &[i32], out: &mut [i8]) {
    let n = acc.len().min(out.len());
    let mut i = 0;
    if vec_ok(rq.mult[r]) {
        let p = row_rq(rq, r);
        while i + 8 <= n {
            // SAFETY: 8 values in bounds of both slices.
            unsafe {
                let v = requant8(
                    _mm256_loadu_si256(acc.as_ptr().add(i) as *const __m256i),
                    &p,
                );
                let w =
                    _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
                _mm_storel_epi64(
                    out.as_mut_ptr().add(i) as *mut __m128i,
                    _mm_packs_epi16(w, w),
                );
            }
            i += 8;
        }
    }
    rq.row(r, &acc[i..n], &mut out[i..n]);
}

/// Integer Add/Sub through the operands' rescale tables (`ops::quant::QBin`), 8 pairs at a time:
/// gather both table entries, add (or subtract), round half away from zero off the 16 fraction bits, add
/// the output zero point, clamp. Exact when the tables' sums fit i32 (the caller checks). Returns how
/// many leading elements it wrote (the rest is the caller's scalar tail).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn qadd_avx2(
    ta: &[i32; 256],
    tb: &[i32; 256],
    sub: bool,
    (zy, lo, hi): (i32, i32, i32),
    a: &[i8],
    b: &[i8],
    out: &mut [i8],
) -> usize {
    let n = a.len().min(b.len()).min(out.len());
    let (off, half) = (_mm256_set1_epi32(128), _mm256_set1_epi32(1 << 15));
    let (vlo, vhi, vz) = (
        _mm256_set1_epi32(lo - zy),
        _mm256_set1_epi32(hi - zy),
        _mm256_set1_epi32(zy),
    );
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: 8 bytes in bounds of a, b and out; gather indices are in 0..256.
        unsafe {
            let ia = _mm256_add_epi32(
                _mm256_cvtepi8_epi32(_mm_loadl_epi64(a.as_ptr().add(i) as *const __m128i)),
                off,
            );
            let ib = _mm256_add_epi32(
                _mm256_cvtepi8_epi32(_mm_loadl_epi64(b.as_ptr().add(i) as *const __m128i)),
                off,
            );
            let va = _mm256_i32gather_epi32::<4>(ta.as_ptr(), ia);
            let vb = _mm256_i32gather_epi32::<4>(tb.as_ptr(), ib);
            let s = if sub {
                _mm256_sub_epi32(va, vb)
            } else {
                _mm256_add_epi32(va, vb)
            };
            let r = _mm256_srai_epi32::<16>(_mm256_add_epi32(
                _mm256_add_epi32(s, half),
                _mm256_srai_epi32::<31>(s),
            ));
            let v = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(r, vlo), vhi), vz);
            let w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
            _mm_storel_epi64(
                out.as_mut_ptr().add(i) as *mut __m128i,
                _mm_packs_epi16(w, w),
            );
        }
        i += 8;
    }
    i
}

/// `FixedMultiplier::apply` on 8 lanes for shifts 0..=31 (the core of [`requant8`], without bias and
/// clamp): even/odd 32×32→64 products, round half away from zero, arithmetic shift through the high dword.
#[inline]
#[target_feature(enable = "avx2")]
fn fm_apply8(x: __m256i, fm: FixedMultiplier) -> __m256i {
    let total = 31 + fm.shift;
    let mult = _mm256_set1_epi32(fm.mult);
    let round = _mm256_set1_epi64x(1i64 << (total - 1));
    let (left, right) = (
        _mm_cvtsi32_si128((total == 31) as i32),
        _mm_cvtsi32_si128((total - 32).max(0)),
    );
    let zero = _mm256_setzero_si256();
    let pe = _mm256_mul_epi32(x, mult);
    let po = _mm256_mul_epi32(_mm256_srli_epi64::<32>(x), mult);
    let qe = _mm256_add_epi64(_mm256_add_epi64(pe, round), _mm256_cmpgt_epi64(zero, pe));
    let qo = _mm256_add_epi64(_mm256_add_epi64(po, round), _mm256_cmpgt_epi64(zero, po));
    let (qe, qo) = (_mm256_sll_epi64(qe, left), _mm256_sll_epi64(qo, left));
    let r = _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(qe), qo);
    _mm256_sra_epi32(r, right)
}

/// Integer Add/Sub computed instead of looked up: each operand's table entry is
/// `m.apply((v − z) << 16)` (`ops::quant::QBin`), evaluated 8 lanes at a time with `fm_apply8` (no
/// gathers), then summed and rounded like [`qadd_avx2`]. Both multipliers must have shifts 0..=31 and the
/// sums fit i32 (the caller checks). Returns how many leading elements it wrote.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn qadd_arith_avx2(
    (ma, za): (FixedMultiplier, i32),
    (mb, zb): (FixedMultiplier, i32),
    sub: bool,
    (zy, lo, hi): (i32, i32, i32),
    a: &[i8],
    b: &[i8],
    out: &mut [i8],
) -> usize {
    let n = a.len().min(b.len()).min(out.len());
    let (vza, vzb, half) = (
        _mm256_set1_epi32(za),
        _mm256_set1_epi32(zb),
        _mm256_set1_epi32(1 << 15),
    );
    let (vlo, vhi, vz) = (
        _mm256_set1_epi32(lo - zy),
        _mm256_set1_epi32(hi - zy),
        _mm256_set1_epi32(zy),
    );
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: 8 bytes in bounds of a, b and out.
        unsafe {
            let xa = _mm256_cvtepi8_epi32(_mm_loadl_epi64(a.as_ptr().add(i) as *const __m128i));
            let xb = _mm256_cvtepi8_epi32(_mm_loadl_epi64(b.as_ptr().add(i) as *const __m128i));
            let va = fm_apply8(_mm256_slli_epi32::<16>(_mm256_sub_epi32(xa, vza)), ma);
            let vb = fm_apply8(_mm256_slli_epi32::<16>(_mm256_sub_epi32(xb, vzb)), mb);
            let s = if sub {
                _mm256_sub_epi32(va, vb)
            } else {
                _mm256_add_epi32(va, vb)
            };
            let r = _mm256_srai_epi32::<16>(_mm256_add_epi32(
                _mm256_add_epi32(s, half),
                _mm256_srai_epi32::<31>(s),
            ));
            let v = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(r, vlo), vhi), vz);
            let w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
            _mm_storel_epi64(
                out.as_mut_ptr().add(i) as *mut __m128i,
                _mm_packs_epi16(w, w),
            );
        }
        i += 8;
    }
    i
}

/// [`Requant::apply`] for consecutive *rows* `r0..r0+n` (one accumulator each, each row its own bias and
/// multiplier: a matrix-vector product's outputs), 8 at a time with per-lane multipliers and shifts; a
/// chunk with a shift outside 0..=31 takes the scalar rule. The same integers as `apply`.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn requant_rows_avx2(rq: &Requant, r0: usize, acc: &[i32], out: &mut [i8]) {
    let n = acc.len().min(out.len());
    let (lo, hi, z) = (
        _mm256_set1_epi32(rq.lo - rq.zp_out),
        _mm256_set1_epi32(rq.hi - rq.zp_out),
        _mm256_set1_epi32(rq.zp_out),
    );
    let zero = _mm256_setzero_si256();
    let low32 = _mm256_set1_epi64x(0xffff_ffff);
    let mut i = 0;
    while i + 8 <= n {
        let fm = &rq.mult[r0 + i..r0 + i + 8];
        if fm.iter().all(|m| vec_ok(*m)) {
            let mut mv = [0i32; 8];
            let mut tv = [0i32; 8];
            for (l, m) in fm.iter().enumerate() {
                mv[l] = m.mult;
                tv[l] = 31 + m.shift;
            }
            // SAFETY: 8 values in bounds of acc, bias and out.
            unsafe {
                let acc8 = _mm256_loadu_si256(acc.as_ptr().add(i) as *const __m256i);
                let bias = _mm256_loadu_si256(rq.bias.as_ptr().add(r0 + i) as *const __m256i);
                let mult = _mm256_loadu_si256(mv.as_ptr() as *const __m256i);
                let total = _mm256_loadu_si256(tv.as_ptr() as *const __m256i);
                // saturating acc + bias
                let sum = _mm256_add_epi32(acc8, bias);
                let ovf =
                    _mm256_and_si256(_mm256_xor_si256(sum, acc8), _mm256_xor_si256(sum, bias));
                let sat =
                    _mm256_xor_si256(_mm256_srai_epi32::<31>(acc8), _mm256_set1_epi32(i32::MAX));
                let s = _mm256_castps_si256(_mm256_blendv_ps(
                    _mm256_castsi256_ps(sum),
                    _mm256_castsi256_ps(sat),
                    _mm256_castsi256_ps(ovf),
                ));
                // per-lane totals for the even and the odd lanes, as 64-bit counts
                let (te, to) = (
                    _mm256_and_si256(total, low32),
                    _mm256_srli_epi64::<32>(total),
                );
                let one = _mm256_set1_epi64x(1);
                let round = |t: __m256i| _mm256_sllv_epi64(one, _mm256_sub_epi64(t, one));
                let pe = _mm256_mul_epi32(s, mult);
                let po =
                    _mm256_mul_epi32(_mm256_srli_epi64::<32>(s), _mm256_srli_epi64::<32>(mult));
                let qe = _mm256_add_epi64(
                    _mm256_add_epi64(pe, round(te)),
                    _mm256_cmpgt_epi64(zero, pe),
                );
                let qo = _mm256_add_epi64(
                    _mm256_add_epi64(po, round(to)),
                    _mm256_cmpgt_epi64(zero, po),
                );
                // q >> total: the high dword of (q << left) with left = [total == 31], then >> (total − 32)
                let thirty_one = _mm256_set1_epi64x(31);
                let left = |t: __m256i| _mm256_and_si256(_mm256_cmpeq_epi64(t, thirty_one), one);
                let (qe, qo) = (
                    _mm256_sllv_epi64(qe, left(te)),
                    _mm256_sllv_epi64(qo, left(to)),
                );
                let r = _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(qe), qo);
                let right = _mm256_max_epi32(_mm256_sub_epi32(total, _mm256_set1_epi32(32)), zero);
                let r = _mm256_srav_epi32(r, right);
                let v = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(r, lo), hi), z);
                let w =
                    _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
                _mm_storel_epi64(
                    out.as_mut_ptr().add(i) as *mut __m128i,
                    _mm_packs_epi16(w, w),
                );
            }
        } else {
            for l in i..i + 8 {
                out[l] = rq.apply(r0 + l, acc[l]);
            }
        }
        i += 8;
    }
    for l in i..n {
        out[l] = rq.apply(r0 + l, acc[l]);
    }
}

/// 16 depthwise outputs from column `x0` over an i16 plane (per tap pair: `w_a | w_b << 16` in `w`, and
/// `(off_a, off_b)` in `offs`, offsets into the plane of the taps' first input), in column order: two taps per `vpmaddwd`
/// (products ≤ 2·255·128 cannot overflow), accumulators in registers across all taps; exact integers.
///
/// # Safety
/// AVX2; 16 values readable at every `p + off + x0`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dw_block(p: *const i16, (w, offs): DwPairs, x0: usize) -> [__m256i; 2] {
    let (mut lo, mut hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    for (&wp, &(oa, ob)) in w.iter().zip(offs) {
        // SAFETY: the caller's contract.
        unsafe {
            let a = _mm256_loadu_si256(p.add(oa + x0) as *const __m256i);
            let b = _mm256_loadu_si256(p.add(ob + x0) as *const __m256i);
            let w = _mm256_set1_epi32(wp);
            // per 128-bit lane: unpacklo pairs columns 0-3 (lane 0) / 8-11 (lane 1), unpackhi 4-7 / 12-15
            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), w));
            hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), w));
        }
    }
    [
        _mm256_permute2x128_si256::<0x20>(lo, hi),
        _mm256_permute2x128_si256::<0x31>(lo, hi),
    ]
}

/// [`dw_block`] for a row's last ≤ 8 columns: 8 outputs in column order, half the work (the tail of a
/// narrow plane, e.g. 20 columns, would otherwise compute 16 to keep 4).
///
/// # Safety
/// AVX2; 8 values readable at every `p + off + x0`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dw_block8(p: *const i16, (w, offs): DwPairs, x0: usize) -> __m256i {
    let mut acc = _mm256_setzero_si256();
    for (&wp, &(oa, ob)) in w.iter().zip(offs) {
        // SAFETY: the caller's contract.
        unsafe {
            let a = _mm_loadu_si128(p.add(oa + x0) as *const __m128i);
            let b = _mm_loadu_si128(p.add(ob + x0) as *const __m128i);
            let pairs = _mm256_set_m128i(_mm_unpackhi_epi16(a, b), _mm_unpacklo_epi16(a, b));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi32(wp)));
        }
    }
    acc
}

/// One output row of a depthwise convolution (`dw_block` across it), requantized in registers with row
/// `r` of `rq` (the GEMM tiles' epilogue; the AVX-512 one when `wide`) straight into `out`.
///
/// # Safety
/// The CPU must support AVX2 (and AVX-512 F/BW when `wide`); every `off + out.len().next_multiple_of(16)`
/// (`next_multiple_of(32)` when `wide`) ≤ `pp.len()` (the caller checks).
#[target_feature(enable = "avx2")]
pub unsafe fn dw_row_avx2(
    pp: &[i16],
    ops: DwPairs,
    rq: &Requant,
    r: usize,
    out: &mut [i8],
    wide: bool,
) {
    let ow = out.len();
    if wide && vec_ok(rq.mult[r]) {
        // SAFETY: `wide` only where the CPU has AVX-512 F/BW (the caller's contract).
        return unsafe { dw_row512(pp, ops, &row_rq512(rq, r), out) };
    }
    let p = vec_ok(rq.mult[r]).then(|| row_rq(rq, r));
    let mut x0 = 0;
    while x0 < ow {
        // SAFETY: reads in bounds by the caller's contract; min(16, ow − x0) bytes written at out[x0..].
        unsafe {
            let (dst, n) = (out.as_mut_ptr().add(x0), (ow - x0).min(16));
            if n <= 8 {
                let v = [dw_block8(pp.as_ptr(), ops, x0)];
                match &p {
                    Some(p) => store_rq::<1>(&v, p, dst, n),
                    None => store_row::<1>(&v, rq, r, dst, n),
                }
            } else {
                let v = dw_block(pp.as_ptr(), ops, x0);
                match &p {
                    Some(p) => store_rq::<2>(&v, p, dst, n),
                    None => store_row::<2>(&v, rq, r, dst, n),
                }
            }
        }
        x0 += 16;
    }
}

/// Whether this CPU has the AVX-512 byte permutes the table lookups use (Zen 4+, Ice Lake+).
pub fn has_vbmi() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vbmi")
}

/// `y[i] = t[x[i] + 128]` (an int8 lookup table), 64 bytes at a time: two `vpermt2b` look up the
/// table's lower and upper 128 entries by the index's low 7 bits, and the index's top bit picks one.
///
/// # Safety
/// The CPU must support AVX-512 F, BW and VBMI ([`has_vbmi`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
pub unsafe fn lut_vbmi(t: &[i8; 256], x: &[i8], y: &mut [i8]) {
    let n = x.len().min(y.len());
    // SAFETY (whole fn): the table holds 256 bytes; loads and stores are masked to n.
    unsafe {
        let tp = t.as_ptr();
        let q: [__m512i; 4] =
            core::array::from_fn(|i| _mm512_loadu_si512(tp.add(64 * i) as *const __m512i));
        let flip = _mm512_set1_epi8(-128);
        let mut i = 0;
        while i < n {
            let m: __mmask64 = if n - i >= 64 {
                !0
            } else {
                (1u64 << (n - i)) - 1
            };
            let idx = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, x.as_ptr().add(i)), flip);
            let lo = _mm512_permutex2var_epi8(q[0], idx, q[1]);
            let hi = _mm512_permutex2var_epi8(q[2], idx, q[3]);
            let r = _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), lo, hi);
            _mm512_mask_storeu_epi8(y.as_mut_ptr().add(i), m, r);
            i += 64;
        }
    }
}

/// `out[i] = rq(r, (a[i] − za)·qb)`: an int8 row times one integer (a broadcast Mul), the products
/// formed in registers and requantized there, 8 at a time. Exact: |products| ≤ 255·255.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn scale_row_avx2(
    rq: &Requant,
    r: usize,
    (a, za, qb): (&[i8], i32, i32),
    out: &mut [i8],
) {
    let n = a.len().min(out.len());
    let mut i = 0;
    if vec_ok(rq.mult[r]) {
        let p = row_rq(rq, r);
        let (z, b) = (_mm256_set1_epi32(za), _mm256_set1_epi32(qb));
        while i + 8 <= n {
            // SAFETY: 8 bytes in bounds of both slices.
            unsafe {
                let v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(a.as_ptr().add(i) as *const __m128i));
                let prod = _mm256_mullo_epi32(_mm256_sub_epi32(v, z), b);
                store_rq::<1>(&[prod], &p, out.as_mut_ptr().add(i), 8);
            }
            i += 8;
        }
    }
    for (o, &v) in out[i..n].iter_mut().zip(&a[i..n]) {
        *o = rq.apply(r, (v as i32 - za) * qb);
    }
}

/// [`crate::ir::quant::quantize_f32`] on 8 lanes at a time, the same f32 operations in the same order
/// (divide, clamp to ±256, round half to even by the 1.5·2^23 trick, add the zero point, clamp to int8;
/// NaN gives 0 like the scalar cast). Returns how many leading elements it wrote.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn quantize_avx2(x: &[f32], s: f32, z: i32, y: &mut [i8]) -> usize {
    let n = x.len().min(y.len());
    let (sv, zv) = (_mm256_set1_ps(s), _mm256_set1_ps(z as f32));
    let magic = _mm256_set1_ps(12_582_912.0);
    let (lo, hi) = (_mm256_set1_ps(-256.0), _mm256_set1_ps(256.0));
    let (qlo, qhi) = (_mm256_set1_ps(-128.0), _mm256_set1_ps(127.0));
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: 8 values in bounds of both slices.
        unsafe {
            let v = _mm256_div_ps(_mm256_loadu_ps(x.as_ptr().add(i)), sv);
            let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v);
            let c = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
            let r = _mm256_add_ps(_mm256_sub_ps(_mm256_add_ps(c, magic), magic), zv);
            let r = _mm256_andnot_ps(nan, _mm256_min_ps(_mm256_max_ps(r, qlo), qhi));
            let q = _mm256_cvttps_epi32(r);
            let w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q));
            _mm_storel_epi64(y.as_mut_ptr().add(i) as *mut __m128i, _mm_packs_epi16(w, w));
        }
        i += 8;
    }
    i
}

/// [`quantize_avx2`] 16 lanes at a time on AVX-512 (the same f32 operations in the same order); the AVX2
/// loop takes the rest. Returns how many leading elements it wrote.
///
/// # Safety
/// AVX2 and AVX-512 F/BW ([`has_avx512`]).
#[target_feature(enable = "avx2,avx512f,avx512bw")]
pub unsafe fn quantize512(x: &[f32], s: f32, z: i32, y: &mut [i8]) -> usize {
    let n = x.len().min(y.len());
    let (sv, zv) = (_mm512_set1_ps(s), _mm512_set1_ps(z as f32));
    let magic = _mm512_set1_ps(12_582_912.0);
    let (lo, hi) = (_mm512_set1_ps(-256.0), _mm512_set1_ps(256.0));
    let (qlo, qhi) = (_mm512_set1_ps(-128.0), _mm512_set1_ps(127.0));
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: 16 values in bounds of both slices.
        unsafe {
            let v = _mm512_div_ps(_mm512_loadu_ps(x.as_ptr().add(i)), sv);
            // NaN compares unordered with itself: those lanes become 0 like the scalar cast
            let ok = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(v, v);
            let c = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
            let r = _mm512_add_ps(_mm512_sub_ps(_mm512_add_ps(c, magic), magic), zv);
            let r = _mm512_maskz_mov_ps(ok, _mm512_min_ps(_mm512_max_ps(r, qlo), qhi));
            let q = _mm512_cvttps_epi32(r);
            _mm_storeu_si128(
                y.as_mut_ptr().add(i) as *mut __m128i,
                _mm512_cvtsepi32_epi8(q),
            );
        }
        i += 16;
    }
    // SAFETY: the caller's AVX2.
    i + unsafe { quantize_avx2(&x[i..n], s, z, &mut y[i..n]) }
}

/// One output row of an f32 depthwise convolution over stride-phase planes (`taps`: weight and offset
/// from `p` of each tap's first input): 64, then 32, then 16 outputs at a time, accumulated in registers
/// across all taps from the bias, with FMA: the portable loop's fused chain, bit for bit. Eight
/// accumulators keep both FMA ports busy; with two (16 outputs) each tap waited on the last one's
/// latency (PP-OCR cls's 5×5 depthwise layers ran at ~18 GMAC/s).
///
/// # Safety
/// AVX2 and FMA; 16 floats readable at `p + off + x0` for every tap and every `x0 < out.len()` that is a
/// multiple of 16 (the caller checks).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dw_row_f32(p: *const f32, taps: &[(f32, usize)], bias: f32, out: &mut [f32]) {
    super::dw_row_blocks(out.len(), |x0, width| {
        // SAFETY: the caller's contract; every block ends within out.len() rounded up to 16.
        unsafe {
            match width {
                64 => dw_block_f32::<8>(p, taps, bias, x0, out),
                32 => dw_block_f32::<4>(p, taps, bias, x0, out),
                _ => dw_block_f32::<2>(p, taps, bias, x0, out),
            }
        }
    });
}

/// [`dw_row_f32`] on 16 lanes for `R` consecutive output rows (`R` 1 or 2; row `r` reads from `p + r·ws`
/// and writes `out[r·ow..]`, `ow` = `out.len() / R`): blocks of up to eight 512-bit vectors per row (128
/// outputs; a row of PP-OCR cls's 96 is one block of six, two rows twelve accumulators: enough to cover
/// the FMA latency), tails stored under a mask. Each output's chain of FMAs is the same, so the same bits.
///
/// # Safety
/// AVX-512 F ([`has_avx512`]); for each row `r`, 16 floats readable at `p + r·ws + off + x0` for every tap
/// and every `x0 < ow` that is a multiple of 16 (the caller checks, as for [`dw_row_f32`]).
#[target_feature(enable = "avx512f")]
pub unsafe fn dw_rows_f32_512<const R: usize>(
    p: *const f32,
    ws: usize,
    taps: &[(f32, usize)],
    bias: f32,
    out: &mut [f32],
) {
    let ow = out.len() / R;
    let mut x0 = 0;
    while x0 < ow {
        let v = (ow - x0).div_ceil(16).min(8);
        let at = (p, ws, taps, bias, x0);
        // SAFETY: the caller's contract; the block's reads start at multiples of 16 below ow.
        unsafe {
            match v {
                8 => dw_block512_f32::<R, 8>(at, out),
                7 => dw_block512_f32::<R, 7>(at, out),
                6 => dw_block512_f32::<R, 6>(at, out),
                5 => dw_block512_f32::<R, 5>(at, out),
                4 => dw_block512_f32::<R, 4>(at, out),
                3 => dw_block512_f32::<R, 3>(at, out),
                2 => dw_block512_f32::<R, 2>(at, out),
                _ => dw_block512_f32::<R, 1>(at, out),
            }
        }
        x0 += 16 * v;
    }
}

/// `V` vectors of 16 outputs from column `x0` in each of the `R` rows of [`dw_rows_f32_512`]; lanes past
/// a row's end are not stored.
///
/// # Safety
/// AVX-512 F; `16·V` floats readable at `p + r·ws + off + x0` for every tap and row.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn dw_block512_f32<const R: usize, const V: usize>(
    (p, ws, taps, bias, x0): (*const f32, usize, &[(f32, usize)], f32, usize),
    out: &mut [f32],
) {
    let mut acc = [[_mm512_set1_ps(bias); V]; R];
    for &(w, off) in taps {
        let wv = _mm512_set1_ps(w);
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, a) in row.iter_mut().enumerate() {
                // SAFETY: the caller's contract.
                let x = unsafe { _mm512_loadu_ps(p.add(r * ws + off + x0 + 16 * v)) };
                *a = _mm512_fmadd_ps(wv, x, *a);
            }
        }
    }
    let ow = out.len() / R;
    for (r, row) in acc.iter().enumerate() {
        for (v, a) in row.iter().enumerate() {
            let at = x0 + 16 * v;
            if at < ow {
                let m: __mmask16 = if at + 16 <= ow {
                    0xffff
                } else {
                    (1u16 << (ow - at)) - 1
                };
                // SAFETY: the mask stores only lanes below the row's end, within out.
                unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(r * ow + at), m, *a) };
            }
        }
    }
}

/// `V` vectors of 8 outputs of [`dw_row_f32`] from `x0`; those past `out.len()` are dropped.
///
/// # Safety
/// AVX2 and FMA; `8·V` floats readable at `p + off + x0` for every tap.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dw_block_f32<const V: usize>(
    p: *const f32,
    taps: &[(f32, usize)],
    bias: f32,
    x0: usize,
    out: &mut [f32],
) {
    let mut acc = [_mm256_set1_ps(bias); V];
    for &(w, off) in taps {
        let wv = _mm256_set1_ps(w);
        for (v, a) in acc.iter_mut().enumerate() {
            // SAFETY: the caller's contract.
            *a = _mm256_fmadd_ps(wv, unsafe { _mm256_loadu_ps(p.add(off + x0 + 8 * v)) }, *a);
        }
    }
    let ow = out.len();
    for (v, a) in acc.iter().enumerate() {
        let at = x0 + 8 * v;
        if at + 8 <= ow {
            // SAFETY: 8 floats in bounds of out.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(at), *a) };
        } else if at < ow {
            let mut buf = [0f32; 8];
            // SAFETY: buf holds 8 floats.
            unsafe { _mm256_storeu_ps(buf.as_mut_ptr(), *a) };
            out[at..].copy_from_slice(&buf[..ow - at]);
        }
    }
}

/// One body for `e^x` on 8 and 16 lanes (`exp8`, `exp16`): the same operations, so the same bits.
/// x = n·ln 2 + r with |r| ≤ ln 2 / 2 (ln 2 split in two parts so r is exact), a degree-6 polynomial for
/// e^r (Cephes' single-precision coefficients), and e^r·2^n by `$scale` (one rounding of the exact
/// product: [`scale8`], [`scale16`]). Within 2 ulp of the correctly rounded result for x in
/// [−87.3, 88.7]; subnormal below, 0 from `EXP_CLAMP`'s bottom down, +inf above its top
/// (`crate::ir::exp_rule`).
macro_rules! vexp {
    ($name:ident, $features:literal, $ps:ty, [$min:ident, $max:ident, $set1:ident, $round:ident,
     $mul:ident, $fnmadd:ident, $fmadd:ident, $add:ident, $scale:ident]) => {
        #[inline]
        #[target_feature(enable = $features)]
        fn $name(x: $ps) -> $ps {
            use crate::ir::{EXP_CLAMP, EXP_LN2, EXP_POLY};
            let x = $min($max(x, $set1(EXP_CLAMP.0)), $set1(EXP_CLAMP.1));
            let n = $round::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>($mul(
                x,
                $set1(core::f32::consts::LOG2_E),
            ));
            let r = $fnmadd(n, $set1(EXP_LN2.0), x);
            let r = $fnmadd(n, $set1(EXP_LN2.1), r);
            let mut p = $set1(EXP_POLY[0]);
            for &c in &EXP_POLY[1..] {
                p = $fmadd(p, r, $set1(c));
            }
            let r2 = $mul(r, r);
            let e = $add($fmadd(p, r2, r), $set1(1.0));
            $scale(e, n)
        }
    };
}

/// `e·2^n` for integral `n` in [−150, 128] and `e` in [0.7, 1.5] (`exp8`'s last step), rounded once: the
/// factors 2^⌊n/2⌋ and 2^(n − ⌊n/2⌋) built in their exponent fields (both normal), the first product
/// exact, the second rounded (to a subnormal below 2^−126, to +inf past the top), as
/// [`crate::ir::exp_rule`].
#[inline]
#[target_feature(enable = "avx2")]
fn scale8(e: __m256, n: __m256) -> __m256 {
    let ni = _mm256_cvtps_epi32(n);
    let half = _mm256_srai_epi32::<1>(ni);
    let pow = |k: __m256i| {
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            k,
            _mm256_set1_epi32(127),
        )))
    };
    _mm256_mul_ps(_mm256_mul_ps(e, pow(half)), pow(_mm256_sub_epi32(ni, half)))
}

/// [`scale8`] on 16 lanes in one instruction (`vscalefps`: `e·2^n` rounded once, subnormals and overflow
/// included), so the same bits.
#[inline]
#[target_feature(enable = "avx512f")]
fn scale16(e: __m512, n: __m512) -> __m512 {
    _mm512_scalef_ps(e, n)
}

vexp!(
    exp8,
    "avx2,fma",
    __m256,
    [
        _mm256_min_ps,
        _mm256_max_ps,
        _mm256_set1_ps,
        _mm256_round_ps,
        _mm256_mul_ps,
        _mm256_fnmadd_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps,
        scale8
    ]
);

vexp!(
    exp16,
    "avx512f",
    __m512,
    [
        _mm512_min_ps,
        _mm512_max_ps,
        _mm512_set1_ps,
        _mm512_roundscale_ps,
        _mm512_mul_ps,
        _mm512_fnmadd_ps,
        _mm512_fmadd_ps,
        _mm512_add_ps,
        scale16
    ]
);

/// `e^x` in place ([`crate::ir::exp_rule`]'s bits: `exp8` / `exp16`; NaN stays NaN), 16 lanes at a
/// time with AVX-512 F, then 8 with AVX2 and FMA. Returns how many leading elements it wrote (none
/// without AVX2 and FMA).
pub fn exp_vec(v: &mut [f32]) -> usize {
    /// One body for both widths.
    macro_rules! body {
        ($v:ident, $lanes:literal, $load:ident, $store:ident, $exp:ident, $nan:expr) => {{
            let mut i = 0;
            while i + $lanes <= $v.len() {
                // SAFETY: `$lanes` floats in bounds.
                unsafe {
                    let x = $load($v.as_ptr().add(i));
                    $store($v.as_mut_ptr().add(i), $nan(x, $exp(x)));
                }
                i += $lanes;
            }
            i
        }};
    }
    #[target_feature(enable = "avx512f")]
    fn wide(v: &mut [f32]) -> usize {
        let keep_nan = |x, e| _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x), e, x);
        body!(v, 16, _mm512_loadu_ps, _mm512_storeu_ps, exp16, keep_nan)
    }
    #[target_feature(enable = "avx2,fma")]
    fn narrow(v: &mut [f32]) -> usize {
        let keep_nan = |x, e| _mm256_blendv_ps(e, x, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
        body!(v, 8, _mm256_loadu_ps, _mm256_storeu_ps, exp8, keep_nan)
    }
    // SAFETY: `wide` needs AVX-512 F, `narrow` AVX2 and FMA.
    unsafe { widest(v, wide, narrow) }
}

/// Logistic sigmoid `1 / (1 + e^−x)` in place, 8 at a time (`exp8`, an exact division; NaN stays NaN),
/// or with `SILU` that times x (`x · sigmoid(x)`, one rounding more): the scalar rules' bits
/// (`Unary::Sigmoid`/`Unary::Silu::apply`). Returns how many leading elements it wrote.
///
/// # Safety
/// AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn sigmoid_avx2<const SILU: bool>(v: &mut [f32]) -> usize {
    let one = _mm256_set1_ps(1.0);
    let mut i = 0;
    while i + 8 <= v.len() {
        // SAFETY: 8 floats in bounds.
        unsafe {
            let x = _mm256_loadu_ps(v.as_ptr().add(i));
            let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
            let s = _mm256_div_ps(one, _mm256_add_ps(one, e));
            let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
            let s = _mm256_blendv_ps(s, x, nan);
            let y = if SILU { _mm256_mul_ps(x, s) } else { s };
            _mm256_storeu_ps(v.as_mut_ptr().add(i), y);
        }
        i += 8;
    }
    i
}

/// [`sigmoid_avx2`] 16 at a time (`exp16`): the same bits, twice the lanes (SiLU epilogues of a YOLOX
/// model's convs over ~10 M outputs). Returns how many leading elements it wrote.
///
/// # Safety
/// AVX-512 F.
#[target_feature(enable = "avx512f")]
pub unsafe fn sigmoid512<const SILU: bool>(v: &mut [f32]) -> usize {
    let one = _mm512_set1_ps(1.0);
    let mut i = 0;
    while i + 16 <= v.len() {
        // SAFETY: 16 floats in bounds.
        unsafe {
            let x = _mm512_loadu_ps(v.as_ptr().add(i));
            let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
            let s = _mm512_div_ps(one, _mm512_add_ps(one, e));
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
            let s = _mm512_mask_blend_ps(nan, s, x);
            let y = if SILU { _mm512_mul_ps(x, s) } else { s };
            _mm512_storeu_ps(v.as_mut_ptr().add(i), y);
        }
        i += 16;
    }
    i
}

/// Sigmoid (or with `silu` SiLU) over `v` with the widest kernel this CPU has: 16 lanes with AVX-512 F,
/// then 8 with AVX2 and FMA; the scalar rules' bits either way. Returns how many leading elements it
/// wrote (none without AVX2 and FMA).
pub fn sigmoid_vec(v: &mut [f32], silu: bool) -> usize {
    // SAFETY: the sigmoid kernels need AVX-512 F, and AVX2 and FMA.
    unsafe {
        if silu {
            widest(v, sigmoid512::<true>, sigmoid_avx2::<true>)
        } else {
            widest(v, sigmoid512::<false>, sigmoid_avx2::<false>)
        }
    }
}

/// An in-place element-wise kernel over `v` with the widest lanes this CPU has: `wide` (AVX-512 F) over
/// the leading 16-lane vectors, then `narrow` (AVX2 and FMA) over the 8-lane ones after them. Both give
/// the same bits; returns how many leading elements they wrote (none without AVX2 and FMA).
///
/// # Safety
/// `wide` needs no CPU feature beyond AVX-512 F, `narrow` none beyond AVX2 and FMA, and each writes
/// only within the slice it is given.
unsafe fn widest(
    v: &mut [f32],
    wide: unsafe fn(&mut [f32]) -> usize,
    narrow: unsafe fn(&mut [f32]) -> usize,
) -> usize {
    let mut done = 0;
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512 F detected just above (all `wide` needs).
        done = unsafe { wide(v) };
    }
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA detected just above (all `narrow` needs).
        done += unsafe { narrow(&mut v[done..]) };
    }
    done
}

/// A tanh kernel in place over the leading whole vectors of `v`: `crate::ir::Unary::Tanh`'s rule (both
/// branches computed, the lane's one kept; NaN kept as is) on `$lanes` floats at a time. Returns how many
/// leading elements it wrote.
macro_rules! vtanh {
    ($name:ident, $features:literal, $lanes:literal, $exp:ident, $lt:ident, $pick:ident, $keep:ident,
     [$load:ident, $store:ident, $set1:ident, $zero:ident, $mul:ident, $fmadd:ident, $add:ident,
      $sub:ident, $div:ident, $max:ident]) => {
        #[doc = concat!("tanh in place, ", stringify!($lanes), " lanes at a time (see `vtanh!`).")]
        ///
        /// # Safety
        #[doc = concat!("The CPU has ", $features, ".")]
        #[target_feature(enable = $features)]
        pub unsafe fn $name(v: &mut [f32]) -> usize {
            use crate::ir::{TANH_POLY, TANH_SMALL};
            let one = $set1(1.0);
            let mut i = 0;
            while i + $lanes <= v.len() {
                // SAFETY: `$lanes` floats in bounds.
                unsafe {
                    let x = $load(v.as_ptr().add(i));
                    let a = $max(x, $sub($zero(), x));
                    // |x| small: x + x·z·P(z), z = x²
                    let z = $mul(x, x);
                    let mut p = $set1(TANH_POLY[0]);
                    for &c in &TANH_POLY[1..] {
                        p = $fmadd(p, z, $set1(c));
                    }
                    let small = $fmadd($mul(p, z), x, x);
                    // beyond: ±(1 − 2/(e^{2|x|} + 1))
                    let t = $sub(one, $div($set1(2.0), $add($exp($add(a, a)), one)));
                    let big = $pick($lt(x, $zero()), $sub($zero(), t), t);
                    let y = $pick($lt(a, $set1(TANH_SMALL)), small, big);
                    // NaN and ±0 in, the same out (the scalar rule returns x)
                    let y = $pick($keep(x), x, y);
                    $store(v.as_mut_ptr().add(i), y);
                }
                i += $lanes;
            }
            i
        }
    };
}
#[inline]
#[target_feature(enable = "avx2,fma")]
fn lt8(a: __m256, b: __m256) -> __m256 {
    _mm256_cmp_ps::<_CMP_LT_OQ>(a, b)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn pick8(m: __m256, yes: __m256, no: __m256) -> __m256 {
    _mm256_blendv_ps(no, yes, m)
}

/// Lanes tanh returns as they are: NaN and ±0.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn keep8(x: __m256) -> __m256 {
    let zero = _mm256_cmp_ps::<_CMP_EQ_OQ>(x, _mm256_setzero_ps());
    _mm256_or_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(x, x), zero)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn lt16(a: __m512, b: __m512) -> __mmask16 {
    _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn pick16(m: __mmask16, yes: __m512, no: __m512) -> __m512 {
    _mm512_mask_blend_ps(m, no, yes)
}

/// Lanes tanh returns as they are: NaN and ±0.
#[inline]
#[target_feature(enable = "avx512f")]
fn keep16(x: __m512) -> __mmask16 {
    _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x)
        | _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, _mm512_setzero_ps())
}

vtanh!(
    tanh_avx2,
    "avx2,fma",
    8,
    exp8,
    lt8,
    pick8,
    keep8,
    [
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_set1_ps,
        _mm256_setzero_ps,
        _mm256_mul_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps,
        _mm256_sub_ps,
        _mm256_div_ps,
        _mm256_max_ps
    ]
);

vtanh!(
    tanh512,
    "avx512f",
    16,
    exp16,
    lt16,
    pick16,
    keep16,
    [
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_set1_ps,
        _mm512_setzero_ps,
        _mm512_mul_ps,
        _mm512_fmadd_ps,
        _mm512_add_ps,
        _mm512_sub_ps,
        _mm512_div_ps,
        _mm512_max_ps
    ]
);

/// tanh over `v` with the widest kernel this CPU has (16 lanes with AVX-512 F, then 8 with AVX2 and FMA);
/// the scalar rule's bits either way. Returns how many leading elements it wrote (none without AVX2 and
/// FMA).
pub fn tanh_vec(v: &mut [f32]) -> usize {
    // SAFETY: the tanh kernels need AVX-512 F, and AVX2 and FMA.
    unsafe { widest(v, tanh512, tanh_avx2) }
}

/// Sum of the eight i32 lanes, widened (exact).
#[inline]
#[target_feature(enable = "avx2")]
fn hsum8_i64(v: __m256i) -> i64 {
    let mut a = [0i32; 8];
    // SAFETY: 32 bytes into a 32-byte array.
    unsafe { _mm256_storeu_si256(a.as_mut_ptr().cast(), v) };
    a.iter().map(|&x| x as i64).sum()
}

/// Sum of the sixteen i32 lanes, widened (the lanes' total fits i32: a chunk's bound).
#[inline]
#[target_feature(enable = "avx512f")]
fn hsum16_i64(v: __m512i) -> i64 {
    _mm512_reduce_add_epi32(v) as i64
}

/// Writes a `dot_chunk_*` kernel for one vector width (its docs say what it computes).
macro_rules! dot_chunk {
    ($name:ident, $features:literal, $lanes:literal, $zero:ident, $load_h:ident, $load_w:ident,
     $cvt:ident, $madd:ident, $add:ident, $sum:ident) => {
        #[doc = concat!("A chunk of the int8 recurrence's row sums (`rnn::dot_rows_i8_i16`), ", stringify!($lanes), " columns a")]
        /// step: rows `r..r + R` of `m` (`h.len()` values each) times h over columns `c0..c1`, the int8
        /// values sign-extended to i16 and multiplied with h pairwise into i32 lanes (exact over at most
        /// `rnn::I16_CHUNK` columns), each load of h shared by the rows.
        ///
        /// # Safety
        #[doc = concat!("The CPU has ", $features, "; rows `r..r + R` of `m` exist; `c1 ≤ h.len()` and")]
        #[doc = concat!("`c1 − c0` is a multiple of ", stringify!($lanes), ".")]
        #[inline]
        #[target_feature(enable = $features)]
        pub unsafe fn $name<const R: usize>(
            m: &[i8],
            h: &[i16],
            r: usize,
            c0: usize,
            c1: usize,
        ) -> [i64; R] {
            let n = h.len();
            let mut acc = [$zero(); R];
            let mut c = c0;
            while c < c1 {
                // SAFETY: columns c..c + lanes of h and of each row are in bounds (the contract).
                unsafe {
                    let hv = $load_h(h.as_ptr().add(c).cast());
                    for (j, a) in acc.iter_mut().enumerate() {
                        let w = $load_w(m.as_ptr().add((r + j) * n + c).cast());
                        *a = $add(*a, $madd($cvt(w), hv));
                    }
                }
                c += $lanes;
            }
            let mut sums = [0i64; R];
            for (s, a) in sums.iter_mut().zip(acc) {
                *s = $sum(a);
            }
            sums
        }
    };
}

dot_chunk!(
    dot_chunk_avx2,
    "avx2",
    16,
    _mm256_setzero_si256,
    _mm256_loadu_si256,
    _mm_loadu_si128,
    _mm256_cvtepi8_epi16,
    _mm256_madd_epi16,
    _mm256_add_epi32,
    hsum8_i64
);

dot_chunk!(
    dot_chunk_512,
    "avx512f,avx512bw",
    32,
    _mm512_setzero_si512,
    _mm512_loadu_si512,
    _mm256_loadu_si256,
    _mm512_cvtepi8_epi16,
    _mm512_madd_epi16,
    _mm512_add_epi32,
    hsum16_i64
);

/// Whether this CPU has the AVX-512 subset the 16-lane integer paths use (F and BW).
pub fn has_avx512() -> bool {
    std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw")
}

/// `FixedMultiplier::apply` on 16 lanes (shifts 0..=31): even/odd 32×32→64 products, round half away
/// from zero, and AVX-512's 64-bit arithmetic shift (no high-dword detour as in [`fm_apply8`]).
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn fm_apply16(x: __m512i, fm: FixedMultiplier) -> __m512i {
    let total = 31 + fm.shift;
    let mult = _mm512_set1_epi32(fm.mult);
    let round = _mm512_set1_epi64(1i64 << (total - 1));
    let cnt = _mm_cvtsi32_si128(total);
    let q = |p: __m512i| {
        _mm512_sra_epi64(
            _mm512_add_epi64(_mm512_add_epi64(p, round), _mm512_srai_epi64::<63>(p)),
            cnt,
        )
    };
    let qe = q(_mm512_mul_epi32(x, mult));
    let qo = q(_mm512_mul_epi32(_mm512_srli_epi64::<32>(x), mult));
    _mm512_mask_blend_epi32(0xAAAA, qe, _mm512_slli_epi64::<32>(qo))
}

/// [`qadd_arith_avx2`] 16 lanes at a time on AVX-512 (the AVX2 loop takes the rest): the same integers.
/// Returns how many leading elements it wrote.
///
/// # Safety
/// AVX-512 F and BW ([`has_avx512`]) and AVX2; both multipliers with shifts 0..=31 and sums that fit i32
/// (the caller checks).
#[target_feature(enable = "avx512f,avx512bw,avx2")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn qadd_arith_avx512(
    (ma, za): (FixedMultiplier, i32),
    (mb, zb): (FixedMultiplier, i32),
    sub: bool,
    (zy, lo, hi): (i32, i32, i32),
    a: &[i8],
    b: &[i8],
    out: &mut [i8],
) -> usize {
    let n = a.len().min(b.len()).min(out.len());
    let (vza, vzb, half) = (
        _mm512_set1_epi32(za),
        _mm512_set1_epi32(zb),
        _mm512_set1_epi32(1 << 15),
    );
    let (vlo, vhi, vz) = (
        _mm512_set1_epi32(lo - zy),
        _mm512_set1_epi32(hi - zy),
        _mm512_set1_epi32(zy),
    );
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: 16 bytes in bounds of a, b and out.
        unsafe {
            let xa = _mm512_cvtepi8_epi32(_mm_loadu_si128(a.as_ptr().add(i) as *const __m128i));
            let xb = _mm512_cvtepi8_epi32(_mm_loadu_si128(b.as_ptr().add(i) as *const __m128i));
            let va = fm_apply16(_mm512_slli_epi32::<16>(_mm512_sub_epi32(xa, vza)), ma);
            let vb = fm_apply16(_mm512_slli_epi32::<16>(_mm512_sub_epi32(xb, vzb)), mb);
            let s = if sub {
                _mm512_sub_epi32(va, vb)
            } else {
                _mm512_add_epi32(va, vb)
            };
            let r = _mm512_srai_epi32::<16>(_mm512_add_epi32(
                _mm512_add_epi32(s, half),
                _mm512_srai_epi32::<31>(s),
            ));
            let v = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(r, vlo), vhi), vz);
            _mm_storeu_si128(
                out.as_mut_ptr().add(i) as *mut __m128i,
                _mm512_cvtsepi32_epi8(v),
            );
        }
        i += 16;
    }
    // SAFETY: forwarded contract (AVX2 is enabled here).
    i + unsafe {
        qadd_arith_avx2(
            (ma, za),
            (mb, zb),
            sub,
            (zy, lo, hi),
            &a[i..n],
            &b[i..n],
            &mut out[i..n],
        )
    }
}

/// A row's requantization constants for the 16-lane AVX-512 epilogue.
struct RowRq512 {
    bias: __m512i,
    sat_lo: __m512i,
    sat_hi: __m512i,
    mult: __m512i,
    round: __m512i,
    cnt: __m128i,
    lo: __m512i,
    hi: __m512i,
    zp: __m512i,
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn row_rq512(rq: &Requant, r: usize) -> RowRq512 {
    let (fm, z, b) = (rq.mult[r], rq.zp_out, rq.bias[r]);
    let total = 31 + fm.shift;
    // acc + b stays in i32 exactly when acc ∈ [MIN − b, MAX − b] (as in `row_rq`)
    let (sat_lo, sat_hi) = if b >= 0 {
        (i32::MIN, i32::MAX - b)
    } else {
        (i32::MIN - b, i32::MAX)
    };
    RowRq512 {
        bias: _mm512_set1_epi32(b),
        sat_lo: _mm512_set1_epi32(sat_lo),
        sat_hi: _mm512_set1_epi32(sat_hi),
        mult: _mm512_set1_epi32(fm.mult),
        round: _mm512_set1_epi64(1i64 << (total - 1)),
        cnt: _mm_cvtsi32_si128(total),
        lo: _mm512_set1_epi32(rq.lo - z),
        hi: _mm512_set1_epi32(rq.hi - z),
        zp: _mm512_set1_epi32(z),
    }
}

/// [`requant8`] on 16 accumulators with AVX-512's 64-bit arithmetic shift: the same integers.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn requant16(acc: __m512i, p: &RowRq512) -> __m512i {
    let s = _mm512_add_epi32(
        _mm512_min_epi32(_mm512_max_epi32(acc, p.sat_lo), p.sat_hi),
        p.bias,
    );
    let q = |x: __m512i| {
        _mm512_sra_epi64(
            _mm512_add_epi64(_mm512_add_epi64(x, p.round), _mm512_srai_epi64::<63>(x)),
            p.cnt,
        )
    };
    let qe = q(_mm512_mul_epi32(s, p.mult));
    let qo = q(_mm512_mul_epi32(_mm512_srli_epi64::<32>(s), p.mult));
    let r = _mm512_mask_blend_epi32(0xAAAA, qe, _mm512_slli_epi64::<32>(qo));
    _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(r, p.lo), p.hi), p.zp)
}

/// The VNNI tile with the 16-lane AVX-512 epilogue (one `requant16` per row instead of two `requant8` and
/// the packing shuffles), for the two encodings of `vpdpbusd`: VEX (`$dot` = the AVX-VNNI intrinsic: Zen 4+,
/// Alder Lake+) and EVEX (the AVX512-VNNI one: Cascade Lake, Ice Lake server, which lack AVX-VNNI). One
/// body, two functions: each must carry only its own CPU features.
macro_rules! vnni512 {
    ($tile:ident, $kernel:ident, $features:literal, $dot:ident, $doc:literal) => {
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn $tile<const R: usize>(
            kb: usize,
            a: *const i8,
            b: *const i8,
            c: *mut i8,
            ldc: usize,
            n: usize,
            rq: &Requant,
        ) {
            // SAFETY (whole fn): packed panels hold kb·24 bytes (A) and kb·64 bytes (B); c rows < R valid.
            unsafe {
                let flip = _mm256_set1_epi8(-128);
                let mut acc = [[_mm256_setzero_si256(); 2]; R];
                for blk in 0..kb {
                    let bp = b.add(blk * 64);
                    let b0 = _mm256_xor_si256(_mm256_loadu_si256(bp as *const __m256i), flip);
                    let b1 =
                        _mm256_xor_si256(_mm256_loadu_si256(bp.add(32) as *const __m256i), flip);
                    let ap = a.add(blk * 24);
                    for (r, t) in acc.iter_mut().enumerate() {
                        let av = _mm256_set1_epi32((ap.add(r * 4) as *const i32).read_unaligned());
                        t[0] = $dot(t[0], b0, av);
                        t[1] = $dot(t[1], b1, av);
                    }
                }
                for (r, t) in acc.iter().enumerate() {
                    let dst = c.add(r * ldc);
                    if !vec_ok(rq.mult[r]) {
                        store_row::<2>(t, rq, r, dst, n);
                        continue;
                    }
                    let v = requant16(
                        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(t[0]), t[1]),
                        &row_rq512(rq, r),
                    );
                    let bytes = _mm512_cvtsepi32_epi8(v);
                    if n == 16 {
                        _mm_storeu_si128(dst as *mut __m128i, bytes);
                    } else {
                        let mut buf = [0i8; 16];
                        _mm_storeu_si128(buf.as_mut_ptr() as *mut __m128i, bytes);
                        core::ptr::copy_nonoverlapping(buf.as_ptr(), dst, n);
                    }
                }
            }
        }

        #[doc = $doc]
        ///
        /// # Safety
        /// As [`crate::cpu::qgemm::QKernel`], plus the CPU features named in `target_feature`.
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)] // the QKernel contract
        pub unsafe fn $kernel(
            kb: usize,
            a: *const i8,
            b: *const i8,
            c: *mut i8,
            ldc: usize,
            m: usize,
            n: usize,
            rq: &Requant,
        ) {
            // SAFETY: forwarded contract; rows ≥ m of the tile are computed from zero padding, never stored.
            unsafe {
                tile_rows!(m, $tile, [1, 2, 3, 4, 5; 6], (kb, a, b, c, ldc, n, rq))
            }
        }
    };
}

vnni512!(
    vnni_tile512,
    qgemm_6x16_vnni512,
    "avx2,avxvnni,avx512f,avx512bw",
    _mm256_dpbusd_avx_epi32,
    "[`qgemm_6x16_vnni`] with the AVX-512 epilogue, for AVX-VNNI CPUs that also have AVX-512 F/BW."
);

vnni512!(
    vnni_tile512_evex,
    qgemm_6x16_avx512vnni,
    "avx2,avx512f,avx512bw,avx512vl,avx512vnni",
    _mm256_dpbusd_epi32,
    "The same tile for AVX512-VNNI CPUs without AVX-VNNI (Cascade Lake, Ice Lake server): the EVEX \
     `vpdpbusd` on 256-bit registers, AVX-512 epilogue."
);

/// AVX512-VNNI tile on 512-bit registers: R rows × 32 columns, 2R accumulators (`vpdpbusd` on zmm: 64
/// MACs an instruction, twice the 256-bit tile's), B panels `[kb][32][4]`, the 16-lane AVX-512
/// epilogue per half row. The same integers as every other tile.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
unsafe fn vnni_tile_zmm<const R: usize>(
    kb: usize,
    a: *const i8,
    b: *const i8,
    c: *mut i8,
    ldc: usize,
    n: usize,
    rq: &Requant,
) {
    // SAFETY (whole fn): packed panels hold kb·24 bytes (A) and kb·128 bytes (B); c rows < R valid for
    // n ≤ 32 bytes.
    unsafe {
        let flip = _mm512_set1_epi8(-128);
        let mut acc = [[_mm512_setzero_si512(); 2]; R];
        for blk in 0..kb {
            let bp = b.add(blk * 128);
            let b0 = _mm512_xor_si512(_mm512_loadu_si512(bp as *const __m512i), flip);
            let b1 = _mm512_xor_si512(_mm512_loadu_si512(bp.add(64) as *const __m512i), flip);
            let ap = a.add(blk * 24);
            for (r, t) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_epi32((ap.add(r * 4) as *const i32).read_unaligned());
                t[0] = _mm512_dpbusd_epi32(t[0], b0, av);
                t[1] = _mm512_dpbusd_epi32(t[1], b1, av);
            }
        }
        for (r, t) in acc.iter().enumerate() {
            let dst = c.add(r * ldc);
            if vec_ok(rq.mult[r]) {
                // narrowed and stored under a mask: no partial-row buffer, no `memcpy` call
                let p = row_rq512(rq, r);
                for (h, &v) in t.iter().enumerate() {
                    let keep = n.saturating_sub(16 * h).min(16);
                    let mask = ((1u32 << keep) - 1) as u16;
                    let at = dst.wrapping_add(16 * h);
                    _mm512_mask_cvtsepi32_storeu_epi8(at, mask, requant16(v, &p));
                }
            } else {
                let (mut wide, mut bytes) = ([0i32; 32], [0i8; 32]);
                _mm512_storeu_si512(wide.as_mut_ptr() as *mut __m512i, t[0]);
                _mm512_storeu_si512(wide.as_mut_ptr().add(16) as *mut __m512i, t[1]);
                rq.row(r, &wide[..n], &mut bytes[..n]);
                core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, n);
            }
        }
    }
}

/// int8 micro-kernel for AVX512-VNNI CPUs: 6 rows × 32 columns on zmm registers (`vnni_tile_zmm`).
///
/// # Safety
/// As [`crate::cpu::qgemm::QKernel`] with B panels 32 columns wide, plus AVX2, AVX-512 F/BW and
/// AVX512-VNNI ([`has_avx512vnni`]).
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vnni")]
#[allow(clippy::too_many_arguments)] // the QKernel contract
pub unsafe fn qgemm_6x32_avx512vnni(
    kb: usize,
    a: *const i8,
    b: *const i8,
    c: *mut i8,
    ldc: usize,
    m: usize,
    n: usize,
    rq: &Requant,
) {
    // SAFETY: forwarded contract; rows ≥ m of the tile are computed from zero padding, never stored.
    unsafe { tile_rows!(m, vnni_tile_zmm, [1, 2, 3, 4, 5; 6], (kb, a, b, c, ldc, n, rq)) }
}

/// Whether the CPU has AVX512-VNNI with 256-bit forms (VL) and AVX-512 F/BW ([`qgemm_6x16_avx512vnni`]).
pub fn has_avx512vnni() -> bool {
    has_avx512()
        && std::is_x86_feature_detected!("avx512vl")
        && std::is_x86_feature_detected!("avx512vnni")
}

/// int8 matrix-vector product with AVX512-VNNI: `y[j] = rq(j, Σ_p (x[p] + 128)·w[j][p])` over `w` packed
/// as A panels of 16 rows (`QGemm::pack_a`: `panel[kb][row][4]`, zero padded), so one
/// `vpdpbusd` adds four k of sixteen outputs at once and no horizontal sums are needed (the row-major
/// loop summed each output across lanes); four panels share each broadcast of x (four independent
/// accumulator chains), then each output is requantized with its own multiplier. `rq.bias` must fold
/// the 128 back out (`QGemm::fold_bias` of the VNNI kernel). The same integers as `qgemv`.
///
/// # Safety
/// The CPU must support AVX-512 F/BW and AVX512-VNNI; `panels` holds `n.div_ceil(16)·k.div_ceil(4)·64`
/// bytes for `n = y.len()`, `k = x.len()`; `rq` has `n` rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn qgemv_vnni512(panels: &[i8], x: &[i8], y: &mut [i8], rq: &Requant) {
    const GROUP: usize = 4;
    let (k, n) = (x.len(), y.len());
    let kb = k.div_ceil(4);
    let panel = kb * 64;
    // x's 4-byte groups as unsigned (x + 128); the last one zero padded
    let word = |b: usize| -> i32 {
        let mut q = [0u8; 4];
        for (e, v) in q.iter_mut().enumerate() {
            *v = x.get(4 * b + e).map_or(0, |&v| v as u8 ^ 0x80);
        }
        i32::from_le_bytes(q)
    };
    let full = k / 4;
    let mut acc = [0i32; GROUP * 16];
    let mut j0 = 0;
    while j0 < n {
        let m = (n - j0).min(GROUP * 16);
        let panels_here = m.div_ceil(16);
        let base = (j0 / 16) * panel;
        // SAFETY: every load lies within the panels of rows j0..j0+m (the caller's size); x reads below k.
        unsafe {
            let p = panels.as_ptr().add(base);
            let xw = |b: usize| {
                if b < full {
                    (x.as_ptr().add(4 * b) as *const i32).read_unaligned() ^ 0x8080_8080u32 as i32
                } else {
                    word(b)
                }
            };
            // (a constant panel count per call: the accumulators stay in registers)
            match panels_here {
                1 => gemv_group::<1>(p, panel, kb, &xw, &mut acc),
                2 => gemv_group::<2>(p, panel, kb, &xw, &mut acc),
                3 => gemv_group::<3>(p, panel, kb, &xw, &mut acc),
                _ => gemv_group::<GROUP>(p, panel, kb, &xw, &mut acc),
            }
            requant_rows_avx2(rq, j0, &acc[..m], &mut y[j0..j0 + m]);
        }
        j0 += m;
    }
}

/// `P` panels' sums of [`qgemv_vnni512`] (panels `panel` bytes apart from `p`, `kb` k-blocks, `xw(b)`:
/// block b of x as unsigned bytes), stored to `acc`.
///
/// # Safety
/// AVX-512 F and AVX512-VNNI; `P` panels of `kb·64` bytes readable at `p`; `acc` holds `16·P` values.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn gemv_group<const P: usize>(
    p: *const i8,
    panel: usize,
    kb: usize,
    xw: &impl Fn(usize) -> i32,
    acc: &mut [i32],
) {
    // SAFETY: the caller's bounds.
    unsafe {
        let mut t = [_mm512_setzero_si512(); P];
        for b in 0..kb {
            let xv = _mm512_set1_epi32(xw(b));
            for (q, tq) in t.iter_mut().enumerate() {
                let wv = _mm512_loadu_si512(p.add(q * panel + b * 64) as *const __m512i);
                *tq = _mm512_dpbusd_epi32(*tq, xv, wv);
            }
        }
        for (q, tq) in t.iter().enumerate() {
            _mm512_storeu_si512(acc.as_mut_ptr().add(q * 16) as *mut __m512i, *tq);
        }
    }
}

/// [`scale_row_avx2`] 16 lanes at a time with the AVX-512 epilogue (`requant16`); the AVX2 loop takes
/// the tail. The same integers.
///
/// # Safety
/// AVX2 and AVX-512 F/BW ([`has_avx512`]).
#[target_feature(enable = "avx2,avx512f,avx512bw")]
pub unsafe fn scale_row512(rq: &Requant, r: usize, (a, za, qb): (&[i8], i32, i32), out: &mut [i8]) {
    let n = a.len().min(out.len());
    let mut i = 0;
    if vec_ok(rq.mult[r]) {
        let p = row_rq512(rq, r);
        let (z, b) = (_mm512_set1_epi32(za), _mm512_set1_epi32(qb));
        while i + 16 <= n {
            // SAFETY: 16 bytes in bounds of both slices.
            unsafe {
                let v = _mm512_cvtepi8_epi32(_mm_loadu_si128(a.as_ptr().add(i) as *const __m128i));
                let prod = _mm512_mullo_epi32(_mm512_sub_epi32(v, z), b);
                let y = _mm512_cvtsepi32_epi8(requant16(prod, &p));
                _mm_storeu_si128(out.as_mut_ptr().add(i) as *mut __m128i, y);
            }
            i += 16;
        }
    }
    // SAFETY: the caller's AVX2.
    unsafe { scale_row_avx2(rq, r, (&a[i..n], za, qb), &mut out[i..n]) }
}

/// [`dw_block`] on 512-bit registers: 32 columns, two taps per `vpmaddwd`. Returns columns 0-15 and
/// 16-31.
///
/// # Safety
/// AVX-512 F/BW; 32 values readable at every `p + off + x0`.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw")]
unsafe fn dw_block512(p: *const i16, (w, offs): DwPairs, x0: usize) -> [__m512i; 2] {
    let (mut lo, mut hi) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    for (&wp, &(oa, ob)) in w.iter().zip(offs) {
        // SAFETY: the caller's contract.
        unsafe {
            let w = _mm512_set1_epi32(wp);
            let a = _mm512_loadu_si512(p.add(oa + x0) as *const __m512i);
            let b = _mm512_loadu_si512(p.add(ob + x0) as *const __m512i);
            // per 128-bit lane j: unpacklo pairs columns 8j..8j+3, unpackhi 8j+4..8j+7
            lo = _mm512_add_epi32(lo, _mm512_madd_epi16(_mm512_unpacklo_epi16(a, b), w));
            hi = _mm512_add_epi32(hi, _mm512_madd_epi16(_mm512_unpackhi_epi16(a, b), w));
        }
    }
    // lanes lo = [c0-3, c8-11, c16-19, c24-27], hi = [c4-7, c12-15, c20-23, c28-31] → in column order
    let idx0 = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
    let idx1 = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
    [
        _mm512_permutex2var_epi64(lo, idx0, hi),
        _mm512_permutex2var_epi64(lo, idx1, hi),
    ]
}

/// [`dw_row_avx2`]'s loop with the 16-lane AVX-512 epilogue, 32 columns a block (`dw_block512`) while more
/// than 16 remain, every block narrowed and stored under a mask.
///
/// # Safety
/// AVX2 and AVX-512 F/BW; the reads as in [`dw_row_avx2`] but 32 values past every block start
/// (`off + out.len().next_multiple_of(32)` ≤ `pp.len()`).
#[target_feature(enable = "avx2,avx512f,avx512bw")]
unsafe fn dw_row512(pp: &[i16], ops: DwPairs, p: &RowRq512, out: &mut [i8]) {
    let ow = out.len();
    let mut x0 = 0;
    while x0 < ow {
        // SAFETY: reads in bounds by the caller's contract; min(32, ow − x0) bytes written at out[x0..].
        unsafe {
            let n = ow - x0;
            if n > 16 {
                for (h, &acc) in dw_block512(pp.as_ptr(), ops, x0).iter().enumerate() {
                    let keep = n.saturating_sub(16 * h).min(16);
                    let mask = ((1u32 << keep) - 1) as u16;
                    // (a half with nothing to keep stores nothing: its address may lie past the end)
                    let dst = out.as_mut_ptr().wrapping_add(x0 + 16 * h);
                    _mm512_mask_cvtsepi32_storeu_epi8(dst, mask, requant16(acc, p));
                }
                x0 += 32;
                continue;
            }
            let v = if n <= 8 {
                [dw_block8(pp.as_ptr(), ops, x0), _mm256_setzero_si256()]
            } else {
                dw_block(pp.as_ptr(), ops, x0)
            };
            let mask = ((1u32 << n.min(16)) - 1) as u16;
            let acc = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(v[0]), v[1]);
            _mm512_mask_cvtsepi32_storeu_epi8(out.as_mut_ptr().add(x0), mask, requant16(acc, p));
        }
        x0 += 16;
    }
}

/// `out[i] = rq(0, (a[i] − za)·(b[i] − zb))`: an element-wise int8 Mul, the products formed and
/// requantized in registers, 8 at a time (exact: |products| ≤ 255·255). Returns how many leading elements
/// it wrote (none when row 0's multiplier has no vector form).
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn mul_rows_avx2(
    rq: &Requant,
    (za, zb): (i32, i32),
    a: &[i8],
    b: &[i8],
    out: &mut [i8],
) -> usize {
    let n = a.len().min(b.len()).min(out.len());
    if !vec_ok(rq.mult[0]) {
        return 0;
    }
    let p = row_rq(rq, 0);
    let (vza, vzb) = (_mm256_set1_epi32(za), _mm256_set1_epi32(zb));
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: 8 bytes in bounds of a, b and out.
        unsafe {
            let xa = _mm256_cvtepi8_epi32(_mm_loadl_epi64(a.as_ptr().add(i) as *const __m128i));
            let xb = _mm256_cvtepi8_epi32(_mm_loadl_epi64(b.as_ptr().add(i) as *const __m128i));
            let prod = _mm256_mullo_epi32(_mm256_sub_epi32(xa, vza), _mm256_sub_epi32(xb, vzb));
            store_rq::<1>(&[prod], &p, out.as_mut_ptr().add(i), 8);
        }
        i += 8;
    }
    i
}
