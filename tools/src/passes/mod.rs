//! Graph passes. Each is a [`Pass`] with a name; [`run_all`] logs what each changed (`-v`) and re-validates
//! the graph after each one with the runtime's own validator.
use crate::graph::ToolGraph;
use anyhow::Result;
use tern::ir::{BinOp, Op};

/// A graph rewrite.
pub trait Pass {
    /// Name for logs.
    fn name(&self) -> &'static str;
    /// Rewrites the graph; returns how many rewrites it made.
    fn run(&self, g: &mut ToolGraph) -> Result<usize>;
}

/// Folds per-channel affine ops (inference BatchNormalization) and constant per-channel or scalar
/// additions and multiplications (biases, PP-LCNetV3's learnable affine) into the preceding
/// Conv / ConvTranspose / MatMul's weights and bias.
pub struct FoldBn;
/// Fuses element-wise activations into their producer's epilogue.
pub struct FuseAct;
/// Drops nodes whose results nothing uses, and unreferenced tensors.
pub struct Prune;
/// Turns `x·a + b` with constant scalar or per-channel `a`, `b` (NCHW) into one ChannelAffine pass over the
/// data instead of two (PP-LCNetV3's learnable affine after an activation, which cannot fold into a conv).
pub struct FuseAffine;
/// Fuses a per-channel affine without activation (`x·a + b`: [`FuseAffine`]'s ChannelAffine) that alone
/// reads a float Conv's output into that Conv as its post-activation affine (format 6): PP-LCNetV3's
/// learnable affine after each hard-swish costs one pass over the map fewer, with the same bits. Runs
/// after [`FuseAct`] (the conv's activation is final then); the int8 pipeline runs it on the float
/// convs it keeps. (A conv without a bias gets a zero one, which the format wants before the affine: a
/// −0.0 conv output then becomes +0.0, the one bit that can differ from the two ops.)
pub struct FusePostAffine;
/// Makes a pointwise float Conv whose output only a Quantize reads write int8 itself (format 9): the conv
/// then runs band by band and quantizes each band while it is in cache, and the f32 tensor never exists
/// (PP-OCR det's float input stage ends in a 16 -> 32 pointwise conv: 17 MB of f32 at 736×736). The same
/// integers as the two ops. Runs on quantized graphs, after [`FusePostAffine`].
pub struct FuseQuantizeOut;
/// Fuses a 16-bit function table into the 16-bit conv that alone feeds it (format 10's fourth Q16Conv
/// input, carrying the scale of the codes it reads; a zero bias is added where the conv has none): the table is applied to each output row while it
/// is in cache, and the pre-function tensor is never written (PP-OCR cls: 27 passes over the activations
/// fewer). The same integers. Runs on quantized graphs.
pub struct FuseTable16;
/// Fuses a 16-bit f32 function ([`Op::Q16Unary`]) into the 16-bit conv that alone feeds it and clamps
/// nothing (format 12's [`Op::Q16ConvAct`]): the function reads the sums' real values in the conv's
/// epilogue, so the pre-function tensor is neither rounded to int16 nor written (PP-OCR cls: 18 passes
/// over the activations fewer). Runs on quantized graphs.
pub struct FuseConvAct16;
/// Replaces a Dequantize → Quantize pair between an int8 and an int16 tensor (where layers of the two
/// widths meet) by one integer rescale, [`Op::Requantize`] (format 11): no f32 pass over the tensor.
/// Within one rounding of the pair (the rescale rounds half away from zero once, the pair half to even
/// after an f32 product). Runs on quantized graphs; int8-only pairs keep their form.
pub struct FuseRequantize;
/// Recognizes hard-swish written out element by element — `x·clip(x+3, 0, 6)/6` (PaddlePaddle, PyTorch
/// exports) or `x·HardSigmoid(x; 1/6, 1/2)` — and replaces it by one HardSwish, which `FuseAct` then folds
/// into the producer: four passes over the tensor become none.
pub struct FuseHardSwish;
/// Recognizes SiLU written out — `x·Sigmoid(x)` (PyTorch exports of YOLOv5/v8/X, Paddle's swish) — and
/// replaces it by one Silu, which `FuseAct` then folds into the producer: two passes over the tensor
/// become none (and one int8 table instead of a table and an integer Mul).
pub struct FuseSilu;

/// Turns `Max(x, c)` with one constant value `c` (a floor, as Keras exports `tf.maximum(leaky_relu(x),
/// -0.4)`) into `Clip(x, c, +inf)`: the same values (NaN becomes `c` either way; a ±0 tie may come out
/// with the other sign where `c` was the first operand), an activation that `FuseAct` can fold into its
/// producer, one vector pass in float, one table in int8, instead of a broadcast binary op.
/// (`Min(x, c)` stays: `Clip(NaN, −inf, c)` gives −inf where `Min` gives `c`.)
pub struct ScalarClamp;

/// The rewrites both pipelines start with, in order: folds and recognized functions, activations not
/// yet fused (what int8 calibration observes: every function's input and output).
pub fn rewrite_pipeline() -> Vec<Box<dyn Pass>> {
    vec![
        Box::new(FoldBn),
        Box::new(FuseHardSwish),
        Box::new(FuseSilu),
        Box::new(FuseAffine),
        Box::new(ScalarClamp),
    ]
}

/// The float pipeline of `tern compress`, in order: [`rewrite_pipeline`], then activation and
/// post-activation affine fusion, and pruning.
pub fn float_pipeline() -> Vec<Box<dyn Pass>> {
    let mut p = rewrite_pipeline();
    p.push(Box::new(FuseAct));
    p.push(Box::new(FusePostAffine));
    p.push(Box::new(Prune));
    p
}

