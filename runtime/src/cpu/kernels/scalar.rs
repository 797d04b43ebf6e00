//! Portable reference micro-kernel (and the path on targets without a SIMD kernel).
use super::{BRows, Offsets, Panel};
/// Tile rows.
pub const MR: usize = 4;
/// Tile columns.
pub const NR: usize = 8;

/// See [`super::MicroKernel`].
///
/// # Safety
/// As [`super::MicroKernel`].
#[allow(clippy::too_many_arguments)] // the MicroKernel contract
pub unsafe fn sgemm_4x8(
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
    unsafe { tile(k, a, Panel::<NR>(b), c, ldc, m, n, acc) }
}

/// [`sgemm_4x8`] reading B in place.
///
/// # Safety
/// As [`super::RowsKernel`].
#[allow(clippy::too_many_arguments)] // the RowsKernel contract
pub unsafe fn sgemm_4x8_rows(
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
    // SAFETY: forwarded contract.
    unsafe { tile(k, a, Offsets(b, offs), c, ldc, m, n, acc) }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile<B: BRows>(
    k: usize,
    a: *const f32,
    b: B,
    c: *mut f32,
    ldc: usize,
    m: usize,
    n: usize,
    acc: bool,
) {
    let mut t = [[0f32; NR]; MR];
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
    for (r, row) in t.iter().enumerate().take(m) {
        for (j, v) in row.iter().enumerate().take(n) {
            // SAFETY: rows < m and cols < n are valid per the contract.
            let dst = unsafe { &mut *c.add(r * ldc + j) };
            *dst = if acc { *dst + v } else { *v };
        }
    }
}
