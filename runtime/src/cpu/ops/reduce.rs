//! Softmax and reductions.
use super::{View, ViewMut};
use crate::ir::ReduceOp;

/// Softmax along `axis` (max-subtracted for range safety).
pub fn softmax(axis: usize, x: View, y: ViewMut) {
    let n = x.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    let outer: usize = x.shape[..axis].iter().product();
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| o * n * inner + k * inner + i;
            let mut mx = f32::NEG_INFINITY;
            for k in 0..n {
                mx = mx.max(x.data[at(k)]);
            }
            let mut sum = 0.0;
            for k in 0..n {
                let e = libm::expf(x.data[at(k)] - mx);
                y.data[at(k)] = e;
                sum += e;
            }
            let inv = 1.0 / sum;
            for k in 0..n {
                y.data[at(k)] *= inv;
            }
        }
    }
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
