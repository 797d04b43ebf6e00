//! The GPU backend (feature `gpu`): the same artifacts on Vulkan GPUs through wgpu, tested on lavapipe.
//!
//! ```text
//! Gpu::new(opts)            adapter choice (a real GPU first; a CPU adapter only when asked), device, queue
//! GpuSession::new(&model)   weights uploaded once; one arena buffer laid out by the memory plan; one
//!                           pipeline per shader (per kernel geometry for the convs); every dispatch
//!                           recorded with its parameters
//! session.run_into(..)      inputs written, one command buffer, only the outputs read back
//! ```
//! A node gets at most one dispatch (none for a Quantize of a graph input, done on the host during the
//! upload; an int8 Split one per output). A node without a GPU kernel runs on the CPU engine with its
//! tensors moved, or is an error naming it with `GpuSessionOptions::strict`; [`kernel_for`] tells which
//! nodes run on the GPU (`tern inspect --backend gpu`).
use crate::error::Result;
use crate::ir::{BinOp, Node, Op, PoolKind, Unary};
use crate::{bail, Model};
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How to pick the adapter.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Accept a CPU adapter (lavapipe, llvmpipe) when no real GPU exists. Also accepted when the
    /// environment selects the backend or adapter (`WGPU_BACKEND`, `WGPU_ADAPTER_NAME`).
    pub allow_cpu_adapter: bool,
    /// Compute packed int8 dot products with shifts and masks even where the WGSL implementation has
    /// `dot4I8Packed` (tests run both forms; they give the same integers).
    pub emulate_dot4: bool,
}

/// An opened GPU: the device tern runs on.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    /// Validation or out-of-memory errors reported outside an error scope (wgpu would panic by default).
    errors: Arc<Mutex<Option<String>>>,
    /// Set by wgpu's device-lost callback: why the device went away.
    lost: Arc<Mutex<Option<String>>>,
    /// Whether shaders use WGSL's `dot4I8Packed` (else shifts and masks).
    dot4: bool,
    /// Whether the device was opened with SHADER_F16 (f16 activations possible).
    f16: bool,
}

fn env_selects_adapter() -> bool {
    std::env::var_os("WGPU_BACKEND").is_some() || std::env::var_os("WGPU_ADAPTER_NAME").is_some()
}

impl Gpu {
    /// Opens the best adapter: discrete, then integrated, then virtual GPUs; a CPU adapter only when
    /// `opts.allow_cpu_adapter` or the environment selects one. An error says what was found.
    pub fn new(opts: &GpuOptions) -> Result<Gpu> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        let dot4 = !opts.emulate_dot4
            && instance
                .wgsl_language_features()
                .contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct);
        let name_filter = std::env::var("WGPU_ADAPTER_NAME")
            .ok()
            .map(|s| s.to_lowercase());
        let rank = |t: wgpu::DeviceType| match t {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Other => 3,
            wgpu::DeviceType::Cpu => 4,
        };
        let cpu_ok = opts.allow_cpu_adapter || env_selects_adapter();
        let mut found: Vec<String> = Vec::new();
        let mut best: Option<(usize, wgpu::Adapter)> = None;
        for a in adapters {
            let info = a.get_info();
            found.push(alloc::format!(
                "{} ({:?}, {:?})",
                info.name,
                info.backend,
                info.device_type
            ));
            if info.device_type == wgpu::DeviceType::Cpu && !cpu_ok {
                continue;
            }
            if let Some(f) = &name_filter {
                if !info.name.to_lowercase().contains(f.as_str()) {
                    continue;
                }
            }
            let r = rank(info.device_type);
            if best.as_ref().is_none_or(|(b, _)| r < *b) {
                best = Some((r, a));
            }
        }
        let Some((_, adapter)) = best else {
            bail!(
                Unsupported,
                "no usable GPU adapter (found: {}){}",
                if found.is_empty() {
                    "none".to_string()
                } else {
                    found.join(", ")
                },
                if cpu_ok {
                    ""
                } else {
                    "; a CPU adapter such as lavapipe is used only when asked (GpuOptions::allow_cpu_adapter, `tern --gpu-allow-cpu-adapter`) or selected by WGPU_BACKEND"
                }
            );
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        // timestamps for per-node profiles and f16 for f16 activations, where the adapter has them
        let features =
            adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("tern"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| {
            crate::err!(
                Unsupported,
                "GPU \"{}\": cannot open a device: {e}",
                info.name
            )
        })?;
        let errors = Arc::new(Mutex::new(None));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("GPU error: {e}");
            if let Ok(mut s) = sink.lock() {
                s.get_or_insert_with(|| e.to_string());
            }
        }));
        let lost = Arc::new(Mutex::new(None));
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            log::error!("GPU device lost ({reason:?}): {msg}");
            if let Ok(mut l) = lost_sink.lock() {
                *l = Some(format!(
                    "the device was lost ({reason:?}{}{msg})",
                    if msg.is_empty() { "" } else { ": " }
                ));
            }
        });
        log::info!(
            "GPU: {} ({:?}, {:?}, driver {} {})",
            info.name,
            info.backend,
            info.device_type,
            info.driver,
            info.driver_info
        );
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            errors,
            lost,
            dot4,
            f16: features.contains(wgpu::Features::SHADER_F16),
        })
    }

    /// "name (backend, type, driver)" for logs and tool output.
    pub fn describe(&self) -> String {
        alloc::format!(
            "{} ({:?}, {:?}, driver {} {})",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.info.driver_info
        )
    }

    /// Whether int8 dot products use WGSL's native `dot4I8Packed` (else the shift-and-mask form).
    pub fn native_dot4(&self) -> bool {
        self.dot4
    }

    /// Whether the device has WGSL `f16` (SHADER_F16), which [`GpuSessionOptions::f16_activations`] needs.
    pub fn has_f16(&self) -> bool {
        self.f16
    }

    /// The largest storage buffer binding the device allows, in bytes (an arena or weight blob above it is
    /// refused at session creation).
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Whether the adapter is a CPU implementation (lavapipe, llvmpipe).
    pub fn is_cpu_adapter(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    fn take_error(&self) -> Option<String> {
        self.errors.lock().ok().and_then(|mut e| e.take())
    }

    /// Why the device was lost, once it has been.
    fn lost(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|l| l.clone())
    }

    /// Releases the device now, as a driver reset or an unplugged GPU would: every later run of a
    /// session on it fails with [`crate::ErrorKind::Device`] (never a hang or a panic). For an app that
    /// must give the GPU up before its sessions go away, and to test the device-lost path.
    pub fn release(&self) {
        self.device.destroy();
    }
}

/// (arena byte offset, bytes) where the GPU stores activation `t`: the plan's place, or with f16
/// activations (`half`) the halves at the plan's word offset.
fn stored_span(model: &Model, half: bool, t: u32) -> (u64, u64) {
    let tt = &model.graph.tensors[t as usize];
    let off = model.plan.offsets[t as usize];
    if half {
        (off / 2, tt.numel() as u64 * 2)
    } else {
        (off, (tt.numel() * tt.dtype.size()) as u64)
    }
}

/// Little-endian f16 values widened into f32 bytes (`dst` holds twice as many bytes).
fn widen_halves(src: &[u8], dst: &mut [u8]) {
    for (h, d) in src.chunks_exact(2).zip(dst.chunks_exact_mut(4)) {
        d.copy_from_slice(
            &half::f16::from_le_bytes([h[0], h[1]])
                .to_f32()
                .to_le_bytes(),
        );
    }
}

/// f32 bytes narrowed to little-endian f16 values (round to nearest even).
fn narrow_f32s(src: &[u8]) -> Vec<u8> {
    src.chunks_exact(4)
        .flat_map(|c| {
            half::f16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])).to_le_bytes()
        })
        .collect()
}

