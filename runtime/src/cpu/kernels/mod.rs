//! f32 GEMM micro-kernels. Each computes one MR×NR tile `C (+)= A_panel · B_panel` from packed panels:
//! an A panel holds, for each k, MR consecutive rows' values; a B panel holds, for each k, NR consecutive
//! columns' values. The scalar kernel is the reference; SIMD kernels must agree with it (tests below).
/// `$tile::<R>($args)` with R = `$m`, for R in the listed rows; more rows take the last: a tile kernel is
/// monomorphized on its row count (accumulators in registers), and the row count of an edge tile is only
/// known at run time.
macro_rules! tile_rows {
    ($m:expr, $tile:ident, [$($r:literal),+ ; $last:literal], $args:tt) => {
        match $m {
            $($r => $tile::<$r> $args,)+
            _ => $tile::<$last> $args,
        }
    };
    // a tile also generic over how it reads B (inferred from the arguments)
    ($m:expr, $tile:ident::<_>, [$($r:literal),+ ; $last:literal], $args:tt) => {
        match $m {
            $($r => $tile::<$r, _> $args,)+
            _ => $tile::<$last, _> $args,
        }
    };
}

/// The two entry points of an f32 tile generic over how it reads B (`$tile::<R, B: BRows>`): `$packed`
/// ([`MicroKernel`], B a packed panel of `$nr` columns) and `$rows` ([`RowsKernel`], B's rows in place),
/// both the same tile code, so the same bits. `$doc` names the CPU features the caller must have checked.
macro_rules! f32_kernels {
    ($packed:ident, $rows:ident, $tile:ident, $nr:expr, [$($r:literal),+ ; $last:literal], $doc:literal) => {
        #[doc = concat!("See [`super::MicroKernel`]. ", $doc)]
        ///
        /// # Safety
        #[doc = concat!("As [`super::MicroKernel`]. ", $doc)]
        #[allow(clippy::too_many_arguments)] // the MicroKernel contract
        pub unsafe fn $packed(
            k: usize,
            a: *const f32,
            b: *const f32,
            c: *mut f32,
            ldc: usize,
            m: usize,
            n: usize,
            acc: bool,
        ) {
            let b = super::Panel::<{ $nr }>(b);
            // SAFETY: forwarded contract; R = m rows are valid.
            unsafe { tile_rows!(m, $tile::<_>, [$($r),+ ; $last], (k, a, b, c, ldc, n, acc)) }
        }

        #[doc = concat!("The same tile reading B in place. ", $doc)]
        ///
        /// # Safety
        #[doc = concat!("As [`super::RowsKernel`]. ", $doc)]
        #[allow(clippy::too_many_arguments)] // the RowsKernel contract
        pub unsafe fn $rows(
            k: usize,
            a: *const f32,
            b: *const f32,
            offs: *const usize,
            c: *mut f32,
            ldc: usize,
            m: usize,
            n: usize,
            acc: bool,
        ) {
            let b = super::Offsets(b, offs);
            // SAFETY: forwarded contract; R = m rows are valid.
            unsafe { tile_rows!(m, $tile::<_>, [$($r),+ ; $last], (k, a, b, c, ldc, n, acc)) }
        }
    };
}

#[cfg(target_arch = "aarch64")]
pub mod neon;
pub mod scalar;
#[cfg(all(feature = "std", target_arch = "x86_64"))]
pub mod x86;

use super::caps::Isa;

/// Micro-kernel: `c[r*ldc + j] (+)= Σ_p a[p*MR + r] · b[p*NR + j]` for r < m, j < n (m ≤ MR, n ≤ NR).
/// When `acc` is false the tile is overwritten.
///
/// # Safety
/// `a` must hold `k*MR` floats, `b` `k*NR` floats, and `c` must be valid for rows `0..m` of `n` floats
/// with row stride `ldc`.
pub type MicroKernel = unsafe fn(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    m: usize,
    n: usize,
    acc: bool,
);

/// [`MicroKernel`] with B read in place: row `p` of B (NR floats) is at `b + offs[p]` (the im2col of a
/// convolution's stride-phase planes, see [`crate::cpu::gemm::Shifted`], without packing). The same
/// tile code and accumulation order as the packed kernel, so the same bits.
///
/// # Safety
/// `a` must hold `k*MR` floats, `offs` `k` offsets with NR floats readable at `b + offs[p]`, and `c`
/// as for [`MicroKernel`].
pub type RowsKernel = unsafe fn(
    k: usize,
    a: *const f32,
    b: *const f32,
    offs: *const usize,
    c: *mut f32,
    ldc: usize,
    m: usize,
    n: usize,
    acc: bool,
);

/// How a micro-kernel tile finds row `p` of its B operand.
pub(crate) trait BRows: Copy {
    /// Whether the rows are a packed panel (row `p` at `row(0) + p·NR`): a kernel may then stream them.
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    const PANEL: bool = false;

