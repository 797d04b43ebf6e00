//! `tern-tools`: the host side of tern — ONNX import, compression passes, export to `.tern`, and the
//! `tern` CLI (inspect, compress, run, bench, eval, export, demo). See `shared/design.md` for the data flow.
#![warn(missing_docs)]

pub mod boards;
pub mod cli;
pub mod export;
pub mod graph;
pub mod import;
pub mod metrics;
pub mod npy;
pub mod onnx_export;
pub mod passes;
pub mod quant;
pub mod reference;

use anyhow::Result;
use std::path::Path;

/// ONNX file → optimized float graph (import, fold_bn, fuse_act, prune), ready for export.
pub fn compile_float(onnx: &Path, shapes: &[import::InputShape]) -> Result<graph::ToolGraph> {
    let mut g = import::import(onnx, shapes)?;
    log::info!(
        "imported {}: {} nodes, {} tensors, {} MACs",
        onnx.display(),
        g.graph.nodes.len(),
        g.graph.tensors.len(),
        g.graph.macs()
    );
    passes::run_all(&mut g, &passes::float_pipeline())?;
    Ok(g)
}

/// ONNX file → `.tern` bytes (float).
pub fn compress_float(onnx: &Path, shapes: &[import::InputShape]) -> Result<Vec<u8>> {
    let g = compile_float(onnx, shapes)?;
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
            format!("import,{},plan", passes::names(&passes::float_pipeline())),
        ),
    ];
    export::to_bytes(&g, meta)
}
