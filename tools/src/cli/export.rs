//! `tern export <model.tern> --onnx-qdq <out.onnx>`
use super::{load_model, read_file};
use anyhow::Result;
use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The .tern artifact.
    pub model: PathBuf,
    /// Write the artifact as an ONNX model with QDQ quantization (QuantizeLinear/DequantizeLinear around
    /// each integer op, int8 weights, int32 biases): the same int8 parameters, for ONNX Runtime and other
    /// QDQ consumers. Written atomically.
    #[arg(long = "onnx-qdq", value_name = "OUT.onnx")]
    pub onnx_qdq: PathBuf,
    /// How integer Add/Sub/Mul are written: `integer` (integer ONNX ops with tern's rounding, so ONNX
    /// Runtime gives tern's int8 values) or `qdq` (DequantizeLinear → op → QuantizeLinear, the pattern
    /// QDQ toolchains such as TensorRT fuse; they round their own way, a step apart on a few outputs).
    #[arg(long, value_enum, default_value_t = crate::onnx_export::BinaryForm::Integer)]
    pub binary_ops: crate::onnx_export::BinaryForm,
    /// Write convolutions, matrix products and global average pooling as integer ONNX ops too
    /// (ConvInteger, MatMulInteger, ReduceSum, then tern's requantization in int64): ONNX Runtime then
    /// computes tern's int8 values for every integer op (float ops stay float), at the cost of the QDQ
    /// pattern other toolchains fuse. Implies `--binary-ops integer`.
    #[arg(long)]
    pub exact: bool,
}

/// Runs the subcommand.
pub fn main(a: Args, quiet: bool) -> Result<()> {
    let bytes = read_file(&a.model)?;
    let model = load_model(&a.model, &bytes)?;
    let onnx = crate::onnx_export::to_onnx_with(
        &model,
        crate::onnx_export::ExportOptions {
            binary: a.binary_ops,
            exact: a.exact,
        },
    )
    .map_err(|e| e.context(format!("exporting {}", a.model.display())))?;
    crate::export::write_atomic(&a.onnx_qdq, &onnx)?;
    if !quiet {
        println!(
            "wrote {} ({} bytes, QDQ ONNX opset 17)",
            a.onnx_qdq.display(),
            onnx.len()
        );
    }
    Ok(())
}