    /// Row `p`'s first float.
    ///
    /// # Safety
    /// `p` is below the operand's depth.
    unsafe fn row(self, p: usize) -> *const f32;
}

/// A packed B panel: rows `NR` floats apart.
#[derive(Clone, Copy)]
pub(crate) struct Panel<const NR: usize>(pub *const f32);

impl<const NR: usize> BRows for Panel<NR> {
    const PANEL: bool = true;

    #[inline(always)]
    unsafe fn row(self, p: usize) -> *const f32 {
        // SAFETY: the panel holds k*NR floats and p < k (caller contract).
        unsafe { self.0.add(p * NR) }
    }
}

/// B rows in place: row `p` at `base + offs[p]`.
#[derive(Clone, Copy)]
pub(crate) struct Offsets(pub *const f32, pub *const usize);

impl BRows for Offsets {
    #[inline(always)]
    unsafe fn row(self, p: usize) -> *const f32 {
        // SAFETY: offs holds k offsets and p < k (caller contract).
        unsafe { self.0.add(*self.1.add(p)) }
    }
}

/// A micro-kernel and its tile shape.
#[derive(Clone, Copy)]
pub struct Gemm {
    /// The instruction-set path (for companion kernels such as the matrix-vector product).
    pub isa: Isa,
    /// Rows of the tile (A panel width).
    pub mr: usize,
    /// Columns of the tile (B panel width).
    pub nr: usize,
    /// The kernel.
    pub kernel: MicroKernel,
    /// The same kernel reading B in place.
    pub kernel_rows: RowsKernel,
    /// Name: isa_op_tile.
    pub name: &'static str,
}

/// The kernel table for an instruction-set path.
pub fn gemm_for(isa: Isa) -> Gemm {
    match isa {
        // the AVX-VNNI path of an AVX-512 CPU takes the 512-bit tile (like the int8 epilogues;
        // `TERN_CPU=avx2` keeps the 256-bit one testable there)
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        Isa::AvxVnni if x86::has_avx512() => Gemm {
            isa,
            mr: x86::MR512,
            nr: x86::NR512,
            kernel: x86::sgemm_8x32_512,
            kernel_rows: x86::sgemm_8x32_512_rows,
            name: "avx512_sgemm_8x32",
        },
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        Isa::Avx2 | Isa::AvxVnni => Gemm {
            isa,
            mr: x86::MR,
            nr: x86::NR,
            kernel: x86::sgemm_6x16,
            kernel_rows: x86::sgemm_6x16_rows,
            name: "avx2_sgemm_6x16",
        },
        #[cfg(target_arch = "aarch64")]
        // the f32 kernel needs no dotprod: a Pi 5 runs the same NEON kernel as a Pi 4
        Isa::Neon | Isa::Dotprod => Gemm {
            isa,
            mr: neon::MR,
            nr: neon::NR,
            kernel: neon::sgemm_8x8,
            kernel_rows: neon::sgemm_8x8_rows,
            name: "neon_sgemm_8x8",
        },
        _ => Gemm {
            isa: Isa::Scalar,
            mr: scalar::MR,
            nr: scalar::NR,
            kernel: scalar::sgemm_4x8,
            kernel_rows: scalar::sgemm_4x8_rows,
            name: "scalar_sgemm_4x8",
        },
    }
}

/// The output blocks of an f32 depthwise row kernel (`x86::dw_row_f32`, `neon::dw_row_f32`): `block(x0,
/// width)` for 64, then 32, then 16 columns at a time up to `len` rounded up to 16 (the reads their
/// callers allow).
#[cfg(any(all(feature = "std", target_arch = "x86_64"), target_arch = "aarch64"))]
#[inline(always)]
pub(crate) fn dw_row_blocks(len: usize, mut block: impl FnMut(usize, usize)) {
    let end = len.next_multiple_of(16);
    let mut x0 = 0;
    for width in [64, 32, 16] {
        while x0 + width <= end {
            block(x0, width);
            x0 += width;
        }
    }
}

