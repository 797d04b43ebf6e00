//! `tern eval <model.onnx> <model.tern> --data X.npy [--labels y.npy] [--json]`: how far a compressed
//! artifact is from its float model, and which layer is to blame.
//!
//! The float reference is tract running the ONNX file (independent of tern). Per layer, every int8 tensor
//! the artifact computes is compared with the same tensor of tern's float graph (SQNR), and its share of the
//! final error is the output error when only that tensor is rounded to its int8 grid in the float graph
//! (activation rounding and clipping; the weights stay float in that measurement).
use super::{load_model, read_file};
use crate::graph::ToolGraph;
use crate::import::InputShape;
use crate::metrics::{argmax, rel_l2};
use crate::quant::{self, data};
use anyhow::{anyhow, bail, Result};
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use tern::ir::{DType, Op};
use tern::session::Values;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The float ONNX model.
    pub onnx: PathBuf,
    /// The artifact made from it.
    pub tern: PathBuf,
    /// Evaluation inputs: a .npy of shape (N, *input shape) or a directory of .npy samples.
    #[arg(long)]
    pub data: PathBuf,
    /// Integer class labels (N,) for accuracy.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Use at most N samples.
    #[arg(long, value_name = "N")]
    pub samples: Option<usize>,
    /// Samples used for the per-layer table (it runs the float graph once per int8 layer).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub layer_samples: usize,
    /// Threshold for the binary-map IoU of map outputs (rank ≥ 3).
    #[arg(long, default_value_t = 0.3)]
    pub iou_threshold: f32,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Running sums for one output.
#[derive(Default, Clone)]
struct OutStats {
    err: f64,
    energy: f64,
    dot: f64,
    norm_t: f64,
    rows: usize,
    agree: usize,
    inter: u64,
    union: u64,
    /// The rows whose top class differs: (sample, row, float class, tern class, float's margin between
    /// its top two values).
    flips: Vec<(usize, usize, usize, usize, f32)>,
}

/// Top-1 disagreements listed per output: in the JSON (most confident float answers first), and the
/// first few in the text report.
const FLIPS_LISTED: usize = 100;
const FLIPS_SHOWN: usize = 8;

/// The gap between the largest and the second largest value of a row (0 for a single value).
fn top_margin(r: &[f32]) -> f32 {
    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &v in r {
        if v > a {
            (a, b) = (v, a);
        } else if v > b {
            b = v;
        }
    }
    // (an infinite top value: the largest finite margin, so the JSON keeps a number)
    if b.is_finite() {
        (a - b).min(f32::MAX)
    } else {
        0.0
    }
}

impl OutStats {
    fn add(&mut self, si: usize, t: &[f32], f: &[f32], shape: &[usize], thr: f32) {
        for (&a, &b) in t.iter().zip(f) {
            let (a, b) = (a as f64, b as f64);
            self.err += (a - b) * (a - b);
            self.energy += b * b;
            self.dot += a * b;
            self.norm_t += a * a;
        }
        let last = *shape.last().unwrap_or(&1);
        if shape.len() <= 3 && last > 1 {
            for (row, (rt, rf)) in t.chunks(last).zip(f.chunks(last)).enumerate() {
                self.rows += 1;
                let (ct, cf) = (argmax(rt), argmax(rf));
                self.agree += (ct == cf) as usize;
                if ct != cf {
                    self.flips.push((si, row, cf, ct, top_margin(rf)));
                }
            }
        }
        if shape.len() >= 3 {
            for (&a, &b) in t.iter().zip(f) {
                let (x, y) = (a > thr, b > thr);
                self.inter += (x && y) as u64;
                self.union += (x || y) as u64;
            }
        }
    }
}

/// A layer of the artifact that computes an int8 tensor.
struct Layer {
    node: String,
    op: &'static str,
    tensor: String,
    /// One scale, or one per channel (axis 1) for a channel-scaled tensor.
    scales: Vec<f32>,
    zp: i32,
    /// I8, or I16 for a 16-bit artifact's tensor.
    dtype: DType,
    /// Values per channel plane (for a channel-scaled tensor).
    npix: usize,
    sig: f64,
    noise: f64,
    share_err: f64,
}

