//! Benchmark support: the sample models and seeded inputs shared by the criterion benches and the peer
//! harness (`benches/peer.py`, which adds ONNX Runtime and measures each engine in its own process).
#![warn(missing_docs)]

use std::path::PathBuf;

/// A benchmarked model: name, ONNX path, input shape.
pub struct BenchModel {
    /// Short name.
    pub name: &'static str,
    /// ONNX file.
    pub onnx: PathBuf,
    /// Input shape.
    pub shape: Vec<usize>,
}

/// The sample models (PP-OCR ones need `bash models/fetch.sh`).
pub fn models() -> Vec<BenchModel> {
    let m = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    vec![
        BenchModel {
            name: "digits",
            onnx: m.join("digits/digits.onnx"),
            shape: vec![1, 64],
        },
        BenchModel {
            name: "cls",
            onnx: m.join("cache/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
            shape: vec![1, 3, 48, 192],
        },
        BenchModel {
            name: "det320",
            onnx: m.join("cache/ch_PP-OCRv4_det_infer.onnx"),
            shape: vec![1, 3, 320, 320],
        },
    ]
}

/// The `--input-shape` spec for a model's single input.
pub fn shape_spec(input: &str, shape: &[usize]) -> tern_tools::import::InputShape {
    tern_tools::import::InputShape {
        name: input.to_string(),
        dims: shape.to_vec(),
    }
}
