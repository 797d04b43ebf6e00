//! Output-shape rules, shared by the tool (to build graphs) and the loader (to re-check every node).
use super::{Op, PoolKind};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// Largest element count of one tensor this runtime accepts (2^31): offsets stay well inside `usize` on
/// 32-bit targets, and an absurd dim in a corrupt artifact is refused before anything is sized from it.
pub const MAX_ELEMS: usize = 1 << 31;

type R<T> = core::result::Result<T, String>;

/// A 16-bit function table's shape: one axis of a valid length (`quant::lut16_shift`).
fn table16_shape(t: &[usize]) -> R<()> {
    match t {
        [n] if crate::ir::quant::lut16_shift(*n).is_some() => Ok(()),
        _ => Err(format!(
            "16-bit lookup table shape {t:?}, expected [2^k + 1] entries for k in {}..={}",
            16 - crate::ir::quant::LUT16_MAX_SHIFT,
            16 - crate::ir::quant::LUT16_MIN_SHIFT
        )),
    }
}

fn want_inputs(inputs: &[&[usize]], lo: usize, hi: usize) -> R<()> {
    if inputs.len() < lo || inputs.len() > hi {
        return Err(format!("takes {lo}..={hi} inputs, has {}", inputs.len()));
    }
    Ok(())
}

fn want_rank(s: &[usize], r: usize, what: &str) -> R<()> {
    if s.len() != r {
        return Err(format!("{what} must have rank {r}, has shape {s:?}"));
    }
    Ok(())
}

/// numpy broadcasting of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> R<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(format!("shapes {a:?} and {b:?} do not broadcast"));
        };
    }
    Ok(out)
}

/// Output length of a window op along one axis (pads already include ceil-mode extra).
pub fn window_out(
    input: usize,
    k: usize,
    stride: usize,
    dil: usize,
    pad_lo: usize,
    pad_hi: usize,
) -> R<usize> {
    if k == 0 || stride == 0 || dil == 0 {
        return Err(format!(
            "kernel {k}, stride {stride} and dilation {dil} must be positive"
        ));
    }
    let eff = dil * (k - 1) + 1;
    let padded = input + pad_lo + pad_hi;
    if padded < eff {
        return Err(format!(
            "window {eff} (kernel {k}, dilation {dil}) exceeds padded input {padded}"
        ));
    }
    Ok((padded - eff) / stride + 1)
}

fn numel(s: &[usize]) -> R<usize> {
    let mut n = 1usize;
    for &d in s {
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_ELEMS)
            .ok_or_else(|| format!("shape {s:?} is too large"))?;
    }
    Ok(n)
}

