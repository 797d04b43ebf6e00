//! Quantization parameters and the fixed-point requantization rule of tern's integer scheme
//! (see `shared/design.md`): a real multiplier M = s_in·s_w / s_out in (0, 1) is stored as a 32-bit
//! multiplier `m` (Q31) and a right shift `n`, and `requantize(acc) = round_half_away(acc · m / 2^(31+n))`.
//! Every backend uses exactly this integer arithmetic, so all of them produce identical integers.
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// Quantization of an integer tensor: `real = scale · (q - zero_point)`, per tensor or per channel on `axis`.
///
/// Weights are per channel on their output axis. Activations are per tensor, except a *channel-scaled*
/// activation: one scale per channel on axis 1 and one zero point shared by every channel (stored once per
/// channel). Only a QConv or a QLut writes one (per-channel multipliers, or one table per channel) and only
/// a QLut or a depthwise QConv (one input channel per group: its per-channel multipliers take each
/// channel's input scale) reads one: the tensors around conv → element-wise function → depthwise conv
/// chains, whose channels can differ in range by 100x (PP-LCNet's stem, PicoDet's hard-swish outputs), get
/// each channel's own resolution at no cost in the kernels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QParams {
    /// One scale (per tensor) or one per channel along `axis`.
    pub scale: Vec<f32>,
    /// One zero point (per tensor) or one per channel along `axis`.
    pub zero_point: Vec<i32>,
    /// The channel axis for per-channel parameters.
    pub axis: Option<u32>,
}

/// A real multiplier encoded for integer-only requantization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedMultiplier {
    /// Q31 mantissa in [2^30, 2^31) (or 0 for a zero multiplier).
    pub mult: i32,
    /// Total right shift after the Q31 product (may be negative for multipliers ≥ 1).
    pub shift: i32,
}

impl FixedMultiplier {
    /// Encodes a non-negative real multiplier; `None` if it is not finite, negative, or out of range.
    pub fn from_real(real: f64) -> Option<Self> {
        if !real.is_finite() || real < 0.0 {
            return None;
        }
        if real == 0.0 {
            return Some(FixedMultiplier { mult: 0, shift: 0 });
        }
        // real = frac · 2^exp with frac in [0.5, 1)
        let mut exp = 0i32;
        let mut frac = real;
        while frac >= 1.0 {
            frac /= 2.0;
            exp += 1;
        }
        while frac < 0.5 {
            frac *= 2.0;
            exp -= 1;
        }
        let mut q = libm::round(frac * (1u64 << 31) as f64) as i64;
        if q == 1i64 << 31 {
            q /= 2;
            exp += 1;
        }
        let shift = -exp;
        if !(-31..=62).contains(&shift) {
            return None;
        }
        Some(FixedMultiplier {
            mult: q as i32,
            shift,
        })
    }

    /// `round_half_away_from_zero(acc · mult / 2^(31 + shift))`, exactly, in 64-bit integers.
    #[inline(always)]
    pub fn apply(self, acc: i32) -> i32 {
        let prod = acc as i64 * self.mult as i64;
        let total = 31 + self.shift;
        let r = if total <= 0 {
            // a multiplier ≥ 2^30 (rare; loop-invariant): widen so the shift cannot overflow, then
            // saturate
            ((prod as i128) << (-total)).clamp(i32::MIN as i128, i32::MAX as i128) as i64
        } else if total >= 63 {
            0 // |prod| < 2^62, so the quotient rounds to 0
        } else {
            // floor((p + half − [p < 0]) / 2^total) is round-half-away-from-zero for both signs, without
            // a data-dependent branch (so loops over a row vectorize; the branches here are loop-invariant)
            (prod + (1i64 << (total - 1)) - (prod < 0) as i64) >> total
        };
        r.clamp(i32::MIN as i64, i32::MAX as i64) as i32
    }

