//! numpy-style batched MatMul (+ bias along the last axis, + activation) on the GEMM driver.
use super::{broadcast_strides, View, ViewMut};
use crate::cpu::gemm::{self, ASrc, BSrc, Epilogue};
use crate::cpu::kernels::Gemm;
use crate::cpu::Par;
use crate::ir::Unary;
use alloc::vec::Vec;

/// Packs a constant 2-D right operand once (the common Gemm/Linear case).
pub fn prepare(g: &Gemm, b: &[f32], bshape: &[usize]) -> Option<Vec<f32>> {
    if bshape.len() != 2 {
        return None;
    }
    let (k, n) = (bshape[0], bshape[1]);
    Some(gemm::pack_b(g, k, n, |p, j| b[p * n + j]))
}

/// Scratch floats for one batch item (batches run one after another).
pub fn scratch(g: &Gemm, a: &[usize], b: &[usize], b_packed: bool, threads: usize) -> usize {
    let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
    let n = b[b.len() - 1];
    gemm::scratch_floats(g, m, n, k, false, b_packed, threads)
}

/// Runs the product.
#[allow(clippy::too_many_arguments)]
pub fn run(
    g: &Gemm,
    par: &Par,
    act: Option<Unary>,
    packed_b: Option<&[f32]>,
    a: View,
    b: View,
    bias: Option<&[f32]>,
    y: ViewMut,
    scratch: &mut [f32],
) {
    let (ar, br, yr) = (a.shape.len(), b.shape.len(), y.shape.len());
    let (m, k, n) = (a.shape[ar - 2], a.shape[ar - 1], b.shape[br - 1]);
    let batch_shape = &y.shape[..yr - 2];
    let batches: usize = batch_shape.iter().product();
    if m == 1 && batches == 1 && br == 2 {
        // one row (a batch-1 dense layer): stream W once, no packing
        gemv(g.isa, &a.data[..k], &b.data[..k * n], y.data, bias, act);
        return;
    }
    let mut sa = [0usize; 8];
    let mut sb = [0usize; 8];
    broadcast_strides(&a.shape[..ar - 2], batch_shape, m * k, &mut sa);
    broadcast_strides(&b.shape[..br - 2], batch_shape, k * n, &mut sb);
    let epi = Epilogue {
        row_bias: None,
        col_bias: bias,
        act,
        post: None,
    };
    let mut idx = [0usize; 8];
    let nb = batch_shape.len();
    for bi in 0..batches {
        let (mut oa, mut ob) = (0, 0);
        for d in 0..nb {
            oa += idx[d] * sa[d];
            ob += idx[d] * sb[d];
        }
        let asrc = ASrc::Strided(&a.data[oa..oa + m * k], k, 1);
        let bsrc = match packed_b {
            Some(p) => BSrc::Packed(p),
            None => BSrc::Strided(&b.data[ob..ob + k * n], n, 1),
        };
        gemm::gemm(
            g,
            par,
            (m, n, k),
            asrc,
            bsrc,
            &mut y.data[bi * m * n..(bi + 1) * m * n],
            n,
            epi,
            scratch,
        );
        for d in (0..nb).rev() {
            idx[d] += 1;
            if idx[d] < batch_shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// `y = act(x · W + bias)` for one row `x` and row-major `W` (`k×n`): one pass over W, each row added to the
/// accumulator (vectorizes along n), compiled for AVX2+FMA where the path has it.
fn gemv(
    isa: crate::cpu::caps::Isa,
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    bias: Option<&[f32]>,
    act: Option<Unary>,
) {
    #[inline(always)]
    fn body(x: &[f32], w: &[f32], y: &mut [f32], bias: Option<&[f32]>) {
        let n = y.len();
        match bias {
            Some(b) => y.copy_from_slice(&b[..n]),
            None => y.fill(0.0),
        }
        if n == 0 {
            return; // a zero-width output (chunks_exact(0) would panic)
        }
        for (&xv, row) in x.iter().zip(w.chunks_exact(n)) {
            for (o, &wv) in y.iter_mut().zip(row) {
                *o += xv * wv;
            }
        }
    }
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if matches!(
        isa,
        crate::cpu::caps::Isa::Avx2 | crate::cpu::caps::Isa::AvxVnni
    ) {
        #[target_feature(enable = "avx2,fma")]
        fn avx2(x: &[f32], w: &[f32], y: &mut [f32], bias: Option<&[f32]>) {
            body(x, w, y, bias)
        }
        // SAFETY: the session only selects an AVX2 path on a CPU with AVX2 and FMA.
        unsafe { avx2(x, w, y, bias) };
        if let Some(a) = act {
            gemm::apply_act(y, a);
        }
        return;
    }
    let _ = isa;
    body(x, w, y, bias);
    if let Some(a) = act {
        gemm::apply_act(y, a);
    }
}
