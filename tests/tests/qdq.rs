//! Models quantized by ONNX Runtime's own quantizer (`tests/qdq/gen_qdq.py`: QDQ with int8 and uint8
//! activations, per-channel and per-tensor weights, the QOperator form with QLinearConv/QLinearMatMul,
//! and dynamic quantization with ConvInteger/MatMulInteger) import into tern's integer ops. The reference
//! is ORT's output on the same quantized model: tern must stay within one quantization step of the
//! model's output (rounding differs: ORT requantizes in float, tern in Q31 fixed point).
use ndarray::{ArrayD, Axis};
use ndarray_npy::read_npy;
use std::path::{Path, PathBuf};
use tern::{Model, Session, SessionOptions};
use tern_tools::quant::{calib::Method, compress_int8, CompressInt8, Int8Options};

fn cache_dir() -> PathBuf {
    if let Ok(d) = std::env::var("TERN_QDQ_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    PathBuf::from(home).join(".cache/tern-qdq")
}

fn ensure_cases() -> PathBuf {
    // the tests of this file run in parallel: generate once
    static ONCE: std::sync::Once = std::sync::Once::new();
    let dir = cache_dir();
    ONCE.call_once(|| generate(&dir));
    dir
}

fn generate(dir: &Path) {
    let script = tern_tests::root().join("tests/qdq/gen_qdq.py");
    let st = std::process::Command::new("python3")
        .arg(&script)
        .arg(dir)
        .status()
        .expect("running python3");
    assert!(
        st.success(),
        "{} failed (needs `pip install onnx onnxruntime`)",
        script.display()
    );
}

/// tern's outputs for every evaluation sample of case `d`, from artifact bytes.
fn run_tern(bytes: &[u8], d: &Path) -> Vec<Vec<f32>> {
    let model = Model::from_bytes(bytes).unwrap();
    let mut s = Session::new(&model, SessionOptions { threads: 1 }).unwrap();
    let xs: ArrayD<f32> = read_npy(d.join("inputs.npy")).unwrap();
    xs.axis_iter(Axis(0))
        .map(|x| {
            let x: Vec<f32> = x.iter().copied().collect();
            let mut y = vec![0f32; 10];
            s.run_into(&[&x], &mut [&mut y]).unwrap();
            y
        })
        .collect()
}

fn reference(d: &Path, file: &str) -> Vec<Vec<f32>> {
    let r: ArrayD<f32> = read_npy(d.join(file)).unwrap();
    r.axis_iter(Axis(0))
        .map(|v| v.iter().copied().collect())
        .collect()
}

fn int8(d: &Path, calib: bool) -> Vec<u8> {
    let cpath = d.join("calib.npy");
    let c = CompressInt8 {
        calib: calib.then_some(cpath.as_path()),
        samples: None,
        opts: opts(Method::Percentile(99.99)),
        progress: false,
    };
    compress_int8(&d.join("model.onnx"), &[], &c)
        .unwrap_or_else(|e| panic!("{}: {e:#}", d.display()))
        .0
}

/// Int8 options with the given method, the rest the defaults.
fn opts(method: Method) -> Int8Options {
    Int8Options {
        method,
        ..Default::default()
    }
}

fn count_int_ops(bytes: &[u8]) -> usize {
    let m = Model::from_bytes(bytes).unwrap();
    m.graph
        .nodes
        .iter()
        .filter(|n| {
            matches!(
                n.op,
                tern::ir::Op::QConv { .. } | tern::ir::Op::QMatMul { .. }
            )
        })
        .count()
}

#[test]
fn ort_quantized_models_match_ort_within_one_step() {
    let dir = ensure_cases();
    for case in ["qdq_s8s8_channel", "qdq_u8s8_tensor", "qoperator_u8s8"] {
        let d = dir.join(case);
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("case.json")).unwrap()).unwrap();
        let step = meta["out_step"].as_f64().unwrap() as f32;
        // no --calib: the model's own parameters
        let bytes = int8(&d, false);
        let ints = count_int_ops(&bytes);
        assert!(
            ints >= 4,
            "{case}: only {ints} integer conv/matmul ops: the model's quantization was not kept"
        );
        let (got, want) = (run_tern(&bytes, &d), reference(&d, "ort.npy"));
        let mut worst = 0f32;
        for (g, w) in got.iter().zip(&want) {
            for (a, b) in g.iter().zip(w) {
                worst = worst.max((a - b).abs() / step);
            }
        }
        println!(
            "{case}: {ints} integer conv/matmul, worst |tern - ORT| = {worst:.3} output steps"
        );
        assert!(
            worst <= 1.0 + 1e-3,
            "{case}: tern differs from ORT by {worst} quantization steps"
        );
    }
}