/// The passes' names, comma-separated (the artifact's `passes` metadata).
pub fn names(passes: &[Box<dyn Pass>]) -> String {
    passes
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs passes in order, logging each one's effect and validating after each.
pub fn run_all(g: &mut ToolGraph, passes: &[Box<dyn Pass>]) -> Result<()> {
    for p in passes {
        let (n0, m0) = (g.graph.nodes.len(), g.graph.macs());
        let changes = p.run(g)?;
        g.validate()?;
        log::info!(
            "pass {:<8} {changes:>4} rewrite(s); nodes {n0} -> {}, MACs {m0} -> {}",
            p.name(),
            g.graph.nodes.len(),
            g.graph.macs()
        );
    }
    Ok(())
}

/// The single node consuming tensor `t`, if exactly one does and `t` is not a graph output.
fn sole_consumer(g: &ToolGraph, cons: &[Vec<(usize, usize)>], t: u32) -> Option<usize> {
    if g.graph.outputs.contains(&t) {
        return None;
    }
    match cons[t as usize].as_slice() {
        [(n, _)] => Some(*n),
        _ => None,
    }
}

/// Output channels (and how to scale weights per channel) of a producer we can fold into.
fn fold_into(g: &mut ToolGraph, p: usize, scale: Option<&[f32]>, shift: &[f32]) -> bool {
    let node = g.graph.nodes[p].clone();
    if node.inputs.len() > 3 {
        return false; // a conv with a post-activation affine: its output is not weights·x + bias
    }
    // any producer may come here (a BatchNorm after a Reshape or a pool): only one with weights folds
    let Some(&wt) = node.inputs.get(1) else {
        return false;
    };
    let Some(w) = g.konst(wt).map(|w| w.to_vec()) else {
        return false;
    };
    let ws = g.shape(wt);
    let (m, wnew): (usize, Vec<f32>) = match &node.op {
        Op::Conv { act: None, .. } => {
            let m = ws[0];
            let per = w.len() / m;
            let mut wn = w.clone();
            if let Some(s) = scale {
                for (i, v) in wn.iter_mut().enumerate() {
                    *v *= s[i / per];
                }
            }
            (m, wn)
        }
        Op::ConvTranspose { act: None, geom } => {
            let (c, mg, khw) = (ws[0], ws[1], ws[2] * ws[3]);
            let groups = geom.groups as usize;
            let cg = c / groups;
            let m = mg * groups;
            let mut wn = w.clone();
            if let Some(s) = scale {
                for ci in 0..c {
                    for mi in 0..mg {
                        let o = (ci / cg) * mg + mi;
                        for v in &mut wn[(ci * mg + mi) * khw..(ci * mg + mi + 1) * khw] {
                            *v *= s[o];
                        }
                    }
                }
            }
            (m, wn)
        }
        Op::MatMul { act: None } if ws.len() == 2 => {
            let n = ws[1];
            let mut wn = w.clone();
            if let Some(s) = scale {
                for (i, v) in wn.iter_mut().enumerate() {
                    *v *= s[i % n];
                }
            }
            (n, wn)
        }
        _ => return false,
    };
    if shift.len() != m || scale.is_some_and(|s| s.len() != m) {
        return false;
    }
    let old_bias: Vec<f32> = node
        .inputs
        .get(2)
        .and_then(|&b| g.konst(b))
        .map(|b| b.to_vec())
        .unwrap_or(vec![0.0; m]);
    let bias: Vec<f32> = (0..m)
        .map(|i| old_bias[i] * scale.map_or(1.0, |s| s[i]) + shift[i])
        .collect();
    let name = g.graph.nodes[p].name.clone();
    let nw = if scale.is_some() {
        g.add_const(&format!("{name}/W_folded"), &ws, wnew)
    } else {
        wt
    };
    let nb = g.add_const(&format!("{name}/B_folded"), &[m], bias);
    let n = &mut g.graph.nodes[p];
    n.inputs = vec![n.inputs[0], nw, nb];
    true
}

impl Pass for FoldBn {
    fn name(&self) -> &'static str {
        "fold_bn"
    }
    fn run(&self, g: &mut ToolGraph) -> Result<usize> {
        let mut dead = vec![false; g.graph.nodes.len()];
        let mut changes = 0;
        for i in 0..g.graph.nodes.len() {
            let cons = g.consumers();
            let node = g.graph.nodes[i].clone();
            let (x, scale, shift): (u32, Option<Vec<f32>>, Vec<f32>) = match &node.op {
                Op::ChannelAffine { act: None } => {
                    let (Some(s), Some(t)) = (g.konst(node.inputs[1]), g.konst(node.inputs[2]))
                    else {
                        continue;
                    };
                    (node.inputs[0], Some(s.to_vec()), t.to_vec())
                }
                Op::Binary {
                    op: op @ (BinOp::Add | BinOp::Mul),
                    act: None,
                } => {
                    // x + c or x · c where c is one value, or one value per output channel
                    let (a, b) = (node.inputs[0], node.inputs[1]);
                    let (x, c) = if g.konst(b).is_some() {
                        (a, b)
                    } else if g.konst(a).is_some() {
                        (b, a)
                    } else {
                        continue;
                    };
                    let (xs, cs) = (g.shape(x), g.shape(c));
                    if g.shape(node.outputs[0]) != xs {
                        continue;
                    }
                    let numel: usize = cs.iter().product();
                    let Some(p) = g.graph.nodes.iter().position(|n| n.outputs.contains(&x)) else {
                        continue;
                    };
                    let m = match &g.graph.nodes[p].op {
                        Op::Conv { .. } | Op::ConvTranspose { .. } if xs.len() == 4 => xs[1],
                        Op::MatMul { .. } if xs.len() >= 2 => xs[xs.len() - 1],
                        _ => continue,
                    };
                    let per_channel = match &g.graph.nodes[p].op {
                        Op::MatMul { .. } => numel == m && cs.last() == Some(&m),
                        _ => {
                            numel == m
                                && cs.len() >= 3
                                && cs[cs.len() - 3] == m
                                && cs[cs.len() - 2..] == [1, 1]
                        }
                    };
                    let vals: Vec<f32> = match g.konst(c) {
                        Some(v) if numel == 1 => vec![v[0]; m],
                        Some(v) if per_channel => v.to_vec(),
                        _ => continue,
                    };
                    if *op == BinOp::Mul {
                        (x, Some(vals), vec![0.0; m])
                    } else {
                        (x, None, vals)
                    }
                }
                _ => continue,
            };
            if matches!(node.op, Op::ChannelAffine { .. })
                && g.shape(x).len() != 4
                && g.shape(x).len() != 2
            {
                continue;
            }
            let Some(p) = g.graph.nodes.iter().position(|n| n.outputs.contains(&x)) else {
                continue;
            };
            if dead[p] || sole_consumer(g, &cons, x) != Some(i) {
                continue;
            }
            if g.graph.tensors[x as usize].quant.is_some() {
                // an imported quantized model rounds `x` to int8 before this op: keep them apart
                continue;
            }
            if matches!(g.graph.nodes[p].op, Op::MatMul { .. })
                && matches!(node.op, Op::ChannelAffine { .. })
                && g.shape(x).len() != 2
            {
                continue;
            }
            if fold_into(g, p, scale.as_deref(), &shift) {
                g.graph.nodes[p].outputs = node.outputs.clone();
                dead[i] = true;
                changes += 1;
                log::debug!(
                    "fold_bn: folded {} \"{}\" into \"{}\"",
                    node.op.name(),
                    node.name,
                    g.graph.nodes[p].name
                );
            }
        }
        // a producer that took over a later node's output keeps its place in the order, which stays valid
        // because that output's consumers all come after the removed node
        g.compact(&dead);
        Ok(changes)
    }
}

