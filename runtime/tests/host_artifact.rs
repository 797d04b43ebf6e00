//! An artifact written on the x86-64 host (by `tests/tests/fixtures.rs`: PP-OCR cls, real input, output
//! computed by tract on the host) must give the same outputs on every target — run here under qemu for
//! aarch64 too. It also pins format v1: this runtime must keep reading it.
use tern::{Model, Session, SessionOptions};

static ARTIFACT: &[u8] = include_bytes!("data/cls.tern");
static INPUT: &[u8] = include_bytes!("data/cls_input.f32");
static EXPECTED: &[u8] = include_bytes!("data/cls_expected.f32");

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn host_artifact_gives_host_outputs() {
    let m = Model::from_bytes(ARTIFACT).expect("the committed v1 artifact loads");
    assert_eq!(m.format_version, 1);
    let x = floats(INPUT);
    let want = floats(EXPECTED);
    for threads in [1, 2] {
        let mut s = Session::new(&m, SessionOptions { threads }).unwrap();
        let mut y = vec![0f32; want.len()];
        s.run_into(&[&x], &mut [&mut y]).unwrap();
        let (mut num, mut den) = (0f64, 0f64);
        for (a, b) in y.iter().zip(&want) {
            num += (*a as f64 - *b as f64).powi(2);
            den += (*b as f64).powi(2);
        }
        let rel = (num / den).sqrt();
        println!(
            "{} path, {threads} thread(s): {y:?} vs tract {want:?}, rel L2 {rel:.2e}",
            s.isa()
        );
        assert!(rel <= 1e-5, "rel L2 {rel}");
    }
}
