//! The quantize pass: a calibrated float graph becomes an integer graph. Every node with an integer kernel
//! runs on int8 tensors; the rest run in f32 between Dequantize/Quantize nodes, inserted once per tensor
//! (so adjacent float nodes form one island and data is not converted back and forth).
//!
//! Scheme (`shared/design.md`): weights int8 symmetric per output channel, activations int8 asymmetric per
//! tensor from the calibrated range (a conv's or a table's output read only by tables and depthwise convs
//! may be channel-scaled: one scale per channel, one zero point, see [`channel_candidates`]), biases int32
//! at scale s_x·s_w, Relu/Clip fused into the producer's clamp, other element-wise functions as 256-entry
//! tables (one per channel of a channel-scaled input or output). Data movement and max pooling keep their
//! input's parameters (they only move values); Concat and average pooling rescale to their own.
use super::calib::{asymmetric_i8, symmetric_i16, Method, Observer};
use crate::graph::ToolGraph;
use anyhow::{anyhow, Result};
use tern::cpu::qconv::quantize_weights;
use tern::ir::quant::{
    dequantize_i8, quantize_bias, quantize_f32, quantize_f32_i16, FixedMultiplier, QParams,
};
use tern::ir::{BinOp, Conv2d, DType, Op, PoolKind, Unary};

/// Which nodes compute on 16-bit activations (the rest on int8).
#[derive(Clone, Copy, Debug)]
pub enum Wide<'a> {
    /// None: int8 activations.
    None,
    /// Every node (`--activations int16`); what the 16-bit engine cannot take stays float.
    All,
    /// The nodes marked, by float-graph node index (mixed precision; what the 16-bit engine cannot take
    /// of them stays float too). A tensor written in one width and read in the other is converted once.
    Nodes(&'a [bool]),
}

/// What the pass produced besides the graph.
#[derive(Debug, Default)]
pub struct Report {
    /// Nodes (of the float graph) that run on the integer engine.
    pub int_nodes: usize,
    /// Names of nodes that stay in float, because they have no integer kernel or were kept by request.
    pub float_nodes: Vec<String>,
    /// Names of nodes that run on 16-bit activations.
    pub wide_nodes: Vec<String>,
    /// Dequantize/Quantize nodes inserted at island borders.
    pub conversions: usize,
    /// Tensors stored channel-scaled (one scale per channel).
    pub channel_scaled: Vec<String>,
}

/// Whether node `n` of `g` has an integer form (independent of calibration).
pub fn has_int_kernel(g: &ToolGraph, n: &tern::ir::Node) -> bool {
    let konst = |k: usize| n.inputs.get(k).is_some_and(|&t| g.konst(t).is_some());
    let clamp =
        |a: &Option<Unary>| matches!(a, None | Some(Unary::Relu) | Some(Unary::Clip { .. }));
    match &n.op {
        Op::Conv { act, .. } => {
            konst(1)
                && clamp(act)
                && n.inputs.get(2).is_none_or(|_| konst(2))
                && n.inputs.len() <= 3
        }
        // kernel = stride without padding: each output pixel takes one tap (the runtime's QConvTranspose)
        Op::ConvTranspose { geom, act } => {
            konst(1)
                && clamp(act)
                && n.inputs.get(2).is_none_or(|_| konst(2))
                && geom.kernel == geom.strides
                && geom.pads == [0; 4]
                && geom.dilations == [1, 1]
                && geom.groups == 1
                && geom.output_padding == [0, 0]
        }
        Op::ChannelAffine { act } => clamp(act) && g.shape(n.inputs[0]).len() == 4,
        Op::MatMul { act } => {
            konst(1)
                && g.shape(n.inputs[1]).len() == 2
                && clamp(act)
                && n.inputs.get(2).is_none_or(|_| konst(2))
        }
        Op::Binary { op, act } => {
            matches!(op, BinOp::Add | BinOp::Sub | BinOp::Mul)
                && clamp(act)
                && !(konst(0) && konst(1))
        }
        // tables, and what the runtime moves or pools on integers
        op if matches!(op, Op::Unary(_)) || tern::model::moves_integers(op) => !konst(0),
        _ => false,
    }
}

/// Tensors of `g` that may be stored channel-scaled (one scale per channel, one zero point; see
/// `tern::ir::quant::QParams`): the 4-D output of a Conv (without a fused activation) or of an element-wise
/// function (a table), read only by element-wise functions other than Relu/Clip (those fuse into the
/// conv's clamp) and by depthwise convolutions (one input channel per group). The producer requantizes per
/// channel (per-channel multipliers, or one table per channel), each function reader becomes one table per
/// channel and each depthwise reader folds the channel's scale into its per-channel multiplier.
/// Calibration observes these per channel too.
pub fn channel_candidates(g: &ToolGraph) -> Vec<bool> {
    let cons = g.consumers();
    let table =
        |op: &Op| matches!(op, Op::Unary(u) if !matches!(u, Unary::Relu | Unary::Clip { .. }));
    let mut out = vec![false; g.graph.tensors.len()];
    for n in &g.graph.nodes {
        let Some(&y) = n.outputs.first() else {
            continue;
        };
        if !matches!(n.op, Op::Conv { act: None, .. }) && !table(&n.op) {
            continue;
        }
        let c = &cons[y as usize];
        let shape = g.shape(y);
        out[y as usize] = shape.len() == 4
            && !c.is_empty()
            && !g.graph.outputs.contains(&y)
            && c.iter().all(|&(j, k)| {
                let r = &g.graph.nodes[j];
                table(&r.op) || (k == 0 && is_depthwise(g, r, shape[1]))
            });
    }
    out
}

/// Whether `n` is a convolution with one input channel per group over `c` input channels.
fn is_depthwise(g: &ToolGraph, n: &tern::ir::Node, c: usize) -> bool {
    let Op::Conv { geom, .. } = &n.op else {
        return false;
    };
    let ws = n.inputs.get(1).map(|&w| g.shape(w)).unwrap_or_default();
    ws.len() == 4 && ws[1] == 1 && geom.groups as usize == c
}

/// The 16-bit clamp of a fused activation in an output's integers (zero point 0).
fn clamp16_of(act: Option<Unary>, q: &QParams) -> (i16, i16) {
    let s = q.scale[0];
    match act {
        Some(Unary::Relu) => (0, i16::MAX),
        Some(Unary::Clip { min, max }) => (quantize_f32_i16(min, s), quantize_f32_i16(max, s)),
        _ => (i16::MIN, i16::MAX),
    }
}

/// An integer op with an output clamp.
enum Clamped {
    Conv(Conv2d),
    MatMul,
    Binary(BinOp),
}

/// The integer op `kind` on 8-bit or (`w16`) 16-bit activations, clamped by the fused activation `act`
/// in the output's parameters `q`.
fn clamped(w16: bool, kind: Clamped, act: Option<Unary>, q: &QParams) -> Op {
    if w16 {
        let (lo, hi) = clamp16_of(act, q);
        return match kind {
            Clamped::Conv(geom) => Op::Q16Conv { geom, lo, hi },
            Clamped::MatMul => Op::Q16MatMul { lo, hi },
            Clamped::Binary(op) => Op::Q16Binary { op, lo, hi },
        };
    }
    let (lo, hi) = clamp_of(act, q);
    match kind {
        Clamped::Conv(geom) => Op::QConv { geom, lo, hi },
        Clamped::MatMul => Op::QMatMul { lo, hi },
        Clamped::Binary(op) => Op::QBinary { op, lo, hi },
    }
}

/// The integer clamp of a fused activation in an output's integers.
fn clamp_of(act: Option<Unary>, q: &QParams) -> (i8, i8) {
    let (s, z) = (q.scale[0], q.zero_point[0]);
    match act {
        Some(Unary::Relu) => (quantize_f32(0.0, s, z), 127),
        Some(Unary::Clip { min, max }) => (quantize_f32(min, s, z), quantize_f32(max, s, z)),
        _ => (-128, 127),
    }
}

