//! Portable reference micro-kernel (and the path on targets without a SIMD kernel).
use super::BRows;
/// Tile rows.
pub const MR: usize = 4;
/// Tile columns.
pub const NR: usize = 8;

f32_kernels!(
    sgemm_4x8,
    sgemm_4x8_rows,
    tile,
    NR,
    [1, 2, 3; 4],
    "Portable: any CPU."
);

/// R rows (R ≤ MR) of the tile, B's rows found through `b`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile<const R: usize, B: BRows>(
    k: usize,
    a: *const f32,
    b: B,
    c: *mut f32,
    ldc: usize,
    n: usize,
    acc: bool,
) {
    let mut t = [[0f32; NR]; R];
    for p in 0..k {
        // SAFETY: the caller guarantees k*MR floats behind a and NR floats at each B row.
        let (ap, bp) = unsafe { (a.add(p * MR), b.row(p)) };
        for (r, row) in t.iter_mut().enumerate() {
            let av = unsafe { *ap.add(r) };
            for (j, v) in row.iter_mut().enumerate() {
                *v = crate::ir::fmadd(av, unsafe { *bp.add(j) }, *v);
            }
        }
    }
    for (r, row) in t.iter().enumerate() {
        for (j, v) in row.iter().enumerate().take(n) {
            // SAFETY: rows < R = m and cols < n are valid per the contract.
            let dst = unsafe { &mut *c.add(r * ldc + j) };
            *dst = if acc { *dst + v } else { *v };
        }
    }
}
