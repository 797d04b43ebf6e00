//! The CLI surface (a contract: scripts call it exactly so; change only by adding).
pub mod bench;
pub mod compress;
pub mod demo;
pub mod engine;
pub mod eval;
pub mod export;
pub mod inspect;
pub mod run;

use crate::import::InputShape;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

/// tern: compress ONNX models into small .tern artifacts and run them fast on edge CPUs.
#[derive(Parser, Debug)]
#[command(name = "tern", version, about)]
pub struct Cli {
    /// More log output (-v: passes and decisions, -vv: details).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// The subcommand.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Show inputs, outputs, op histogram, parameters, MACs and sizes of an .onnx or .tern model.
    Inspect(inspect::Args),
    /// Compress an ONNX model into a .tern artifact.
    Compress(compress::Args),
    /// Run a .tern artifact on .npy inputs and write one .npy per output.
    Run(run::Args),
    /// Time a .tern artifact on seeded random inputs.
    Bench(bench::Args),
    /// Compare an artifact with its float ONNX model: accuracy, agreement, error per output and per layer.
    Eval(eval::Args),
    /// Write a .tern artifact in another format (`--onnx-qdq OUT.onnx`: ONNX with QDQ quantization).
    Export(export::Args),
    /// The main job on the bundled model: compress it, run it, compare size/accuracy/latency with the ONNX model.
    Demo(demo::Args),
}

/// Runs a parsed command line.
pub fn main(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Inspect(a) => inspect::main(a),
        Cmd::Compress(a) => compress::main(a, cli.quiet),
        Cmd::Run(a) => run::main(a),
        Cmd::Bench(a) => bench::main(a),
        Cmd::Demo(a) => demo::main(a, cli.quiet),
        Cmd::Eval(a) => eval::main(a),
        Cmd::Export(a) => export::main(a, cli.quiet),
    }
}

/// `--input-shape NAME=1x3x48x192`, repeatable.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ShapeArgs {
    /// Fix an input's shape, e.g. `--input-shape x=1x3x48x192` (repeatable; default: the model's static
    /// dims, symbolic dims become 1, an image's symbolic height and width the size an Ultralytics export
    /// records as `imgsz`).
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    pub input_shape: Vec<InputShape>,
}

/// Reads a whole file with an error naming it.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Whether bytes are a .tern artifact (by magic, not by file name).
pub fn is_tern(bytes: &[u8]) -> bool {
    bytes.starts_with(&tern::artifact::MAGIC)
}

/// Loads and validates a .tern file, with errors naming it.
pub fn load_model<'a>(path: &Path, bytes: &'a [u8]) -> Result<tern::Model<'a>> {
    tern::Model::from_bytes(bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Peak resident set size of this process (Linux `VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The bundled models directory (`models/` of the source tree).
pub fn default_models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("models")
}
