//! The GPU backend against the CPU on whole models (per-op coverage is in conformance.rs, which runs
//! every ONNX node case whose ops have GPU kernels on both backends). Runs on lavapipe in CI
//! (`WGPU_BACKEND=vulkan`); skips with a printed reason where no adapter exists, unless
//! `TERN_GPU_REQUIRED` is set.
use ndarray::{ArrayD, Axis};
use ndarray_npy::read_npy;
use tern::gpu::GpuSession;
use tern::{Model, Session, SessionOptions};
use tern_tools::import::InputShape;

/// Runs `bytes` on CPU and GPU over `xs` (rows of one input) and returns the worst relative L2 error per
/// sample and the worst element by `gpu_close`'s measure.
fn compare(bytes: &[u8], xs: &ArrayD<f32>, samples: usize) -> (f64, usize) {
    let gpu = tern_tests::gpu().expect("checked by the caller");
    let model = Model::from_bytes(bytes).unwrap();
    let mut cpu = Session::new(&model, SessionOptions { threads: 1 }).unwrap();
    let mut g = GpuSession::new(&model, gpu).unwrap();
    let n_out: usize = model.outputs().next().unwrap().numel();
    let (mut worst, mut bad) = (0f64, 0usize);
    for x in xs.axis_iter(Axis(0)).take(samples) {
        let x: Vec<f32> = x.iter().copied().collect();
        let (mut a, mut b) = (vec![0f32; n_out], vec![0f32; n_out]);
        cpu.run_into(&[&x], &mut [&mut a]).unwrap();
        g.run_into(&[&x], &mut [&mut b]).unwrap();
        worst = worst.max(tern_tests::rel_l2(&b, &a));
        bad += b
            .iter()
            .zip(&a)
            .filter(|(g, c)| !tern_tests::gpu_close(**g, **c))
            .count();
    }
    (worst, bad)
}

#[test]
fn digits_and_cls_run_on_the_gpu_like_the_cpu() {
    if tern_tests::gpu().is_none() {
        return;
    }
    let digits = tern_tools::compress_float(&tern_tests::model("digits/digits.onnx"), &[]).unwrap();
    let x: ArrayD<f32> = read_npy(tern_tests::model("digits/X_test.npy")).unwrap();
    let (rel, bad) = compare(&digits, &x, 64);
    println!("digits f32, GPU vs CPU: worst rel L2 {rel:.2e}, {bad} elements outside 1e-5");
    assert!(rel < 1e-5 && bad == 0);

    let cls = tern_tools::compress_float(
        &tern_tests::model("cache/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
        &[InputShape {
            name: "x".into(),
            dims: vec![1, 3, 48, 192],
        }],
    )
    .unwrap();
    let x: ArrayD<f32> = read_npy(tern_tests::model("data/out/cls_eval.npy")).unwrap();
    let (rel, bad) = compare(&cls, &x, 4);
    println!("PP-OCR cls f32, GPU vs CPU: worst rel L2 {rel:.2e}, {bad} elements outside 1e-5");
    // a whole network sums in another order on each backend (per op the two agree within 1e-5, see
    // conformance.rs); over ~100-200 layers the outputs agree within 1e-4 relative L2
    assert!(rel < 1e-4, "rel L2 {rel}");

    let det = tern_tools::compress_float(
        &tern_tests::model("cache/ch_PP-OCRv4_det_infer.onnx"),
        &[InputShape {
            name: "x".into(),
            dims: vec![1, 3, 320, 320],
        }],
    )
    .unwrap();
    let x: ArrayD<f32> = read_npy(tern_tests::model("data/out/det320_eval.npy")).unwrap();
    let (rel, bad) = compare(&det, &x, 1);
    println!("PP-OCR det320 f32, GPU vs CPU: worst rel L2 {rel:.2e}, {bad} elements outside 1e-5");
    assert!(rel < 1e-4, "rel L2 {rel}");
}

#[test]
fn nodes_without_gpu_kernels_are_named() {
    let Some(gpu) = tern_tests::gpu() else { return };
    let bytes = std::fs::read(tern_tests::root().join("runtime/tests/data/cls_int8.tern")).unwrap();
    let m = Model::from_bytes(&bytes).unwrap();
    let e = GpuSession::new(&m, gpu)
        .err()
        .expect("int8 has no GPU kernels yet");
    assert_eq!(e.kind, tern::ErrorKind::Unsupported);
    // names the node, its op and why
    assert!(
        e.context.contains("cannot run on the GPU") && e.context.contains('"'),
        "{e}"
    );
    let not: Vec<String> = m
        .graph
        .nodes
        .iter()
        .filter_map(|n| tern::gpu::kernel_for(&m, n).err())
        .collect();
    assert!(!not.is_empty());
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let Some(gpu) = tern_tests::gpu() else { return };
    let digits = tern_tools::compress_float(&tern_tests::model("digits/digits.onnx"), &[]).unwrap();
    let m = Model::from_bytes(&digits).unwrap();
    let mut s = GpuSession::new(&m, gpu).unwrap();
    let mut y = vec![0f32; 10];
    let e = s.run_into(&[&[0.0; 3]], &mut [&mut y]).unwrap_err();
    assert_eq!(e.kind, tern::ErrorKind::Argument);
    assert!(e.context.contains("input 0"), "{e}");
}
