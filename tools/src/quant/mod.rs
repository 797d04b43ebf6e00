//! Quantization in the tool: calibration data, streaming observers, the quantize pass, and the float
//! graph they work on. The integer kernels live in the runtime (`tern::cpu::qgemm`, `tern::cpu::ops::quant`).
pub mod calib;
pub mod data;
pub mod pass;

use crate::graph::ToolGraph;
use crate::import::InputShape;
use crate::passes;
use anyhow::{anyhow, Result};
use calib::{Method, Observer};
use std::path::Path;
use tern::session::Values;

/// ONNX file → the float graph that calibration observes and the quantize pass rewrites: imported and
/// folded, but with activations not yet fused, so their inputs and outputs are both observed.
pub fn compile_for_quant(onnx: &Path, shapes: &[InputShape]) -> Result<ToolGraph> {
    let mut g = crate::import::import(onnx, shapes)?;
    passes::run_all(
        &mut g,
        &[
            Box::new(passes::FoldBn),
            Box::new(passes::FuseHardSwish),
            Box::new(passes::FuseAffine),
            Box::new(passes::Prune),
        ],
    )?;
    Ok(g)
}

/// Threads for host-side runs (calibration, evaluation).
pub fn host_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `g` over `samples` (per sample, one f32 buffer per graph input) and returns, per tensor of `g`, the
/// streamed statistics of every f32 activation (graph inputs included). `tick` is called after each sample.
pub fn calibrate(
    g: &ToolGraph,
    samples: &[Vec<Vec<f32>>],
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
                obs[t as usize]
                    .get_or_insert_with(Observer::default)
                    .observe(x);
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
}

/// The float graph `fg` (from [`compile_for_quant`]) calibrated by `obs` → the integer graph, act-fused
/// and pruned, ready for export.
pub fn quantize_graph(
    fg: &ToolGraph,
    obs: &[Option<Observer>],
    opts: &Int8Options,
    keep_float: &[bool],
) -> Result<(ToolGraph, pass::Report)> {
    let (mut qg, report) = pass::quantize(fg, obs, opts.method, keep_float)?;
    passes::run_all(
        &mut qg,
        &[Box::new(passes::FuseAct), Box::new(passes::Prune)],
    )?;
    Ok((qg, report))
}

/// Everything `tern compress --int8` needs besides the model.
#[derive(Clone, Debug)]
pub struct CompressInt8<'a> {
    /// Calibration samples: a `.npy` or a directory (see [`data`]).
    pub calib: &'a Path,
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
    let fg = compile_for_quant(onnx, shapes)?;
    let specs: Vec<data::InputSpec> = fg
        .graph
        .inputs
        .iter()
        .map(|&t| (fg.graph.tensors[t as usize].name.clone(), fg.shape(t)))
        .collect();
    let samples = data::load(c.calib, &specs, c.samples)?;
    if samples.len() < 16 {
        log::warn!(
            "only {} calibration sample(s) in {}: ranges from fewer than 16 samples are often too narrow for real inputs",
            samples.len(),
            c.calib.display()
        );
    }
    let bar = if c.progress {
        indicatif::ProgressBar::new(samples.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_message("calibrating");
    let obs = calibrate(&fg, &samples, || bar.inc(1))?;
    bar.finish_and_clear();
    let (qg, report) = quantize_graph(&fg, &obs, &c.opts, &[])?;
    log::info!(
        "quantize: {} integer node(s), {} float node(s), {} conversion(s)",
        report.int_nodes,
        report.float_nodes.len(),
        report.conversions
    );
    let meta = vec![
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
            "import,fold_bn,fuse_hswish,fuse_affine,prune,calibrate,quantize,fuse_act,prune,plan"
                .to_string(),
        ),
        ("quant.scheme".to_string(), "int8: weights symmetric per channel, activations asymmetric per tensor, int32 bias, Q31 fixed-point requantization".to_string()),
        ("quant.method".to_string(), format!("{:?}", c.opts.method).to_lowercase()),
        ("quant.calib_samples".to_string(), samples.len().to_string()),
        ("quant.float_nodes".to_string(), report.float_nodes.join(",")),
    ];
    Ok((crate::export::to_bytes(&qg, meta)?, report))
}
