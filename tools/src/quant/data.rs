//! Sample sets for calibration and evaluation: one `.npy` of shape `(N, *input shape)`, or a directory
//! with one `.npy` per sample (each exactly the input's shape; a multi-input model has one subdirectory
//! per input name, paired by sorted file name). Every fault names the file.
use anyhow::{anyhow, bail, Result};
use std::path::{Path, PathBuf};

/// A graph input: name and shape.
pub type InputSpec = (String, Vec<usize>);

/// Samples: `samples[i][k]` is sample i of input k, row-major.
pub type Samples = Vec<Vec<Vec<f32>>>;

fn npy_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow!("{}: cannot list: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "npy"))
        .collect();
    v.sort();
    Ok(v)
}

fn check_finite(path: &Path, sample: usize, v: &[f32]) -> Result<()> {
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        bail!(
            "{}: sample {sample} has a non-finite value ({}) at flat index {i}",
            path.display(),
            v[i]
        );
    }
    Ok(())
}

/// Loads up to `limit` samples for `inputs` from `path`.
pub fn load(path: &Path, inputs: &[InputSpec], limit: Option<usize>) -> Result<Samples> {
    let limit = limit.unwrap_or(usize::MAX);
    let mut out: Samples = Vec::new();
    if path.is_dir() {
        let per_input: Vec<(PathBuf, &InputSpec)> = if inputs.len() == 1 {
            vec![(path.to_path_buf(), &inputs[0])]
        } else {
            inputs
                .iter()
                .map(|i| (path.join(crate::npy::sanitize(&i.0)), i))
                .collect()
        };
        let mut lists = Vec::new();
        for (dir, (name, _)) in &per_input {
            if !dir.is_dir() {
                bail!(
                    "{}: a model with {} inputs needs one subdirectory per input; \"{}\" (for input \"{name}\") is missing",
                    path.display(),
                    inputs.len(),
                    dir.display()
                );
            }
            lists.push(npy_files(dir)?);
        }
        let n = lists.iter().map(|l| l.len()).min().unwrap_or(0);
        if lists.iter().any(|l| l.len() != n) {
            bail!(
                "{}: the input subdirectories hold different numbers of .npy files",
                path.display()
            );
        }
        for i in 0..n.min(limit) {
            let mut sample = Vec::new();
            for (l, (_, (name, shape))) in lists.iter().zip(&per_input) {
                let f = &l[i];
                let a = crate::npy::read_f32(f)?;
                let ok = a.shape() == shape.as_slice()
                    || (a.shape().first() == Some(&1) && &a.shape()[1..] == shape.as_slice());
                if !ok {
                    bail!(
                        "{}: shape {:?}, but input \"{name}\" has shape {shape:?}",
                        f.display(),
                        a.shape()
                    );
                }
                let v: Vec<f32> = a.iter().copied().collect();
                check_finite(f, 0, &v)?;
                sample.push(v);
            }
            out.push(sample);
        }
    } else {
        if inputs.len() != 1 {
            bail!(
                "{}: the model has {} inputs; pass a directory with one subdirectory per input",
                path.display(),
                inputs.len()
            );
        }
        let (name, shape) = &inputs[0];
        let a = crate::npy::read_f32(path)?;
        let per: usize = shape.iter().product();
        let n = if a.shape() == shape.as_slice() {
            1
        } else if a.ndim() == shape.len() + 1 && &a.shape()[1..] == shape.as_slice() {
            a.shape()[0]
        } else if a.ndim() == shape.len() && a.shape()[1..] == shape[1..] && shape[0] == 1 {
            // (N, C, H, W) for an input of shape (1, C, H, W): a batch of N samples
            a.shape()[0]
        } else {
            bail!(
                "{}: shape {:?} is neither input \"{name}\"'s shape {shape:?} nor (N, {})",
                path.display(),
                a.shape(),
                shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let flat: Vec<f32> = a.iter().copied().collect();
        for i in 0..n.min(limit) {
            let v = flat[i * per..(i + 1) * per].to_vec();
            check_finite(path, i, &v)?;
            out.push(vec![v]);
        }
    }
    if out.is_empty() {
        bail!(
            "{}: no samples (empty array or no .npy files)",
            path.display()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    fn write(path: &Path, shape: &[usize], f: impl Fn(usize) -> f32) {
        let n = shape.iter().product();
        let a = ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(f).collect()).unwrap();
        ndarray_npy::write_npy(path, &a).unwrap();
    }

    #[test]
    fn loads_batches_and_directories_and_names_faulty_files() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = vec![("x".to_string(), vec![1, 2, 3])];
        let batch = dir.path().join("batch.npy");
        write(&batch, &[5, 2, 3], |i| i as f32);
        let s = load(&batch, &inputs, None).unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(s[4][0], (24..30).map(|v| v as f32).collect::<Vec<_>>());
        assert_eq!(load(&batch, &inputs, Some(2)).unwrap().len(), 2);

        let sub = dir.path().join("samples");
        std::fs::create_dir(&sub).unwrap();
        for i in 0..3 {
            write(&sub.join(format!("{i}.npy")), &[1, 2, 3], |j| {
                (i * 10 + j) as f32
            });
        }
        let s = load(&sub, &inputs, None).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[2][0][1], 21.0);

        let bad = sub.join("3.npy");
        write(&bad, &[1, 2, 4], |_| 0.0);
        let e = load(&sub, &inputs, None).unwrap_err().to_string();
        assert!(e.contains("3.npy") && e.contains("shape"), "{e}");
        std::fs::remove_file(&bad).unwrap();

        let nan = dir.path().join("nan.npy");
        write(&nan, &[2, 2, 3], |i| if i == 7 { f32::NAN } else { 0.0 });
        let e = load(&nan, &inputs, None).unwrap_err().to_string();
        assert!(e.contains("nan.npy") && e.contains("sample 1"), "{e}");

        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let e = load(&empty, &inputs, None).unwrap_err().to_string();
        assert!(e.contains("no samples"), "{e}");
    }
}
