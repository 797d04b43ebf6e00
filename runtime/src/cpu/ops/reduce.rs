//! Softmax and reductions.
use super::{View, ViewMut};
use crate::ir::ReduceOp;

/// Softmax along `axis` (max-subtracted for range safety), with [`crate::ir::exp_rule`]'s `e^x`: the
/// exponentials run through the vector kernel where the CPU has one (the same bits), across the
/// contiguous positions after `axis` (each lane its own softmax), or along `axis` itself when nothing
/// follows it (`inner` = 1); the maxima and sums are taken in the same order on every path.
pub fn softmax(axis: usize, x: View, y: ViewMut) {
    /// Positions after `axis` taken together (a stack block: `run` allocates nothing).
    const BLOCK: usize = 64;
    let n = x.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    let outer: usize = x.shape[..axis].iter().product();
    debug_assert!(x.data.len() == outer * n * inner && y.data.len() == x.data.len());
    if n == 0 || inner == 0 {
        return;
    }
    for (xs, ys) in x
        .data
        .chunks_exact(n * inner)
        .zip(y.data.chunks_exact_mut(n * inner))
        .take(outer)
    {
        if inner == 1 {
            let mx = xs.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            ys.iter_mut().zip(xs).for_each(|(e, &v)| *e = v - mx);
            exp_in_place(ys);
            let inv = 1.0 / ys.iter().fold(0.0f32, |s, &e| s + e);
            ys.iter_mut().for_each(|e| *e *= inv);
            continue;
        }
        for i0 in (0..inner).step_by(BLOCK) {
            let b = BLOCK.min(inner - i0);
            let mut mx = [f32::NEG_INFINITY; BLOCK];
            for row in xs[i0..].chunks(inner).map(|r| &r[..b]) {
                mx.iter_mut().zip(row).for_each(|(m, &v)| *m = m.max(v));
            }
            let mut sum = [0f32; BLOCK];
            for (yr, xr) in ys[i0..].chunks_mut(inner).zip(xs[i0..].chunks(inner)) {
                let yr = &mut yr[..b];
                yr.iter_mut()
                    .zip(&xr[..b])
                    .zip(&mx)
                    .for_each(|((e, &v), &m)| *e = v - m);
                exp_in_place(yr);
                sum.iter_mut().zip(&*yr).for_each(|(s, &e)| *s += e);
            }
            let inv = &mut sum[..b];
            inv.iter_mut().for_each(|s| *s = 1.0 / *s);
            for yr in ys[i0..].chunks_mut(inner) {
                yr[..b].iter_mut().zip(&*inv).for_each(|(e, &r)| *e *= r);
            }
        }
    }
}

/// `v[i] = e^v[i]`: Exp's element-wise path (its vector kernel where the CPU has one, the same bits).
fn exp_in_place(v: &mut [f32]) {
    crate::cpu::gemm::apply_act(v, crate::ir::Unary::Exp);
}

