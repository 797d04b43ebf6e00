//! The `.tern` file format.
//!
//! ```text
//! 0   "TERN"                magic
//! 4   u32 version           FORMAT_VERSION of the writer
//! 8   u32 section count     n ≤ MAX_SECTIONS
//! 12  u32 reserved          0
//! 16  n × { u32 kind, u32 reserved, u64 offset, u64 len }
//! ..  sections              GRAPH: postcard(ArtifactMeta); WEIGHTS: 64-byte aligned blob read in place
//! end u32 crc32             of every byte before it
//! ```
//! All integers little-endian. Unknown section kinds are skipped (room to grow within a version).
use crate::error::Result;
use crate::ir::Graph;
use crate::plan::MemoryPlan;
use crate::{bail, err};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// File magic.
pub const MAGIC: [u8; 4] = *b"TERN";
/// The format version this runtime writes (3 added `QConvTranspose`; 2 the integer ops and int8/int32
/// tensors; 1 is f32 only).
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format version this runtime reads.
pub const MIN_FORMAT_VERSION: u32 = 1;
/// Section kind: the postcard-encoded [`ArtifactMeta`].
pub const SECTION_GRAPH: u32 = 1;
/// Section kind: the weight blob.
pub const SECTION_WEIGHTS: u32 = 2;
/// Alignment of the weight blob within the file, and of every float constant within the blob.
pub const WEIGHT_ALIGN: usize = 64;

/// Alignment of a constant of type `dtype` inside the weight blob: float data is read in place by SIMD
/// kernels (a cache line); integer constants are repacked or copied at session creation, so their own
/// element size is enough (small int8 tables and biases would otherwise pad a quantized model by 10%+).
pub fn const_align(dtype: crate::ir::DType) -> usize {
    match dtype {
        crate::ir::DType::F32 | crate::ir::DType::F16 => WEIGHT_ALIGN,
        d => d.size(),
    }
}
const MAX_SECTIONS: u32 = 64;
const HEADER: usize = 16;
const ENTRY: usize = 24;

/// Everything in the artifact except the weights.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ArtifactMeta {
    /// The graph; constants point into the weight blob.
    pub graph: Graph,
    /// The arena plan made by the tool (re-checked on load).
    pub plan: MemoryPlan,
    /// Free-form key/value metadata (producer, source model, passes run, quantization decisions).
    pub metadata: Vec<(String, String)>,
}

/// A decoded (not yet validated) artifact: the structure plus the weight blob borrowed from the bytes.
#[derive(Debug)]
pub struct Decoded<'a> {
    /// Format version found in the header.
    pub version: u32,
    /// The structure.
    pub meta: ArtifactMeta,
    /// The weight blob, in place.
    pub weights: &'a [u8],
    /// Offset of the weight blob from the start of the artifact bytes.
    pub weights_offset: usize,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off.checked_add(4)?)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// Serializes an artifact. `weights` is the blob the graph's [`crate::ir::BlobRange`]s point into.
