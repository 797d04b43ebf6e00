//! `--backend cpu|gpu|auto` for the commands that run a model: one engine type over tern's CPU session
//! and GPU session, and the fallback rule of `auto` (GPU when an adapter opens and every node has a GPU
//! kernel, else CPU with the reason logged).
use anyhow::{bail, Result};

/// Where a model runs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// The CPU engine (the default).
    #[default]
    Cpu,
    /// The GPU through wgpu; an error if no adapter opens or a node has no GPU kernel.
    Gpu,
    /// The GPU when it can run the whole model, else the CPU (the reason is logged).
    Auto,
}

/// `--backend` and its GPU options, shared by run and bench.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct BackendArgs {
    /// Where to run: cpu, gpu (wgpu: Vulkan, Metal, DX12), or auto (gpu if it can run every node).
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
    /// Accept a CPU Vulkan adapter (lavapipe/llvmpipe) as the GPU; also implied by WGPU_BACKEND.
    #[arg(long)]
    pub gpu_allow_cpu_adapter: bool,
    /// On the GPU, a node without a GPU kernel is an error (else it runs on the CPU, its tensors moved).
    #[arg(long)]
    pub strict: bool,
    /// On the GPU, keep f32 weights as f16 (half the weight memory; arithmetic stays f32; tolerance in
    /// `GpuSessionOptions::f16_weights`: PP-OCR cls within 1e-3, det320 1e-1 relative L2).
    #[arg(long)]
    pub gpu_f16_weights: bool,
    /// On the GPU, store a float model's activations as f16 (half the activation memory and traffic;
    /// each op computes in f32 and rounds its output to f16). Needs an adapter with f16 shaders.
    #[arg(long)]
    pub gpu_f16: bool,
}

/// A ready engine.
pub enum Engine<'m> {
    /// CPU session.
    Cpu(Box<tern::Session<'m>>),
    /// GPU session.
    Gpu(Box<tern::gpu::GpuSession<'m>>),
}

impl Engine<'_> {
    /// Runs one inference.
    pub fn run_into(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) -> tern::Result<()> {
        match self {
            Engine::Cpu(s) => s.run_into(inputs, outputs),
            Engine::Gpu(s) => s.run_into(inputs, outputs),
        }
    }

    /// "cpu" or "gpu".
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Cpu(_) => "cpu",
            Engine::Gpu(_) => "gpu",
        }
    }
}

/// Opens the GPU a `--backend gpu|auto` run asks for (`None` for cpu, and for auto when none opens).
pub fn open_gpu(a: &BackendArgs) -> Result<Option<tern::gpu::Gpu>> {
    if a.backend == Backend::Cpu {
        return Ok(None);
    }
    let opts = tern::gpu::GpuOptions {
        allow_cpu_adapter: a.gpu_allow_cpu_adapter,
        ..Default::default()
    };
    match tern::gpu::Gpu::new(&opts) {
        Ok(g) => {
            log::info!("GPU: {}", g.describe());
            Ok(Some(g))
        }
        Err(e) if a.backend == Backend::Auto => {
            log::warn!("--backend auto: running on the CPU: {e}");
            Ok(None)
        }
        Err(e) => bail!("--backend gpu: {e}"),
    }
}

/// The engine for `model`: the GPU session where asked and possible, else the CPU session.
pub fn open<'m>(
    a: &BackendArgs,
    model: &'m tern::Model<'m>,
    gpu: Option<&'m tern::gpu::Gpu>,
    threads: usize,
) -> Result<Engine<'m>> {
    if let Some(g) = gpu {
        let opts = tern::gpu::GpuSessionOptions {
            strict: a.strict,
            threads,
            f16_weights: a.gpu_f16_weights,
            f16_activations: a.gpu_f16,
        };
        match tern::gpu::GpuSession::with_options(model, g, &opts) {
            Ok(s) => {
                let (nodes, bytes) = s.fallback();
                if !nodes.is_empty() {
                    log::warn!(
                        "{} node(s) without a GPU kernel run on the CPU ({bytes} bytes moved per run; --strict makes this an error)",
                        nodes.len()
                    );
                }
                return Ok(Engine::Gpu(Box::new(s)));
            }
            Err(e) if a.backend == Backend::Auto => {
                log::warn!("--backend auto: running on the CPU: {e}")
            }
            Err(e) => bail!("--backend gpu: {e}"),
        }
    }
    Ok(Engine::Cpu(Box::new(tern::Session::new(
        model,
        tern::SessionOptions { threads },
    )?)))
}
