//! The CLI contract: subcommands, file naming, JSON fields, errors naming what is at fault, atomic output.
use std::path::{Path, PathBuf};
use std::process::Command;

fn tern() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tern"))
}

fn digits() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/digits/digits.onnx");
    assert!(
        p.exists(),
        "{} missing: run python3 models/digits/make.py",
        p.display()
    );
    p
}

/// `tern compress -q <digits.onnx> -o <art>`, for more arguments.
fn compress_digits(art: &Path) -> Command {
    let mut c = tern();
    c.args(["compress", "-q"]).arg(digits()).arg("-o").arg(art);
    c
}

fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{:?} failed: {}",
        c,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn fails(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(!o.status.success(), "{c:?} should fail");
    String::from_utf8(o.stderr).unwrap()
}

fn write_npy(path: &Path, shape: &[usize], v: Vec<f32>) {
    let a = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), v).unwrap();
    ndarray_npy::write_npy(path, &a).unwrap();
}

#[test]
fn compress_inspect_run_bench() {
    let d = tempfile::tempdir().unwrap();
    let art = d.path().join("digits.tern");
    ok(tern().args(["compress"]).arg(digits()).arg("-o").arg(&art));
    // inspect: both kinds, JSON fields
    let j: serde_json::Value =
        serde_json::from_str(&ok(tern().arg("inspect").arg(&art).arg("--json"))).unwrap();
    assert_eq!(j["format"], "tern");
    assert_eq!(j["format_version"], tern::artifact::FORMAT_VERSION);
    assert_eq!(j["inputs"][0]["shape"], serde_json::json!([1, 64]));
    assert_eq!(j["outputs"][0]["shape"], serde_json::json!([1, 10]));
    // 64·512 + 512·256 + 256·10 MACs, and the same number of weights plus biases
    assert_eq!(j["macs"], 64 * 512 + 512 * 256 + 256 * 10);
    assert_eq!(
        j["params"],
        64 * 512 + 512 * 256 + 256 * 10 + 512 + 256 + 10
    );
    assert!(j["arena_bytes"].as_u64().unwrap() > 0);
    let jo: serde_json::Value =
        serde_json::from_str(&ok(tern().arg("inspect").arg(digits()).arg("--json"))).unwrap();
    assert_eq!(jo["format"], "onnx");
    assert_eq!(jo["macs"], j["macs"]);
    // run with NAME=FILE and with a bare FILE
    let x = d.path().join("x.npy");
    write_npy(
        &x,
        &[1, 64],
        (0..64).map(|i| (i % 17) as f32 / 16.0).collect(),
    );
    let name = j["inputs"][0]["name"].as_str().unwrap().to_string();
    let out = d.path().join("out");
    ok(tern()
        .arg("run")
        .arg(&art)
        .arg("--input")
        .arg(format!("{name}={}", x.display()))
        .arg("--output-dir")
        .arg(&out));
    let oname = j["outputs"][0]["name"].as_str().unwrap();
    let file = out.join(format!("{}.npy", tern_tools::npy::sanitize(oname)));
    let y: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&file).unwrap();
    assert_eq!(y.shape(), &[1, 10]);
    assert!(
        (y.sum() - 1.0).abs() < 1e-4,
        "softmax probabilities sum to 1"
    );
    ok(tern()
        .arg("run")
        .arg(&art)
        .arg("--input")
        .arg(&x)
        .arg("--output-dir")
        .arg(d.path().join("out2")));
    // wrong shape: names the input, the expected and the given shape
    let bad = d.path().join("bad.npy");
    write_npy(&bad, &[1, 63], vec![0.0; 63]);
    let e = fails(
        tern()
            .arg("run")
            .arg(&art)
            .arg("--input")
            .arg(&bad)
            .arg("--output-dir")
            .arg(&out),
    );
    assert!(
        e.contains(&name) && e.contains("[1, 64]") && e.contains("[1, 63]"),
        "{e}"
    );
    // bench JSON fields
    let b: serde_json::Value = serde_json::from_str(&ok(tern()
        .args(["bench", "--runs", "3", "--warmup", "1", "--json"])
        .arg(&art)))
    .unwrap();
    for k in [
        "median_ms",
        "min_ms",
        "max_ms",
        "runs",
        "threads",
        "arena_bytes",
        "peak_rss_bytes",
    ] {
        assert!(b.get(k).is_some(), "bench --json lacks {k}: {b}");
    }
    assert_eq!(b["runs"], 3);
}

