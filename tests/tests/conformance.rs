//! ONNX's own backend node tests through import → f32 runtime. The cases are generated at test time
//! from the `onnx` package (`tests/conformance/gen_cases.py`, cached, never committed); every case named
//! in `tests/conformance/onnx_node.txt` must pass, and the total passing count is printed.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tern_tools::import::value::{load, HostTensor};

fn cache_dir() -> PathBuf {
    if let Ok(d) = std::env::var("TERN_ONNX_NODE_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    PathBuf::from(home).join(".cache/tern-onnx-node")
}

fn ensure_cases(dir: &Path) {
    // the script checks its own stamp (onnx version, format) and returns in ~0.1 s when the cache is current
    let script = tern_tests::root().join("tests/conformance/gen_cases.py");
    let st = std::process::Command::new("python3")
        .arg(&script)
        .arg(dir)
        .status()
        .expect("running python3");
    assert!(
        st.success(),
        "{} failed (needs `pip install onnx==1.23.2`)",
        script.display()
    );
}

fn read_pb(p: &Path) -> tract_onnx::pb::TensorProto {
    let f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    tract_onnx::tensor::proto_from_reader(f).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs one case. The first graph input is fed at run time; the others (weights, shapes, axes...) are
/// bound as constants, as they are in real models.
fn run_case(dir: &Path) -> Result<(), String> {
    use tract_onnx::prelude::Framework;
    let onnx = tract_onnx::onnx();
    let mut proto = onnx
        .proto_model_for_path(dir.join("model.onnx"))
        .map_err(|e| format!("parse: {e}"))?;
    let data = dir.join("test_data_set_0");
    let graph = proto.graph.as_mut().ok_or("no graph")?;
    let inits: BTreeSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    let inputs: Vec<String> = graph
        .input
        .iter()
        .map(|i| i.name.clone())
        .filter(|n| !inits.contains(n))
        .collect();
    if inputs.is_empty() {
        return Err("no runtime input".into());
    }
    let mut first = None;
    for (j, name) in inputs.iter().enumerate() {
        let mut t = read_pb(&data.join(format!("input_{j}.pb")));
        if j == 0 {
            first = Some(
                HostTensor::from_tract(&load(&t).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?,
            );
        } else {
            t.name = name.clone();
            graph.initializer.push(t);
        }
    }
    let x = first.unwrap();
    let HostTensor::F(x) = x else {
        return Err("first input is not float".into());
    };
    let shape = tern_tools::import::InputShape {
        name: inputs[0].clone(),
        dims: x.shape().to_vec(),
    };
    let g = tern_tools::import::import_proto(&proto, dir.to_str(), &[shape])
        .map_err(|e| format!("{e:#}"))?;
    let bytes = tern_tools::export::to_bytes(&g, vec![]).map_err(|e| format!("{e:#}"))?;
    let m = tern::Model::from_bytes(&bytes).map_err(|e| e.to_string())?;
    let mut s = tern::Session::new(&m, Default::default()).map_err(|e| e.to_string())?;
    let outs = s.run(&[x.view()]).map_err(|e| e.to_string())?;
    gpu_check(
        &dir.file_name().unwrap_or_default().to_string_lossy(),
        &m,
        x.as_slice().unwrap_or(&[]),
        &outs,
    );
    for (k, got) in outs.iter().enumerate() {
        let want = HostTensor::from_tract(
            &load(&read_pb(&data.join(format!("output_{k}.pb")))).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?
        .f32();
        if got.shape() != want.shape() {
            return Err(format!(
                "output {k}: shape {:?}, expected {:?}",
                got.shape(),
                want.shape()
            ));
        }
        for (i, (&a, &b)) in got.iter().zip(want.iter()).enumerate() {
            let ok = (a - b).abs() <= 1e-5 + 1e-3 * b.abs() || (a.is_nan() && b.is_nan()) || a == b;
            if !ok {
                return Err(format!("output {k}[{i}]: {a} vs expected {b}"));
            }
        }
    }
    Ok(())
}

/// Cases run on the GPU too, those whose GPU outputs differ from the CPU's, and how many of them had nodes
/// without a GPU kernel (run by the CPU fallback).
static GPU_RUNS: std::sync::Mutex<(usize, Vec<String>, usize)> =
    std::sync::Mutex::new((0, Vec::new(), 0));

/// Runs a case's model on the GPU when one is open (nodes without a GPU kernel through the CPU fallback,
/// after checking that `strict` refuses them), and records whether its outputs equal the CPU's
/// (`tern_tests::gpu_close`), then the f16-activation variant (`f16_check`).
fn gpu_check(name: &str, m: &tern::Model, x: &[f32], cpu: &[ndarray::ArrayD<f32>]) {
    let Some(gpu) = tern_tests::gpu() else { return };
    let missing = m
        .graph
        .nodes
        .iter()
        .filter(|n| tern::gpu::kernel_for(m, n).is_err())
        .count();
    if missing > 0 {
        // strict: an error naming the node; otherwise those nodes fall back to the CPU (checked below)
        let strict = tern::gpu::GpuSessionOptions {
            strict: true,
            ..Default::default()
        };
        match tern::gpu::GpuSession::with_options(m, gpu, &strict) {
            Err(e)
                if e.kind == tern::ErrorKind::Unsupported
                    && e.context.contains("cannot run on the GPU") => {}
            Err(e) => GPU_RUNS
                .lock()
                .unwrap()
                .1
                .push(format!("{name}: strict: {e}")),
            Ok(_) => GPU_RUNS
                .lock()
                .unwrap()
                .1
                .push(format!("{name}: strict accepted a missing kernel")),
        }
        GPU_RUNS.lock().unwrap().2 += 1;
    }
    let mut outs: Vec<Vec<f32>> = cpu.iter().map(|o| vec![0f32; o.len()]).collect();
    let r = tern::gpu::GpuSession::new(m, gpu).and_then(|mut s| {
        let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
        s.run_into(&[x], &mut o)
    });
    if gpu.has_f16() {
        f16_check(name, m, gpu, x, cpu.len());
    }
    let mut runs = GPU_RUNS.lock().unwrap();
    runs.0 += 1;
    match r {
        Err(e) => runs.1.push(format!("{name}: {e}")),
        Ok(()) => {
            for (k, (g, c)) in outs.iter().zip(cpu).enumerate() {
                if let Some((i, (a, b))) = g
                    .iter()
                    .zip(c.iter())
                    .enumerate()
                    .find(|(_, (a, b))| !tern_tests::gpu_close(**a, **b))
                {
                    runs.1
                        .push(format!("{name}: output {k}[{i}]: GPU {a} vs CPU {b}"));
                    break;
                }
            }
        }
    }
}

/// Cases run with f16 activations on the GPU, and those outside the stated tolerance.
static F16_RUNS: std::sync::Mutex<(usize, Vec<String>)> = std::sync::Mutex::new((0, Vec::new()));

/// The f16-activation variant of a case: the input rounded to f16 (as the upload does), the CPU's f32
/// result on that input as the oracle, and every GPU output within `tern_tests::f16_close` of it (the
/// f32 result rounded to f16 once per op).
fn f16_check(name: &str, m: &tern::Model, gpu: &tern::gpu::Gpu, x: &[f32], n_out: usize) {
    let xr: Vec<f32> = x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    let mut want: Vec<Vec<f32>> = m.outputs().map(|t| vec![0f32; t.numel()]).collect();
    let mut got = want.clone();
    let r = tern::Session::new(m, Default::default()).and_then(|mut s| {
        let mut o: Vec<&mut [f32]> = want.iter_mut().map(|v| v.as_mut_slice()).collect();
        s.run_into(&[&xr], &mut o)
    });
    if r.is_err() || want.len() != n_out {
        return; // the f32 check reports CPU failures
    }
    let opts = tern::gpu::GpuSessionOptions {
        f16_activations: true,
        ..Default::default()
    };
    let r = tern::gpu::GpuSession::with_options(m, gpu, &opts).and_then(|mut s| {
        if !s.f16_activations() {
            return Err(tern::Error::new(
                tern::ErrorKind::Unsupported,
                "a float model kept f32 activations",
            ));
        }
        let mut o: Vec<&mut [f32]> = got.iter_mut().map(|v| v.as_mut_slice()).collect();
        s.run_into(&[&xr], &mut o)
    });
    let mut runs = F16_RUNS.lock().unwrap();
    runs.0 += 1;
    match r {
        Err(e) => runs.1.push(format!("{name}: {e}")),
        Ok(()) => {
            // one op: its output rounded to f16 once. A chain of ops (the `_expanded` cases) rounds
            // every intermediate tensor too, which cancellation (a variance, a softmax's sum) can
            // magnify relative to an element: there 2^-7 of the output's largest magnitude.
            let single = m.graph.nodes.len() == 1;
            for (k, (g, c)) in got.iter().zip(&want).enumerate() {
                let scale = c
                    .iter()
                    .filter(|v| v.is_finite())
                    .fold(0f32, |s, v| s.max(v.abs()));
                if let Some((i, (a, b))) = g.iter().zip(c).enumerate().find(|(_, (a, b))| {
                    if single {
                        !tern_tests::f16_close(**a, **b)
                    } else {
                        !(tern_tests::f16_close(**a, **b) || (*a - *b).abs() <= scale / 128.0)
                    }
                }) {
                    runs.1
                        .push(format!("{name}: output {k}[{i}]: GPU f16 {a} vs CPU {b}"));
                    break;
                }
            }
        }
    }
}

#[test]
fn onnx_node_conformance() {
    let dir = cache_dir();
    ensure_cases(&dir);
    let manifest =
        std::fs::read_to_string(tern_tests::root().join("tests/conformance/onnx_node.txt"))
            .unwrap();
    let must: BTreeSet<&str> = manifest
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    cases.sort();
    let (mut pass, mut failed_listed, mut panicked) = (Vec::new(), Vec::new(), Vec::new());
    let verbose = std::env::var("TERN_CONFORMANCE_VERBOSE").is_ok();
    for c in &cases {
        let name = c.file_name().unwrap().to_string_lossy().to_string();
        let r = std::panic::catch_unwind(|| run_case(c)).unwrap_or_else(|_| {
            panicked.push(name.clone());
            Err("panicked".into())
        });
        match r {
            Ok(()) => pass.push(name),
            Err(e) => {
                if must.contains(name.as_str()) {
                    failed_listed.push(format!("{name}: {e}"));
                } else if verbose {
                    println!("not passing: {name}: {}", e.lines().next().unwrap_or(""));
                }
            }
        }
    }
    for m in &must {
        assert!(
            cases.iter().any(|c| c.file_name().unwrap() == *m),
            "manifest lists {m}, which is not a generated case"
        );
    }
    if let Ok(p) = std::env::var("TERN_CONFORMANCE_WRITE") {
        std::fs::write(p, pass.join("\n") + "\n").unwrap();
    }
    println!(
        "ONNX node conformance: {} of {} node tests pass ({} listed in the manifest)",
        pass.len(),
        cases.len(),
        must.len()
    );
    assert!(
        failed_listed.is_empty(),
        "{} manifest case(s) fail:\n{}",
        failed_listed.len(),
        failed_listed.join("\n")
    );
    if tern_tests::gpu().is_some() {
        let runs = GPU_RUNS.lock().unwrap();
        println!(
            "ONNX node conformance on the GPU: {} of the passing cases run there ({} with CPU fallback nodes), {} differ from the CPU",
            runs.0,
            runs.2,
            runs.1.len()
        );
        assert!(
            runs.2 >= 20,
            "only {} cases exercised the CPU fallback",
            runs.2
        );
        assert!(
            runs.1.is_empty(),
            "GPU differs from CPU:\n{}",
            runs.1.join("\n")
        );
        assert!(runs.0 >= 100, "only {} cases ran on the GPU", runs.0);
        let f16 = F16_RUNS.lock().unwrap();
        println!(
            "with f16 activations: {} cases, {} outside the tolerance",
            f16.0,
            f16.1.len()
        );
        if tern_tests::gpu().is_some_and(|g| g.has_f16()) {
            assert!(
                f16.0 >= 100,
                "only {} cases ran with f16 activations",
                f16.0
            );
        }
        assert!(
            f16.1.is_empty(),
            "GPU with f16 activations outside the tolerance:\n{}",
            f16.1.join("\n")
        );
    }
}
