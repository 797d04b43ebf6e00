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
}

/// Runs the subcommand.
pub fn main(a: Args, quiet: bool) -> Result<()> {
    let bytes = read_file(&a.model)?;
    let model = load_model(&a.model, &bytes)?;
    let onnx = crate::onnx_export::to_onnx(&model)
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
