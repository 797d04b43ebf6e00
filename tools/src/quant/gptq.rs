//! Error-compensating int8 rounding of weights (GPTQ: Frantar et al. 2022, after Optimal Brain Quantization).
//!
//! Rounding every weight to its nearest step keeps each weight's error small, but a row's errors add up
//! on the inputs the layer really sees. GPTQ rounds a row one input at a time and moves each rounding
//! error onto the weights not yet rounded, weighted by the inputs' second moments `H = Σ x·xᵀ` (here over
//! calibration samples, the layer's inputs in the float model), which shrinks the error of the row's output
//! on such inputs. The grid is unchanged (symmetric, per output channel, `max|w| / 127`, the largest weight
//! kept on ±127 so the quantize pass derives the same scale): same artifact layout, other integers.
//!
//! PP-OCR cls, weights only (activations float), 480 evaluation images: nearest rounding flips 11 top-1
//! decisions (output rel-L2 0.026), GPTQ 2 (0.012).
use crate::graph::ToolGraph;
use anyhow::{anyhow, Result};
use nalgebra::DMatrix;
use ndarray::ArrayView2;
use std::collections::HashMap;
use tern::ir::{Conv2d, Op};
use tern::session::Values;

/// Inputs per group above which a layer keeps nearest rounding: `H` costs K² to hold and K³ to invert.
pub const MAX_K: usize = 2048;

/// Input vectors (output pixels, or rows of a matrix product) taken per calibration sample and layer,
/// evenly spaced: neighbouring pixels add little, and each vector costs K² to accumulate.
pub const VECTORS_PER_SAMPLE: usize = 1024;

/// Damping added to `H`'s diagonal, as a share of its mean: with 16–32 calibration samples `H` is a
/// rough estimate, and a firmer diagonal keeps the compensation from fitting it (PP-OCR cls, weights
/// only: rel-L2 of the outputs on the evaluation set 0.0128 at 0.01, 0.0120 at 0.1, 0.0169 at 1).
pub const DAMP: f64 = 0.1;

/// Bytes of `H` (f64) that one pass over the calibration samples collects: layers beyond it are
/// observed in further passes, so memory stays bounded on large models (a layer at [`MAX_K`] holds
/// 32 MiB). YOLOX's captcha detector, weights only: 4 passes, peak RSS 243 MB (one pass: 376 MB),
/// 13.7 s vs 13.1 s, the same artifact.
pub const H_BUDGET: usize = 64 << 20;

/// One weight tensor GPTQ rounds, with every layer that reads it.
struct Layer {
    /// Weight tensor (in the float graph).
    w: u32,
    /// The layers reading `w`: input tensor and conv geometry (`None`: a matrix product `x · W`, W
    /// `[K, N]`). A weight read by several layers is rounded for all of them: their `H`s add up, since
    /// the error summed over their outputs is `δᵀ(H₁ + H₂)δ`.
    uses: Vec<(u32, Option<Conv2d>)>,
    /// Groups, and inputs per group (`H` is one K×K block per group).
    groups: usize,
    k: usize,
    /// Σ x·xᵀ per group, row-major (allocated when the layer's pass begins).
    h: Vec<f64>,
}