#[test]
fn dynamic_quantized_model_imports_exactly_and_quantizes() {
    let d = ensure_cases().join("dynamic_u8");
    // float import: DynamicQuantizeLinear stays float, ConvInteger/MatMulInteger become the float ops on
    // dequantized weights: the result is the model with quantized weights and float activations
    let fbytes = tern_tools::compress_float(&d.join("model.onnx"), &[]).unwrap();
    let (f, want) = (run_tern(&fbytes, &d), reference(&d, "float.npy"));
    let rel = |got: &[Vec<f32>]| {
        let (mut num, mut den) = (0f64, 0f64);
        for (g, w) in got.iter().zip(&want) {
            for (a, b) in g.iter().zip(w) {
                num += (*a as f64 - *b as f64).powi(2);
                den += (*b as f64).powi(2);
            }
        }
        (num / den).sqrt()
    };
    let rf = rel(&f);
    // uint8 weights: each weight moves by at most half a step of its tensor's scale
    assert!(
        rf < 0.05,
        "float import of the dynamic model: rel L2 {rf} vs the float model"
    );
    // then tern's static int8 from calibration samples
    let bytes = int8(&d, true);
    assert!(count_int_ops(&bytes) >= 4);
    let ri = rel(&run_tern(&bytes, &d));
    println!("dynamic model: float import rel L2 {rf:.4}, tern int8 rel L2 {ri:.4} vs float");
    assert!(ri < 0.1, "tern int8 of the dynamic model: rel L2 {ri}");
}

/// ORT's outputs for `model` (ONNX bytes) on the rows of `inputs` (an .npy path).
fn run_ort(model: &[u8], inputs: &Path) -> Vec<Vec<f32>> {
    let dir = tempfile::tempdir().unwrap();
    let (m, o) = (dir.path().join("m.onnx"), dir.path().join("o.npy"));
    std::fs::write(&m, model).unwrap();
    let script = tern_tests::root().join("tests/qdq/run_ort.py");
    let st = std::process::Command::new("python3")
        .args([
            script.as_os_str(),
            m.as_os_str(),
            inputs.as_os_str(),
            o.as_os_str(),
        ])
        .status()
        .expect("running python3");
    assert!(st.success(), "{} failed", script.display());
    let r: ArrayD<f32> = read_npy(&o).unwrap();
    r.axis_iter(Axis(0))
        .map(|v| v.iter().copied().collect())
        .collect()
}

/// The quantization step of the last int8 tensor dequantized on the way to the output (the output's own
/// step, or that of the logits before a float tail such as Softmax, which does not widen differences).
fn output_step(bytes: &[u8]) -> f32 {
    let m = Model::from_bytes(bytes).unwrap();
    let n = m
        .graph
        .nodes
        .iter()
        .rev()
        .find(|n| matches!(n.op, tern::ir::Op::Dequantize))
        .expect("an int8 model dequantizes somewhere");
    m.graph.tensors[n.inputs[0] as usize]
        .quant
        .as_ref()
        .unwrap()
        .scale[0]
}

