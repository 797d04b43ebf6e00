//! int8 GEMM: `C_i8 = requant(A_i8 · B_i8 + bias_i32)` with tern's integer scheme (`ir::quant`).
//!
//! One packing for every instruction-set path, so the same packed bytes feed the scalar oracle and every
//! SIMD kernel: A (weights, M×K) in panels of [`QMR`] rows and B (activations, K×N) in panels of [`QNR`]
//! columns, both in k-blocks of 4 (`panel[kb][row][0..4]`, k zero-padded to a multiple of 4). A micro-kernel
//! produces the exact i32 tile `Σ_k a·b`; the epilogue adds the bias, requantizes with the per-row
//! fixed-point multiplier (round half away from zero), adds the output zero point and clamps — the same
//! integer arithmetic on every path, so results are bit-identical.
use super::caps::Isa;
use crate::ir::quant::FixedMultiplier;
use alloc::vec;
use alloc::vec::Vec;

/// Tile rows (A panel height).
pub const QMR: usize = 4;
/// Tile columns (B panel width).
pub const QNR: usize = 8;
/// Largest K: 127·128·K must fit in i32.
pub const QMAX_K: usize = 1 << 16;

/// An int8 micro-kernel: `acc[r][c] = Σ_{k} a[k][r]·b[k][c]` over `kb` k-blocks of 4.
///
/// # Safety
/// `a` must hold `kb·QMR·4` bytes and `b` `kb·QNR·4` bytes, packed as described in the module docs.
pub type QKernel = unsafe fn(kb: usize, a: *const i8, b: *const i8, acc: &mut [[i32; QNR]; QMR]);

/// A micro-kernel and its name (isa_op_tile).
#[derive(Clone, Copy)]
pub struct QGemm {
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
            kernel: super::kernels::x86::qgemm_4x8_avx2,
            name: "avx2_qgemm_i8_4x8_madd",
        },
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => QGemm {
            kernel: super::kernels::neon::qgemm_4x8_smlal,
            name: "neon_qgemm_i8_4x8_smlal",
        },
        #[cfg(target_arch = "aarch64")]
        Isa::Dotprod => QGemm {
            kernel: super::kernels::neon::qgemm_4x8_sdot,
            name: "neon_qgemm_i8_4x8_sdot",
        },
        _ => QGemm {
            kernel: qgemm_4x8_scalar,
            name: "scalar_qgemm_i8_4x8",
        },
    }
}

/// The scalar oracle.
///
/// # Safety
/// As [`QKernel`].
pub unsafe fn qgemm_4x8_scalar(kb: usize, a: *const i8, b: *const i8, acc: &mut [[i32; QNR]; QMR]) {
    *acc = [[0; QNR]; QMR];
    for blk in 0..kb {
        for (r, row) in acc.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                for q in 0..4 {
                    // SAFETY: in bounds of the packed panels per the contract.
                    let (x, y) = unsafe {
                        (
                            *a.add((blk * QMR + r) * 4 + q),
                            *b.add((blk * QNR + c) * 4 + q),
                        )
                    };
                    *v += x as i32 * y as i32;
                }
            }
        }
    }
}

/// k-blocks for depth `k`.
pub fn k_blocks(k: usize) -> usize {
    k.div_ceil(4)
}

/// Packs `m×k` values `get(i, p)` into A panels.
pub fn pack_a(m: usize, k: usize, get: impl Fn(usize, usize) -> i8) -> Vec<i8> {
    let kb = k_blocks(k);
    let mut out = vec![0i8; m.div_ceil(QMR) * kb * QMR * 4];
    for i in 0..m {
        let (pi, r) = (i / QMR, i % QMR);
        for p in 0..k {
            out[((pi * kb + p / 4) * QMR + r) * 4 + p % 4] = get(i, p);
        }
    }
    out
}

/// Packs `k×n` values `get(p, j)` into B panels.
pub fn pack_b(k: usize, n: usize, get: impl Fn(usize, usize) -> i8) -> Vec<i8> {
    let mut out = vec![0i8; n.div_ceil(QNR) * k_blocks(k) * QNR * 4];
    pack_b_into(&mut out, k, n, get);
    out
}

/// [`pack_b`] into a caller buffer (at run time, without allocating); returns the packed part.
pub fn pack_b_into(
    out: &mut [i8],
    k: usize,
    n: usize,
    get: impl Fn(usize, usize) -> i8,
) -> &mut [i8] {
    let kb = k_blocks(k);
    let out = &mut out[..n.div_ceil(QNR) * kb * QNR * 4];
    out.fill(0);
    for j in 0..n {
        let (pj, c) = (j / QNR, j % QNR);
        for p in 0..k {
            out[((pj * kb + p / 4) * QNR + c) * 4 + p % 4] = get(p, j);
        }
    }
    out
}

