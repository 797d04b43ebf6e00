//! Quantization in the tool: calibration data, streaming observers, the quantize pass, and the float
//! graph they work on. The integer kernels live in the runtime (`tern::cpu::qgemm`, `tern::cpu::ops::quant`).
pub mod calib;
pub mod data;
pub mod gptq;
pub mod pass;

use crate::graph::ToolGraph;
use crate::import::InputShape;
use crate::passes;
use anyhow::{anyhow, bail, Result};
use calib::{Method, Observer};
use std::path::Path;
use tern::ir::quant::{dequantize_i8, quantize_f32};
use tern::ir::Unary;
use tern::session::Values;

/// ONNX file → the float graph that calibration observes and the quantize pass rewrites: imported and
/// folded, but with activations not yet fused, so their inputs and outputs are both observed.
pub fn compile_for_quant(onnx: &Path, shapes: &[InputShape]) -> Result<ToolGraph> {
    let mut g = crate::import::import(onnx, shapes)?;
    let mut p = passes::rewrite_pipeline();
    p.push(Box::new(passes::Prune));
    passes::run_all(&mut g, &p)?;
    Ok(g)
}

/// Threads for host-side runs (calibration, evaluation).
pub fn host_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `g` over `samples` (per sample, one f32 buffer per graph input) and returns, per tensor of `g`, the
/// streamed statistics of every f32 activation (graph inputs included), with per-channel statistics of
/// the channel-scale candidates when `per_channel`. `tick` is called after each sample.
pub fn calibrate(
    g: &ToolGraph,
    samples: &[Vec<Vec<f32>>],
    per_channel: bool,
    mut tick: impl FnMut(),
) -> Result<Vec<Option<Observer>>> {
    let bytes = crate::export::to_bytes(g, vec![])?;
    let model = tern::Model::from_bytes(&bytes).map_err(|e| anyhow!("{e}"))?;
    let mut sess = tern::Session::new(
        &model,
        tern::SessionOptions {
            threads: host_threads(),
        },
    )
    .map_err(|e| anyhow!("{e}"))?;
    let mut obs: Vec<Option<Observer>> = vec![None; g.graph.tensors.len()];
    // candidates for channel-scaled storage are observed per channel as well: (channels, plane size)
    let per_channel: Vec<Option<(usize, usize)>> = pass::channel_candidates(g)
        .iter()
        .enumerate()
        .map(|(t, &c)| {
            let c = c && per_channel;
            let s = g.shape(t as u32);
            c.then(|| (s[1], s[2..].iter().product()))
        })
        .collect();
    let mut outs: Vec<Vec<f32>> = model.outputs().map(|t| vec![0.0; t.numel()]).collect();
    for s in samples {
        for (&t, x) in g.graph.inputs.iter().zip(s) {
            obs[t as usize]
                .get_or_insert_with(Observer::default)
                .observe(x);
        }
        let ins: Vec<&[f32]> = s.iter().map(|v| v.as_slice()).collect();
        let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
        let mut f = |_: usize, t: u32, v: Values| {
            if let Values::F32(x) = v {
                let o = obs[t as usize].get_or_insert_with(Observer::default);
                match per_channel[t as usize] {
                    Some((c, npix)) => o.observe_channels(x, c, npix),
                    None => o.observe(x),
                }
            }
        };
        sess.run_observed(&ins, &mut o, Some(&mut f))
            .map_err(|e| anyhow!("calibration run: {e}"))?;
        tick();
    }
    Ok(obs)
}

/// Options of `tern compress --int8`.
#[derive(Clone, Debug)]
pub struct Int8Options {
    /// How observed distributions become ranges.
    pub method: Method,
    /// Keep the most sensitive layers in float until the outputs' relative L2 error vs float (on the
    /// calibration samples) is at most this.
    pub max_error: Option<f64>,
    /// Keep the most sensitive layers in float until the top-1 accuracy on the labelled calibration
    /// samples is at most this many points below the float model's.
    pub max_drop: Option<f64>,
    /// Class labels of the calibration samples (for `max_drop`), one per sample.
    pub labels: Option<Vec<i64>>,
    /// Store a conv's pre-activation output channel-scaled (one scale per channel, see
    /// `pass::channel_candidates`) where that pays within the table budget; `false` keeps one scale per
    /// tensor (and skips the per-channel statistics).
    pub channel_scales: bool,
    /// Nodes (by name, as `tern eval` lists them) to keep in float whatever else is decided.
    pub keep_float: Vec<String>,
    /// Whether the layers at the model's input stay in float (see [`input_stage`]).
    pub input_layer: InputLayer,
    /// How weights are rounded to int8.
    pub rounding: Rounding,
    /// How the weights of layers kept in float are stored: `true` int8 per output channel (weights only:
    /// the artifact stays about 4x smaller), `false` f16.
    pub float_weights_int8: bool,
    /// Int8 weights only: every layer computes in float on its int8 weights (widened at session
    /// creation); calibration samples, if given, serve GPTQ's rounding alone.
    pub weights_only: bool,
    /// Store the weights uncompressed (`--plain-weights`: read in place from flash or a mapped file)
    /// rather than deflated.
    pub plain_weights: bool,
    /// 16-bit activations (`--activations int16`): the integer layers read and write symmetric int16
    /// tensors (ranges [`pass::ACT16_HEADROOM`] times the calibrated ones) with int8 weights rounded by
    /// GPTQ under `auto`, on the runtime's 16-bit engine (format 10).
    pub act16: bool,
    /// Mixed activation precision (`--activations mixed`): int8 activations, and where the search of
    /// `max_error` / `max_drop` needs precision it gives layers 16-bit activations instead of float.
    pub mixed16: bool,
}

/// `--activations`: the integer layers' activation precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Activations {
    /// 8-bit activations, asymmetric per tensor.
    Int8,
    /// 16-bit activations, symmetric per tensor, with int8 weights.
    Int16,
    /// int8 activations, and 16-bit ones on the layers the mixed-precision search (`--max-error`,
    /// `--max-drop`) finds most sensitive (instead of keeping them in float).
    Mixed,
}

/// `--weight-rounding`: how weights are rounded to their int8 grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Rounding {
    /// GPTQ for the int8 weights of layers that compute in float (`--float-weights int8`), nearest for
    /// integer layers (the default). GPTQ compensates for the float model's layer inputs: weights-only it
    /// cut the output error 2-4x (PP-OCR cls 0.026 -> 0.012, YOLOX captcha 0.037 -> 0.010 rel-L2), but
    /// with int8 activations it raised it on 4 of 7 models (PicoDet layout 0.21 -> 0.29 on its first
    /// output, captcha 0.082 -> 0.123, det320 0.126 -> 0.145).
    Auto,
    /// GPTQ ([`gptq`]) for every int8 weight it handles: each row rounded input by input, errors moved
    /// onto the inputs not yet rounded as the calibration samples' layer inputs say.
    Gptq,
    /// Each weight to its nearest step.
    Nearest,
}

/// `--input-layer`: how the layers that read the model's input are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InputLayer {
    /// Float where rounding the input to int8 alone costs at least a quarter (`INPUT_SHARE`) of the
    /// int8 model's error on the calibration samples, or else where the stage in float lowers that error
    /// by auto's 5% margin.
    Auto,
    /// Always float (where such layers exist and are small).
    Float,
    /// Always int8.
    Int8,
}

/// `--input-layer auto` keeps the input stage in float when rounding the model's input alone (float model,
/// int8-rounded input) costs at least this share of the whole int8 model's output error on the
/// calibration samples — or, failing that, when floating the stage measurably lowers that error.
/// Measured shares: PP-OCR det 736 0.35 (an RGB image normalized per channel lands on a grid 1.07x coarser
/// than its 8-bit pixels), det 320 0.12 (but its stage in float: error −31%, IoU 0.939 → 0.971), cls 0.13
/// (its stage in float: error up).
pub const INPUT_SHARE: f64 = 0.25;

impl Default for Int8Options {
    /// `tern compress --int8`'s defaults: `auto` method, channel scales where they pay, no targets.
    fn default() -> Self {
        Int8Options {
            method: Method::Auto,
            max_error: None,
            max_drop: None,
            labels: None,
            channel_scales: true,
            keep_float: Vec::new(),
            input_layer: InputLayer::Auto,
            rounding: Rounding::Auto,
            float_weights_int8: false,
            weights_only: false,
            plain_weights: false,
            act16: false,
            mixed16: false,
        }
    }
}

/// Outputs of `g` on `samples` (per sample, per output), run by tern's engine on the host's threads.
pub fn outputs(g: &ToolGraph, samples: &[Vec<Vec<f32>>]) -> Result<Vec<Vec<Vec<f32>>>> {
    let bytes = crate::export::to_bytes(g, vec![])?;
    let model = tern::Model::from_bytes(&bytes).map_err(|e| anyhow!("{e}"))?;
    let mut sess = tern::Session::new(
        &model,
        tern::SessionOptions {
            threads: host_threads(),
        },
    )
    .map_err(|e| anyhow!("{e}"))?;
    samples
        .iter()
        .map(|s| {
            let mut outs: Vec<Vec<f32>> = model.outputs().map(|t| vec![0.0; t.numel()]).collect();
            let ins: Vec<&[f32]> = s.iter().map(|v| v.as_slice()).collect();
            let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
            sess.run_into(&ins, &mut o).map_err(|e| anyhow!("{e}"))?;
            Ok(outs)
        })
        .collect()
}

