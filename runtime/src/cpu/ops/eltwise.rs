//! Element-wise ops: binary with numpy broadcasting, unary functions, per-channel affine.
use super::{broadcast_strides, View, ViewMut};
use crate::cpu::gemm::apply_act;
use crate::cpu::{share, Par, SyncPtr};
use crate::ir::{BinOp, Unary};

#[inline]
fn bin_loop(op: BinOp, out: &mut [f32], a: &[f32], sa: usize, b: &[f32], sb: usize) {
    // the three stride patterns of the innermost axis get their own loops so they vectorize
    macro_rules! go {
        ($f:expr) => {
            match (sa, sb) {
                (1, 1) => out
                    .iter_mut()
                    .zip(a)
                    .zip(b)
                    .for_each(|((o, &x), &y)| *o = $f(x, y)),
                (1, 0) => {
                    let y = b[0];
                    out.iter_mut().zip(a).for_each(|(o, &x)| *o = $f(x, y))
                }
                (0, 1) => {
                    let x = a[0];
                    out.iter_mut().zip(b).for_each(|(o, &y)| *o = $f(x, y))
                }
                _ => {
                    let v = $f(a[0], b[0]);
                    out.iter_mut().for_each(|o| *o = v)
                }
            }
        };
    }
    match op {
        BinOp::Add => go!(|x: f32, y: f32| x + y),
        BinOp::Sub => go!(|x: f32, y: f32| x - y),
        BinOp::Mul => go!(|x: f32, y: f32| x * y),
        BinOp::Div => go!(|x: f32, y: f32| x / y),
        // a square (an STFT magnitude's re², im²): the rule's product, without a pow call per element
        BinOp::Pow if sb == 0 && b[0] == 2.0 => go!(|x: f32, _| x * x),
        other => go!(|x: f32, y: f32| other.apply(x, y)),
    }
}

/// Below this many output elements an op runs on one thread (waking the others costs more).
const PAR_MIN: usize = 1 << 14;

