//! int8 GEMM: `C_i8 = requant(A_i8 · B_i8 + bias_i32)` with tern's integer scheme (`ir::quant`).
//!
//! One packing scheme for every instruction-set path: A (weights, M×K) in panels of `mr` rows and B
//! (activations, K×N) in panels of `nr` columns, both in k-blocks of 4 (`panel[kb][row][0..4]`, k
//! zero-padded to a multiple of 4); each kernel names its (mr, nr). A is bytes, or i16 where the kernel
//! multiplies in i16 ([`QGemm::a_wide`], sign-extended once at packing). A micro-kernel computes the exact i32
//! tile `Σ_k a·b` in registers and applies the epilogue there: add the bias, requantize with the per-row
//! fixed-point multiplier (round half away from zero), clamp, add the output zero point, narrow to int8 and
//! store. The integers are those of [`Requant::apply`] on every path, so results are bit-identical.
use super::caps::Isa;
use crate::ir::quant::FixedMultiplier;
use alloc::vec;
use alloc::vec::Vec;

/// Largest K: every intermediate sum of every path stays inside i32 (the VNNI path sums (x+128)·w, up to
/// 255·128 per product; 255·128·2^15 < 2^31). The loader rejects deeper integer products.
pub const QMAX_K: usize = 1 << 15;
/// Largest |bias| the loader accepts: with K ≤ [`QMAX_K`], `Σ x·w + bias − zp·Σ w` never leaves i32 on any
/// path, so no path ever saturates and all give the same integers.
pub const QMAX_BIAS: i32 = 1 << 30;
/// Largest tile any kernel uses (rows, columns): the size of the generic epilogue buffer.
const MAX_MR: usize = 8;
const MAX_NR: usize = 32;

/// An int8 micro-kernel with its epilogue: for the `m×n` corner of one MR×NR tile,
/// `c[r·ldc + j] = rq(r, Σ_k a[k][r]·b[k][j])` over `kb` k-blocks of 4, where `rq` holds the tile's rows.
///
/// # Safety
/// `a` must hold `kb·mr·4` values (bytes, or i16 for an `a_wide` kernel: [`QGemm::a_len`]) and `b`
/// `kb·nr·4` bytes, packed for this kernel's (mr, nr) as the module
/// docs say; `c` must be valid for rows `0..m` of `n` bytes with stride `ldc`; `rq` must have ≥ m rows.
pub type QKernel = unsafe fn(
    kb: usize,
    a: *const i8,
    b: *const i8,
    c: *mut i8,
    ldc: usize,
    m: usize,
    n: usize,
    rq: &Requant,
);

/// A micro-kernel, its tile shape and its name (isa_op_tile).
#[derive(Clone, Copy)]
pub struct QGemm {
    /// The instruction-set path (for the companion kernels: vector epilogue, depthwise).
    pub isa: Isa,
    /// Tile rows (A panel height).
    pub mr: usize,
    /// Tile columns (B panel width).
    pub nr: usize,
    /// Added to every activation byte by the kernel before multiplying (128 where the instruction wants
    /// unsigned activations, e.g. `vpdpbusd`); [`QGemm::fold_bias`] takes it back out through the bias.
    pub x_offset: i32,
    /// A panels hold i16 (sign-extended once at packing) instead of i8: a kernel that multiplies in i16
    /// (`vpmaddwd`) then skips widening the weights in its inner loop.
    pub a_wide: bool,
    /// The kernel.
    pub kernel: QKernel,
    /// Name for logs and benches.
    pub name: &'static str,
}