impl Pass for FuseAct {
    fn name(&self) -> &'static str {
        "fuse_act"
    }
    fn run(&self, g: &mut ToolGraph) -> Result<usize> {
        let mut dead = vec![false; g.graph.nodes.len()];
        let mut changes = 0;
        for i in 0..g.graph.nodes.len() {
            let Op::Unary(f) = g.graph.nodes[i].op else {
                continue;
            };
            let x = g.graph.nodes[i].inputs[0];
            let cons = g.consumers();
            if sole_consumer(g, &cons, x) != Some(i) {
                continue;
            }
            let Some(p) = g.graph.nodes.iter().position(|n| n.outputs.contains(&x)) else {
                continue;
            };
            // (a conv with a post-activation affine applies its act before that affine)
            if dead[p] || g.graph.nodes[p].outputs.len() != 1 || g.graph.nodes[p].inputs.len() > 3 {
                continue;
            }
            let outs = g.graph.nodes[i].outputs.clone();
            let pn = &mut g.graph.nodes[p];
            if let Some(slot @ None) = pn.op.act_mut() {
                *slot = Some(f);
                pn.outputs = outs;
                dead[i] = true;
                changes += 1;
                log::debug!(
                    "fuse_act: {} into \"{}\"",
                    g.graph.nodes[i].op.name(),
                    g.graph.nodes[p].name
                );
            }
        }
        g.compact(&dead);
        Ok(changes)
    }
}

impl Pass for Prune {
    fn name(&self) -> &'static str {
        "prune"
    }
    fn run(&self, g: &mut ToolGraph) -> Result<usize> {
        let mut needed = vec![false; g.graph.tensors.len()];
        for &o in &g.graph.outputs {
            needed[o as usize] = true;
        }
        let mut dead = vec![false; g.graph.nodes.len()];
        for (i, n) in g.graph.nodes.iter().enumerate().rev() {
            if n.outputs.iter().any(|&o| needed[o as usize]) {
                for &t in &n.inputs {
                    needed[t as usize] = true;
                }
            } else {
                dead[i] = true;
                log::debug!(
                    "prune: dropping unused node \"{}\" ({})",
                    n.name,
                    n.op.name()
                );
            }
        }
        let (t0, changes) = (g.graph.tensors.len(), dead.iter().filter(|&&d| d).count());
        g.compact(&dead);
        log::debug!("prune: tensors {t0} -> {}", g.graph.tensors.len());
        Ok(changes)
    }
}

/// The scalar value of a constant with one element.
fn scalar(g: &ToolGraph, t: u32) -> Option<f32> {
    match g.konst(t) {
        Some([v]) => Some(*v),
        _ => None,
    }
}

impl Pass for FuseSilu {
    fn name(&self) -> &'static str {
        "fuse_silu"
    }
    fn run(&self, g: &mut ToolGraph) -> Result<usize> {
        let mut dead = vec![false; g.graph.nodes.len()];
        let mut changes = 0;
        let cons = g.consumers();
        for i in 0..g.graph.nodes.len() {
            let n = &g.graph.nodes[i];
            let Op::Binary {
                op: BinOp::Mul,
                act: None,
            } = n.op
            else {
                continue;
            };
            // Mul(x, Sigmoid(x)) in either order, the Sigmoid read by this Mul alone
            let found = [(n.inputs[0], n.inputs[1]), (n.inputs[1], n.inputs[0])]
                .into_iter()
                .find_map(|(x, gate)| {
                    let gp = g
                        .graph
                        .nodes
                        .iter()
                        .position(|m| m.outputs.contains(&gate))?;
                    let gn = &g.graph.nodes[gp];
                    (matches!(gn.op, Op::Unary(tern::ir::Unary::Sigmoid))
                        && gn.inputs[0] == x
                        && x != gate
                        && !dead[gp]
                        && sole_consumer(g, &cons, gate) == Some(i))
                    .then_some((x, gp))
                });
            let Some((x, gp)) = found else { continue };
            // the Mul becomes the Silu (its output keeps its name and readers); the Sigmoid goes
            let n = &mut g.graph.nodes[i];
            n.op = Op::Unary(tern::ir::Unary::Silu);
            n.inputs = vec![x];
            dead[gp] = true;
            changes += 1;
        }
        g.compact(&dead);
        Ok(changes)
    }
}

impl Pass for ScalarClamp {
    fn name(&self) -> &'static str {
        "scalar_clamp"
    }
    fn run(&self, g: &mut ToolGraph) -> Result<usize> {
        let mut changes = 0;
        for i in 0..g.graph.nodes.len() {
            let n = &g.graph.nodes[i];
            let Op::Binary {
                op: BinOp::Max,
                act: None,
            } = n.op
            else {
                continue;
            };
            let (a, b) = (n.inputs[0], n.inputs[1]);
            let (x, c) = if g.konst(b).is_some_and(|v| v.len() == 1) {
                (a, b)
            } else if g.konst(a).is_some_and(|v| v.len() == 1) {
                (b, a)
            } else {
                continue;
            };
            // the constant may not widen the result (a [1, 1, 1, 1] floor on a vector)
            if g.shape(x) != g.shape(n.outputs[0]) || g.graph.tensors[x as usize].quant.is_some() {
                continue;
            }
            let v = g.konst(c).map_or(0.0, |v| v[0]);
            if v.is_nan() {
                continue; // max(x, NaN) is x by f32::max, which no finite clamp bound says
            }
            let n = &mut g.graph.nodes[i];
            n.op = Op::Unary(tern::ir::Unary::Clip {
                min: v,
                max: f32::INFINITY,
            });
            n.inputs = vec![x];
            changes += 1;
        }
        Ok(changes)
    }
}

