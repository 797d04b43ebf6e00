//! An artifact written on the x86-64 host (by `tests/tests/fixtures.rs`: PP-OCR cls, real input, output
//! computed by tract on the host) must give the same outputs on every target — run here under qemu for
//! aarch64 too. It also pins format v1: this runtime must keep reading it. The int8 artifact must give
//! the same integers, to the bit, on every kernel path (scalar, AVX2, NEON, SDOT) and thread count; so
//! must the 16-bit one (int16 activations, format 10: Q31 requantization), and the same graph stamped
//! format 12 (f32 requantization).
use tern::session::Values;
use tern::{Model, Session, SessionOptions};

static INT8: &[u8] = include_bytes!("data/cls_int8.tern");
/// FNV-1a over every int8 tensor the int8 artifact computes, in execution order, then the output bits.
static INT8_DIGEST: &str = include_str!("data/cls_int8.digest");

static INT16: &[u8] = include_bytes!("data/cls_int16.tern");
/// The same digest over every int16 tensor of the 16-bit artifact (format 10).
static INT16_DIGEST: &str = include_str!("data/cls_int16.digest");

/// The digest of the same 16-bit graph re-stamped with this runtime's format (12 on: its convs, matmul
/// and Muls requantize in f32).
static INT16_F32_DIGEST: &str = include_str!("data/cls_int16_f32.digest");

/// The 16-bit artifact as the tool writes it from format 12 (f32 requantization, hard-swish computed in
/// f32 in the convs' epilogues: `Q16ConvAct`), and its digest.
static INT16_V12: &[u8] = include_bytes!("data/cls_int16_v12.tern");
static INT16_V12_DIGEST: &str = include_str!("data/cls_int16_v12.digest");

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
        // in place: the input written into the arena, the output read from it — the same bits, run
        // after run (the input rewritten each time: the arena reuses its bytes)
        for _ in 0..2 {
            s.input_mut(0).unwrap().copy_from_slice(&x);
            s.run_in_place().unwrap();
            let out = s.output(0).unwrap();
            assert_eq!(out.len(), y.len());
            assert!(out.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        let e = s.input_mut(1).unwrap_err().to_string();
        assert!(e.contains("input 1") && e.contains("1 input"), "{e}");
        let e = s.output(3).unwrap_err().to_string();
        assert!(e.contains("output 3") && e.contains("1 output"), "{e}");
    }
}

fn fnv(h: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *h ^= b as u64;
        *h = h.wrapping_mul(0x100_0000_01b3);
    }
}

/// FNV-1a digests (1 and 2 threads) of every integer tensor `artifact` computes (`bytes` of each observed
/// value set, `None` to skip it), then of the output bits; with the count of tensors hashed.
fn digests(artifact: &[u8], bytes: impl Fn(Values) -> Option<Vec<u8>>) -> Vec<(String, usize)> {
    let m = Model::from_bytes(artifact).expect("the committed artifact loads");
    let x = floats(INPUT);
    let mut out = Vec::new();
    for threads in [1, 2] {
        let mut s = Session::new(&m, SessionOptions { threads }).unwrap();
        let mut y = vec![0f32; 2];
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        let mut tensors = 0;
        let mut f = |_: usize, _: u32, v: Values| {
            if let Some(b) = bytes(v) {
                fnv(&mut h, &b);
                tensors += 1;
            }
        };
        s.run_observed(&[&x], &mut [&mut y], Some(&mut f)).unwrap();
        fnv(
            &mut h,
            &y.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
        );
        println!(
            "{} path, {threads} thread(s): {tensors} integer tensors, digest {h:016x}, output {y:?}",
            s.isa()
        );
        out.push((format!("{h:016x}"), tensors));
    }
    out
}

#[test]
fn int8_artifact_is_bit_identical_on_every_path() {
    let digests = digests(INT8, |v| match v {
        Values::I8(q) => Some(q.iter().map(|&b| b as u8).collect()),
        _ => None,
    });
    if std::env::var("TERN_REGEN_FIXTURES").is_ok() {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/cls_int8.digest");
        std::fs::write(p, &digests[0].0).unwrap();
        return;
    }
    for (d, tensors) in &digests {
        assert!(*tensors > 100);
        assert_eq!(d, INT8_DIGEST.trim(), "int8 results differ from the host's");
    }
}

#[test]
fn int16_artifact_is_bit_identical_on_every_path() {
    let digests = digests(INT16, |v| match v {
        Values::I16(q) => Some(q.iter().flat_map(|v| v.to_le_bytes()).collect()),
        _ => None,
    });
    if std::env::var("TERN_REGEN_FIXTURES").is_ok() {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/cls_int16.digest");
        std::fs::write(p, &digests[0].0).unwrap();
        return;
    }
    for (d, tensors) in &digests {
        // (functions fused into their convs write no tensor of their own)
        assert!(*tensors > 60);
        assert_eq!(
            d,
            INT16_DIGEST.trim(),
            "int16 results differ from the host's"
        );
    }
}

/// The 16-bit graph under the f32 requantization (format 12 on): the same bytes re-stamped by this
/// writer give other integers than format 10's Q31 rule, and the same ones on every path.
#[test]
fn int16_f32_requant_is_bit_identical_on_every_path() {
    let d = tern::artifact::decode(INT16).unwrap();
    assert!(d.version < tern::ir::quant::REQUANT_F32_FORMAT);
    let restamped = tern::artifact::encode(&d.meta, &d.weights).unwrap();
    let digests = digests(&restamped, |v| match v {
        Values::I16(q) => Some(q.iter().flat_map(|v| v.to_le_bytes()).collect()),
        _ => None,
    });
    if std::env::var("TERN_REGEN_FIXTURES").is_ok() {
        let p = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/cls_int16_f32.digest"
        );
        std::fs::write(p, &digests[0].0).unwrap();
        return;
    }
    for (d, tensors) in &digests {
        assert!(*tensors > 60);
        assert_ne!(d, INT16_DIGEST.trim(), "the f32 rule changed no integer");
        assert_eq!(
            d,
            INT16_F32_DIGEST.trim(),
            "int16 results (f32 requantization) differ from the host's"
        );
    }
}

/// The format-12 16-bit artifact (its convs with a fused hard-swish in f32) gives the same integers on
/// every path.
#[test]
fn int16_v12_artifact_is_bit_identical_on_every_path() {
    let d = tern::artifact::decode(INT16_V12).unwrap();
    assert_eq!(d.version, 12);
    let fused = d.meta.graph.nodes.iter();
    let fused = fused.filter(|n| matches!(n.op, tern::ir::Op::Q16ConvAct { .. }));
    assert!(fused.count() >= 10, "the hard-swish convs are fused");
    let digests = digests(INT16_V12, |v| match v {
        Values::I16(q) => Some(q.iter().flat_map(|v| v.to_le_bytes()).collect()),
        _ => None,
    });
    if std::env::var("TERN_REGEN_FIXTURES").is_ok() {
        let p = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/cls_int16_v12.digest"
        );
        std::fs::write(p, &digests[0].0).unwrap();
        return;
    }
    for (d, tensors) in &digests {
        assert!(*tensors > 40);
        assert_eq!(
            d,
            INT16_V12_DIGEST.trim(),
            "int16 results (format 12) differ from the host's"
        );
    }
}
