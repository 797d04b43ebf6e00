//! The GPU backend against the CPU on whole models (per-op coverage is in conformance.rs, which runs
//! every passing ONNX node case on both backends, those with nodes lacking a GPU kernel through the CPU
//! fallback). Runs on lavapipe in CI
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
    // the whole model on the GPU, at most one dispatch per node
    assert!(g.fallback().0.is_empty());
    assert!(g.dispatch_count() <= model.graph.nodes.len());
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

    // the same with int8 weights only (`--weights-only`): the GPU widens them as the CPU does
    let c = tern_tools::quant::CompressInt8 {
        calib: None,
        samples: None,
        opts: tern_tools::quant::Int8Options {
            weights_only: true,
            ..Default::default()
        },
        progress: false,
    };
    let (cls8w, _) = tern_tools::quant::compress_int8(
        &tern_tests::model("cache/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
        &["x=1x3x48x192".parse().unwrap()],
        &c,
    )
    .unwrap();
    let (rel, bad) = compare(&cls8w, &x, 4);
    println!(
        "PP-OCR cls weights-only, GPU vs CPU: worst rel L2 {rel:.2e}, {bad} elements outside 1e-5"
    );
    assert!(rel < 1e-4, "rel L2 {rel}");

    let det = tern_tools::compress_float(
        &tern_tests::model("cache/ch_PP-OCRv4_det_infer.onnx"),
        &[InputShape {
            name: "x".into(),
            dims: vec![1, 3, 320, 320],
        }],
    )
    .unwrap();
    // (its 24 convs carrying PP-LCNetV3's affine after the hard-swish: the WGSL conv kernels apply it)
    let fused = Model::from_bytes(&det)
        .unwrap()
        .graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, tern::ir::Op::Conv { .. }) && n.inputs.len() == 5)
        .count();
    assert_eq!(fused, 24);
    let x: ArrayD<f32> = read_npy(tern_tests::model("data/out/det320_eval.npy")).unwrap();
    let (rel, bad) = compare(&det, &x, 1);
    println!("PP-OCR det320 f32, GPU vs CPU: worst rel L2 {rel:.2e}, {bad} elements outside 1e-5");
    assert!(rel < 1e-4, "rel L2 {rel}");

    // YOLOX (ddddocr's captcha detector): SiLU fused into every conv's epilogue, SPP max pools
    let yolox = tern_tools::compress_float(
        &tern_tests::model("cache/common_det.onnx"),
        &[InputShape {
            name: "images".into(),
            dims: vec![1, 3, 416, 416],
        }],
    )
    .unwrap();
    let x: ArrayD<f32> = read_npy(tern_tests::model("data/out/captcha_eval.npy")).unwrap();
    let (rel, bad) = compare(&yolox, &x, 1);
    println!("YOLOX f32, GPU vs CPU: worst rel L2 {rel:.2e}, {bad} elements outside 1e-5");
    assert!(rel < 1e-4, "rel L2 {rel}");
}

/// Every int8 tensor of an int8 model equals the CPU's bit for bit on the GPU (the committed PP-OCR cls
/// fixture, digits and PP-OCR det320 quantized now, det with channel-scaled tensors), with both int8 dot
/// forms: same requantization, tables and index maps.
#[test]
fn int8_tensors_are_bit_identical_to_the_cpu() {
    if tern_tests::gpu().is_none() {
        return;
    }
    let emulated = tern::gpu::Gpu::new(&tern::gpu::GpuOptions {
        allow_cpu_adapter: true,
        emulate_dot4: true,
    })
    .unwrap();
    for gpu in [tern_tests::gpu().unwrap(), &emulated] {
        println!(
            "int8 dot products: {}",
            if gpu.native_dot4() {
                "dot4I8Packed"
            } else {
                "shifts and masks"
            }
        );
        int8_on(gpu);
    }
}