/// Reduction over sorted `axes`.
pub fn reduce(op: ReduceOp, axes: &[u32], x: View, y: ViewMut) {
    let r = x.shape.len();
    // output strides laid over the input axes (0 on reduced axes)
    let mut os = [0usize; 8];
    let mut acc = 1usize;
    for d in (0..r).rev() {
        if axes.contains(&(d as u32)) {
            os[d] = 0;
        } else {
            os[d] = acc;
            acc *= x.shape[d];
        }
    }
    let init = match op {
        ReduceOp::Mean | ReduceOp::Sum => 0.0,
        ReduceOp::Max => f32::NEG_INFINITY,
        ReduceOp::Min => f32::INFINITY,
    };
    y.data.iter_mut().for_each(|v| *v = init);
    let mut idx = [0usize; 8];
    for &v in x.data {
        let o: usize = (0..r).map(|d| idx[d] * os[d]).sum();
        let t = &mut y.data[o];
        *t = match op {
            ReduceOp::Mean | ReduceOp::Sum => *t + v,
            ReduceOp::Max => t.max(v),
            ReduceOp::Min => t.min(v),
        };
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < x.shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    if op == ReduceOp::Mean {
        let count: usize = axes.iter().map(|&a| x.shape[a as usize]).product();
        let inv = 1.0 / count.max(1) as f32;
        y.data.iter_mut().for_each(|v| *v *= inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, mut seed: u32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// The x86 `e^x` kernel gives [`crate::ir::exp_rule`]'s bits (NaN stays NaN, the tails saturate),
    /// and the rule stays within 2 ulp of float64's `exp` over its range [−87.3, 88.7].
    #[test]
    fn exp_kernel_equals_the_rule() {
        // the special values first, so the widest kernel sees them too
        let mut x: Vec<f32> = alloc::vec![
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            88.72,
            88.8,
            -87.33,
            -87.4,
            -100.0,
            -103.9,
            -104.0,
            1e-30,
        ];
        x.extend((-9000..9000).map(|i| i as f32 * 0.0099));
        for &v in x.iter().filter(|v| (-87.3..=88.7).contains(*v)) {
            let (got, want) = (crate::ir::exp_rule(v) as f64, (v as f64).exp());
            assert!(
                (got - want).abs() <= 2.4e-7 * want,
                "e^{v}: {got} vs {want}"
            );
        }
        // below the normal range: subnormal, within one subnormal step (2^−149), 0 from the clamp
        for v in [-88.0f32, -95.0, -100.0, -103.0, -103.9] {
            let (got, want) = (crate::ir::exp_rule(v) as f64, (v as f64).exp());
            assert!((got - want).abs() <= 1.5e-45, "e^{v}: {got} vs {want}");
        }
        assert_eq!(crate::ir::exp_rule(-104.0), 0.0);
        assert_eq!(crate::ir::exp_rule(f32::NEG_INFINITY), 0.0);
        let mut v = x.clone();
        exp_in_place(&mut v);
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            let mut w = x.clone();
            // (the kernel covers all whole vectors: the comparison below is of its values)
            assert!(crate::cpu::kernels::x86::exp_vec(&mut w) >= x.len() - 8);
        }
        for (&a, &xi) in v.iter().zip(&x) {
            let b = crate::ir::exp_rule(xi);
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "e^{xi}: kernel {a} vs rule {b}"
            );
        }
    }

    /// Softmax over the last axis and over an inner axis (positions after it beyond one block, with a
    /// tail): the rule's bits (every element recomputed by the scalar formula, the same order) and within
    /// 1e-6 of float64, each row summing to 1.
    #[test]
    fn softmax_equals_the_scalar_rule_and_float64() {
        for shape in [[3usize, 1, 37], [2, 5, 70], [1, 16, 130], [2, 3, 1]] {
            for axis in [1usize, 2] {
                if axis == 2 && shape[2] == 1 && shape[1] > 1 {
                    continue;
                }
                let len: usize = shape.iter().product();
                // wide logits (±8), one of them −inf (a masked logit: its share is exactly 0) where its
                // softmax has others
                let mut x: Vec<f32> = values(len, len as u32).iter().map(|v| v * 8.0).collect();
                if shape[axis] > 1 {
                    x[0] = f32::NEG_INFINITY;
                }
                let mut y = alloc::vec![0f32; len];
                softmax(
                    axis,
                    View {
                        data: &x,
                        shape: &shape,
                    },
                    ViewMut {
                        data: &mut y,
                        shape: &shape,
                    },
                );
                let n = shape[axis];
                let inner: usize = shape[axis + 1..].iter().product();
                let outer: usize = shape[..axis].iter().product();
                for o in 0..outer {
                    for i in 0..inner {
                        let at = |k: usize| o * n * inner + k * inner + i;
                        let mx = (0..n).fold(f32::NEG_INFINITY, |m, k| m.max(x[at(k)]));
                        let e: Vec<f32> =
                            (0..n).map(|k| crate::ir::exp_rule(x[at(k)] - mx)).collect();
                        let inv = 1.0 / e.iter().fold(0.0f32, |s, &v| s + v);
                        let mx64 = mx as f64;
                        let sum64: f64 = (0..n).map(|k| (x[at(k)] as f64 - mx64).exp()).sum();
                        let mut total = 0.0;
                        for k in 0..n {
                            let got = y[at(k)];
                            assert_eq!(
                                got.to_bits(),
                                (e[k] * inv).to_bits(),
                                "{shape:?} axis {axis} at {}",
                                at(k)
                            );
                            let want = (x[at(k)] as f64 - mx64).exp() / sum64;
                            if x[at(k)] == f32::NEG_INFINITY {
                                assert_eq!(got, 0.0, "a masked logit's share");
                            }
                            assert!(
                                (got as f64 - want).abs() <= 1e-6,
                                "{shape:?} axis {axis}: {got} vs {want}"
                            );
                            total += got as f64;
                        }
                        assert!(
                            (total - 1.0).abs() < 1e-5,
                            "{shape:?} axis {axis}: sum {total}"
                        );
                    }
                }
            }
        }
    }
}