/// The weights of `g` that GPTQ can round, each with the layers reading it, among the nodes `only` marks
/// (all when `None`): Conv (2-D, any groups) and MatMul with a constant 2-D weight, at most [`MAX_K`]
/// inputs per group. A weight read in two ways (a conv and a matrix product, two group counts, or by any
/// other op or input slot) keeps nearest rounding: no one `H` serves both.
fn layers(g: &ToolGraph, only: Option<&[bool]>) -> Vec<Layer> {
    let mut out: Vec<Layer> = Vec::new();
    // weights read in a way no H covers (another op, another input slot): nearest rounding
    let mut mixed: std::collections::HashSet<u32> = Default::default();
    let nodes = g.graph.nodes.iter().enumerate();
    for (_, n) in nodes.filter(|&(i, _)| only.is_none_or(|o| o.get(i).copied().unwrap_or(false))) {
        let layer = matches!(n.op, Op::Conv { .. } | Op::MatMul { .. });
        for (slot, &t) in n.inputs.iter().enumerate() {
            if (!layer || slot != 1) && g.konst(t).is_some() {
                mixed.insert(t);
            }
        }
        let (Some(&x), Some(&w)) = (n.inputs.first(), n.inputs.get(1)) else {
            continue;
        };
        if g.konst(w).is_none() {
            continue;
        }
        let ws = g.shape(w);
        let (conv, groups, k) = match &n.op {
            Op::Conv { geom, .. } if ws.len() == 4 && g.shape(x).len() == 4 => (
                Some(geom.clone()),
                geom.groups.max(1) as usize,
                ws[1] * ws[2] * ws[3],
            ),
            Op::MatMul { .. } if ws.len() == 2 => (None, 1, ws[0]),
            _ => {
                mixed.insert(w);
                continue;
            }
        };
        if k == 0 || k > MAX_K {
            mixed.insert(w);
            continue;
        }
        match out.iter_mut().find(|l| l.w == w) {
            Some(l) if l.groups == groups && l.k == k && l.is_conv() == conv.is_some() => {
                l.uses.push((x, conv))
            }
            Some(_) => {
                mixed.insert(w);
            }
            None => out.push(Layer {
                w,
                uses: vec![(x, conv)],
                groups,
                k,
                h: Vec::new(),
            }),
        }
    }
    out.retain(|l| !mixed.contains(&l.w));
    out
}

/// Splits `ls` into runs of consecutive layers whose `H`s fit in `budget` bytes together (a layer larger
/// than the budget alone gets a run of its own).
fn passes(ls: &[Layer], budget: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, l) in ls.iter().enumerate() {
        let b = l.groups * l.k * l.k * std::mem::size_of::<f64>();
        if i > start && bytes + b > budget {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += b;
    }
    if start < ls.len() {
        out.push(start..ls.len());
    }
    out
}

impl Layer {
    /// Whether `w` is a conv weight (rows = output channels) rather than a matrix product's `[K, N]`.
    fn is_conv(&self) -> bool {
        self.uses[0].1.is_some()
    }

    /// Adds the input vectors of use `u` in one run (`x`: its input tensor's values, shape `xs`) to `h`.
    fn observe(&mut self, u: usize, x: &[f32], xs: &[usize]) {
        let k = self.k;
        if self.h.is_empty() {
            self.h = vec![0.0; self.groups * k * k];
        }
        let mut a: Vec<f32> = Vec::new();
        for gi in 0..self.groups {
            a.clear();
            let total = match &self.uses[u].1 {
                Some(geom) => conv_vectors(x, xs, geom, self.groups, gi, &mut a),
                None => {
                    let rows = x.len() / k;
                    for r in picks(rows) {
                        a.extend_from_slice(&x[r * k..(r + 1) * k]);
                    }
                    rows
                }
            };
            let n = a.len() / k;
            if n == 0 {
                continue;
            }
            let a = ArrayView2::from_shape((n, k), &a).expect("n·k values");
            let p = a.t().dot(&a);
            // the sampled vectors stand for all `total`: readers of one weight then weigh by their real
            // sizes (1 where nothing was left out, so a lone reader's H is the exact sum)
            let scale = total as f64 / n as f64;
            let h = &mut self.h[gi * k * k..(gi + 1) * k * k];
            for (d, s) in h.iter_mut().zip(p.iter()) {
                *d += *s as f64 * scale;
            }
        }
    }
}

/// Up to [`VECTORS_PER_SAMPLE`] evenly spaced indices below `n`.
fn picks(n: usize) -> impl Iterator<Item = usize> {
    let take = n.min(VECTORS_PER_SAMPLE);
    (0..take).map(move |i| i * n / take)
}

