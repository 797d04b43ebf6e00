//! `tern compress <model.onnx> -o <out.tern> [--input-shape ...] [--int8 --calib PATH [--calib-method M]
//! [--calib-samples N]]`
use super::ShapeArgs;
use crate::quant::calib::Method;
use anyhow::{bail, Result};
use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The ONNX model.
    pub model: PathBuf,
    /// Where to write the artifact (written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Fixed input shapes.
    #[command(flatten)]
    pub shapes: ShapeArgs,
    /// Quantize to int8 (needs --calib, unless the model is quantized already: QDQ or QLinear*/*Integer ops keep their parameters).
    #[arg(long)]
    pub int8: bool,
    /// Calibration samples: a .npy of shape (N, *input shape), or a directory with one .npy per sample
    /// (a multi-input model: one subdirectory per input name).
    #[arg(long, value_name = "PATH")]
    pub calib: Option<PathBuf>,
    /// How observed activations become int8 ranges: auto (per model, whichever of percentile, minmax and
    /// mse brings the outputs closest to float on the calibration samples), minmax, percentile (99.99%),
    /// mse, entropy.
    #[arg(long, default_value = "auto", value_name = "METHOD")]
    pub calib_method: Method,
    /// Activation scales of a conv's output that feeds element-wise functions: channel (the default: one
    /// scale per channel where channels are 8x or more narrower than the tensor; a 256-byte table per
    /// distinct scale, within 4% of the weight bytes) or tensor (one scale).
    #[arg(long, value_enum, default_value_t = Scales::Channel, value_name = "tensor|channel")]
    pub activation_scales: Scales,
    /// Keep these nodes in float (names as `tern eval` lists them, comma-separated or repeated), e.g. the
    /// layers eval blames for most of the error.
    #[arg(long, value_name = "NODE,...", value_delimiter = ',')]
    pub keep_float: Vec<String>,
    /// The input stage (the small layers at the model's input resolution, from the first conv on): auto
    /// (the default: float where rounding the input to int8 alone costs at least a quarter of the int8
    /// model's error on the calibration samples, as on RGB images normalized per channel), float or int8.
    #[arg(
        long,
        value_enum,
        default_value = "auto",
        value_name = "auto|float|int8"
    )]
    pub input_layer: crate::quant::InputLayer,
    /// How weights are rounded to int8: gptq (row by row, each rounding error moved onto the weights not
    /// yet rounded as the calibration samples' layer inputs say), nearest, or auto (the default: gptq for
    /// layers that compute in float on int8 weights, see --float-weights; nearest for integer layers,
    /// where gptq measured worse).
    #[arg(
        long,
        value_enum,
        default_value = "auto",
        value_name = "auto|gptq|nearest"
    )]
    pub weight_rounding: crate::quant::Rounding,
    /// How layers kept in float (--keep-float, --max-error, --max-drop, the float input stage and head)
    /// store their weights: f16 (the default) or int8 per output channel (weights only: computed in
    /// float on the widened weights, the artifact stays about 4x smaller).
    #[arg(long, value_enum, default_value = "f16", value_name = "f16|int8")]
    pub float_weights: FloatWeights,
    /// Int8 weights only (with --int8): every layer computes in float on its int8 weights, widened once
    /// when the artifact is loaded: about 4x smaller, float speed, the error of the weights alone. --calib
    /// is optional here (it lets GPTQ round the weights; without it they round to nearest).
    #[arg(long, requires = "int8")]
    pub weights_only: bool,
    /// Activation precision of the integer layers (with --int8): int8 (the default), or int16: 16-bit
    /// activations (symmetric, ranges twice the calibrated ones) with int8 weights (GPTQ-rounded) and i32
    /// sums, on the CPU's 16-bit engine: still about 4x smaller, close to float where int8 activations
    /// lose too much (PP-OCR cls top-1 agreement with float 0.948 -> 0.996, 3.90x), at about twice the
    /// int8 engine's time. Or mixed: int8 activations, and 16-bit ones on the layers that the search of
    /// --max-error / --max-drop finds most sensitive (which it would otherwise keep in float).
    #[arg(
        long,
        value_enum,
        default_value = "int8",
        value_name = "int8|int16|mixed",
        requires = "int8"
    )]
    pub activations: crate::quant::Activations,
    /// Use at most N calibration samples.
    #[arg(long, value_name = "N")]
    pub calib_samples: Option<usize>,
    /// Accuracy-aware mixed precision: keep the most sensitive layers in float until the outputs' relative
    /// L2 error vs the float model (on the calibration samples) is at most this, e.g. 0.02.
    #[arg(long, value_name = "REL_L2")]
    pub max_error: Option<f64>,
    /// Accuracy-aware mixed precision: keep the most sensitive layers in float until the top-1 accuracy on
    /// the labelled calibration samples is at most this many points below the float model's (needs
    /// --calib-labels), e.g. 0.5.
    #[arg(long, value_name = "POINTS")]
    pub max_drop: Option<f64>,
    /// Class labels of the calibration samples (a .npy of N integers, in sample order), for --max-drop.
    #[arg(long, value_name = "FILE.npy", requires = "max_drop")]
    pub calib_labels: Option<PathBuf>,
    /// Store the weights uncompressed, so the runtime reads them in place (flash, mmap). int8 artifacts
    /// are otherwise stored with deflated weights (about 8% smaller; inflated once at load).
    #[arg(long)]
    pub plain_weights: bool,
}

/// `--float-weights`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatWeights {
    /// Half precision.
    F16,
    /// Int8 per output channel (weights only).
    Int8,
}

/// `--activation-scales`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scales {
    /// One scale per tensor.
    Tensor,
    /// One scale per channel where that pays (conv outputs read by element-wise functions).
    Channel,
}

/// Runs the subcommand.
pub fn main(a: Args, quiet: bool) -> Result<()> {
    let bytes = match (a.int8, &a.calib) {
        (false, None) => crate::compress_float(&a.model, &a.shapes.input_shape)?,
        (false, Some(_)) => bail!("--calib is only used with --int8"),
        (true, calib) => {
            let c = crate::quant::CompressInt8 {
                calib: calib.as_deref(),
                samples: a.calib_samples,
                opts: crate::quant::Int8Options {
                    method: a.calib_method,
                    channel_scales: a.activation_scales == Scales::Channel,
                    keep_float: a.keep_float.clone(),
                    input_layer: a.input_layer,
                    rounding: a.weight_rounding,
                    float_weights_int8: a.float_weights == FloatWeights::Int8,
                    weights_only: a.weights_only,
                    act16: a.activations == crate::quant::Activations::Int16,
                    mixed16: a.activations == crate::quant::Activations::Mixed,
                    plain_weights: a.plain_weights,
                    max_error: a.max_error,
                    max_drop: a.max_drop,
                    labels: match &a.calib_labels {
                        Some(f) => Some(crate::npy::read_labels(f)?),
                        None => None,
                    },
                },
                progress: !quiet,
            };
            crate::quant::compress_int8(&a.model, &a.shapes.input_shape, &c)?.0
        }
    };
    crate::export::write_atomic(&a.output, &bytes)?;
    if !quiet {
        let onnx = std::fs::metadata(&a.model).map(|m| m.len()).unwrap_or(0);
        println!(
            "wrote {} ({} bytes; ONNX {} bytes, {:.2}x)",
            a.output.display(),
            bytes.len(),
            onnx,
            onnx as f64 / bytes.len().max(1) as f64
        );
    }
    Ok(())
}
