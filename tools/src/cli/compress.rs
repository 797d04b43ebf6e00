//! `tern compress <model.onnx> -o <out.tern> [--input-shape ...]`
use super::ShapeArgs;
use anyhow::Result;
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
}

/// Runs the subcommand.
pub fn main(a: Args, quiet: bool) -> Result<()> {
    let bytes = crate::compress_float(&a.model, &a.shapes.input_shape)?;
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