impl Pass for FuseHardSwish {
    fn name(&self) -> &'static str {
        "fuse_hswish"
    }
    fn run(&self, g: &mut ToolGraph) -> Result<usize> {
        let mut dead = vec![false; g.graph.nodes.len()];
        let mut changes = 0;
        let producer =
            |g: &ToolGraph, t: u32| g.graph.nodes.iter().position(|n| n.outputs.contains(&t));
        for i in 0..g.graph.nodes.len() {
            let cons = g.consumers();
            let n = g.graph.nodes[i].clone();
            // the final node: Div(m, 6) or Mul(m, 1/6), or Mul(x, hardsigmoid(x))
            let (m, mut chain): (u32, Vec<usize>) = match n.op {
                Op::Binary {
                    op: BinOp::Div,
                    act: None,
                } if scalar(g, n.inputs[1]).is_some_and(|v| v == 6.0) => (n.inputs[0], vec![]),
                Op::Binary {
                    op: BinOp::Mul,
                    act: None,
                } if scalar(g, n.inputs[1]).is_some_and(|v| (v - 1.0 / 6.0).abs() < 1e-7) => {
                    (n.inputs[0], vec![])
                }
                Op::Binary {
                    op: BinOp::Mul,
                    act: None,
                } => (n.outputs[0], vec![]),
                _ => continue,
            };
            let (mul_idx, x, gate) = if m == n.outputs[0] {
                (i, n.inputs[0], n.inputs[1])
            } else {
                let Some(p) = producer(g, m) else { continue };
                if dead[p] || sole_consumer(g, &cons, m) != Some(i) {
                    continue;
                }
                let pn = &g.graph.nodes[p];
                if !matches!(
                    pn.op,
                    Op::Binary {
                        op: BinOp::Mul,
                        act: None
                    }
                ) {
                    continue;
                }
                chain.push(p);
                (p, pn.inputs[0], pn.inputs[1])
            };
            // the gate is one of the two Mul inputs; try both orders
            let mut matched = None;
            for (x, gate) in [(x, gate), (gate, x)] {
                let Some(gp) = producer(g, gate) else {
                    continue;
                };
                if dead[gp] || sole_consumer(g, &cons, gate) != Some(mul_idx) {
                    continue;
                }
                let gn = &g.graph.nodes[gp];
                match gn.op {
                    Op::Unary(tern::ir::Unary::HardSigmoid { alpha, beta })
                        if (alpha - 1.0 / 6.0).abs() < 1e-6
                            && beta == 0.5
                            && gn.inputs[0] == x
                            && m == n.outputs[0] =>
                    {
                        matched = Some((x, vec![gp]));
                    }
                    Op::Unary(tern::ir::Unary::Clip { min, max })
                        if min == 0.0 && max == 6.0 && m != n.outputs[0] =>
                    {
                        let a = gn.inputs[0];
                        let Some(ap) = producer(g, a) else { continue };
                        let an = &g.graph.nodes[ap];
                        let adds_three = matches!(
                            an.op,
                            Op::Binary {
                                op: BinOp::Add,
                                act: None
                            }
                        ) && ((an.inputs[0] == x
                            && scalar(g, an.inputs[1]) == Some(3.0))
                            || (an.inputs[1] == x && scalar(g, an.inputs[0]) == Some(3.0)));
                        if adds_three && !dead[ap] && sole_consumer(g, &cons, a) == Some(gp) {
                            matched = Some((x, vec![gp, ap]));
                        }
                    }
                    _ => {}
                }
                if matched.is_some() {
                    break;
                }
            }
            let Some((x, more)) = matched else { continue };
            chain.extend(more);
            for &c in &chain {
                dead[c] = true;
            }
            let last = &mut g.graph.nodes[i];
            last.op = Op::Unary(tern::ir::Unary::HardSwish);
            last.inputs = vec![x];
            changes += 1;
        }
        g.compact(&dead);
        Ok(changes)
    }
}

/// Per-channel values of a constant that is a scalar or `[C,1,1]`/`[1,C,1,1]` against an NCHW tensor.
fn channel_values(g: &ToolGraph, c: u32, channels: usize) -> Option<Vec<f32>> {
    let v = g.konst(c)?;
    let cs = g.shape(c);
    if v.len() == 1 {
        return Some(vec![v[0]; channels]);
    }
    let ok = v.len() == channels
        && cs.len() >= 3
        && cs[cs.len() - 3] == channels
        && cs[cs.len() - 2..] == [1, 1];
    ok.then(|| v.to_vec())
}

impl Pass for FusePostAffine {
    fn name(&self) -> &'static str {
        "fuse_post_affine"
    }
    fn run(&self, g: &mut ToolGraph) -> Result<usize> {
        let mut dead = vec![false; g.graph.nodes.len()];
        let mut changes = 0;
        for i in 0..g.graph.nodes.len() {
            let node = g.graph.nodes[i].clone();
            if !matches!(node.op, Op::ChannelAffine { act: None }) {
                continue;
            }
            let (x, sc, sh) = (node.inputs[0], node.inputs[1], node.inputs[2]);
            let cons = g.consumers();
            if sole_consumer(g, &cons, x) != Some(i) || g.graph.tensors[x as usize].quant.is_some()
            {
                continue;
            }
            let Some(p) = g.graph.nodes.iter().position(|n| n.outputs.contains(&x)) else {
                continue;
            };
            let pn = g.graph.nodes[p].clone();
            let xs = g.shape(x);
            let m = xs.get(1).copied().unwrap_or(0);
            if dead[p]
                || !matches!(pn.op, Op::Conv { .. })
                || pn.inputs.len() > 3
                || pn.outputs.len() != 1
                || xs.len() != 4
                || g.konst(sc).is_none()
                || g.konst(sh).is_none()
                || g.shape(sc) != [m]
                || g.shape(sh) != [m]
            {
                continue;
            }
            // the bias comes first (required before the affine's inputs)
            let bias = match pn.inputs.get(2) {
                Some(&b) => b,
                None => g.add_const(&format!("{}/bias", pn.name), &[m], vec![0.0; m]),
            };
            let conv = &mut g.graph.nodes[p];
            conv.inputs = vec![pn.inputs[0], pn.inputs[1], bias, sc, sh];
            conv.outputs = node.outputs.clone();
            dead[i] = true;
            changes += 1;
            log::debug!("fuse_post_affine: \"{}\" into \"{}\"", node.name, pn.name);
        }
        // the conv keeps its place: the affine's consumers all come after it (as in fold_bn)
        g.compact(&dead);
        Ok(changes)
    }
}

