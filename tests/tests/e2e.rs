//! End to end: compress the sample models, run them with tern, compare with tract on the same inputs.
use ndarray::{ArrayD, Axis, IxDyn};
use tern::{Model, Session, SessionOptions};
use tern_tests::{model, rel_l2};
use tern_tools::reference::Reference;

/// `tol` is the relative L2 bound vs tract. 1e-5 for digits and cls. For det it is 3e-4: its output is a
/// sigmoid probability map that is ~0 almost everywhere, which makes relative L2 ill-conditioned; measured on
/// det320_eval[0]: tract vs ONNX Runtime 1.3e-4, ORT optimized vs unoptimized 1.1e-5, tern vs ORT 3.2e-5,
/// tern vs tract 1.3e-4. The binary text map (threshold 0.3) must also agree to ≥ 99.9% of pixels.
fn compare(onnx: &str, shape: &[usize], inputs: &[ArrayD<f32>], threads: usize, tol: f64) {
    let path = model(onnx);
    let spec = format!(
        "x={}",
        shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x")
    );
    let bytes = tern_tools::compress_float(&path, &[spec.parse().unwrap()]).unwrap();
    let m = Model::from_bytes(&bytes).unwrap();
    let mut s = Session::new(&m, SessionOptions { threads }).unwrap();
    let r = Reference::load(&path, &[shape.to_vec()]).unwrap();
    for (i, x) in inputs.iter().enumerate() {
        let want = r.run(std::slice::from_ref(x)).unwrap();
        let got = s.run(&[x.view()]).unwrap();
        assert_eq!(got.len(), want.len());
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.shape(), w.shape(), "{onnx} output {k} shape");
            let e = rel_l2(
                g.as_slice().unwrap(),
                w.as_standard_layout().as_slice().unwrap(),
            );
            println!(
                "{onnx} sample {i} output {k} {:?}: rel L2 {e:.2e}",
                g.shape()
            );
            assert!(
                e <= tol,
                "{onnx} sample {i} output {k}: rel L2 {e:.3e} > {tol:e}"
            );
            let (gs, ws) = (g.as_slice().unwrap(), w.as_standard_layout().to_owned());
            let same = gs
                .iter()
                .zip(ws.iter())
                .filter(|(a, b)| (**a > 0.3) == (**b > 0.3))
                .count();
            assert!(
                same as f64 >= 0.999 * gs.len() as f64,
                "{onnx} sample {i}: binary maps differ on {} pixels",
                gs.len() - same
            );
        }
    }
}

fn samples(file: &str, n: usize) -> Vec<ArrayD<f32>> {
    let p = tern_tests::root().join("models/data/out").join(file);
    assert!(
        p.exists(),
        "{} missing: run `python3 models/data/make_data.py`",
        p.display()
    );
    let a = tern_tools::npy::read_f32(&p).unwrap();
    a.axis_iter(Axis(0))
        .take(n)
        .map(|s| s.to_owned().insert_axis(Axis(0)).into_dyn())
        .collect()
}

#[test]
fn digits_matches_tract_and_keeps_accuracy() {
    let path = model("digits/digits.onnx");
    let x = tern_tools::npy::read_f32(&model("digits/X_test.npy")).unwrap();
    let y = tern_tools::npy::read_labels(&model("digits/y_test.npy")).unwrap();
    let bytes = tern_tools::compress_float(&path, &[]).unwrap();
    let m = Model::from_bytes(&bytes).unwrap();
    let mut s = Session::new(&m, SessionOptions::default()).unwrap();
    let r = Reference::load(&path, &[vec![1, 64]]).unwrap();
    let (mut ok_t, mut ok_r) = (0, 0);
    for (i, row) in x.axis_iter(Axis(0)).enumerate() {
        let a = ArrayD::from_shape_vec(IxDyn(&[1, 64]), row.iter().copied().collect()).unwrap();
        let got = s.run(&[a.view()]).unwrap().remove(0);
        let want = r.run(&[a]).unwrap().remove(0);
        let e = rel_l2(
            got.as_slice().unwrap(),
            want.as_standard_layout().as_slice().unwrap(),
        );
        assert!(e <= 1e-5, "sample {i}: rel L2 {e:.3e}");
        ok_t += (tern_tools::metrics::argmax(got.as_slice().unwrap()) as i64 == y[i]) as usize;
        ok_r += (tern_tools::metrics::argmax(want.as_standard_layout().as_slice().unwrap()) as i64
            == y[i]) as usize;
    }
    println!(
        "digits accuracy: tern {ok_t}/{}, tract {ok_r}/{}",
        y.len(),
        y.len()
    );
    assert_eq!(ok_t, ok_r);
    assert!(ok_t as f64 / y.len() as f64 > 0.95);
}

#[test]
fn pp_ocr_cls_matches_tract() {
    compare(
        "cache/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        &[1, 3, 48, 192],
        &samples("cls_eval.npy", 6),
        1,
        1e-5,
    );
}

#[test]
fn pp_ocr_cls_two_threads_matches_tract() {
    compare(
        "cache/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        &[1, 3, 48, 192],
        &samples("cls_eval.npy", 2),
        2,
        1e-5,
    );
}

#[test]
fn pp_ocr_det_matches_tract() {
    compare(
        "cache/ch_PP-OCRv4_det_infer.onnx",
        &[1, 3, 320, 320],
        &samples("det320_eval.npy", 3),
        2,
        3e-4,
    );
}

/// PP-OCRv4 rec (SVTR: convs, then attention blocks with MatMul, Softmax, LayerNorm written out as
/// ReduceMean/Sub/Pow/Sqrt/Div): a model none of the importer was written against.
#[test]
fn pp_ocr_rec_matches_tract() {
    compare(
        "cache/ch_PP-OCRv4_rec_infer.onnx",
        &[1, 3, 48, 320],
        &samples("rec_eval.npy", 2),
        2,
        1e-5,
    );
}