#[test]
fn failures_are_clean() {
    let d = tempfile::tempdir().unwrap();
    // not an artifact
    let e = fails(
        tern()
            .arg("run")
            .arg(digits())
            .arg("--input")
            .arg("x.npy")
            .arg("--output-dir")
            .arg(d.path()),
    );
    assert!(e.contains("digits.onnx") && e.contains("TERN"), "{e}");
    // a failed compress leaves no file behind: a bad input name; an input dim the model fixes otherwise
    // (the error names the input and both sizes)
    let art = d.path().join("never.tern");
    for (shape, want) in [
        ("nope=1x64", &["nope"][..]),
        ("input=1x63", &["input", "63", "64"]),
    ] {
        let e = fails(
            tern()
                .arg("compress")
                .arg(digits())
                .arg("-o")
                .arg(&art)
                .args(["--input-shape", shape]),
        );
        assert!(want.iter().all(|w| e.contains(w)), "{e}");
        assert!(!art.exists());
    }
    assert_eq!(
        std::fs::read_dir(d.path()).unwrap().count(),
        0,
        "no temporary files left"
    );
    // an unsupported model lists every unsupported op with node names and counts
    let m = d.path().join("unsupported.onnx");
    std::fs::write(&m, include_bytes!("data/unsupported.onnx")).unwrap();
    let e = fails(
        tern()
            .arg("compress")
            .arg(&m)
            .arg("-o")
            .arg(d.path().join("u.tern")),
    );
    assert!(
        e.contains("LpNormalization ×2")
            && e.contains("ln_a")
            && e.contains("ln_b")
            && e.contains("Hardmax ×1"),
        "{e}"
    );
    for c in ["inspect", "compress", "run", "bench", "demo"] {
        ok(tern().arg(c).arg("--help"));
    }
}

/// `tern compress` + `tern run` through the binary on the PP-OCR models, outputs compared with tract.
#[test]
fn cli_compress_run_pp_ocr_matches_tract() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // without --input-shape the cls model's symbolic height and width become 1: its pooling window no
    // longer fits, and the error names that node once, with the shapes
    let d = tempfile::tempdir().unwrap();
    let e = fails(
        tern()
            .arg("compress")
            .arg(root.join("models/cache/ch_ppocr_mobile_v2.0_cls_infer.onnx"))
            .arg("-o")
            .arg(d.path().join("cls.tern")),
    );
    assert!(
        e.matches("node \"MaxPool@0\"").count() == 1 && e.contains("input shapes"),
        "{e}"
    );
    // (model, input shape, eval set, rel L2 bound: see tests/tests/e2e.rs for why det's is 3e-4)
    for (file, dims, set, tol) in [
        (
            "ch_ppocr_mobile_v2.0_cls_infer.onnx",
            [1usize, 3, 48, 192],
            "cls_eval.npy",
            1e-5,
        ),
        (
            "ch_PP-OCRv4_det_infer.onnx",
            [1, 3, 320, 320],
            "det320_eval.npy",
            3e-4,
        ),
    ] {
        let onnx = root.join("models/cache").join(file);
        assert!(
            onnx.exists(),
            "{} missing: run bash models/fetch.sh",
            onnx.display()
        );
        let data = root.join("models/data/out").join(set);
        assert!(
            data.exists(),
            "{} missing: run python3 models/data/make_data.py",
            data.display()
        );
        let d = tempfile::tempdir().unwrap();
        let art = d.path().join("m.tern");
        let spec = format!("x={}x{}x{}x{}", dims[0], dims[1], dims[2], dims[3]);
        ok(tern()
            .arg("compress")
            .arg(&onnx)
            .arg("-o")
            .arg(&art)
            .args(["--input-shape", &spec]));
        let all = tern_tools::npy::read_f32(&data).unwrap();
        let x = all
            .index_axis(ndarray::Axis(0), 0)
            .to_owned()
            .insert_axis(ndarray::Axis(0))
            .into_dyn();
        let xf = d.path().join("x.npy");
        ndarray_npy::write_npy(&xf, &x).unwrap();
        let out = d.path().join("out");
        ok(tern()
            .arg("run")
            .arg(&art)
            .arg("--input")
            .arg(format!("x={}", xf.display()))
            .arg("--output-dir")
            .arg(&out)
            .args(["--threads", "2"]));
        let want = tern_tools::reference::Reference::load(&onnx, &[dims.to_vec()])
            .unwrap()
            .run(&[x])
            .unwrap();
        let files: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), want.len(), "{file}: one .npy per output");
        let got: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&files[0]).unwrap();
        assert_eq!(got.shape(), want[0].shape());
        let e = tern_tools::metrics::rel_l2(
            got.as_slice().unwrap(),
            want[0].as_standard_layout().as_slice().unwrap(),
        );
        assert!(e <= tol, "{file}: rel L2 {e:.3e} > {tol:e}");
    }
}