/// The receptive fields of group `gi` at evenly spaced output pixels of a conv over `x` (`[N, C, H, W]`),
/// each `C/groups · kh · kw` values in the weight's order (channel, row, column; padding reads 0), appended
/// to `a`. Returns how many output pixels they were picked from.
fn conv_vectors(
    x: &[f32],
    xs: &[usize],
    geom: &Conv2d,
    groups: usize,
    gi: usize,
    a: &mut Vec<f32>,
) -> usize {
    let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let [kh, kw] = geom.kernel.map(|v| v as usize);
    let [sh, sw] = geom.strides.map(|v| v.max(1) as usize);
    let [dh, dw] = geom.dilations.map(|v| v.max(1) as usize);
    let [pt, pl, pb, pr] = geom.pads.map(|v| v as usize);
    let span = |len: usize, pad: usize, k: usize, d: usize, s: usize| {
        (len + pad)
            .checked_sub(d * (k - 1) + 1)
            .map_or(0, |v| v / s + 1)
    };
    let (ho, wo) = (
        span(h + pt, pb, kh.max(1), dh, sh),
        span(w + pl, pr, kw.max(1), dw, sw),
    );
    let cg = c / groups;
    for p in picks(n * ho * wo) {
        let (img, oy, ox) = (p / (ho * wo), p / wo % ho, p % wo);
        for ci in gi * cg..(gi + 1) * cg {
            let plane = &x[(img * c + ci) * h * w..][..h * w];
            for ky in 0..kh {
                let iy = (oy * sh + ky * dh).wrapping_sub(pt);
                for kx in 0..kw {
                    let ix = (ox * sw + kx * dw).wrapping_sub(pl);
                    a.push(if iy < h && ix < w {
                        plane[iy * w + ix]
                    } else {
                        0.0
                    });
                }
            }
        }
    }
    n * ho * wo
}

/// Runs `g` over `samples` and rounds the weights of every layer GPTQ handles (Conv and MatMul with a
/// constant weight, at most [`MAX_K`] inputs per group): per weight
/// tensor, its values on the int8 grid the quantize pass uses (`code · max|row| / 127`). Weights that
/// already lie on one per-tensor grid (an imported quantized model) are left out, as are layers whose `H`
/// is degenerate. Layers are observed in passes of at most [`H_BUDGET`] bytes of `H`.
pub fn round_weights(g: &ToolGraph, samples: &[Vec<Vec<f32>>]) -> Result<HashMap<u32, Vec<f32>>> {
    round_weights_within(g, samples, None, H_BUDGET)
}

/// [`round_weights`] for the weights of the nodes `only` marks (the layers that will compute in float:
/// GPTQ's rounding is used only there under `auto`, so the others need no `H`).
pub fn round_weights_of(
    g: &ToolGraph,
    samples: &[Vec<Vec<f32>>],
    only: &[bool],
) -> Result<HashMap<u32, Vec<f32>>> {
    round_weights_within(g, samples, Some(only), H_BUDGET)
}