/// The shader that runs node `n` on the GPU, or why there is none.
pub fn kernel_for(model: &Model, n: &Node) -> core::result::Result<&'static str, String> {
    let g = &model.graph;
    let rank_ok = n
        .inputs
        .iter()
        .chain(&n.outputs)
        .all(|&t| g.tensors[t as usize].shape.len() <= MAX_RANK);
    if !rank_ok {
        return Err(alloc::format!("rank above {MAX_RANK}"));
    }
    if crate::cpu::q16::is_q16(model, n) {
        return Err("16-bit activations have no GPU kernels (the CPU runs them)".into());
    }
    // (a float Conv writing int8 is not: a float conv into scratch, then the conversion)
    if crate::cpu::ops::quant::is_integer(model, n) {
        // what the int8 steps need beyond a kernel: activation inputs in the arena where they index it
        // by word (a constant there would read the arena at its blob offset), Add tables that sum in 32
        // bits, word-aligned constants for a Reshape
        let konst = |t: u32| g.tensors[t as usize].data;
        let x_const = konst(n.inputs[0]).is_some();
        match &n.op {
            Op::Quantize
            | Op::Dequantize
            | Op::QLut
            | Op::QConv { .. }
            | Op::QConvTranspose { .. }
            | Op::QMatMul { .. }
            | Op::Pool(_)
            | Op::GlobalPool(_)
                if x_const =>
            {
                return Err("int8 op on a constant input (folded by the tool)".into())
            }
            Op::Concat { .. } if n.inputs.iter().any(|&t| konst(t).is_some()) => {
                return Err("int8 Concat of a constant".into())
            }
            Op::Reshape if konst(n.inputs[0]).is_some_and(|r| r.offset % 4 != 0) => {
                return Err("int8 Reshape of a constant not aligned to a word".into())
            }
            Op::QBinary { .. } if !crate::cpu::ops::quant::add_sums_fit(model, n) => {
                return Err("int8 Add whose rescale tables overflow 32 bits".into())
            }
            _ => {}
        }
        return Ok(match &n.op {
            Op::Quantize | Op::Dequantize | Op::QLut => "q_convert",
            Op::QConv { .. } => "q_conv",
            Op::QConvTranspose { .. } => "q_conv_transpose",
            Op::QMatMul { .. } => {
                if g.tensors[n.outputs[0] as usize].shape.len() != 2 {
                    return Err("int8 MatMul on more than 2 dims".into());
                }
                "q_matmul"
            }
            Op::QBinary { .. } => "q_binary",
            Op::Pool(_) | Op::GlobalPool(_) => "q_pool",
            Op::Concat { .. } => "q_concat",
            Op::Reshape => "copy",
            Op::Slice { .. }
            | Op::Pad { .. }
            | Op::Transpose { .. }
            | Op::Split { .. }
            | Op::Resize {
                mode: crate::ir::ResizeMode::Nearest(_),
                ..
            } => "q_move",
            other => {
                return Err(alloc::format!(
                    "int8 {} has no GPU kernel yet",
                    other.name()
                ))
            }
        });
    }
    Ok(match &n.op {
        Op::Binary { .. } | Op::Unary(_) => "eltwise",
        Op::ChannelAffine { .. } => "affine",
        Op::MatMul { .. } => {
            let (a, b) = (
                &g.tensors[n.inputs[0] as usize].shape,
                &g.tensors[n.inputs[1] as usize].shape,
            );
            let o = &g.tensors[n.outputs[0] as usize].shape;
            // the kernel strides a by its own batch and b by the same batch (or not at all)
            let batch = |s: &[u32]| s[..s.len().saturating_sub(2)].to_vec();
            if a.len() < 2
                || b.len() < 2
                || batch(a) != batch(o)
                || !(b.len() == 2 || batch(b) == batch(o))
            {
                return Err("MatMul with broadcast batch dimensions".into());
            }
            if n.inputs
                .get(2)
                .is_some_and(|&t| g.tensors[t as usize].data.is_none())
            {
                return Err("MatMul with a computed (non-constant) bias".into());
            }
            // the tiled kernel for real matrices; a few rows (batch-1 dense layers) go direct
            if a[a.len() - 2] < 4 {
                "matmul"
            } else {
                "matmul_tiled"
            }
        }
        Op::Conv { geom, .. } => {
            let w = &g.tensors[n.inputs[1] as usize].shape;
            let groups = geom.groups;
            // depthwise (one input and one output channel per group) has no GEMM to tile
            if w[1] == 1 && w[0] == groups {
                "conv"
            } else {
                "conv_tiled"
            }
        }
        Op::ConvTranspose { .. } => "conv_transpose",
        Op::Slice { .. }
        | Op::Pad { .. }
        | Op::Resize {
            mode: crate::ir::ResizeMode::Nearest(_),
            ..
        } => "gather",
        Op::Pool(_) => "pool",
        Op::GlobalPool(_) => "global_pool",
        Op::Softmax { .. } => "softmax",
        Op::Reshape => "copy",
        Op::Concat { .. } | Op::Split { .. } => "concat",
        Op::Transpose { .. } => "transpose",
        other => return Err(alloc::format!("{} has no GPU kernel yet", other.name())),
    })
}

const MAX_RANK: usize = 6;

const SHADERS: &[(&str, &str)] = &[
    ("eltwise", include_str!("shaders/eltwise.wgsl")),
    ("affine", include_str!("shaders/affine.wgsl")),
    ("matmul", include_str!("shaders/matmul.wgsl")),
    ("conv", include_str!("shaders/conv.wgsl")),
    ("pool", include_str!("shaders/pool.wgsl")),
    ("global_pool", include_str!("shaders/global_pool.wgsl")),
    ("softmax", include_str!("shaders/softmax.wgsl")),
    ("copy", include_str!("shaders/copy.wgsl")),
    ("transpose", include_str!("shaders/transpose.wgsl")),
    ("gather", include_str!("shaders/gather.wgsl")),
    (
        "conv_transpose",
        include_str!("shaders/conv_transpose.wgsl"),
    ),
    ("conv_tiled", include_str!("shaders/conv_tiled.wgsl")),
    ("concat", include_str!("shaders/concat.wgsl")),
    ("matmul_tiled", include_str!("shaders/matmul_tiled.wgsl")),
    ("q_conv", include_str!("shaders/q_conv.wgsl")),
    (
        "q_conv_transpose",
        include_str!("shaders/q_conv_transpose.wgsl"),
    ),
    ("q_matmul", include_str!("shaders/q_matmul.wgsl")),
    ("q_binary", include_str!("shaders/q_binary.wgsl")),
    ("q_convert", include_str!("shaders/q_convert.wgsl")),
    ("q_move", include_str!("shaders/q_move.wgsl")),
    ("q_concat", include_str!("shaders/q_concat.wgsl")),
    ("q_pool", include_str!("shaders/q_pool.wgsl")),
];
const COMMON: &str = include_str!("shaders/common.wgsl");
/// The entry point of the int8 shaders that write four outputs per invocation (they define `one`,
/// `count` and `out_word`).
const Q4_MAIN: &str = include_str!("shaders/q4_main.wgsl");
/// The shaders [`Q4_MAIN`] completes.
const Q4_SHADERS: &[&str] = &[
    "q_binary",
    "q_concat",
    "q_conv",
    "q_conv_transpose",
    "q_matmul",
    "q_move",
    "q_pool",
];
/// The arena as 32-bit words (f32 and packed int8 activations).
const ARENA32: &str = include_str!("shaders/arena32.wgsl");
/// The arena as f16 (float artifacts with [`GpuSessionOptions::f16_activations`]).
const ARENA16: &str = include_str!("shaders/arena16.wgsl");
/// Sum of the four int8 products of two packed words, WGSL's builtin.
const DOT4_NATIVE: &str = "fn dot4(a: u32, b: u32) -> i32 {\n    return dot4I8Packed(a, b);\n}\n";
/// The same with shifts and masks, for implementations without the language feature.
const DOT4_EMULATED: &str = "fn dot4(a: u32, b: u32) -> i32 {\n    var s = 0;\n    for (var i = 0u; i < 4u; i++) {\n        let sh = 24u - 8u * i;\n        s += (bitcast<i32>(a << sh) >> 24u) * (bitcast<i32>(b << sh) >> 24u);\n    }\n    return s;\n}\n";

/// Codes of [`Unary`] in `common.wgsl`'s `unary()` (0 = identity), with its two float parameters.
fn unary_code(u: Option<Unary>) -> (u32, f32, f32) {
    match u {
        None => (0, 0.0, 0.0),
        Some(u) => match u {
            Unary::Relu => (1, 0.0, 0.0),
            Unary::Clip { min, max } => (2, min, max),
            Unary::Sigmoid => (3, 0.0, 0.0),
            Unary::HardSigmoid { alpha, beta } => (4, alpha, beta),
            Unary::HardSwish => (5, 0.0, 0.0),
            Unary::LeakyRelu { alpha } => (6, alpha, 0.0),
            Unary::Erf => (7, 0.0, 0.0),
            Unary::Sqrt => (8, 0.0, 0.0),
            Unary::Exp => (9, 0.0, 0.0),
            Unary::Log => (10, 0.0, 0.0),
            Unary::Tanh => (11, 0.0, 0.0),
            Unary::Abs => (12, 0.0, 0.0),
            Unary::Neg => (13, 0.0, 0.0),
            Unary::Reciprocal => (14, 0.0, 0.0),
            Unary::Floor => (15, 0.0, 0.0),
            Unary::Ceil => (16, 0.0, 0.0),
            Unary::Silu => (17, 0.0, 0.0),
        },
    }
}

/// Options of a [`GpuSession`].
#[derive(Clone, Debug)]
pub struct GpuSessionOptions {
    /// A node without a GPU kernel is an error (else it runs on the CPU, with its tensors moved).
    pub strict: bool,
    /// Threads of the CPU engine for fallback nodes.
    pub threads: usize,
    /// Keep f32 conv and matmul weights as f16 on the GPU (tensors within f16 range), half the weight
    /// bandwidth; arithmetic stays f32. Measured on the sample models: PP-OCR cls outputs within 1e-3 and
    /// det320's probability map within 1e-1 relative L2 of the f32 run (the difference sits in the
    /// low-probability background; the text map at p > 0.3 is unchanged, IoU 1.0).
    pub f16_weights: bool,
    /// Store the activations of a float artifact as f16 (half the arena and half the activation
    /// bandwidth); every op still computes in f32 from the stored halves, so each op's output is its f32
    /// result rounded to f16: within 2^-11 relative (values beyond f16's range saturate to ±65504). Inputs
    /// are rounded to f16 on upload and outputs widened on readback. Needs an adapter with SHADER_F16
    /// ([`Gpu::has_f16`]; else an error). An int8 artifact keeps f32 for its float layers (logged).
    /// Measured on the sample models (tests/tests/gpu.rs): digits and PP-OCR cls outputs within 1e-3
    /// relative L2 of the f32 run, same top-1; det320's probability map within 1e-1 (4e-2 measured, in the
    /// low-probability background; text map at p > 0.3 IoU 0.999).
    pub f16_activations: bool,
}

impl Default for GpuSessionOptions {
    fn default() -> Self {
        GpuSessionOptions {
            strict: false,
            threads: 1,
            f16_weights: false,
            f16_activations: false,
        }
    }
}