/// The float graph `fg` with tensor `t` rounded to the `dtype` (int8 or int16) grid `(scales, zp)` before
/// any consumer reads it (per channel on axis 1 when there are several scales: x/s_c on a unit grid, then
/// times s_c).
fn fake_quant(
    fg: &ToolGraph,
    t: u32,
    (scales, zp, dtype): (&[f32], i32, DType),
) -> Result<ToolGraph> {
    let mut g = fg.clone();
    let name = g.graph.tensors[t as usize].name.clone();
    let shape = g.shape(t);
    let p = g.graph.nodes.iter().position(|n| n.outputs.contains(&t));
    let first = g.graph.nodes.len();
    let per_channel = scales.len() > 1;
    let affine = |g: &mut ToolGraph, x: u32, k: &str, f: &dyn Fn(f32) -> f32| -> Result<u32> {
        let c = scales.len();
        let a = g.add_const(
            &format!("{name}/fq_{k}_a"),
            &[c],
            scales.iter().map(|&s| f(s)).collect(),
        );
        let b = g.add_const(&format!("{name}/fq_{k}_b"), &[c], vec![0.0; c]);
        Ok(g.emit(
            &format!("{name}/fq_{k}"),
            Op::ChannelAffine { act: None },
            vec![x, a, b],
            &[format!("{name}/fq_{k}_out")],
            Some(vec![shape.clone()]),
        )?[0])
    };
    let x = if per_channel {
        affine(&mut g, t, "div", &|s| 1.0 / s)?
    } else {
        t
    };
    let q = g.emit(
        &format!("{name}/fq"),
        Op::Quantize,
        vec![x],
        &[format!("{name}/fq_q")],
        Some(vec![shape.clone()]),
    )?[0];
    let tq = &mut g.graph.tensors[q as usize];
    tq.dtype = dtype;
    tq.quant = Some(tern::ir::QParams {
        scale: vec![if per_channel { 1.0 } else { scales[0] }],
        zero_point: vec![zp],
        axis: None,
    });
    let mut d = g.emit(
        &format!("{name}/fdq"),
        Op::Dequantize,
        vec![q],
        &[format!("{name}/fq_f")],
        Some(vec![shape.clone()]),
    )?[0];
    if per_channel {
        d = affine(&mut g, d, "mul", &|s| s)?;
    }
    let added: Vec<_> = g.graph.nodes.drain(first..).collect();
    let at = p.map_or(0, |p| p + 1);
    for n in &mut g.graph.nodes[at..] {
        n.inputs
            .iter_mut()
            .filter(|i| **i == t)
            .for_each(|i| *i = d);
    }
    g.graph
        .outputs
        .iter_mut()
        .filter(|o| **o == t)
        .for_each(|o| *o = d);
    for (k, n) in added.into_iter().enumerate() {
        g.graph.nodes.insert(at + k, n);
    }
    g.validate()?;
    Ok(g)
}