/// The worst output's relative L2 error of `got` vs `want`, over all samples.
fn output_error(got: &[Vec<Vec<f32>>], want: &[Vec<Vec<f32>>]) -> f64 {
    let n_out = want.first().map_or(0, |w| w.len());
    (0..n_out)
        .map(|k| {
            let (mut num, mut den) = (0f64, 0f64);
            for (g, w) in got.iter().zip(want) {
                for (&a, &b) in g[k].iter().zip(&w[k]) {
                    num += (a as f64 - b as f64).powi(2);
                    den += (b as f64).powi(2);
                }
            }
            (num / den.max(f64::MIN_POSITIVE)).sqrt()
        })
        .fold(0.0, f64::max)
}

/// The mean over samples of each sample's worst-output relative L2: every sample counts the same, so
/// one image with a large output does not decide the method (pooled, it did on det736). Samples whose float outputs carry under 1% of the median
/// sample's energy are left out (a text detector's map of an image without text: its relative error is
/// noise over almost nothing).
fn sample_error(got: &[Vec<Vec<f32>>], want: &[Vec<Vec<f32>>]) -> f64 {
    let energy =
        |w: &Vec<Vec<f32>>| -> f64 { w.iter().flatten().map(|&v| (v as f64).powi(2)).sum() };
    let median = |mut v: Vec<f64>| -> Option<f64> {
        // the typical sample's output energy, for leaving out the near-empty ones
        v.sort_by(f64::total_cmp);
        let n = v.len();
        (n > 0).then(|| {
            if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            }
        })
    };
    let typical = median(want.iter().map(energy).collect()).unwrap_or(0.0);
    let per: Vec<f64> = got
        .iter()
        .zip(want)
        .filter(|(_, w)| energy(w) > 0.01 * typical)
        .map(|(g, w)| output_error(std::slice::from_ref(g), std::slice::from_ref(w)))
        .collect();
    log::debug!("per-sample errors: {per:.3?}");
    if per.is_empty() {
        return output_error(got, want);
    }
    per.iter().sum::<f64>() / per.len() as f64
}

/// The output head stays in float: an integer-capable node that produces a graph output, directly or
/// through ops that run in float anyway or only move data (Softmax, Reshape, Transpose), keeps float
/// precision when it is cheap to — an element-wise function, or a Conv/MatMul holding at most 0.5 % of
/// the model's weights — and so does the assembly of the answer from its parts: a Concat or element-wise
/// function reaching an output through Softmax, Reshape, Transpose, Split, Slice, Concat and element-wise
/// functions. Its output then keeps float resolution instead of being rounded to 256 levels just before
/// it is read (what decides a classifier's top-1 between near-tied classes, or a map's threshold).
/// (Keeping ddddocr's large 8210-class head in float on int8-stored weights was measured: the same five
/// disagreeing steps, 3.3 instead of 1.2 ms.)
pub fn float_head(fg: &ToolGraph) -> Vec<bool> {
    use tern::ir::Op;
    let g = &fg.graph;
    let total = weight_total(fg);
    // the answer as computed: its last layers, kept float when small
    let order = |op: &Op| matches!(op, Op::Softmax { .. } | Op::Reshape | Op::Transpose { .. });
    let near = answer_tensors(fg, order);
    // the answer as assembled: its parts moved, joined and mapped (a detector's boxes and scores)
    let far = answer_tensors(fg, |op| {
        order(op)
            || matches!(
                op,
                Op::Concat { .. } | Op::Split { .. } | Op::Slice { .. } | Op::Unary(_)
            )
    });
    let mut keep = vec![false; g.nodes.len()];
    for (p, n) in g.nodes.iter().enumerate() {
        if !pass::has_int_kernel(fg, n) {
            continue;
        }
        let makes = |set: &[bool]| n.outputs.iter().any(|&t| set[t as usize]);
        keep[p] = match n.op {
            // A Concat of parts of different ranges (a detector's box coordinates in pixels beside its
            // class scores in 0..1) would give them one int8 scale: YOLOv8's 320-pixel boxes left every
            // score at 0. In float each part is dequantized at its own scale, for the same cost; and a
            // function on a part (the Sigmoid on the class logits) keeps float resolution. (Arithmetic
            // there, a box decoder's anchors and strides, was tried in float: YOLOv8n's boxes 0.0352 ->
            // 0.0347 rel-L2, while a model made of Add/Mul alone went all float; not kept.)
            Op::Concat { .. } | Op::Unary(_) => makes(&far),
            _ => makes(&near) && small_weighted(fg, n, total),
        };
    }
    keep
}

/// `fg` with the tensors its float head ([`float_head`]) reads as outputs in place of the outputs the head
/// computes (the same nodes, so masks still apply; the head is pruned away when quantized); outputs no
/// head node leads to stay. `fg` itself if it has no such head.
fn head_inputs_out(fg: &ToolGraph) -> ToolGraph {
    let g = &fg.graph;
    let head = float_head(fg);
    // the tensors downstream of a head node (nodes are in order)
    let mut after = vec![false; g.tensors.len()];
    for (n, &h) in g.nodes.iter().zip(&head) {
        if h || n.inputs.iter().any(|&t| after[t as usize]) {
            n.outputs.iter().for_each(|&t| after[t as usize] = true);
        }
    }
    let mut outs: Vec<u32> = Vec::new();
    for (n, _) in g.nodes.iter().zip(&head).filter(|(_, &h)| h) {
        for &t in &n.inputs {
            if fg.konst(t).is_none() && !after[t as usize] && !outs.contains(&t) {
                outs.push(t);
            }
        }
    }
    if outs.is_empty() {
        return fg.clone();
    }
    for &o in &g.outputs {
        if !after[o as usize] && !outs.contains(&o) {
            outs.push(o);
        }
    }
    let mut rg = fg.clone();
    rg.graph.outputs = outs;
    rg
}

/// The tensors that hold the model's answer: the graph outputs and, back through the ops `through`
/// accepts, their sources. (Giving them minmax ranges whatever the method was tried: ddddocr's per-step
/// agreement 0.988 -> 0.990, PicoDet layout precision 0.970 -> 0.956; not kept.)
fn answer_tensors(fg: &ToolGraph, through: impl Fn(&tern::ir::Op) -> bool) -> Vec<bool> {
    let g = &fg.graph;
    let producer = |t: u32| g.nodes.iter().position(|n| n.outputs.contains(&t));
    let mut seen = vec![false; g.tensors.len()];
    let mut frontier: Vec<u32> = g.outputs.clone();
    while let Some(t) = frontier.pop() {
        if std::mem::replace(&mut seen[t as usize], true) {
            continue;
        }
        if let Some(n) = producer(t).map(|p| &g.nodes[p]) {
            if through(&n.op) {
                frontier.extend(n.inputs.iter().copied().filter(|&i| fg.konst(i).is_none()));
            }
        }
    }
    seen
}

/// Constant values in `fg` (the model's weights), for [`small_weighted`].
fn weight_total(fg: &ToolGraph) -> usize {
    (0..fg.graph.tensors.len() as u32)
        .filter_map(|t| fg.konst(t).map(<[f32]>::len))
        .sum()
}

/// A Conv or MatMul whose weights are at most 0.5% of the model's `total` ([`weight_total`]; its float
/// copy in f16 costs at most 0.5% of the artifact): what [`float_head`] and [`input_layers`] may keep in
/// float.
fn small_weighted(fg: &ToolGraph, n: &tern::ir::Node, total: usize) -> bool {
    matches!(
        n.op,
        tern::ir::Op::Conv { .. } | tern::ir::Op::MatMul { .. }
    ) && n.inputs.get(1).is_some_and(|&w| {
        fg.konst(w)
            .is_some_and(|v| v.len() * 200 <= total && pass::has_int_kernel(fg, n))
    })
}