/// `tern export --onnx-qdq` (default and `--exact`): ORT runs the exported model and gives tern's outputs
/// within one step, on the test CNN (quantized by tern from its float model) and on the committed PP-OCR
/// cls int8 fixture.
#[test]
fn exported_qdq_runs_on_ort_like_tern() {
    let d = ensure_cases().join("qdq_s8s8_channel");
    let tmp = tempfile::tempdir().unwrap();
    // the test CNN, quantized by tern from the float model
    let c = CompressInt8 {
        calib: Some(&d.join("calib.npy")),
        samples: None,
        opts: opts(Method::Percentile(99.99)),
        progress: false,
    };
    let net = compress_int8(&cache_dir().join("float.onnx"), &[], &c)
        .unwrap()
        .0;
    let cls = std::fs::read(tern_tests::root().join("runtime/tests/data/cls_int8.tern")).unwrap();
    let cls_inputs = tmp.path().join("cls.npy");
    {
        // four evaluation images, stored as (N, 3, 48, 192)
        let all: ArrayD<f32> = read_npy(tern_tests::model("data/out/cls_eval.npy")).unwrap();
        let four = all
            .slice_axis(Axis(0), ndarray::Slice::from(0..4))
            .to_owned();
        ndarray_npy::write_npy(&cls_inputs, &four).unwrap();
    }
    for (name, bytes, inputs, width) in [
        ("test CNN", &net, d.join("inputs.npy"), 10usize),
        ("PP-OCR cls", &cls, cls_inputs, 2),
    ] {
        let model = Model::from_bytes(bytes).unwrap();
        let xs: ArrayD<f32> = read_npy(&inputs).unwrap();
        let step = output_step(bytes);
        // the default export, and the exact one
        for exact in [false, true] {
            let opts = tern_tools::onnx_export::ExportOptions {
                exact,
                ..Default::default()
            };
            let onnx = tern_tools::onnx_export::to_onnx_with(&model, opts).unwrap();
            let want = run_ort(&onnx, &inputs);
            let mut s = Session::new(&model, SessionOptions { threads: 1 }).unwrap();
            let mut worst = 0f32;
            for (x, w) in xs.axis_iter(Axis(0)).zip(&want) {
                let x: Vec<f32> = x.iter().copied().collect();
                let mut y = vec![0f32; width];
                s.run_into(&[&x], &mut [&mut y]).unwrap();
                for (a, b) in y.iter().zip(w) {
                    worst = worst.max((a - b).abs() / step);
                }
            }
            println!("{name} (exact {exact}): exported QDQ on ORT vs tern: worst {worst:.3} output steps");
            assert!(
                worst <= 1.0 + 1e-3,
                "{name} (exact {exact}): ORT on the export differs by {worst} steps"
            );
        }
    }
}

/// Case directory `d`'s float.onnx compressed to int8 by tern (calib.npy, default options, every layer int8
/// including the input stage).
fn compress_all_int8(d: &Path) -> Vec<u8> {
    let c = CompressInt8 {
        calib: Some(&d.join("calib.npy")),
        samples: None,
        opts: Int8Options {
            input_layer: tern_tools::quant::InputLayer::Int8,
            ..Default::default()
        },
        progress: false,
    };
    compress_int8(&d.join("float.onnx"), &[], &c).unwrap().0
}

/// `tern export --onnx-qdq` writes integer Add/Sub/Mul (the default `--binary-ops integer`) as integer ONNX
/// ops with tern's rounding: on a model of such ops (tests/qdq/gen_qdq.py's `binary`: operands broadcast
/// per channel and per row, a fused Relu, zero points of both signs) ONNX Runtime's outputs on the export
/// equal tern's exactly, over 16 samples of 5120 outputs. The `qdq` form (DequantizeLinear → op →
/// QuantizeLinear) rounds ORT's way: within one step of tern, but not equal, which is what the integer
/// form mends (and what shows that this comparison can fail).
#[test]
fn exported_integer_binary_ops_equal_tern() {
    use tern_tools::onnx_export::{to_onnx_with, BinaryForm, ExportOptions};
    let d = ensure_cases().join("binary");
    let bytes = compress_all_int8(&d);
    let model = Model::from_bytes(&bytes).unwrap();
    let binary = model
        .graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, tern::ir::Op::QBinary { .. }))
        .count();
    assert_eq!(binary, 5, "every Add/Sub/Mul is integer");
    let inputs = d.join("inputs.npy");
    let xs: ArrayD<f32> = read_npy(&inputs).unwrap();
    let tern_out = run_all(&bytes, &xs);
    let step = output_step(&bytes);
    let mut differing = [0usize; 2];
    for (k, form) in [BinaryForm::Integer, BinaryForm::Qdq]
        .into_iter()
        .enumerate()
    {
        let opts = ExportOptions {
            binary: form,
            exact: false,
        };
        let ort = run_ort(&to_onnx_with(&model, opts).unwrap(), &inputs);
        for (t, o) in tern_out.iter().zip(&ort) {
            for (a, b) in t.iter().zip(o) {
                assert!((a - b).abs() <= step * 1.001, "{form:?}: {a} vs {b}");
                differing[k] += (a != b) as usize;
            }
        }
    }
    println!(
        "outputs differing from tern's: integer form {}, qdq form {}",
        differing[0], differing[1]
    );
    assert_eq!(differing[0], 0, "the integer form computes tern's integers");
    assert!(differing[1] > 0, "the qdq form rounds ORT's way somewhere");
}