fn int8_on(gpu: &tern::gpu::Gpu) {
    let cls = std::fs::read(tern_tests::root().join("runtime/tests/data/cls_int8.tern")).unwrap();
    let c = tern_tools::quant::CompressInt8 {
        calib: Some(&tern_tests::model("digits/X_train.npy")),
        samples: Some(64),
        opts: tern_tools::quant::Int8Options {
            method: tern_tools::quant::calib::Method::Percentile(99.99),
            ..Default::default()
        },
        progress: false,
    };
    let digits =
        tern_tools::quant::compress_int8(&tern_tests::model("digits/digits.onnx"), &[], &c)
            .unwrap()
            .0;
    let cls_x: ArrayD<f32> = read_npy(tern_tests::model("data/out/cls_eval.npy")).unwrap();
    let dig_x: ArrayD<f32> = read_npy(tern_tests::model("digits/X_test.npy")).unwrap();
    for (name, bytes, xs) in [("cls int8", &cls, &cls_x), ("digits int8", &digits, &dig_x)] {
        let m = Model::from_bytes(bytes).unwrap();
        let mut cpu = Session::new(&m, SessionOptions { threads: 1 }).unwrap();
        let mut g = GpuSession::new(&m, gpu).unwrap_or_else(|e| panic!("{name}: {e}"));
        let n_out = m.outputs().next().unwrap().numel();
        let mut checked = 0usize;
        for x in xs.axis_iter(Axis(0)).take(2) {
            let x: Vec<f32> = x.iter().copied().collect();
            let mut want: Vec<(u32, Vec<u8>)> = Vec::new();
            let mut y = vec![0f32; n_out];
            let mut f = |_: usize, t: u32, v: tern::session::Values| {
                if let tern::session::Values::I8(q) = v {
                    want.push((t, q.iter().map(|&b| b as u8).collect()));
                }
            };
            cpu.run_observed(&[&x], &mut [&mut y], Some(&mut f))
                .unwrap();
            let mut got: Vec<(u32, Vec<u8>)> = Vec::new();
            let mut y2 = vec![0f32; n_out];
            g.run_observed(&[&x], &mut [&mut y2], &mut |_, t, b| {
                if m.graph.tensors[t as usize].dtype == tern::DType::I8 {
                    got.push((t, b.to_vec()));
                }
            })
            .unwrap();
            assert_eq!(got.len(), want.len(), "{name}: int8 tensors seen");
            for ((tg, bg), (tw, bw)) in got.iter().zip(&want) {
                assert_eq!(tg, tw);
                if bg != bw {
                    let i = bg.iter().zip(bw).position(|(a, b)| a != b).unwrap();
                    panic!(
                        "{name}: tensor \"{}\" differs at {i}: GPU {} vs CPU {}",
                        m.graph.tensors[*tg as usize].name, bg[i] as i8, bw[i] as i8
                    );
                }
                checked += 1;
            }
            // the float outputs after the last Dequantize (and Softmax) agree to float rounding
            assert!(
                tern_tests::rel_l2(&y2, &y) < 1e-5,
                "{name}: outputs {y2:?} vs {y:?}"
            );
        }
        println!("{name}: {checked} int8 tensors identical on GPU and CPU");
        assert!(checked > 4);
    }
    // PP-OCR det int8 (integer end to end, its ConvTranspose included: the input stage int8 too, since
    // float layers round differently on the GPU): every int8 tensor identical too
    let det = all_int8(
        "cache/ch_PP-OCRv4_det_infer.onnx",
        "x",
        &[1, 3, 320, 320],
        "data/out/det320_calib.npy",
        8,
    );
    let m = Model::from_bytes(&det).unwrap();
    // its stem's pre-activation is channel-scaled (per-channel output multipliers, a table per channel)
    assert!(
        m.meta("quant.channel_scaled")
            .is_some_and(|v| !v.is_empty()),
        "det int8 has channel-scaled tensors"
    );
    let x: ArrayD<f32> = read_npy(tern_tests::model("data/out/det320_eval.npy")).unwrap();
    int8_tensors_match(&m, gpu, &x.index_axis(Axis(0), 0), "det320 int8");

    // PicoDet layout: hard-swish outputs channel-scaled (a table per channel writes them, depthwise
    // convs read them with per-channel multipliers)
    let pages: ArrayD<f32> = read_npy(tern_tests::model("data/out/layout_calib.npy")).unwrap();
    let layout = all_int8(
        "cache/layout_cdla.onnx",
        "image",
        &[1, 3, 800, 608],
        "data/out/layout_calib.npy",
        4,
    );
    let m = Model::from_bytes(&layout).unwrap();
    let g = &m.graph;
    let lut_written = g.nodes.iter().any(|n| {
        matches!(n.op, tern::ir::Op::QLut)
            && g.tensors[n.outputs[0] as usize]
                .quant
                .as_ref()
                .is_some_and(|q| q.scale.len() > 1)
    });
    assert!(lut_written, "layout int8 has channel-scaled table outputs");
    int8_tensors_match(&m, gpu, &pages.index_axis(Axis(0), 0), "layout int8");
}

