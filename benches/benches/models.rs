//! Whole-model latency, tern vs tract: same model, same input, same thread count (1), same run.
use criterion::{criterion_group, criterion_main, Criterion};
use tern_benches::{models, shape_spec};

fn whole_models(c: &mut Criterion) {
    for m in models() {
        if !m.onnx.exists() {
            eprintln!(
                "skipping {}: {} missing (bash models/fetch.sh)",
                m.name,
                m.onnx.display()
            );
            continue;
        }
        let input = if m.name == "digits" { "input" } else { "x" };
        let bytes =
            tern_tools::compress_float(&m.onnx, &[shape_spec(input, &m.shape)]).expect("compress");
        let model = tern::Model::from_bytes(&bytes).expect("load");
        let mut s =
            tern::Session::new(&model, tern::SessionOptions { threads: 1 }).expect("session");
        let n: usize = m.shape.iter().product();
        let x = tern_tools::cli::bench::seeded(n, 0);
        let mut y: Vec<Vec<f32>> = model.outputs().map(|t| vec![0.0; t.numel()]).collect();
        let r = tern_tools::reference::Reference::load(&m.onnx, std::slice::from_ref(&m.shape))
            .expect("tract");
        let xa = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&m.shape), x.clone()).unwrap();
        let mut g = c.benchmark_group(m.name);
        g.sample_size(if m.name == "det320" { 10 } else { 30 });
        g.bench_function("tern_f32_1t", |b| {
            b.iter(|| {
                let mut o: Vec<&mut [f32]> = y.iter_mut().map(|v| v.as_mut_slice()).collect();
                s.run_into(&[&x], &mut o).unwrap()
            })
        });
        g.bench_function("tract_f32_1t", |b| {
            b.iter(|| r.run(std::slice::from_ref(&xa)).unwrap())
        });
        g.finish();
    }
}

criterion_group!(benches, whole_models);
criterion_main!(benches);
