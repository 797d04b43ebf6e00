//! The `.tern` file format.
//!
//! ```text
//! 0   "TERN"                magic
//! 4   u32 version           FORMAT_VERSION of the writer
//! 8   u32 section count     n ≤ MAX_SECTIONS
//! 12  u32 reserved          0
//! 16  n × { u32 kind, u32 reserved, u64 offset, u64 len }
//! ..  sections              GRAPH: postcard(ArtifactMeta); WEIGHTS: 64-byte aligned blob read in place;
//!                           from version 4 either may instead be stored deflated (GRAPH_DEFLATE,
//!                           WEIGHTS_DEFLATE: u64 inflated length, then a raw deflate stream)
//! end u32 crc32             of every byte before it
//! ```
//! All integers little-endian. Unknown section kinds are skipped (room to grow within a version).
//!
//! Deflated weights trade reading in place (flash, mmap) for size: the loader inflates them into one
//! owned buffer. The tool deflates int8 artifacts' weights (their kernels repack the weights at session
//! creation anyway) and keeps float weights plain.
use crate::error::Result;
use crate::ir::Graph;
use crate::plan::MemoryPlan;
use crate::{bail, err};
use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// File magic.
pub const MAGIC: [u8; 4] = *b"TERN";
/// The format version this runtime writes (12: 16-bit Conv, MatMul and Mul requantize in f32,
/// [`crate::ir::quant::requant_f32`] (the same encoding as 11, read with that rule), and `Op::Q16Unary`
/// and `Op::Q16ConvAct` (hard-swish on int16 in f32); 11: `Op::Requantize` between int8 and int16 layers; 10: 16-bit activations, `DType::I16` and the `Q16*` ops;
/// 9: a pointwise float `Conv` may write int8, quantized band by
/// band; 8 added `Op::Gru` and `Op::Rnn`; 7 `Op::Lstm`; 6 added a float `Conv`'s post-activation per-channel affine,
/// inputs 3 and 4; 5 `Unary::Silu`, and channel-scaled tensors written by `QLut` and read by depthwise
/// `QConv`; 4 deflated sections; 3 `QConvTranspose`; 2 the integer ops and int8/int32 tensors; 1 is f32
/// only).
pub const FORMAT_VERSION: u32 = 12;
/// The oldest format version this runtime reads.
pub const MIN_FORMAT_VERSION: u32 = 1;
/// Section kind: the postcard-encoded [`ArtifactMeta`].
pub const SECTION_GRAPH: u32 = 1;
/// Section kind: the weight blob.
pub const SECTION_WEIGHTS: u32 = 2;
/// Section kind (version 4+): [`SECTION_GRAPH`] deflated.
pub const SECTION_GRAPH_DEFLATE: u32 = 3;
/// Section kind (version 4+): [`SECTION_WEIGHTS`] deflated.
pub const SECTION_WEIGHTS_DEFLATE: u32 = 4;
/// Largest inflated section the loader accepts (a bound against a corrupt length field, far above any
/// edge model).
pub const MAX_INFLATED: u64 = 1 << 32;
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

/// A decoded (not yet validated) artifact: the structure plus the weight blob, borrowed from the bytes
/// (or inflated, when stored deflated).
#[derive(Debug)]
pub struct Decoded<'a> {
    /// Format version found in the header.
    pub version: u32,
    /// The structure.
    pub meta: ArtifactMeta,
    /// The weight blob: in place, or inflated from a [`SECTION_WEIGHTS_DEFLATE`] section.
    pub weights: Cow<'a, [u8]>,
    /// Offset of the weight section from the start of the artifact bytes.
    pub weights_offset: usize,
}

/// How [`encode_with`] stores the sections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Deflate the weight blob (the loader then inflates it instead of reading it in place).
    pub deflate_weights: bool,
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 16);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, 9));
    out
}