/// `tern export --onnx-qdq --exact` writes convolutions (3×3, strided depthwise, 1×1 with bias), a
/// batched MatMul and GlobalAveragePool as integer ONNX ops with tern's requantization, besides the
/// binary ops: on gen_qdq.py's `intops` CNN, every op integer, ONNX Runtime's outputs on the export
/// equal tern's exactly over 16 samples (the default export's convolutions requantize ORT's way: within
/// one step).
#[test]
fn exact_export_equals_tern() {
    use tern_tools::onnx_export::{to_onnx_with, ExportOptions};
    let d = ensure_cases().join("intops");
    let bytes = compress_all_int8(&d);
    let model = Model::from_bytes(&bytes).unwrap();
    let ops: Vec<String> = model
        .graph
        .nodes
        .iter()
        .map(|n| {
            format!("{:?}", n.op)
                .split([' ', '(', '{'])
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    for want in ["QConv", "QMatMul", "GlobalPool", "QBinary"] {
        assert!(ops.iter().any(|o| o == want), "{want} in {ops:?}");
    }
    let inputs = d.join("inputs.npy");
    let xs: ArrayD<f32> = read_npy(&inputs).unwrap();
    let tern_out = run_all(&bytes, &xs);
    let step = output_step(&bytes);
    for exact in [true, false] {
        let opts = ExportOptions {
            exact,
            ..Default::default()
        };
        let ort = run_ort(&to_onnx_with(&model, opts).unwrap(), &inputs);
        let (mut differing, mut worst) = (0, 0f32);
        for (t, o) in tern_out.iter().zip(&ort) {
            for (a, b) in t.iter().zip(o) {
                differing += (a != b) as usize;
                worst = worst.max((a - b).abs() / step);
            }
        }
        println!("exact {exact}: {differing} outputs differ from tern's, worst {worst:.2} steps");
        if exact {
            assert_eq!(differing, 0, "the exact export computes tern's integers");
        }
    }
    // the float artifact of the same model: its GlobalAveragePool (the same op as the int8 one) and
    // every other op stay float in the exact export
    let f32_bytes = tern_tools::compress_float(&d.join("float.onnx"), &[]).unwrap();
    let f32_model = Model::from_bytes(&f32_bytes).unwrap();
    let opts = ExportOptions {
        exact: true,
        ..Default::default()
    };
    let ort = run_ort(&to_onnx_with(&f32_model, opts).unwrap(), &inputs);
    for (t, o) in run_all(&f32_bytes, &xs).iter().zip(&ort) {
        for (a, b) in t.iter().zip(o) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
                "float model: {a} vs {b}"
            );
        }
    }
}

/// Outputs (per sample, flattened) of the artifact `bytes` on the samples of `xs`.
fn run_all(bytes: &[u8], xs: &ArrayD<f32>) -> Vec<Vec<f32>> {
    let model = Model::from_bytes(bytes).unwrap();
    let width: usize = model.outputs().map(|t| t.numel()).sum();
    let mut s = Session::new(&model, SessionOptions { threads: 1 }).unwrap();
    xs.axis_iter(Axis(0))
        .map(|x| {
            let x: Vec<f32> = x.iter().copied().collect();
            let mut y = vec![0f32; width];
            s.run_into(&[&x], &mut [&mut y]).unwrap();
            y
        })
        .collect()
}

