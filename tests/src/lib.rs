//! Shared helpers for tern's cross-crate tests: paths to the sample models and data, and comparison
//! against tract.
#![warn(missing_docs)]

use std::path::PathBuf;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A model file under `models/`, or a panic telling how to make it (tests must not silently skip).
pub fn model(rel: &str) -> PathBuf {
    let p = root().join("models").join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `bash models/fetch.sh` (PP-OCR, PicoDet layout, YOLOX) and `python3 models/data/make_data.py` (their inputs), or `python3 models/digits/make.py` (digits), or `bash scripts/test.sh`",
        p.display()
    );
    p
}

/// Relative L2 error, f64.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    tern_tools::metrics::rel_l2(a, b)
}

/// The GPU the tests run on (lavapipe in CI), opened once. `None` with a printed reason where there is no
/// adapter (e.g. under qemu); with `TERN_GPU_REQUIRED=1` (the CI host lane) a missing GPU fails instead.
pub fn gpu() -> Option<&'static tern::gpu::Gpu> {
    static GPU: std::sync::OnceLock<Option<tern::gpu::Gpu>> = std::sync::OnceLock::new();
    GPU.get_or_init(|| {
        match tern::gpu::Gpu::new(&tern::gpu::GpuOptions {
            allow_cpu_adapter: true,
            ..Default::default()
        }) {
            Ok(g) => {
                println!("GPU tests on {}", g.describe());
                Some(g)
            }
            Err(e) => {
                assert!(
                    std::env::var_os("TERN_GPU_REQUIRED").is_none(),
                    "TERN_GPU_REQUIRED is set but no GPU adapter opens: {e}"
                );
                println!("GPU tests skipped: {e}");
                None
            }
        }
    })
    .as_ref()
}

/// Whether GPU and CPU values agree for f32 kernels: 1e-5 relative, with a 1e-6 absolute floor (NaN and
/// infinities must match exactly).
pub fn gpu_close(gpu: f32, cpu: f32) -> bool {
    gpu == cpu || (gpu.is_nan() && cpu.is_nan()) || (gpu - cpu).abs() <= 1e-6 + 1e-5 * cpu.abs()
}

/// The tolerance of one op with f16 activations (`GpuSessionOptions::f16_activations`): the CPU's f32
/// result rounded to f16 (2^-11 relative, so 2^-10 leaves room for the f32 kernels' own 1e-5), with
/// f16's subnormal spacing near zero, and values beyond f16's range saturated to ±65504.
pub fn f16_close(gpu: f32, cpu: f32) -> bool {
    const MAX: f32 = 65504.0;
    if cpu.is_finite() && cpu.abs() > MAX {
        return gpu == MAX.copysign(cpu);
    }
    gpu_close(gpu, cpu) || (gpu - cpu).abs() <= 1e-7 + cpu.abs() / 1024.0
}

/// An artifact of one pooling node whose windows dwarf its [1, 1, 2, 2] input: kernel and stride 2^20,
/// padding 2^20 − 1 on every side, `dilations` (valid ONNX; see artifact.rs
/// `huge_pooling_windows_cost_only_the_input`).
pub fn huge_pool(kind: tern::ir::PoolKind, dilations: [u32; 2]) -> Vec<u8> {
    let big = 1u32 << 20;
    let mut g = tern_tools::graph::ToolGraph::default();
    let x = g.add_tensor("x", &[1, 1, 2, 2]);
    g.graph.inputs.push(x);
    let pool = tern::ir::Pool2d {
        kind,
        kernel: [big, big],
        strides: [big, big],
        dilations,
        pads: [big - 1; 4],
        ceil_extra: [0, 0],
    };
    let y = g
        .emit(
            "pool",
            tern::ir::Op::Pool(pool),
            vec![x],
            &["y".into()],
            None,
        )
        .unwrap()[0];
    g.graph.outputs.push(y);
    tern_tools::export::to_bytes(&g, vec![]).unwrap()
}