/// The int8 kernel for an instruction-set path.
pub fn qgemm_for(isa: Isa) -> QGemm {
    match isa {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        Isa::Avx2 => QGemm {
            isa,
            mr: 6,
            nr: 8,
            x_offset: 0,
            a_wide: true,
            kernel: super::kernels::x86::qgemm_6x8_avx2,
            name: "avx2_qgemm_i16_6x8_madd",
        },
        // 512-bit `vpdpbusd` where the CPU has AVX512-VNNI (twice the MACs per instruction)
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        Isa::AvxVnni if super::kernels::x86::has_avx512vnni() => QGemm {
            isa,
            mr: 6,
            nr: 32,
            x_offset: 128,
            a_wide: false,
            kernel: super::kernels::x86::qgemm_6x32_avx512vnni,
            name: "avx512vnni_qgemm_u8i8_6x32_dpbusd",
        },
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        Isa::AvxVnni => QGemm {
            isa,
            mr: 6,
            nr: 16,
            x_offset: 128,
            a_wide: false,
            // the AVX-512 epilogue where the CPU's own best path has it (TERN_CPU=avx2 lowers past both);
            // the EVEX encoding on AVX512-VNNI CPUs without AVX-VNNI
            kernel: if !std::is_x86_feature_detected!("avxvnni") {
                super::kernels::x86::qgemm_6x16_avx512vnni
            } else if super::kernels::x86::has_avx512() {
                super::kernels::x86::qgemm_6x16_vnni512
            } else {
                super::kernels::x86::qgemm_6x16_vnni
            },
            name: "avxvnni_qgemm_u8i8_6x16_dpbusd",
        },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => QGemm {
            isa,
            mr: 4,
            nr: 8,
            x_offset: 0,
            a_wide: false,
            kernel: super::kernels::neon::qgemm_4x8_smlal,
            name: "neon_qgemm_i8_4x8_smlal",
        },
        #[cfg(target_arch = "aarch64")]
        Isa::Dotprod => QGemm {
            isa,
            mr: 8,
            nr: 8,
            x_offset: 0,
            a_wide: false,
            kernel: super::kernels::neon::qgemm_8x8_sdot,
            name: "neon_qgemm_i8_8x8_sdot",
        },
        _ => QGemm {
            isa: Isa::Scalar,
            mr: 4,
            nr: 8,
            x_offset: 0,
            a_wide: false,
            kernel: qgemm_4x8_scalar,
            name: "scalar_qgemm_i8_4x8",
        },
    }
}

/// The exact i32 tile `Σ_k a·b` of packed panels (the scalar oracle's inner product, also used by the SIMD
/// kernels' tests).
///
/// # Safety
/// `a` holds `kb·mr·4` and `b` `kb·nr·4` bytes.
unsafe fn tile_scalar(
    kb: usize,
    a: *const i8,
    b: *const i8,
    mr: usize,
    nr: usize,
) -> [[i32; MAX_NR]; MAX_MR] {
    let mut acc = [[0i32; MAX_NR]; MAX_MR];
    for blk in 0..kb {
        for (r, row) in acc.iter_mut().enumerate().take(mr) {
            for (c, v) in row.iter_mut().enumerate().take(nr) {
                for q in 0..4 {
                    // SAFETY: in bounds of the packed panels per the contract.
                    let (x, y) = unsafe {
                        (
                            *a.add((blk * mr + r) * 4 + q),
                            *b.add((blk * nr + c) * 4 + q),
                        )
                    };
                    *v += x as i32 * y as i32;
                }
            }
        }
    }
    acc
}

/// The scalar epilogue over an i32 tile: `c[r][j] = rq.apply(r, acc[r][j])` for the `m×n` corner.
///
/// # Safety
/// `c` valid for rows `0..m` of `n` bytes with stride `ldc`.
unsafe fn store_tile(
    acc: &[[i32; MAX_NR]; MAX_MR],
    c: *mut i8,
    ldc: usize,
    m: usize,
    n: usize,
    rq: &Requant,
) {
    for (r, row) in acc.iter().enumerate().take(m) {
        // SAFETY: row r < m, n bytes, per the contract.
        let out = unsafe { core::slice::from_raw_parts_mut(c.add(r * ldc), n) };
        rq.row(r, &row[..n], out);
    }
}

/// The scalar oracle (4×8).
///
/// # Safety
/// As [`QKernel`].
#[allow(clippy::too_many_arguments)] // the QKernel contract
pub unsafe fn qgemm_4x8_scalar(
    kb: usize,
    a: *const i8,
    b: *const i8,
    c: *mut i8,
    ldc: usize,
    m: usize,
    n: usize,
    rq: &Requant,
) {
    // SAFETY: forwarded contract.
    unsafe {
        let acc = tile_scalar(kb, a, b, 4, 8);
        store_tile(&acc, c, ldc, m, n, rq);
    }
}

/// k-blocks for depth `k`.
pub fn k_blocks(k: usize) -> usize {
    k.div_ceil(4)
}