    /// [`FixedMultiplier::apply`] of a 64-bit value (a sum of many int16 values), exactly in i128,
    /// saturated to i32. (The same rule; `apply` keeps to i64 because it runs per output in the
    /// kernels' scalar paths; this serves the 16-bit average pooling, whose window sums may pass i32.)
    pub fn apply_wide(self, acc: i64) -> i32 {
        let prod = acc as i128 * self.mult as i128;
        let total = 31 + self.shift;
        let r = if total <= 0 {
            prod << (-total).min(64)
        } else if total >= 127 {
            0
        } else {
            (prod + (1i128 << (total - 1)) - (prod < 0) as i128) >> total
        };
        r.clamp(i32::MIN as i128, i32::MAX as i128) as i32
    }
}

/// A float bias in accumulator units `s_x·s_w` (int32, rounded half away from zero, saturated to ±2^30,
/// the bound the loader accepts; calibrated scales put real biases many orders of magnitude below it).
pub fn quantize_bias(b: f32, acc_scale: f64) -> i32 {
    const MAX: f64 = (1u32 << 30) as f64;
    libm::round(b as f64 / acc_scale).clamp(-MAX, MAX) as i32
}

/// `round_half_even(x / scale) + zp`, saturated to int8: ONNX QuantizeLinear, the float → int8 boundary.
#[inline]
pub fn quantize_f32(x: f32, scale: f32, zp: i32) -> i8 {
    // adding and subtracting 1.5·2^23 rounds half to even in f32 arithmetic for |v| < 2^22 (a vectorizable
    // rint); values beyond ±256 saturate anyway, and NaN stays NaN and becomes 0
    const MAGIC: f32 = 12_582_912.0;
    let v = (x / scale).clamp(-256.0, 256.0);
    ((v + MAGIC) - MAGIC + zp as f32).clamp(-128.0, 127.0) as i8
}

/// `scale · (q − zp)`: ONNX DequantizeLinear.
#[inline]
pub fn dequantize_i8(q: i8, scale: f32, zp: i32) -> f32 {
    (q as i32 - zp) as f32 * scale
}

/// The coarsest 16-bit function table: an entry every 2^8 inputs ([`lut16_len`] 257, 514 bytes).
pub const LUT16_MAX_SHIFT: u32 = 8;
/// The finest: an entry every 2^4 inputs (4097 entries), for a function curved across a wide input range
/// (SiLU on a pre-activation spanning ±100).
pub const LUT16_MIN_SHIFT: u32 = 4;
/// The coarsest table's length (most functions of a classifier need no finer one).
pub const LUT16_LEN: usize = lut16_len(LUT16_MAX_SHIFT);

/// Entries of a 16-bit function table ([`crate::ir::Op::Q16Lut`]) with an entry every `2^shift` inputs:
/// the function at `-32768 + 2^shift·j` for `j` in `0..=2^(16 − shift)` (the last one past the int16
/// range, so every input has two).
pub const fn lut16_len(shift: u32) -> usize {
    (65536 >> shift) + 1
}

/// The shift of a table of `len` entries, if that is a valid length ([`LUT16_MIN_SHIFT`] to
/// [`LUT16_MAX_SHIFT`]).
pub fn lut16_shift(len: usize) -> Option<u32> {
    (LUT16_MIN_SHIFT..=LUT16_MAX_SHIFT).find(|&s| lut16_len(s) == len)
}

/// A 16-bit table lookup in a table with an entry every `2^shift` inputs: the two entries around `x`
/// interpolated linearly by its low `shift` bits, `t[j] + ((t[j+1] − t[j])·f + 2^(shift−1)) >> shift`
/// (arithmetic shift: round half up), exactly in i32 (`|t[j+1] − t[j]| < 2^16`, `f < 2^8`). The result lies
/// between the two entries, so it is an int16. `t` must hold [`lut16_len`]`(shift)` entries.
#[inline(always)]
pub fn lut16(t: &[i16], x: i16, shift: u32) -> i16 {
    let u = (x as i32 + 32768) as usize;
    let (j, f) = (u >> shift, (u & ((1 << shift) - 1)) as i32);
    let (a, b) = (t[j] as i32, t[j + 1] as i32);
    (a + (((b - a) * f + (1 << (shift - 1))) >> shift)) as i16
}