/// The input layers: integer-capable Conv/MatMul nodes with small weights (`small_weighted`) that read
/// a graph input (directly or through Reshape/Transpose/Pad: a Keras export pads and reshapes its NHWC
/// input before the first conv), with the Relu/Clip that alone reads each one's output. In float they
/// read the real input; in int8 the input is rounded to one int8 grid first.
pub fn input_layers(fg: &ToolGraph) -> Vec<bool> {
    let g = &fg.graph;
    let total = weight_total(fg);
    let cons = fg.consumers();
    let mut keep = vec![false; g.nodes.len()];
    let mut frontier: Vec<u32> = g.inputs.clone();
    let mut seen = vec![false; g.tensors.len()];
    while let Some(t) = frontier.pop() {
        if std::mem::replace(&mut seen[t as usize], true) {
            continue;
        }
        for &(j, _) in &cons[t as usize] {
            let n = &g.nodes[j];
            match n.op {
                tern::ir::Op::Reshape
                | tern::ir::Op::Transpose { .. }
                | tern::ir::Op::Pad { .. } => frontier.extend(&n.outputs),
                _ if small_weighted(fg, n, total) => {
                    keep[j] = true;
                    let y = n.outputs[0] as usize;
                    if let [(a, _)] = cons[y][..] {
                        let act = &g.nodes[a].op;
                        if matches!(act, tern::ir::Op::Unary(Unary::Relu | Unary::Clip { .. }))
                            && !g.outputs.contains(&(y as u32))
                        {
                            keep[a] = true;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    keep
}

/// Most multiply-adds the input stage ([`input_stage`]) may hold, as a share of the model's: its layers run
/// in float, a few times slower than int8, so this bounds what the stage costs (PP-OCR det's stem: 4.8%).
pub const INPUT_STAGE_MACS: f64 = 0.1;

/// The input stage: the [`input_layers`] and, in graph order, the integer-capable nodes after them that
/// read only the stage's tensors and keep the input layers' output resolution (the same spatial dims), up
/// to the first that would take the stage's multiply-adds past [`INPUT_STAGE_MACS`] of the model's; weighted
/// ones only with small weights (`small_weighted`). Where rounding the input costs much, the layers that
/// still see the full-resolution detail do too: PP-OCR det 736's stem (Conv → depthwise → hardswish →
/// pointwise → hardswish, all at 368×368) in float raised the binary-map IoU on 16 evaluation images from
/// 0.867 (its first conv alone) to 0.945.
pub fn input_stage(fg: &ToolGraph) -> Vec<bool> {
    let g = &fg.graph;
    let mut keep = input_layers(fg);
    let first = keep.iter().enumerate().find(|&(i, &k)| {
        k && matches!(
            g.nodes[i].op,
            tern::ir::Op::Conv { .. } | tern::ir::Op::MatMul { .. }
        )
    });
    let Some((f, _)) = first else { return keep };
    let dims = fg.shape(g.nodes[f].outputs[0]);
    if dims.len() < 3 {
        return keep; // a matmul's output has no spatial dims to follow
    }
    let (total, weights) = (g.macs().max(1) as f64, weight_total(fg));
    let mut spent: u64 = (0..g.nodes.len())
        .filter(|&i| keep[i])
        .map(|i| g.node_macs(i))
        .sum();
    let mut staged = vec![false; g.tensors.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        if keep[i] {
            n.outputs.iter().for_each(|&t| staged[t as usize] = true);
            continue;
        }
        let mut acts = n
            .inputs
            .iter()
            .filter(|&&t| fg.konst(t).is_none())
            .peekable();
        let joins = acts.peek().is_some()
            && acts.all(|&t| staged[t as usize])
            && fg.shape(n.outputs[0]).get(2..) == dims.get(2..)
            && pass::has_int_kernel(fg, n)
            && (!matches!(
                n.op,
                tern::ir::Op::Conv { .. } | tern::ir::Op::MatMul { .. }
            ) || small_weighted(fg, n, weights));
        if !joins {
            continue;
        }
        if (spent + g.node_macs(i)) as f64 > INPUT_STAGE_MACS * total {
            break;
        }
        spent += g.node_macs(i);
        keep[i] = true;
        n.outputs.iter().for_each(|&t| staged[t as usize] = true);
    }
    keep
}

/// The output error (as [`sample_error`], against `want`) of the float model `fg` run on `samples` with
/// each graph input rounded to its int8 grid (the range `method` gives it from `obs`; with `act16` its
/// int16 grid): what quantizing the input alone costs.
fn input_error(
    fg: &ToolGraph,
    obs: &[Option<Observer>],
    (method, act16): (calib::Method, bool),
    samples: &[Vec<Vec<f32>>],
    want: &[Vec<Vec<f32>>],
) -> Result<f64> {
    let rounded: Vec<Vec<Vec<f32>>> = samples
        .iter()
        .map(|s| {
            s.iter()
                .zip(&fg.graph.inputs)
                .map(
                    |(x, &t)| match obs.get(t as usize).and_then(|o| o.as_ref()) {
                        Some(o) if o.count() > 0 => {
                            let (lo, hi) = o.range(method);
                            if act16 {
                                let s = calib::symmetric_i16(lo, hi, pass::ACT16_HEADROOM).scale[0];
                                return x
                                    .iter()
                                    .map(|&v| {
                                        tern::ir::quant::dequantize_i16(
                                            tern::ir::quant::quantize_f32_i16(v, s),
                                            s,
                                        )
                                    })
                                    .collect();
                            }
                            let q = calib::asymmetric_i8(lo, hi);
                            let (sc, z) = (q.scale[0], q.zero_point[0]);
                            x.iter()
                                .map(|&v| dequantize_i8(quantize_f32(v, sc, z), sc, z))
                                .collect()
                        }
                        _ => x.clone(),
                    },
                )
                .collect()
        })
        .collect();
    Ok(sample_error(&outputs(fg, &rounded)?, want))
}

/// What every measurement keeps in float: the output head ([`float_head`]) and the user's nodes.
fn always_float(fg: &ToolGraph, opts: &Int8Options) -> Result<Vec<bool>> {
    let mut keep = float_head(fg);
    for (k, u) in keep.iter_mut().zip(user_float(fg, opts)?) {
        *k |= u;
    }
    Ok(keep)
}

/// The float mask of `opts.keep_float` over `fg`'s nodes: every node of a given name (one ONNX node may
/// become several, e.g. a 1-D conv is a reshape, a 2-D conv and a reshape, all under the ONNX node's
/// name); a name no node has is an error that names it.
pub fn user_float(fg: &ToolGraph, opts: &Int8Options) -> Result<Vec<bool>> {
    let mut keep = vec![false; fg.graph.nodes.len()];
    for name in &opts.keep_float {
        let mut found = false;
        for (k, n) in keep.iter_mut().zip(&fg.graph.nodes) {
            if &n.name == name {
                *k = true;
                found = true;
            }
        }
        if !found {
            bail!(
                "--keep-float: the model has no node named \"{name}\" (`tern eval` lists layer names, worst first; `--json` lists all)"
            );
        }
    }
    Ok(keep)
}

/// Mixed precision: measures each integer node's sensitivity (with only it quantized, the error of what
/// the float head reads, see [`float_head`]),
/// then keeps the most sensitive ones in float — the shortest such prefix that meets `max_error`, found by
/// bisection, against the float outputs `want` of `samples`. Returns the float mask and the error reached.
/// With `opts.mixed16` the chosen nodes compute on 16-bit activations instead (a node's sensitivity is
/// then the error with it alone on int8, the rest on 16 bits), and the mask returned marks them.
pub fn search_float_nodes(
    fg: &ToolGraph,
    obs: &[Option<Observer>],
    opts: &Int8Options,
    (samples, want): (&PerSample, &PerSample),
    max_error: f64,
) -> Result<(Vec<bool>, f64)> {
    search_with(fg, obs, opts, samples, ("--max-error", max_error), &|got| {
        output_error(got, want)
    })
}

/// Model outputs per sample, per output.
type PerSample = [Vec<Vec<f32>>];

/// Top-1 accuracy (fraction) of the first output's argmax against `labels`.
fn accuracy(outs: &[Vec<Vec<f32>>], labels: &[i64]) -> f64 {
    let hit = outs
        .iter()
        .zip(labels)
        .filter(|(o, &l)| {
            let v = &o[0];
            let arg = v
                .iter()
                .enumerate()
                .fold((0usize, f32::NEG_INFINITY), |b, (i, &x)| {
                    if x > b.1 {
                        (i, x)
                    } else {
                        b
                    }
                })
                .0;
            arg as i64 == l
        })
        .count();
    hit as f64 / labels.len().max(1) as f64
}

/// [`search_float_nodes`] for an accuracy target: the drop in top-1 accuracy points on the labelled
/// samples vs the float model must be at most `max_drop`.
pub fn search_float_nodes_for_drop(
    fg: &ToolGraph,
    obs: &[Option<Observer>],
    opts: &Int8Options,
    samples: &[Vec<Vec<f32>>],
    labels: &[i64],
    max_drop: f64,
) -> Result<(Vec<bool>, f64)> {
    let float_acc = accuracy(&outputs(fg, samples)?, labels);
    log::info!(
        "mixed precision: float top-1 accuracy on {} labelled calibration samples {:.4}",
        labels.len(),
        float_acc
    );
    search_with(fg, obs, opts, samples, ("--max-drop", max_drop), &|got| {
        (float_acc - accuracy(got, labels)) * 100.0
    })
}

/// Samples the sensitivity ranking runs on.
const RANK_SAMPLES: usize = 4;

/// How much lower (relative) another candidate's error must be for `auto` to leave an earlier one: on a
/// few dozen samples smaller differences are noise (det736 once measured minmax 1.6% lower on the
/// calibration samples while its evaluation IoU was far lower, 0.69 vs 0.84 for percentile).
pub const AUTO_MARGIN: f64 = 0.05;

/// Samples the `auto` calibration method compares its candidates on.
const AUTO_SAMPLES: usize = 32;

/// `--calib-method auto`: quantizes with every candidate method (with `opts`' activation scales; output
/// head in float, as compress keeps it), and returns the one whose outputs are closest to float, by a
/// margin of [`AUTO_MARGIN`] over the earlier candidates (mean over samples of the worst output's
/// relative L2, see [`sample_error`], on up to [`AUTO_SAMPLES`] calibration samples), with every
/// candidate's error for the metadata.
fn choose_method(
    fg: &ToolGraph,
    obs: &[Option<Observer>],
    opts: &Int8Options,
    sub: &[Vec<Vec<f32>>],
    want: &[Vec<Vec<f32>>],
) -> Result<(calib::Method, f64, String)> {
    let keep = always_float(fg, opts)?;
    let mut best: Option<(f64, calib::Method)> = None;
    let mut report = Vec::new();
    for m in calib::AUTO_CANDIDATES {
        let o = Int8Options {
            method: m,
            ..opts.clone()
        };
        let (qg, _) = quantize_graph(fg, obs, &o, &keep)?;
        let e = sample_error(&outputs(&qg, sub)?, want);
        let name = format!("{m:?}").to_lowercase();
        log::info!(
            "calibration {name}: output error {e:.4e} on {} sample(s)",
            sub.len()
        );
        report.push(format!("{name}={e:.4e}"));
        if best.is_none_or(|(b, _)| e < b * (1.0 - AUTO_MARGIN)) {
            best = Some((e, m));
        }
    }
    let (e, m) = best.expect("AUTO_CANDIDATES is not empty");
    Ok((m, e, report.join(",")))
}

/// The search shared by the error and accuracy targets: `metric(quantized outputs)` must be at most
/// `target`; `what` names the target in messages (`--max-error`, `--max-drop`).
fn search_with(
    fg: &ToolGraph,
    obs: &[Option<Observer>],
    opts: &Int8Options,
    samples: &[Vec<Vec<f32>>],
    (what, target): (&str, f64),
    metric: &dyn Fn(&PerSample) -> f64,
) -> Result<(Vec<bool>, f64)> {
    let nn = fg.graph.nodes.len();
    // the nodes the user keeps in float stay so in every measurement
    let base = user_float(fg, opts)?;
    // a mask of the search: the nodes kept in float or, mixed, the nodes on 16-bit activations
    let mixed = opts.mixed16;
    let quantize = |mask: &[bool]| {
        if mixed {
            quantize_graph_mixed(fg, obs, opts, &base, mask)
        } else {
            quantize_graph(fg, obs, opts, mask)
        }
    };
    let err_with = |mask: &[bool]| -> Result<f64> {
        let (qg, _) = quantize(mask)?;
        Ok(metric(&outputs(&qg, samples)?))
    };
    let start = if mixed { vec![false; nn] } else { base.clone() };
    let e0 = err_with(&start)?;
    if e0 <= target {
        return Ok((start, e0));
    }
    // (mixed: an element-wise function after an integer-capable node takes that node's width in the
    // pass, so its own mark would change nothing)
    let g = &fg.graph;
    let follows = |i: usize| {
        let n = &g.nodes[i];
        matches!(n.op, tern::ir::Op::Unary(_))
            && g.nodes[..i]
                .iter()
                .any(|p| p.outputs.contains(&n.inputs[0]) && pass::has_int_kernel(fg, p))
    };
    let candidates: Vec<usize> = (0..nn)
        .filter(|&i| !base[i] && pass::has_int_kernel(fg, &g.nodes[i]) && !(mixed && follows(i)))
        .collect();
    // the ranking runs the (mostly float) graph once per candidate: on a few samples, by the relative L2
    // error of what the float head reads (smooth, unlike an accuracy count, and denser than the answer:
    // a classifier's two saturated probabilities ranked PP-OCR cls's worst int8 layer near the last);
    // the bisection below checks the real target on every sample
    let rank = &samples[..samples.len().min(RANK_SAMPLES)];
    let rg = head_inputs_out(fg);
    let want = outputs(&rg, rank)?;
    let mut sens = Vec::new();
    for &i in &candidates {
        // every other node in float (mixed: on 16 bits), this one on int8
        let mut keep = vec![true; nn];
        keep[i] = false;
        let (qg, _) = if mixed {
            quantize_graph_mixed(&rg, obs, opts, &base, &keep)?
        } else {
            quantize_graph(&rg, obs, opts, &keep)?
        };
        sens.push((output_error(&outputs(&qg, rank)?, &want), i));
    }
    sens.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (e, i) in &sens {
        log::debug!("sensitivity {}: {e:.3e}", fg.graph.nodes[*i].name);
    }
    let mask = |k: usize| {
        let mut keep = start.clone();
        sens.iter().take(k).for_each(|&(_, i)| keep[i] = true);
        keep
    };
    let (mut lo, mut hi) = (0usize, sens.len());
    let all = mask(hi);
    let e_all = err_with(&all)?;
    let mut best = (all, e_all);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let e = err_with(&mask(mid))?;
        log::info!(
            "mixed precision: {mid} most sensitive node(s) {} -> {what} measure {e:.3e}",
            if mixed { "on 16 bits" } else { "in float" }
        );
        if e <= target {
            best = (mask(mid), e);
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    if best.1 > target {
        log::warn!(
            "{what} {target}: even with every sensitive node {} the measure is {:.3e}",
            if mixed { "on 16 bits" } else { "in float" },
            best.1
        );
    }
    Ok(best)
}

/// Applies `opts.input_layer`: adds the input stage ([`input_stage`]) to `opts.keep_float` when it should
/// stay float. `auto` keeps it float, on `sub` (with float outputs `want`), when rounding the input alone
/// costs at least [`INPUT_SHARE`] of the int8 model's error (`int8_error`, measured here if `None`), or
/// else when the int8 model with the stage in float is closer to float by [`AUTO_MARGIN`] (one more
/// quantize-and-run; the margin `auto` asks of a calibration method).
/// Returns the decision for the metadata (`None`: the model has no such layer).
fn decide_input_layers(
    fg: &ToolGraph,
    obs: &[Option<Observer>],
    opts: &mut Int8Options,
    sub: &[Vec<Vec<f32>>],
    want: &[Vec<Vec<f32>>],
    int8_error: Option<f64>,
) -> Result<Option<String>> {
    let user = user_float(fg, opts)?;
    let staged = input_stage(fg);
    let names: Vec<String> = staged
        .iter()
        .zip(&user)
        .zip(&fg.graph.nodes)
        .filter(|((&k, &u), _)| k && !u)
        .map(|(_, n)| n.name.clone())
        .collect();
    if names.is_empty() {
        return Ok(None);
    }
    let (float, why) = match opts.input_layer {
        InputLayer::Float => (true, "--input-layer float".to_string()),
        InputLayer::Int8 => (false, "--input-layer int8".to_string()),
        InputLayer::Auto => {
            let keep = always_float(fg, opts)?;
            let error_with = |keep: &[bool]| -> Result<f64> {
                let (qg, _) = quantize_graph(fg, obs, opts, keep)?;
                Ok(sample_error(&outputs(&qg, sub)?, want))
            };
            let e_q = match int8_error {
                Some(e) => e,
                None => error_with(&keep)?,
            };
            let e_in = input_error(fg, obs, (opts.method, opts.act16), sub, want)?;
            let share = e_in >= INPUT_SHARE * e_q;
            // where rounding the input is not a dominant error on its own, measure the stage in float
            let e_f = if share {
                None
            } else {
                let both: Vec<bool> = keep.iter().zip(&staged).map(|(&a, &b)| a || b).collect();
                Some(error_with(&both)?)
            };
            let gain = e_f.is_some_and(|e| e < e_q * (1.0 - AUTO_MARGIN));
            log::info!(
                "input stage {}: rounding the input alone costs {e_in:.4e}, the int8 model {e_q:.4e}{}",
                names.join(","),
                e_f.map_or(String::new(), |e| format!(", with the stage in float {e:.4e}"))
            );
            (
                share || gain,
                format!(
                    "input alone {e_in:.4e}, int8 model {e_q:.4e}{}",
                    e_f.map_or(String::new(), |e| format!(", stage in float {e:.4e}"))
                ),
            )
        }
    };
    if float {
        opts.keep_float.extend(names.iter().cloned());
    }
    Ok(Some(format!(
        "{} {} ({why})",
        if float { "float" } else { "int8" },
        names.join(",")
    )))
}

/// The float graph `fg` (from [`compile_for_quant`]) calibrated by `obs` → the integer graph, act-fused
/// and pruned, ready for export.
pub fn quantize_graph(
    fg: &ToolGraph,
    obs: &[Option<Observer>],
    opts: &Int8Options,
    keep_float: &[bool],
) -> Result<(ToolGraph, pass::Report)> {
    quantize_graph_mixed(fg, obs, opts, keep_float, &[])
}

/// [`quantize_graph`] with the nodes `wide` marks (by `fg`'s node index) on 16-bit activations, the
/// rest on int8 (with `opts.act16` every node is on 16 bits and `wide` is not read).
pub fn quantize_graph_mixed(
    fg: &ToolGraph,
    obs: &[Option<Observer>],
    opts: &Int8Options,
    keep_float: &[bool],
    wide: &[bool],
) -> Result<(ToolGraph, pass::Report)> {
    let channel = opts.channel_scales;
    let (mut qg, report) = pass::quantize(
        fg,
        obs,
        opts.method,
        keep_float,
        channel,
        pass::WeightStorage {
            float_int8: opts.float_weights_int8,
            rounded_integer: opts.rounding == Rounding::Gptq,
        },
        if opts.act16 {
            pass::Wide::All
        } else if wide.contains(&true) {
            pass::Wide::Nodes(wide)
        } else {
            pass::Wide::None
        },
    )?;
    passes::run_all(&mut qg, &after_quantize())?;
    Ok((qg, report))
}

/// The passes run on the quantized graph, in order (named in the artifact's `passes` metadata).
fn after_quantize() -> Vec<Box<dyn passes::Pass>> {
    vec![
        Box::new(passes::FuseAct),
        Box::new(passes::FusePostAffine),
        Box::new(passes::FuseQuantizeOut),
        Box::new(passes::FuseTable16),
        Box::new(passes::FuseConvAct16),
        Box::new(passes::FuseRequantize),
        Box::new(passes::Prune),
    ]
}

/// Everything `tern compress --int8` needs besides the model.
#[derive(Clone, Debug)]
pub struct CompressInt8<'a> {
    /// Calibration samples: a `.npy` or a directory (see [`data`]); `None` for a model quantized already
    /// (QDQ or operator form), whose own parameters are used.
    pub calib: Option<&'a Path>,
    /// Use at most this many samples.
    pub samples: Option<usize>,
    /// Quantization options.
    pub opts: Int8Options,
    /// Show a progress bar.
    pub progress: bool,
}

/// ONNX → calibrated int8 `.tern` bytes, with the pass report.
pub fn compress_int8(
    onnx: &Path,
    shapes: &[InputShape],
    c: &CompressInt8,
) -> Result<(Vec<u8>, pass::Report)> {
    let mut fg = compile_for_quant(onnx, shapes)?;
    user_float(&fg, &c.opts)?; // a misspelt --keep-float fails before calibration
    let weights_only = c.opts.weights_only;
    if (c.opts.act16 || c.opts.mixed16) && weights_only {
        bail!(
            "--activations int16 and mixed quantize activations, --weights-only none: choose one"
        );
    }
    if c.opts.mixed16 && c.opts.max_error.is_none() && c.opts.max_drop.is_none() {
        bail!("--activations mixed puts the layers a mixed-precision search finds sensitive on 16 bits: give its target, --max-error or --max-drop");
    }
    // 16-bit activations: GPTQ rounding for every integer layer under `auto` (their inputs are close to
    // float, the case GPTQ's compensation assumes), one scale per tensor, minmax ranges under `auto` (with
    // the headroom, int16 has no use for clipping outliers)
    let c = &{
        let mut c = c.clone();
        if c.opts.act16 {
            c.opts.channel_scales = false;
            if c.opts.rounding == Rounding::Auto {
                c.opts.rounding = Rounding::Gptq;
            }
            if c.opts.method == calib::Method::Auto {
                c.opts.method = calib::Method::MinMax;
            }
        }
        c
    };
    if weights_only && (c.opts.max_error.is_some() || c.opts.max_drop.is_some()) {
        bail!("--weights-only keeps every layer in float: --max-error and --max-drop have nothing left to choose");
    }
    let specs: Vec<data::InputSpec> = fg
        .graph
        .inputs
        .iter()
        .map(|&t| (fg.graph.tensors[t as usize].name.clone(), fg.shape(t)))
        .collect();
    let fixed = fg
        .graph
        .tensors
        .iter()
        .filter(|t| t.dtype == tern::ir::DType::F32 && t.quant.is_some())
        .count();
    if fixed > 0 {
        if c.opts.act16 || c.opts.mixed16 {
            bail!("{} is quantized already ({fixed} tensor(s) with their own int8 parameters): --activations int16 and mixed need a float model", onnx.display());
        }
        log::info!("the model is quantized already: its parameters for {fixed} tensor(s) are kept");
    }
    let samples = match c.calib {
        Some(calib) => data::load(calib, &specs, c.samples)?,
        None if fixed > 0 || weights_only => vec![],
        None => bail!(
            "--int8 needs calibration samples (--calib FILE.npy or DIR): {} is a float model",
            onnx.display()
        ),
    };
    if c.opts.rounding == Rounding::Gptq && samples.is_empty() && fixed == 0 {
        log::warn!(
            "--weight-rounding gptq needs calibration samples (--calib): weights round to nearest"
        );
    }
    if let (Some(calib), true) = (c.calib, samples.len() < 16 && !weights_only) {
        log::warn!(
            "only {} calibration sample(s) in {}: ranges from fewer than 16 samples are often too narrow for real inputs",
            samples.len(),
            calib.display()
        );
    }
    let bar = if c.progress && !samples.is_empty() {
        indicatif::ProgressBar::new(samples.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_message("calibrating");
    let obs = if samples.is_empty() || weights_only {
        vec![]
    } else {
        calibrate(&fg, &samples, c.opts.channel_scales, || bar.inc(1))?
    };
    bar.finish_and_clear();
    let gptq_used = match c.opts.rounding {
        Rounding::Gptq => true,
        // (mixed: for the layers on 16 bits)
        Rounding::Auto => c.opts.float_weights_int8 || weights_only || c.opts.mixed16,
        Rounding::Nearest => false,
    };
    if fixed == 0 && gptq_used {
        // (a model quantized already keeps its own integers)
        let search = c.opts.max_error.is_some() || c.opts.max_drop.is_some();
        fg.int8_rounding = if c.opts.rounding == Rounding::Auto && !weights_only && !search {
            // `auto` uses GPTQ's rounding only where a layer computes in float, and without a search
            // those are known now: the user's, the head, the input stage (if `auto` keeps it float;
            // rounded either way, so its decision measures the weights it will get) and nodes without
            // an integer kernel. (det 736 with `--float-weights int8`: 3 weights instead of 62, 18.0 -> 16.6 s)
            let mut float = always_float(&fg, &c.opts)?;
            for (i, (f, s)) in float.iter_mut().zip(input_stage(&fg)).enumerate() {
                *f |= s || !pass::has_int_kernel(&fg, &fg.graph.nodes[i]);
            }
            gptq::round_weights_of(&fg, &samples, &float)?
        } else {
            gptq::round_weights(&fg, &samples)?
        };
    }
    if c.opts.max_error.is_some() && samples.is_empty() {
        anyhow::bail!("--max-error measures the error on calibration samples: give --calib");
    }
    if c.opts.max_drop.is_some() && samples.is_empty() {
        anyhow::bail!("--max-drop measures the accuracy on calibration samples: give --calib");
    }
    let mut opts = c.opts.clone();
    opts.float_weights_int8 |= weights_only;
    if weights_only {
        // (no activation is quantized: the range rule is never used)
        opts.method = calib::Method::MinMax;
    }
    let mut auto_errors = None;
    let sub = &samples[..samples.len().min(AUTO_SAMPLES)];
    // the float outputs, run once for whichever measurement needs them
    let needed = !weights_only
        && (opts.method == calib::Method::Auto
            || opts.max_error.is_some()
            || (fixed == 0
                && opts.input_layer == InputLayer::Auto
                && input_stage(&fg).contains(&true)));
    let want = if sub.is_empty() || !needed {
        vec![]
    } else {
        outputs(&fg, sub)?
    };
    let mut int8_error = None;
    if opts.method == calib::Method::Auto && !samples.is_empty() {
        let (m, e, errs) = choose_method(&fg, &obs, &opts, sub, &want)?;
        opts.method = m;
        int8_error = Some(e);
        auto_errors = Some(errs);
    }
    let input_choice = if fixed == 0 && !samples.is_empty() && !weights_only {
        decide_input_layers(&fg, &obs, &mut opts, sub, &want, int8_error)?
    } else {
        None
    };
    let c = &CompressInt8 {
        calib: c.calib,
        samples: c.samples,
        opts,
        progress: c.progress,
    };
    // the searches' masks: nodes kept in float, or (mixed) nodes on 16 bits
    let mixed = c.opts.mixed16;
    let mut wide = vec![false; fg.graph.nodes.len()];
    let (mut keep, reached) = match c.opts.max_error {
        Some(me) => {
            // the search runs on at most 16 samples: each step is a full quantize-and-run
            let n = sub.len().min(16);
            let (k, e) = search_float_nodes(&fg, &obs, &c.opts, (&sub[..n], &want[..n]), me)?;
            if mixed {
                wide = k;
                (user_float(&fg, &c.opts)?, Some(e))
            } else {
                (k, Some(e))
            }
        }
        None if weights_only => (vec![true; fg.graph.nodes.len()], None),
        None => (user_float(&fg, &c.opts)?, None),
    };
    let mut drop_reached = None;
    if let Some(md) = c.opts.max_drop {
        let labels = c.opts.labels.as_deref().ok_or_else(|| {
            anyhow!("--max-drop needs the calibration samples' labels (--calib-labels)")
        })?;
        if labels.len() < samples.len() {
            anyhow::bail!(
                "--calib-labels has {} labels for {} calibration samples",
                labels.len(),
                samples.len()
            );
        }
        // accuracy needs more samples than an error estimate: up to 256
        let n = samples.len().min(256);
        let (k, d) =
            search_float_nodes_for_drop(&fg, &obs, &c.opts, &samples[..n], &labels[..n], md)?;
        for (a, b) in if mixed { &mut wide } else { &mut keep }.iter_mut().zip(k) {
            *a |= b;
        }
        drop_reached = Some(d);
    }
    if fixed == 0 {
        // (a model quantized already keeps its own choice of what is int8)
        for (k, h) in keep.iter_mut().zip(float_head(&fg)) {
            *k |= h;
        }
    }
    let (qg, report) = quantize_graph_mixed(&fg, &obs, &c.opts, &keep, &wide)?;
    log::info!(
        "quantize: {} integer node(s) ({} on 16 bits), {} float node(s), {} conversion(s)",
        report.int_nodes,
        report.wide_nodes.len(),
        report.float_nodes.len(),
        report.conversions
    );
    let mut meta = vec![
        (
            "producer".to_string(),
            format!("tern-tools {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "source".to_string(),
            onnx.file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
        (
            "passes".to_string(),
            format!(
                "import,{},prune,calibrate,quantize,{},plan",
                passes::names(&passes::rewrite_pipeline()),
                passes::names(&after_quantize())
            ),
        ),
        (
            "quant.scheme".to_string(),
            if weights_only {
                "int8 weights only: symmetric per output channel, computed in float on the widened weights".to_string()
            } else if c.opts.act16 {
                format!("int16 activations (symmetric per tensor, ranges {}x the calibrated ones) with int8 weights symmetric per channel, int32 bias, i32 sums, f32 requantization of conv, matmul and Mul results (Q31 fixed point elsewhere), interpolated function tables of 257 to 4097 entries (within {} step RMS of the function)", pass::ACT16_HEADROOM, pass::TABLE16_RMS_STEPS)
            } else if mixed {
                format!("int8 and (on quant.wide_nodes) int16 activations: int8 weights symmetric per channel, int8 activations asymmetric per tensor, int16 ones symmetric per tensor (ranges {}x the calibrated ones), int32 bias, Q31 fixed-point requantization (f32 for the int16 conv, matmul and Mul results), integer rescales between the two", pass::ACT16_HEADROOM)
            } else {
                "int8: weights symmetric per channel, activations asymmetric per tensor (channel-scaled where quant.channel_scaled says), int32 bias, Q31 fixed-point requantization".to_string()
            },
        ),
        (
            "quant.method".to_string(),
            if weights_only {
                "none (weights only)".to_string()
            } else if samples.is_empty() {
                "model".to_string()
            } else {
                format!("{:?}", c.opts.method).to_lowercase()
            },
        ),
        (
            "quant.activation_scales".to_string(),
            if weights_only {
                "none (weights only)"
            } else if c.opts.channel_scales {
                "channel"
            } else {
                "tensor"
            }
            .to_string(),
        ),
        (
            "quant.channel_scaled".to_string(),
            report.channel_scaled.join(","),
        ),
        ("quant.model_params".to_string(), fixed.to_string()),
        (
            "quant.weight_rounding".to_string(),
            format!(
                "{} ({} weight tensor(s) by GPTQ{})",
                format!("{:?}", c.opts.rounding).to_lowercase(),
                fg.int8_rounding.len(),
                if c.opts.rounding == Rounding::Auto
                    && !weights_only
                    && !fg.int8_rounding.is_empty()
                {
                    ", used where they compute in float"
                } else {
                    ""
                }
            ),
        ),
        (
            "quant.float_weights".to_string(),
            if c.opts.float_weights_int8 {
                "int8"
            } else {
                "f16"
            }
            .to_string(),
        ),
        ("quant.calib_samples".to_string(), samples.len().to_string()),
        (
            "quant.float_nodes".to_string(),
            report.float_nodes.join(","),
        ),
    ];
    if mixed {
        meta.push(("quant.wide_nodes".to_string(), report.wide_nodes.join(",")));
    }
    if let Some(errs) = auto_errors {
        meta.push(("quant.method_choice".to_string(), errs));
    }
    if let Some(choice) = input_choice {
        meta.push(("quant.input_layer".to_string(), choice));
    }
    if let (Some(md), Some(d)) = (c.opts.max_drop, drop_reached) {
        meta.push(("quant.max_drop".to_string(), md.to_string()));
        meta.push(("quant.drop_on_calibration".to_string(), format!("{d:.3}")));
    }
    if let (Some(me), Some(e)) = (c.opts.max_error, reached) {
        meta.push(("quant.max_error".to_string(), me.to_string()));
        meta.push(("quant.error_on_calibration".to_string(), format!("{e:.4e}")));
        meta.push((
            if mixed {
                "quant.wide_by_search"
            } else {
                "quant.kept_float_by_search"
            }
            .to_string(),
            if mixed { &wide } else { &keep }
                .iter()
                .filter(|&&k| k)
                .count()
                .to_string(),
        ));
    }
    // int8 weights are repacked at session creation anyway, so reading them in place saves nothing:
    // store them deflated (unless `--plain-weights`, for flash/mmap use)
    let opts = tern::artifact::EncodeOptions {
        deflate_weights: !c.opts.plain_weights,
    };
    Ok((crate::export::to_bytes_with(&qg, meta, opts)?, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern::ir::{Conv2d, Op};

    /// A function of a function (Keras' leaky ReLU clipped at −0.4 by a Max, which `ScalarClamp` makes
    /// a Clip) becomes one int8 table of the composition, rounded once: one QLut where there were two,
    /// and the outputs stay within two output steps of float (conv rounding plus the table's).
    #[test]
    fn a_function_of_a_function_is_one_table() {
        let mut g = ToolGraph::default();
        let x = g.add_tensor("x", &[1, 2, 5, 5]);
        g.graph.inputs.push(x);
        let wv: Vec<f32> = (0..2 * 2 * 9)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0)
            .collect();
        let w = g.add_const("w", &[2, 2, 3, 3], wv);
        let conv = Op::Conv {
            geom: Conv2d::same(3),
            act: None,
        };
        let y = g
            .emit("conv", conv, vec![x, w], &["y".into()], None)
            .unwrap()[0];
        let leaky = Op::Unary(Unary::LeakyRelu { alpha: 0.2 });
        let l = g
            .emit("leaky", leaky, vec![y], &["l".into()], None)
            .unwrap()[0];
        let floor = Op::Unary(Unary::Clip {
            min: -0.4,
            max: f32::INFINITY,
        });
        let z = g
            .emit("floor", floor, vec![l], &["z".into()], None)
            .unwrap()[0];
        g.graph.outputs.push(z);
        let samples: Vec<Vec<Vec<f32>>> = (0..8)
            .map(|s| {
                vec![(0..50)
                    .map(|i| (((i * 31 + s * 17) % 41) as f32 - 20.0) / 5.0)
                    .collect()]
            })
            .collect();
        let obs = calibrate(&g, &samples, false, || {}).unwrap();
        let keep = vec![false; g.graph.nodes.len()];
        let (qg, _) = quantize_graph(&g, &obs, &Int8Options::default(), &keep).unwrap();
        let luts = qg
            .graph
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::QLut))
            .count();
        assert_eq!(
            luts,
            1,
            "{:?}",
            qg.graph.nodes.iter().map(|n| &n.op).collect::<Vec<_>>()
        );
        let (want, got) = (
            outputs(&g, &samples).unwrap(),
            outputs(&qg, &samples).unwrap(),
        );
        let (lo, hi) = want
            .iter()
            .flat_map(|s| s[0].iter())
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let step = (hi - lo) / 255.0;
        for (w, q) in want.iter().zip(&got) {
            for (a, b) in w[0].iter().zip(&q[0]) {
                assert!(
                    (a - b).abs() <= 2.0 * step,
                    "{b} vs float {a} (step {step})"
                );
            }
        }
    }

    /// `--keep-float NAME` keeps every node of that name (a 1-D conv is a reshape, a conv and a reshape
    /// under one ONNX name; the first alone left the conv in int8), and an unknown name is an error naming
    /// it.
    #[test]
    fn keep_float_takes_every_node_of_a_name() {
        let mut g = ToolGraph::default();
        let x = g.add_tensor("x", &[1, 2, 4]);
        g.graph.inputs.push(x);
        let x4 = g
            .emit(
                "conv1d",
                Op::Reshape,
                vec![x],
                &["x4".into()],
                Some(vec![vec![1, 2, 1, 4]]),
            )
            .unwrap()[0];
        let w = g.add_const("w", &[2, 2, 1, 1], vec![1.0, 0.5, -0.5, 1.0]);
        let geom = Conv2d::pointwise(1);
        let y4 = g
            .emit(
                "conv1d",
                Op::Conv { geom, act: None },
                vec![x4, w],
                &["y4".into()],
                None,
            )
            .unwrap()[0];
        let y = g
            .emit(
                "conv1d",
                Op::Reshape,
                vec![y4],
                &["y".into()],
                Some(vec![vec![1, 2, 4]]),
            )
            .unwrap()[0];
        g.graph.outputs.push(y);
        let mut opts = Int8Options {
            keep_float: vec!["conv1d".into()],
            ..Int8Options::default()
        };
        assert_eq!(user_float(&g, &opts).unwrap(), [true; 3]);
        opts.keep_float = vec!["conv2d".into()];
        let e = user_float(&g, &opts).unwrap_err().to_string();
        assert!(e.contains("no node named \"conv2d\""), "{e}");
    }

    /// `n` samples of one 32-value input, value `i` of sample `s` from `f(s, i)`.
    fn samples32(n: usize, f: impl Fn(usize, usize) -> f32) -> Vec<Vec<Vec<f32>>> {
        (0..n)
            .map(|s| vec![(0..32).map(|i| f(s, i)).collect()])
            .collect()
    }

    /// A pointwise conv of `w.len() / 2` input channels to 2 output channels, named `name`.
    fn pointwise2(g: &mut ToolGraph, name: &str, x: u32, w: Vec<f32>) -> u32 {
        let w = g.add_const(&format!("{name}_w"), &[2, w.len() / 2, 1, 1], w);
        let op = Op::Conv {
            geom: Conv2d::pointwise(1),
            act: None,
        };
        g.emit(name, op, vec![x, w], &[format!("{name}_y")], None)
            .unwrap()[0]
    }

    /// x `[1, 2, 4, 4]` → pointwise conv "a" → hard-swish "hs": the graph, x and hs's output.
    fn conv_hswish() -> (ToolGraph, u32, u32) {
        let mut g = ToolGraph::default();
        let x = g.add_tensor("x", &[1, 2, 4, 4]);
        g.graph.inputs.push(x);
        let a = pointwise2(&mut g, "a", x, vec![0.5, -0.2, 0.3, 0.7]);
        let h = g
            .emit(
                "hs",
                Op::Unary(tern::ir::Unary::HardSwish),
                vec![a],
                &["hs_y".into()],
                None,
            )
            .unwrap()[0];
        (g, x, h)
    }

    /// With 16-bit activations, what the 16-bit engine cannot take stays float and the rest is integer:
    /// an Add whose operand was zero on every sample (its rescale has no 14-bit form) and a Concat with a
    /// constant; the convs around them become Q16Conv, the one before the hard-swish a Q16ConvAct computing
    /// it, and the artifact loads.
    #[test]
    fn int16_keeps_what_its_engine_cannot_take_in_float() {
        use tern::ir::BinOp;
        let (mut g, x, h) = conv_hswish();
        let conv = pointwise2;
        // a conv whose output is zero on every sample (zero weights), added to the hard-swish
        let z = conv(&mut g, "z", x, vec![0.0; 4]);
        let add = Op::Binary {
            op: BinOp::Add,
            act: None,
        };
        let s = g
            .emit("add", add, vec![h, z], &["add_y".into()], None)
            .unwrap()[0];
        let k = g.add_const("k", &[1, 1, 4, 4], vec![0.25; 16]);
        let c = g
            .emit(
                "cat",
                Op::Concat { axis: 1 },
                vec![s, k],
                &["cat_y".into()],
                None,
            )
            .unwrap()[0];
        let y = conv(&mut g, "b", c, vec![0.1; 6]);
        let _ = y;
        g.graph
            .outputs
            .push(g.graph.nodes.last().unwrap().outputs[0]);
        let samples = samples32(4, |s, i| ((i * 5 + s * 3) % 13) as f32 / 6.0 - 1.0);
        let obs = calibrate(&g, &samples, false, || {}).unwrap();
        let opts = Int8Options {
            act16: true,
            channel_scales: false,
            ..Int8Options::default()
        };
        let (qg, report) = quantize_graph(&g, &obs, &opts, &[false; 6]).unwrap();
        let ops: Vec<(&str, &str)> = qg
            .graph
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.op.name()))
            .collect();
        assert!(report.float_nodes.contains(&"add".to_string()), "{ops:?}");
        assert!(report.float_nodes.contains(&"cat".to_string()), "{ops:?}");
        let q16 = |name: &str| ops.iter().any(|&(n, o)| n == name && o.starts_with("Q16"));
        assert!(q16("a") && q16("z") && q16("b"), "{ops:?}");
        // the hard-swish is computed in f32 in conv a's epilogue (format 12), not looked up
        assert!(ops.contains(&("a", "Q16ConvAct")), "{ops:?}");
        assert!(!ops.iter().any(|&(n, _)| n == "hs"), "{ops:?}");
        let bytes = crate::export::to_bytes(&qg, vec![]).unwrap();
        tern::Model::from_bytes(&bytes).unwrap();
    }

    #[test]
    fn mixed_widths_convert_where_they_meet() {
        use tern::ir::DType;
        // a (int8) -> hard-swish (int8) -> b (int16) -> c (int8)
        let (mut g, _, h) = conv_hswish();
        let b = pointwise2(&mut g, "b", h, vec![0.9, 0.1, -0.4, 0.6]);
        let y = pointwise2(&mut g, "c", b, vec![0.2, 0.8, 0.5, -0.3]);
        g.graph.outputs.push(y);
        let samples = samples32(8, |s, i| ((i * 7 + s * 3) % 17) as f32 / 4.0 - 2.0);
        let obs = calibrate(&g, &samples, false, || {}).unwrap();
        let opts = Int8Options {
            channel_scales: false,
            ..Int8Options::default()
        };
        // (the table asked wide: it takes a's width, as an element-wise function follows its producer)
        let wide = [false, true, true, false];
        let (qg, report) = quantize_graph_mixed(&g, &obs, &opts, &[false; 4], &wide).unwrap();
        assert_eq!(report.wide_nodes, ["b"]);
        let ops: Vec<(&str, &str, DType)> = qg
            .graph
            .nodes
            .iter()
            .map(|n| {
                let t = &qg.graph.tensors[n.outputs[0] as usize];
                (n.name.as_str(), n.op.name(), t.dtype)
            })
            .collect();
        let op_of = |name: &str| ops.iter().find(|o| o.0 == name).map(|o| (o.1, o.2));
        assert_eq!(op_of("a"), Some(("QConv", DType::I8)), "{ops:?}");
        assert_eq!(op_of("hs"), Some(("QLut", DType::I8)), "{ops:?}");
        assert_eq!(op_of("b"), Some(("Q16Conv", DType::I16)), "{ops:?}");
        assert_eq!(op_of("c"), Some(("QConv", DType::I8)), "{ops:?}");
        // the table's int8 output becomes int16 for b, b's int16 output int8 for c: one integer rescale
        // each way (fuse_requantize), besides the input's and the output's conversions
        let count = |op: &str| ops.iter().filter(|o| o.1 == op).count();
        let convs = (count("Quantize"), count("Dequantize"), count("Requantize"));
        assert_eq!(convs, (1, 1, 2), "{ops:?}");
        // and the integers still compute the model: within the int8 steps of the float outputs
        let want = outputs(&g, &samples).unwrap();
        let got = outputs(&qg, &samples).unwrap();
        let e = output_error(&got, &want);
        assert!(e < 0.03, "rel-L2 {e}");
    }

    /// An element-wise chain on float inputs (an STFT magnitude `sqrt(re·re + im·im)`, as silero VAD
    /// computes it) stays float up to the conv that reads it: the conv runs on integers, its input is
    /// rounded once, after the square root, not the squares before the Add.
    #[test]
    fn elementwise_ops_on_float_inputs_stay_float() {
        use tern::ir::{BinOp, Unary};
        let mut g = ToolGraph::default();
        let re = g.add_tensor("re", &[1, 2, 4, 4]);
        let im = g.add_tensor("im", &[1, 2, 4, 4]);
        g.graph.inputs.extend([re, im]);
        let bin = |g: &mut ToolGraph, name: &str, a: u32, b: u32, op: BinOp| {
            let o = Op::Binary { op, act: None };
            g.emit(name, o, vec![a, b], &[format!("{name}_y")], None)
                .unwrap()[0]
        };
        let re2 = bin(&mut g, "re2", re, re, BinOp::Mul);
        let im2 = bin(&mut g, "im2", im, im, BinOp::Mul);
        let sum = bin(&mut g, "sum", re2, im2, BinOp::Add);
        let mag = g
            .emit(
                "mag",
                Op::Unary(Unary::Sqrt),
                vec![sum],
                &["mag_y".into()],
                None,
            )
            .unwrap()[0];
        let w = g.add_const("w", &[3, 2, 1, 1], vec![0.5, -0.2, 0.3, 0.7, -0.4, 0.1]);
        let y = g
            .emit(
                "conv",
                Op::Conv {
                    geom: Conv2d::pointwise(1),
                    act: None,
                },
                vec![mag, w],
                &["y".to_string()],
                None,
            )
            .unwrap()[0];
        g.graph.outputs.push(y);
        let samples: Vec<Vec<Vec<f32>>> = (0..4)
            .map(|s| {
                let v = |k: usize| {
                    (0..32)
                        .map(|i| ((i * 5 + s * 3 + k) % 13) as f32 / 6.0 - 1.0)
                        .collect()
                };
                vec![v(0), v(7)]
            })
            .collect();
        let obs = calibrate(&g, &samples, false, || {}).unwrap();
        let (qg, _) = quantize_graph(&g, &obs, &Int8Options::default(), &[false; 5]).unwrap();
        // (fuse_act folds the float Sqrt into the float Add's activation slot)
        let ops: Vec<(&str, &str)> = qg
            .graph
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.op.name()))
            .collect();
        assert_eq!(
            ops,
            [
                ("re2", "Mul"),
                ("im2", "Mul"),
                ("sum", "Add"),
                ("mag_y/quantize", "Quantize"),
                ("conv", "QConv"),
                ("y/dequantize", "Dequantize")
            ]
        );
        let add = &qg.graph.nodes[2].op;
        assert!(
            matches!(
                add,
                Op::Binary {
                    act: Some(Unary::Sqrt),
                    ..
                }
            ),
            "{add:?}"
        );
        // the same graph as an imported quantized model (its parameters on every activation) keeps the
        // model's choice: every op on integers
        for t in [re, im, re2, im2, sum, mag, y] {
            g.graph.tensors[t as usize].quant = Some(tern::ir::quant::QParams {
                scale: vec![0.05],
                zero_point: vec![0],
                axis: None,
            });
        }
        let (qg, _) = quantize_graph(&g, &obs, &Int8Options::default(), &[false; 5]).unwrap();
        let ops: Vec<&str> = qg.graph.nodes.iter().map(|n| n.op.name()).collect();
        assert!(
            ops.iter().all(|o| o.starts_with('Q') || *o == "Dequantize"),
            "{ops:?}"
        );
    }

    /// A detector's output: box coordinates in pixels (a conv, 0..300) beside class scores (a conv, then
    /// Sigmoid: 0..1) joined by a Concat and reshaped (YOLOv8's head). The head rule keeps the Concat and the
    /// Sigmoid in float (and the Reshape after them stays float on its float input), so each part is
    /// dequantized at its own scale: the scores stay within a few thousandths of float64 (on the Concat's
    /// one int8 grid, 1.2 wide, every score would be 0 or 1.2), the boxes within two of their conv's steps.
    #[test]
    fn detector_output_parts_keep_their_own_scales() {
        let mut g = ToolGraph::default();
        let x = g.add_tensor("x", &[1, 1, 4, 4]);
        g.graph.inputs.push(x);
        let conv = |g: &mut ToolGraph, name: &str, w: f32, b: f32| {
            let (w, b) = (
                g.add_const(&format!("{name}_w"), &[1, 1, 1, 1], vec![w]),
                g.add_const(&format!("{name}_b"), &[1], vec![b]),
            );
            let op = Op::Conv {
                geom: Conv2d::pointwise(1),
                act: None,
            };
            g.emit(name, op, vec![x, w, b], &[format!("{name}_y")], None)
                .unwrap()[0]
        };
        let boxes = conv(&mut g, "box", 300.0, 0.0);
        let logits = conv(&mut g, "cls", 4.0, -2.0);
        let op = Op::Unary(tern::ir::Unary::Sigmoid);
        let scores = g
            .emit("sig", op, vec![logits], &["s".into()], None)
            .unwrap()[0];
        let op = Op::Concat { axis: 1 };
        let cat = g
            .emit("cat", op, vec![boxes, scores], &["cat_y".into()], None)
            .unwrap()[0];
        let y = g
            .emit(
                "flat",
                Op::Reshape,
                vec![cat],
                &["y".into()],
                Some(vec![vec![1, 2, 16]]),
            )
            .unwrap()[0];
        g.graph.outputs.push(y);
        let samples: Vec<Vec<Vec<f32>>> = (0..4)
            .map(|s| {
                vec![(0..16)
                    .map(|i| ((i * 7 + s * 5) % 17) as f32 / 16.0)
                    .collect()]
            })
            .collect();
        let obs = calibrate(&g, &samples, false, || {}).unwrap();
        let keep = float_head(&g);
        let kept: Vec<&str> = g
            .graph
            .nodes
            .iter()
            .zip(&keep)
            .filter(|(_, &k)| k)
            .map(|(n, _)| n.name.as_str())
            .collect();
        assert_eq!(kept, ["sig", "cat"]);
        let (qg, _) = quantize_graph(&g, &obs, &Int8Options::default(), &keep).unwrap();
        let ops: Vec<&str> = qg.graph.nodes.iter().map(|n| n.op.name()).collect();
        assert_eq!(
            ops.iter().filter(|o| o.starts_with('Q')).count(),
            3,
            "{ops:?}"
        );
        assert_eq!(ops[ops.len() - 2..], ["Concat", "Reshape"], "{ops:?}");
        let step = |name: &str| {
            let t = qg
                .graph
                .tensors
                .iter()
                .find(|t| t.name == name && t.quant.is_some());
            t.and_then(|t| t.quant.as_ref())
                .map(|q| q.scale[0] as f64)
                .unwrap()
        };
        let (box_step, logit_step) = (step("box_y"), step("cls_y"));
        let got = outputs(&qg, &samples).unwrap();
        let mut worst = 0f64;
        for (s, o) in samples.iter().zip(&got) {
            for (i, &v) in s[0].iter().enumerate() {
                let v = v as f64;
                let (b, sc) = (o[0][i] as f64, o[0][16 + i] as f64);
                assert!(
                    (b - 300.0 * v).abs() <= 2.0 * box_step,
                    "box {b} vs {}",
                    300.0 * v
                );
                worst = worst.max((sc - 1.0 / (1.0 + (2.0 - 4.0 * v).exp())).abs());
            }
        }
        assert!(
            worst <= logit_step,
            "score error {worst} (logit step {logit_step})"
        );
    }

    /// A conv whose second output channel has weights ~1e-19 of the first's (dead after BatchNorm
    /// folding; PP-OCRv4 rec has such channels): its multiplier is below 32-bit fixed point, so the pass
    /// stores that channel as zeros at the output's scale and its output is its bias; the live channel
    /// stays within a few output steps of float64.
    #[test]
    fn negligible_channels_quantize_to_their_bias() {
        let mut g = ToolGraph::default();
        let x = g.add_tensor("x", &[1, 2, 4, 4]);
        g.graph.inputs.push(x);
        // (0.3 keeps the weights off one per-tensor grid, so they are quantized per channel)
        let w = g.add_const("w", &[2, 2, 1, 1], vec![0.8, 0.3, 3e-19, -1e-19]);
        let b = g.add_const("b", &[2], vec![0.1, 0.25]);
        let geom = Conv2d::pointwise(1);
        let y = g
            .emit(
                "conv",
                Op::Conv { geom, act: None },
                vec![x, w, b],
                &["y".to_string()],
                None,
            )
            .unwrap()[0];
        g.graph.outputs.push(y);
        let samples = samples32(4, |s, i| ((i * 7 + s * 3) % 11) as f32 / 5.0 - 1.0);
        let obs = calibrate(&g, &samples, false, || {}).unwrap();
        let opts = Int8Options {
            method: calib::Method::MinMax,
            ..Int8Options::default()
        };
        // the output head rule would keep this one-node model float: quantize everything
        let (qg, _) = quantize_graph(&g, &obs, &opts, &[false]).unwrap();
        let got = outputs(&qg, &samples).unwrap();
        let step = qg
            .graph
            .tensors
            .iter()
            .find(|t| t.name == "y" && t.quant.is_some())
            .and_then(|t| t.quant.as_ref())
            .map(|q| q.scale[0])
            .unwrap();
        for (s, o) in samples.iter().zip(&got) {
            for i in 0..16 {
                let live = 0.8 * s[0][i] as f64 + 0.3 * s[0][16 + i] as f64 + 0.1;
                assert!(
                    (o[0][i] as f64 - live).abs() <= 2.0 * step as f64,
                    "{} vs {live}",
                    o[0][i]
                );
                // the dead channel: its bias, to within half an output step
                assert!(
                    (o[0][16 + i] as f64 - 0.25).abs() <= 0.5 * step as f64 + 1e-6,
                    "{}",
                    o[0][16 + i]
                );
            }
        }
    }

    /// Conv -> HardSwish -> depthwise conv (PicoDet's block), a wide channel beside a narrow one that the
    /// depthwise weights amplify: on one per-tensor grid the narrow channel is a dozen steps wide (PicoDet
    /// layout int8 lost half its detections so). Channel-scaled, with the hard-swish output's zero point
    /// moved off the grid's bottom (its -0.375 floor is shared by every channel), the amplified channel's
    /// output error vs float64 drops severalfold.
    #[test]
    fn channel_scaled_depthwise_input_keeps_a_narrow_channel() {
        let mut g = ToolGraph::default();
        let x = g.add_tensor("x", &[1, 2, 8, 8]);
        g.graph.inputs.push(x);
        let geom = |k: u32, groups: u32| Conv2d {
            kernel: [k, k],
            strides: [1, 1],
            dilations: [1, 1],
            pads: [k / 2; 4],
            groups,
            output_padding: [0, 0],
        };
        let w1 = g.add_const("w1", &[2, 2, 1, 1], vec![1.0, 0.0, 0.0, 1.0]);
        let w2 = g.add_const("w2", &[2, 1, 3, 3], [[1.0 / 9.0; 9], [20.0; 9]].concat());
        let name = |s: &str| vec![s.to_string()];
        let conv = Op::Conv {
            geom: geom(1, 1),
            act: None,
        };
        let y = g.emit("pw", conv, vec![x, w1], &name("y"), None).unwrap()[0];
        let op = Op::Unary(tern::ir::Unary::HardSwish);
        let h = g.emit("hswish", op, vec![y], &name("h"), None).unwrap()[0];
        let conv = Op::Conv {
            geom: geom(3, 2),
            act: None,
        };
        let z = g.emit("dw", conv, vec![h, w2], &name("z"), None).unwrap()[0];
        g.graph.outputs.push(z);
        // channel 0 in [0, 40], channel 1 in [-0.5, 0.5]
        let sample = |s: usize| -> Vec<Vec<f32>> {
            let v = |i: usize| ((i * 37 + s * 11) % 101) as f32 / 100.0;
            vec![(0..128)
                .map(|i| if i < 64 { 40.0 * v(i) } else { v(i) - 0.5 })
                .collect()]
        };
        let samples: Vec<Vec<Vec<f32>>> = (0..8).map(sample).collect();
        let obs = calibrate(&g, &samples, true, || {}).unwrap();
        let hs = |v: f64| v * (v / 6.0 + 0.5).clamp(0.0, 1.0);
        // channel 1 of the output in float64, and the int8 model's rms error on it
        let err = |channel_scales: bool| {
            let opts = Int8Options {
                method: calib::Method::MinMax,
                channel_scales,
                ..Int8Options::default()
            };
            let (qg, report) = quantize_graph(&g, &obs, &opts, &[false; 3]).unwrap();
            let got = outputs(&qg, &samples).unwrap();
            let mut e = 0.0;
            for (s, o) in samples.iter().zip(&got) {
                for oy in 0..8i32 {
                    for ox in 0..8i32 {
                        let mut want = 0.0;
                        for (dy, dx) in (-1..=1).flat_map(|a| (-1..=1).map(move |b| (a, b))) {
                            let (iy, ix) = (oy + dy, ox + dx);
                            if (0..8).contains(&iy) && (0..8).contains(&ix) {
                                want += 20.0 * hs(s[0][64 + (iy * 8 + ix) as usize] as f64);
                            }
                        }
                        let d = o[0][64 + (oy * 8 + ox) as usize] as f64 - want;
                        e += d * d;
                    }
                }
            }
            ((e / (64.0 * samples.len() as f64)).sqrt(), report, qg)
        };
        let (tensor, _, _) = err(false);
        let (channel, report, qg) = err(true);
        println!("narrow channel rms error: per tensor {tensor:.4}, channel-scaled {channel:.4}");
        assert!(
            report.channel_scaled.contains(&"h".to_string()),
            "{:?}",
            report.channel_scaled
        );
        let zp = qg
            .graph
            .tensors
            .iter()
            .find(|t| t.name == "h")
            .and_then(|t| t.quant.as_ref())
            .map(|q| q.zero_point[0])
            .unwrap();
        assert!(
            zp > -120,
            "the hard-swish output's zero point moved up: {zp}"
        );
        assert!(
            channel < tensor / 4.0,
            "narrow channel rms error: channel-scaled {channel}, per tensor {tensor}"
        );
    }
}