/// What turns the i32 tile into int8 outputs.
#[derive(Clone, Copy)]
pub struct Requant<'a> {
    /// Per output row: the bias in accumulator units, with `−zp_in·Σ_k w` already folded in.
    pub bias: &'a [i32],
    /// Per output row: the real multiplier s_in·s_w / s_out.
    pub mult: &'a [FixedMultiplier],
    /// Output zero point.
    pub zp_out: i32,
    /// Clamp (the fused activation and the int8 range), inclusive.
    pub lo: i32,
    /// Upper clamp.
    pub hi: i32,
}

impl Requant<'_> {
    /// The epilogue for one accumulator value of row `r` (the scalar definition every path follows).
    #[inline]
    pub fn apply(&self, r: usize, acc: i32) -> i8 {
        let v = self.mult[r]
            .apply(acc.saturating_add(self.bias[r]))
            .saturating_add(self.zp_out);
        v.clamp(self.lo, self.hi) as i8
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
}

/// Folds the input zero point into per-row biases: `bias_r − zp_in·Σ_k w[r][k]`.
pub fn fold_zero_point(bias: &[i32], w: &[i8], k: usize, zp_in: i32) -> Vec<i32> {
    bias.iter()
        .enumerate()
        .map(|(r, &b)| b - zp_in * w[r * k..(r + 1) * k].iter().map(|&x| x as i32).sum::<i32>())
        .collect()
}

/// `C = requant(A·B)` for packed A (`m×k`) and packed B (`k×n`); `c` row-major with row stride `ldc`.
/// Single-threaded; the conv/matmul ops split work over column ranges of B.
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
    assert!(k <= QMAX_K, "int8 GEMM depth {k} exceeds {QMAX_K}");
    let kb = k_blocks(k);
    assert!(a.len() >= m.div_ceil(QMR) * kb * QMR * 4 && b.len() >= n.div_ceil(QNR) * kb * QNR * 4);
    assert!(m == 0 || n == 0 || c.len() >= (m - 1) * ldc + n);
    let mut acc = [[0i32; QNR]; QMR];
    for pi in 0..m.div_ceil(QMR) {
        let ap = &a[pi * kb * QMR * 4..];
        for pj in 0..n.div_ceil(QNR) {
            // SAFETY: panel bounds asserted above.
            unsafe { (g.kernel)(kb, ap.as_ptr(), b[pj * kb * QNR * 4..].as_ptr(), &mut acc) };
            let cols = (n - pj * QNR).min(QNR);
            for (r, row) in acc.iter().enumerate().take(m - pi * QMR) {
                let i = pi * QMR + r;
                rq.row(i, &row[..cols], &mut c[i * ldc + pj * QNR..][..cols]);
            }
        }
    }
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
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 7, 5),
            (4, 8, 4),
            (5, 9, 13),
            (8, 16, 64),
            (13, 21, 300),
            (4, 8, 4099),
        ] {
            for extreme in [false, true] {
                let w: Vec<i8> = if extreme {
                    vec![-128; m * k]
                } else {
                    bytes(m * k, &mut seed, -127)
                };
                let x: Vec<i8> = if extreme {
                    vec![-128; k * n]
                } else {
                    bytes(k * n, &mut seed, -128)
                };
                let (ap, bp) = (
                    pack_a(m, k, |i, p| w[i * k + p]),
                    pack_b(k, n, |p, j| x[p * n + j]),
                );
                let bias: Vec<i32> = (0..m as i32).map(|i| i * 1000 - 3000).collect();
                let mult: Vec<FixedMultiplier> = (0..m)
                    .map(|i| FixedMultiplier::from_real(0.0007 + i as f64 * 0.0003).unwrap())
                    .collect();
                let rq = Requant {
                    bias: &bias,
                    mult: &mult,
                    zp_out: -5,
                    lo: -128,
                    hi: 127,
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
                for &isa in &paths {
                    let g = qgemm_for(isa);
                    let mut got = vec![0i8; m * n];
                    qgemm(&g, (m, n, k), &ap, &bp, &mut got, n, &rq);
                    assert_eq!(got, want, "{} m{m} n{n} k{k} extreme {extreme}", g.name);
                }
            }
        }
        std::println!(
            "int8 kernels checked: {:?}",
            paths.iter().map(|&i| qgemm_for(i).name).collect::<Vec<_>>()
        );
    }

    #[test]
    fn zero_point_folding_matches_shifted_inputs() {
        // Σ w·(x − zp) == Σ w·x − zp·Σ w, exactly
        let (k, zp) = (37, -17);
        let mut seed = 5;
        let w = bytes(2 * k, &mut seed, -127);
        let x = bytes(k, &mut seed, -128);
        let b = fold_zero_point(&[10, -20], &w, k, zp);
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
