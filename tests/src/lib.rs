//! Shared helpers for tern's cross-crate tests: paths to the sample models and data, and comparison
//! against tract.
#![warn(missing_docs)]

use std::path::PathBuf;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A model file under `models/`, or a panic telling how to make it (tests must not silently skip).
pub fn model(rel: &str) -> PathBuf {
    let p = root().join("models").join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `bash models/fetch.sh` (PP-OCR) or `python3 models/digits/make.py` (digits), or `bash scripts/test.sh`",
        p.display()
    );
    p
}

/// Relative L2 error, f64.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    tern_tools::metrics::rel_l2(a, b)
}