/// One recorded dispatch.
struct Step {
    shader: &'static str,
    /// Values of the shader's `override` constants (a pipeline per distinct set).
    consts: Vec<(&'static str, f64)>,
    params: Vec<u32>,
    /// Invocations (64 per workgroup), for the 1-D shaders.
    threads: u32,
    /// Explicit workgroup counts, for the tiled shaders.
    groups: Option<[u32; 3]>,
}

/// A model prepared on a GPU: weights resident, pipelines built, every dispatch recorded.
pub struct GpuSession<'m> {
    model: &'m Model<'m>,
    gpu: &'m Gpu,
    arena: wgpu::Buffer,
    readback: wgpu::Buffer,
    /// Per dispatch: pipeline index, bind group, workgroup counts (fixed at creation).
    steps: Vec<(usize, wgpu::BindGroup, [u32; 3])>,
    pipelines: Vec<wgpu::ComputePipeline>,
    /// (arena byte offset, bytes) of each output, and its place in the readback buffer.
    outputs: Vec<(u64, u64, u64)>,
    /// Graph inputs quantized on the host while they are uploaded (exactly the CPU's QuantizeLinear).
    host_quantize: Vec<HostQuantize>,
    /// The dispatches of each node.
    node_steps: Vec<core::ops::Range<usize>>,
    /// Nodes without a GPU kernel, run by `cpu` (ascending).
    cpu_nodes: Vec<usize>,
    cpu: Option<crate::Session<'m>>,
    /// Bytes a run moves between GPU and CPU for the fallback nodes.
    transfer_bytes: usize,
    /// Bytes of the weights buffer (the artifact's weights, then what the kernels repacked or widened).
    weight_bytes: u64,
    /// Float activations stored as f16 (`GpuSessionOptions::f16_activations`).
    half: bool,
    /// Keeps the buffers the bind groups reference alive.
    _keep: (wgpu::Buffer, wgpu::Buffer, wgpu::Buffer),
}

/// A Quantize node on a graph input, done on the host during upload: (graph input index, output tensor,
/// scale, zero point).
struct HostQuantize {
    input: usize,
    out: u32,
    scale: f32,
    zp: i32,
}

fn f(v: f32) -> u32 {
    v.to_bits()
}

/// Row-major strides of `dims`, with 0 for broadcast axes against `out` (right-aligned).
fn bcast_strides(dims: &[u32], out: &[u32]) -> [u32; MAX_RANK] {
    let mut s = [0u32; MAX_RANK];
    let off = out.len() - dims.len();
    let mut acc = 1u32;
    for k in (0..dims.len()).rev() {
        s[off + k] = if dims[k] == 1 { 0 } else { acc };
        acc *= dims[k];
    }
    s
}

/// `dims` padded to [`MAX_RANK`] with ones (the shaders' fixed-size shape header).
fn dims6(dims: &[u32]) -> [u32; MAX_RANK] {
    let mut d = [1u32; MAX_RANK];
    d[..dims.len()].copy_from_slice(dims);
    d
}

/// Appends the output dims, each axis' map start (a word index into `p`) and the maps themselves: the
/// tail of the gather shaders' parameters.
fn push_maps(p: &mut Vec<u32>, dims: &[u32], maps: &[Vec<isize>]) {
    p.extend(dims6(dims));
    let mut start = (p.len() + MAX_RANK) as u32;
    let mut starts = [0u32; MAX_RANK];
    for (d, m) in maps.iter().enumerate() {
        starts[d] = start;
        start += m.len() as u32;
    }
    p.extend(starts);
    for m in maps {
        p.extend(m.iter().map(|&v| v as i32 as u32));
    }
}

/// The 18 words that open the pool shaders' parameters: planes, input and output size, window, strides,
/// dilations, top/left pads, kind, input and output offsets, and the real bottom/right pads (the
/// ceil-mode extra cells are not padding).
fn pool_header(
    xs: &[u32],
    os: &[u32],
    pl: &crate::ir::Pool2d,
    kind: u32,
    x: u32,
    out: u32,
) -> Vec<u32> {
    vec![
        xs[0] * xs[1],
        xs[2],
        xs[3],
        os[2],
        os[3],
        pl.kernel[0],
        pl.kernel[1],
        pl.strides[0],
        pl.strides[1],
        pl.dilations[0],
        pl.dilations[1],
        pl.pads[0],
        pl.pads[1],
        kind,
        x,
        out,
        pl.pads[2] - pl.ceil_extra[0],
        pl.pads[3] - pl.ceil_extra[1],
    ]
}

/// The 16 geometry words that open the conv shaders' parameters (input NCHW, output M/OH/OW, window,
/// strides, dilations, top/left pads, groups).
fn conv_header(xs: &[u32], os: &[u32], g: &crate::ir::Conv2d) -> Vec<u32> {
    vec![
        xs[0],
        xs[1],
        xs[2],
        xs[3],
        os[1],
        os[2],
        os[3],
        g.kernel[0],
        g.kernel[1],
        g.strides[0],
        g.strides[1],
        g.dilations[0],
        g.dilations[1],
        g.pads[0],
        g.pads[1],
        g.groups,
    ]
}

/// A conv's kernel geometry as the `override` constants of conv.wgsl, conv_tiled.wgsl and q_conv.wgsl:
/// constant loop bounds and strides let the driver's compiler unroll the taps (one pipeline per geometry).
fn conv_consts(g: &crate::ir::Conv2d) -> Vec<(&'static str, f64)> {
    vec![
        ("KH", g.kernel[0] as f64),
        ("KW", g.kernel[1] as f64),
        ("SH", g.strides[0] as f64),
        ("SW", g.strides[1] as f64),
        ("DH", g.dilations[0] as f64),
        ("DW", g.dilations[1] as f64),
    ]
}

fn fm(m: crate::ir::quant::FixedMultiplier) -> [u32; 2] {
    [m.mult as u32, m.shift as u32]
}