impl QGemm {
    /// This path's kernel for the weights `w` (the A values): on NEON without dotprod, weights that avoid
    /// −128 (tern's quantizer writes −127..=127; imported models may not) take `qgemm_4x8_smlal2`
    /// (`neon_qgemm_i8_4x8_smlal2`), which sums two products in i16. Same packing, same integers.
    pub fn for_weights(self, w: &[i8]) -> QGemm {
        #[cfg(target_arch = "aarch64")]
        if self.isa == Isa::Neon && !w.contains(&i8::MIN) {
            return QGemm {
                kernel: super::kernels::neon::qgemm_4x8_smlal2,
                name: "neon_qgemm_i8_4x8_smlal2",
                ..self
            };
        }
        let _ = w;
        self
    }

    /// Bytes of packed A for `m×k`.
    pub fn a_len(&self, m: usize, k: usize) -> usize {
        m.div_ceil(self.mr) * k_blocks(k) * self.mr * 4 * self.a_elem()
    }

    /// Bytes per packed A value (2 where A is widened to i16).
    fn a_elem(&self) -> usize {
        if self.a_wide {
            2
        } else {
            1
        }
    }

    /// Bytes of packed B for `k×n`.
    pub fn b_len(&self, k: usize, n: usize) -> usize {
        n.div_ceil(self.nr) * k_blocks(k) * self.nr * 4
    }

    /// Packs `m×k` values `get(i, p)` into A panels (`panel[kb][row][0..4]`, zero-padded).
    pub fn pack_a(&self, m: usize, k: usize, get: impl Fn(usize, usize) -> i8) -> Vec<i8> {
        let (kb, mr) = (k_blocks(k), self.mr);
        let mut out = vec![0i8; self.a_len(m, k)];
        for i in 0..m {
            let (pi, r) = (i / mr, i % mr);
            for p in 0..k {
                let at = ((pi * kb + p / 4) * mr + r) * 4 + p % 4;
                let v = get(i, p);
                if self.a_wide {
                    // little-endian i16: the value, then its sign
                    out[2 * at] = v;
                    out[2 * at + 1] = if v < 0 { -1 } else { 0 };
                } else {
                    out[at] = v;
                }
            }
        }
        out
    }

    /// Packs `k×n` values `get(p, j)` into B panels in a caller buffer (at run time, without allocating);
    /// returns the packed part. Padding is zero (the kernel contract: padded k adds nothing because A's
    /// padding is zero too).
    pub fn pack_b_into<'o>(
        &self,
        out: &'o mut [i8],
        k: usize,
        n: usize,
        get: impl Fn(usize, usize) -> i8,
    ) -> &'o mut [i8] {
        let (kb, nr) = (k_blocks(k), self.nr);
        let out = &mut out[..self.b_len(k, n)];
        out.fill(0);
        for j in 0..n {
            let (pj, c) = (j / nr, j % nr);
            for p in 0..k {
                out[((pj * kb + p / 4) * nr + c) * 4 + p % 4] = get(p, j);
            }
        }
        out
    }

    /// [`QGemm::pack_b_into`] into a new vector.
    pub fn pack_b(&self, k: usize, n: usize, get: impl Fn(usize, usize) -> i8) -> Vec<i8> {
        let mut out = vec![0i8; self.b_len(k, n)];
        self.pack_b_into(&mut out, k, n, get);
        out
    }

    /// Folds the input zero point (and this kernel's activation offset) into per-row biases:
    /// `bias_r − (zp_in + x_offset)·Σ_k w[r][k]`, in i64 then saturated (the loader's bounds keep it exact).
    pub fn fold_bias(&self, bias: &[i32], w: &[i8], k: usize, zp_in: i32) -> Vec<i32> {
        let zp = (zp_in + self.x_offset) as i64;
        bias.iter()
            .enumerate()
            .map(|(r, &b)| {
                let s: i64 = w[r * k..(r + 1) * k].iter().map(|&x| x as i64).sum();
                (b as i64 - zp * s).clamp(i32::MIN as i64, i32::MAX as i64) as i32
            })
            .collect()
    }
}

