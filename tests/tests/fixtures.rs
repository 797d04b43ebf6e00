//! The host-made artifact that `runtime/tests/host_artifact.rs` runs on every target (aarch64 under qemu).
//! `TERN_REGEN_FIXTURES=1` rewrites it; otherwise this checks the committed files still agree with tract.
use tern_tests::{model, rel_l2, root};

#[test]
fn host_artifact_fixture() {
    let dir = root().join("runtime/tests/data");
    let onnx = model("cache/ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let x = tern_tools::npy::read_f32(&root().join("models/data/out/cls_eval.npy")).unwrap();
    let x0 = x
        .index_axis(ndarray::Axis(0), 2)
        .to_owned()
        .insert_axis(ndarray::Axis(0))
        .into_dyn();
    let r = tern_tools::reference::Reference::load(&onnx, &[vec![1, 3, 48, 192]]).unwrap();
    let want = r.run(std::slice::from_ref(&x0)).unwrap().remove(0);
    let bytes_of = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    if std::env::var("TERN_REGEN_FIXTURES").is_ok() {
        let art = tern_tools::compress_float(&onnx, &["x=1x3x48x192".parse().unwrap()]).unwrap();
        std::fs::write(dir.join("cls.tern"), art).unwrap();
        // the int8 artifact whose every integer tensor runtime/tests/host_artifact.rs checks on each path
        // (rerun that test with TERN_REGEN_FIXTURES=1 afterwards to record the digest)
        let c = tern_tools::quant::CompressInt8 {
            calib: Some(&root().join("models/data/out/cls_calib.npy")),
            samples: None,
            opts: tern_tools::quant::Int8Options {
                method: tern_tools::quant::calib::Method::Percentile(99.99),
                ..Default::default()
            },
            progress: false,
        };
        let (art8, _) =
            tern_tools::quant::compress_int8(&onnx, &["x=1x3x48x192".parse().unwrap()], &c)
                .unwrap();
        std::fs::write(dir.join("cls_int8.tern"), art8).unwrap();
        std::fs::write(dir.join("cls_input.f32"), bytes_of(x0.as_slice().unwrap())).unwrap();
        std::fs::write(
            dir.join("cls_expected.f32"),
            bytes_of(want.as_standard_layout().as_slice().unwrap()),
        )
        .unwrap();
    }
    // the 16-bit artifacts that runtime/tests/host_artifact.rs checks the same way: format 10 (Q31
    // requantization, function tables) and format 12 (f32 requantization, hard-swish in f32 fused into
    // the convs); each written when missing (the files above pin older formats: regenerating them is a
    // separate decision)
    for (file, version) in [("cls_int16.tern", 10), ("cls_int16_v12.tern", 12)] {
        let path = dir.join(file);
        if path.exists() || tern::artifact::FORMAT_VERSION != version {
            continue;
        }
        let c = tern_tools::quant::CompressInt8 {
            calib: Some(&root().join("models/data/out/cls_calib.npy")),
            samples: None,
            opts: tern_tools::quant::Int8Options {
                act16: true,
                ..Default::default()
            },
            progress: false,
        };
        let (art16, _) =
            tern_tools::quant::compress_int8(&onnx, &["x=1x3x48x192".parse().unwrap()], &c)
                .unwrap();
        std::fs::write(&path, art16).unwrap();
    }
    let input = std::fs::read(dir.join("cls_input.f32")).unwrap();
    assert_eq!(
        input,
        bytes_of(x0.as_slice().unwrap()),
        "fixture input is cls_eval[2] (the least saturated output)"
    );
    let expected = std::fs::read(dir.join("cls_expected.f32")).unwrap();
    let e: Vec<f32> = expected
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert!(
        rel_l2(&e, want.as_standard_layout().as_slice().unwrap()) < 1e-6,
        "fixture expected output is tract's"
    );
}