/// PP-OCR det int8 with its defaults: the float input stage ends in a pointwise conv that writes int8
/// (format 9). On the GPU that is the float conv into scratch past the plan's arena, then the int8
/// conversion: nothing falls back to the CPU, the stage's int8 output equals the CPU's but for values
/// the two backends' float rounding puts on either side of a step (at most one step apart), and the text
/// maps (p > 0.3) agree.
#[test]
fn a_float_conv_writing_int8_runs_on_the_gpu() {
    let Some(gpu) = tern_tests::gpu() else { return };
    let c = tern_tools::quant::CompressInt8 {
        calib: Some(&tern_tests::model("data/out/det320_calib.npy")),
        samples: Some(8),
        opts: tern_tools::quant::Int8Options {
            input_layer: tern_tools::quant::InputLayer::Float,
            ..Default::default()
        },
        progress: false,
    };
    let det = tern_tools::quant::compress_int8(
        &tern_tests::model("cache/ch_PP-OCRv4_det_infer.onnx"),
        &["x=1x3x320x320".parse().unwrap()],
        &c,
    )
    .unwrap()
    .0;
    let m = Model::from_bytes(&det).unwrap();
    let fused: Vec<u32> = m
        .graph
        .nodes
        .iter()
        .filter(|n| tern::cpu::ops::quant::float_conv_to_int8(&m, n))
        .map(|n| n.outputs[0])
        .collect();
    assert_eq!(fused.len(), 1, "the stem's last conv writes int8");
    let mut cpu = Session::new(&m, SessionOptions { threads: 1 }).unwrap();
    let mut g = GpuSession::new(&m, gpu).unwrap();
    assert!(g.fallback().0.is_empty(), "everything on the GPU");
    let xs: ArrayD<f32> = read_npy(tern_tests::model("data/out/det320_eval.npy")).unwrap();
    let n_out = m.outputs().next().unwrap().numel();
    let (mut both, mut either) = (0usize, 0usize);
    for x in xs.axis_iter(Axis(0)).take(3) {
        let x: Vec<f32> = x.iter().copied().collect();
        let (mut a, mut b) = (vec![0f32; n_out], vec![0f32; n_out]);
        let mut want = Vec::new();
        cpu.run_observed(
            &[&x],
            &mut [&mut a],
            Some(&mut |_, t, v| {
                if let (true, tern::session::Values::I8(q)) = (t == fused[0], v) {
                    want = q.to_vec();
                }
            }),
        )
        .unwrap();
        let mut got = Vec::new();
        g.run_observed(&[&x], &mut [&mut b], &mut |_, t, v| {
            if t == fused[0] {
                got = v.iter().map(|&b| b as i8).collect();
            }
        })
        .unwrap();
        assert_eq!(got.len(), want.len());
        let differ = got.iter().zip(&want).filter(|(p, q)| p != q).count();
        let far = got
            .iter()
            .zip(&want)
            .filter(|(p, q)| (**p as i32 - **q as i32).abs() > 1)
            .count();
        println!(
            "det320 int8: the float conv's int8 output differs in {differ} of {} values, {far} by more than a step",
            want.len()
        );
        assert_eq!(far, 0);
        assert!(differ * 1000 <= want.len(), "{differ} of {}", want.len());
        both += a
            .iter()
            .zip(&b)
            .filter(|(p, q)| **p > 0.3 && **q > 0.3)
            .count();
        either += a
            .iter()
            .zip(&b)
            .filter(|(p, q)| **p > 0.3 || **q > 0.3)
            .count();
    }
    let iou = both as f64 / either.max(1) as f64;
    println!("det320 int8: text maps GPU vs CPU IoU {iou:.4} ({either} pixels)");
    assert!(
        either > 1000 && iou > 0.95,
        "IoU {iou} over {either} pixels"
    );
}