/// The dispatches of an integer node, from the CPU's own prepared state (multipliers, tables, index maps),
/// so both backends compute the same integers.
fn int8_steps(
    model: &Model,
    n: &Node,
    kernel: &'static str,
    shapes: &[Vec<usize>],
    steps: &mut Vec<Step>,
    host: &mut Vec<HostQuantize>,
    extra: &mut Vec<u32>,
) -> Result<()> {
    use crate::cpu::ops::quant::QPrep;
    // words appended after the artifact's blob in the weights buffer (repacked weights, folded biases)
    let base = (model.weights.len().div_ceil(4)) as u32;
    let g = &model.graph;
    let plan = &model.plan;
    let word = |t: u32| -> u32 { (plan.offsets[t as usize] / 4) as u32 };
    let byte = |t: u32| -> (u32, u32) {
        match g.tensors[t as usize].data {
            Some(r) => (1, r.offset as u32),
            None => (0, plan.offsets[t as usize] as u32),
        }
    };
    let shape = |t: u32| g.tensors[t as usize].shape.clone();
    let numel = |t: u32| g.tensors[t as usize].numel() as u32;
    let qp = |t: u32| {
        let q = g.tensors[t as usize].quant.as_ref();
        q.map_or((1.0f32, 0i32), |q| (q.scale[0], q.zero_point[0]))
    };
    let scalar = crate::cpu::qgemm::qgemm_for(crate::cpu::caps::Isa::Scalar);
    // a QConv or QMatMul reads only its requantization (`acc_rule`): no CPU weight packing for them
    let rule = crate::cpu::ops::quant::acc_rule(model, n);
    let prep = match (&n.op, &rule) {
        (Op::QConv { .. } | Op::QMatMul { .. }, Some(_)) => QPrep::Move,
        _ => crate::cpu::ops::quant::prepare(&scalar, model, n, shapes),
    };
    let (x, out) = (n.inputs[0], n.outputs[0]);
    let four = |e: u32| e.div_ceil(4);
    let consts = match &n.op {
        Op::QConv { geom, .. } if kernel == "q_conv" => conv_consts(geom),
        _ => Vec::new(),
    };
    let mut push = |params: Vec<u32>, threads: u32| {
        steps.push(Step {
            consts: consts.clone(),
            shader: kernel,
            groups: None,
            params,
            threads,
        })
    };
    match (&n.op, &prep, rule.as_ref()) {
        (Op::Quantize, _, _) => {
            let (s, z) = qp(out);
            if let Some(k) = g.inputs.iter().position(|&i| i == x) {
                host.push(HostQuantize {
                    input: k,
                    out,
                    scale: s,
                    zp: z,
                });
                return Ok(());
            }
            push(
                vec![0, numel(out), word(x), word(out), f(s), z as u32],
                four(numel(out)),
            );
        }
        (Op::Dequantize, _, _) => {
            let (s, z) = qp(x);
            push(
                vec![1, numel(x), word(x), word(out), f(s), z as u32],
                four(numel(x)),
            );
        }
        (Op::QLut, QPrep::Lut(t, _), _) => {
            // one table, or one per channel (plane p of N·C takes table p % C)
            let xs = shape(x);
            let planes = xs.iter().take(2).product::<u32>().max(1);
            let npix = if t.len() > 1 {
                numel(x) / planes
            } else {
                numel(x).max(1)
            };
            let mut p = vec![2, numel(x), word(x), word(out), npix, t.len() as u32];
            p.extend(t.iter().flatten().map(|&v| v as i32 as u32));
            push(p, four(numel(x)));
        }
        (Op::QConv { geom, .. }, _, Some(c)) => {
            let xs = shape(x);
            let os = shape(out);
            let (has_bias, boff) = match n.inputs.get(2) {
                Some(&b) => (1, byte(b).1 / 4),
                None => (0, 0),
            };
            // weights [M, C/g, kh, kw] repacked per tap, four input channels per word; and per tap the
            // weight sum (for the zero point of the valid taps)
            let ws = shape(n.inputs[1]);
            let (mm, cg, kh, kw) = (
                ws[0] as usize,
                ws[1] as usize,
                ws[2] as usize,
                ws[3] as usize,
            );
            let w = crate::cpu::ops::quant::i8s(model.const_bytes(n.inputs[1] as usize));
            let cw = cg.div_ceil(4);
            let packed_at = base + extra.len() as u32;
            for mo in 0..mm {
                for ky in 0..kh {
                    for kx in 0..kw {
                        for q in 0..cw {
                            let b = |t: usize| {
                                let ci = 4 * q + t;
                                if ci < cg {
                                    w[((mo * cg + ci) * kh + ky) * kw + kx] as u8 as u32
                                } else {
                                    0
                                }
                            };
                            extra.push(b(0) | (b(1) << 8) | (b(2) << 16) | (b(3) << 24));
                        }
                    }
                }
            }
            let sums_at = base + extra.len() as u32;
            for mo in 0..mm {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let s: i32 = (0..cg)
                            .map(|ci| w[((mo * cg + ci) * kh + ky) * kw + kx] as i32)
                            .sum();
                        extra.push(s as u32);
                    }
                }
            }
            let mut p = conv_header(&xs, &os, geom);
            p.extend([
                byte(x).1,
                packed_at,
                has_bias,
                boff,
                word(out),
                c.zp_in as u32,
                c.zp_out as u32,
                c.lo as u32,
                c.hi as u32,
                27,
                sums_at,
            ]);
            p.extend(c.mult.iter().flat_map(|&m| fm(m)));
            push(p, four(numel(out)));
        }
        (Op::QConvTranspose { .. }, QPrep::ConvT(c, lo, hi, kh, kw), _) => {
            let xs = shape(x);
            let os = shape(out);
            let (has_bias, boff) = match n.inputs.get(2) {
                Some(&b) => (1, byte(b).1 / 4),
                None => (0, 0),
            };
            let mut p = vec![
                xs[0],
                xs[1],
                xs[2],
                xs[3],
                os[1],
                *kh as u32,
                *kw as u32,
                byte(x).1,
                byte(n.inputs[1]).1,
                has_bias,
                boff,
                word(out),
                c.zp_in as u32,
                c.zp_out as u32,
                *lo as u32,
                *hi as u32,
                17,
            ];
            p.extend(c.mult.iter().flat_map(|&m| fm(m)));
            push(p, four(numel(out)));
        }
        (Op::QMatMul { .. }, _, Some(m)) => {
            let xs = shape(x);
            let ws = shape(n.inputs[1]);
            let (k, nn) = (ws[0] as usize, ws[1] as usize);
            let rows = numel(x) / xs[xs.len() - 1].max(1);
            let w = crate::cpu::ops::quant::i8s(model.const_bytes(n.inputs[1] as usize));
            let zp = qp(x).1 as i64;
            let bias: Vec<i64> = match n.inputs.get(2) {
                Some(&b) => model
                    .const_bytes(b as usize)
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                    .collect(),
                None => vec![0; nn],
            };
            // W^T packed four k per word, zero-padded; then the bias with -zp_in * sum_k w folded in
            let kw = k.div_ceil(4);
            let packed_at = base + extra.len() as u32;
            for j in 0..nn {
                for q in 0..kw {
                    let b = |t: usize| {
                        let kk = 4 * q + t;
                        if kk < k {
                            w[kk * nn + j] as u8 as u32
                        } else {
                            0
                        }
                    };
                    extra.push(b(0) | (b(1) << 8) | (b(2) << 16) | (b(3) << 24));
                }
            }
            let bias_at = base + extra.len() as u32;
            for (j, &bj) in bias.iter().enumerate() {
                let colsum: i64 = (0..k).map(|kk| w[kk * nn + j] as i64).sum();
                extra
                    .push((bj - zp * colsum).clamp(i32::MIN as i64, i32::MAX as i64) as i32 as u32);
            }
            let per_col = u32::from(m.mult.len() > 1);
            let mut p = vec![
                rows,
                k as u32,
                nn as u32,
                byte(x).1,
                0,
                0,
                bias_at,
                word(out),
                0,
                m.zp_out as u32,
                m.lo as u32,
                m.hi as u32,
                16,
                per_col,
                packed_at,
                kw as u32,
            ];
            p.extend(m.mult.iter().flat_map(|&v| fm(v)));
            push(p, four(numel(out)));
        }
        (Op::QBinary { .. }, QPrep::Binary(b), _) => {
            let os = shape(out);
            let op = match b.op {
                BinOp::Add => 0,
                BinOp::Sub => 1,
                _ => 2,
            };
            if op < 2 {
                let amax =
                    |t: &[i32; 256]| t.iter().map(|v| v.unsigned_abs() as u64).max().unwrap_or(0);
                if amax(&b.ta) + amax(&b.tb) + (1 << 16) >= i32::MAX as u64 {
                    bail!(
                        Unsupported,
                        "node \"{}\": int8 Add whose rescale tables overflow 32 bits",
                        n.name
                    );
                }
            }
            let (sa, oa) = byte(n.inputs[0]);
            let (sb, ob) = byte(n.inputs[1]);
            let mut p = vec![
                numel(out),
                os.len() as u32,
                op,
                sa,
                oa,
                sb,
                ob,
                word(out),
                b.zy as u32,
                b.lo as u32,
                b.hi as u32,
                b.za as u32,
                b.zb as u32,
                b.m.mult as u32,
                b.m.shift as u32,
            ];
            p.extend(dims6(&os));
            p.extend(bcast_strides(&shape(n.inputs[0]), &os));
            p.extend(bcast_strides(&shape(n.inputs[1]), &os));
            p.extend(b.ta.iter().map(|&v| v as u32));
            p.extend(b.tb.iter().map(|&v| v as u32));
            push(p, four(numel(out)));
        }
        (Op::Pool(_) | Op::GlobalPool(_), _, _) => {
            let xs = shape(x);
            let os = shape(out);
            let (zx, zy, mults, kind) = match &prep {
                QPrep::Avg(zx, zy, m) => {
                    let incl = matches!(
                        n.op,
                        Op::Pool(crate::ir::Pool2d {
                            kind: PoolKind::Avg {
                                count_include_pad: true
                            },
                            ..
                        })
                    );
                    (*zx, *zy, m.clone(), 1 + u32::from(incl))
                }
                _ => (0, 0, Vec::new(), 0),
            };
            let (h, w) = (xs[2], xs[3..].iter().product::<u32>());
            let mut p = match &n.op {
                Op::Pool(pl) => pool_header(&xs, &os, pl, kind, byte(x).1, word(out)),
                // global: one window over the plane (H x rest)
                _ => vec![
                    xs[0] * xs[1],
                    h,
                    w,
                    1,
                    1,
                    h,
                    w,
                    1,
                    1,
                    1,
                    1,
                    0,
                    0,
                    kind,
                    byte(x).1,
                    word(out),
                    0,
                    0,
                ],
            };
            p.extend([zx as u32, zy as u32, mults.len().max(1) as u32]);
            if mults.is_empty() {
                p.extend([0, 0]);
            }
            p.extend(mults.iter().flat_map(|&m| fm(m)));
            push(p, four(numel(out)));
        }
        (Op::Concat { axis }, QPrep::Concat(r, _), _) => {
            let os = shape(out);
            let ax = *axis as usize;
            let inner: u32 = os[ax + 1..].iter().product();
            let mut p = vec![numel(out), os[ax] * inner, word(out), n.inputs.len() as u32];
            let header = p.len() + 5 * n.inputs.len();
            let mut tables: Vec<u32> = Vec::new();
            let mut pos = 0u32;
            for (k, &t) in n.inputs.iter().enumerate() {
                if byte(t).0 != 0 {
                    bail!(
                        Unsupported,
                        "node \"{}\": int8 Concat of a constant",
                        n.name
                    );
                }
                let len = shape(t)[ax] * inner;
                let tab = match &r[k] {
                    Some(rs) => {
                        let at = (header + tables.len()) as u32;
                        tables.extend(rs.table.iter().map(|&v| v as i32 as u32));
                        at
                    }
                    None => 0,
                };
                p.extend([pos, len, byte(t).1, tab, 0]);
                pos += len;
            }
            p.extend(tables);
            push(p, four(numel(out)));
        }
        (Op::Reshape, _, _) => {
            let words = four(numel(out));
            let (sx, ox) = byte(x);
            if ox % 4 != 0 {
                bail!(
                    Unsupported,
                    "node \"{}\": int8 Reshape of an unaligned constant",
                    n.name
                );
            }
            push(vec![words, ox / 4, word(out), sx], words);
        }
        (
            Op::Slice { .. }
            | Op::Pad { .. }
            | Op::Resize { .. }
            | Op::Transpose { .. }
            | Op::Split { .. },
            _,
            _,
        ) => {
            let xs: Vec<usize> = shape(x).iter().map(|&d| d as usize).collect();
            for &o in &n.outputs {
                let ys: Vec<usize> = shape(o).iter().map(|&d| d as usize).collect();
                let (maps, fill) = match (&n.op, &prep) {
                    (_, QPrep::Gather(m, fill)) => (m.maps.clone(), *fill as i32),
                    (Op::Transpose { perm }, _) => {
                        let mut st = vec![1isize; xs.len()];
                        for d in (0..xs.len().saturating_sub(1)).rev() {
                            st[d] = st[d + 1] * xs[d + 1] as isize;
                        }
                        let maps = perm
                            .iter()
                            .zip(&ys)
                            .map(|(&pd, &yd)| {
                                (0..yd).map(|i| i as isize * st[pd as usize]).collect()
                            })
                            .collect();
                        (maps, 0)
                    }
                    (Op::Split { axis }, _) => {
                        // output k is the slice of the axis after the previous outputs
                        let ax = *axis as usize;
                        let before: usize = n
                            .outputs
                            .iter()
                            .take_while(|&&t| t != o)
                            .map(|&t| shape(t)[ax] as usize)
                            .sum();
                        let mut starts = vec![0i64; xs.len()];
                        starts[ax] = before as i64;
                        let steps1 = vec![1i64; xs.len()];
                        (
                            crate::cpu::ops::layout::slice_maps(&xs, &ys, &starts, &steps1).maps,
                            0,
                        )
                    }
                    _ => bail!(
                        Unsupported,
                        "node \"{}\": int8 {} without index maps",
                        n.name,
                        n.op.name()
                    ),
                };
                let (sx, ox) = byte(x);
                let mut p = vec![numel(o), ys.len() as u32, sx, ox, word(o), fill as u32];
                let yd: Vec<u32> = ys.iter().map(|&v| v as u32).collect();
                push_maps(&mut p, &yd, &maps);
                push(p, four(numel(o)));
            }
        }
        _ => bail!(
            Unsupported,
            "node \"{}\": int8 {} has no GPU kernel",
            n.name,
            n.op.name()
        ),
    }
    Ok(())
}