/// The largest `2^15·Σ_k |w_k| + |bias|` a 16-bit integer conv or matmul row may have: below it the i32
/// sum of `w·x` products (|x| ≤ 2^15) cannot overflow in any order.
pub const ACC16_LIMIT: i64 = i32::MAX as i64;

/// Whether a 16-bit integer row with int8 weights `w` and `bias` keeps its i32 sums exact
/// ([`ACC16_LIMIT`]).
pub fn acc16_fits(w: &[i8], bias: i32) -> bool {
    let s: i64 = w.iter().map(|&v| (v as i64).abs()).sum();
    (s << 15) + (bias as i64).abs() <= ACC16_LIMIT
}

/// The integer form of a 16-bit Add/Sub, `y = round_half_away((a·A ± b·B) / 2^S)` in i32 ([`add16`]),
/// for the real rescales `ma = s_a/s_y` and `mb = s_b/s_y`: S puts the larger of A and B in
/// [2^13, 2^14) (at most 30), the smaller rounded at the same exponent. Then |a·A ± b·B| ≤ 2^30 and the
/// rounding term 2^(S−1) ≤ 2^29 keep every step inside i32, and (A, ±B) is an int16 pair that `vpmaddwd`
/// multiplies with (a, b) in one instruction. (A 14-bit multiplier is within 2^-14 of the rescale: at most
/// two output steps off at full scale, far below what int8 rounds.) `None` where a rescale is not finite
/// and positive or the larger one is 2^14 or more.
pub fn add16_params(ma: f64, mb: f64) -> Option<(i32, i32, u32)> {
    if !(ma.is_finite() && mb.is_finite() && ma > 0.0 && mb > 0.0) {
        return None;
    }
    let big = ma.max(mb);
    let mut s = 0i32;
    let mut v = big;
    // v·2^S in [2^13, 2^14), S at most 30
    while v < (1u32 << 13) as f64 && s < 30 {
        v *= 2.0;
        s += 1;
    }
    if v >= (1u32 << 14) as f64 {
        return None;
    }
    let scale = libm::ldexp(1.0, s);
    Some((
        libm::round(ma * scale) as i32,
        libm::round(mb * scale) as i32,
        s as u32,
    ))
}

/// A 16-bit Add/Sub by [`add16_params`]' `(A, B, S)` (Sub: `B` negated by the caller): the i32
/// `round_half_away((a·A + b·B) / 2^S)`.
#[inline(always)]
pub fn add16(a: i16, b: i16, (ma, mb, s): (i32, i32, u32)) -> i32 {
    let v = a as i32 * ma + b as i32 * mb;
    if s == 0 {
        v
    } else {
        (v + (1 << (s - 1)) - (v < 0) as i32) >> s
    }
}

/// The first format whose 16-bit Conv, MatMul and Mul requantize in f32 ([`requant_f32`]); before it they
/// take the Q31 [`FixedMultiplier`] (half away from zero). The f32 form is 4 vector instructions per 8
/// values instead of ~16 (the 32×32→64 products): the epilogue was a third of a 16-bit classifier's time.
pub const REQUANT_F32_FORMAT: u32 = 12;

/// A 16-bit layer's real rescale (`s_x·s_w / s_y`, computed in f64) as the f32 [`requant_f32`] multiplies
/// by: one rounding, the same on every target.
#[inline]
pub fn f32_scale(real: f64) -> f32 {
    real as f32
}