/// Inflates a deflated section (`u64` length, then the stream), checking the length both ways.
fn inflate(sec: &[u8], what: &str, off: usize) -> Result<Vec<u8>> {
    let len = u64_at(sec, 0).ok_or_else(|| {
        err!(
            Format,
            "{what} section (offset {off}) is shorter than its length field"
        )
    })?;
    if len > MAX_INFLATED {
        bail!(Format, "{what} section (offset {off}) claims {len} inflated bytes, above the {MAX_INFLATED} limit");
    }
    // deflate expands at most 1032:1: a larger claim is a corrupt length or a bomb, refused before any
    // memory is taken for it
    let stream = (sec.len() - 8) as u64;
    if len > stream.saturating_mul(1032) + 1024 {
        bail!(Format, "{what} section (offset {off}) claims {len} inflated bytes from a {stream}-byte stream, more than deflate can expand to");
    }
    let limit = usize::try_from(len).map_err(|_| {
        err!(Format, "{what} section (offset {off}) claims {len} inflated bytes, more than this target addresses")
    })?;
    let out =
        miniz_oxide::inflate::decompress_to_vec_with_limit(&sec[8..], limit).map_err(|e| {
            err!(
                Format,
                "{what} section (offset {off}) does not inflate: {:?}",
                e.status
            )
        })?;
    if out.len() as u64 != len {
        bail!(
            Format,
            "{what} section (offset {off}) inflates to {} bytes, its header says {len}",
            out.len()
        );
    }
    Ok(out)
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

/// Serializes an artifact with the graph deflated and the weights in place. `weights` is the blob the
/// graph's [`crate::ir::BlobRange`]s point into.
pub fn encode(meta: &ArtifactMeta, weights: &[u8]) -> Result<Vec<u8>> {
    encode_with(meta, weights, EncodeOptions::default())
}

/// [`encode`] with a choice of how the weights are stored.
pub fn encode_with(meta: &ArtifactMeta, weights: &[u8], opts: EncodeOptions) -> Result<Vec<u8>> {
    let graph_bytes = deflate(
        &postcard::to_allocvec(meta).map_err(|e| err!(Format, "cannot encode graph: {e}"))?,
    );
    let packed;
    let (weights_kind, weights) = if opts.deflate_weights {
        packed = deflate(weights);
        (SECTION_WEIGHTS_DEFLATE, &packed[..])
    } else {
        (SECTION_WEIGHTS, weights)
    };
    let n = 2usize;
    let graph_off = HEADER + n * ENTRY;
    let weights_off = (graph_off + graph_bytes.len()).div_ceil(WEIGHT_ALIGN) * WEIGHT_ALIGN;
    let total = weights_off + weights.len() + 4;
    let mut out = vec![0u8; total];
    out[0..4].copy_from_slice(&MAGIC);
    out[4..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[8..12].copy_from_slice(&(n as u32).to_le_bytes());
    let entries = [
        (SECTION_GRAPH_DEFLATE, graph_off, graph_bytes.len()),
        (weights_kind, weights_off, weights.len()),
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
        let deflated = matches!(kind, SECTION_GRAPH_DEFLATE | SECTION_WEIGHTS_DEFLATE);
        if deflated && version < 4 {
            // a kind this version did not define: skipped like any unknown kind
            continue;
        }
        match kind {
            SECTION_GRAPH | SECTION_GRAPH_DEFLATE if graph.is_none() => {
                graph = Some((range, deflated))
            }
            SECTION_WEIGHTS | SECTION_WEIGHTS_DEFLATE if weights.is_none() => {
                if !deflated && !(off as usize).is_multiple_of(WEIGHT_ALIGN) {
                    bail!(
                        Format,
                        "weight section offset {off} is not {WEIGHT_ALIGN}-byte aligned"
                    );
                }
                weights = Some((range, deflated))
            }
            SECTION_GRAPH | SECTION_WEIGHTS | SECTION_GRAPH_DEFLATE | SECTION_WEIGHTS_DEFLATE => {
                bail!(Format, "duplicate section kind {kind}")
            }
            _ => {}
        }
    }
    let (graph, graph_deflated) = graph.ok_or_else(|| err!(Format, "no graph section"))?;
    let (weights, weights_deflated) = weights.ok_or_else(|| err!(Format, "no weight section"))?;
    let inflated;
    let graph_bytes = if graph_deflated {
        inflated = inflate(&bytes[graph.clone()], "graph", graph.start)?;
        &inflated[..]
    } else {
        &bytes[graph.clone()]
    };
    let meta: ArtifactMeta = postcard::from_bytes(graph_bytes).map_err(|e| {
        err!(
            Format,
            "graph section (offset {}) does not decode: {e}",
            graph.start
        )
    })?;
    let blob = if weights_deflated {
        Cow::Owned(inflate(&bytes[weights.clone()], "weight", weights.start)?)
    } else {
        Cow::Borrowed(&bytes[weights.clone()])
    };
    Ok(Decoded {
        version,
        meta,
        weights: blob,
        weights_offset: weights.start,
    })
}