fn digits_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/digits")
        .join(name)
}

#[test]
fn compress_int8_and_eval_digits() {
    let d = tempfile::tempdir().unwrap();
    let art = d.path().join("digits8.tern");
    ok(tern()
        .args(["compress", "-q"])
        .arg(digits())
        .arg("-o")
        .arg(&art)
        .arg("--int8")
        .arg("--calib")
        .arg(digits_data("X_train.npy"))
        .args(["--calib-samples", "64"]));
    let j: serde_json::Value =
        serde_json::from_str(&ok(tern().arg("inspect").arg(&art).arg("--json"))).unwrap();
    assert_eq!(j["format_version"], tern::artifact::FORMAT_VERSION);
    assert_eq!(j["weights_stored"], "deflated");
    // --plain-weights: the same model with its weights in place (bigger, identical integers)
    let plain = d.path().join("digits8_plain.tern");
    ok(tern()
        .args(["compress", "-q"])
        .arg(digits())
        .arg("-o")
        .arg(&plain)
        .arg("--int8")
        .arg("--calib")
        .arg(digits_data("X_train.npy"))
        .args(["--calib-samples", "64", "--plain-weights"]));
    let jp: serde_json::Value =
        serde_json::from_str(&ok(tern().arg("inspect").arg(&plain).arg("--json"))).unwrap();
    assert_eq!(jp["weights_stored"], "in place");
    assert!(
        jp["file_bytes"].as_u64() > j["file_bytes"].as_u64(),
        "{jp} vs {j}"
    );
    let (a, b) = (std::fs::read(&art).unwrap(), std::fs::read(&plain).unwrap());
    let (ma, mb) = (
        tern::Model::from_bytes(&a).unwrap(),
        tern::Model::from_bytes(&b).unwrap(),
    );
    assert_eq!(ma.graph, mb.graph);
    // and the same constant bytes: deflated and in place store identical weights
    for i in 0..ma.graph.tensors.len() {
        if ma.graph.tensors[i].data.is_some() {
            assert_eq!(ma.const_bytes(i), mb.const_bytes(i), "constant {i}");
        }
    }
    let e: serde_json::Value = serde_json::from_str(&ok(tern()
        .arg("eval")
        .arg(digits())
        .arg(&art)
        .arg("--data")
        .arg(digits_data("X_test.npy"))
        .arg("--labels")
        .arg(digits_data("y_test.npy"))
        .arg("--json")))
    .unwrap();
    // accuracies are measured against the labels; the float one is tract running the ONNX file
    let (af, at) = (
        e["accuracy_float"].as_f64().unwrap(),
        e["accuracy_tern"].as_f64().unwrap(),
    );
    assert!(af > 0.97, "float accuracy {af}");
    assert!(af - at <= 0.003, "int8 accuracy {at} vs float {af}");
    assert!(
        e["size_ratio"].as_f64().unwrap() >= 3.8,
        "{}",
        e["size_ratio"]
    );
    let o = &e["outputs"][0];
    let agree = o["top1_agreement"].as_f64().unwrap();
    assert!(agree >= 0.99, "{o}");
    // the rows that disagree, listed with the float answer's margin, most confident first: as many as
    // the agreement leaves out of the 540 test rows
    let flips = o["disagreements"].as_array().unwrap();
    assert_eq!(
        o["disagreements_total"].as_u64().unwrap(),
        ((1.0 - agree) * 540.0).round() as u64,
        "{o}"
    );
    assert_eq!(
        flips.len() as u64,
        o["disagreements_total"].as_u64().unwrap()
    );
    let margins: Vec<f64> = flips
        .iter()
        .map(|f| f["float_margin"].as_f64().unwrap())
        .collect();
    assert!(margins.windows(2).all(|w| w[0] >= w[1]) && margins.iter().all(|&m| m >= 0.0));
    assert!(flips.iter().all(|f| f["float_class"] != f["tern_class"]
        && f["sample"].as_u64().unwrap() < 540
        && f["row"] == 0));
    assert!(o["cosine"].as_f64().unwrap() > 0.999, "{o}");
    let layers = e["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "three int8 matmuls: {layers:?}");
    let share: f64 = layers
        .iter()
        .map(|l| l["error_share"].as_f64().unwrap())
        .sum();
    assert!((share - 1.0).abs() < 1e-9, "shares sum to 1: {share}");
    assert!(layers.iter().all(|l| l["sqnr_db"].as_f64().unwrap() > 30.0));
}

/// `tern export --onnx-qdq` (and its `--exact` / `--binary-ops qdq` forms), then `tern compress --int8` of
/// that QDQ model without --calib (its own parameters): the CLI contract of issue 3 part 2, and bad input
/// named.
#[test]
fn export_onnx_qdq_and_reimport() {
    let d = tempfile::tempdir().unwrap();
    let (art, qdq, back) = (
        d.path().join("digits8.tern"),
        d.path().join("digits8.onnx"),
        d.path().join("back.tern"),
    );
    ok(tern()
        .args(["compress", "-q"])
        .arg(digits())
        .arg("-o")
        .arg(&art)
        .arg("--int8")
        .arg("--calib")
        .arg(digits_data("X_train.npy"))
        .args(["--calib-samples", "64"]));
    // the forms of the integer ops: each flag writes a model (the exact one with integer convolutions)
    for flags in [&["--exact"][..], &["--binary-ops", "qdq"][..]] {
        let o = d.path().join("form.onnx");
        ok(tern()
            .arg("export")
            .arg(&art)
            .arg("--onnx-qdq")
            .arg(&o)
            .args(flags));
        let bytes = std::fs::read(&o).unwrap();
        let has = |op: &str| bytes.windows(op.len()).any(|w| w == op.as_bytes());
        assert_eq!(has("MatMulInteger"), flags[0] == "--exact", "{flags:?}");
    }
    let out = ok(tern().arg("export").arg(&art).arg("--onnx-qdq").arg(&qdq));
    assert!(out.contains("QDQ"), "{out}");
    // a quantized ONNX model needs no calibration: its parameters are used
    ok(tern()
        .args(["compress", "-q"])
        .arg(&qdq)
        .arg("-o")
        .arg(&back)
        .arg("--int8"));
    let j: serde_json::Value =
        serde_json::from_str(&ok(tern().arg("inspect").arg(&back).arg("--json"))).unwrap();
    assert_eq!(j["ops"]["QMatMul"], 3, "{}", j["ops"]);
    // a float model still needs --calib, and the error says so
    let e = fails(
        tern()
            .args(["compress", "-q"])
            .arg(digits())
            .arg("-o")
            .arg(d.path().join("x.tern"))
            .arg("--int8"),
    );
    assert!(e.contains("--calib") && e.contains("float model"), "{e}");
    let e = fails(
        tern()
            .arg("export")
            .arg(d.path().join("missing.tern"))
            .arg("--onnx-qdq")
            .arg(&qdq),
    );
    assert!(e.contains("missing.tern"), "{e}");
}

/// `--backend auto` runs where it can (the GPU when an adapter opens, lavapipe allowed here) and gives
/// the CPU's outputs; `bench --json` says which backend ran.
#[test]
fn backend_auto_runs_and_agrees_with_cpu() {
    let d = tempfile::tempdir().unwrap();
    let art = d.path().join("digits.tern");
    ok(tern()
        .args(["compress", "-q"])
        .arg(digits())
        .arg("-o")
        .arg(&art));
    let x = d.path().join("x.npy");
    write_npy(&x, &[1, 64], (0..64).map(|i| (i % 17) as f32).collect());
    let run = |dir: &str, backend: &[&str]| -> Vec<f32> {
        let out = d.path().join(dir);
        ok(tern()
            .arg("run")
            .arg(&art)
            .arg("--input")
            .arg(&x)
            .arg("--output-dir")
            .arg(&out)
            .args(backend));
        let f = std::fs::read_dir(&out)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let a: ndarray::ArrayD<f32> = ndarray_npy::read_npy(f).unwrap();
        a.iter().copied().collect()
    };
    let bench = |extra: &[&str]| -> serde_json::Value {
        let out = ok(tern()
            .arg("bench")
            .arg(&art)
            .args([
                "--backend",
                "auto",
                "--gpu-allow-cpu-adapter",
                "--runs",
                "2",
                "--json",
            ])
            .args(extra));
        serde_json::from_str(&out).unwrap()
    };
    let cpu = run("cpu", &[]);
    let auto = run("auto", &["--backend", "auto", "--gpu-allow-cpu-adapter"]);
    for (a, b) in cpu.iter().zip(&auto) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
    }
    let j = bench(&[]);
    let b = j["backend"].as_str().unwrap();
    assert!(b == "gpu" || b == "cpu", "{j}");
    assert!(
        j["prepare_ms"].as_f64().is_some() && j["first_run_ms"].as_f64().is_some(),
        "{j}"
    );
    // --gpu-f16: activations stored as f16 where the GPU has f16 shaders (lavapipe does), outputs within
    // the f16 tolerance
    let half = run(
        "half",
        &["--backend", "auto", "--gpu-allow-cpu-adapter", "--gpu-f16"],
    );
    for (a, b) in cpu.iter().zip(&half) {
        assert!((a - b).abs() <= 2e-3 * (1.0 + a.abs()), "{a} vs {b}");
    }
    let j = bench(&["--gpu-f16"]);
    let act = j["activations"].as_str().unwrap();
    assert!(
        act == "f16" || j["backend"] == "cpu",
        "a GPU run with --gpu-f16 kept {act} activations: {j}"
    );
}

