//! Portable reference micro-kernel (and the path on targets without a SIMD kernel).
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
    let mut t = [[0f32; NR]; MR];
    for p in 0..k {
        // SAFETY: the caller guarantees k*MR and k*NR floats behind a and b.
        let (ap, bp) = unsafe { (a.add(p * MR), b.add(p * NR)) };
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