/// What turns the i32 tile into int8 outputs.
#[derive(Clone, Copy)]
pub struct Requant<'a> {
    /// Per output row: the bias in accumulator units, with `−zp_in·Σ_k w` already folded in
    /// ([`QGemm::fold_bias`]).
    pub bias: &'a [i32],
    /// Per output row: the real multiplier s_in·s_w / s_out.
    pub mult: &'a [FixedMultiplier],
    /// Output zero point (an int8 value: the loader checks; the vector epilogues rely on it).
    pub zp_out: i32,
    /// Clamp (the fused activation and the int8 range), inclusive: within −128..=127 (the 16-bit engine's
    /// within −32768..=32767, with zero point 0).
    pub lo: i32,
    /// Upper clamp, within −128..=127 (16-bit: −32768..=32767).
    pub hi: i32,
    /// Per output row, the f32 multiplier of the 16-bit engine's f32 requantization
    /// ([`crate::ir::quant::requant_f32`], format 12 on; zero point 0), used instead of `mult` where
    /// given; empty for the int8 engine and older 16-bit artifacts.
    pub fscale: &'a [f32],
    /// With `fscale` (the real sums' scale then): the HardSwish constant `k` of
    /// [`crate::ir::Op::Q16ConvAct`], whose epilogue is [`crate::ir::quant::hard_swish_f32`].
    pub hswish: Option<f32>,
}

impl<'a> Requant<'a> {
    /// The epilogue for one accumulator value of row `r` (the scalar definition every path follows).
    #[inline]
    pub fn apply(&self, r: usize, acc: i32) -> i8 {
        self.value(r, acc) as i8
    }

    /// [`Requant::apply`] before the narrowing: `clamp(m_r.apply(acc + bias_r) + zp_out, lo, hi)` (the 16-bit
    /// engine's epilogue, whose clamp is an int16 range; with `fscale`, its f32 form
    /// [`crate::ir::quant::requant_f32`]).
    #[inline]
    pub fn value(&self, r: usize, acc: i32) -> i32 {
        if let Some(&f) = self.fscale.get(r) {
            let (z, s) = (self.zp_out, acc.saturating_add(self.bias[r]));
            let (lo, hi) = (self.lo - z, self.hi - z);
            return z + match self.hswish {
                Some(k) => crate::ir::quant::hard_swish_f32(s as f32 * f, k, lo, hi),
                None => crate::ir::quant::requant_f32(s, f, lo, hi),
            };
        }
        let v = self.mult[r]
            .apply(acc.saturating_add(self.bias[r]))
            .saturating_add(self.zp_out);
        v.clamp(self.lo, self.hi)
    }

    /// [`Requant::apply`] over a run of row `r` (the same integers; clamping before adding the zero point
    /// is equivalent and keeps the loop free of data-dependent branches, so it vectorizes).
    #[inline]
    pub fn row(&self, r: usize, acc: &[i32], out: &mut [i8]) {
        let (b, m, z) = (self.bias[r], self.mult[r], self.zp_out);
        let (lo, hi) = (self.lo - z, self.hi - z);
        for (o, &a) in out.iter_mut().zip(acc) {
            *o = (m.apply(a.saturating_add(b)).clamp(lo, hi) + z) as i8;
        }
    }

    /// The same parameters from row `r0` on (a tile's view).
    #[inline]
    pub fn from_row(&self, r0: usize) -> Requant<'a> {
        Requant {
            bias: &self.bias[r0..],
            mult: &self.mult[r0..],
            fscale: self.fscale.get(r0..).unwrap_or(&[]),
            ..*self
        }
    }
}

/// Column block: B panels covering this many columns are reused across every A panel while they sit in
/// cache (≈ K·NC bytes; 256 columns of K = 1152 is 288 KiB, inside a core's L2).
const NC: usize = 256;

/// `C = requant(A·B)` for packed A (`m×k`) and packed B (`k×n`); `c` row-major with row stride `ldc`.
/// Single-threaded; the conv/matmul ops split the work.
#[allow(clippy::too_many_arguments)]
pub fn qgemm(
    g: &QGemm,
    (m, n, k): (usize, usize, usize),
    a: &[i8],
    b: &[i8],
    c: &mut [i8],
    ldc: usize,
    rq: &Requant,
) {
    assert!(m == 0 || n == 0 || c.len() >= (m - 1) * ldc + n);
    // SAFETY: the output extent is asserted above.
    unsafe { qgemm_ptr(g, (m, n, k), a, b, c.as_mut_ptr(), ldc, rq) }
}