/// [`round_weights`] holding at most `budget` bytes of `H` at once (beyond it, one more pass over the
/// samples per `budget`).
fn round_weights_within(
    g: &ToolGraph,
    samples: &[Vec<Vec<f32>>],
    only: Option<&[bool]>,
    budget: usize,
) -> Result<HashMap<u32, Vec<f32>>> {
    let mut ls = layers(g, only);
    if ls.is_empty() || samples.is_empty() {
        return Ok(HashMap::new());
    }
    let bytes = crate::export::to_bytes(g, vec![])?;
    let model = tern::Model::from_bytes(&bytes).map_err(|e| anyhow!("{e}"))?;
    let mut sess = tern::Session::new(
        &model,
        tern::SessionOptions {
            threads: super::host_threads(),
        },
    )
    .map_err(|e| anyhow!("{e}"))?;
    let mut outs: Vec<Vec<f32>> = model.outputs().map(|t| vec![0.0; t.numel()]).collect();
    let runs = passes(&ls, budget);
    if runs.len() > 1 {
        log::info!(
            "GPTQ: {} weight tensor(s) observed in {} passes over the samples (H over {} MiB)",
            ls.len(),
            runs.len(),
            budget >> 20
        );
    }
    let mut rounded = HashMap::new();
    for run in runs {
        let batch = &mut ls[run];
        // input tensor -> (layer in the batch, use)
        let mut by_input: HashMap<u32, Vec<(usize, usize)>> = HashMap::new();
        for (i, l) in batch.iter().enumerate() {
            for (u, (x, _)) in l.uses.iter().enumerate() {
                by_input.entry(*x).or_default().push((i, u));
            }
        }
        for s in samples {
            for (&t, x) in g.graph.inputs.iter().zip(s) {
                for &(i, u) in by_input.get(&t).into_iter().flatten() {
                    batch[i].observe(u, x, &g.shape(t));
                }
            }
            let ins: Vec<&[f32]> = s.iter().map(|v| v.as_slice()).collect();
            let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
            let mut f = |_: usize, t: u32, v: Values| {
                if let (Values::F32(x), Some(is)) = (v, by_input.get(&t)) {
                    for &(i, u) in is {
                        batch[i].observe(u, x, &g.shape(t));
                    }
                }
            };
            sess.run_observed(&ins, &mut o, Some(&mut f))
                .map_err(|e| anyhow!("GPTQ calibration run: {e}"))?;
        }
        for l in batch.iter_mut() {
            let w = g.konst(l.w).unwrap_or_default();
            if let Some(r) = round_layer(l, w) {
                rounded.insert(l.w, r);
            } else {
                log::debug!(
                    "GPTQ: {} keeps nearest rounding (on a grid already, or H degenerate)",
                    g.graph.tensors[l.w as usize].name
                );
            }
            // (this pass's H is done with: the next pass allocates its own)
            l.h = Vec::new();
        }
    }
    log::info!(
        "GPTQ rounded {} of {} weight tensor(s)",
        rounded.len(),
        ls.len()
    );
    Ok(rounded)
}

/// Layer `l`'s weight `w` rounded by GPTQ, in `w`'s layout; `None` where the pass would not use per-row
/// scales (the weights lie on one grid already) or `H` is not positive definite.
fn round_layer(l: &Layer, w: &[f32]) -> Option<Vec<f32>> {
    let k = l.k;
    let rows = w.len() / k;
    let conv = l.is_conv();
    // rows in the pass's order: a conv's output channels are its weight's rows, a matrix product's are W's
    // columns
    let row = |r: usize, j: usize| -> f32 {
        if conv {
            w[r * k + j]
        } else {
            w[j * rows + r]
        }
    };
    // (an input the run never reported leaves H unallocated: nothing to compensate against)
    if l.h.is_empty() || super::pass::tensor_grid(w).is_some() {
        return None;
    }
    let per_group = rows / l.groups;
    let mut out = vec![0f32; w.len()];
    for gi in 0..l.groups {
        let u = inverse_factor(&l.h[gi * k * k..(gi + 1) * k * k], k)?;
        for r in gi * per_group..(gi + 1) * per_group {
            let orig: Vec<f64> = (0..k).map(|j| row(r, j) as f64).collect();
            let q = round_row(&orig, &u, k);
            for (j, v) in q.into_iter().enumerate() {
                if conv {
                    out[r * k + j] = v
                } else {
                    out[j * rows + r] = v
                }
            }
        }
    }
    Some(out)
}

/// The upper Cholesky factor `U` of `(H + λI)⁻¹` (row-major, K×K), `λ` = [`DAMP`] × mean diagonal; inputs
/// never seen (zero diagonal) get 1 there, so their weights round to nearest and take no error.
fn inverse_factor(h: &[f64], k: usize) -> Option<Vec<f64>> {
    let mut m = DMatrix::from_row_slice(k, k, h);
    let mean = (0..k).map(|j| m[(j, j)]).sum::<f64>() / k as f64;
    if mean.is_nan() || mean <= 0.0 {
        return None;
    }
    for j in 0..k {
        if m[(j, j)] == 0.0 {
            m[(j, j)] = 1.0;
        }
        m[(j, j)] += DAMP * mean;
    }
    let inv = m.cholesky()?.inverse();
    let l = inv.cholesky()?.unpack();
    // U = Lᵀ, row-major: U[j][c] = L[c][j]
    Some((0..k * k).map(|i| l[(i % k, i / k)]).collect())
}

