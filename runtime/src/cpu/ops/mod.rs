//! One module per op family; this file prepares each node once (packing, index maps) and dispatches.
pub mod conv;
pub mod eltwise;
pub mod layout;
pub mod matmul;
pub mod pool;
pub mod quant;
pub mod reduce;
pub mod resize;
pub mod rnn;

use super::kernels::Gemm;
use super::Par;
use crate::ir::{Op, ResizeMode};
use alloc::vec::Vec;

/// A read-only tensor: data and shape (f32 unless said otherwise).
pub struct View<'a, T = f32> {
    /// Elements, row-major.
    pub data: &'a [T],
    /// Shape.
    pub shape: &'a [usize],
}

impl<T> Clone for View<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for View<'_, T> {}

/// A writable tensor: data and shape.
pub struct ViewMut<'a, T = f32> {
    /// Elements, row-major.
    pub data: &'a mut [T],
    /// Shape.
    pub shape: &'a [usize],
}

/// Element strides of `shape` broadcast to `out` (right-aligned; 0 where broadcast), times `unit`.
pub fn broadcast_strides(shape: &[usize], out: &[usize], unit: usize, strides: &mut [usize; 8]) {
    let (r, o) = (shape.len(), out.len());
    let mut acc = unit;
    for d in (0..o).rev() {
        strides[d] = 0;
        if d + r >= o {
            let sd = shape[d + r - o];
            if sd != 1 {
                strides[d] = acc;
            }
            acc *= sd;
        }
    }
}

/// Per-node state built once at session creation.
pub enum Prepared {
    /// Nothing to prepare.
    None,
    /// Conv / ConvTranspose weights.
    Conv(conv::ConvPrep),
    /// A pointwise float Conv that writes int8 ([`conv::run_pointwise_q`]): its packed weights, its
    /// activation, and the output's scale and zero point.
    ConvQ(Vec<f32>, Option<crate::ir::Unary>, f32, i32),
    /// A constant right operand packed for the GEMM.
    MatMul(Option<Vec<f32>>),
    /// Index maps (Slice, Pad, nearest Resize).
    Gather(layout::GatherMaps),
    /// Bilinear taps.
    Linear(resize::Taps),
    /// An integer node (or a float/int8 boundary).
    Quant(quant::QPrep),
    /// A node of the 16-bit activation engine (or a float/int16 boundary).
    Q16(crate::cpu::q16::Q16Prep),
    /// LSTM / GRU / RNN weights packed, biases summed.
    Rnn(rnn::RnnPrep),
}

/// Builds the node's prepared state; `consts[i]` is input i's data when it is a constant.
pub fn prepare(
    g: &Gemm,
    op: &Op,
    ins: &[&[usize]],
    outs: &[&[usize]],
    consts: &[Option<&[f32]>],
) -> Prepared {
    let c = |i: usize| consts.get(i).copied().flatten();
    match op {
        Op::Conv { geom, .. } => match c(1) {
            Some(w) => Prepared::Conv(conv::prepare(g, geom, w, ins[1], ins[0], outs[0])),
            None => Prepared::None,
        },
        Op::ConvTranspose { geom, .. } => match c(1) {
            Some(w) => Prepared::Conv(conv::prepare_transposed(g, geom, w, ins[1])),
            None => Prepared::None,
        },
        Op::MatMul { .. } => Prepared::MatMul(c(1).and_then(|b| matmul::prepare(g, b, ins[1]))),
        Op::Slice { starts, steps } => {
            Prepared::Gather(layout::slice_maps(ins[0], outs[0], starts, steps))
        }
        Op::Pad { pads, mode } => Prepared::Gather(layout::pad_maps(ins[0], outs[0], pads, *mode)),
        Op::Resize {
            mode: ResizeMode::Nearest(nm),
            coord,
            scales,
        } => Prepared::Gather(layout::nearest_maps(ins[0], outs[0], scales, *coord, *nm)),
        Op::Resize {
            mode: ResizeMode::Linear,
            coord,
            scales,
        } => Prepared::Linear(resize::prepare(*coord, ins[0], outs[0], scales)),
        Op::Lstm { .. } | Op::Gru { .. } | Op::Rnn { .. } => match (c(1), c(3), rnn_cell(op)) {
            (Some(w), Some(b), Some(cell)) => Prepared::Rnn(rnn::prepare(g, cell, w, ins[1], b)),
            _ => Prepared::None,
        },
        _ => Prepared::None,
    }
}

/// The recurrent cell of an LSTM, GRU or RNN op.
fn rnn_cell(op: &Op) -> Option<rnn::Cell> {
    match op {
        Op::Lstm { .. } => Some(rnn::Cell::Lstm),
        Op::Gru {
            linear_before_reset,
            ..
        } => Some(rnn::Cell::Gru {
            linear_before_reset: *linear_before_reset,
        }),
        Op::Rnn { .. } => Some(rnn::Cell::Rnn),
        _ => None,
    }
}