/// Computes the output shapes of `op` from its input shapes. `declared` are the output shapes stored in
/// the graph; ops whose output shape is a parameter (Reshape, Split, Resize) are checked against them.
pub fn infer(op: &Op, inputs: &[&[usize]], declared: &[&[usize]]) -> R<Vec<Vec<usize>>> {
    for s in inputs {
        numel(s)?;
    }
    let one = |s: Vec<usize>| -> R<Vec<Vec<usize>>> {
        numel(&s)?;
        Ok(vec![s])
    };
    match op {
        Op::Conv { geom: g, .. }
        | Op::ConvTranspose { geom: g, .. }
        | Op::QConvTranspose { geom: g, .. }
        | Op::QConv { geom: g, .. }
        | Op::Q16Conv { geom: g, .. }
        | Op::Q16ConvAct { geom: g, .. } => {
            // a float Conv may carry its post-activation affine as inputs 3 and 4 (bias then required)
            if matches!(op, Op::Conv { .. }) && ![2, 3, 5].contains(&inputs.len()) {
                return Err(format!(
                    "takes 2, 3 or 5 inputs (x, weight, bias, post-activation scale and shift), has {}",
                    inputs.len()
                ));
            }
            if matches!(op, Op::Q16Conv { .. }) {
                want_inputs(inputs, 2, 4)?;
                if let Some(t) = inputs.get(3) {
                    table16_shape(t)?;
                }
            } else if !matches!(op, Op::Conv { .. }) {
                want_inputs(inputs, 2, 3)?;
            }
            let (x, w) = (inputs[0], inputs[1]);
            want_rank(x, 4, "input")?;
            want_rank(w, 4, "weight")?;
            let groups = g.groups as usize;
            let transposed = matches!(op, Op::ConvTranspose { .. } | Op::QConvTranspose { .. });
            if groups == 0 || x[1] % groups != 0 {
                return Err(format!(
                    "{} input channels do not split into {groups} groups",
                    x[1]
                ));
            }
            if [w[2], w[3]] != [g.kernel[0] as usize, g.kernel[1] as usize] {
                return Err(format!("weight {w:?} does not match kernel {:?}", g.kernel));
            }
            let m = if transposed {
                if w[0] != x[1] {
                    return Err(format!(
                        "weight {w:?} wants {} input channels, input has {}",
                        w[0], x[1]
                    ));
                }
                w[1] * groups
            } else {
                if w[1] * groups != x[1] || w[0] % groups != 0 {
                    return Err(format!(
                        "weight {w:?} does not fit input {x:?} with {groups} groups"
                    ));
                }
                w[0]
            };
            if let Some(b) = inputs.get(2) {
                if *b != [m] {
                    return Err(format!("bias shape {b:?}, expected [{m}]"));
                }
            }
            // (a Q16Conv's input 3 is its function table, checked above)
            let affine = if matches!(op, Op::Conv { .. }) { 3 } else { 5 };
            for (k, what) in [(3, "post-activation scale"), (4, "post-activation shift")] {
                if let Some(v) = inputs.get(k).filter(|_| k >= affine) {
                    if *v != [m] {
                        return Err(format!("{what} shape {v:?}, expected [{m}]"));
                    }
                }
            }
            let mut out = vec![x[0], m, 0, 0];
            for a in 0..2 {
                let (k, s, d) = (
                    g.kernel[a] as usize,
                    g.strides[a] as usize,
                    g.dilations[a] as usize,
                );
                let (lo, hi) = (g.pads[a] as usize, g.pads[a + 2] as usize);
                out[2 + a] = if transposed {
                    let full = (x[2 + a].max(1) - 1) * s
                        + d * (k.max(1) - 1)
                        + 1
                        + g.output_padding[a] as usize;
                    if k == 0 || s == 0 || d == 0 || full < lo + hi + 1 {
                        return Err(format!(
                            "transposed conv axis {a}: output would be empty or negative"
                        ));
                    }
                    full - lo - hi
                } else {
                    window_out(x[2 + a], k, s, d, lo, hi)?
                };
            }
            one(out)
        }
        Op::MatMul { .. } | Op::QMatMul { .. } | Op::Q16MatMul { .. } => {
            want_inputs(inputs, 2, 3)?;
            let (a, b) = (inputs[0], inputs[1]);
            if matches!(op, Op::QMatMul { .. } | Op::Q16MatMul { .. }) && b.len() != 2 {
                return Err(format!("integer matmul weight {b:?} must be [K, N]"));
            }
            if a.len() < 2 || b.len() < 2 {
                return Err(format!(
                    "matmul operands need rank ≥ 2 (import promotes vectors), have {a:?} and {b:?}"
                ));
            }
            let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
            let (k2, n) = (b[b.len() - 2], b[b.len() - 1]);
            if k != k2 {
                return Err(format!("matmul inner dims differ: {a:?} x {b:?}"));
            }
            let mut out = broadcast(&a[..a.len() - 2], &b[..b.len() - 2])?;
            out.push(m);
            out.push(n);
            if let Some(bias) = inputs.get(2) {
                if *bias != [n] {
                    return Err(format!("bias shape {bias:?}, expected [{n}]"));
                }
            }
            one(out)
        }
        Op::Binary { .. } | Op::QBinary { .. } | Op::Q16Binary { .. } => {
            want_inputs(inputs, 2, 2)?;
            one(broadcast(inputs[0], inputs[1])?)
        }
        Op::Unary(_) | Op::Quantize | Op::Dequantize | Op::Requantize | Op::Q16Unary(_) => {
            want_inputs(inputs, 1, 1)?;
            one(inputs[0].to_vec())
        }
        Op::Q16Lut => {
            want_inputs(inputs, 2, 2)?;
            table16_shape(inputs[1])?;
            one(inputs[0].to_vec())
        }
        Op::QLut => {
            want_inputs(inputs, 2, 2)?;
            // one table, or one per channel (axis 1) of a channel-scaled input or output
            let per_channel = inputs[0].len() >= 2 && inputs[1] == [inputs[0][1], 256];
            if inputs[1] != [256] && !per_channel {
                return Err(format!(
                    "lookup table shape {:?}, expected [256] or [channels, 256]",
                    inputs[1]
                ));
            }
            one(inputs[0].to_vec())
        }
        Op::ChannelAffine { .. } => {
            want_inputs(inputs, 3, 3)?;
            let x = inputs[0];
            if x.len() < 2 {
                return Err(format!("input {x:?} has no channel axis"));
            }
            for p in &inputs[1..] {
                if *p != [x[1]] {
                    return Err(format!(
                        "per-channel parameter shape {p:?}, expected [{}]",
                        x[1]
                    ));
                }
            }
            one(x.to_vec())
        }
        Op::Pool(p) => {
            want_inputs(inputs, 1, 1)?;
            let x = inputs[0];
            want_rank(x, 4, "input")?;
            if p.ceil_extra[0] > p.pads[2] || p.ceil_extra[1] > p.pads[3] {
                return Err(format!(
                    "ceil-mode padding {:?} exceeds pads {:?}",
                    p.ceil_extra, p.pads
                ));
            }
            if let PoolKind::Avg { .. } = p.kind {
                if p.dilations != [1, 1] {
                    return Err("average pooling with dilation is not supported".into());
                }
            }
            let mut out = x.to_vec();
            for a in 0..2 {
                out[2 + a] = window_out(
                    x[2 + a],
                    p.kernel[a] as usize,
                    p.strides[a] as usize,
                    p.dilations[a] as usize,
                    p.pads[a] as usize,
                    p.pads[a + 2] as usize,
                )?;
                if p.pads[a] >= p.kernel[a]
                    || p.pads[a + 2] as u64 >= p.kernel[a] as u64 + p.strides[a] as u64
                {
                    return Err(format!(
                        "pads {:?} too large for kernel {:?}",
                        p.pads, p.kernel
                    ));
                }
            }
            one(out)
        }
        Op::GlobalPool(_) => {
            want_inputs(inputs, 1, 1)?;
            let x = inputs[0];
            if x.len() < 3 {
                return Err(format!("input {x:?} has no spatial axes"));
            }
            let mut out = x.to_vec();
            out[2..].iter_mut().for_each(|d| *d = 1);
            one(out)
        }
        Op::Resize { mode, scales, .. } => {
            want_inputs(inputs, 1, 1)?;
            let x = inputs[0];
            let [y] = declared else {
                return Err("resize has one output".into());
            };
            if scales.len() != x.len() || y.len() != x.len() {
                return Err(format!(
                    "scales {scales:?} / output {y:?} do not match input rank {}",
                    x.len()
                ));
            }
            for i in 0..x.len() {
                let s = scales[i];
                if !(s.is_finite() && s > 0.0) {
                    return Err(format!("scale {s} on axis {i} must be positive"));
                }
                let exact = x[i] as f64 * s as f64;
                if (exact - y[i] as f64).abs() >= 1.0 || y[i] == 0 {
                    return Err(format!(
                        "output {y:?} does not follow from input {x:?} and scales {scales:?}"
                    ));
                }
                if *mode == super::ResizeMode::Linear && i + 2 < x.len() && y[i] != x[i] {
                    return Err(format!(
                        "linear resize only along the last two axes, axis {i} changes"
                    ));
                }
            }
            one(y.to_vec())
        }
        Op::Concat { axis } => {
            if inputs.is_empty() {
                return Err("concat of nothing".into());
            }
            let a = *axis as usize;
            let first = inputs[0];
            if a >= first.len() {
                return Err(format!("axis {a} out of range for {first:?}"));
            }
            let mut out = first.to_vec();
            out[a] = 0;
            for s in inputs {
                if s.len() != first.len() || (0..s.len()).any(|i| i != a && s[i] != first[i]) {
                    return Err(format!("cannot concat {s:?} with {first:?} on axis {a}"));
                }
                out[a] += s[a];
            }
            one(out)
        }
        Op::Split { axis } => {
            want_inputs(inputs, 1, 1)?;
            let x = inputs[0];
            let a = *axis as usize;
            if a >= x.len() || declared.is_empty() {
                return Err(format!("axis {a} out of range for {x:?} or no outputs"));
            }
            let mut total = 0;
            for y in declared {
                if y.len() != x.len() || (0..x.len()).any(|i| i != a && y[i] != x[i]) {
                    return Err(format!("output {y:?} is not a piece of {x:?} on axis {a}"));
                }
                total += y[a];
            }
            if total != x[a] {
                return Err(format!("outputs cover {total} of {} along axis {a}", x[a]));
            }
            Ok(declared.iter().map(|s| s.to_vec()).collect())
        }
        Op::Slice { starts, steps } => {
            want_inputs(inputs, 1, 1)?;
            let x = inputs[0];
            let [y] = declared else {
                return Err("slice has one output".into());
            };
            if starts.len() != x.len() || steps.len() != x.len() || y.len() != x.len() {
                return Err(format!("starts/steps/output rank do not match input {x:?}"));
            }
            for i in 0..x.len() {
                let (s, st, n) = (starts[i], steps[i], y[i] as i64);
                let dim = x[i] as i64;
                if st == 0 {
                    return Err(format!("step 0 on axis {i}"));
                }
                if n > 0 {
                    let last = s + (n - 1) * st;
                    if s < 0 || s >= dim || last < 0 || last >= dim {
                        return Err(format!(
                            "slice axis {i}: start {s} step {st} count {n} leaves 0..{dim}"
                        ));
                    }
                }
            }
            one(y.to_vec())
        }
        Op::Pad { pads, mode } => {
            want_inputs(inputs, 1, 1)?;
            let x = inputs[0];
            let r = x.len();
            if pads.len() != 2 * r {
                return Err(format!(
                    "pads {pads:?} need {} values for input {x:?}",
                    2 * r
                ));
            }
            let mut out = Vec::with_capacity(r);
            for i in 0..r {
                let d = x[i] as i64 + pads[i] + pads[i + r];
                if d < 0 || pads[i].abs() > MAX_ELEMS as i64 || pads[i + r].abs() > MAX_ELEMS as i64
                {
                    return Err(format!("pads {pads:?} make axis {i} of {x:?} negative"));
                }
                if !matches!(mode, super::PadMode::Constant(_)) && (pads[i] > 0 || pads[i + r] > 0)
                {
                    let lim = if matches!(mode, super::PadMode::Reflect) {
                        x[i] as i64 - 1
                    } else {
                        x[i] as i64
                    };
                    if x[i] == 0 || pads[i] > lim || pads[i + r] > lim {
                        return Err(format!(
                            "pads {pads:?} too large for {mode:?} on axis {i} of {x:?}"
                        ));
                    }
                }
                out.push(d as usize);
            }
            one(out)
        }
        Op::Reshape => {
            want_inputs(inputs, 1, 1)?;
            let [y] = declared else {
                return Err("reshape has one output".into());
            };
            if numel(y)? != numel(inputs[0])? {
                return Err(format!("cannot reshape {:?} into {y:?}", inputs[0]));
            }
            one(y.to_vec())
        }
        Op::Transpose { perm } => {
            want_inputs(inputs, 1, 1)?;
            let x = inputs[0];
            let mut seen = vec![false; x.len()];
            if perm.len() != x.len() {
                return Err(format!("perm {perm:?} does not match input {x:?}"));
            }
            for &p in perm {
                let p = p as usize;
                if p >= x.len() || seen[p] {
                    return Err(format!("perm {perm:?} is not a permutation"));
                }
                seen[p] = true;
            }
            one(perm.iter().map(|&p| x[p as usize]).collect())
        }
        Op::Lstm {
            hidden,
            direction,
            peepholes,
            ..
        } => {
            let n_in = 6 + usize::from(*peepholes);
            want_inputs(inputs, n_in, n_in)?;
            let (x, h, d) = (inputs[0], *hidden as usize, direction.count());
            want_rank(x, 3, "input")?;
            let (s, b, i) = (x[0], x[1], x[2]);
            let want: [(&str, Vec<usize>); 6] = [
                ("W", vec![d, 4 * h, i]),
                ("R", vec![d, 4 * h, h]),
                ("bias", vec![d, 8 * h]),
                ("initial h", vec![d, b, h]),
                ("initial c", vec![d, b, h]),
                ("peepholes", vec![d, 3 * h]),
            ];
            for (k, (what, shape)) in want.iter().enumerate().take(n_in - 1) {
                if inputs[k + 1] != shape.as_slice() {
                    return Err(format!(
                        "{what} has shape {:?}, {d} direction(s) of hidden size {h} over {i} input features and batch {b} need {shape:?}",
                        inputs[k + 1]
                    ));
                }
            }
            let (y, state) = (vec![s, d, b, h], vec![d, b, h]);
            numel(&y)?;
            Ok(vec![y, state.clone(), state])
        }
        Op::Gru {
            hidden, direction, ..
        }
        | Op::Rnn {
            hidden, direction, ..
        } => {
            want_inputs(inputs, 5, 5)?;
            let (x, h, d) = (inputs[0], *hidden as usize, direction.count());
            let g = if matches!(op, Op::Gru { .. }) { 3 } else { 1 };
            want_rank(x, 3, "input")?;
            let (s, b, i) = (x[0], x[1], x[2]);
            let want: [(&str, Vec<usize>); 4] = [
                ("W", vec![d, g * h, i]),
                ("R", vec![d, g * h, h]),
                ("bias", vec![d, 2 * g * h]),
                ("initial h", vec![d, b, h]),
            ];
            for (k, (what, shape)) in want.iter().enumerate() {
                if inputs[k + 1] != shape.as_slice() {
                    return Err(format!(
                        "{what} has shape {:?}, {d} direction(s) of hidden size {h} over {i} input features and batch {b} need {shape:?}",
                        inputs[k + 1]
                    ));
                }
            }
            let y = vec![s, d, b, h];
            numel(&y)?;
            Ok(vec![y, vec![d, b, h]])
        }
        Op::Softmax { axis } => {
            want_inputs(inputs, 1, 1)?;
            if *axis as usize >= inputs[0].len() {
                return Err(format!("axis {axis} out of range for {:?}", inputs[0]));
            }
            one(inputs[0].to_vec())
        }
        Op::Reduce { axes, keepdims, .. } => {
            want_inputs(inputs, 1, 1)?;
            let x = inputs[0];
            if axes.windows(2).any(|w| w[0] >= w[1]) || axes.iter().any(|&a| a as usize >= x.len())
            {
                return Err(format!(
                    "axes {axes:?} must be sorted, unique and < rank of {x:?}"
                ));
            }
            let mut out = Vec::new();
            for (i, &d) in x.iter().enumerate() {
                if axes.contains(&(i as u32)) {
                    if *keepdims {
                        out.push(1);
                    }
                } else {
                    out.push(d);
                }
            }
            one(out)
        }
    }
}