/// `--max-drop` with `--calib-labels`: the accuracy target on labelled calibration samples decides which
/// layers stay float; an unreachable target keeps every sensitive layer in float (the artifact then holds
/// float nodes, recorded in its metadata); a missing label file is named.
#[test]
fn max_drop_with_labels() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a.tern"), d.path().join("b.tern"));
    let base = |out: &Path, drop: &str| {
        let mut c = tern();
        c.args(["compress", "-q"])
            .arg(digits())
            .arg("-o")
            .arg(out)
            .arg("--int8")
            .arg("--calib")
            .arg(digits_data("X_train.npy"))
            .args([
                "--calib-samples",
                "128",
                &format!("--max-drop={drop}"),
                "--calib-labels",
            ])
            .arg(digits_data("y_train.npy"));
        c
    };
    ok(&mut base(&a, "0.5"));
    let ja: serde_json::Value =
        serde_json::from_str(&ok(tern().arg("inspect").arg(&a).arg("--json"))).unwrap();
    let drop: f64 = ja["metadata"]["quant.drop_on_calibration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(drop <= 0.5, "{ja}");
    // a target no quantization meets: every sensitive layer stays float
    ok(&mut base(&b, "-1"));
    let jb: serde_json::Value =
        serde_json::from_str(&ok(tern().arg("inspect").arg(&b).arg("--json"))).unwrap();
    assert_eq!(jb["ops"]["MatMul"], 3, "{}", jb["ops"]);
    let e = fails(
        tern()
            .args(["compress", "-q"])
            .arg(digits())
            .arg("-o")
            .arg(d.path().join("c.tern"))
            .arg("--int8")
            .arg("--calib")
            .arg(digits_data("X_train.npy"))
            .args(["--max-drop", "0.5", "--calib-labels"])
            .arg(d.path().join("nope.npy")),
    );
    assert!(e.contains("nope.npy"), "{e}");
}