pub fn encode(meta: &ArtifactMeta, weights: &[u8]) -> Result<Vec<u8>> {
    let graph_bytes =
        postcard::to_allocvec(meta).map_err(|e| err!(Format, "cannot encode graph: {e}"))?;
    let n = 2usize;
    let graph_off = HEADER + n * ENTRY;
    let weights_off = (graph_off + graph_bytes.len()).div_ceil(WEIGHT_ALIGN) * WEIGHT_ALIGN;
    let total = weights_off + weights.len() + 4;
    let mut out = vec![0u8; total];
    out[0..4].copy_from_slice(&MAGIC);
    out[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[8..12].copy_from_slice(&(n as u32).to_le_bytes());
    let entries = [
        (SECTION_GRAPH, graph_off, graph_bytes.len()),
        (SECTION_WEIGHTS, weights_off, weights.len()),
    ];
    for (i, (kind, off, len)) in entries.iter().enumerate() {
        let e = HEADER + i * ENTRY;
        out[e..e + 4].copy_from_slice(&kind.to_le_bytes());
        out[e + 8..e + 16].copy_from_slice(&(*off as u64).to_le_bytes());
        out[e + 16..e + 24].copy_from_slice(&(*len as u64).to_le_bytes());
    }
    out[graph_off..graph_off + graph_bytes.len()].copy_from_slice(&graph_bytes);
    out[weights_off..weights_off + weights.len()].copy_from_slice(weights);
    let crc = crc32fast::hash(&out[..total - 4]);
    out[total - 4..].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Reads the header, section table and checksum, and decodes the structure. Checks bytes only; the
/// graph's consistency is checked by [`crate::Model::from_bytes`].
pub fn decode(bytes: &[u8]) -> Result<Decoded<'_>> {
    if bytes.len() < 4 || bytes[..4] != MAGIC {
        bail!(
            Format,
            "bad magic: the file does not start with \"TERN\" (is it an ONNX model or truncated?)"
        );
    }
    let version =
        u32_at(bytes, 4).ok_or_else(|| err!(Format, "truncated header ({} bytes)", bytes.len()))?;
    if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        bail!(
            Version,
            "artifact made by format {version}, this runtime reads {MIN_FORMAT_VERSION}..={FORMAT_VERSION}; rebuild it with a matching `tern compress`"
        );
    }
    let n =
        u32_at(bytes, 8).ok_or_else(|| err!(Format, "truncated header ({} bytes)", bytes.len()))?;
    if n > MAX_SECTIONS {
        bail!(Format, "section count {n} exceeds {MAX_SECTIONS}");
    }
    let table_end = HEADER + n as usize * ENTRY;
    if bytes.len() < table_end + 4 {
        bail!(
            Format,
            "truncated: {} bytes, the section table alone needs {}",
            bytes.len(),
            table_end + 4
        );
    }
    let body = bytes.len() - 4;
    let stored = u32_at(bytes, body).unwrap_or(0);
    let actual = crc32fast::hash(&bytes[..body]);
    if stored != actual {
        bail!(Format, "checksum mismatch (stored {stored:#010x}, computed {actual:#010x}): the file is corrupt or truncated");
    }
    let mut graph = None;
    let mut weights = None;
    for i in 0..n as usize {
        let e = HEADER + i * ENTRY;
        let kind = u32_at(bytes, e).unwrap_or(0);
        let off = u64_at(bytes, e + 8).unwrap_or(u64::MAX);
        let len = u64_at(bytes, e + 16).unwrap_or(u64::MAX);
        let end = off
            .checked_add(len)
            .filter(|&end| off >= table_end as u64 && end <= body as u64);
        let Some(end) = end else {
            bail!(Format, "section {i} (kind {kind}) at offset {off} length {len} lies outside the file body (0..{body})");
        };
        let range = off as usize..end as usize;
        match kind {
            SECTION_GRAPH if graph.is_none() => graph = Some(range),
            SECTION_WEIGHTS if weights.is_none() => {
                if !(off as usize).is_multiple_of(WEIGHT_ALIGN) {
                    bail!(
                        Format,
                        "weight section offset {off} is not {WEIGHT_ALIGN}-byte aligned"
                    );
                }
                weights = Some(range)
            }
            SECTION_GRAPH | SECTION_WEIGHTS => bail!(Format, "duplicate section kind {kind}"),
            _ => {}
        }
    }
    let graph = graph.ok_or_else(|| err!(Format, "no graph section"))?;
    let weights = weights.ok_or_else(|| err!(Format, "no weight section"))?;
    let meta: ArtifactMeta = postcard::from_bytes(&bytes[graph.clone()]).map_err(|e| {
        err!(
            Format,
            "graph section (offset {}) does not decode: {e}",
            graph.start
        )
    })?;
    Ok(Decoded {
        version,
        meta,
        weights: &bytes[weights.clone()],
        weights_offset: weights.start,
    })
}