/// The per-tensor int8 step of weights that already lie on one (a model quantized per tensor, e.g. by
/// ONNX Runtime's default `quantize_static`): keeping it keeps the model's integers. `None` for ordinary
/// float weights.
pub(crate) fn tensor_grid(w: &[f32]) -> Option<f32> {
    let amax = w.iter().fold(0f32, |a, v| a.max(v.abs()));
    if amax <= 0.0 || w.len() < 2 {
        return None;
    }
    let s = amax / 127.0;
    w.iter()
        .all(|&v| {
            let q = v / s;
            (q - q.round()).abs() <= 1e-3
        })
        .then_some(s)
}

/// Int8 weights per channel (rows of `m`), or on the tensor's own grid when it has one.
fn quantize_rows(w: &[f32], m: usize) -> (Vec<i8>, Vec<f32>) {
    match tensor_grid(w) {
        Some(s) => (
            w.iter()
                .map(|&v| (v / s).round().clamp(-127.0, 127.0) as i8)
                .collect(),
            vec![s; m],
        ),
        None => quantize_weights(w, m),
    }
}

/// Output channels whose requantization multiplier `sx·s_w/s_y` is below what 32-bit fixed point encodes
/// (a channel of weights ~1e-20 of the others: dead after BatchNorm folding, PP-OCRv4 rec has them) can
/// move the output by far less than one step: their weights become exact zeros and their scale `s_y/s_x`,
/// so the multiplier is 1 and the bias alone (quantized at that scale) gives the channel's output.
/// `channel(j)` is the output channel of weight `j`.
fn settle_negligible(
    q: &mut [i8],
    scales: &mut [f32],
    sx: &[f32],
    sy: &[f32],
    channel: impl Fn(usize) -> usize,
) {
    let so = |c: usize| sy[if sy.len() == 1 { 0 } else { c }];
    let si = |c: usize| sx[if sx.len() == 1 { 0 } else { c }];
    let dead: Vec<bool> = scales
        .iter()
        .enumerate()
        .map(|(c, &sw)| {
            let real = si(c) as f64 * sw as f64 / so(c) as f64;
            real > 0.0 && real < 1.0 && FixedMultiplier::from_real(real).is_none()
        })
        .collect();
    if !dead.contains(&true) {
        return;
    }
    for (c, s) in scales.iter_mut().enumerate() {
        if dead[c] {
            *s = so(c) / si(c);
        }
    }
    for (j, v) in q.iter_mut().enumerate() {
        if dead[channel(j)] {
            *v = 0;
        }
    }
}

fn i8_bytes(v: &[i8]) -> Vec<u8> {
    v.iter().map(|&x| x as u8).collect()
}

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

struct Builder<'a> {
    fg: &'a ToolGraph,
    qg: ToolGraph,
    /// Per float-graph tensor: its f32 form in the new graph, and its integer forms (`[int8, int16]`),
    /// once made.
    fmap: Vec<Option<u32>>,
    qmap: [Vec<Option<u32>>; 2],
    /// Activation parameters per float-graph tensor (calibrated, or inherited by data movement), for
    /// int8 and for int16.
    params: [Vec<Option<QParams>>; 2],
    conversions: usize,
}

/// A constant operand's int16 parameters: its own range, no headroom (it is all there is).
fn const16_params(c: &[f32]) -> QParams {
    let (lo, hi) = c
        .iter()
        .fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
    symmetric_i16(lo, hi, 1.0)
}

/// The activations' element type: int16 (`w16`) or int8.
fn act_dtype(w16: bool) -> DType {
    if w16 {
        DType::I16
    } else {
        DType::I8
    }
}

impl Builder<'_> {
    fn name(&self, t: u32) -> String {
        self.fg.graph.tensors[t as usize].name.clone()
    }

    /// Emits a node whose single output is int8 (int16 with `w16`) with `q`.
    fn emit_q(
        &mut self,
        name: &str,
        op: Op,
        inputs: Vec<u32>,
        (t, w16): (u32, bool),
        q: QParams,
    ) -> Result<u32> {
        let shape = self.fg.shape(t);
        let out = self
            .qg
            .emit(name, op, inputs, &[self.name(t)], Some(vec![shape]))?[0];
        let tt = &mut self.qg.graph.tensors[out as usize];
        tt.dtype = act_dtype(w16);
        tt.quant = Some(q.clone());
        self.qmap[w16 as usize][t as usize] = Some(out);
        self.params[w16 as usize][t as usize] = Some(q);
        Ok(out)
    }

    fn param(&self, t: u32, w16: bool) -> Result<QParams> {
        self.params[w16 as usize][t as usize]
            .clone()
            .ok_or_else(|| {
                anyhow!(
                    "tensor \"{}\" was never observed during calibration",
                    self.name(t)
                )
            })
    }

    /// The int8 (int16 with `w16`) form of float-graph tensor `t`, quantizing it if it only exists in
    /// f32 (or in the other width: a conversion through f32, which the FuseRequantize pass makes one
    /// integer rescale).
    fn get_q(&mut self, t: u32, w16: bool) -> Result<u32> {
        if let Some(q) = self.qmap[w16 as usize][t as usize] {
            return Ok(q);
        }
        if let Some(c) = self.fg.konst(t) {
            let (lo, hi) = c
                .iter()
                .fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
            if w16 {
                let q = const16_params(c);
                let bytes: Vec<u8> = c
                    .iter()
                    .flat_map(|&v| quantize_f32_i16(v, q.scale[0]).to_le_bytes())
                    .collect();
                let shape = self.fg.shape(t);
                let id = self
                    .qg
                    .add_int_const(&self.name(t), &shape, DType::I16, Some(q), bytes);
                self.qmap[1][t as usize] = Some(id);
                return Ok(id);
            }
            let q = asymmetric_i8(lo, hi);
            let data: Vec<i8> = c
                .iter()
                .map(|&v| quantize_f32(v, q.scale[0], q.zero_point[0]))
                .collect();
            let shape = self.fg.shape(t);
            let id =
                self.qg
                    .add_int_const(&self.name(t), &shape, DType::I8, Some(q), i8_bytes(&data));
            self.qmap[0][t as usize] = Some(id);
            return Ok(id);
        }
        let f = self.get_f(t)?;
        let q = self.param(t, w16)?;
        self.conversions += 1;
        let name = format!("{}/quantize", self.name(t));
        self.emit_q(&name, Op::Quantize, vec![f], (t, w16), q)
    }

    /// The f32 form of float-graph tensor `t`, dequantizing it if it only exists in int8 or int16.
    fn get_f(&mut self, t: u32) -> Result<u32> {
        if let Some(f) = self.fmap[t as usize] {
            return Ok(f);
        }
        if let Some(c) = self.fg.konst(t) {
            let id = self
                .qg
                .add_const(&self.name(t), &self.fg.shape(t), c.to_vec());
            self.fmap[t as usize] = Some(id);
            return Ok(id);
        }
        let q = self.qmap[0][t as usize]
            .or(self.qmap[1][t as usize])
            .ok_or_else(|| {
                anyhow!(
                    "internal error: tensor \"{}\" used before it is computed",
                    self.name(t)
                )
            })?;
        self.conversions += 1;
        let shape = self.fg.shape(t);
        let name = format!("{}/dequantize", self.name(t));
        let f = self.qg.emit(
            &name,
            Op::Dequantize,
            vec![q],
            &[self.name(t)],
            Some(vec![shape]),
        )?[0];
        self.fmap[t as usize] = Some(f);
        Ok(f)
    }

    /// Weights `w` (`m` output channels along `axis` 0 or the last axis of a `[K, N]` matrix) as int8
    /// symmetric per channel, and the bias (if any) in accumulator units. `sx`: the input's scale, or one
    /// per input channel of a channel-scaled depthwise input (output channel i reads channel i / (m / C)).
    #[allow(clippy::too_many_arguments)]
    fn weights(
        &mut self,
        node: &str,
        w: &[f32],
        wshape: &[usize],
        per_column: bool,
        bias: Option<&[f32]>,
        sx: &[f32],
        sy: &[f32],
    ) -> (u32, Option<u32>) {
        let m = if per_column { wshape[1] } else { wshape[0] };
        let per_in = (m / sx.len().max(1)).max(1);
        let sx: Vec<f32> = (0..m)
            .map(|i| sx.get(i / per_in).or(sx.last()).copied().unwrap_or(1.0))
            .collect();
        let (mut q, mut scales) = if per_column {
            // quantize the transpose row by row, then put the values back in [K, N] order
            let k = wshape[0];
            let wt: Vec<f32> = (0..m * k).map(|i| w[(i % k) * m + i / k]).collect();
            let (qt, s) = quantize_rows(&wt, m);
            ((0..k * m).map(|i| qt[(i % m) * k + i / m]).collect(), s)
        } else {
            quantize_rows(w, m)
        };
        let rows = w.len() / m.max(1);
        settle_negligible(&mut q, &mut scales, &sx, sy, |j| {
            if per_column {
                j % m
            } else {
                j / rows.max(1)
            }
        });
        let wq = QParams {
            scale: scales.clone(),
            zero_point: vec![0; m],
            axis: Some(if per_column { 1 } else { 0 }),
        };
        let wid = self.qg.add_int_const(
            &format!("{node}/W_int8"),
            wshape,
            DType::I8,
            Some(wq),
            i8_bytes(&q),
        );
        let bid = bias.map(|b| {
            let bq: Vec<i32> = (0..m)
                .map(|i| quantize_bias(b[i], sx[i] as f64 * scales[i] as f64))
                .collect();
            self.qg.add_int_const(
                &format!("{node}/B_int32"),
                &[m],
                DType::I32,
                None,
                i32_bytes(&bq),
            )
        });
        (wid, bid)
    }
}