/// [`qgemm`] into a raw output (threads writing disjoint columns of the same rows).
///
/// # Safety
/// `c` must be valid for rows `0..m` of `n` bytes with stride `ldc`, and no other thread may touch them.
#[allow(clippy::too_many_arguments)]
pub unsafe fn qgemm_ptr(
    g: &QGemm,
    (m, n, k): (usize, usize, usize),
    a: &[i8],
    b: &[i8],
    c: *mut i8,
    ldc: usize,
    rq: &Requant,
) {
    assert!(k <= QMAX_K, "int8 GEMM depth {k} exceeds {QMAX_K}");
    let (kb, mr, nr) = (k_blocks(k), g.mr, g.nr);
    assert!(a.len() >= g.a_len(m, k) && b.len() >= g.b_len(k, n));
    assert!(rq.bias.len() >= m && rq.mult.len() >= m);
    let nc = NC.div_ceil(nr) * nr;
    for j0 in (0..n).step_by(nc) {
        for pi in 0..m.div_ceil(mr) {
            let ap = &a[pi * kb * mr * 4 * g.a_elem()..];
            let rows = (m - pi * mr).min(mr);
            let trq = rq.from_row(pi * mr);
            for pj in j0 / nr..(n.min(j0 + nc)).div_ceil(nr) {
                let cols = (n - pj * nr).min(nr);
                // SAFETY: panel bounds asserted above; the output extent is the caller's contract.
                unsafe {
                    (g.kernel)(
                        kb,
                        ap.as_ptr(),
                        b[pj * kb * nr * 4..].as_ptr(),
                        c.add(pi * mr * ldc + pj * nr),
                        ldc,
                        rows,
                        cols,
                        &trq,
                    )
                };
            }
        }
    }
}

/// [`Requant::row`] on the path's vector epilogue (the same integers).
pub fn requant_row(isa: Isa, rq: &Requant, r: usize, acc: &[i32], out: &mut [i8]) {
    match isa {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        // SAFETY: the session only selects an AVX2 path on a CPU that has it.
        Isa::Avx2 | Isa::AvxVnni => unsafe {
            super::kernels::x86::requant_row_avx2(rq, r, acc, out)
        },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON is part of aarch64.
        Isa::Neon | Isa::Dotprod => unsafe {
            super::kernels::neon::requant_row_neon(rq, r, acc, out)
        },
        _ => rq.row(r, acc, out),
    }
}