/// ddddocr's recognizer in int8 (integer input stage too): its LSTM has no GPU kernel, so it runs on the
/// CPU between GPU layers (a multi-output node with int8-stored weights, widened by the CPU session alone), and every int8
/// tensor still equals the CPU's.
#[test]
fn an_lstm_runs_on_the_cpu_between_gpu_layers() {
    let Some(gpu) = tern_tests::gpu() else { return };
    let ocr = all_int8(
        "cache/common.onnx",
        "input1",
        &[1, 1, 64, 256],
        "data/out/ocr_calib.npy",
        4,
    );
    let m = Model::from_bytes(&ocr).unwrap();
    let x: ArrayD<f32> = read_npy(tern_tests::model("data/out/ocr_eval.npy")).unwrap();
    int8_tensors_match_with(&m, gpu, &x.index_axis(Axis(0), 0), "ocr int8", &["LSTM"]);
}

/// `onnx` (under models/) quantized integer end to end: percentile ranges from the first `samples` of
/// `calib`, the input stage int8 too (float layers round differently on the GPU).
fn all_int8(onnx: &str, input: &str, dims: &[usize], calib: &str, samples: usize) -> Vec<u8> {
    let c = tern_tools::quant::CompressInt8 {
        calib: Some(&tern_tests::model(calib)),
        samples: Some(samples),
        opts: tern_tools::quant::Int8Options {
            method: tern_tools::quant::calib::Method::Percentile(99.99),
            input_layer: tern_tools::quant::InputLayer::Int8,
            ..Default::default()
        },
        progress: false,
    };
    let shape = InputShape {
        name: input.into(),
        dims: dims.to_vec(),
    };
    tern_tools::quant::compress_int8(&tern_tests::model(onnx), &[shape], &c)
        .unwrap()
        .0
}

/// Runs `m` on the CPU and on `gpu` with input `x`: every int8 tensor identical, bit for bit.
fn int8_tensors_match(m: &Model, gpu: &tern::gpu::Gpu, x: &ndarray::ArrayViewD<f32>, name: &str) {
    int8_tensors_match_with(m, gpu, x, name, &[])
}