/// The int8 choices' measure, in float64: the mean over samples of each sample's relative L2 of `got`
/// against `want`, samples with under 1% of the median sample's output energy left out.
fn sample_error(got: &[Vec<f32>], want: &[Vec<f32>]) -> f64 {
    let energy = |w: &[f32]| w.iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
    let mut energies: Vec<f64> = want.iter().map(|w| energy(w)).collect();
    energies.sort_by(f64::total_cmp);
    let typical = energies[energies.len() / 2];
    let per: Vec<f64> = got
        .iter()
        .zip(want)
        .filter(|(_, w)| energy(w) > 0.01 * typical)
        .map(|(g, w)| {
            let num: f64 = g
                .iter()
                .zip(w)
                .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                .sum();
            (num / energy(w)).sqrt()
        })
        .collect();
    per.iter().sum::<f64>() / per.len() as f64
}

/// `--calib-method auto` (the default) keeps the candidate method whose int8 outputs are closest to the float model's on the calibration samples: its artifact computes
/// exactly what the explicitly chosen candidate's does, and no other candidate's artifact is closer to the
/// float outputs by more than the margin (per-sample float64 relative L2, computed here from the float
/// artifact).
#[test]
fn calib_method_auto_keeps_the_closest_candidate() {
    let d = ensure_cases().join("qdq_s8s8_channel");
    let onnx = cache_dir().join("float.onnx");
    let calib = d.join("calib.npy");
    let xs: ArrayD<f32> = read_npy(&calib).unwrap();
    let float = tern_tools::compress_float(&onnx, &[]).unwrap();
    let want = run_all(&float, &xs);
    let err = |bytes: &[u8]| sample_error(&run_all(bytes, &xs), &want);
    let quant = |method| {
        let c = CompressInt8 {
            calib: Some(&calib),
            samples: None,
            opts: opts(method),
            progress: false,
        };
        compress_int8(&onnx, &[], &c).unwrap().0
    };
    let auto = quant(Method::Auto);
    let model = Model::from_bytes(&auto).unwrap();
    let get = |k: &str| {
        model
            .meta(k)
            .unwrap_or_else(|| panic!("metadata {k} missing"))
            .to_string()
    };
    let chosen = get("quant.method");
    assert!(
        get("quant.method_choice").contains(&format!("{chosen}=")),
        "the choice record names every candidate"
    );
    let mut errs = Vec::new();
    for m in tern_tools::quant::calib::AUTO_CANDIDATES {
        let name = format!("{m:?}").to_lowercase();
        let bytes = quant(m);
        let e = err(&bytes);
        println!("{name}: output rel-L2 {e:.5}");
        if name == chosen {
            assert_eq!(
                run_all(&auto, &xs),
                run_all(&bytes, &xs),
                "auto's artifact is {name}'s"
            );
        }
        errs.push((name, e));
    }
    // the choice is the best candidate, up to the margin by which a later one must beat an earlier one
    let best = errs.iter().map(|e| e.1).fold(f64::MAX, f64::min);
    let k = errs
        .iter()
        .position(|e| e.0 == chosen)
        .expect("chosen is a candidate");
    let m = tern_tools::quant::AUTO_MARGIN;
    assert!(
        errs[k].1 * (1.0 - m) <= best * (1.0 + 1e-9),
        "auto chose {chosen} but the candidates score {errs:?}"
    );
    assert!(
        k == 0 || errs[k].1 < errs[0].1 * (1.0 - m) * (1.0 + 1e-9),
        "auto left {} for less than the margin: {errs:?}",
        errs[0].0
    );
}