impl Pass for FuseQuantizeOut {
    fn name(&self) -> &'static str {
        "fuse_quantize_out"
    }
    fn run(&self, g: &mut ToolGraph) -> Result<usize> {
        let mut dead = vec![false; g.graph.nodes.len()];
        let mut changes = 0;
        let cons = g.consumers();
        for (i, d) in dead.iter_mut().enumerate() {
            let node = &g.graph.nodes[i];
            if !matches!(node.op, Op::Quantize) {
                continue;
            }
            let (x, y) = (node.inputs[0], node.outputs[0]);
            // (an int16 output stays a Quantize: format 9's fused form writes int8)
            let per_tensor = g.graph.tensors[y as usize].dtype == tern::ir::DType::I8
                && g.graph.tensors[y as usize]
                    .quant
                    .as_ref()
                    .is_some_and(|q| q.axis.is_none() && q.scale.len() == 1);
            if sole_consumer(g, &cons, x) != Some(i) || !per_tensor {
                continue;
            }
            let Some(p) = g.graph.nodes.iter().position(|n| n.outputs.contains(&x)) else {
                continue;
            };
            let pn = &g.graph.nodes[p];
            let pointwise =
                matches!(&pn.op, Op::Conv { geom, .. } if *geom == tern::ir::Conv2d::pointwise(1));
            let float_out = g.graph.tensors[x as usize].dtype == tern::ir::DType::F32;
            // (a 1 -> 1 channel conv runs as depthwise unfused, which rounds its bias in otherwise than
            // the fused GEMM: left alone, the fusion keeps the two ops' integers exactly)
            let one_to_one = pn
                .inputs
                .get(1)
                .is_some_and(|&w| g.shape(w).iter().take(2).all(|&d| d == 1));
            if !pointwise
                || !float_out
                || one_to_one
                || pn.outputs.len() != 1
                || g.shape(pn.inputs[0]).len() != 4
            {
                continue;
            }
            log::debug!(
                "fuse_quantize_out: \"{}\" writes int8 (\"{}\")",
                pn.name,
                node.name
            );
            g.graph.nodes[p].outputs = vec![y];
            *d = true;
            changes += 1;
        }
        // the conv keeps its place: the Quantize's consumers all come after it
        g.compact(&dead);
        Ok(changes)
    }
}

impl Pass for FuseConvAct16 {
    fn name(&self) -> &'static str {
        "fuse_conv_act16"
    }
    fn run(&self, g: &mut ToolGraph) -> Result<usize> {
        let mut dead = vec![false; g.graph.nodes.len()];
        let mut changes = 0;
        let cons = g.consumers();
        for (i, d) in dead.iter_mut().enumerate() {
            let Op::Q16Unary(act) = g.graph.nodes[i].op else {
                continue;
            };
            let (x, y) = (g.graph.nodes[i].inputs[0], g.graph.nodes[i].outputs[0]);
            let Some(p) = g.graph.nodes.iter().position(|n| n.outputs.contains(&x)) else {
                continue;
            };
            let pn = &g.graph.nodes[p];
            let Op::Q16Conv { geom, lo, hi } = &pn.op else {
                continue;
            };
            // (a clamp between the conv and the function has no place in the fused form)
            if pn.inputs.len() > 3
                || (*lo, *hi) != (i16::MIN, i16::MAX)
                || sole_consumer(g, &cons, x) != Some(i)
            {
                continue;
            }
            log::debug!(
                "fuse_conv_act16: \"{}\" applies \"{}\" to its sums",
                pn.name,
                g.graph.nodes[i].name
            );
            g.graph.nodes[p].op = Op::Q16ConvAct {
                geom: geom.clone(),
                act,
                lo: i16::MIN,
                hi: i16::MAX,
            };
            g.graph.nodes[p].outputs = vec![y];
            *d = true;
            changes += 1;
        }
        // the conv keeps its place: the function's consumers all come after it
        g.compact(&dead);
        Ok(changes)
    }
}

impl Pass for FuseTable16 {
    fn name(&self) -> &'static str {
        "fuse_table16"
    }
    fn run(&self, g: &mut ToolGraph) -> Result<usize> {
        let mut dead = vec![false; g.graph.nodes.len()];
        let mut changes = 0;
        let cons = g.consumers();
        for (i, d) in dead.iter_mut().enumerate() {
            let node = &g.graph.nodes[i];
            if !matches!(node.op, Op::Q16Lut) {
                continue;
            }
            let (x, y, table) = (node.inputs[0], node.outputs[0], node.inputs[1]);
            let Some(p) = g.graph.nodes.iter().position(|n| n.outputs.contains(&x)) else {
                continue;
            };
            let pn = &g.graph.nodes[p];
            if !matches!(pn.op, Op::Q16Conv { .. })
                || pn.inputs.len() > 3
                || sole_consumer(g, &cons, x) != Some(i)
            {
                continue;
            }
            let m = g.shape(pn.inputs[1])[0];
            if pn.inputs.len() == 2 {
                let name = format!("{}/B_zero", pn.name);
                let b = g.add_int_const(&name, &[m], tern::ir::DType::I32, None, vec![0; 4 * m]);
                g.graph.nodes[p].inputs.push(b);
            }
            log::debug!(
                "fuse_table16: \"{}\" applies \"{}\"'s table",
                g.graph.nodes[p].name,
                g.graph.nodes[i].name
            );
            // the table carries the scale of the codes it reads (the conv requantizes to it): that tensor
            // is gone
            let pre = g.graph.tensors[x as usize].quant.clone();
            g.graph.tensors[table as usize].quant = pre;
            g.graph.nodes[p].inputs.push(table);
            g.graph.nodes[p].outputs = vec![y];
            *d = true;
            changes += 1;
        }
        // the conv keeps its place: the table's consumers all come after it
        g.compact(&dead);
        Ok(changes)
    }
}

