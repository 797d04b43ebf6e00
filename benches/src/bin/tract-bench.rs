//! Times tract on an ONNX model the way `tern bench` times an artifact (same seeded inputs: input i takes
//! seed i; median of runs, peak RSS of this process), printing one JSON object. Used by `benches/peer.py`.
//!
//!     tract-bench MODEL.onnx 1x3x48x192 [RUNS] [WARMUP]
//!     tract-bench MODEL.onnx 64x576,1x1x128,1x1x128 [RUNS] [WARMUP]   (one shape per input)
use anyhow::{anyhow, Result};
use std::time::Instant;

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 3 {
        return Err(anyhow!(
            "usage: tract-bench MODEL.onnx DIMS[,DIMS...] [RUNS] [WARMUP]"
        ));
    }
    let shapes: Vec<Vec<usize>> = a[2]
        .split(',')
        .map(|one| one.split('x').map(|d| d.parse()).collect())
        .collect::<Result<_, _>>()?;
    let runs: usize = a.get(3).map_or(Ok(20), |v| v.parse())?;
    let warmup: usize = a.get(4).map_or(Ok(3), |v| v.parse())?;
    let r = tern_tools::reference::Reference::load(std::path::Path::new(&a[1]), &shapes)?;
    let xs: Vec<ndarray::ArrayD<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n: usize = s.iter().product();
            ndarray::ArrayD::from_shape_vec(
                ndarray::IxDyn(s),
                tern_tools::cli::bench::seeded(n, i as u64),
            )
        })
        .collect::<Result<_, _>>()?;
    for _ in 0..warmup {
        r.run(&xs)?;
    }
    let mut ms = Vec::new();
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        r.run(&xs)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (median, min, max) = tern_tools::cli::bench::stats(&mut ms);
    println!(
        "{}",
        serde_json::json!({"engine": "tract", "median_ms": median, "min_ms": min, "max_ms": max, "runs": ms.len(),
            "threads": 1, "peak_rss_bytes": tern_tools::cli::peak_rss_bytes().unwrap_or(0)})
    );
    Ok(())
}
