//! `tern bench <model.tern> [--threads N] [--runs N] [--warmup N] [--json]`
use super::{load_model, peak_rss_bytes, read_file};
use anyhow::Result;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The .tern artifact.
    pub model: PathBuf,
    /// Threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also time every node and print a per-op-type table (slowest first; CPU backend).
    #[arg(long)]
    pub profile: bool,
    /// Backend selection.
    #[command(flatten)]
    pub backend: super::engine::BackendArgs,
}

/// Seeded uniform values in [-1, 1) (a fixed LCG, so every tool and test sees the same inputs).
pub fn seeded(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Median, min, max of timings in ms.
pub fn stats(ms: &mut [f64]) -> (f64, f64, f64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let n = ms.len();
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let med = if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    };
    (med, ms[0], ms[n - 1])
}

/// Runs the subcommand.
pub fn main(a: Args) -> Result<()> {
    let bytes = read_file(&a.model)?;
    let model = load_model(&a.model, &bytes)?;
    let gpu = super::engine::open_gpu(&a.backend)?;
    if gpu.is_some() || a.backend.backend != super::engine::Backend::Cpu {
        return gpu_bench(&a, &model, bytes.len(), gpu.as_ref());
    }
    let mut session = tern::Session::new(&model, tern::SessionOptions { threads: a.threads })?;
    let inputs: Vec<Vec<f32>> = model
        .inputs()
        .enumerate()
        .map(|(i, t)| seeded(t.numel(), i as u64))
        .collect();
    let mut outputs: Vec<Vec<f32>> = model.outputs().map(|t| vec![0.0; t.numel()]).collect();
    let ins: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    for _ in 0..a.warmup {
        let mut outs: Vec<&mut [f32]> = outputs.iter_mut().map(|v| v.as_mut_slice()).collect();
        session.run_into(&ins, &mut outs)?;
    }
    session.set_profiling(a.profile);
    let mut ms = Vec::with_capacity(a.runs);
    for _ in 0..a.runs.max(1) {
        let mut outs: Vec<&mut [f32]> = outputs.iter_mut().map(|v| v.as_mut_slice()).collect();
        let t = Instant::now();
        session.run_into(&ins, &mut outs)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (median, min, max) = stats(&mut ms);
    let rss = peak_rss_bytes().unwrap_or(0);
    if let Some(p) = session.profile() {
        print_profile(&model, p, ms.len());
    }
    if a.json {
        println!(
            "{}",
            json!({
                "model": a.model.display().to_string(),
                "median_ms": median, "min_ms": min, "max_ms": max,
                "runs": ms.len(), "warmup": a.warmup, "threads": session.threads(),
                "arena_bytes": session.arena_bytes(), "packed_weight_bytes": session.packed_weight_bytes(),
                "peak_rss_bytes": rss, "isa": session.isa(), "backend": "cpu",
                "artifact_bytes": bytes.len(),
            })
        );
    } else {
        println!(
            "{}: median {median:.3} ms (min {min:.3}, max {max:.3}) over {} runs, {} thread(s), {} path; arena {} B, peak RSS {:.1} MB",
            a.model.display(),
            ms.len(),
            session.threads(),
            session.isa(),
            session.arena_bytes(),
            rss as f64 / 1e6
        );
    }
    Ok(())
}

/// `bench --backend gpu|auto`: preparation (weight upload and pipeline builds), the first run and the
/// steady state, timed separately (users ask why the GPU looks slow: usually it is the first two).
fn gpu_bench(
    a: &Args,
    model: &tern::Model,
    artifact_bytes: usize,
    gpu: Option<&tern::gpu::Gpu>,
) -> Result<()> {
    let t = Instant::now();
    let mut engine = super::engine::open(&a.backend, model, gpu, a.threads)?;
    let prepare_ms = t.elapsed().as_secs_f64() * 1e3;
    let inputs: Vec<Vec<f32>> = model
        .inputs()
        .enumerate()
        .map(|(i, t)| seeded(t.numel(), i as u64))
        .collect();
    let mut outputs: Vec<Vec<f32>> = model.outputs().map(|t| vec![0.0; t.numel()]).collect();
    let ins: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let mut run = |engine: &mut super::engine::Engine| -> Result<f64> {
        let mut outs: Vec<&mut [f32]> = outputs.iter_mut().map(|v| v.as_mut_slice()).collect();
        let t = Instant::now();
        engine.run_into(&ins, &mut outs)?;
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let first_ms = run(&mut engine)?;
    for _ in 1..a.warmup {
        run(&mut engine)?;
    }
    let mut ms = Vec::with_capacity(a.runs);
    for _ in 0..a.runs.max(1) {
        ms.push(run(&mut engine)?);
    }
    let (median, min, max) = stats(&mut ms);
    if a.profile {
        if let super::engine::Engine::Gpu(s) = &mut engine {
            let mut total = vec![0u64; model.graph.nodes.len()];
            let mut got = false;
            for _ in 0..a.runs.max(1) {
                if let Some(p) = s.profile_run(&ins)? {
                    total.iter_mut().zip(&p).for_each(|(t, v)| *t += v);
                    got = true;
                }
            }
            if got {
                eprintln!("GPU timestamps per node (each node in its own compute pass):");
                print_profile(model, &total, a.runs.max(1));
            } else {
                eprintln!("--profile: this GPU has no timestamp queries");
            }
        }
    }
    let rss = peak_rss_bytes().unwrap_or(0);
    let backend = engine.name();
    let device = match (backend, gpu) {
        ("gpu", Some(g)) => g.describe(),
        _ => "cpu".to_string(),
    };
    let (fallback_nodes, moved) = match &engine {
        super::engine::Engine::Gpu(s) => (s.fallback().0.len(), s.fallback().1),
        _ => (0, 0),
    };
    // how float activations are stored (f16 with --gpu-f16 on a float artifact)
    let activations = match &engine {
        super::engine::Engine::Gpu(s) if s.f16_activations() => "f16",
        _ => "f32",
    };
    if a.json {
        println!(
            "{}",
            json!({
                "model": a.model.display().to_string(),
                "median_ms": median, "min_ms": min, "max_ms": max,
                "runs": ms.len(), "warmup": a.warmup, "threads": a.threads,
                "peak_rss_bytes": rss, "backend": backend, "device": device,
                "prepare_ms": prepare_ms, "first_run_ms": first_ms,
                "artifact_bytes": artifact_bytes,
                "cpu_fallback_nodes": fallback_nodes, "fallback_bytes_per_run": moved,
                "activations": activations,
            })
        );
    } else {
        println!(
            "{}: median {median:.3} ms (min {min:.3}, max {max:.3}) over {} runs on {backend} ({device}, {activations} activations); prepare (upload + pipelines) {prepare_ms:.1} ms, first run {first_ms:.3} ms; {fallback_nodes} node(s) on the CPU fallback ({moved} B/run); peak RSS {:.1} MB",
            a.model.display(),
            ms.len(),
            rss as f64 / 1e6
        );
    }
    Ok(())
}

/// The per-op-type and slowest-node tables of a profile (`p[i]`: nanoseconds of node i over `runs` runs).
fn print_profile(model: &tern::Model, p: &[u64], runs: usize) {
    let mut by_op: Vec<(&str, u64, usize)> = Vec::new();
    for (n, &t) in model.graph.nodes.iter().zip(p) {
        match by_op.iter_mut().find(|e| e.0 == n.op.name()) {
            Some(e) => {
                e.1 += t;
                e.2 += 1
            }
            None => by_op.push((n.op.name(), t, 1)),
        }
    }
    by_op.sort_by_key(|e| std::cmp::Reverse(e.1));
    let total: u64 = p.iter().sum::<u64>().max(1);
    let runs = runs.max(1) as f64;
    eprintln!(
        "{:<20} {:>6} {:>10} {:>7}",
        "op", "nodes", "ms/run", "share"
    );
    for (op, t, c) in by_op {
        eprintln!(
            "{op:<20} {c:>6} {:>10.3} {:>6.1}%",
            t as f64 / 1e6 / runs,
            100.0 * t as f64 / total as f64
        );
    }
    let mut nodes: Vec<usize> = (0..p.len()).collect();
    nodes.sort_by_key(|&i| std::cmp::Reverse(p[i]));
    eprintln!(
        "\nslowest nodes:\n{:<36} {:<14} {:>22} {:>9} {:>8}",
        "node", "op", "output", "ms/run", "GMAC/s"
    );
    for &i in nodes.iter().take(15) {
        let n = &model.graph.nodes[i];
        let ms = p[i] as f64 / 1e6 / runs;
        let out = format!("{:?}", model.graph.tensors[n.outputs[0] as usize].shape);
        let gmacs = model.graph.node_macs(i) as f64 / (ms * 1e6);
        let name: String = n.name.chars().take(36).collect();
        eprintln!(
            "{name:<36} {:<14} {out:>22} {ms:>9.3} {gmacs:>8.2}",
            n.op.name()
        );
    }
}