/// The QDQ export of channel-scaled tensors (per-axis Quantize/DequantizeLinear, one table per channel
/// gathered at 256·channel + q + 128) runs on ORT like tern: PP-OCR det320 int8, whose stem is
/// channel-scaled; and with its input stage in float, whose convs carry PP-LCNetV3's affine after the
/// activation (format 6, exported as Mul/Add). Deep int8 models drift apart where ORT's float
/// requantization and tern's fixed point round a tie differently (per tensor as much: rel-L2 ~0.2 at
/// the map), so the text map is compared.
#[test]
fn exported_channel_scaled_det_runs_on_ort() {
    use tern_tools::quant::InputLayer;
    for (stage, what) in [
        (InputLayer::Auto, "channel-scaled"),
        (InputLayer::Float, "float stem"),
    ] {
        let c = CompressInt8 {
            calib: Some(&tern_tests::model("data/out/det320_calib.npy")),
            samples: Some(8),
            opts: Int8Options {
                input_layer: stage,
                ..opts(Method::Percentile(99.99))
            },
            progress: false,
        };
        let shape = tern_tools::import::InputShape {
            name: "x".into(),
            dims: vec![1, 3, 320, 320],
        };
        let det = compress_int8(
            &tern_tests::model("cache/ch_PP-OCRv4_det_infer.onnx"),
            &[shape],
            &c,
        )
        .unwrap()
        .0;
        let model = Model::from_bytes(&det).unwrap();
        let post = model
            .graph
            .nodes
            .iter()
            .filter(|n| matches!(n.op, tern::ir::Op::Conv { .. }) && n.inputs.len() == 5)
            .count();
        if stage == InputLayer::Float {
            assert_eq!(post, 2, "the float stem's two convs with their affine");
        } else {
            assert!(
                model
                    .meta("quant.channel_scaled")
                    .is_some_and(|v| !v.is_empty()),
                "det320 int8 has channel-scaled tensors"
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        let inputs = tmp.path().join("x.npy");
        let all: ArrayD<f32> = read_npy(tern_tests::model("data/out/det320_eval.npy")).unwrap();
        // image 3: rendered text (8% of the float map over 0.3; image 0 has none)
        let one = all
            .slice_axis(Axis(0), ndarray::Slice::from(3..4))
            .to_owned();
        ndarray_npy::write_npy(&inputs, &one).unwrap();
        let want = run_ort(&tern_tools::onnx_export::to_onnx(&model).unwrap(), &inputs);
        let mut s = Session::new(&model, SessionOptions { threads: 1 }).unwrap();
        let x: Vec<f32> = one.iter().copied().collect();
        let mut y = vec![0f32; 320 * 320];
        s.run_into(&[&x], &mut [&mut y]).unwrap();
        let (mut inter, mut union) = (0usize, 0usize);
        for (a, b) in y.iter().zip(&want[0]) {
            inter += (*a > 0.3 && *b > 0.3) as usize;
            union += (*a > 0.3 || *b > 0.3) as usize;
        }
        assert!(union > 1000, "{what}: the map marks text");
        let iou = inter as f64 / union as f64;
        println!("det320 {what}: exported QDQ on ORT vs tern: text-map IoU {iou:.3}");
        assert!(iou > 0.9, "{what}: text-map IoU {iou}");
    }
}

/// `--input-layer auto` (the default) keeps the input stage (the small layers at the model's input
/// resolution) in float exactly when rounding the input to its int8 grid alone costs at least
/// `INPUT_SHARE` of the int8 model's error, or else when the stage in float lowers that error by
/// `AUTO_MARGIN`: every error measured here in float64 from the artifacts (the input's on inputs rounded
/// to the int8 artifact's input grid), on PP-OCR det320 (an RGB image: the first rule) and cls (the
/// second).
#[test]
fn input_layer_auto_follows_the_input_error_share() {
    // det320 on 4 samples: rounding the input is a dominant error; cls on all 32 with percentile: it is
    // not (its input is x/127.5 − 1), so auto measures the stage in float instead
    let det = input_stage_case(
        "cache/ch_PP-OCRv4_det_infer.onnx",
        "data/out/det320_calib.npy",
        &[1, 3, 320, 320],
        4,
        3,
    );
    let cls = input_stage_case(
        "cache/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "data/out/cls_calib.npy",
        &[1, 3, 48, 192],
        32,
        2,
    );
    assert!(det.0, "det320's input rounding is a dominant error");
    assert!(
        !cls.0,
        "cls's input rounding is not: the measured branch is covered"
    );
    assert!(cls.1.contains("stage in float"), "{}", cls.1);
}

/// Compresses `onnx` (input `x` of `dims`) on the first `n` samples of `calib` with the input stage int8,
/// float and auto, checks auto's choice against the errors measured here from the artifacts, that the
/// float artifact's stage holds `convs` float convolutions reading the real input, and returns whether
/// rounding the input alone was a dominant error, with auto's metadata.
fn input_stage_case(
    onnx: &str,
    calib: &str,
    dims: &[usize],
    n: usize,
    convs: usize,
) -> (bool, String) {
    use tern_tools::quant::{InputLayer, AUTO_MARGIN, INPUT_SHARE};
    let (onnx, calib) = (tern_tests::model(onnx), tern_tests::model(calib));
    let shape = || tern_tools::import::InputShape {
        name: "x".into(),
        dims: dims.to_vec(),
    };
    let quant = |input_layer| {
        let c = CompressInt8 {
            calib: Some(&calib),
            samples: Some(n),
            opts: Int8Options {
                input_layer,
                ..opts(Method::Percentile(99.99))
            },
            progress: false,
        };
        compress_int8(&onnx, &[shape()], &c).unwrap().0
    };
    let (int8, float_in, auto) = (
        quant(InputLayer::Int8),
        quant(InputLayer::Float),
        quant(InputLayer::Auto),
    );
    let all: ArrayD<f32> = read_npy(&calib).unwrap();
    let xs = all
        .slice_axis(Axis(0), ndarray::Slice::from(0..n))
        .to_owned();
    let float = tern_tools::compress_float(&onnx, &[shape()]).unwrap();
    let want = run_all(&float, &xs);
    // the int8 artifact's input grid: the parameters of its Quantize node's output
    let m8 = Model::from_bytes(&int8).unwrap();
    let q = m8
        .graph
        .nodes
        .iter()
        .find(|n| matches!(n.op, tern::ir::Op::Quantize) && n.inputs[0] == m8.graph.inputs[0])
        .expect("the int8 model quantizes its input");
    let qp = m8.graph.tensors[q.outputs[0] as usize]
        .quant
        .clone()
        .unwrap();
    let (s, z) = (qp.scale[0], qp.zero_point[0] as f32);
    let rounded = xs
        .mapv(|v| ((v / s).round_ties_even() + z).clamp(-128.0, 127.0) - z)
        .mapv(|v| v * s);
    let e_in = sample_error(&run_all(&float, &rounded), &want);
    let e_q = sample_error(&run_all(&int8, &xs), &want);
    let e_f = sample_error(&run_all(&float_in, &xs), &want);
    // a dominant input rounding, or else a measured gain of the margin auto asks of a method
    let share = e_in >= INPUT_SHARE * e_q;
    let float_wins = share || e_f < e_q * (1.0 - AUTO_MARGIN);
    println!(
        "{}: input rounding alone {e_in:.4e}, int8 model {e_q:.4e}, stage in float {e_f:.4e}: float input stage {float_wins}",
        onnx.display()
    );
    // float_in's input stage runs in float on the real input; int8 quantizes the input first and has
    // no float conv
    let stage = |b: &[u8]| {
        let m = Model::from_bytes(b).unwrap();
        let reads_x = m
            .graph
            .nodes
            .iter()
            .find(|n| n.inputs[0] == m.graph.inputs[0])
            .map(|n| n.op.name());
        let convs = m
            .graph
            .nodes
            .iter()
            .filter(|n| matches!(n.op, tern::ir::Op::Conv { .. }))
            .count();
        (reads_x, convs)
    };
    assert_eq!(stage(&int8), (Some("Quantize"), 0));
    assert_eq!(stage(&float_in), (Some("Conv"), convs));
    let chosen = if float_wins { &float_in } else { &int8 };
    assert_eq!(run_all(&auto, &xs), run_all(chosen, &xs), "auto's artifact");
    let ma = Model::from_bytes(&auto).unwrap();
    let meta = ma.meta("quant.input_layer").unwrap().to_string();
    assert!(
        meta.starts_with(if float_wins { "float " } else { "int8 " }),
        "{meta}"
    );
    (share, meta)
}