#[test]
fn int8_calibration_errors_name_the_file() {
    let d = tempfile::tempdir().unwrap();
    let art = d.path().join("x.tern");
    let run = |calib: &Path| {
        fails(
            tern()
                .arg("compress")
                .arg(digits())
                .arg("-o")
                .arg(&art)
                .arg("--int8")
                .arg("--calib")
                .arg(calib),
        )
    };
    let bad = d.path().join("wrong_shape.npy");
    write_npy(&bad, &[4, 63], vec![0.0; 4 * 63]);
    let e = run(&bad);
    assert!(e.contains("wrong_shape.npy") && e.contains("63"), "{e}");
    let nan = d.path().join("nan.npy");
    let mut v = vec![0.5f32; 3 * 64];
    v[70] = f32::NAN;
    write_npy(&nan, &[3, 64], v);
    let e = run(&nan);
    assert!(e.contains("nan.npy") && e.contains("sample 1"), "{e}");
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(run(&empty).contains("no samples"));
    let e = fails(
        tern()
            .arg("compress")
            .arg(digits())
            .arg("-o")
            .arg(&art)
            .arg("--int8"),
    );
    assert!(e.contains("--calib"), "{e}");
    assert!(!art.exists(), "no output written on failure");
    // few samples: it works, with a warning
    let few = d.path().join("few.npy");
    write_npy(&few, &[4, 64], (0..256).map(|i| (i % 17) as f32).collect());
    let o = tern()
        .arg("compress")
        .arg(digits())
        .arg("-o")
        .arg(&art)
        .arg("--int8")
        .arg("--calib")
        .arg(&few)
        .output()
        .unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("only 4 calibration sample"), "{err}");
}