/// Scratch floats the node needs at run time with `threads` threads.
pub fn scratch(
    g: &Gemm,
    op: &Op,
    prep: &Prepared,
    ins: &[&[usize]],
    outs: &[&[usize]],
    threads: usize,
) -> usize {
    match (op, prep) {
        (Op::Conv { geom, .. }, Prepared::Conv(p)) => {
            conv::scratch(g, geom, p, ins[0], outs[0], ins[1], threads)
        }
        (Op::Conv { .. }, Prepared::ConvQ(..)) => {
            conv::scratch_pointwise_q(g, ins[0], outs[0], threads)
        }
        (Op::ConvTranspose { geom, .. }, _) => {
            conv::scratch_transposed(g, ins[0], ins[1], geom.groups as usize, threads)
        }
        (Op::MatMul { .. }, Prepared::MatMul(p)) => {
            matmul::scratch(g, ins[0], ins[1], p.is_some(), threads)
        }
        (Op::Lstm { .. } | Op::Gru { .. } | Op::Rnn { .. }, _) => match rnn_cell(op) {
            Some(cell) => rnn::scratch(g, cell, ins[0], ins[1], threads),
            None => 0,
        },
        _ => 0,
    }
}

/// A Conv node's per-channel terms from its inputs: the bias (input 2) and the post-activation affine
/// (inputs 3 and 4).
pub fn conv_terms<'a>(ins: &[View<'a>]) -> conv::ChannelTerms<'a> {
    (
        ins.get(2).map(|b| b.data),
        ins.get(3).zip(ins.get(4)).map(|(s, t)| (s.data, t.data)),
    )
}

/// Runs one node. Shapes were validated at load; the arena plan guarantees outputs do not alias inputs.
#[allow(clippy::too_many_arguments)]
pub fn exec(
    g: &Gemm,
    par: &Par,
    op: &Op,
    prep: &Prepared,
    ins: &[View],
    outs: &mut [ViewMut],
    scratch: &mut [f32],
) {
    let Some((y, rest)) = outs.split_first_mut() else {
        return;
    };
    let y = ViewMut {
        data: &mut *y.data,
        shape: y.shape,
    };
    match (op, prep) {
        (Op::Conv { geom, act }, Prepared::Conv(p)) => conv::run(
            g,
            par,
            geom,
            *act,
            p,
            ins[0],
            ins[1],
            conv_terms(ins),
            y,
            scratch,
        ),
        (Op::ConvTranspose { geom, act }, Prepared::Conv(p)) => conv::run_transposed(
            g,
            par,
            geom,
            *act,
            p,
            ins[0],
            ins[1].shape,
            ins.get(2).map(|b| b.data),
            y,
            scratch,
        ),
        (Op::MatMul { act }, Prepared::MatMul(p)) => matmul::run(
            g,
            par,
            *act,
            p.as_deref(),
            ins[0],
            ins[1],
            ins.get(2).map(|b| b.data),
            y,
            scratch,
        ),
        (Op::Binary { op, act }, _) => eltwise::binary(par, *op, *act, ins[0], ins[1], y),
        (Op::Unary(f), _) => eltwise::unary(*f, ins[0], y),
        (Op::ChannelAffine { act }, _) => {
            eltwise::channel_affine(par, *act, ins[0], ins[1].data, ins[2].data, y)
        }
        (Op::Pool(p), _) => pool::pool2d(p, ins[0], y),
        (Op::GlobalPool(k), _) => pool::global(*k, ins[0], y),
        (Op::Resize { .. } | Op::Slice { .. } | Op::Pad { .. }, Prepared::Gather(m)) => {
            layout::gather(par, m, m.fill, ins[0], y)
        }
        (Op::Resize { .. }, Prepared::Linear(t)) => resize::linear(t, ins[0], y),
        (Op::Concat { axis }, _) => {
            layout::concat(*axis as usize, ins, y, |_, s, d| d.copy_from_slice(s))
        }
        (Op::Split { axis }, _) => split_into(*axis as usize, ins[0], y, rest),
        (
            Op::Lstm {
                direction, clip, ..
            }
            | Op::Gru {
                direction, clip, ..
            }
            | Op::Rnn {
                direction, clip, ..
            },
            Prepared::Rnn(p),
        ) => rnn::run(g, par, p, *direction, *clip, ins, y, rest, scratch),
        (Op::Reshape, _) => y.data.copy_from_slice(ins[0].data),
        (Op::Transpose { perm }, _) => layout::transpose(perm, ins[0], y),
        (Op::Softmax { axis }, _) => reduce::softmax(*axis as usize, ins[0], y),
        (Op::Reduce { op, axes, .. }, _) => reduce::reduce(*op, axes, ins[0], y),
        // a conv whose weights were not constant is rejected at load, so nothing else reaches here
        _ => {}
    }
}

/// Cuts `x` along `axis` into `first` and `rest` (any element type).
pub fn split_into<T: Copy>(axis: usize, x: View<T>, first: ViewMut<T>, rest: &mut [ViewMut<T>]) {
    let outer: usize = x.shape[..axis].iter().product();
    let inner: usize = x.shape[axis + 1..].iter().product();
    let mut off = 0;
    for o in 0..outer {
        let n = first.shape[axis] * inner;
        first.data[o * n..(o + 1) * n].copy_from_slice(&x.data[off..off + n]);
        off += n;
        for y in rest.iter_mut() {
            let n = y.shape[axis] * inner;
            y.data[o * n..(o + 1) * n].copy_from_slice(&x.data[off..off + n]);
            off += n;
        }
    }
}
