//! No ONNX bytes make the importer panic: random mutations of small real models either import (and then
//! export to an artifact the runtime accepts and runs) or fail with an error.
use tern_tools::import::{import_bytes, InputShape};

fn mutate(seed: &mut u64, base: &[u8]) -> Vec<u8> {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let mut b = base.to_vec();
    for _ in 0..1 + next() % 4 {
        let i = (next() % b.len() as u64) as usize;
        match next() % 4 {
            0 => b[i] ^= 1 << (next() % 8),
            1 => b[i] = next() as u8,
            2 => b[i] = [0, 1, 0x7f, 0x80, 0xff][(next() % 5) as usize],
            _ => {
                let end = (i + 1 + (next() % 16) as usize).min(b.len());
                b.drain(i..end);
            }
        }
    }
    b
}

#[test]
fn mutated_models_never_panic() {
    let models: [(&[u8], &str); 2] = [
        (include_bytes!("data/small_cnn.onnx"), "x=2x3x17x19"),
        (include_bytes!("data/unsupported.onnx"), "x=1x8"),
    ];
    let mut seed = 0x2545f4914f6cdd1du64;
    let (mut ok, mut err) = (0, 0);
    for (base, shape) in models {
        let shape: InputShape = shape.parse().unwrap();
        for _ in 0..1500 {
            let b = mutate(&mut seed, base);
            let r = std::panic::catch_unwind(|| {
                let bytes = import_bytes(&b, std::slice::from_ref(&shape))
                    .and_then(|g| tern_tools::export::to_bytes(&g, vec![]))?;
                // what imports must also run
                let m = tern::Model::from_bytes(&bytes)?;
                let mut s = tern::Session::new(&m, Default::default())?;
                let ins: Vec<Vec<f32>> = m.inputs().map(|t| vec![0.5; t.numel()]).collect();
                let ins: Vec<&[f32]> = ins.iter().map(|v| v.as_slice()).collect();
                let mut outs: Vec<Vec<f32>> = m.outputs().map(|t| vec![0.0; t.numel()]).collect();
                let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
                s.run_into(&ins, &mut o)?;
                anyhow::Ok(())
            });
            match r {
                Ok(Ok(_)) => ok += 1,
                Ok(Err(_)) => err += 1,
                Err(_) => {
                    let path = std::env::temp_dir().join("tern-import-panic.onnx");
                    std::fs::write(&path, &b).unwrap();
                    panic!(
                        "the importer panicked on a mutated model (saved to {})",
                        path.display()
                    );
                }
            }
        }
    }
    println!("{ok} mutated models imported, {err} refused with an error");
    assert!(ok > 0 && err > 0);
}