/// `--keep-float NODE,...` keeps the named nodes (as `tern eval` names them) in float and records them;
/// a name the model lacks is an error that names it, and writes nothing.
#[test]
fn keep_float_by_name() {
    let d = tempfile::tempdir().unwrap();
    let art = d.path().join("k.tern");
    let compress = |extra: &[&str]| {
        let mut c = compress_digits(&art);
        c.arg("--int8")
            .arg("--calib")
            .arg(digits_data("X_train.npy"))
            .args(["--calib-samples", "32"])
            .args(extra);
        c
    };
    ok(&mut compress(&["--keep-float", "MatMul1"]));
    let j: serde_json::Value =
        serde_json::from_str(&ok(tern().arg("inspect").arg(&art).arg("--json"))).unwrap();
    let float_nodes = j["metadata"]["quant.float_nodes"].as_str().unwrap();
    assert!(float_nodes.split(',').any(|n| n == "MatMul1"), "{j}");
    assert_eq!(j["ops"]["MatMul"], 1, "{}", j["ops"]);
    assert_eq!(j["ops"]["QMatMul"], 2, "{}", j["ops"]);
    // the digits model's input layer holds a fifth of its weights: never kept float by --input-layer
    assert!(j["metadata"].get("quant.input_layer").is_none(), "{j}");
    std::fs::remove_file(&art).unwrap();
    let e = fails(&mut compress(&["--keep-float", "MatMul1,NoSuchNode"]));
    assert!(e.contains("\"NoSuchNode\""), "{e}");
    assert!(!art.exists(), "no output written on failure");
}