impl<'m> GpuSession<'m> {
    /// Prepares `model` on `gpu` with default options (nodes without a GPU kernel, see [`kernel_for`], run on
    /// the CPU).
    pub fn new(model: &'m Model<'m>, gpu: &'m Gpu) -> Result<GpuSession<'m>> {
        Self::with_options(model, gpu, &GpuSessionOptions::default())
    }

    /// [`GpuSession::new`] with options: `strict` makes a node without a GPU kernel an error instead of a
    /// CPU fallback.
    pub fn with_options(
        model: &'m Model<'m>,
        gpu: &'m Gpu,
        opts: &GpuSessionOptions,
    ) -> Result<GpuSession<'m>> {
        let g = &model.graph;
        let plan = &model.plan;
        let half = opts.f16_activations && {
            if !gpu.f16 {
                bail!(
                    Unsupported,
                    "f16 activations: GPU \"{}\" has no f16 shader support (SHADER_F16)",
                    gpu.info.name
                );
            }
            // f16 storage is for float tensors: an int8 artifact's arena holds packed int8 words
            let float_only = g
                .nodes
                .iter()
                .all(|n| !crate::cpu::ops::quant::is_integer(model, n))
                && g.tensors
                    .iter()
                    .all(|t| t.data.is_some() || t.dtype == crate::DType::F32);
            if !float_only {
                log::warn!(
                    "f16 activations apply to float artifacts: this one keeps f32 activations"
                );
            }
            float_only
        };
        let word = |t: u32| -> u32 { (plan.offsets[t as usize] / 4) as u32 };
        // a float Conv writing int8 computes into f32 scratch past the plan's arena, then quantizes
        let q_scratch_at = plan.arena_bytes.next_multiple_of(64);
        let q_scratch_word = (q_scratch_at / 4) as u32;
        let q_scratch: u64 = g
            .nodes
            .iter()
            .filter(|n| {
                crate::cpu::ops::quant::float_conv_to_int8(model, n) && kernel_for(model, n).is_ok()
            })
            .map(|n| g.tensors[n.outputs[0] as usize].numel() as u64 * 4)
            .max()
            .unwrap_or(0);
        // f16 and int8 constants of float layers (in an int8 artifact) are widened into the extras: the
        // shaders read f32 words
        let mut extra: Vec<u32> = Vec::new();
        let base = model.weights.len().div_ceil(4) as u32;
        let as_float = crate::model::read_as_float(g);
        // only what a GPU kernel reads: a node that falls back to the CPU (an LSTM on int8 W and R) runs
        // from the CPU session's own copy
        let mut gpu_reads = vec![false; g.tensors.len()];
        for n in g.nodes.iter().filter(|n| kernel_for(model, n).is_ok()) {
            n.inputs.iter().for_each(|&t| gpu_reads[t as usize] = true);
        }
        let widened: Vec<Option<u32>> = (0..g.tensors.len())
            .map(|i| {
                g.tensors[i].data?;
                if !gpu_reads[i] {
                    return None;
                }
                crate::session::widen_const(model, i, &as_float).map(|v| {
                    let at = base + extra.len() as u32;
                    extra.extend(v.iter().map(|v| v.to_bits()));
                    at
                })
            })
            .collect();
        let konst = |t: u32| {
            widened[t as usize]
                .or_else(|| g.tensors[t as usize].data.map(|r| (r.offset / 4) as u32))
        };
        // an operand: (source: 0 arena / 1 weights, word offset)
        let src = |t: u32| match konst(t) {
            Some(w) => (1u32, w),
            None => (0u32, word(t)),
        };
        let shape = |t: u32| g.tensors[t as usize].shape.clone();
        let shapes: Vec<Vec<usize>> = g.tensors.iter().map(|t| t.dims()).collect();
        // f16 weights: an f32 weight tensor within f16's range (|x| ≤ 65000; tiny values become subnormals) goes to the
        // f16 copy; appends it to `out` (when given a real buffer) and returns its half index
        let mut halves: Vec<u16> = Vec::new();
        // converted once per tensor (a weight two nodes share is stored once)
        let mut half_at: HashMap<u32, Option<u32>> = HashMap::new();
        let mut half_of = |t: u32| -> Option<u32> {
            if let Some(&h) = half_at.get(&t) {
                return h;
            }
            let tt = &g.tensors[t as usize];
            if !opts.f16_weights || tt.dtype != crate::DType::F32 || tt.data.is_none() {
                return None;
            }
            let v: Vec<f32> = model
                .const_bytes(t as usize)
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            // overflow is the failure to avoid; tiny values become f16 subnormals (absolute error ~6e-8)
            let fits = v.iter().all(|&x| x.abs() <= 65000.0);
            let at = fits.then(|| {
                let at = halves.len() as u32;
                halves.extend(v.iter().map(|&x| half::f16::from_f32(x).to_bits()));
                at
            });
            half_at.insert(t, at);
            at
        };
        let mut steps: Vec<Step> = Vec::new();
        let mut host_quantize: Vec<HostQuantize> = Vec::new();
        let mut node_steps: Vec<core::ops::Range<usize>> = Vec::with_capacity(g.nodes.len());
        let mut cpu_nodes: Vec<usize> = Vec::new();
        for (ni, n) in g.nodes.iter().enumerate() {
            let first = steps.len();
            let kernel = match kernel_for(model, n) {
                Ok(k) => k,
                Err(why) if !opts.strict => {
                    log::warn!(
                        "node {ni} \"{}\" ({}) runs on the CPU: {why}",
                        n.name,
                        n.op.name()
                    );
                    cpu_nodes.push(ni);
                    node_steps.push(first..first);
                    continue;
                }
                Err(why) => bail!(
                    Unsupported,
                    "node {ni} \"{}\" ({}) cannot run on the GPU: {why}",
                    n.name,
                    n.op.name()
                ),
            };
            let out = n.outputs[0];
            let os = shape(out);
            let numel = |s: &[u32]| s.iter().product::<u32>();
            let conv_q = crate::cpu::ops::quant::float_conv_to_int8(model, n);
            if crate::cpu::ops::quant::is_integer(model, n) {
                int8_steps(
                    model,
                    n,
                    kernel,
                    &shapes,
                    &mut steps,
                    &mut host_quantize,
                    &mut extra,
                )?;
                node_steps.push(first..steps.len());
                continue;
            }
            match &n.op {
                Op::Binary { op, act } => {
                    let (code, a, b) = unary_code(*act);
                    let bop = match op {
                        BinOp::Add => 0,
                        BinOp::Sub => 1,
                        BinOp::Mul => 2,
                        BinOp::Div => 3,
                        BinOp::Pow => 4,
                        BinOp::Max => 5,
                        BinOp::Min => 6,
                    };
                    let (sa, oa) = src(n.inputs[0]);
                    let (sb, ob) = src(n.inputs[1]);
                    let mut p = vec![
                        numel(&os),
                        os.len() as u32,
                        bop,
                        code,
                        f(a),
                        f(b),
                        sa,
                        oa,
                        sb,
                        ob,
                        word(out),
                    ];
                    p.extend(dims6(&os));
                    p.extend(bcast_strides(&shape(n.inputs[0]), &os));
                    p.extend(bcast_strides(&shape(n.inputs[1]), &os));
                    steps.push(Step {
                        consts: Vec::new(),
                        shader: kernel,
                        groups: None,
                        threads: numel(&os),
                        params: p,
                    });
                }
                Op::Unary(u) => {
                    let (code, a, b) = unary_code(Some(*u));
                    let (sa, oa) = src(n.inputs[0]);
                    let mut p = vec![
                        numel(&os),
                        os.len() as u32,
                        99,
                        code,
                        f(a),
                        f(b),
                        sa,
                        oa,
                        0,
                        0,
                        word(out),
                    ];
                    p.extend(dims6(&os));
                    p.extend(bcast_strides(&shape(n.inputs[0]), &os));
                    p.extend([0u32; MAX_RANK]);
                    steps.push(Step {
                        consts: Vec::new(),
                        shader: kernel,
                        groups: None,
                        threads: numel(&os),
                        params: p,
                    });
                }
                Op::ChannelAffine { act } => {
                    let (code, a, b) = unary_code(*act);
                    let xs = shape(n.inputs[0]);
                    let inner: u32 = xs[2..].iter().product();
                    let (Some(sc), Some(sh)) = (konst(n.inputs[1]), konst(n.inputs[2])) else {
                        bail!(
                            Unsupported,
                            "node \"{}\": ChannelAffine with non-constant parameters",
                            n.name
                        );
                    };
                    steps.push(Step {
                        consts: Vec::new(),
                        shader: kernel,
                        groups: None,
                        threads: numel(&os),
                        params: vec![
                            numel(&os),
                            xs[1],
                            inner.max(1),
                            code,
                            f(a),
                            f(b),
                            word(n.inputs[0]),
                            sc,
                            sh,
                            word(out),
                        ],
                    });
                }
                Op::MatMul { act } => {
                    let (code, a, b) = unary_code(*act);
                    let (sa_, sb_) = (shape(n.inputs[0]), shape(n.inputs[1]));
                    let (m, k) = (sa_[sa_.len() - 2], sa_[sa_.len() - 1]);
                    let nn = sb_[sb_.len() - 1];
                    let batch = numel(&os) / (m * nn).max(1);
                    let (srca, offa) = src(n.inputs[0]);
                    let (srcb, offb) = src(n.inputs[1]);
                    let bstride_b = if sb_.len() == 2 { 0 } else { k * nn };
                    let (has_bias, boff) = match n.inputs.get(2) {
                        Some(&t) => (1, konst(t).unwrap_or(0)),
                        None => (0, 0),
                    };
                    let wh = half_of(n.inputs[1]);
                    steps.push(Step {
                        consts: Vec::new(),
                        shader: kernel,
                        groups: (kernel == "matmul_tiled")
                            .then(|| [nn.div_ceil(16), m.div_ceil(16), batch]),
                        threads: numel(&os),
                        params: vec![
                            m,
                            nn,
                            k,
                            batch,
                            srca,
                            offa,
                            m * k,
                            srcb,
                            wh.unwrap_or(offb),
                            bstride_b,
                            word(out),
                            has_bias,
                            boff,
                            code,
                            f(a),
                            f(b),
                            u32::from(wh.is_some()),
                        ],
                    });
                }
                Op::Conv { geom, act } | Op::ConvTranspose { geom, act } => {
                    let (code, a, b) = unary_code(*act);
                    let xs = shape(n.inputs[0]);
                    let Some(w) = konst(n.inputs[1]) else {
                        bail!(
                            Unsupported,
                            "node \"{}\": Conv with non-constant weights",
                            n.name
                        );
                    };
                    let (has_bias, boff) = match n.inputs.get(2) {
                        Some(&t) => (1, konst(t).unwrap_or(0)),
                        None => (0, 0),
                    };
                    let wh = half_of(n.inputs[1]);
                    // a Conv's post-activation affine (format 6): scale and shift offsets, applied in
                    // the kernel after the activation
                    let post = match (n.inputs.get(3), n.inputs.get(4)) {
                        (Some(&st), Some(&tt)) => match (konst(st), konst(tt)) {
                            (Some(sc), Some(sh)) => [1, sc, sh],
                            _ => bail!(
                                Unsupported,
                                "node \"{}\": Conv with a non-constant post-activation affine",
                                n.name
                            ),
                        },
                        _ => [0, 0, 0],
                    };
                    let mut p = conv_header(&xs, &os, geom);
                    p.extend([
                        word(n.inputs[0]),
                        wh.unwrap_or(w),
                        has_bias,
                        boff,
                        if conv_q { q_scratch_word } else { word(out) },
                        code,
                        f(a),
                        f(b),
                        u32::from(wh.is_some()),
                    ]);
                    p.extend(post);
                    steps.push(Step {
                        consts: if kernel == "conv" || kernel == "conv_tiled" {
                            conv_consts(geom)
                        } else {
                            Vec::new()
                        },
                        shader: kernel,
                        groups: (kernel == "conv_tiled").then(|| {
                            let npix = os[2] * os[3];
                            let mg = os[1] / geom.groups;
                            [npix.div_ceil(16), mg.div_ceil(16), xs[0] * geom.groups]
                        }),
                        threads: numel(&os),
                        params: p,
                    });
                    if conv_q {
                        // the conv wrote f32 into the scratch words: quantized into the int8 output
                        // as a Quantize node would be (the q_convert shader, mode 0)
                        let (s, z) = crate::cpu::ops::quant::params(model, out);
                        steps.push(Step {
                            consts: Vec::new(),
                            shader: "q_convert",
                            groups: None,
                            threads: numel(&os).div_ceil(4),
                            params: vec![0, numel(&os), q_scratch_word, word(out), f(s), z as u32],
                        });
                    }
                }
                Op::Pool(pl) => {
                    let xs = shape(n.inputs[0]);
                    let kind = match pl.kind {
                        PoolKind::Max => 0,
                        PoolKind::Avg {
                            count_include_pad: false,
                        } => 1,
                        PoolKind::Avg {
                            count_include_pad: true,
                        } => 2,
                    };
                    steps.push(Step {
                        consts: Vec::new(),
                        shader: kernel,
                        groups: None,
                        threads: numel(&os),
                        params: pool_header(&xs, &os, pl, kind, word(n.inputs[0]), word(out)),
                    });
                }
                Op::GlobalPool(kind) => {
                    let xs = shape(n.inputs[0]);
                    let planes = xs[0] * xs[1];
                    let inner: u32 = xs[2..].iter().product();
                    let k = u32::from(!matches!(kind, PoolKind::Max));
                    steps.push(Step {
                        consts: Vec::new(),
                        shader: kernel,
                        groups: None,
                        threads: planes,
                        params: vec![planes, inner.max(1), k, word(n.inputs[0]), word(out)],
                    });
                }
                Op::Softmax { axis } => {
                    let ax = *axis as usize;
                    let len = os[ax];
                    let inner: u32 = os[ax + 1..].iter().product();
                    let rows = numel(&os) / len.max(1);
                    steps.push(Step {
                        consts: Vec::new(),
                        shader: kernel,
                        groups: None,
                        threads: rows,
                        params: vec![rows, len, inner.max(1), word(n.inputs[0]), word(out)],
                    });
                }
                Op::Reshape => {
                    let len = numel(&os);
                    steps.push(Step {
                        consts: Vec::new(),
                        shader: kernel,
                        groups: None,
                        threads: len,
                        params: vec![len, src(n.inputs[0]).1, word(out), src(n.inputs[0]).0],
                    });
                }
                Op::Concat { axis } | Op::Split { axis } => {
                    // one dispatch: the whole tensor (Concat's output, Split's input) against its parts
                    let split = matches!(n.op, Op::Split { .. });
                    let ax = *axis as usize;
                    let whole = if split { n.inputs[0] } else { out };
                    let ws = shape(whole);
                    let inner: u32 = ws[ax + 1..].iter().product();
                    let parts: &[u32] = if split { &n.outputs } else { &n.inputs };
                    let mut p = vec![
                        numel(&ws),
                        ws[ax] * inner,
                        src(whole).1,
                        parts.len() as u32,
                        u32::from(split),
                    ];
                    let mut pos = 0u32;
                    for &t in parts {
                        let len = shape(t)[ax] * inner;
                        let (sx, ox) = src(t);
                        // the source read: each input of a Concat, the (maybe constant) input of a Split
                        let from = if split { src(whole).0 } else { sx };
                        p.extend([pos, len, ox, from]);
                        pos += len;
                    }
                    steps.push(Step {
                        consts: Vec::new(),
                        shader: kernel,
                        groups: None,
                        threads: numel(&ws),
                        params: p,
                    });
                }
                Op::Transpose { perm } => {
                    let xs = shape(n.inputs[0]);
                    let mut st = [0u32; MAX_RANK];
                    let mut acc = 1u32;
                    let mut in_strides = [0u32; MAX_RANK];
                    for d in (0..xs.len()).rev() {
                        in_strides[d] = acc;
                        acc *= xs[d];
                    }
                    for (d, &pd) in perm.iter().enumerate() {
                        st[d] = in_strides[pd as usize];
                    }
                    let mut dims = [1u32; MAX_RANK];
                    dims[..os.len()].copy_from_slice(&os);
                    let mut p = vec![numel(&os), os.len() as u32, word(n.inputs[0]), word(out)];
                    p.extend(dims);
                    p.extend(st);
                    steps.push(Step {
                        consts: Vec::new(),
                        shader: kernel,
                        groups: None,
                        threads: numel(&os),
                        params: p,
                    });
                }
                Op::Slice { .. } | Op::Pad { .. } | Op::Resize { .. } => {
                    let xs: Vec<usize> = shape(n.inputs[0]).iter().map(|&d| d as usize).collect();
                    let ys: Vec<usize> = os.iter().map(|&d| d as usize).collect();
                    // the CPU's own index maps, so both backends read the same elements
                    let maps = match &n.op {
                        Op::Slice { starts, steps } => {
                            crate::cpu::ops::layout::slice_maps(&xs, &ys, starts, steps)
                        }
                        Op::Pad { pads, mode } => {
                            crate::cpu::ops::layout::pad_maps(&xs, &ys, pads, *mode)
                        }
                        Op::Resize {
                            mode: crate::ir::ResizeMode::Nearest(nm),
                            coord,
                            scales,
                        } => crate::cpu::ops::layout::nearest_maps(&xs, &ys, scales, *coord, *nm),
                        _ => unreachable!("kernel_for accepted it"),
                    };
                    let (sx, ox) = src(n.inputs[0]);
                    let mut p = vec![numel(&os), os.len() as u32, ox, word(out), f(maps.fill), sx];
                    push_maps(&mut p, &os, &maps.maps);
                    steps.push(Step {
                        consts: Vec::new(),
                        shader: kernel,
                        groups: None,
                        threads: numel(&os),
                        params: p,
                    });
                }
                _ => unreachable!("kernel_for accepted it"),
            }
            node_steps.push(first..steps.len());
        }
        let arena_end = if q_scratch > 0 {
            q_scratch_at + q_scratch
        } else {
            plan.arena_bytes
        };
        let mut sess = Self::build(model, gpu, steps, &extra, &halves, (half, arena_end))?;
        sess.host_quantize = host_quantize;
        sess.node_steps = node_steps;
        if !cpu_nodes.is_empty() {
            // the CPU engine for the nodes without a GPU kernel: same plan, so tensors keep their offsets
            sess.cpu = Some(crate::Session::new(
                model,
                crate::SessionOptions {
                    threads: opts.threads.max(1),
                },
            )?);
            let moved: usize = cpu_nodes
                .iter()
                .flat_map(|&ni| g.nodes[ni].inputs.iter().chain(&g.nodes[ni].outputs))
                .filter(|&&t| g.tensors[t as usize].data.is_none())
                .map(|&t| g.tensors[t as usize].numel() * g.tensors[t as usize].dtype.size())
                .sum();
            log::warn!(
                "{} node(s) run on the CPU: each run moves {moved} bytes between GPU and CPU",
                cpu_nodes.len()
            );
            sess.transfer_bytes = moved;
        }
        sess.cpu_nodes = cpu_nodes;
        Ok(sess)
    }