impl Pass for FuseRequantize {
    fn name(&self) -> &'static str {
        "fuse_requantize"
    }
    fn run(&self, g: &mut ToolGraph) -> Result<usize> {
        use tern::ir::DType;
        let dtype = |g: &ToolGraph, t: u32| g.graph.tensors[t as usize].dtype;
        let mut changes = 0;
        for i in 0..g.graph.nodes.len() {
            let node = &g.graph.nodes[i];
            if !matches!(node.op, Op::Quantize) {
                continue;
            }
            let (f, y) = (node.inputs[0], node.outputs[0]);
            let Some(d) = g.graph.nodes[..i]
                .iter()
                .position(|n| n.outputs.contains(&f))
            else {
                continue;
            };
            let dn = &g.graph.nodes[d];
            let x = dn.inputs[0];
            let ints = |t: DType| matches!(t, DType::I8 | DType::I16);
            let wide = dtype(g, x) == DType::I16 || dtype(g, y) == DType::I16;
            let per_tensor = |t: u32| {
                g.graph.tensors[t as usize]
                    .quant
                    .as_ref()
                    .is_some_and(|q| q.axis.is_none() && q.scale.len() == 1)
            };
            let scales = (
                g.graph.tensors[x as usize].quant.as_ref(),
                g.graph.tensors[y as usize].quant.as_ref(),
            );
            let encodable = match scales {
                (Some(a), Some(b)) => tern::ir::quant::FixedMultiplier::from_real(
                    a.scale[0] as f64 / b.scale[0] as f64,
                )
                .is_some(),
                _ => false,
            };
            if !matches!(dn.op, Op::Dequantize)
                || !wide
                || !ints(dtype(g, x))
                || !per_tensor(x)
                || !per_tensor(y)
                || !encodable
            {
                continue;
            }
            log::debug!(
                "fuse_requantize: \"{}\" rescales \"{}\"",
                g.graph.nodes[i].name,
                g.graph.tensors[x as usize].name
            );
            g.graph.nodes[i].op = Op::Requantize;
            g.graph.nodes[i].inputs = vec![x];
            changes += 1;
        }
        // (a Dequantize left without readers goes with Prune)
        Ok(changes)
    }
}