/// [`int8_tensors_match`] where the ops `on_cpu` (by name) have no GPU kernel and run on the CPU.
fn int8_tensors_match_with(
    m: &Model,
    gpu: &tern::gpu::Gpu,
    x: &ndarray::ArrayViewD<f32>,
    name: &str,
    on_cpu: &[&str],
) {
    let mut cpu = Session::new(m, SessionOptions { threads: 1 }).unwrap();
    let mut g = GpuSession::new(m, gpu).unwrap();
    let fell: Vec<&str> = g
        .fallback()
        .0
        .iter()
        .map(|&n| m.graph.nodes[n].op.name())
        .collect();
    assert_eq!(fell, on_cpu, "{name}: the nodes on the CPU");
    let x: Vec<f32> = x.iter().copied().collect();
    let mut outs: Vec<Vec<f32>> = m.outputs().map(|t| vec![0.0; t.numel()]).collect();
    let mut want: Vec<Vec<u8>> = Vec::new();
    let mut f = |_: usize, _: u32, v: tern::session::Values| {
        if let tern::session::Values::I8(q) = v {
            want.push(q.iter().map(|&b| b as u8).collect());
        }
    };
    let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
    cpu.run_observed(&[&x], &mut o, Some(&mut f)).unwrap();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
    g.run_observed(&[&x], &mut o, &mut |_, t, b| {
        if m.graph.tensors[t as usize].dtype == tern::DType::I8 {
            got.push(b.to_vec());
        }
    })
    .unwrap();
    assert_eq!(got.len(), want.len());
    let same = got.iter().zip(&want).filter(|(a, b)| a == b).count();
    println!(
        "{name}: {same} of {} int8 tensors identical on GPU and CPU",
        want.len()
    );
    assert_eq!(same, want.len());
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

/// A model larger than the GPU can bind is refused at session creation with an error that names what does
/// not fit (never a panic or a device loss mid-run).
#[test]
fn oversized_models_are_refused_with_a_clear_error() {
    let Some(gpu) = tern_tests::gpu() else { return };
    let bytes = tern_tools::compress_float(
        &tern_tests::model("cache/ch_PP-OCRv4_det_infer.onnx"),
        &[InputShape {
            name: "x".into(),
            dims: vec![1, 3, 4096, 4096],
        }],
    )
    .unwrap();
    let m = Model::from_bytes(&bytes).unwrap();
    let too_big = m.plan.arena_bytes > gpu.max_binding_bytes();
    match GpuSession::new(&m, gpu) {
        Err(e) => {
            assert!(too_big, "refused though the arena fits: {e}");
            assert_eq!(e.kind, tern::ErrorKind::TooLarge, "{e}");
            assert!(
                e.context.contains("arena") && e.context.contains("bytes"),
                "{e}"
            );
            println!("refused: {e}");
        }
        Ok(_) => {
            assert!(!too_big, "an arena above the binding limit was accepted");
            println!("this GPU binds the 4096x4096 det arena; nothing to refuse")
        }
    }
}

/// A lost device (here released under a live session, as a driver reset would) makes the next runs fail
/// with a Device error that names the GPU: no hang, no panic. Its own `Gpu`, not the shared one.
#[test]
fn a_lost_device_is_an_error_not_a_hang() {
    if tern_tests::gpu().is_none() {
        return;
    }
    let gpu = tern::gpu::Gpu::new(&tern::gpu::GpuOptions {
        allow_cpu_adapter: true,
        ..Default::default()
    })
    .unwrap();
    let digits = tern_tools::compress_float(&tern_tests::model("digits/digits.onnx"), &[]).unwrap();
    let m = Model::from_bytes(&digits).unwrap();
    let mut s = GpuSession::new(&m, &gpu).unwrap();
    let x = vec![0.5f32; 64];
    let mut y = vec![0f32; 10];
    s.run_into(&[&x], &mut [&mut y]).unwrap();
    gpu.release();
    for _ in 0..2 {
        let e = s.run_into(&[&x], &mut [&mut y]).unwrap_err();
        assert_eq!(e.kind, tern::ErrorKind::Device, "{e}");
        assert!(e.context.contains("lost"), "{e}");
        println!("after release: {e}");
    }
}

/// A sample model's float artifact, its evaluation set and the samples the f16 tests run.
fn float_case(name: &str) -> (Vec<u8>, ArrayD<f32>, usize) {
    let (onnx, dims, data, samples) = match name {
        "digits" => ("digits/digits.onnx", vec![], "digits/X_test.npy", 64),
        "cls" => (
            "cache/ch_ppocr_mobile_v2.0_cls_infer.onnx",
            vec![1, 3, 48, 192],
            "data/out/cls_eval.npy",
            8,
        ),
        _ => (
            "cache/ch_PP-OCRv4_det_infer.onnx",
            vec![1, 3, 320, 320],
            "data/out/det320_eval.npy",
            2,
        ),
    };
    let shapes: Vec<InputShape> = if dims.is_empty() {
        vec![]
    } else {
        vec![InputShape {
            name: "x".into(),
            dims,
        }]
    };
    let bytes = tern_tools::compress_float(&tern_tests::model(onnx), &shapes).unwrap();
    (bytes, read_npy(tern_tests::model(data)).unwrap(), samples)
}

/// A GPU session with `opts` against the CPU's f32 run on `samples` rows of `xs`: worst relative L2,
/// top-1 agreements, and the text-map IoU at p > 0.3 (for det).
fn f16_variant(
    m: &Model,
    g: &mut GpuSession,
    xs: &ArrayD<f32>,
    samples: usize,
) -> (f64, usize, f64) {
    let mut cpu = Session::new(m, SessionOptions { threads: 1 }).unwrap();
    let n = m.outputs().next().unwrap().numel();
    let (mut rel, mut agree, mut inter, mut union) = (0f64, 0usize, 0usize, 0usize);
    let top = |v: &[f32]| {
        v.iter()
            .enumerate()
            .max_by(|p, q| p.1.total_cmp(q.1))
            .unwrap()
            .0
    };
    for x in xs.axis_iter(Axis(0)).take(samples) {
        let x: Vec<f32> = x.iter().copied().collect();
        let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
        cpu.run_into(&[&x], &mut [&mut a]).unwrap();
        g.run_into(&[&x], &mut [&mut b]).unwrap();
        rel = rel.max(tern_tests::rel_l2(&b, &a));
        agree += (top(&a) == top(&b)) as usize;
        for (p, q) in a.iter().zip(&b) {
            inter += (*p > 0.3 && *q > 0.3) as usize;
            union += (*p > 0.3 || *q > 0.3) as usize;
        }
    }
    (rel, agree, inter as f64 / union.max(1) as f64)
}

/// The f16-weights variant (weights stored as halves on the GPU, f32 arithmetic) within its stated
/// tolerance of the CPU's f32 outputs on PP-OCR cls and det320.
#[test]
fn f16_weights_stay_within_tolerance() {
    let Some(gpu) = tern_tests::gpu() else { return };
    let opts = tern::gpu::GpuSessionOptions {
        f16_weights: true,
        ..Default::default()
    };
    for name in ["cls", "det320"] {
        let (bytes, xs, _) = float_case(name);
        let m = Model::from_bytes(&bytes).unwrap();
        let mut g = GpuSession::with_options(&m, gpu, &opts).unwrap();
        let (rel, _, iou) = f16_variant(&m, &mut g, &xs, 1);
        println!(
            "{name} f32 with f16 weights on the GPU: rel L2 {rel:.2e}, map IoU {iou:.4} vs the CPU"
        );
        // the stated tolerance (GpuSessionOptions::f16_weights); a zero error would mean f16 went unused
        let tol = if name == "cls" { 1e-3 } else { 1e-1 };
        assert!(rel < tol && rel > 0.0, "{name}: rel L2 {rel}");
        if name == "det320" {
            assert!(iou > 0.98, "det320 map IoU {iou}");
        }
    }
}

/// f16 activations (`GpuSessionOptions::f16_activations`: activations stored as f16, f32 arithmetic)
/// within their stated tolerance of the CPU's f32 outputs on whole models, same decisions (digits and
/// cls top-1, det's text map); an int8 artifact keeps f32 for its float layers and its integers.
#[test]
fn f16_activations_stay_within_tolerance() {
    let Some(gpu) = tern_tests::gpu() else { return };
    if !gpu.has_f16() {
        println!("skipped: the adapter has no SHADER_F16");
        return;
    }
    let opts = tern::gpu::GpuSessionOptions {
        f16_activations: true,
        ..Default::default()
    };
    for name in ["digits", "cls", "det320"] {
        let (bytes, xs, samples) = float_case(name);
        let m = Model::from_bytes(&bytes).unwrap();
        let mut g = GpuSession::with_options(&m, gpu, &opts).unwrap();
        assert!(g.f16_activations() && g.fallback().0.is_empty());
        let (rel, agree, iou) = f16_variant(&m, &mut g, &xs, samples);
        println!(
            "{name} f32 with f16 activations on the GPU: worst rel L2 {rel:.2e}, {} vs the CPU",
            if name == "det320" {
                format!("text-map IoU {iou:.4}")
            } else {
                format!("top-1 {agree}/{samples}")
            }
        );
        // the stated tolerance; a zero error would mean f16 went unused
        let tol = if name == "det320" { 1e-1 } else { 2e-3 };
        assert!(rel < tol && rel > 0.0, "{name}: rel L2 {rel}");
        if name == "det320" {
            assert!(iou > 0.99, "det320 map IoU {iou}");
        } else {
            assert_eq!(agree, samples, "{name}: top-1 changed");
        }
    }
    // an int8 artifact: f16 activations do not apply, its integers stay the CPU's
    let q = std::fs::read(tern_tests::root().join("runtime/tests/data/cls_int8.tern")).unwrap();
    let m = Model::from_bytes(&q).unwrap();
    let mut g = GpuSession::with_options(&m, gpu, &opts).unwrap();
    assert!(!g.f16_activations());
    let mut cpu = Session::new(&m, SessionOptions { threads: 1 }).unwrap();
    let xs: ArrayD<f32> = read_npy(tern_tests::model("data/out/cls_eval.npy")).unwrap();
    let x: Vec<f32> = xs.index_axis(Axis(0), 0).iter().copied().collect();
    let (mut a, mut b) = (vec![0f32; 2], vec![0f32; 2]);
    cpu.run_into(&[&x], &mut [&mut a]).unwrap();
    g.run_into(&[&x], &mut [&mut b]).unwrap();
    assert!(a.iter().zip(&b).all(|(p, q)| tern_tests::gpu_close(*q, *p)));
}

/// Pooling windows far larger than the input (kernel and stride 2^20, padding 2^20 − 1) visit only the
/// taps inside the input on the GPU too (see artifact.rs `huge_pooling_windows_cost_only_the_input`):
/// f32 average and max (dilated or not) equal the CPU's (the int8 shader clips its taps the same way).
#[test]
fn huge_pooling_windows_match_the_cpu() {
    let Some(gpu) = tern_tests::gpu() else { return };
    for (kind, dilations) in [
        (
            tern::ir::PoolKind::Avg {
                count_include_pad: false,
            },
            [1, 1],
        ),
        (tern::ir::PoolKind::Max, [2, 2]),
        (tern::ir::PoolKind::Max, [1, 1]),
    ] {
        let bytes = tern_tests::huge_pool(kind, dilations);
        let m = Model::from_bytes(&bytes).unwrap();
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let n = m.outputs().next().unwrap().numel();
        let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
        Session::new(&m, SessionOptions { threads: 1 })
            .unwrap()
            .run_into(&[&x], &mut [&mut a])
            .unwrap();
        GpuSession::new(&m, gpu)
            .unwrap()
            .run_into(&[&x], &mut [&mut b])
            .unwrap();
        assert_eq!(a, b, "{kind:?} dilations {dilations:?}");
    }
}

/// An op without a GPU kernel runs on the CPU from the CPU session's own weights: the GPU's weights buffer
/// holds no f32 copy of an LSTM's int8-stored W and R (hidden 64: 32 KiB as int8, 128 KiB widened), and
/// the outputs equal the CPU's bit for bit.
#[test]
fn cpu_fallback_weights_stay_off_the_gpu() {
    use tern::ir::quant::QParams;
    use tern::ir::{DType, Direction, Op};
    let Some(gpu) = tern_tests::gpu() else { return };
    let (hidden, features) = (64usize, 64usize);
    let rows = 4 * hidden;
    let mut g = tern_tools::graph::ToolGraph::default();
    let x = g.add_tensor("x", &[3, 1, features]);
    g.graph.inputs.push(x);
    let int8 = |g: &mut tern_tools::graph::ToolGraph, name: &str, cols: usize, seed: u64| {
        let q: Vec<u8> = tern_tools::cli::bench::seeded(rows * cols, seed)
            .iter()
            .map(|v| ((v * 127.0) as i8) as u8)
            .collect();
        let p = QParams {
            scale: vec![0.01; rows],
            zero_point: vec![0; rows],
            axis: Some(1),
        };
        g.add_int_const(name, &[1, rows, cols], DType::I8, Some(p), q)
    };
    let w = int8(&mut g, "W", features, 1);
    let r = int8(&mut g, "R", hidden, 2);
    let b = g.add_const("B", &[1, 2 * rows], vec![0.01; 2 * rows]);
    let h0 = g.add_const("h0", &[1, 1, hidden], vec![0.0; hidden]);
    let c0 = g.add_const("c0", &[1, 1, hidden], vec![0.0; hidden]);
    let op = Op::Lstm {
        hidden: hidden as u32,
        direction: Direction::Forward,
        clip: None,
        peepholes: false,
    };
    let outs = ["Y".to_string(), "Y_h".to_string(), "Y_c".to_string()];
    let y = g
        .emit("lstm", op, vec![x, w, r, b, h0, c0], &outs, None)
        .unwrap();
    g.graph.outputs.push(y[0]);
    let bytes = tern_tools::export::to_bytes(&g, vec![]).unwrap();
    let m = Model::from_bytes(&bytes).unwrap();
    let mut gs = GpuSession::new(&m, gpu).unwrap();
    assert_eq!(gs.fallback().0, [0]);
    let stored = rows * (features + hidden) + 2 * rows * 4;
    println!(
        "GPU weights {} B for {stored} B of stored weights",
        gs.weight_bytes()
    );
    assert!(
        gs.weight_bytes() < 2 * stored as u64,
        "{} B: the int8 W and R widened on the GPU",
        gs.weight_bytes()
    );
    let xs = tern_tools::cli::bench::seeded(3 * features, 5);
    let n = 3 * hidden;
    let (mut a, mut c) = (vec![0f32; n], vec![0f32; n]);
    gs.run_into(&[&xs], &mut [&mut a]).unwrap();
    let mut cpu = Session::new(&m, SessionOptions { threads: 1 }).unwrap();
    cpu.run_into(&[&xs], &mut [&mut c]).unwrap();
    assert_eq!(a, c);
}

/// A 16-bit artifact (format 10) on the GPU backend: its int16 nodes have no GPU kernels and run on the
/// CPU fallback, their int16 tensors moved between the two, the float head on the GPU: the outputs are the
/// CPU's within the float head's 1e-5.
#[test]
fn int16_nodes_run_on_the_cpu_fallback() {
    let Some(gpu) = tern_tests::gpu() else {
        return;
    };
    let bytes =
        std::fs::read(tern_tests::root().join("runtime/tests/data/cls_int16.tern")).unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    let mut cpu = Session::new(&model, SessionOptions { threads: 1 }).unwrap();
    let mut g = GpuSession::new(&model, gpu).unwrap();
    let q16 = model
        .graph
        .nodes
        .iter()
        .filter(|n| tern::cpu::q16::is_q16(&model, n))
        .count();
    assert_eq!(
        g.fallback().0.len(),
        q16,
        "every 16-bit node on the CPU, no other"
    );
    let x: ArrayD<f32> = read_npy(tern_tests::model("data/out/cls_eval.npy")).unwrap();
    for x in x.axis_iter(Axis(0)).take(3) {
        let x: Vec<f32> = x.iter().copied().collect();
        let (mut a, mut b) = (vec![0f32; 2], vec![0f32; 2]);
        cpu.run_into(&[&x], &mut [&mut a]).unwrap();
        g.run_into(&[&x], &mut [&mut b]).unwrap();
        println!("cls int16: CPU {a:?}, GPU with fallback {b:?}");
        assert!(
            b.iter().zip(&a).all(|(g, c)| tern_tests::gpu_close(*g, *c)),
            "{a:?} vs {b:?}"
        );
    }
}