    fn build(
        model: &'m Model<'m>,
        gpu: &'m Gpu,
        steps: Vec<Step>,
        extra: &[u32],
        halves: &[u16],
        (half, arena_end): (bool, u64),
    ) -> Result<GpuSession<'m>> {
        use wgpu::util::DeviceExt;
        let dev = &gpu.device;
        let g = &model.graph;
        let limit = gpu.limits.max_storage_buffer_binding_size;
        // f16 activations: the plan's word offsets index halves, so half the bytes hold the same layout
        // (`arena_end`: the plan's bytes, or past them a float Conv's scratch; never with halves)
        let arena_bytes = if half {
            model.plan.arena_bytes.div_ceil(2)
        } else {
            arena_end
        }
        .max(4)
        .div_ceil(4)
            * 4;
        let blob: &[u8] = &model.weights;
        // the blob, padded to whole words, then the repacked extras (their offsets assume exactly this)
        let weight_bytes = ((blob.len().div_ceil(4) + extra.len()).max(1) * 4) as u64;
        for (what, bytes) in [("activation arena", arena_bytes), ("weights", weight_bytes)] {
            if bytes > limit || bytes > gpu.limits.max_buffer_size {
                bail!(
                    TooLarge,
                    "the model's {what} needs {bytes} bytes; GPU \"{}\" binds at most {limit}",
                    gpu.info.name
                );
            }
        }
        let oom = dev.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let arena = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tern arena"),
            size: arena_bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let mut wdata = blob.to_vec();
        wdata.resize(blob.len().div_ceil(4) * 4, 0);
        wdata.extend(extra.iter().flat_map(|w| w.to_le_bytes()));
        wdata.resize(weight_bytes as usize, 0);
        // the weight tensors kept as f16 (two halves per word)
        let mut hbytes: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
        hbytes.resize(hbytes.len().div_ceil(4).max(1) * 4, 0);
        let weights = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("tern weights"),
            contents: &wdata,
            usage: wgpu::BufferUsages::STORAGE,
        });
        let weights16 = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("tern weights f16"),
            contents: &hbytes,
            usage: wgpu::BufferUsages::STORAGE,
        });
        let align = (gpu.limits.min_storage_buffer_offset_alignment as usize).max(4);
        // each dispatch's parameters at an aligned offset (headers are short; gather maps are long)
        let mut slots: Vec<(usize, usize)> = Vec::with_capacity(steps.len());
        let mut pbytes: Vec<u8> = Vec::new();
        for s in &steps {
            let at = pbytes.len().div_ceil(align) * align;
            pbytes.resize(at, 0);
            pbytes.extend(s.params.iter().flat_map(|w| w.to_le_bytes()));
            if s.params.is_empty() {
                pbytes.extend([0u8; 4]);
            }
            slots.push((at, pbytes.len() - at));
        }
        if pbytes.is_empty() {
            pbytes.resize(4, 0);
        }
        if pbytes.len() as u64 > limit {
            bail!(
                TooLarge,
                "the model's dispatch parameters need {} bytes; GPU binds at most {limit}",
                pbytes.len()
            );
        }
        let params = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("tern params"),
            contents: &pbytes,
            usage: wgpu::BufferUsages::STORAGE,
        });
        let mut outputs = Vec::new();
        let mut rb = 0u64;
        for &t in &g.outputs {
            let (off, bytes) = stored_span(model, half, t);
            outputs.push((off, bytes, rb));
            rb += bytes.div_ceil(4) * 4;
        }
        // large enough for any node's outputs too (run_observed reads them one node at a time)
        let per_node = g
            .nodes
            .iter()
            .map(|n| {
                n.outputs
                    .iter()
                    .chain(&n.inputs)
                    .map(|&t| {
                        let tt = &g.tensors[t as usize];
                        ((tt.numel() * tt.dtype.size()) as u64).div_ceil(4) * 4
                    })
                    .sum::<u64>()
            })
            .max()
            .unwrap_or(0);
        let readback = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tern readback"),
            size: rb.max(per_node).max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if let Some(e) = pollster::block_on(oom.pop()) {
            bail!(
                TooLarge,
                "GPU \"{}\": out of memory preparing the model: {e}",
                gpu.info.name
            );
        }
        let entry = |binding: u32, read_only: bool| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let layout = dev.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("tern"),
            entries: &[
                entry(0, false),
                entry(1, true),
                entry(2, true),
                entry(3, true),
            ],
        });
        let playout = dev.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("tern"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        // pipelines are built here, never in run
        let validation = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut pipelines = Vec::new();
        let key = |s: &Step| alloc::format!("{}{:?}", s.shader, s.consts);
        let mut index: HashMap<String, usize> = HashMap::new();
        for s in &steps {
            if index.contains_key(&key(s)) {
                continue;
            }
            let Some(body) = SHADERS
                .iter()
                .find(|(n, _)| *n == s.shader)
                .map(|(_, b)| *b)
            else {
                bail!(Device, "no shader named {}", s.shader);
            };
            // directives (`enable`, `requires`) must open the module; the two dot-product forms give the
            // same integers
            let (enable, arena_fns) = if half {
                ("enable f16;\n", ARENA16)
            } else {
                ("", ARENA32)
            };
            // the step's `override` constants, declared here so each name lives in one place
            let overrides: String = s
                .consts
                .iter()
                .map(|(name, _)| alloc::format!("override {name}: u32;\n"))
                .collect();
            let main = if Q4_SHADERS.contains(&s.shader) {
                Q4_MAIN
            } else {
                ""
            };
            let src = if gpu.dot4 {
                alloc::format!(
                    "{enable}requires packed_4x8_integer_dot_product;\n{overrides}{arena_fns}\n{COMMON}\n{DOT4_NATIVE}\n{body}\n{main}"
                )
            } else {
                alloc::format!(
                    "{enable}{overrides}{arena_fns}\n{COMMON}\n{DOT4_EMULATED}\n{body}\n{main}"
                )
            };
            let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
            let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(s.shader),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
            if let Some(e) = pollster::block_on(scope.pop()) {
                bail!(
                    Device,
                    "GPU \"{}\": shader {} does not compile: {e}",
                    gpu.info.name,
                    s.shader
                );
            }
            let pl = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(s.shader),
                layout: Some(&playout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &s.consts,
                    ..Default::default()
                },
                cache: None,
            });
            index.insert(key(s), pipelines.len());
            pipelines.push(pl);
        }
        if let Some(e) = pollster::block_on(validation.pop()) {
            bail!(
                Device,
                "GPU \"{}\": a shader failed to build: {e}",
                gpu.info.name
            );
        }
        let max_groups = gpu.limits.max_compute_workgroups_per_dimension;
        if let Some(s) = steps
            .iter()
            .find(|s| s.groups.is_some_and(|g| g.iter().any(|&d| d > max_groups)))
        {
            bail!(
                TooLarge,
                "a {} dispatch needs {:?} workgroups; GPU \"{}\" allows {max_groups} per dimension",
                s.shader,
                s.groups.unwrap_or_default(),
                gpu.info.name
            );
        }
        let mut recorded = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: arena.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: weights.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &params,
                            offset: slots[i].0 as u64,
                            size: core::num::NonZeroU64::new(slots[i].1 as u64),
                        }),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: weights16.as_entire_binding(),
                    },
                ],
            });
            // a 1-D shader's invocations over a 2-D grid of 64-wide groups (one dimension holds ≤ 65535)
            let groups = s.groups.unwrap_or_else(|| {
                let n = s.threads.div_ceil(64).max(1);
                let x = n.min(65535);
                [x, n.div_ceil(x), 1]
            });
            recorded.push((index[&key(s)], bind, groups));
        }
        log::debug!(
            "GPU session: {} dispatch(es), {} pipeline(s), arena {arena_bytes} B, weights {weight_bytes} B",
            recorded.len(),
            pipelines.len()
        );
        Ok(GpuSession {
            model,
            gpu,
            arena,
            readback,
            steps: recorded,
            pipelines,
            outputs,
            host_quantize: Vec::new(),
            node_steps: Vec::new(),
            cpu_nodes: Vec::new(),
            cpu: None,
            transfer_bytes: 0,
            weight_bytes,
            half,
            _keep: (weights, params, weights16),
        })
    }

    /// Whether this session stores activations as f16 ([`GpuSessionOptions::f16_activations`] on a float
    /// artifact).
    pub fn f16_activations(&self) -> bool {
        self.half
    }

    /// Dispatches recorded per run: at most one per node (none for a Quantize folded into the upload);
    /// an int8 Split takes one per output.
    pub fn dispatch_count(&self) -> usize {
        self.steps.len()
    }

    /// Nodes that run on the CPU (no GPU kernel), and the bytes a run moves between GPU and CPU for them.
    pub fn fallback(&self) -> (&[usize], usize) {
        (&self.cpu_nodes, self.transfer_bytes)
    }

    /// Bytes of GPU memory the weights take: the artifact's weights, then the int8 weights the kernels
    /// repack and the f16/int8 constants of float ops widened to f32 (only those a GPU kernel reads).
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Runs the model: inputs written to the arena, one command buffer (split only around CPU fallback
    /// nodes), outputs read back.
    pub fn run_into(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) -> Result<()> {
        let g = &self.model.graph;
        crate::session::check_io(g, inputs, outputs)?;
        self.upload(inputs);
        let mut start = 0usize;
        for k in 0..self.cpu_nodes.len() {
            let ni = self.cpu_nodes[k];
            start = self.cpu_node(ni, start)?;
        }
        let copies: Vec<(u64, u64, u64)> = self.outputs.clone();
        let bytes = self.submit_and_read(start..self.steps.len(), &copies)?;
        for ((_, n, rb), y) in self.outputs.iter().zip(outputs.iter_mut()) {
            let src = &bytes[*rb as usize..(*rb + *n) as usize];
            if self.half {
                for (o, c) in y.iter_mut().zip(src.chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            } else {
                for (o, c) in y.iter_mut().zip(src.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
        }
        Ok(())
    }

    /// Runs the pending GPU dispatches `start..` up to CPU node `ni`, moves its inputs to the CPU engine,
    /// runs it there and writes its outputs back; returns where the GPU dispatches continue.
    fn cpu_node(&mut self, ni: usize, start: usize) -> Result<usize> {
        let model = self.model;
        let g = &model.graph;
        let n = &g.nodes[ni];
        let end = self.node_steps[ni].start;
        let mut copies = Vec::new();
        let mut at = 0u64;
        let ins: Vec<u32> = n
            .inputs
            .iter()
            .copied()
            .filter(|&t| g.tensors[t as usize].data.is_none())
            .collect();
        for &t in &ins {
            let (off, bytes) = stored_span(model, self.half, t);
            copies.push((off, bytes, at));
            at += bytes.div_ceil(4) * 4;
        }
        let data = self.submit_and_read(start..end, &copies)?;
        let half = self.half;
        let cpu = self
            .cpu
            .as_mut()
            .ok_or_else(|| crate::err!(Device, "no CPU engine for fallback node {ni}"))?;
        for (&t, &(_, bytes, rb)) in ins.iter().zip(&copies) {
            let stored = &data[rb as usize..(rb + bytes) as usize];
            let dst = cpu.tensor_bytes(t);
            if half {
                widen_halves(stored, dst);
            } else {
                dst.copy_from_slice(stored);
            }
        }
        cpu.run_nodes(ni..ni + 1);
        let outs: Vec<(u32, Vec<u8>)> = n
            .outputs
            .iter()
            .map(|&t| {
                let b = cpu.tensor_bytes(t);
                (t, if half { narrow_f32s(b) } else { b.to_vec() })
            })
            .collect();
        for (t, b) in outs {
            self.write_stored(t, b);
        }
        Ok(end)
    }

    /// [`GpuSession::run_into`] one node at a time, showing every node output's bytes (f32 or int8, as
    /// stored) to `observe(node index, tensor index, bytes)` as computed: for tests that compare every
    /// tensor with the CPU's. One submission and readback per node: slow, never for production runs.
    pub fn run_observed(
        &mut self,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
        observe: &mut dyn FnMut(usize, u32, &[u8]),
    ) -> Result<()> {
        let g = &self.model.graph;
        crate::session::check_io(g, inputs, outputs)?;
        self.upload(inputs);
        for (ni, n) in g.nodes.iter().enumerate() {
            let range = self.node_steps[ni].clone();
            if self.cpu_nodes.contains(&ni) {
                self.cpu_node(ni, range.start)?;
            }
            let mut copies = Vec::new();
            let mut at = 0u64;
            for &t in &n.outputs {
                let (off, bytes) = stored_span(self.model, self.half, t);
                copies.push((off, bytes, at));
                at += bytes.div_ceil(4) * 4;
            }
            let data = self.submit_and_read(range, &copies)?;
            for (&t, &(_, bytes, rb)) in n.outputs.iter().zip(&copies) {
                let stored = &data[rb as usize..(rb + bytes) as usize];
                if self.half {
                    let mut wide = vec![0u8; stored.len() * 2];
                    widen_halves(stored, &mut wide);
                    observe(ni, t, &wide);
                } else {
                    observe(ni, t, stored);
                }
            }
        }
        self.run_into(inputs, outputs)
    }

    /// One run timed per node with GPU timestamp queries (each node in its own compute pass; CPU
    /// fallback nodes timed on the host): nanoseconds per node, or `None` when the adapter has no
    /// timestamp queries.
    #[allow(clippy::needless_range_loop)] // ni indexes nodes, steps, timestamps and the fallback set
    pub fn profile_run(&mut self, inputs: &[&[f32]]) -> Result<Option<Vec<u64>>> {
        let gpu = self.gpu;
        if !gpu
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
        {
            return Ok(None);
        }
        let g = &self.model.graph;
        let nn = g.nodes.len();
        let fake: Vec<Vec<f32>> = self.model.outputs().map(|t| vec![0.0; t.numel()]).collect();
        let mut outs: Vec<&mut [f32]> = Vec::new();
        let mut fake = fake;
        for v in fake.iter_mut() {
            outs.push(v.as_mut_slice());
        }
        crate::session::check_io(g, inputs, &outs)?;
        self.upload(inputs);
        let qs = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("tern profile"),
            ty: wgpu::QueryType::Timestamp,
            count: (2 * nn).max(2) as u32,
        });
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tern profile resolve"),
            size: (16 * nn).max(16) as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let read = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tern profile read"),
            size: (16 * nn).max(16) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut host_ns = vec![0u64; nn];
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("tern profile"),
            });
        for ni in 0..nn {
            if self.cpu_nodes.contains(&ni) {
                gpu.queue.submit([enc.finish()]);
                let t0 = std::time::Instant::now();
                let start = self.node_steps[ni].start;
                self.cpu_node(ni, start)?;
                host_ns[ni] = t0.elapsed().as_nanos() as u64;
                enc = gpu
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("tern profile"),
                    });
                continue;
            }
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &qs,
                    beginning_of_pass_write_index: Some(2 * ni as u32),
                    end_of_pass_write_index: Some(2 * ni as u32 + 1),
                }),
            });
            for (pl, bind, [x, y, z]) in &self.steps[self.node_steps[ni].clone()] {
                pass.set_pipeline(&self.pipelines[*pl]);
                pass.set_bind_group(0, bind, &[]);
                pass.dispatch_workgroups(*x, *y, *z);
            }
        }
        enc.resolve_query_set(&qs, 0..(2 * nn) as u32, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, (16 * nn) as u64);
        gpu.queue.submit([enc.finish()]);
        read.map_async(wgpu::MapMode::Read, .., |_| {});
        gpu.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: Some(Duration::from_secs(120)),
            })
            .map_err(|e| crate::err!(Device, "GPU profile run did not finish: {e}"))?;
        if let Some(e) = gpu.take_error() {
            bail!(Device, "GPU \"{}\": {e}", gpu.info.name);
        }
        let period = gpu.queue.get_timestamp_period() as f64;
        let ticks: Vec<u64> = {
            let v = read
                .get_mapped_range(..)
                .map_err(|e| crate::err!(Device, "GPU profile readback: {e}"))?;
            v.chunks_exact(8)
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect()
        };
        read.unmap();
        Ok(Some(
            (0..nn)
                .map(|ni| {
                    if self.cpu_nodes.contains(&ni) {
                        host_ns[ni]
                    } else {
                        (ticks[2 * ni + 1].saturating_sub(ticks[2 * ni]) as f64 * period) as u64
                    }
                })
                .collect(),
        ))
    }

    fn upload(&self, inputs: &[&[f32]]) {
        let g = &self.model.graph;
        let gpu = self.gpu;
        for (&t, x) in g.inputs.iter().zip(inputs) {
            let bytes: Vec<u8> = if self.half {
                x.iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect()
            } else {
                x.iter().flat_map(|v| v.to_le_bytes()).collect()
            };
            self.write_stored(t, bytes);
        }
        for h in &self.host_quantize {
            let mut bytes: Vec<u8> = inputs[h.input]
                .iter()
                .map(|&v| crate::ir::quant::quantize_f32(v, h.scale, h.zp) as u8)
                .collect();
            bytes.resize(bytes.len().div_ceil(4) * 4, 0);
            gpu.queue
                .write_buffer(&self.arena, self.model.plan.offsets[h.out as usize], &bytes);
        }
    }

    /// Writes tensor `t`'s bytes, as the arena stores them, at its place (padded to whole words: the
    /// plan's 64-byte alignment leaves the padding to no other tensor).
    fn write_stored(&self, t: u32, mut bytes: Vec<u8>) {
        bytes.resize(bytes.len().div_ceil(4) * 4, 0);
        let (off, _) = stored_span(self.model, self.half, t);
        self.gpu.queue.write_buffer(&self.arena, off, &bytes);
    }

    /// Records dispatches `range`, copies `(arena offset, bytes, readback offset)` to the readback buffer,
    /// submits, waits (with a timeout: a lost device gives an error, not a hang) and returns the bytes.
    fn submit_and_read(
        &self,
        range: core::ops::Range<usize>,
        copies: &[(u64, u64, u64)],
    ) -> Result<Vec<u8>> {
        let gpu = self.gpu;
        if let Some(why) = gpu.lost() {
            bail!(Device, "GPU \"{}\": {why}", gpu.info.name);
        }
        let total: u64 = copies
            .iter()
            .map(|c| c.2 + c.1.div_ceil(4) * 4)
            .max()
            .unwrap_or(0);
        if total > self.readback.size() {
            bail!(
                Device,
                "GPU readback of {total} bytes exceeds the session's buffer"
            );
        }
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("tern run"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("tern"),
                timestamp_writes: None,
            });
            for (pl, bind, [x, y, z]) in &self.steps[range] {
                pass.set_pipeline(&self.pipelines[*pl]);
                pass.set_bind_group(0, bind, &[]);
                pass.dispatch_workgroups(*x, *y, *z);
            }
        }
        for &(off, bytes, rb) in copies {
            enc.copy_buffer_to_buffer(&self.arena, off, &self.readback, rb, bytes.div_ceil(4) * 4);
        }
        gpu.queue.submit([enc.finish()]);
        let done = Arc::new(Mutex::new(None));
        let d2 = done.clone();
        self.readback.map_async(wgpu::MapMode::Read, .., move |r| {
            if let Ok(mut d) = d2.lock() {
                *d = Some(r);
            }
        });
        let polled = gpu.device.poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: Some(Duration::from_secs(120)),
        });
        if let Some(why) = gpu.lost() {
            bail!(Device, "GPU \"{}\": {why}", gpu.info.name);
        }
        if let Some(e) = gpu.take_error() {
            bail!(Device, "GPU \"{}\": {e}", gpu.info.name);
        }
        if let Err(e) = polled {
            bail!(
                Device,
                "GPU \"{}\": the run did not finish: {e}",
                gpu.info.name
            );
        }
        // the map callback runs inside whichever thread's poll picks it up: with sessions polling the
        // same device from other threads it can still be in flight when our poll returns
        let t0 = std::time::Instant::now();
        let mut mapped = done.lock().ok().and_then(|mut d| d.take());
        while mapped.is_none() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_micros(200));
            let _ = gpu.device.poll(wgpu::PollType::Poll);
            mapped = done.lock().ok().and_then(|mut d| d.take());
        }
        match mapped {
            Some(Ok(())) => {}
            Some(Err(e)) => bail!(
                Device,
                "GPU \"{}\": reading back failed: {e}",
                gpu.info.name
            ),
            None => bail!(
                Device,
                "GPU \"{}\": the readback was never mapped",
                gpu.info.name
            ),
        }
        let out = {
            let view = self
                .readback
                .get_mapped_range(..)
                .map_err(|e| crate::err!(Device, "GPU readback: {e}"))?;
            view[..total as usize].to_vec()
        };
        self.readback.unmap();
        Ok(out)
    }
}