/// `y[j] = rq(j, Σ_p w[j][p]·x[p])` for one activation row (matrix-vector: no packing, one pass over the
/// weights, `w` row-major `n×k`; the bias folded for no activation offset), compiled for AVX2 where the
/// path has it.
pub fn qgemv(isa: Isa, w: &[i8], x: &[i8], y: &mut [i8], rq: &Requant) {
    if x.is_empty() {
        // an empty reduction: the biases requantized (chunks of k = 0 would panic)
        for (j, o) in y.iter_mut().enumerate() {
            *o = rq.apply(j, 0);
        }
        return;
    }
    #[inline(always)]
    fn body(w: &[i8], x: &[i8], y: &mut [i8], rq: &Requant) {
        let k = x.len();
        for (j, (row, o)) in w.chunks_exact(k).zip(y.iter_mut()).enumerate() {
            // i8·i8 products summed in i32 are exact for k ≤ QMAX_K; the loop vectorizes (pmaddwd)
            let dot: i32 = row.iter().zip(x).map(|(&a, &b)| a as i32 * b as i32).sum();
            *o = rq.apply(j, dot);
        }
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if matches!(isa, Isa::Avx2 | Isa::AvxVnni) {
        #[target_feature(enable = "avx2")]
        fn avx2(w: &[i8], x: &[i8], y: &mut [i8], rq: &Requant) {
            // the dot products of a chunk of outputs, then their requantization 8 lanes at a time
            let k = x.len();
            let mut acc = [0i32; 64];
            for (c, (rows, out)) in w.chunks(64 * k).zip(y.chunks_mut(64)).enumerate() {
                for (a, row) in acc.iter_mut().zip(rows.chunks_exact(k)) {
                    *a = row.iter().zip(x).map(|(&p, &q)| p as i32 * q as i32).sum();
                }
                let n = out.len();
                // SAFETY: AVX2 is enabled for this function.
                unsafe { super::kernels::x86::requant_rows_avx2(rq, 64 * c, &acc[..n], out) };
            }
        }
        // SAFETY: the session only selects an AVX2 path on a CPU that has it.
        return unsafe { avx2(w, x, y, rq) };
    }
    let _ = isa;
    body(w, x, y, rq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::caps;

    fn bytes(n: usize, seed: &mut u64, lo: i8) -> Vec<i8> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = (*seed >> 56) as u8 as i8;
                v.max(lo)
            })
            .collect()
    }

    /// Every available kernel equals the scalar oracle bit for bit, and the oracle equals exact i64 math,
    /// over shapes with row, column and depth tails, including the extreme values −128·−128.
    #[test]
    fn every_int8_kernel_is_bit_exact() {
        let mut seed = 11u64;
        let paths = caps::available();
        let mut checked: Vec<&str> = Vec::new();
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 7, 5),
            (4, 8, 4),
            (5, 9, 13),
            (8, 16, 64),
            (13, 21, 300),
            (4, 8, 4099),
            (6, 16, 8),
            (7, 17, 9),
            (12, 33, 40),
            (9, 300, 27),
        ] {
            // random; all −128; ±127 against −128 (the largest products the i16 pair sums may meet)
            for extreme in 0..3 {
                let w: Vec<i8> = match extreme {
                    0 => bytes(m * k, &mut seed, -127),
                    1 => vec![-128; m * k],
                    _ => (0..m * k)
                        .map(|i| if (i / k) % 2 == 0 { -127 } else { 127 })
                        .collect(),
                };
                let x: Vec<i8> = if extreme > 0 {
                    vec![-128; k * n]
                } else {
                    bytes(k * n, &mut seed, -128)
                };
                let bias: Vec<i32> = (0..m as i32).map(|i| i * 1000 - 3000).collect();
                // row 2 has a multiplier ≥ 1 and row 3 a tiny one: the vector epilogues' fallbacks
                let mult: Vec<FixedMultiplier> = (0..m)
                    .map(|i| {
                        let real = match i {
                            2 => 1.5,
                            3 => 3e-12,
                            _ => 0.0007 + i as f64 * 0.0003,
                        };
                        FixedMultiplier::from_real(real).unwrap()
                    })
                    .collect();
                let rq = Requant {
                    bias: &bias,
                    mult: &mult,
                    zp_out: -5,
                    lo: -128,
                    hi: 127,
                    fscale: &[],
                    hswish: None,
                };
                let mut want = vec![0i8; m * n];
                for i in 0..m {
                    for j in 0..n {
                        let dot: i64 = (0..k)
                            .map(|p| w[i * k + p] as i64 * x[p * n + j] as i64)
                            .sum();
                        assert!(dot.abs() < i32::MAX as i64);
                        want[i * n + j] = rq.apply(i, dot as i32);
                    }
                }
                // every path's kernel, plus the VNNI kernel with the AVX2 epilogue where the AVX-512
                // one replaced it (the kernel of VNNI CPUs without AVX-512)
                #[cfg_attr(not(all(feature = "std", target_arch = "x86_64")), allow(unused_mut))]
                let mut kernels: Vec<QGemm> = paths.iter().map(|&isa| qgemm_for(isa)).collect();
                // the variants chosen by the weights (NEON's i16 pair sums where no weight is −128)
                for isa in paths.iter() {
                    let g = qgemm_for(*isa).for_weights(&w);
                    if !kernels.iter().any(|k| k.name == g.name) {
                        kernels.push(g);
                    }
                }
                #[cfg(all(feature = "std", target_arch = "x86_64"))]
                if paths.contains(&Isa::AvxVnni) && std::is_x86_feature_detected!("avxvnni") {
                    kernels.push(QGemm {
                        nr: 16,
                        kernel: super::super::kernels::x86::qgemm_6x16_vnni,
                        name: "avxvnni_qgemm_u8i8_6x16_dpbusd (AVX2 epilogue)",
                        ..qgemm_for(Isa::AvxVnni)
                    });
                    // and with the AVX-512 epilogue (AVX-VNNI CPUs with AVX-512 F/BW but not VNNI)
                    if super::super::kernels::x86::has_avx512() {
                        kernels.push(QGemm {
                            nr: 16,
                            kernel: super::super::kernels::x86::qgemm_6x16_vnni512,
                            name: "avxvnni_qgemm_u8i8_6x16_dpbusd (AVX-512 epilogue)",
                            ..qgemm_for(Isa::AvxVnni)
                        });
                    }
                }
                // the 256-bit EVEX form (the kernel of AVX512-VNNI CPUs without AVX-VNNI, before the
                // 512-bit one), where this CPU has it
                #[cfg(all(feature = "std", target_arch = "x86_64"))]
                if super::super::kernels::x86::has_avx512vnni() {
                    kernels.push(QGemm {
                        nr: 16,
                        kernel: super::super::kernels::x86::qgemm_6x16_avx512vnni,
                        name: "avx512vnni_qgemm_u8i8_6x16_dpbusd_evex",
                        ..qgemm_for(Isa::AvxVnni)
                    });
                }
                for g in kernels {
                    if !checked.contains(&g.name) {
                        checked.push(g.name);
                    }
                    let (ap, bp) = (
                        g.pack_a(m, k, |i, p| w[i * k + p]),
                        g.pack_b(k, n, |p, j| x[p * n + j]),
                    );
                    let folded = g.fold_bias(&bias, &w, k, 0);
                    let krq = Requant {
                        bias: &folded,
                        ..rq
                    };
                    // a wider output row (ldc > n) must keep the bytes between rows
                    let ldc = n + 3;
                    let mut got = vec![77i8; m * ldc];
                    qgemm(&g, (m, n, k), &ap, &bp, &mut got, ldc, &krq);
                    for i in 0..m {
                        assert_eq!(
                            &got[i * ldc..i * ldc + n],
                            &want[i * n..(i + 1) * n],
                            "{} m{m} n{n} k{k} extreme {extreme} row {i}",
                            g.name
                        );
                        assert!(got[i * ldc + n..(i + 1) * ldc].iter().all(|&v| v == 77));
                    }
                }
                if m >= 1 {
                    let mut gv = vec![0i8; m];
                    let col: Vec<i8> = (0..k).map(|p| x[p * n]).collect();
                    qgemv(crate::cpu::caps::best(), &w, &col, &mut gv, &rq);
                    let want_col: Vec<i8> = (0..m).map(|i| want[i * n]).collect();
                    assert_eq!(gv, want_col, "gemv m{m} k{k}");
                }
            }
        }
        std::println!("int8 kernels checked: {checked:?}");
    }

    /// The matrix-vector path's per-row vector requantization equals the scalar rule, including biases
    /// that saturate the accumulator and every shift the vector form takes.
    #[test]
    fn gemv_requant_equals_scalar_rule() {
        let mut seed = 23u64;
        let (m, k) = (67usize, 29usize);
        let w = bytes(m * k, &mut seed, -127);
        let x = bytes(k, &mut seed, -128);
        let bias: Vec<i32> = (0..m)
            .map(|i| match i % 9 {
                0 => i32::MAX - 5,
                1 => i32::MIN + 5,
                _ => (i as i32 - 30) * 777,
            })
            .collect();
        let mult: Vec<FixedMultiplier> = (0..m)
            .map(|i| FixedMultiplier::from_real(0.9 / (1u64 << (i % 32)) as f64 + 1e-12).unwrap())
            .collect();
        let rq = Requant {
            bias: &bias,
            mult: &mult,
            zp_out: 7,
            lo: -120,
            hi: 125,
            fscale: &[],
            hswish: None,
        };
        let want: Vec<i8> = (0..m)
            .map(|j| {
                let dot: i32 = (0..k).map(|p| w[j * k + p] as i32 * x[p] as i32).sum();
                rq.apply(j, dot)
            })
            .collect();
        for isa in caps::available() {
            let mut got = vec![0i8; m];
            qgemv(isa, &w, &x, &mut got, &rq);
            assert_eq!(got, want, "{isa:?}");
        }
    }

    /// The row requantization of every path (the epilogue the GEMM tiles, depthwise and Mul share) equals
    /// the scalar rule on accumulators at the i32 extremes with biases that saturate the sum, for every
    /// shift and with tails.
    #[test]
    fn ties_round_half_away_from_zero_on_every_path() {
        // multipliers 2^-1 .. 2^-8 (shifts 0..7 after the Q31 normalization) on small odd sums: every
        // other product lands exactly on a half, where the rule rounds away from zero
        for e in 1..=8u32 {
            let m = FixedMultiplier::from_real(1.0 / (1u64 << e) as f64).unwrap();
            let acc: Vec<i32> = (-300..300).collect();
            let mult = [m];
            let rq = Requant {
                bias: &[0],
                mult: &mult,
                zp_out: 0,
                lo: -128,
                hi: 127,
                fscale: &[],
                hswish: None,
            };
            let want: Vec<i8> = acc
                .iter()
                .map(|&a| {
                    let q = a as f64 / (1u64 << e) as f64;
                    (q.abs() + 0.5).floor().copysign(q).clamp(-128.0, 127.0) as i8
                })
                .collect();
            for isa in caps::available() {
                let mut got = vec![0i8; acc.len()];
                requant_row(isa, &rq, 0, &acc, &mut got);
                assert_eq!(got, want, "{isa:?} 2^-{e}");
            }
        }
    }

    #[test]
    fn row_requant_equals_scalar_rule_at_the_extremes() {
        let mut seed = 31u64;
        let n = 45;
        let bias = [
            0,
            1,
            -1,
            i32::MAX,
            i32::MIN,
            i32::MAX - 3,
            i32::MIN + 3,
            123456,
            -98765,
        ];
        // the last row's multiplier is zero (a negative sum's rounding correction must still give 0)
        let mult: Vec<FixedMultiplier> = (0..41)
            .map(|i| {
                let real = if i == 40 {
                    0.0
                } else {
                    0.97 / (1u64 << (i % 36)) as f64 + 1e-13
                };
                FixedMultiplier::from_real(real).unwrap()
            })
            .collect();
        let mut acc: Vec<i32> = (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 32) as i32
            })
            .collect();
        acc[..6].copy_from_slice(&[i32::MAX, i32::MIN, i32::MAX - 1, i32::MIN + 1, 0, -1]);
        // output zero points and clamps at the int8 ends (lo − zp and hi − zp reach ±255)
        let outs = [
            (-3, -128, 100),
            (127, -128, 127),
            (-128, -128, 127),
            (127, 0, 6),
            (-128, -1, 0),
        ];
        let mut rows = 0;
        for &b in &bias {
            for &(zp_out, lo, hi) in &outs {
                for (r, _) in mult.iter().enumerate() {
                    let biases = vec![b; mult.len()];
                    let rq = Requant {
                        bias: &biases,
                        mult: &mult,
                        zp_out,
                        lo,
                        hi,
                        fscale: &[],
                        hswish: None,
                    };
                    let want: Vec<i8> = acc.iter().map(|&a| rq.apply(r, a)).collect();
                    for isa in caps::available() {
                        let mut got = vec![0i8; n];
                        requant_row(isa, &rq, r, &acc, &mut got);
                        assert_eq!(got, want, "{isa:?} bias {b} zp {zp_out} row {r}");
                    }
                    rows += 1;
                }
            }
        }
        assert_eq!(rows, bias.len() * outs.len() * mult.len());
    }

    #[test]
    fn zero_point_folding_matches_shifted_inputs() {
        // Σ w·(x − zp) == Σ w·x − zp·Σ w, exactly
        let (k, zp) = (37, -17);
        let mut seed = 5;
        let w = bytes(2 * k, &mut seed, -127);
        let x = bytes(k, &mut seed, -128);
        let b = qgemm_for(Isa::Scalar).fold_bias(&[10, -20], &w, k, zp);
        for r in 0..2 {
            let shifted: i32 = (0..k)
                .map(|p| w[r * k + p] as i32 * (x[p] as i32 - zp))
                .sum::<i32>()
                + [10, -20][r];
            let folded: i32 = (0..k)
                .map(|p| w[r * k + p] as i32 * x[p] as i32)
                .sum::<i32>()
                + b[r];
            assert_eq!(shifted, folded);
        }
    }
}
