//! Export: lay the constants out in a 64-byte aligned blob, plan the arena, encode, check that the runtime
//! accepts the bytes, and write them atomically (temporary file in the target directory, fsync, rename),
//! so a failed run never leaves a partial artifact.
use crate::graph::ToolGraph;
use anyhow::{anyhow, Context, Result};
use std::io::Write;
use std::path::Path;
use tern::artifact::{self, ArtifactMeta};
use tern::ir::BlobRange;

/// Builds the artifact bytes for a graph (weights stored in place).
pub fn to_bytes(g: &ToolGraph, metadata: Vec<(String, String)>) -> Result<Vec<u8>> {
    to_bytes_with(g, metadata, artifact::EncodeOptions::default())
}

/// [`to_bytes`] with a choice of section storage.
pub fn to_bytes_with(
    g: &ToolGraph,
    metadata: Vec<(String, String)>,
    opts: artifact::EncodeOptions,
) -> Result<Vec<u8>> {
    let mut graph = g.graph.clone();
    let mut blob: Vec<u8> = Vec::new();
    for ((t, data), bytes) in graph.tensors.iter_mut().zip(&g.data).zip(&g.bytes) {
        if data.is_none() && bytes.is_none() {
            continue;
        }
        let align = artifact::const_align(t.dtype);
        let off = blob.len().div_ceil(align) * align;
        blob.resize(off, 0);
        match (data, bytes) {
            (Some(d), _) => d
                .iter()
                .for_each(|v| blob.extend_from_slice(&v.to_le_bytes())),
            (None, Some(b)) => blob.extend_from_slice(b),
            (None, None) => {}
        }
        t.data = Some(BlobRange {
            offset: off as u64,
            len: (blob.len() - off) as u64,
        });
    }
    let plan = tern::plan::plan(&graph);
    let meta = ArtifactMeta {
        graph,
        plan,
        metadata,
    };
    let bytes = artifact::encode_with(&meta, &blob, opts).map_err(|e| anyhow!("{e}"))?;
    tern::Model::from_bytes(&bytes)
        .map_err(|e| anyhow!("internal error: the runtime rejects the artifact we made: {e}"))?;
    Ok(bytes)
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tern-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.as_file().sync_all().context("fsync")?;
    tmp.persist(path)
        .map_err(|e| anyhow!("cannot rename into {}: {}", path.display(), e.error))?;
    Ok(())
}
