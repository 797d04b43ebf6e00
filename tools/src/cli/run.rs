//! `tern run <model.tern> --input NAME=FILE.npy ... --output-dir DIR [--threads N]`
use super::{load_model, read_file};
use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The .tern artifact.
    pub model: PathBuf,
    /// `NAME=FILE.npy` per input (repeatable); a single-input model also takes just `FILE.npy`.
    #[arg(long = "input", value_name = "NAME=FILE.npy", required = true)]
    pub inputs: Vec<String>,
    /// Directory for the outputs (one .npy per output, named after it).
    #[arg(long)]
    pub output_dir: PathBuf,
    /// Threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Backend selection.
    #[command(flatten)]
    pub backend: super::engine::BackendArgs,
}

/// Runs the subcommand.
pub fn main(a: Args) -> Result<()> {
    let bytes = read_file(&a.model)?;
    let model = load_model(&a.model, &bytes)?;
    let names: Vec<String> = model.inputs().map(|t| t.name.clone()).collect();
    let mut files: Vec<Option<PathBuf>> = vec![None; names.len()];
    for spec in &a.inputs {
        let (idx, file) = match spec
            .split_once('=')
            .and_then(|(n, f)| names.iter().position(|x| x == n).map(|i| (i, f)))
        {
            Some((i, f)) => (i, PathBuf::from(f)),
            None if names.len() == 1 && !spec.contains('=')
                || names.len() == 1 && std::path::Path::new(spec).exists() =>
            {
                (0, PathBuf::from(spec))
            }
            None => bail!("--input {spec}: expected NAME=FILE.npy with NAME one of {names:?}"),
        };
        if files[idx].replace(file).is_some() {
            bail!("input \"{}\" given twice", names[idx]);
        }
    }
    let mut arrays = Vec::new();
    for ((f, t), name) in files.iter().zip(model.inputs()).zip(&names) {
        let f = f
            .as_ref()
            .ok_or_else(|| anyhow!("missing --input {name}=FILE.npy"))?;
        let arr = crate::npy::read_f32(f)?;
        if arr.shape() != t.dims().as_slice() {
            bail!(
                "input \"{name}\" ({}): expected shape {:?}, given {:?}",
                f.display(),
                t.shape,
                arr.shape()
            );
        }
        arrays.push(arr);
    }
    let gpu = super::engine::open_gpu(&a.backend)?;
    let mut engine = super::engine::open(&a.backend, &model, gpu.as_ref(), a.threads)?;
    log::info!("running on {}", engine.name());
    let flat: Vec<Vec<f32>> = arrays.iter().map(|a| a.iter().copied().collect()).collect();
    let ins: Vec<&[f32]> = flat.iter().map(|v| v.as_slice()).collect();
    let mut bufs: Vec<Vec<f32>> = model.outputs().map(|t| vec![0.0; t.numel()]).collect();
    {
        let mut o: Vec<&mut [f32]> = bufs.iter_mut().map(|v| v.as_mut_slice()).collect();
        engine.run_into(&ins, &mut o)?;
    }
    let outs: Vec<ndarray::ArrayD<f32>> = bufs
        .into_iter()
        .zip(model.outputs())
        .map(|(v, t)| ndarray::ArrayD::from_shape_vec(t.dims(), v))
        .collect::<std::result::Result<_, _>>()?;
    std::fs::create_dir_all(&a.output_dir)
        .with_context(|| format!("cannot create {}", a.output_dir.display()))?;
    for (o, t) in outs.iter().zip(model.outputs()) {
        let path = a
            .output_dir
            .join(format!("{}.npy", crate::npy::sanitize(&t.name)));
        crate::npy::write_f32(&path, o)?;
        log::info!("wrote {}", path.display());
    }
    Ok(())
}