/// `--weights-only`: every layer float on int8 weights (no integer op), about 4x smaller than the float
/// model, with or without calibration samples (they let GPTQ round the weights, recorded in the metadata);
/// it leaves --max-error nothing to choose (an error naming the flag), and needs --int8.
/// `--float-weights int8` stores a layer kept in float with int8 weights: smaller than its f16 form.
#[test]
fn weights_only_and_int8_float_weights() {
    let d = tempfile::tempdir().unwrap();
    let art = d.path().join("w.tern");
    let compress = |extra: &[&str]| {
        let mut c = compress_digits(&art);
        c.args(extra);
        c
    };
    let calib = digits_data("X_train.npy");
    let calib = calib.to_str().unwrap();
    for (extra, gptq) in [
        (vec!["--int8", "--weights-only"], 0),
        (vec!["--int8", "--weights-only", "--calib", calib], 3),
    ] {
        ok(&mut compress(&extra));
        let j: serde_json::Value =
            serde_json::from_str(&ok(tern().arg("inspect").arg(&art).arg("--json"))).unwrap();
        assert_eq!(j["ops"]["MatMul"], 3, "{}", j["ops"]);
        assert!(j["ops"].get("QMatMul").is_none(), "{}", j["ops"]);
        let meta = &j["metadata"];
        assert!(
            meta["quant.scheme"]
                .as_str()
                .unwrap()
                .starts_with("int8 weights only"),
            "{meta}"
        );
        let rounding = meta["quant.weight_rounding"].as_str().unwrap();
        assert!(
            rounding.contains(&format!("({gptq} weight tensor(s) by GPTQ)")),
            "{rounding}"
        );
        let (a, o) = (
            std::fs::metadata(&art).unwrap().len(),
            std::fs::metadata(digits()).unwrap().len(),
        );
        assert!(a * 7 < o * 2, "{a} bytes vs ONNX {o}");
        runs_on_digits_input(&art, d.path());
    }
    let e = fails(&mut compress(&[
        "--int8",
        "--weights-only",
        "--calib",
        calib,
        "--max-error",
        "0.1",
    ]));
    assert!(e.contains("--weights-only"), "{e}");
    let e = fails(&mut compress(&["--weights-only"]));
    assert!(e.contains("--int8"), "{e}");
    let size = |fw: &str| {
        ok(&mut compress(&[
            "--int8",
            "--calib",
            calib,
            "--keep-float",
            "MatMul1",
            "--float-weights",
            fw,
        ]));
        std::fs::metadata(&art).unwrap().len()
    };
    let (f16, i8) = (size("f16"), size("int8"));
    assert!(i8 < f16, "int8 {i8} vs f16 {f16} bytes");
}

/// `--activations mixed`: the search's layers on 16 bits (Q16 ops, listed in `quant.wide_nodes`), the
/// rest int8, an artifact of format 11 that runs; without a search target it is an error naming the
/// flags it needs.
#[test]
fn mixed_activations() {
    let d = tempfile::tempdir().unwrap();
    let art = d.path().join("m.tern");
    let calib = digits_data("X_train.npy");
    let mut c = compress_digits(&art);
    c.args(["--int8", "--activations", "mixed", "--calib"])
        .arg(&calib);
    let e = fails(&mut c);
    assert!(e.contains("--max-error") && e.contains("--max-drop"), "{e}");
    assert!(!art.exists(), "no output written on failure");
    // a target int8 cannot meet: the search takes 16 bits
    ok(c.args(["--max-error", "1e-7"]));
    let j: serde_json::Value =
        serde_json::from_str(&ok(tern().arg("inspect").arg(&art).arg("--json"))).unwrap();
    let meta = &j["metadata"];
    let wide = meta["quant.wide_nodes"].as_str().unwrap();
    assert!(!wide.is_empty(), "{meta}");
    assert!(j["ops"].get("Q16MatMul").is_some(), "{}", j["ops"]);
    assert!(meta["quant.wide_by_search"].as_str().is_some(), "{meta}");
    runs_on_digits_input(&art, d.path());
}

/// `tern run` of a digits artifact on one input of 0.5s succeeds (outputs into `dir`).
fn runs_on_digits_input(art: &std::path::Path, dir: &std::path::Path) {
    let x = dir.join("x.npy");
    write_npy(&x, &[1, 64], vec![0.5; 64]);
    ok(tern()
        .arg("run")
        .arg(art)
        .arg("--input")
        .arg(&x)
        .arg("--output-dir")
        .arg(dir));
}