/// One row rounded by GPTQ: `w` rounded input by input, each error `(w_j − q_j) / U_jj` subtracted from
/// the inputs after it along `U`'s row j. The row's largest weight is pinned to ±127 steps, so the row's
/// scale (its max / 127) is what the quantize pass derives again from the rounded values.
fn round_row(w: &[f64], u: &[f64], k: usize) -> Vec<f32> {
    let (pin, amax) =
        w.iter().enumerate().fold(
            (0, 0f64),
            |(p, a), (j, v)| if v.abs() > a { (j, v.abs()) } else { (p, a) },
        );
    let s = (amax as f32 / 127.0) as f64;
    if amax as f32 <= 1e-20 {
        return w.iter().map(|&v| v as f32).collect();
    }
    // (the pinned weight keeps its own sign whatever the compensation did to it)
    let pin_code = 127f64.copysign(w[pin]);
    let mut w = w.to_vec();
    let mut out = vec![0f32; k];
    for j in 0..k {
        let q = if j == pin {
            pin_code
        } else {
            (w[j] / s).round().clamp(-127.0, 127.0)
        };
        out[j] = (q * s) as f32;
        let e = (w[j] - q * s) / u[j * k + j];
        for c in j + 1..k {
            w[c] -= e * u[j * k + c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1) (the tools' seeded generator).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        crate::cli::bench::seeded(n, seed)
    }

    /// Σ over groups and rows of δᵀ·H·δ: the squared output change that weight change `d` (in the
    /// weight's layout) makes on the observed inputs, by `l.h`.
    fn quadratic(l: &Layer, d: &[f32]) -> f64 {
        let (k, rows) = (l.k, d.len() / l.k);
        let per = rows / l.groups;
        let at = |r: usize, j: usize| {
            if l.is_conv() {
                d[r * k + j] as f64
            } else {
                d[j * rows + r] as f64
            }
        };
        let mut sum = 0.0;
        for r in 0..rows {
            let h = &l.h[r / per * k * k..][..k * k];
            for a in 0..k {
                for b in 0..k {
                    sum += at(r, a) * h[a * k + b] * at(r, b);
                }
            }
        }
        sum
    }

    /// `g` with weight `w` moved by `0.01·dir`, and the change as the f32 weights really hold it.
    fn perturbed(g: &ToolGraph, w: u32, dir: Vec<f32>) -> (ToolGraph, Vec<f32>) {
        let w0 = g.konst(w).unwrap();
        let w2: Vec<f32> = w0.iter().zip(&dir).map(|(a, b)| a + 0.01 * b).collect();
        let d = w2.iter().zip(w0).map(|(a, b)| a - b).collect();
        let mut g2 = g.clone();
        g2.set_const(w, w2);
        (g2, d)
    }

    /// δᵀHδ by `l.h` equals the squared output change the runtime measured (`pairs`: outputs without and
    /// with the weight change `d`), within 1e-3.
    fn assert_h_measures<'a>(
        l: &Layer,
        d: &[f32],
        pairs: impl Iterator<Item = (&'a f32, &'a f32)>,
        what: &str,
    ) {
        let direct: f64 = pairs.map(|(a, b)| ((b - a) as f64).powi(2)).sum();
        let by_h = quadratic(l, d);
        assert!(
            (direct - by_h).abs() <= 1e-3 * direct,
            "{what}: direct {direct:e}, by H {by_h:e}"
        );
    }

    /// `H` as collected gives the output change of any weight change: δᵀHδ equals the squared difference of
    /// the layer's outputs, run by the runtime, with and without the change — for a strided, padded,
    /// dilated grouped conv over two images and a matrix product (every output pixel and row taken).
    #[test]
    fn h_measures_the_layers_output_change() {
        let cases: Vec<(Op, Vec<usize>, Vec<usize>)> = vec![
            (
                Op::Conv {
                    geom: Conv2d {
                        kernel: [3, 2],
                        strides: [2, 1],
                        dilations: [1, 2],
                        pads: [1, 0, 0, 1],
                        groups: 2,
                        output_padding: [0, 0],
                    },
                    act: None,
                },
                vec![2, 4, 7, 6],
                vec![4, 2, 3, 2],
            ),
            (Op::MatMul { act: None }, vec![3, 5], vec![5, 4]),
        ];
        for (i, (op, xs, ws)) in cases.into_iter().enumerate() {
            let mut g = ToolGraph::default();
            let x = g.add_tensor("x", &xs);
            g.graph.inputs.push(x);
            let nw: usize = ws.iter().product();
            let w = g.add_const("w", &ws, values(nw, 1 + i as u64));
            let y = g
                .emit("layer", op, vec![x, w], &["y".into()], None)
                .unwrap()[0];
            g.graph.outputs.push(y);
            let xv = values(xs.iter().product(), 7 + i as u64);
            let mut ls = layers(&g, None);
            assert_eq!(ls.len(), 1);
            ls[0].observe(0, &xv, &xs);
            let (g2, d) = perturbed(&g, w, values(nw, 11 + i as u64));
            let y1 = &super::super::outputs(&g, &[vec![xv.clone()]]).unwrap()[0][0];
            let y2 = &super::super::outputs(&g2, &[vec![xv]]).unwrap()[0][0];
            assert_h_measures(&ls[0], &d, y1.iter().zip(y2), &format!("case {i}"));
        }
    }

    /// GPTQ's rows lie on the pass's grid (integral steps of max|row| / 127 within ±127, the largest on
    /// ±127, so nearest rounding at the scale the pass derives gives them back exactly) and, on inputs with
    /// correlated features, cut the output error δᵀHδ well below nearest rounding's.
    #[test]
    fn gptq_stays_on_the_grid_and_beats_nearest() {
        let (k, rows, n) = (16, 8, 256);
        // inputs: 4 shared factors plus a little noise per feature
        let f = values(n * 4, 3);
        let noise = values(n * k, 5);
        let mut h = vec![0f64; k * k];
        for s in 0..n {
            let x: Vec<f64> = (0..k)
                .map(|j| f[s * 4 + j % 4] as f64 + 0.1 * noise[s * k + j] as f64)
                .collect();
            for a in 0..k {
                for b in 0..k {
                    h[a * k + b] += x[a] * x[b];
                }
            }
        }
        let l = Layer {
            w: 0,
            uses: vec![(0, Some(Conv2d::pointwise(1)))],
            groups: 1,
            k,
            h,
        };
        let w: Vec<f32> = values(rows * k, 9).iter().map(|v| v * 0.3).collect();
        let q = round_layer(&l, &w).expect("H is positive definite");
        let (codes, scales) = tern::cpu::qconv::quantize_weights(&q, rows);
        for r in 0..rows {
            let row = &w[r * k..(r + 1) * k];
            let amax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
            assert_eq!(
                scales[r],
                amax / 127.0,
                "row {r}: the pass derives the same scale"
            );
            for j in 0..k {
                assert_eq!(
                    codes[r * k + j] as f32 * scales[r],
                    q[r * k + j],
                    "row {r}, {j}"
                );
            }
            assert!(codes[r * k..(r + 1) * k].iter().any(|&c| c.abs() == 127));
        }
        let near: Vec<f32> = w
            .chunks(k)
            .flat_map(|row| {
                let s = row.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                row.iter()
                    .map(move |&v| (v / s).round().clamp(-127.0, 127.0) * s)
            })
            .collect();
        let err = |q: &[f32]| {
            let d: Vec<f32> = q.iter().zip(&w).map(|(a, b)| a - b).collect();
            quadratic(&l, &d)
        };
        let (eg, en) = (err(&q), err(&near));
        assert!(eg < 0.5 * en, "GPTQ {eg:e} vs nearest {en:e}");
    }

    /// A weight read by two layers is one [`Layer`] whose `H` is the sum of both layers' inputs: δᵀHδ
    /// equals the squared change of both outputs together (run by the runtime), so GPTQ rounds the weight
    /// for both readers rather than for whichever came last. Reader `a` has 3·1024 rows, of which
    /// `observe` samples every third; its rows come in identical threes, so the sample scaled by 3 is
    /// exact, and each reader weighs by its real size.
    #[test]
    fn a_shared_weight_is_rounded_for_all_its_readers() {
        let rows = 3 * VECTORS_PER_SAMPLE;
        let mut g = ToolGraph::default();
        let (xa, xb) = (g.add_tensor("a", &[rows, 5]), g.add_tensor("b", &[2, 5]));
        g.graph.inputs.extend([xa, xb]);
        let w = g.add_const("w", &[5, 4], values(20, 21));
        for (x, y) in [(xa, "ya"), (xb, "yb")] {
            let mm = Op::MatMul { act: None };
            let t = g.emit(y, mm, vec![x, w], &[y.into()], None).unwrap()[0];
            g.graph.outputs.push(t);
        }
        let mut ls = layers(&g, None);
        assert_eq!(ls.len(), 1, "one weight, one layer");
        assert_eq!(ls[0].uses.len(), 2);
        let groups = values(VECTORS_PER_SAMPLE * 5, 22);
        let va: Vec<f32> = (0..rows)
            .flat_map(|r| groups[r / 3 * 5..r / 3 * 5 + 5].to_vec())
            .collect();
        let vb = values(10, 23);
        ls[0].observe(0, &va, &[rows, 5]);
        ls[0].observe(1, &vb, &[2, 5]);
        let (g2, d) = perturbed(&g, w, values(20, 24));
        let sample = vec![vec![va, vb]];
        let y1 = &super::super::outputs(&g, &sample).unwrap()[0];
        let y2 = &super::super::outputs(&g2, &sample).unwrap()[0];
        assert_h_measures(
            &ls[0],
            &d,
            y1.iter().flatten().zip(y2.iter().flatten()),
            "shared",
        );
    }

    /// Observing the layers in several passes under a small `H` budget rounds every weight to exactly
    /// the values one pass gives (each `H` sums the same vectors in the same order).
    #[test]
    fn passes_under_a_budget_round_as_one_pass() {
        let mut g = ToolGraph::default();
        let x = g.add_tensor("x", &[1, 4, 6, 6]);
        g.graph.inputs.push(x);
        let mut t = x;
        for i in 0..3u64 {
            let w = g.add_const(&format!("w{i}"), &[4, 4, 3, 3], values(144, 30 + i));
            let op = Op::Conv {
                geom: Conv2d::same(3),
                act: None,
            };
            t = g
                .emit(&format!("c{i}"), op, vec![t, w], &[format!("y{i}")], None)
                .unwrap()[0];
        }
        g.graph.outputs.push(t);
        let samples: Vec<Vec<Vec<f32>>> = (0..3).map(|s| vec![values(144, 40 + s)]).collect();
        // one layer's H: 36 x 36 f64
        let one = 36 * 36 * 8;
        assert_eq!(passes(&layers(&g, None), one).len(), 3);
        assert_eq!(passes(&layers(&g, None), 3 * one).len(), 1);
        let split = round_weights_within(&g, &samples, None, one).unwrap();
        let whole = round_weights_within(&g, &samples, None, H_BUDGET).unwrap();
        // only the middle conv's weight
        let mid = round_weights_of(&g, &samples, &[false, true, false]).unwrap();
        assert_eq!(mid.len(), 1);
        let w1 = g.graph.nodes[1].inputs[1];
        assert_eq!(mid.get(&w1), whole.get(&w1));
        assert_eq!(split.len(), 3);
        assert_eq!(split, whole);
    }
}