/// Share of the int8 weight bytes that per-channel tables may add (the artifact's size is the headline:
/// 4% keeps a 4x-smaller model above 3.8x). With the headroom below the sample models stay far under it:
/// PP-OCR det channel-scales two tensors, cls none.
const CHANNEL_TABLE_BUDGET: f64 = 0.04;

/// Table bytes any model may spend on channel-scaled tensors, however few its weights (8 tables).
const CHANNEL_TABLE_FLOOR: usize = 2048;

/// A tensor is channel-scaled only if that lowers its channels' quantization error by this much on
/// average (dB per channel, from the calibration histograms).
const CHANNEL_MIN_GAIN_DB: f64 = 1.0;

/// Octaves of headroom a channel keeps above its calibrated range. A channel's range comes from C times
/// fewer values than the tensor's and a tight one clips unseen inputs (PP-OCR cls with minmax per
/// channel: calibration error down 19%, evaluation top-1 agreement 0.979 -> 0.948); with 2 octaves only
/// channels at least 8x narrower than the tensor change scale — the pathological case (PP-OCR det's stem:
/// channels 100x apart, std 0.2 at a step of 0.7) — and the tables cost almost nothing.
const CHANNEL_HEADROOM: f32 = 2.0;

/// Shared zero points a channel-scaled tensor may take besides its own (see [`channel_params`]): 1/8, 1/4
/// and 1/2 of the grid below zero.
const CHANNEL_ZERO_POINTS: [i32; 3] = [-96, -64, 0];

/// Channel-scaled parameters for a tensor with per-channel observations `o` and per-tensor parameters `q`:
/// one zero point for all channels, each channel the scale of its own range by `method` with
/// [`CHANNEL_HEADROOM`], rounded to whole octaves below the tensor's scale (channels on the same octave
/// share their table bytes, which the artifact's deflate stores once; at most 6 octaves: the channel's own
/// scale is kept ≥ 1/256 of the tensor's, minus the headroom). The shared zero point is the tensor's, or
/// with `move_zero` one of [`CHANNEL_ZERO_POINTS`] (the tensor's scale then re-derived to keep its range)
/// where that gains more: a hard-swish output spans [-0.375, 118] over the tensor (zero point -127, one
/// step below zero) while its narrow channels span [-0.1, 0.45] and need steps on both sides. Returns them with the average
/// per-channel gain in dB of expected squared error over the per-tensor `q` (histogram bin centers).
fn channel_params(
    o: &Observer,
    q: &QParams,
    method: Method,
    move_zero: bool,
) -> Option<(f64, QParams)> {
    let (st0, zp0) = (q.scale[0], q.zero_point[0]);
    if st0.is_nan() || st0 <= 0.0 {
        return None;
    }
    let grid = |s: f32, zp: i32| (-128 - zp) as f64 * s as f64..=(127 - zp) as f64 * s as f64;
    let base: Vec<f64> = o
        .channels
        .iter()
        .map(|ch| {
            let t = grid(st0, zp0);
            ch.quant_mse(*t.start(), *t.end())
        })
        .collect();
    // the tensor's range, kept by every candidate zero point
    let (lo_t, hi_t) = ((-128 - zp0) as f32 * st0, (127 - zp0) as f32 * st0);
    let mut best: Option<(f64, QParams)> = None;
    let others = CHANNEL_ZERO_POINTS
        .iter()
        .copied()
        .filter(|&z| move_zero && z != zp0);
    for zp in std::iter::once(zp0).chain(others) {
        let st = if zp == zp0 {
            st0
        } else {
            let up = if zp < 127 {
                hi_t / (127 - zp) as f32
            } else {
                0.0
            };
            let down = if zp > -128 {
                -lo_t / (zp + 128) as f32
            } else {
                0.0
            };
            up.max(down)
        };
        if !(st > 0.0 && st.is_finite()) {
            continue;
        }
        let (mut gain, mut scales) = (0f64, Vec::with_capacity(o.channels.len()));
        for (ch, &a) in o.channels.iter().zip(&base) {
            let s = if ch.count() == 0 {
                st
            } else {
                let (lo, hi) = ch.range(method);
                let up = if zp < 127 {
                    hi / (127 - zp) as f32
                } else {
                    0.0
                };
                let down = -lo / (zp + 128) as f32;
                let own = up.max(down).clamp(st / 256.0, st);
                st * (-((st / own).log2().floor() - CHANNEL_HEADROOM).clamp(0.0, 6.0)).exp2()
            };
            let c = grid(s, zp);
            let b = ch.quant_mse(*c.start(), *c.end());
            if a > 0.0 && b > 0.0 {
                gain += 10.0 * (a / b).log10();
            }
            scales.push(s);
        }
        let c = scales.len();
        let gain = gain / c.max(1) as f64;
        if best.as_ref().is_none_or(|(g, _)| gain > *g) {
            best = Some((
                gain,
                QParams {
                    scale: scales,
                    zero_point: vec![zp; c],
                    axis: Some(1),
                },
            ));
        }
    }
    best
}

/// How [`quantize`] stores weights.
#[derive(Clone, Copy, Debug, Default)]
pub struct WeightStorage {
    /// A float layer's Conv/ConvTranspose/MatMul weight as int8 per output channel (weights only, widened
    /// at session creation; from [`ToolGraph::weight_for_int8`], GPTQ's rounding where it chose one)
    /// rather than f16.
    pub float_int8: bool,
    /// Integer layers' weights from [`ToolGraph::weight_for_int8`] too (else from the float values).
    pub rounded_integer: bool,
}