/// Runs the subcommand.
pub fn main(a: Args) -> Result<()> {
    let bytes = read_file(&a.tern)?;
    let model = load_model(&a.tern, &bytes)?;
    let specs: Vec<data::InputSpec> = model.inputs().map(|t| (t.name.clone(), t.dims())).collect();
    let shapes: Vec<InputShape> = specs
        .iter()
        .map(|(n, d)| InputShape {
            name: n.clone(),
            dims: d.clone(),
        })
        .collect();
    let samples = data::load(&a.data, &specs, a.samples)?;
    let labels = match &a.labels {
        Some(p) => {
            let l = crate::npy::read_labels(p)?;
            if l.len() < samples.len() {
                bail!(
                    "{}: {} labels for {} samples",
                    p.display(),
                    l.len(),
                    samples.len()
                );
            }
            Some(l)
        }
        None => None,
    };
    let reference = crate::reference::Reference::load(
        &a.onnx,
        &specs.iter().map(|s| s.1.clone()).collect::<Vec<_>>(),
    )?;
    let mut sess = tern::Session::new(
        &model,
        tern::SessionOptions {
            threads: quant::host_threads(),
        },
    )?;
    let g = &model.graph;
    let out_shapes: Vec<Vec<usize>> = model.outputs().map(|t| t.dims()).collect();
    let mut stats = vec![OutStats::default(); out_shapes.len()];
    let (mut correct_f, mut correct_t) = (0usize, 0usize);
    // int8 tensors computed by integer nodes (not by the Quantize at an island border, nor by a float
    // conv that absorbed that Quantize: the same rounding of a float tensor)
    let mut layers: Vec<Layer> = Vec::new();
    let mut layer_of: HashMap<u32, usize> = HashMap::new();
    for n in &g.nodes {
        if matches!(n.op, Op::Quantize) || tern::cpu::ops::quant::float_conv_to_int8(&model, n) {
            continue;
        }
        for &o in &n.outputs {
            let t = &g.tensors[o as usize];
            if let (DType::I8 | DType::I16, Some(q)) = (t.dtype, &t.quant) {
                layer_of.insert(o, layers.len());
                layers.push(Layer {
                    node: n.name.clone(),
                    op: n.op.name(),
                    tensor: t.name.clone(),
                    scales: q.scale.clone(),
                    zp: q.zero_point[0],
                    dtype: t.dtype,
                    npix: t.shape.iter().skip(2).product::<u32>().max(1) as usize,
                    sig: 0.0,
                    noise: 0.0,
                    share_err: 0.0,
                });
            }
        }
    }
    let fg = if layers.is_empty() {
        None
    } else {
        Some(quant::compile_for_quant(&a.onnx, &shapes)?)
    };
    let by_name: HashMap<&str, u32> = fg
        .as_ref()
        .map(|fg| {
            fg.graph
                .tensors
                .iter()
                .enumerate()
                .filter(|(_, t)| !t.is_const())
                .map(|(i, t)| (t.name.as_str(), i as u32))
                .collect()
        })
        .unwrap_or_default();
    let fmodel_bytes = match &fg {
        Some(fg) => Some(crate::export::to_bytes(fg, vec![])?),
        None => None,
    };
    let fmodel = match &fmodel_bytes {
        Some(b) => Some(tern::Model::from_bytes(b).map_err(|e| anyhow!("{e}"))?),
        None => None,
    };
    let mut fsess = match &fmodel {
        Some(m) => Some(tern::Session::new(
            m,
            tern::SessionOptions {
                threads: quant::host_threads(),
            },
        )?),
        None => None,
    };
    for (si, x) in samples.iter().enumerate() {
        let arrays: Vec<ndarray::ArrayD<f32>> = x
            .iter()
            .zip(&specs)
            .map(|(v, (_, d))| {
                ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(d), v.clone())
                    .map_err(|e| anyhow!("{e}"))
            })
            .collect::<Result<_>>()?;
        let fo = reference.run(&arrays)?;
        let mut to: Vec<Vec<f32>> = out_shapes
            .iter()
            .map(|s| vec![0.0; s.iter().product()])
            .collect();
        let ins: Vec<&[f32]> = x.iter().map(|v| v.as_slice()).collect();
        let layer_pass = si < a.layer_samples && fsess.is_some();
        // each layer's integers (int8 or int16), widened
        let mut kept: HashMap<u32, Vec<i32>> = HashMap::new();
        {
            let mut o: Vec<&mut [f32]> = to.iter_mut().map(|v| v.as_mut_slice()).collect();
            let mut f = |_: usize, t: u32, v: Values| {
                if !layer_pass || !layer_of.contains_key(&t) {
                    return;
                }
                match v {
                    Values::I8(q) => kept.insert(t, q.iter().map(|&v| v as i32).collect()),
                    Values::I16(q) => kept.insert(t, q.iter().map(|&v| v as i32).collect()),
                    _ => None,
                };
            };
            sess.run_observed(&ins, &mut o, Some(&mut f))?;
        }
        for (k, (t, f)) in to.iter().zip(&fo).enumerate() {
            let f = f
                .as_slice()
                .ok_or_else(|| anyhow!("reference output not contiguous"))?;
            stats[k].add(si, t, f, &out_shapes[k], a.iou_threshold);
        }
        if let Some(l) = &labels {
            if let (Some(t), Some(f)) = (to.first(), fo.first().and_then(|f| f.as_slice())) {
                correct_t += (argmax(t) as i64 == l[si]) as usize;
                correct_f += (argmax(f) as i64 == l[si]) as usize;
            }
        }
        if let (true, Some(fs)) = (layer_pass, fsess.as_mut()) {
            // compare each int8 layer with the same tensor of the float graph
            let mut fouts: Vec<Vec<f32>> = fmodel
                .iter()
                .flat_map(|m| m.outputs())
                .map(|t| vec![0.0; t.numel()])
                .collect();
            let mut o: Vec<&mut [f32]> = fouts.iter_mut().map(|v| v.as_mut_slice()).collect();
            let names: HashMap<&str, u32> = layer_of
                .keys()
                .map(|&t| (g.tensors[t as usize].name.as_str(), t))
                .collect();
            let ftensors = &fmodel.as_ref().map(|m| &m.graph.tensors);
            let mut f = |_: usize, t: u32, v: Values| {
                let (Values::F32(fv), Some(ts)) = (v, ftensors) else {
                    return;
                };
                let Some(&qt) = names.get(ts[t as usize].name.as_str()) else {
                    return;
                };
                let (Some(q), Some(&li)) = (kept.get(&qt), layer_of.get(&qt)) else {
                    return;
                };
                let l = &mut layers[li];
                let c = l.scales.len();
                for (i, (&r, &qv)) in fv.iter().zip(q).enumerate() {
                    let s = l.scales[if c > 1 { (i / l.npix) % c } else { 0 }];
                    let d = ((qv - l.zp) as f32 * s) as f64;
                    l.sig += (r as f64) * (r as f64);
                    l.noise += (d - r as f64) * (d - r as f64);
                }
            };
            fs.run_observed(&ins, &mut o, Some(&mut f))?;
        }
    }
    // share of the final error: the float graph with only that layer's output on its int8 grid
    if let Some(fg) = &fg {
        let ls = &samples[..a.layer_samples.min(samples.len())];
        let base = quant::outputs(fg, ls)?;
        for l in layers.iter_mut() {
            let Some(&t) = by_name.get(l.tensor.as_str()) else {
                continue;
            };
            let outs = quant::outputs(&fake_quant(fg, t, (&l.scales, l.zp, l.dtype))?, ls)?;
            l.share_err = outs
                .iter()
                .zip(&base)
                .flat_map(|(o, b)| o.iter().zip(b).map(|(x, y)| rel_l2(x, y).powi(2)))
                .sum();
        }
    }
    let total: f64 = layers.iter().map(|l| l.share_err).sum();
    let sqnr = |l: &Layer| {
        if l.noise == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (l.sig / l.noise).log10()
        }
    };
    layers.sort_by(|x, y| {
        y.share_err
            .partial_cmp(&x.share_err)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(sqnr(x).total_cmp(&sqnr(y)))
    });
    let onnx_bytes = std::fs::metadata(&a.onnx).map(|m| m.len()).unwrap_or(0);
    let n = samples.len();
    let outs_json: Vec<_> = model
        .outputs()
        .zip(&stats)
        .map(|(t, s)| {
            let mut flips = s.flips.clone();
            flips.sort_by(|x, y| y.4.total_cmp(&x.4));
            let listed: Vec<_> = flips
                .iter()
                .take(FLIPS_LISTED)
                .map(|&(sample, row, fc, tc, m)| {
                    json!({"sample": sample, "row": row, "float_class": fc, "tern_class": tc,
                           "float_margin": m})
                })
                .collect();
            json!({
                "name": t.name,
                "disagreements": listed,
                "disagreements_total": s.flips.len(),
                "rel_l2": (s.err / s.energy.max(f64::MIN_POSITIVE)).sqrt(),
                "cosine": s.dot / (s.energy.sqrt() * s.norm_t.sqrt()).max(f64::MIN_POSITIVE),
                "top1_agreement": (s.rows > 0).then(|| s.agree as f64 / s.rows as f64),
                "iou": (s.union > 0).then(|| s.inter as f64 / s.union as f64),
            })
        })
        .collect();
    let acc = labels
        .as_ref()
        .map(|_| (correct_f as f64 / n as f64, correct_t as f64 / n as f64));
    let layers_json: Vec<_> = layers
        .iter()
        .map(|l| {
            json!({
                "node": l.node, "op": l.op, "tensor": l.tensor,
                "sqnr_db": sqnr(l).is_finite().then(|| sqnr(l)),
                "error_share": if total > 0.0 { l.share_err / total } else { 0.0 },
            })
        })
        .collect();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "samples": n,
                "accuracy_float": acc.map(|a| a.0),
                "accuracy_tern": acc.map(|a| a.1),
                "accuracy_drop_points": acc.map(|a| (a.0 - a.1) * 100.0),
                "outputs": outs_json,
                "onnx_bytes": onnx_bytes,
                "tern_bytes": bytes.len(),
                "size_ratio": onnx_bytes as f64 / bytes.len().max(1) as f64,
                "layers": layers_json,
            }))?
        );
        return Ok(());
    }
    println!(
        "{} vs {} on {n} sample(s)",
        a.tern.display(),
        a.onnx.display()
    );
    println!(
        "  size          ONNX {onnx_bytes} bytes, .tern {} bytes ({:.2}x smaller)",
        bytes.len(),
        onnx_bytes as f64 / bytes.len().max(1) as f64
    );
    if let Some((f, t)) = acc {
        println!(
            "  accuracy      float {:.4}, tern {:.4} (drop {:.2} points)",
            f,
            t,
            (f - t) * 100.0
        );
    }
    for o in &outs_json {
        print!(
            "  output {:<14} rel L2 {:.3e}  cosine {:.6}",
            o["name"].as_str().unwrap_or(""),
            o["rel_l2"].as_f64().unwrap_or(f64::NAN),
            o["cosine"].as_f64().unwrap_or(f64::NAN)
        );
        if let Some(v) = o["top1_agreement"].as_f64() {
            print!("  top-1 agreement {v:.4}");
        }
        if let Some(v) = o["iou"].as_f64() {
            print!("  IoU@{} {v:.4}", a.iou_threshold);
        }
        println!();
        let flips = o["disagreements"]
            .as_array()
            .map_or(&[][..], |v| v.as_slice());
        if !flips.is_empty() {
            let shown: Vec<String> = flips
                .iter()
                .take(FLIPS_SHOWN)
                .map(|d| {
                    format!(
                        "{}/{} {}->{} ({:.3})",
                        d["sample"],
                        d["row"],
                        d["float_class"],
                        d["tern_class"],
                        d["float_margin"].as_f64().unwrap_or(f64::NAN)
                    )
                })
                .collect();
            let total = o["disagreements_total"].as_u64().unwrap_or(0) as usize;
            println!(
                "    top-1 disagreements (sample/row float->tern class, float's margin over its second): {}{}",
                shown.join(", "),
                if total > shown.len() { format!(" and {} more", total - shown.len()) } else { String::new() }
            );
        }
    }
    if !layers.is_empty() {
        println!(
            "  per layer (worst first; SQNR over {} sample(s)):",
            a.layer_samples.min(n)
        );
        println!(
            "    {:<40} {:<14} {:>9} {:>8}",
            "node", "op", "SQNR dB", "share"
        );
        for l in layers_json.iter().take(20) {
            println!(
                "    {:<40} {:<14} {:>9} {:>7.1}%",
                l["node"].as_str().unwrap_or(""),
                l["op"].as_str().unwrap_or(""),
                l["sqnr_db"]
                    .as_f64()
                    .map_or("inf".to_string(), |v| format!("{v:.1}")),
                l["error_share"].as_f64().unwrap_or(0.0) * 100.0
            );
        }
        if layers.len() > 20 {
            println!("    ... {} more (--json lists all)", layers.len() - 20);
        }
    }
    Ok(())
}