/// The f32 requantization (format [`REQUANT_F32_FORMAT`] on): `rint(clamp(f32(s)·scale, lo, hi))` with
/// each step one IEEE single-precision operation (the conversion and the product rounded to nearest
/// even, the clamp exact, `rint` ties to even), so the scalar, AVX2 (`cvtdq2ps`, `mulps`, `maxps`,
/// `minps`, `cvtps2dq`) and NEON (`scvtf`, `fmul`, `fmax`, `fmin`, `fcvtns`) forms give the same
/// integers. `s` is the i32 sum with the bias already added (saturating); `lo`/`hi` within ±2^22 (an
/// int16 clamp). Within half a step of the exact rescale plus 2^-24 relative: as close as the Q31 form.
#[inline(always)]
pub fn requant_f32(s: i32, scale: f32, lo: i32, hi: i32) -> i32 {
    rint_clamp(s as f32 * scale, lo, hi)
}

/// `rint(clamp(v, lo, hi))`, ties to even, for `lo`/`hi` within ±2^22.
#[inline(always)]
fn rint_clamp(v: f32, lo: i32, hi: i32) -> i32 {
    // the magic-number rint as in `quantize_f32`: exact for |v| < 2^22, which the clamp guarantees
    const MAGIC: f32 = 12_582_912.0;
    let v = v.max(lo as f32).min(hi as f32);
    ((v + MAGIC) - MAGIC) as i32
}

/// The constants of [`unary16`] for a function from int16 at scale `sx` to int16 at scale `sy`:
/// `(s_x, k)`, with `k = 1/(6·s_y)` for HardSwish (its 1/6 folded in); `None` for a function without an
/// f32 form here, or scales that are not finite and positive or would make `v` (up to 2^15·s_x) or `k`
/// infinite: an infinite `v` or `k` times a zero is NaN, which the vector clamps of x86 and NEON treat
/// differently, so no valid artifact may produce one.
pub fn unary16_params(f: &crate::ir::Unary, sx: f32, sy: f32) -> Option<(f32, f32)> {
    let ok = |s: f32| s.is_finite() && s > 0.0;
    if !(ok(sx) && ok(sy) && ok(sx * 32768.0)) {
        return None;
    }
    match f {
        crate::ir::Unary::HardSwish => {
            let k = f32_scale(1.0 / (6.0 * sy as f64));
            ok(k).then_some((sx, k))
        }
        _ => None,
    }
}

/// [`crate::ir::Op::Q16Unary`] on one value, with `(s_x, k)` from [`unary16_params`]. HardSwish:
/// `v = f32(x)·s_x`, `g = min(max(v + 3, 0), 6)`, `y = rint(clamp((v·g)·k))` to int16: in that order, each
/// step one single-precision operation (no fused multiply-add), which the vector forms repeat.
#[inline(always)]
pub fn unary16(x: i16, (sx, k): (f32, f32)) -> i16 {
    hard_swish_f32(x as f32 * sx, k, i16::MIN as i32, i16::MAX as i32) as i16
}

/// HardSwish of a real value `v` to the integer `rint(clamp((v·min(max(v + 3, 0), 6))·k, lo, hi))`, each
/// step one single-precision operation ([`unary16`]; [`crate::ir::Op::Q16ConvAct`]'s epilogue after
/// `v = f32(acc + bias)·f32(s_x·s_w)`).
#[inline(always)]
pub fn hard_swish_f32(v: f32, k: f32, lo: i32, hi: i32) -> i32 {
    let g = (v + 3.0).clamp(0.0, 6.0);
    rint_clamp(v * g * k, lo, hi)
}

/// `round_half_even(x / scale)`, saturated to int16: ONNX QuantizeLinear to int16 with zero point 0.
#[inline]
pub fn quantize_f32_i16(x: f32, scale: f32) -> i16 {
    // the magic-number rint as in `quantize_f32`: exact for |v| < 2^22, beyond ±65536 saturates anyway
    const MAGIC: f32 = 12_582_912.0;
    let v = (x / scale).clamp(-65536.0, 65536.0);
    ((v + MAGIC) - MAGIC).clamp(-32768.0, 32767.0) as i16
}

