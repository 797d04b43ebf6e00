//! Runs a `.tern` artifact on seeded inputs with only the runtime crate: the smallest on-device runner,
//! and the program `shared/tools/qemu_icount.py` counts instructions of on aarch64 (no board here).
//! `cargo run --release -p tern --example run_artifact -- model.tern [runs] [threads]`
use tern::{Model, Session, SessionOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: run_artifact model.tern [runs] [threads]")?;
    let runs: usize = args.get(2).map_or(Ok(1), |s| s.parse())?;
    let threads: usize = args.get(3).map_or(Ok(1), |s| s.parse())?;
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let model = Model::from_bytes(&bytes)?;
    let mut session = Session::new(&model, SessionOptions { threads })?;
    // the same seeded values every run (an LCG in [-1, 1))
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let inputs: Vec<Vec<f32>> = model
        .inputs()
        .map(|t| {
            (0..t.numel())
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    ((seed >> 40) as f32 / (1u64 << 23) as f32) - 1.0
                })
                .collect()
        })
        .collect();
    let mut outputs: Vec<Vec<f32>> = model.outputs().map(|t| vec![0.0; t.numel()]).collect();
    let ins: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let start = std::time::Instant::now();
    for _ in 0..runs.max(1) {
        let mut outs: Vec<&mut [f32]> = outputs.iter_mut().map(|v| v.as_mut_slice()).collect();
        session.run_into(&ins, &mut outs)?;
    }
    let ms = start.elapsed().as_secs_f64() * 1e3 / runs.max(1) as f64;
    let sum: f64 = outputs.iter().flatten().map(|&v| v as f64).sum();
    // FNV-1a over the output bits: equal on every kernel path for the same artifact and inputs
    let bits = outputs
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        });
    println!(
        "{path}: {} path, {runs} run(s), {ms:.3} ms/run, output sum {sum:.6}, bits {bits:016x}",
        session.isa()
    );
    Ok(())
}
