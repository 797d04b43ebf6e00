//! `tern demo`: the README's main job on the bundled digits model — compress it, run it on the bundled
//! test set, and print size, accuracy and latency of the ONNX model (through tract) and of the artifact.
use super::bench::stats;
use crate::metrics::{argmax, max_abs};
use anyhow::{bail, Context, Result};
use ndarray::{ArrayD, Axis, IxDyn};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The models directory (default: the bundled `models/`).
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Where to write the artifact (default: a `tern-demo` directory in the system temp dir).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

/// Runs the subcommand.
pub fn main(a: Args, quiet: bool) -> Result<()> {
    let dir = a
        .models
        .unwrap_or_else(super::default_models_dir)
        .join("digits");
    let onnx = dir.join("digits.onnx");
    if !onnx.exists() {
        bail!(
            "{} not found (run `python3 models/digits/make.py` to make it)",
            onnx.display()
        );
    }
    let x = crate::npy::read_f32(&dir.join("X_test.npy"))?;
    let y = crate::npy::read_labels(&dir.join("y_test.npy"))?;
    if x.ndim() != 2 || x.shape()[0] != y.len() {
        bail!(
            "X_test {:?} and y_test ({}) do not match",
            x.shape(),
            y.len()
        );
    }
    let features = x.shape()[1];
    let out_dir = a
        .out_dir
        .unwrap_or_else(|| std::env::temp_dir().join("tern-demo"));
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let art = out_dir.join("digits.tern");

    let t = Instant::now();
    let shape = crate::import::InputShape {
        name: "input".into(),
        dims: vec![1, features],
    };
    let bytes = crate::compress_float(&onnx, &[shape])?;
    crate::export::write_atomic(&art, &bytes)?;
    let compress_ms = t.elapsed().as_secs_f64() * 1e3;
    let model = tern::Model::from_bytes(&bytes)?;
    let mut session = tern::Session::new(&model, tern::SessionOptions { threads: 1 })?;
    let reference = crate::reference::Reference::load(&onnx, &[vec![1, features]])?;

    let n = y.len();
    let (mut ok_ref, mut ok_tern, mut agree) = (0usize, 0usize, 0usize);
    let (mut t_ref, mut t_tern) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut worst = 0f64;
    let mut out = vec![0f32; model.outputs().next().map_or(0, |t| t.numel())];
    for (i, row) in x.axis_iter(Axis(0)).enumerate() {
        let sample: Vec<f32> = row.iter().copied().collect();
        let arr = ArrayD::from_shape_vec(IxDyn(&[1, features]), sample.clone())?;
        let t0 = Instant::now();
        let r = reference.run(std::slice::from_ref(&arr))?;
        t_ref.push(t0.elapsed().as_secs_f64() * 1e3);
        let t0 = Instant::now();
        session.run_into(&[&sample], &mut [&mut out])?;
        t_tern.push(t0.elapsed().as_secs_f64() * 1e3);
        let rv: Vec<f32> = r[0].iter().copied().collect();
        worst = worst.max(max_abs(&out, &rv));
        let (pr, pt) = (argmax(&rv), argmax(&out));
        ok_ref += (pr as i64 == y[i]) as usize;
        ok_tern += (pt as i64 == y[i]) as usize;
        agree += (pr == pt) as usize;
    }
    let (med_ref, ..) = stats(&mut t_ref);
    let (med_tern, ..) = stats(&mut t_tern);
    let onnx_bytes = std::fs::metadata(&onnx)?.len();

    // the int8 artifact, calibrated on 64 training samples (disjoint from the test set)
    let art8 = out_dir.join("digits_int8.tern");
    let c = crate::quant::CompressInt8 {
        calib: Some(&dir.join("X_train.npy")),
        samples: Some(64),
        opts: crate::quant::Int8Options {
            method: crate::quant::calib::Method::Auto,
            ..Default::default()
        },
        progress: false,
    };
    let shape8 = crate::import::InputShape {
        name: "input".into(),
        dims: vec![1, features],
    };
    let (bytes8, _) = crate::quant::compress_int8(&onnx, &[shape8], &c)?;
    crate::export::write_atomic(&art8, &bytes8)?;
    let model8 = tern::Model::from_bytes(&bytes8)?;
    let mut s8 = tern::Session::new(&model8, tern::SessionOptions { threads: 1 })?;
    let (mut ok8, mut t8) = (0usize, Vec::with_capacity(n));
    for (i, row) in x.axis_iter(Axis(0)).enumerate() {
        let sample: Vec<f32> = row.iter().copied().collect();
        let t0 = Instant::now();
        s8.run_into(&[&sample], &mut [&mut out])?;
        t8.push(t0.elapsed().as_secs_f64() * 1e3);
        ok8 += (argmax(&out) as i64 == y[i]) as usize;
    }
    let (med8, ..) = stats(&mut t8);
    if !quiet {
        println!(
            "tern demo: digits MLP (64 -> 512 -> 256 -> 10), {n} test samples, batch 1, 1 thread"
        );
        println!(
            "  compressed {} -> {} in {compress_ms:.0} ms",
            onnx.display(),
            art.display()
        );
        println!();
        println!(
            "  {:<22} {:>12} {:>10} {:>16}",
            "", "size", "accuracy", "latency median"
        );
        println!(
            "  {:<22} {:>9.1} KB {:>10.4} {:>13.4} ms",
            "ONNX (tract)",
            onnx_bytes as f64 / 1e3,
            ok_ref as f64 / n as f64,
            med_ref
        );
        println!(
            "  {:<22} {:>9.1} KB {:>10.4} {:>13.4} ms",
            "tern artifact (f32)",
            bytes.len() as f64 / 1e3,
            ok_tern as f64 / n as f64,
            med_tern
        );
        println!(
            "  {:<22} {:>9.1} KB {:>10.4} {:>13.4} ms",
            "tern artifact (int8)",
            bytes8.len() as f64 / 1e3,
            ok8 as f64 / n as f64,
            med8
        );
        println!();
        println!(
            "  size {:.2}x, speed {:.2}x vs tract; predictions agree on {agree}/{n}; max |diff| {worst:.2e}",
            onnx_bytes as f64 / bytes.len() as f64,
            med_ref / med_tern
        );
        println!(
            "  int8: size {:.2}x smaller than the ONNX file, accuracy {:+.2} points vs float, {:.2}x the f32 artifact's latency",
            onnx_bytes as f64 / bytes8.len() as f64,
            (ok8 as f64 - ok_ref as f64) / n as f64 * 100.0,
            med8 / med_tern
        );
    }
    if ok_ref != ok_tern {
        bail!("accuracy differs: tract {ok_ref}/{n}, tern {ok_tern}/{n}");
    }
    Ok(())
}