/// `scale · q`: ONNX DequantizeLinear of an int16 with zero point 0.
#[inline]
pub fn dequantize_i16(q: i16, scale: f32) -> f32 {
    q as f32 * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A xorshift32 sequence from `seed`.
    fn xorshift(mut seed: u32) -> impl FnMut() -> u32 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        }
    }

    #[test]
    fn fixed_multiplier_matches_f64_rounding() {
        // Independent reference: the f64 product rounded half away from zero. With a Q31 mantissa the
        // encoded multiplier differs from the real one by < 2^-31 relative, so results agree whenever
        // the exact product is not within that margin of a .5 boundary; those cases are skipped.
        let mut next = xorshift(0x1234_5678);
        for _ in 0..20_000 {
            let real = (next() as f64 / u32::MAX as f64) * 0.999 + 1e-6;
            let fm = FixedMultiplier::from_real(real).unwrap();
            assert!(fm.mult >= 1 << 30, "{real} -> {fm:?}");
            let acc = (next() as i32) >> (next() % 20);
            let exact = acc as f64 * real;
            let frac = exact.abs().fract();
            if (frac - 0.5).abs() < 1e-6 * exact.abs().max(1.0) {
                continue;
            }
            let want = libm::round(exact) as i32; // round() is half away from zero
            assert_eq!(fm.apply(acc), want, "acc {acc} real {real}");
        }
    }

    #[test]
    fn requant_f32_is_the_single_precision_product_rounded_half_to_even() {
        // Independent reference in f64: the product of two f32 values is exact in f64 (48 significant
        // bits), so rounding it to f32 is the single-precision product; then the clamp and round half
        // to even (checked as |v − r| ≤ 1/2 with an even r at a tie).
        let mut next = xorshift(0x0bad_cafe);
        let mut ties = 0;
        for i in 0..200_000 {
            let scale = ((next() as f64 / u32::MAX as f64) * 2.0 + 1e-7) as f32;
            let s = match i % 4 {
                0 => (next() as i32) >> (next() % 31),
                // integers whose product lands on a half (ties), and the int32 ends
                1 => (2 * (next() as i32 >> 12) + 1) * if i % 8 == 1 { 1 } else { -1 },
                2 => [i32::MIN, i32::MAX, 0, 1, -1][(next() % 5) as usize],
                _ => (next() % 70_000) as i32 - 35_000,
            };
            let scale = if i % 4 == 1 { 0.5 } else { scale };
            let (lo, hi) = if i % 3 == 0 {
                (-32768, 32767)
            } else {
                (-7, 1200)
            };
            let v = ((s as f32 as f64) * scale as f64) as f32 as f64;
            let v = v.clamp(lo as f64, hi as f64);
            let r = requant_f32(s, scale, lo, hi);
            let d = (v - r as f64).abs();
            assert!(
                d < 0.5 || (d == 0.5 && r % 2 == 0),
                "s {s} scale {scale}: {v} -> {r}"
            );
            ties += (d == 0.5) as u32;
        }
        assert!(ties > 1000, "{ties} ties exercised");
    }

    #[test]
    fn unary16_hard_swish_is_within_half_a_step_of_f64() {
        // Independent reference: x·clamp(x + 3, 0, 6)/6 in f64 at the real input, divided by s_y; the
        // f32 steps add four roundings of 2^-24 relative (< 0.01 at 2^15), so every output is the nearest
        // integer unless the exact value lies within 0.01 of a half (skipped) or past the int16 range
        // (saturated).
        let f = crate::ir::Unary::HardSwish;
        assert!(unary16_params(&crate::ir::Unary::Sigmoid, 1e-3, 1e-3).is_none());
        assert!(unary16_params(&f, 0.0, 1e-3).is_none());
        // (an infinite k or v times a zero would be NaN, which x86 and NEON clamp differently)
        assert!(unary16_params(&f, 1e-3, 1e-45).is_none());
        assert!(unary16_params(&f, 1e36, 1.0).is_none());
        for (sx, sy) in [(6e-4f32, 4e-4f32), (1e-4, 1.1e-4), (0.01, 0.002)] {
            let p = unary16_params(&f, sx, sy).unwrap();
            for x in i16::MIN..=i16::MAX {
                let v = x as f64 * sx as f64;
                let want = v * (v + 3.0).clamp(0.0, 6.0) / 6.0 / sy as f64;
                let got = unary16(x, p) as f64;
                if want > 32767.5 {
                    assert_eq!(got, 32767.0);
                    continue;
                }
                if ((want - want.floor()) - 0.5).abs() < 0.01 {
                    continue;
                }
                assert_eq!(got, want.round(), "x {x} scales {sx} {sy}");
            }
        }
    }

    #[test]
    fn quantize_rounds_half_to_even_like_onnx() {
        for (x, want) in [
            (0.5f32, 0i8),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (126.5, 126),
            (1e9, 127),
            (-1e9, -128),
        ] {
            assert_eq!(quantize_f32(x, 1.0, 0), want, "{x}");
        }
        assert_eq!(quantize_f32(f32::NAN, 1.0, 3), 0);
        // against libm's rint on a dense grid
        for i in -40_000..40_000 {
            let x = i as f32 * 0.00731;
            let want = (libm::rintf(x / 0.05) + 7.0).clamp(-128.0, 127.0) as i8;
            assert_eq!(quantize_f32(x, 0.05, 7), want, "{x}");
        }
    }

    #[test]
    fn fixed_multiplier_edges() {
        assert_eq!(FixedMultiplier::from_real(0.0).unwrap().apply(12345), 0);
        assert!(FixedMultiplier::from_real(-1.0).is_none());
        assert!(FixedMultiplier::from_real(f64::NAN).is_none());
        let half = FixedMultiplier::from_real(0.5).unwrap();
        assert_eq!(half.apply(3), 2); // 1.5 -> 2
        assert_eq!(half.apply(-3), -2); // -1.5 -> -2
        assert_eq!(FixedMultiplier::from_real(2.0).unwrap().apply(7), 14);
        // extreme shifts saturate or vanish instead of overflowing
        let big = FixedMultiplier {
            mult: i32::MAX,
            shift: -31,
        };
        assert_eq!(big.apply(i32::MAX), i32::MAX);
        assert_eq!(big.apply(i32::MIN), i32::MIN);
        let tiny = FixedMultiplier {
            mult: i32::MAX,
            shift: 62,
        };
        assert_eq!(tiny.apply(i32::MAX), 0);
    }

    #[test]
    fn apply_wide_equals_apply_on_i32_and_extends_it() {
        let mut next = xorshift(0x2545_f491);
        for _ in 0..20_000 {
            let real = (next() as f64 / u32::MAX as f64) * 0.999 + 1e-9;
            let fm = FixedMultiplier::from_real(real).unwrap();
            let acc = (next() as i32) >> (next() % 20);
            assert_eq!(fm.apply_wide(acc as i64), fm.apply(acc), "{acc} {real}");
        }
        // beyond i32: a mean of 2^20 values of 30000
        let fm = FixedMultiplier::from_real(1.0 / (1u64 << 20) as f64).unwrap();
        assert_eq!(fm.apply_wide(30000 << 20), 30000);
        assert_eq!(fm.apply_wide(-30000 << 20), -30000);
    }

    #[test]
    fn lut16_interpolates_exactly() {
        // a table of the identity reproduces every input; a table of x/2 halves it (rounded half up)
        let step = 1i32 << LUT16_MAX_SHIFT;
        let id: Vec<i16> = (0..LUT16_LEN as i32)
            .map(|j| (-32768 + step * j).min(32767) as i16)
            .collect();
        for x in (-32768..=32767).step_by(7) {
            let want = if x > 32767 - step {
                None
            } else {
                Some(x as i16)
            };
            if let Some(w) = want {
                assert_eq!(lut16(&id, x as i16, LUT16_MAX_SHIFT), w, "{x}");
            }
        }
        let half: Vec<i16> = (0..LUT16_LEN as i32)
            .map(|j| (-16384 + step / 2 * j) as i16)
            .collect();
        for x in -32768i32..=32767 {
            let want = libm::floor(x as f64 / 2.0 + 0.5) as i16;
            assert_eq!(lut16(&half, x as i16, LUT16_MAX_SHIFT), want, "{x}");
        }
    }

    #[test]
    fn every_table_length_interpolates_exactly() {
        // the identity at every shift: each input comes back (past the last entry's clamp aside)
        for shift in LUT16_MIN_SHIFT..=LUT16_MAX_SHIFT {
            let len = lut16_len(shift);
            assert_eq!(lut16_shift(len), Some(shift));
            let id: Vec<i16> = (0..len as i32)
                .map(|j| (-32768 + (j << shift)).min(32767) as i16)
                .collect();
            for x in -32768..=(32767 - (1 << shift)) {
                assert_eq!(lut16(&id, x as i16, shift), x as i16, "shift {shift} x {x}");
            }
        }
        assert_eq!(lut16_shift(258), None);
        assert_eq!(lut16_shift(lut16_len(3)), None);
    }

    #[test]
    fn add16_follows_float64() {
        // y = round(a·ma + b·mb) against f64: within two steps (14-bit multipliers) plus the rounding
        let mut seed = 0x9e37_79b9u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for _ in 0..20_000 {
            let ma = 0.05 + (next() % 4000) as f64 / 1000.0;
            let mb = 0.05 + (next() % 4000) as f64 / 1000.0;
            let (ca, cb, s) = add16_params(ma, mb).unwrap();
            assert!(ca.max(cb) >= 1 << 13 && ca.max(cb) < 1 << 14, "{ca} {cb}");
            let (a, b) = (next() as i16, next() as i16);
            let exact = a as f64 * ma + b as f64 * mb;
            let bound = 0.5
                + (a as f64).abs() * ma / ca as f64 * 0.5
                + (b as f64).abs() * mb / cb.max(1) as f64 * 0.5
                + 1e-9;
            let got = add16(a, b, (ca, cb, s));
            assert!(
                (got as f64 - exact).abs() <= bound,
                "{a} {ma} {b} {mb}: {got} vs {exact}"
            );
            // the i32 steps against i64
            let v = a as i64 * ca as i64 + b as i64 * cb as i64;
            let want = if s == 0 {
                v
            } else {
                (v + (1 << (s - 1)) - (v < 0) as i64) >> s
            };
            assert_eq!(got as i64, want);
        }
        for (a, b) in [
            (i16::MIN, i16::MIN),
            (i16::MAX, i16::MAX),
            (i16::MIN, i16::MAX),
        ] {
            let p = add16_params(1.9, 0.01).unwrap();
            let v = a as i64 * p.0 as i64 + b as i64 * p.1 as i64;
            assert_eq!(
                add16(a, b, p) as i64,
                (v + (1 << (p.2 - 1)) - (v < 0) as i64) >> p.2
            );
        }
        assert!(add16_params(0.0, 1.0).is_none());
        assert!(add16_params(f64::NAN, 1.0).is_none());
        assert!(add16_params(20000.0, 1.0).is_none());
        assert_eq!(add16_params(1e-12, 1e-12), Some((0, 0, 30)));
    }

    #[test]
    fn quantize_i16_rounds_half_to_even_and_saturates() {
        for (x, want) in [
            (0.5f32, 0i16),
            (1.5, 2),
            (-2.5, -2),
            (40000.0, 32767),
            (-1e9, -32768),
        ] {
            assert_eq!(quantize_f32_i16(x, 1.0), want, "{x}");
        }
        assert_eq!(quantize_f32_i16(f32::NAN, 1.0), 0);
        assert_eq!(dequantize_i16(-3, 0.5), -1.5);
        // the accumulation bound: 127·16384 = 2^21 - 2^14 weights sum, times 2^15, is below 2^31 - 1
        assert!(acc16_fits(&[127; 512], 0));
        assert!(!acc16_fits(&[127; 520], 0));
    }
}