/// Quantizes `fg` (the calibrated float graph: folded, not yet act-fused) with ranges from `obs` (indexed
/// by `fg`'s tensors). Nodes with `keep_float[i]` stay in float. `channel_scales`: store conv → function
/// and function → depthwise conv tensors channel-scaled where that pays (see [`channel_candidates`]).
/// `storage`: how weights are stored (see [`WeightStorage`]).
pub fn quantize(
    fg: &ToolGraph,
    obs: &[Option<Observer>],
    method: Method,
    keep_float: &[bool],
    channel_scales: bool,
    storage: WeightStorage,
    wide16: Wide,
) -> Result<(ToolGraph, Report)> {
    let float_weights_int8 = storage.float_int8;
    // a 16-bit layer's weights are GPTQ-rounded wherever the graph has them (its inputs are close to
    // float, the case GPTQ's compensation assumes)
    let int8_weight = |t: u32, w16: bool| {
        if storage.rounded_integer || w16 {
            fg.weight_for_int8(t)
        } else {
            fg.konst(t)
        }
    };
    let all16 = matches!(wide16, Wide::All);
    let nt = fg.graph.tensors.len();
    // (each width's parameters only where some node may take that width: a range by mse or entropy is
    // a search over the histogram, and the mixed search quantizes many times)
    let (need8, need16) = (!all16, !matches!(wide16, Wide::None));
    let observed = |i: usize, f: &dyn Fn(&Observer) -> QParams| {
        obs.get(i)
            .and_then(|o| o.as_ref())
            .filter(|o| o.count() > 0)
            .map(f)
    };
    let mut b = Builder {
        fg,
        qg: ToolGraph::default(),
        fmap: vec![None; nt],
        qmap: [vec![None; nt], vec![None; nt]],
        params: [
            (0..nt)
                .map(|i| {
                    // parameters an imported quantized model fixed (on its float tensors) win over
                    // calibration
                    let t = &fg.graph.tensors[i];
                    if t.dtype == DType::F32 && t.quant.is_some() {
                        return t.quant.clone();
                    }
                    if !need8 {
                        return None;
                    }
                    observed(i, &|o| {
                        let (lo, hi) = o.range(method);
                        asymmetric_i8(lo, hi)
                    })
                })
                .collect(),
            (0..nt)
                .map(|i| {
                    // (mixed with int8, the int8 tensors take `method`; int16 has no use for clipping
                    // outliers)
                    if !need16 {
                        return None;
                    }
                    observed(i, &|o| {
                        let (lo, hi) = o.range(if all16 { method } else { Method::MinMax });
                        symmetric_i16(lo, hi, ACT16_HEADROOM)
                    })
                })
                .collect(),
        ],
        conversions: 0,
    };
    for &i in &fg.graph.inputs {
        let t = &fg.graph.tensors[i as usize];
        let id = b.qg.add_tensor(&t.name, &t.dims());
        b.qg.graph.inputs.push(id);
        b.fmap[i as usize] = Some(id);
    }
    let nodes = &fg.graph.nodes;
    // (the 16-bit engine has no transposed conv)
    let transposed = |n: &tern::ir::Node| matches!(n.op, Op::ConvTranspose { .. });
    let mut wide: Vec<bool> = (0..nodes.len())
        .map(|i| match wide16 {
            Wide::None => false,
            Wide::All => true,
            Wide::Nodes(m) => m.get(i).copied().unwrap_or(false),
        })
        .collect();
    let mut is_int: Vec<bool> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            !keep_float.get(i).copied().unwrap_or(false)
                && has_int_kernel(fg, n)
                && !(wide[i] && transposed(n))
        })
        .collect();
    float_fed_elementwise(fg, &mut is_int);
    if let Wide::Nodes(_) = wide16 {
        // mixed: an element-wise function takes its integer producer's width, so that it stays a table
        // in that producer's epilogue (fuse_table16) instead of a conversion and a pass of its own
        for (i, n) in nodes.iter().enumerate() {
            if !matches!(n.op, Op::Unary(_)) {
                continue;
            }
            if let Some(p) = nodes[..i]
                .iter()
                .position(|p| p.outputs.contains(&n.inputs[0]))
            {
                if is_int[p] && is_int[i] {
                    wide[i] = wide[p];
                }
            }
        }
    }
    // Relu/Clip right after an integer producer becomes that producer's clamp
    let cons = fg.consumers();
    let mut fused_act: Vec<Option<usize>> = vec![None; nodes.len()];
    let mut absorbed = vec![false; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let Op::Unary(Unary::Relu | Unary::Clip { .. }) = n.op else {
            continue;
        };
        let x = n.inputs[0];
        let Some(p) = nodes.iter().position(|p| p.outputs.contains(&x)) else {
            continue;
        };
        let fusable = matches!(
            nodes[p].op,
            Op::Conv { act: None, .. }
                | Op::ConvTranspose { act: None, .. }
                | Op::ChannelAffine { act: None }
                | Op::MatMul { act: None }
                | Op::Binary { act: None, .. }
        );
        if fusable
            && is_int[p]
            && is_int[i]
            && cons[x as usize].len() == 1
            && !fg.graph.outputs.contains(&x)
        {
            fused_act[p] = Some(i);
            absorbed[i] = true;
        }
    }
    // A uniform affine (one scale, one shift for every channel: PP-LCNetV3's learnable affine after each
    // activation), or another element-wise function, right after an element-wise function joins that
    // function's table: one requantization instead of two, and one pass fewer
    for (i, n) in nodes.iter().enumerate() {
        let Op::Unary(_) = n.op else { continue };
        let x = n.outputs[0];
        if !is_int[i]
            || fused_act[i].is_some()
            || absorbed[i]
            || cons[x as usize].len() != 1
            || fg.graph.outputs.contains(&x)
        {
            continue;
        }
        let (j, k) = cons[x as usize][0];
        let uniform = |t: u32| fg.konst(t).is_some_and(|v| v.iter().all(|&a| a == v[0]));
        let joins = match nodes[j].op {
            Op::ChannelAffine { .. } => uniform(nodes[j].inputs[1]) && uniform(nodes[j].inputs[2]),
            // a function of a function (Keras' leaky ReLU clipped by a Max, now a Clip): one table of
            // the composition, rounded once
            Op::Unary(_) => true,
            _ => false,
        };
        if joins && k == 0 && is_int[j] && fused_act[j].is_none() && !absorbed[j] {
            fused_act[i] = Some(j);
            absorbed[j] = true;
        }
    }
    // A node runs on integers only where every parameter it needs exists (always after calibration; in an
    // imported quantized model, where the model quantized the tensors): data movement passes its input's
    // parameters on, everything else needs its activation inputs' and its output's.
    let moves = |op: &Op| {
        !matches!(
            op,
            Op::Conv { .. }
                | Op::ConvTranspose { .. }
                | Op::ChannelAffine { .. }
                | Op::MatMul { .. }
                | Op::Binary { .. }
                | Op::Unary(_)
                | Op::Concat { .. }
                | Op::Pool(tern::ir::Pool2d {
                    kind: PoolKind::Avg { .. },
                    ..
                })
                | Op::GlobalPool(PoolKind::Avg { .. })
        )
    };
    for (i, n) in nodes.iter().enumerate() {
        if absorbed[i] || !is_int[i] {
            continue;
        }
        let w = usize::from(wide[i]);
        let has = |b: &Builder, t: u32| b.params[w][t as usize].is_some();
        let act_ins: Vec<u32> = if moves(&n.op) {
            vec![n.inputs[0]]
        } else {
            n.inputs
                .iter()
                .copied()
                .filter(|&t| fg.konst(t).is_none())
                .collect()
        };
        if let Some(a) = fused_act[i] {
            // a fused Relu/Clip whose output the model left unquantized clamps in its producer's parameters
            let (own, fused) = (n.outputs[0], nodes[a].outputs[0]);
            for p in &mut b.params {
                if p[fused as usize].is_none() && p[own as usize].is_some() {
                    p[fused as usize] = p[own as usize].clone();
                }
            }
        }
        let out = fused_act[i].map_or(n.outputs[0], |a| nodes[a].outputs[0]);
        let ready = act_ins.iter().all(|&t| has(&b, t)) && (moves(&n.op) || has(&b, out));
        if !ready {
            log::debug!(
                "quantize: \"{}\" stays float: {} has no int8 parameters",
                n.name,
                act_ins
                    .iter()
                    .chain([&out])
                    .find(|&&t| !has(&b, t))
                    .map_or(String::new(), |&t| format!("\"{}\"", b.name(t)))
            );
            is_int[i] = false;
            if let Some(a) = fused_act[i].take() {
                absorbed[a] = false;
                let ax = nodes[a].inputs[0];
                let wa = usize::from(wide[a]);
                is_int[a] = is_int[a]
                    && b.params[wa][ax as usize].is_some()
                    && b.params[wa][nodes[a].outputs[0] as usize].is_some();
            }
            continue;
        }
        if moves(&n.op) {
            for p in &mut b.params {
                if let Some(q) = p[n.inputs[0] as usize].clone() {
                    for &o in &n.outputs {
                        p[o as usize].get_or_insert_with(|| q.clone());
                    }
                }
            }
        }
    }
    {
        // what the 16-bit engine cannot take (what the loader checks) stays float: a conv or matmul whose rows could overflow their i32 sums, an
        // Add/Sub/Mul whose rescale has no integer form (an operand observed all zero), a Concat of a
        // constant (the engine reads int16 constants only as operands)
        for (i, n) in nodes.iter().enumerate() {
            let why = if !is_int[i] || absorbed[i] || !wide[i] {
                continue;
            } else if !acc16_ok(&b, n, &|t| int8_weight(t, true))? {
                "its 16-bit sums could overflow i32"
            } else if !binary16_ok(&b, n, fused_act[i].map(|a| nodes[a].outputs[0]))? {
                "its 16-bit rescale has no integer form"
            } else if matches!(n.op, Op::Concat { .. })
                && n.inputs.iter().any(|&t| fg.konst(t).is_some())
            {
                "a constant input"
            } else {
                continue;
            };
            log::info!("quantize: \"{}\" stays float: {why}", n.name);
            is_int[i] = false;
            if let Some(a) = fused_act[i].take() {
                absorbed[a] = false;
                let ax = nodes[a].inputs[0];
                let wa = usize::from(wide[a]);
                let ready = b.params[wa][ax as usize].is_some()
                    && b.params[wa][nodes[a].outputs[0] as usize].is_some();
                is_int[a] = is_int[a] && ready;
            }
        }
    }
    // channel-scaled storage (see channel_candidates) where the conv and every consumer run on integers,
    // within a byte budget (each distinct per-channel scale costs its consumer a 256-byte table)
    let cand = channel_candidates(fg);
    let weight_bytes: usize = nodes
        .iter()
        .enumerate()
        .filter(|&(i, n)| {
            is_int[i]
                && matches!(
                    n.op,
                    Op::Conv { .. } | Op::ConvTranspose { .. } | Op::MatMul { .. }
                )
        })
        .filter_map(|(_, n)| n.inputs.get(1).and_then(|&w| fg.konst(w)).map(<[f32]>::len))
        .sum();
    let mut chosen: Vec<(f64, usize, QParams, usize)> = Vec::new();
    for (ni, n) in nodes.iter().enumerate() {
        let y = n.outputs[0] as usize;
        let eligible = matches!(n.op, Op::Conv { .. } | Op::Unary(_))
            && cand[y]
            && is_int[ni]
            && !absorbed[ni]
            && fused_act[ni].is_none()
            && !wide[ni]
            && fg.graph.tensors[y].quant.is_none()
            && cons[y]
                .iter()
                .all(|&(j, _)| is_int[j] && !absorbed[j] && !wide[j]);
        let (Some(o), Some(q)) = (obs.get(y).and_then(|o| o.as_ref()), b.params[0][y].as_ref())
        else {
            continue;
        };
        if eligible && !o.channels.is_empty() {
            // only a table's output moves its zero point: on conv outputs (PP-OCR cls) the moved zero
            // point gained on calibration and lost on evaluation (top-1 agreement 0.979 -> 0.948)
            let table_out = matches!(n.op, Op::Unary(_));
            if let Some((gain, pc)) = channel_params(o, q, method, table_out) {
                let tables = {
                    let mut d: Vec<u32> = pc.scale.iter().map(|s| s.to_bits()).collect();
                    d.sort_unstable();
                    d.dedup();
                    d.len()
                };
                // each distinct scale costs a 256-byte table in the writer (if it is a table) and in
                // every table reading it (depthwise readers cost nothing)
                let luts = usize::from(table_out)
                    + cons[y]
                        .iter()
                        .filter(|&&(j, _)| matches!(nodes[j].op, Op::Unary(_)))
                        .count();
                chosen.push((gain, y, pc, tables * 256 * luts));
            }
        }
    }
    // the largest gains first, while the tables fit in CHANNEL_TABLE_BUDGET of the weights
    chosen.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut spent = 0usize;
    let mut channel_scaled = Vec::new();
    for (gain, y, pc, cost) in chosen {
        if !channel_scales
            || gain < CHANNEL_MIN_GAIN_DB
            || spent + cost
                > ((weight_bytes as f64 * CHANNEL_TABLE_BUDGET) as usize).max(CHANNEL_TABLE_FLOOR)
        {
            continue;
        }
        spent += cost;
        log::debug!(
            "quantize: \"{}\" channel-scaled ({} channels, {gain:.1} dB per channel)",
            b.name(y as u32),
            pc.scale.len()
        );
        b.params[0][y] = Some(pc);
        channel_scaled.push(b.name(y as u32));
    }
    let mut report = Report {
        channel_scaled,
        ..Report::default()
    };
    for (ni, n) in nodes.iter().enumerate() {
        if absorbed[ni] {
            continue;
        }
        if !is_int[ni] {
            // a float layer's weights (Conv/ConvTranspose/MatMul) are stored as f16 where they fit: the
            // layer stays float where it counts, the activations, at half the weight bytes (or as int8
            // with `float_weights_int8`); an LSTM's as int8 per output channel (weights only: see
            // weight_only_axis)
            let weighted = matches!(
                n.op,
                Op::Conv { .. } | Op::ConvTranspose { .. } | Op::MatMul { .. }
            );
            let ins = n
                .inputs
                .iter()
                .enumerate()
                .map(|(k, &t)| {
                    let konst = fg.konst(t);
                    let rank = fg.shape(t).len();
                    match (
                        konst,
                        konst.and_then(|w| {
                            weight_only_axis(&n.op, k, w.len(), rank, float_weights_int8)
                        }),
                    ) {
                        (Some(_), Some(axis)) => {
                            let shape = fg.shape(t);
                            let w = fg.weight_for_int8(t).unwrap_or_default();
                            let (q, params) = weight_only_i8(w, &shape, axis);
                            Ok(b.qg.add_int_const(
                                &format!("{}_w8", b.name(t)),
                                &shape,
                                DType::I8,
                                Some(params),
                                q,
                            ))
                        }
                        (Some(w), None)
                            if weighted && k == 1 && w.iter().all(|v| v.abs() <= 65504.0) =>
                        {
                            let halves: Vec<u8> = w
                                .iter()
                                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                                .collect();
                            Ok(b.qg.add_int_const(
                                &format!("{}_f16", b.name(t)),
                                &fg.shape(t),
                                DType::F16,
                                None,
                                halves,
                            ))
                        }
                        _ => b.get_f(t),
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            let names: Vec<String> = n.outputs.iter().map(|&t| b.name(t)).collect();
            let shapes = n.outputs.iter().map(|&t| fg.shape(t)).collect();
            let outs =
                b.qg.emit(&n.name, n.op.clone(), ins, &names, Some(shapes))?;
            for (&t, &o) in n.outputs.iter().zip(&outs) {
                b.fmap[t as usize] = Some(o);
            }
            report.float_nodes.push(n.name.clone());
            continue;
        }
        report.int_nodes += 1;
        let w16 = wide[ni];
        if w16 {
            report.wide_nodes.push(n.name.clone());
        }
        // the tensor this node finally writes (the fused activation's output if there is one)
        let (out, act) = match fused_act[ni] {
            Some(a) => (nodes[a].outputs[0], Some(&nodes[a].op)),
            None => (n.outputs[0], None),
        };
        let act = match (act, n.op.clone().act_mut().and_then(|a| *a)) {
            (Some(Op::Unary(u)), _) => Some(*u),
            (_, own) => own,
        };
        match &n.op {
            Op::Conv { geom, .. } => {
                let x = b.get_q(n.inputs[0], w16)?;
                // one scale, or one per channel of a channel-scaled depthwise input
                let sx = b.param(n.inputs[0], w16)?.scale;
                let w = int8_weight(n.inputs[1], w16).unwrap_or_default();
                let bias = n.inputs.get(2).and_then(|&t| fg.konst(t));
                let q = b.param(out, w16)?;
                let ws = fg.shape(n.inputs[1]);
                let (wid, bid) = b.weights(&n.name, w, &ws, false, bias, &sx, &q.scale);
                let mut ins = vec![x, wid];
                ins.extend(bid);
                let op = clamped(w16, Clamped::Conv(geom.clone()), act, &q);
                b.emit_q(&n.name, op, ins, (out, w16), q)?;
            }
            Op::ConvTranspose { geom, .. } => {
                let x = b.get_q(n.inputs[0], w16)?;
                let sx = b.param(n.inputs[0], w16)?.scale[0];
                let w = fg.konst(n.inputs[1]).unwrap_or_default();
                let ws = fg.shape(n.inputs[1]);
                let (c, m, kk) = (ws[0], ws[1], ws[2] * ws[3]);
                // per output channel (axis 1): quantize the [M, C·kh·kw] view, then put it back
                let wt: Vec<f32> = (0..m * c * kk)
                    .map(|i| {
                        let (mo, rest) = (i / (c * kk), i % (c * kk));
                        let (ci, t) = (rest / kk, rest % kk);
                        w[(ci * m + mo) * kk + t]
                    })
                    .collect();
                let (mut qt, mut scales) = quantize_rows(&wt, m);
                let sy = b.param(out, w16)?.scale;
                settle_negligible(&mut qt, &mut scales, &[sx], &sy, |j| j / (c * kk).max(1));
                let mut q = vec![0i8; w.len()];
                for (i, &v) in qt.iter().enumerate() {
                    let (mo, rest) = (i / (c * kk), i % (c * kk));
                    let (ci, t) = (rest / kk, rest % kk);
                    q[(ci * m + mo) * kk + t] = v;
                }
                let wq = QParams {
                    scale: scales.clone(),
                    zero_point: vec![0; m],
                    axis: Some(1),
                };
                let wid = b.qg.add_int_const(
                    &format!("{}/W_int8", n.name),
                    &ws,
                    DType::I8,
                    Some(wq),
                    i8_bytes(&q),
                );
                let bid = n.inputs.get(2).and_then(|&t| fg.konst(t)).map(|bias| {
                    let bq: Vec<i32> = (0..m)
                        .map(|i| quantize_bias(bias[i], sx as f64 * scales[i] as f64))
                        .collect();
                    b.qg.add_int_const(
                        &format!("{}/B_int32", n.name),
                        &[m],
                        DType::I32,
                        None,
                        i32_bytes(&bq),
                    )
                });
                let q = b.param(out, w16)?;
                let (lo, hi) = clamp_of(act, &q);
                let mut ins = vec![x, wid];
                ins.extend(bid);
                let op = Op::QConvTranspose {
                    geom: geom.clone(),
                    lo,
                    hi,
                };
                b.emit_q(&n.name, op, ins, (out, w16), q)?;
            }
            Op::ChannelAffine { .. } => {
                // x·scale[c] + shift[c] is a 1×1 depthwise convolution
                let c = fg.shape(n.inputs[0])[1];
                let x = b.get_q(n.inputs[0], w16)?;
                let sx = b.param(n.inputs[0], w16)?.scale[0];
                let scale = fg.konst(n.inputs[1]).unwrap_or_default().to_vec();
                let shift = fg.konst(n.inputs[2]).unwrap_or_default().to_vec();
                let q = b.param(out, w16)?;
                let (wid, bid) = b.weights(
                    &n.name,
                    &scale,
                    &[c, 1, 1, 1],
                    false,
                    Some(&shift),
                    &[sx],
                    &q.scale,
                );
                let geom = Conv2d::pointwise(c as u32);
                let mut ins = vec![x, wid];
                ins.extend(bid);
                let op = clamped(w16, Clamped::Conv(geom), act, &q);
                b.emit_q(&n.name, op, ins, (out, w16), q)?;
            }
            Op::MatMul { .. } => {
                let x = b.get_q(n.inputs[0], w16)?;
                let sx = b.param(n.inputs[0], w16)?.scale[0];
                let w = int8_weight(n.inputs[1], w16).unwrap_or_default();
                let bias = n.inputs.get(2).and_then(|&t| fg.konst(t));
                let q = b.param(out, w16)?;
                let ws = fg.shape(n.inputs[1]);
                let (wid, bid) = b.weights(&n.name, w, &ws, true, bias, &[sx], &q.scale);
                let mut ins = vec![x, wid];
                ins.extend(bid);
                let op = clamped(w16, Clamped::MatMul, act, &q);
                b.emit_q(&n.name, op, ins, (out, w16), q)?;
            }
            Op::Binary { op, .. } => {
                let (xa, xb) = (b.get_q(n.inputs[0], w16)?, b.get_q(n.inputs[1], w16)?);
                let q = b.param(out, w16)?;
                let op = clamped(w16, Clamped::Binary(*op), act, &q);
                b.emit_q(&n.name, op, vec![xa, xb], (out, w16), q)?;
            }
            Op::Unary(f) => {
                let x = b.get_q(n.inputs[0], w16)?;
                let qi = b.param(n.inputs[0], w16)?;
                let q = b.param(out, w16)?;
                // a uniform affine absorbed into the table (see above), with its own activation, or a
                // function after this one (as the identity affine: r·1 + 0 is r, up to a zero's sign,
                // which rounding drops)
                let affine = fused_act[ni].and_then(|j| match &nodes[j].op {
                    Op::ChannelAffine { act } => Some((
                        fg.konst(nodes[j].inputs[1])?[0],
                        fg.konst(nodes[j].inputs[2])?[0],
                        *act,
                    )),
                    Op::Unary(g) => Some((1.0, 0.0, Some(*g))),
                    _ => None,
                });
                let apply = |v: f32| {
                    let mut r = f.apply(v);
                    if let Some((a, s, act)) = affine {
                        r = r * a + s;
                        r = act.map_or(r, |u| u.apply(r));
                    }
                    r
                };
                // a function with an f32 form on int16 (HardSwish): computed, not looked up (a few
                // vector instructions where a table takes a gather; format 12)
                if w16
                    && affine.is_none()
                    && tern::ir::quant::unary16_params(f, qi.scale[0], q.scale[0]).is_some()
                {
                    b.emit_q(&n.name, Op::Q16Unary(*f), vec![x], (out, w16), q)?;
                    continue;
                }
                if w16 {
                    let table = table16(&apply, qi.scale[0], q.scale[0]);
                    log::debug!("quantize: \"{}\" table of {} entries", n.name, table.len());
                    let len = table.len();
                    // (stored as differences: see Op::Q16Lut)
                    let bytes: Vec<u8> = tern::cpu::q16::table_deltas(&table)
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect();
                    let tid = b.qg.add_int_const(
                        &format!("{}/table16", n.name),
                        &[len],
                        DType::I16,
                        None,
                        bytes,
                    );
                    b.emit_q(&n.name, Op::Q16Lut, vec![x, tid], (out, w16), q)?;
                    continue;
                }
                // one table, or one per channel of a channel-scaled input or output
                let (zi, zo) = (qi.zero_point[0], q.zero_point[0]);
                let tables = qi.scale.len().max(q.scale.len());
                let pick = |s: &[f32], c: usize| s[if s.len() == 1 { 0 } else { c }];
                let table: Vec<i8> = (0..tables)
                    .flat_map(|c| {
                        let (si, so) = (pick(&qi.scale, c), pick(&q.scale, c));
                        (-128i32..128).map(move |v| {
                            quantize_f32(apply(dequantize_i8(v as i8, si, zi)), so, zo)
                        })
                    })
                    .collect();
                let tshape = if tables > 1 {
                    vec![tables, 256]
                } else {
                    vec![256]
                };
                let tid = b.qg.add_int_const(
                    &format!("{}/table", n.name),
                    &tshape,
                    DType::I8,
                    None,
                    i8_bytes(&table),
                );
                b.emit_q(&n.name, Op::QLut, vec![x, tid], (out, w16), q)?;
            }
            Op::Concat { .. }
            | Op::Pool(tern::ir::Pool2d {
                kind: PoolKind::Avg { .. },
                ..
            })
            | Op::GlobalPool(PoolKind::Avg { .. }) => {
                let ins = n
                    .inputs
                    .iter()
                    .map(|&t| b.get_q(t, w16))
                    .collect::<Result<Vec<_>>>()?;
                let q = b.param(out, w16)?;
                b.emit_q(&n.name, n.op.clone(), ins, (out, w16), q)?;
            }
            _ => {
                // data movement and max pooling: the outputs keep the input's parameters
                let x = b.get_q(n.inputs[0], w16)?;
                let q = b.param(n.inputs[0], w16)?;
                let names: Vec<String> = n.outputs.iter().map(|&t| b.name(t)).collect();
                let shapes = n.outputs.iter().map(|&t| fg.shape(t)).collect();
                // where the model quantizes a moved tensor with its own parameters, the moved values are
                // rescaled to them by a table (what DequantizeLinear → op → QuantizeLinear computes)
                let fixed: Vec<Option<QParams>> = n
                    .outputs
                    .iter()
                    .map(|&t| {
                        fg.graph.tensors[t as usize]
                            .quant
                            .clone()
                            .filter(|f| *f != q)
                    })
                    .collect();
                let names: Vec<String> = names
                    .iter()
                    .zip(&fixed)
                    .map(|(nm, f)| {
                        if f.is_some() {
                            format!("{nm}/moved")
                        } else {
                            nm.clone()
                        }
                    })
                    .collect();
                let outs =
                    b.qg.emit(&n.name, n.op.clone(), vec![x], &names, Some(shapes))?;
                let dtype = act_dtype(w16);
                for ((&t, &o), f) in n.outputs.iter().zip(&outs).zip(fixed) {
                    let tt = &mut b.qg.graph.tensors[o as usize];
                    tt.dtype = dtype;
                    tt.quant = Some(q.clone());
                    b.qmap[usize::from(w16)][t as usize] = Some(o);
                    b.params[usize::from(w16)][t as usize] = Some(q.clone());
                    if let Some(f) = f {
                        let table: Vec<i8> = (-128i32..128)
                            .map(|v| {
                                let r = dequantize_i8(v as i8, q.scale[0], q.zero_point[0]);
                                quantize_f32(r, f.scale[0], f.zero_point[0])
                            })
                            .collect();
                        let tid = b.qg.add_int_const(
                            &format!("{}/requantize_table", b.name(t)),
                            &[256],
                            DType::I8,
                            None,
                            i8_bytes(&table),
                        );
                        b.emit_q(
                            &format!("{}/requantize", n.name),
                            Op::QLut,
                            vec![o, tid],
                            (t, false),
                            f,
                        )?;
                    }
                }
            }
        }
    }
    for &o in &fg.graph.outputs {
        let f = b.get_f(o)?;
        b.qg.graph.outputs.push(f);
    }
    report.conversions = b.conversions;
    Ok((b.qg, report))
}

/// A 16-bit function table's interpolation may be off the function, rounded, by this many output steps
/// (root mean square over the calibrated part of the input range, the codes within ±32767 /
/// [`ACT16_HEADROOM`]); finer tables are taken until it is, up to `LUT16_MIN_SHIFT`.
pub const TABLE16_RMS_STEPS: f64 = 0.5;

/// The table of `f` from int16 codes at scale `si` to codes at scale `so` (`tern::ir::quant::lut16`):
/// the coarsest (257 entries) whose interpolation is within [`TABLE16_RMS_STEPS`] of `f` rounded, or
/// else the finest (4097). A function curved across a wide input range needs close knots (YOLOX's SiLU of
/// pre-activations spanning ±100: with 257 entries the captcha detector's output was 0.123 rel-L2 off
/// float, with fine tables 0.012), a piecewise-linear one misses only at its kinks, which the mean
/// forgives (hard-swish: PP-OCR cls at 3.90x; a worst-case bound of one step made it 2.56x raw).
fn table16(f: &dyn Fn(f32) -> f32, si: f32, so: f32) -> Vec<i16> {
    use tern::ir::quant::{lut16, lut16_len, LUT16_MAX_SHIFT, LUT16_MIN_SHIFT};
    let reach = (32767.0 / ACT16_HEADROOM) as i32;
    let exact: Vec<i16> = (-reach..=reach)
        .map(|x| quantize_f32_i16(f(x as f32 * si), so))
        .collect();
    let mut shift = LUT16_MAX_SHIFT;
    loop {
        let table: Vec<i16> = (0..lut16_len(shift) as i32)
            .map(|j| quantize_f32_i16(f((-32768 + (j << shift)) as f32 * si), so))
            .collect();
        let sq: f64 = (-reach..=reach)
            .zip(&exact)
            .map(|(x, &e)| ((lut16(&table, x as i16, shift) as i32 - e as i32) as f64).powi(2))
            .sum();
        let rms = (sq / exact.len() as f64).sqrt();
        if rms <= TABLE16_RMS_STEPS || shift == LUT16_MIN_SHIFT {
            return table;
        }
        shift -= 1;
    }
}

/// Headroom of a 16-bit activation's range over the calibrated one: int16 has steps to spare, and ranges
/// calibrated on a few samples clip unseen inputs (PP-OCR cls, ONNX Runtime's 16-bit simulation on tern's
/// weights, `benches/ort_a16.py`: top-1 agreement 0.985 at the calibrated ranges, 0.996 at 2x and 4x).
pub const ACT16_HEADROOM: f32 = 2.0;

/// Whether a 16-bit Add/Sub/Mul node's rescales have their integer forms (`add16_params`, or the
/// product's fixed-point multiplier) with the parameters the pass will give it (`out`: the tensor it
/// finally writes); `true` for other ops.
fn binary16_ok(b: &Builder, n: &tern::ir::Node, out: Option<u32>) -> Result<bool> {
    let Op::Binary { op, .. } = &n.op else {
        return Ok(true);
    };
    let scale = |t: u32| -> Result<f64> {
        Ok(match b.fg.konst(t) {
            // a constant gets its own range's scale (`Builder::get_q`)
            Some(c) => const16_params(c).scale[0] as f64,
            None => b.param(t, true)?.scale[0] as f64,
        })
    };
    let (sa, sb) = (scale(n.inputs[0])?, scale(n.inputs[1])?);
    let sy = b.param(out.unwrap_or(n.outputs[0]), true)?.scale[0] as f64;
    Ok(match op {
        BinOp::Mul => FixedMultiplier::from_real(sa * sb / sy).is_some(),
        _ => tern::ir::quant::add16_params(sa / sy, sb / sy).is_some(),
    })
}

/// Whether a 16-bit conv or matmul node keeps every output row's `2^15·Σ|w| + |bias|` within i32 with the
/// weights and bias the pass will write (`tern::ir::quant::acc16_fits`); `true` for other ops.
fn acc16_ok<'w>(
    b: &Builder,
    n: &tern::ir::Node,
    int8_weight: &dyn Fn(u32) -> Option<&'w [f32]>,
) -> Result<bool> {
    let fg = b.fg;
    let (w, ws, per_column) = match &n.op {
        Op::Conv { .. } | Op::MatMul { .. } => (
            int8_weight(n.inputs[1]).unwrap_or_default().to_vec(),
            fg.shape(n.inputs[1]),
            matches!(n.op, Op::MatMul { .. }),
        ),
        Op::ChannelAffine { .. } => {
            let c = fg.shape(n.inputs[0])[1];
            (
                fg.konst(n.inputs[1]).unwrap_or_default().to_vec(),
                vec![c, 1, 1, 1],
                false,
            )
        }
        _ => return Ok(true),
    };
    let m = if per_column { ws[1] } else { ws[0] };
    let rows: Vec<Vec<f32>> = if per_column {
        let k = ws[0];
        (0..m)
            .map(|j| (0..k).map(|p| w[p * m + j]).collect())
            .collect()
    } else {
        w.chunks(w.len() / m.max(1)).map(<[f32]>::to_vec).collect()
    };
    let bias = match &n.op {
        Op::ChannelAffine { .. } => fg.konst(n.inputs[2]),
        _ => n.inputs.get(2).and_then(|&t| fg.konst(t)),
    };
    let sx = b.param(n.inputs[0], true)?.scale[0] as f64;
    for (j, row) in rows.iter().enumerate() {
        let (q, s) = quantize_rows(row, 1);
        let bq = bias.map_or(0, |bb| quantize_bias(bb[j], sx * s[0] as f64));
        if !tern::ir::quant::acc16_fits(&q, bq) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Element-wise ops (Add/Sub/Mul, functions) and data movement whose activation inputs all arrive in
/// float — from float nodes or the graph's inputs, through data movement — stay float (`is_int`
/// cleared), in graph order so a chain of them does: in int8 each float input would be rounded before
/// the op (as many conversions as rounding its output once, or more), and a function of a wide-ranged
/// value is best rounded after it (silero VAD's STFT magnitude `sqrt(re² + im²)`: the squares' range is
/// the amplitudes' squared, and rounding them to 8 bits lost quiet frames; frame decisions vs float
/// 1006 → 1012 of 1024 with the magnitude float). A graph input moved before its first integer reader
/// (an NHWC model's Transpose) is then moved in f32 and rounded after: four times the bytes moved, the
/// same codes. An op that an imported quantized model quantized itself (its activation inputs and
/// outputs all carry the model's parameters) keeps the model's choice.
fn float_fed_elementwise(fg: &ToolGraph, is_int: &mut [bool]) {
    let g = &fg.graph;
    let mut float = vec![false; g.tensors.len()];
    g.inputs.iter().for_each(|&t| float[t as usize] = true);
    let fixed = |t: u32| g.tensors[t as usize].quant.is_some();
    for (i, n) in g.nodes.iter().enumerate() {
        let acts = || n.inputs.iter().filter(|&&t| fg.konst(t).is_none());
        let elementwise = matches!(n.op, Op::Binary { .. } | Op::Unary(_));
        let moves = matches!(
            n.op,
            Op::Reshape
                | Op::Transpose { .. }
                | Op::Slice { .. }
                | Op::Pad { .. }
                | Op::Split { .. }
        );
        let models_own = acts().all(|&t| fixed(t)) && n.outputs.iter().all(|&t| fixed(t));
        // data movement too, rounded after it instead of before: a reshape's or transpose's int8 reader
        // gets the same codes (the same values calibrated), a slice's its own range, and a graph output
        // (after a float head) is not rounded at all
        if (elementwise || moves)
            && is_int[i]
            && !models_own
            && acts().next().is_some()
            && acts().all(|&t| float[t as usize])
        {
            is_int[i] = false;
        }
        // data movement carries its input's kind; everything else is float unless it runs on integers
        let out_float = if moves {
            n.inputs.first().is_some_and(|&t| float[t as usize])
        } else {
            !is_int[i]
        };
        n.outputs
            .iter()
            .for_each(|&t| float[t as usize] = out_float);
    }
}

/// Values a recurrent op's weight must hold before [`weight_only_axis`] stores it as int8: 64 Ki (a quarter MiB
/// in f32); a small one keeps f32.
const WEIGHT_ONLY_MIN: usize = 1 << 16;

/// The output-channel axis of input `k` (of rank `rank`) of float op `op` when that weight is stored as
/// int8 with one scale per output channel (the op still computes in float, on the weights widened once
/// at session creation): an LSTM's, GRU's or RNN's W and R, and with `all_int8` (`--float-weights int8`)
/// a float Conv's, ConvTranspose's or MatMul's weight. The recurrent ops have no integer kernel, and their
/// weights would otherwise stay f32 and dominate the artifact (ddddocr's recognizer: 2.24x smaller with
/// them in f32, 4.40x so). `None`: f16 or f32 as for other float layers, whose error stays far below
/// int8's.
fn weight_only_axis(op: &Op, k: usize, len: usize, rank: usize, all_int8: bool) -> Option<usize> {
    match op {
        Op::Lstm { .. } | Op::Gru { .. } | Op::Rnn { .. }
            if (k == 1 || k == 2) && len >= WEIGHT_ONLY_MIN =>
        {
            Some(1)
        }
        Op::Conv { .. } if all_int8 && k == 1 && rank == 4 => Some(0),
        Op::MatMul { .. } if all_int8 && k == 1 && rank == 2 => Some(1),
        Op::ConvTranspose { .. } if all_int8 && k == 1 && rank == 4 => Some(1),
        _ => None,
    }
}

/// `w` (shape `shape`) as symmetric int8 with one scale per index along `axis`, rounded to nearest even
/// as QuantizeLinear does; an all-zero channel gets scale 1.
fn weight_only_i8(w: &[f32], shape: &[usize], axis: usize) -> (Vec<u8>, QParams) {
    let ch = shape.get(axis).copied().unwrap_or(1).max(1);
    let inner: usize = shape.get(axis + 1..).map_or(1, |s| s.iter().product());
    let at = |i: usize| (i / inner.max(1)) % ch;
    let mut amax = vec![0f32; ch];
    for (i, v) in w.iter().enumerate() {
        amax[at(i)] = amax[at(i)].max(v.abs());
    }
    let scale: Vec<f32> = amax
        .iter()
        .map(|&a| if a > 1e-20 { a / 127.0 } else { 1.0 })
        .collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &v)| quantize_f32(v, scale[at(i)], 0).max(-127) as u8)
        .collect();
    let params = QParams {
        scale,
        zero_point: vec![0; ch],
        axis: Some(axis as u32),
    };
    (q, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A function curved across a wide input range gets a finer table than a piecewise-linear one, and
    /// the chosen table meets the RMS bound over the calibrated codes.
    #[test]
    fn table16_refines_curved_functions() {
        use tern::ir::quant::{lut16, lut16_shift, LUT16_LEN};
        // inputs spanning ±100 at 2x headroom, outputs likewise
        let (si, so) = (200.0 / 32767.0, 200.0 / 32767.0);
        let silu = |x: f32| x / (1.0 + (-x).exp());
        let relu = |x: f32| x.max(0.0);
        let t_silu = table16(&silu, si, so);
        let t_relu = table16(&relu, si, so);
        assert_eq!(t_relu.len(), LUT16_LEN);
        assert!(t_silu.len() > LUT16_LEN, "{}", t_silu.len());
        let shift = lut16_shift(t_silu.len()).unwrap();
        let reach = (32767.0 / ACT16_HEADROOM) as i32;
        let sq: f64 = (-reach..=reach)
            .map(|x| {
                let e = quantize_f32_i16(silu(x as f32 * si), so) as i32;
                ((lut16(&t_silu, x as i16, shift) as i32 - e) as f64).powi(2)
            })
            .sum();
        assert!((sq / (2 * reach + 1) as f64).sqrt() <= TABLE16_RMS_STEPS);
    }
}