impl Pass for FuseAffine {
    fn name(&self) -> &'static str {
        "fuse_affine"
    }
    fn run(&self, g: &mut ToolGraph) -> Result<usize> {
        let mut dead = vec![false; g.graph.nodes.len()];
        let mut changes = 0;
        for i in 0..g.graph.nodes.len() {
            let n = g.graph.nodes[i].clone();
            if !matches!(
                n.op,
                Op::Binary {
                    op: BinOp::Add,
                    act: None
                }
            ) {
                continue;
            }
            let (y, b) = if g.konst(n.inputs[1]).is_some() {
                (n.inputs[0], n.inputs[1])
            } else {
                (n.inputs[1], n.inputs[0])
            };
            let cons = g.consumers();
            let Some(p) = g.graph.nodes.iter().position(|m| m.outputs.contains(&y)) else {
                continue;
            };
            let pn = g.graph.nodes[p].clone();
            if dead[p]
                || sole_consumer(g, &cons, y) != Some(i)
                || !matches!(
                    pn.op,
                    Op::Binary {
                        op: BinOp::Mul,
                        act: None
                    }
                )
            {
                continue;
            }
            let (x, a) = if g.konst(pn.inputs[1]).is_some() {
                (pn.inputs[0], pn.inputs[1])
            } else {
                (pn.inputs[1], pn.inputs[0])
            };
            let xs = g.shape(x);
            if g.konst(x).is_some() || xs.len() != 4 || g.shape(n.outputs[0]) != xs {
                continue;
            }
            let (Some(av), Some(bv)) = (channel_values(g, a, xs[1]), channel_values(g, b, xs[1]))
            else {
                continue;
            };
            let si = g.add_const(&format!("{}/scale", n.name), &[xs[1]], av);
            let ti = g.add_const(&format!("{}/shift", n.name), &[xs[1]], bv);
            let node = &mut g.graph.nodes[i];
            node.op = Op::ChannelAffine { act: None };
            node.inputs = vec![x, si, ti];
            dead[p] = true;
            changes += 1;
        }
        g.compact(&dead);
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern::ir::{Conv2d, Unary};

    /// `Max(x, c)` with one constant value, in either operand order (Keras' `tf.maximum(leaky_relu(x),
    /// -0.4)`), becomes a Clip that gives `max`'s bits here (NaN to `c`, infinities, signed zeros of x,
    /// values at and beside `c`); a per-channel constant or a `Min` stays a binary op.
    #[test]
    fn a_scalar_floor_becomes_a_clip() {
        let name = |s: &str| vec![s.to_string()];
        let max = Op::Binary {
            op: BinOp::Max,
            act: None,
        };
        let build = |first: bool, cshape: &[usize], cval: Vec<f32>, op: Op| {
            let mut g = ToolGraph::default();
            let x = g.add_tensor("x", &[1, 2, 2, 3]);
            g.graph.inputs.push(x);
            let c = g.add_const("c", cshape, cval);
            let ins = if first { vec![c, x] } else { vec![x, c] };
            let y = g.emit("max", op, ins, &name("y"), None).unwrap()[0];
            g.graph.outputs.push(y);
            g
        };
        let xs = vec![
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            0.0,
            -0.4,
            -0.39,
            -0.41,
            2.5,
            -7.0,
            1e-30,
            -1e-30,
        ];
        for first in [false, true] {
            let mut g = build(first, &[1, 1, 1, 1], vec![-0.4], max.clone());
            let before = crate::quant::outputs(&g, &[vec![xs.clone()]]).unwrap();
            assert_eq!(ScalarClamp.run(&mut g).unwrap(), 1);
            let after = crate::quant::outputs(&g, &[vec![xs.clone()]]).unwrap();
            assert!(matches!(g.graph.nodes[0].op, Op::Unary(Unary::Clip { .. })));
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&before[0][0]),
                bits(&after[0][0]),
                "constant first: {first}"
            );
            let want: Vec<f32> = xs
                .iter()
                .map(|&v| if v.is_nan() { -0.4 } else { v.max(-0.4) })
                .collect();
            assert_eq!(after[0][0], want);
        }
        let min = Op::Binary {
            op: BinOp::Min,
            act: None,
        };
        for mut g in [
            build(false, &[1, 2, 1, 1], vec![0.0, 1.0], max.clone()),
            build(false, &[1], vec![0.0], min),
        ] {
            assert_eq!(ScalarClamp.run(&mut g).unwrap(), 0);
        }
    }

    /// A BatchNorm after the activation (Keras' `Conv2D → ReLU → BatchNormalization`, openWakeWord's
    /// speech embedding model): fold_bn cannot fold it into the ReLU, which has no weights (it indexed
    /// the missing weight input and panicked); the affine then rides on the conv after its activation,
    /// and the outputs equal the float64 computation of conv, max(·, 0), then s·y + t.
    #[test]
    fn batchnorm_after_an_activation_applies_after_it() {
        let mut g = ToolGraph::default();
        let x = g.add_tensor("x", &[1, 2, 3, 3]);
        g.graph.inputs.push(x);
        let wv: Vec<f32> = (0..3 * 2).map(|i| (i as f32 - 2.5) / 3.0).collect();
        let w = g.add_const("w", &[3, 2, 1, 1], wv.clone());
        let name = |s: &str| vec![s.to_string()];
        let conv = Op::Conv {
            geom: Conv2d::same(1),
            act: None,
        };
        let y = g.emit("conv", conv, vec![x, w], &name("y"), None).unwrap()[0];
        let r = Op::Unary(Unary::Relu);
        let r = g.emit("relu", r, vec![y], &name("r"), None).unwrap()[0];
        let (sv, tv) = (vec![0.5f32, -2.0, 1.25], vec![0.1f32, 0.2, -0.3]);
        let sc = g.add_const("s", &[3], sv.clone());
        let sh = g.add_const("t", &[3], tv.clone());
        let bn = Op::ChannelAffine { act: None };
        let z = g.emit("bn", bn, vec![r, sc, sh], &name("z"), None).unwrap()[0];
        g.graph.outputs.push(z);
        run_all(&mut g, &float_pipeline()).unwrap();
        let ops: Vec<&Op> = g.graph.nodes.iter().map(|n| &n.op).collect();
        assert!(
            matches!(
                ops[..],
                [Op::Conv {
                    act: Some(Unary::Relu),
                    ..
                }]
            ),
            "{ops:?}"
        );
        let xs: Vec<f32> = (0..18).map(|i| ((i * 7 % 11) as f32 - 5.0) / 2.0).collect();
        let got = crate::quant::outputs(&g, &[vec![xs.clone()]]).unwrap();
        for o in 0..3 {
            for p in 0..9 {
                let acc: f64 = (0..2)
                    .map(|c| wv[o * 2 + c] as f64 * xs[c * 9 + p] as f64)
                    .sum();
                let want = acc.max(0.0) * sv[o] as f64 + tv[o] as f64;
                let v = got[0][0][o * 9 + p] as f64;
                assert!(
                    (v - want).abs() < 1e-5,
                    "channel {o} pixel {p}: {v} vs {want}"
                );
            }
        }
    }

    /// `conv → hard-swish → ·a + b` (per-channel constants, PP-LCNetV3's learnable affine) becomes one
    /// conv carrying the affine after its activation, and gives the same bits as the conv followed by a
    /// ChannelAffine (the pipeline without the fusion); with the conv's output read by another node too,
    /// nothing is fused.
    #[test]
    fn post_affine_fuses_into_the_conv_with_the_same_bits() {
        for shared in [false, true] {
            let mut g = ToolGraph::default();
            let x = g.add_tensor("x", &[1, 3, 6, 7]);
            g.graph.inputs.push(x);
            let wv: Vec<f32> = (0..4 * 3 * 9)
                .map(|i| ((i * 37 % 19) as f32 - 9.0) / 11.0)
                .collect();
            let w = g.add_const("w", &[4, 3, 3, 3], wv);
            let b = g.add_const("b", &[4], vec![0.5, -0.25, 1.0, 0.0]);
            let geom = Conv2d::same(3);
            let name = |s: &str| vec![s.to_string()];
            let conv = Op::Conv { geom, act: None };
            let y = g
                .emit("conv", conv, vec![x, w, b], &name("y"), None)
                .unwrap()[0];
            let hs = Op::Unary(Unary::HardSwish);
            let h = g.emit("hs", hs, vec![y], &name("h"), None).unwrap()[0];
            let a = g.add_const("a", &[1, 4, 1, 1], vec![1.5, -0.7, 0.3, 2.0]);
            let c = g.add_const("c", &[1, 4, 1, 1], vec![0.1, 0.2, -0.3, 0.4]);
            let mul = Op::Binary {
                op: BinOp::Mul,
                act: None,
            };
            let add = Op::Binary {
                op: BinOp::Add,
                act: None,
            };
            let m = g.emit("mul", mul, vec![h, a], &name("m"), None).unwrap()[0];
            let z = g.emit("add", add, vec![m, c], &name("z"), None).unwrap()[0];
            g.graph.outputs.push(z);
            if shared {
                g.graph.outputs.push(h);
            }
            let mut apart = g.clone();
            let mut plain = rewrite_pipeline();
            plain.push(Box::new(FuseAct));
            plain.push(Box::new(Prune));
            run_all(&mut apart, &plain).unwrap();
            run_all(&mut g, &float_pipeline()).unwrap();
            let ops: Vec<(&Op, usize)> = g
                .graph
                .nodes
                .iter()
                .map(|n| (&n.op, n.inputs.len()))
                .collect();
            if shared {
                assert!(ops.iter().all(|(_, k)| *k <= 3), "{ops:?}");
                continue;
            }
            assert!(
                matches!(
                    ops[..],
                    [(
                        Op::Conv {
                            act: Some(Unary::HardSwish),
                            ..
                        },
                        5
                    )]
                ),
                "{ops:?}"
            );
            let xs: Vec<f32> = (0..3 * 42)
                .map(|i| ((i * 53 % 31) as f32 - 15.0) / 4.0)
                .collect();
            let fused = crate::quant::outputs(&g, &[vec![xs.clone()]]).unwrap();
            let two = crate::quant::outputs(&apart, &[vec![xs]]).unwrap();
            assert_eq!(fused[0][0].len(), 4 * 42);
            assert!(
                fused[0][0]
                    .iter()
                    .zip(&two[0][0])
                    .all(|(p, q)| p.to_bits() == q.to_bits()),
                "{:?} vs {:?}",
                fused[0][0],
                two[0][0]
            );
        }
    }

    /// `conv → y; y·Sigmoid(y)` (either operand order) becomes a conv with a fused Silu, and the graph
    /// computes x·logistic(x) of the conv in float64 to f32 accuracy; a Sigmoid that something else
    /// also reads (a graph output here) is left alone.
    #[test]
    fn silu_written_out_fuses_into_the_conv() {
        for (swap, shared) in [(false, false), (true, false), (false, true)] {
            let mut g = ToolGraph::default();
            let x = g.add_tensor("x", &[1, 2, 3, 3]);
            g.graph.inputs.push(x);
            let w = g.add_const("w", &[2, 2, 1, 1], vec![1.5, -0.5, 0.25, 2.0]);
            let geom = Conv2d::pointwise(1);
            let name = |s: &str| vec![s.to_string()];
            let conv = Op::Conv { geom, act: None };
            let y = g.emit("conv", conv, vec![x, w], &name("y"), None).unwrap()[0];
            let sig = Op::Unary(Unary::Sigmoid);
            let s = g.emit("sig", sig, vec![y], &name("s"), None).unwrap()[0];
            let mul = Op::Binary {
                op: BinOp::Mul,
                act: None,
            };
            let ins = if swap { vec![s, y] } else { vec![y, s] };
            let z = g.emit("mul", mul, ins, &name("z"), None).unwrap()[0];
            g.graph.outputs.push(z);
            if shared {
                g.graph.outputs.push(s);
            }
            run_all(&mut g, &float_pipeline()).unwrap();
            let ops: Vec<&Op> = g.graph.nodes.iter().map(|n| &n.op).collect();
            if shared {
                assert!(
                    ops.iter().any(|o| matches!(o, Op::Unary(Unary::Sigmoid))),
                    "{ops:?}"
                );
                continue;
            }
            assert!(
                matches!(
                    ops[..],
                    [Op::Conv {
                        act: Some(Unary::Silu),
                        ..
                    }]
                ),
                "{ops:?}"
            );
            let xs: Vec<f32> = (0..18).map(|i| i as f32 * 0.7 - 6.0).collect();
            let got = crate::quant::outputs(&g, &[vec![xs.clone()]]).unwrap();
            for c in 0..2 {
                for p in 0..9 {
                    let (a, b) = ([1.5, 0.25][c], [-0.5, 2.0][c]);
                    let v = a * xs[p] as f64 + b * xs[9 + p] as f64;
                    let want = v / (1.0 + (-v).exp());
                    let e = (got[0][0][c * 9 + p] as f64 - want).abs();
                    assert!(
                        e <= 1e-6 * want.abs() + 1e-6,
                        "{} vs {want}",
                        got[0][0][c * 9 + p]
                    );
                }
            }
        }
    }

    /// `pointwise conv → Quantize` becomes one conv writing int8 with the same bits after the Dequantize
    /// (one node and the f32 tensor fewer); a 3×3 conv keeps its Quantize, and the loader refuses a 3×3
    /// conv writing int8, naming the rule.
    #[test]
    fn a_pointwise_conv_absorbs_its_quantize() {
        for k in [1u32, 3] {
            let mut g = ToolGraph::default();
            let x = g.add_tensor("x", &[1, 4, 6, 5]);
            g.graph.inputs.push(x);
            let wv: Vec<f32> = (0..3 * 4 * (k * k) as usize)
                .map(|i| ((i * 37 % 19) as f32 - 9.0) / 7.0)
                .collect();
            let w = g.add_const("w", &[3, 4, k as usize, k as usize], wv);
            let b = g.add_const("b", &[3], vec![0.5, -0.25, 1.0]);
            let geom = Conv2d::same(k);
            let name = |s: &str| vec![s.to_string()];
            let conv = Op::Conv {
                geom,
                act: Some(Unary::Relu),
            };
            let y = g
                .emit("conv", conv, vec![x, w, b], &name("y"), None)
                .unwrap()[0];
            let q = g
                .emit("q", Op::Quantize, vec![y], &name("yq"), None)
                .unwrap()[0];
            let tq = &mut g.graph.tensors[q as usize];
            tq.dtype = tern::ir::DType::I8;
            tq.quant = Some(tern::ir::QParams {
                scale: vec![0.03],
                zero_point: vec![-5],
                axis: None,
            });
            let d = g
                .emit("dq", Op::Dequantize, vec![q], &name("out"), None)
                .unwrap()[0];
            g.graph.outputs.push(d);
            g.validate().unwrap();
            let apart = g.clone();
            let changes = FuseQuantizeOut.run(&mut g).unwrap();
            g.validate().unwrap();
            if k == 3 {
                assert_eq!(changes, 0);
                assert_eq!(g.graph.nodes.len(), 3);
                // by hand: the conv writes the int8 tensor
                let mut bad = g.clone();
                bad.graph.nodes[0].outputs = vec![q];
                bad.graph.nodes.remove(1);
                let e = bad.validate().unwrap_err().to_string();
                assert!(e.contains("conv") && e.contains("pointwise"), "{e}");
                continue;
            }
            assert_eq!(changes, 1);
            let ops: Vec<&str> = g.graph.nodes.iter().map(|n| n.op.name()).collect();
            assert_eq!(ops, ["Conv", "Dequantize"]);
            // (compact renumbers the tensors: by name)
            let out = g.graph.nodes[0].outputs[0] as usize;
            assert_eq!(g.graph.tensors[out].name, "yq");
            assert_eq!(g.graph.tensors.len(), apart.graph.tensors.len() - 1);
            let xs: Vec<f32> = (0..4 * 30)
                .map(|i| ((i * 53 % 31) as f32 - 15.0) / 4.0)
                .collect();
            let fused = crate::quant::outputs(&g, &[vec![xs.clone()]]).unwrap();
            let two = crate::quant::outputs(&apart, &[vec![xs]]).unwrap();
            assert_eq!(fused[0][0].len(), 3 * 30);
            assert!(fused[0][0]
                .iter()
                .zip(&two[0][0])
                .all(|(a, b)| a.to_bits() == b.to_bits()));
            // (the codes span the grid: not all one value)
            assert!(fused[0][0].iter().any(|&v| v != fused[0][0][0]));
        }
    }
}