/// `y = act(a op b)` with broadcasting; threads split the rows of the innermost axis.
pub fn binary(par: &Par, op: BinOp, act: Option<Unary>, a: View, b: View, y: ViewMut) {
    // operands that are whole (y's shape) or one value: one flat row, whatever the rank (a [64, 129, 4]
    // Add had taken 8256 rows of 4)
    let flat = |t: &View| t.shape == y.shape || t.data.len() == 1;
    if flat(&a) && flat(&b) && !y.data.is_empty() {
        let n = y.data.len();
        let threads = if n >= PAR_MIN { par.threads() } else { 1 };
        let yp = SyncPtr(y.data.as_mut_ptr());
        fn part<'a>(t: &'a [f32], r: &core::ops::Range<usize>) -> (&'a [f32], usize) {
            match t.len() {
                1 => (&t[..1], 0),
                _ => (&t[r.clone()], 1),
            }
        }
        par.run_on(threads, &|t| {
            let r = share(n, t, threads);
            // SAFETY: the threads' ranges are disjoint.
            let out = unsafe { core::slice::from_raw_parts_mut(yp.get().add(r.start), r.len()) };
            let ((xa, ia), (xb, ib)) = (part(a.data, &r), part(b.data, &r));
            bin_loop(op, out, xa, ia, xb, ib);
            if let Some(f) = act {
                apply_act(out, f);
            }
        });
        return;
    }
    let r = y.shape.len();
    let mut sa = [0usize; 8];
    let mut sb = [0usize; 8];
    let inner = if r == 0 { 1 } else { y.shape[r - 1] };
    broadcast_strides(a.shape, y.shape, 1, &mut sa);
    broadcast_strides(b.shape, y.shape, 1, &mut sb);
    let (ia, ib) = if r == 0 {
        (0, 0)
    } else {
        (sa[r - 1], sb[r - 1])
    };
    let outer = y.data.len().checked_div(inner).unwrap_or(0);
    if outer == 0 {
        return; // an empty tensor
    }
    let yp = SyncPtr(y.data.as_mut_ptr());
    let threads = if y.data.len() >= PAR_MIN {
        par.threads()
    } else {
        1
    };
    let work = |t: usize| {
        let rows = share(outer, t, threads);
        // the multi-index of the first row of this share
        let mut idx = [0usize; 8];
        let mut rem = rows.start;
        for d in (0..r.saturating_sub(1)).rev() {
            idx[d] = rem % y.shape[d];
            rem /= y.shape[d];
        }
        for o in rows {
            let (mut oa, mut ob) = (0, 0);
            for d in 0..r.saturating_sub(1) {
                oa += idx[d] * sa[d];
                ob += idx[d] * sb[d];
            }
            // SAFETY: rows are split disjointly between threads.
            let out = unsafe { core::slice::from_raw_parts_mut(yp.get().add(o * inner), inner) };
            let la = if ia == 0 { 1 } else { inner };
            let lb = if ib == 0 { 1 } else { inner };
            bin_loop(op, out, &a.data[oa..oa + la], ia, &b.data[ob..ob + lb], ib);
            if let Some(f) = act {
                apply_act(out, f);
            }
            for d in (0..r.saturating_sub(1)).rev() {
                idx[d] += 1;
                if idx[d] < y.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    };
    par.run_on(threads, &work);
}

/// `y = f(x)` (`apply_act`: Sigmoid takes the vector kernel where the CPU has one, with the scalar rule's
/// bits).
pub fn unary(f: Unary, x: View, y: ViewMut) {
    y.data.copy_from_slice(x.data);
    apply_act(y.data, f);
}

/// `y = act(x·scale[c] + shift[c])` along axis 1; threads split the (image, channel) planes.
pub fn channel_affine(
    par: &Par,
    act: Option<Unary>,
    x: View,
    scale: &[f32],
    shift: &[f32],
    y: ViewMut,
) {
    let c = x.shape[1];
    let inner: usize = x.shape[2..].iter().product();
    if c == 0 || inner == 0 {
        return;
    }
    let planes = x.data.len() / inner;
    let threads = if y.data.len() >= PAR_MIN {
        par.threads()
    } else {
        1
    };
    let yp = SyncPtr(y.data.as_mut_ptr());
    let work = |t: usize| {
        for p in share(planes, t, threads) {
            // SAFETY: planes are split disjointly between threads.
            let o = unsafe { core::slice::from_raw_parts_mut(yp.get().add(p * inner), inner) };
            let (s, b) = (scale[p % c], shift[p % c]);
            o.iter_mut()
                .zip(&x.data[p * inner..(p + 1) * inner])
                .for_each(|(o, &v)| *o = v * s + b);
            if let Some(f) = act {
                apply_act(o, f);
            }
        }
    };
    par.run_on(threads, &work);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Sigmoid, SiLU and tanh as run (the vector kernel where this CPU has one) give the scalar rules'
    /// bits and stay close to float64 (Sigmoid within ~4 ulp of the correctly rounded logistic, SiLU
    /// within ~5 ulp of x·logistic(x), tanh within 2 ulp), from deep in the tails through 0 (tanh's two
    /// branches meet at 0.625), with tails of the vector loop; NaN stays NaN and the infinities saturate.
    #[test]
    fn sigmoid_silu_and_tanh_paths_agree() {
        let mut x: Vec<f32> = (-8000..8000).map(|i| i as f32 * 0.0125).collect();
        x.extend([
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            88.0,
            -88.0,
            87.4,
            -87.4,
            1e-30,
            3.0,
            1e-4,
            -3e-3,
            0.624_999_94,
            -0.625,
            9.0,
            -45.0,
        ]);
        let shape = [x.len()];
        type Exact = fn(f64) -> f64;
        let cases: [(Unary, Exact, f64, f64); 3] = [
            (Unary::Sigmoid, |v| 1.0 / (1.0 + (-v).exp()), 4.8e-7, 1e-37),
            (Unary::Silu, |v| v / (1.0 + (-v).exp()), 6e-7, 1e-35),
            (Unary::Tanh, f64::tanh, 2.4e-7, 1e-37),
        ];
        // tanh keeps the sign of zero (the vector kernels are held to the rule's bits below)
        assert_eq!(Unary::Tanh.apply(-0.0).to_bits(), (-0.0f32).to_bits());
        for (f, exact, rel, abs) in cases {
            let mut got = alloc::vec![0f32; x.len()];
            let xv = View {
                data: &x,
                shape: &shape,
            };
            let yv = ViewMut {
                data: &mut got,
                shape: &shape,
            };
            unary(f, xv, yv);
            // and each x86 kernel on its own (the one `unary` takes is the widest)
            #[allow(unused_mut)]
            let mut runs = alloc::vec![got];
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            {
                use crate::cpu::kernels::x86;
                let mut one = |k: &dyn Fn(&mut [f32]) -> usize| {
                    let mut v = x.clone();
                    let done = k(&mut v);
                    v[done..].iter_mut().for_each(|e| *e = f.apply(*e));
                    runs.push(v);
                };
                // SAFETY (both): each kernel runs only where its features were detected.
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    one(&|v| unsafe {
                        match f {
                            Unary::Sigmoid => x86::sigmoid_avx2::<false>(v),
                            Unary::Silu => x86::sigmoid_avx2::<true>(v),
                            _ => x86::tanh_avx2(v),
                        }
                    });
                }
                if std::is_x86_feature_detected!("avx512f") {
                    one(&|v| unsafe {
                        match f {
                            Unary::Sigmoid => x86::sigmoid512::<false>(v),
                            Unary::Silu => x86::sigmoid512::<true>(v),
                            _ => x86::tanh512(v),
                        }
                    });
                }
            }
            for got in &runs {
                for (i, (a, b)) in got.iter().zip(x.iter().map(|&v| f.apply(v))).enumerate() {
                    // the same bits as the scalar rule: the vector kernel (where this CPU has it) does the
                    // same operations
                    assert!(
                        (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits(),
                        "{f:?}({}) = {a}, scalar rule {b}",
                        x[i]
                    );
                    let e = exact(x[i] as f64);
                    assert!(
                        b.is_nan() || !e.is_finite() || (b as f64 - e).abs() <= rel * e.abs() + abs,
                        "{f:?}({}) = {b} vs {e}",
                        x[i]
                    );
                }
            }
        }
    }
    /// The one-pass activations as every epilogue runs them (built for the widest vectors this CPU has)
    /// give the scalar rules' bits, NaN, infinities, signed zeros and the clamp edges included.
    #[test]
    fn clamp_activations_match_the_scalar_rules() {
        let mut x: Vec<f32> = (-4000..4000).map(|i| i as f32 * 0.0037).collect();
        x.extend([
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            0.0,
            -3.0,
            3.0,
            6.0,
            -6.0,
            1e-40,
        ]);
        for f in [
            Unary::Relu,
            Unary::Clip {
                min: -1.5,
                max: 6.0,
            },
            Unary::HardSwish,
            Unary::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            Unary::LeakyRelu { alpha: 0.2 },
            Unary::Clip {
                min: -0.4,
                max: f32::INFINITY,
            },
        ] {
            let mut got = x.clone();
            crate::cpu::gemm::apply_act(&mut got, f);
            for (i, (a, b)) in got.iter().zip(x.iter().map(|&v| f.apply(v))).enumerate() {
                assert!(
                    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits(),
                    "{f:?}({}) = {a}, scalar rule {b}",
                    x[i]
                );
            }
        }
    }
}
