//! `.npy` input and output files (ndarray-npy), with errors that name the file.
use anyhow::{anyhow, Result};
use ndarray::ArrayD;
use std::path::Path;

/// Reads an f32 array (f64 files are converted; integer files are refused with a clear message).
pub fn read_f32(path: &Path) -> Result<ArrayD<f32>> {
    if let Ok(a) = ndarray_npy::read_npy::<_, ArrayD<f32>>(path) {
        return Ok(a);
    }
    if let Ok(a) = ndarray_npy::read_npy::<_, ArrayD<f64>>(path) {
        return Ok(a.mapv(|v| v as f32));
    }
    match ndarray_npy::read_npy::<_, ArrayD<f32>>(path) {
        Ok(a) => Ok(a),
        Err(e) => Err(anyhow!("{}: not a float32 .npy array: {e}", path.display())),
    }
}

/// Reads an integer label array (int64 or int32).
pub fn read_labels(path: &Path) -> Result<Vec<i64>> {
    if let Ok(a) = ndarray_npy::read_npy::<_, ArrayD<i64>>(path) {
        return Ok(a.iter().copied().collect());
    }
    let a: ArrayD<i32> = ndarray_npy::read_npy(path)
        .map_err(|e| anyhow!("{}: not an int64/int32 .npy array: {e}", path.display()))?;
    Ok(a.iter().map(|&v| v as i64).collect())
}

/// Writes an f32 array atomically.
pub fn write_f32(path: &Path, a: &ArrayD<f32>) -> Result<()> {
    let mut buf = Vec::new();
    ndarray_npy::WriteNpyExt::write_npy(a, &mut buf)
        .map_err(|e| anyhow!("encoding {}: {e}", path.display()))?;
    crate::export::write_atomic(path, &buf)
}

/// A file name for an output: every character outside `[A-Za-z0-9._-]` becomes `_`.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
