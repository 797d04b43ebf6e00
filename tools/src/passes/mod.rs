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

/// Folds per-channel affine ops (inference BatchNormalization) and constant bias additions into the
/// preceding Conv / ConvTranspose / MatMul's weights and bias.
pub struct FoldBn;
/// Fuses element-wise activations into their producer's epilogue.
pub struct FuseAct;
/// Drops nodes whose results nothing uses, and unreferenced tensors.
pub struct Prune;

/// The float pipeline of `tern compress`, in order.
pub fn float_pipeline() -> Vec<Box<dyn Pass>> {
    vec![Box::new(FoldBn), Box::new(FuseAct), Box::new(Prune)]
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
    let wt = node.inputs[1];
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
                    op: BinOp::Add,
                    act: None,
                } => {
                    // x + c where c holds one value per output channel
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
                    let per_channel_conv = xs.len() == 4
                        && cs.len() >= 3
                        && numel == xs[1]
                        && cs[cs.len() - 3] == xs[1];
                    let per_col =
                        xs.len() >= 2 && numel == xs[xs.len() - 1] && cs.last() == xs.last();
                    let Some(p) = g.graph.nodes.iter().position(|n| n.outputs.contains(&x)) else {
                        continue;
                    };
                    let ok = match &g.graph.nodes[p].op {
                        Op::Conv { .. } | Op::ConvTranspose { .. } => per_channel_conv,
                        Op::MatMul { .. } => per_col,
                        _ => false,
                    };
                    if !ok {
                        continue;
                    }
                    (x, None, g.konst(c).map(|c| c.to_vec()).unwrap_or_default())
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
        move_dead_last(g, &dead);
        Ok(changes)
    }
}

/// Removes dead nodes; a producer that took over a later node's output keeps its place in the order,
/// which stays valid because the output's consumers all come after the removed node.
fn move_dead_last(g: &mut ToolGraph, dead: &[bool]) {
    g.compact(dead);
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
            if dead[p] || g.graph.nodes[p].outputs.len() != 1 {
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