/// An int8 depthwise row's tap pairs for the vector row kernels (`x86::dw_row_avx2`, `neon::dw_row_neon`):
/// per pair, both i16 weights as `w_a | w_b << 16` (packed once per layer), and the pair's `(off_a, off_b)`
/// offsets into the padded i16 plane (built once per call, the same for every plane).
pub type DwPairs<'a> = (&'a [i32], &'a [(usize, usize)]);

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn rnd(n: usize, seed: &mut u32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                ((*seed >> 8) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Every available kernel against a float64 reference, and bit for bit against the fused accumulation
    /// chain, over tiles with tails and several depths.
    fn check(g: Gemm) {
        let mut seed = 7;
        for k in [1usize, 2, 3, 7, 16, 33, 130] {
            for m in 1..=g.mr {
                for n in 1..=g.nr {
                    let a = rnd(k * g.mr, &mut seed);
                    let b = rnd(k * g.nr, &mut seed);
                    for acc in [false, true] {
                        let ldc = g.nr + 3;
                        let init = rnd(g.mr * ldc, &mut seed);
                        let mut c = init.clone();
                        unsafe {
                            (g.kernel)(k, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, m, n, acc)
                        };
                        // the in-place form over the same rows scattered (reversed, with gaps) gives
                        // the same bits and writes the same cells
                        let offs: Vec<usize> = (0..k).map(|p| (k - 1 - p) * (g.nr + 5)).collect();
                        let mut scattered = vec![f32::NAN; k * (g.nr + 5)];
                        for p in 0..k {
                            scattered[offs[p]..offs[p] + g.nr]
                                .copy_from_slice(&b[p * g.nr..(p + 1) * g.nr]);
                        }
                        let mut c2 = init.clone();
                        unsafe {
                            (g.kernel_rows)(
                                k,
                                a.as_ptr(),
                                scattered.as_ptr(),
                                offs.as_ptr(),
                                c2.as_mut_ptr(),
                                ldc,
                                m,
                                n,
                                acc,
                            )
                        };
                        assert!(
                            c.iter().zip(&c2).all(|(x, y)| x.to_bits() == y.to_bits()),
                            "{} rows form k{k} m{m} n{n}",
                            g.name
                        );
                        for r in 0..g.mr {
                            for j in 0..ldc {
                                let got = c[r * ldc + j];
                                if r < m && j < n {
                                    let mut s: f64 =
                                        if acc { init[r * ldc + j] as f64 } else { 0.0 };
                                    for p in 0..k {
                                        s += a[p * g.mr + r] as f64 * b[p * g.nr + j] as f64;
                                    }
                                    let tol = 1e-5 * (k as f64).sqrt() * (1.0 + s.abs());
                                    assert!(
                                        (got as f64 - s).abs() <= tol,
                                        "{} k{k} m{m} n{n}: {got} vs {s}",
                                        g.name
                                    );
                                    // and the exact bits of the one accumulation rule every path
                                    // follows: fused multiply-adds in k order, then + C
                                    let mut e = 0f32;
                                    for p in 0..k {
                                        e = crate::ir::fmadd(a[p * g.mr + r], b[p * g.nr + j], e);
                                    }
                                    if acc {
                                        e += init[r * ldc + j];
                                    }
                                    assert_eq!(
                                        got.to_bits(),
                                        e.to_bits(),
                                        "{} k{k} m{m} n{n}: {got} vs the fused chain {e}",
                                        g.name
                                    );
                                } else {
                                    assert_eq!(
                                        got,
                                        init[r * ldc + j],
                                        "{} wrote outside the tile",
                                        g.name
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn scalar_kernel_matches_f64() {
        check(gemm_for(Isa::Scalar));
    }

    #[test]
    fn best_kernel_matches_f64_and_scalar() {
        let g = gemm_for(crate::cpu::caps::best());
        // every kernel this CPU runs (the best path's and the ones a forced lower path takes)
        for isa in crate::cpu::caps::available() {
            check(gemm_for(isa));
        }
        // and equals the scalar kernel's result to float rounding on a deep product
        let s = gemm_for(Isa::Scalar);
        let k = 300;
        let mut seed = 3;
        let (mr, nr) = (g.mr.min(s.mr), g.nr.min(s.nr));
        let a = rnd(k * g.mr.max(s.mr), &mut seed);
        let b = rnd(k * g.nr.max(s.nr), &mut seed);
        let pack = |src: &[f32], w: usize, from: usize| -> Vec<f32> {
            let mut out = vec![0.0; k * w];
            for p in 0..k {
                for r in 0..w.min(from) {
                    out[p * w + r] = src[p * from + r];
                }
            }
            out
        };
        let (wa, wb) = (g.mr.max(s.mr), g.nr.max(s.nr));
        let mut c1 = vec![0.0; mr * nr];
        let mut c2 = vec![0.0; mr * nr];
        unsafe {
            (g.kernel)(
                k,
                pack(&a, g.mr, wa).as_ptr(),
                pack(&b, g.nr, wb).as_ptr(),
                c1.as_mut_ptr(),
                nr,
                mr,
                nr,
                false,
            );
            (s.kernel)(
                k,
                pack(&a, s.mr, wa).as_ptr(),
                pack(&b, s.nr, wb).as_ptr(),
                c2.as_mut_ptr(),
                nr,
                mr,
                nr,
                false,
            );
        }
        for (x, y) in c1.iter().zip(&c2) {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "{} {x} vs scalar {y}",
                g.name
            );
        }
    }
}
