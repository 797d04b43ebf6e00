//! Hostile artifacts: every corruption gives `Err`, never a panic, and a valid one round-trips.
use tern::artifact::{self, ArtifactMeta};
use tern::ir::{Conv2d, Op, Unary};
use tern::{ErrorKind, Model};
use tern_tools::graph::ToolGraph;

/// input [1,3,8,8] → Conv(3x3, pad 1)+Relu → GlobalAveragePool → Reshape [1,4]
fn small() -> ToolGraph {
    let mut g = ToolGraph::default();
    let x = g.add_tensor("x", &[1, 3, 8, 8]);
    g.graph.inputs.push(x);
    let w = g.add_const(
        "w",
        &[4, 3, 3, 3],
        (0..108).map(|i| (i as f32 * 0.37).sin()).collect(),
    );
    let b = g.add_const("b", &[4], vec![0.1, -0.2, 0.3, 0.0]);
    let geom = Conv2d::same(3);
    let c = g
        .emit(
            "conv",
            Op::Conv {
                geom,
                act: Some(Unary::Relu),
            },
            vec![x, w, b],
            &["c".into()],
            None,
        )
        .unwrap()[0];
    let p = g
        .emit(
            "gap",
            Op::GlobalPool(tern::ir::PoolKind::Avg {
                count_include_pad: false,
            }),
            vec![c],
            &["p".into()],
            None,
        )
        .unwrap()[0];
    let y = g
        .emit(
            "flat",
            Op::Reshape,
            vec![p],
            &["y".into()],
            Some(vec![vec![1, 4]]),
        )
        .unwrap()[0];
    g.graph.outputs.push(y);
    g
}

fn bytes() -> Vec<u8> {
    tern_tools::export::to_bytes(&small(), vec![("k".into(), "v".into())]).unwrap()
}

/// Re-encodes a modified structure with a valid checksum, so the structural checks (not the CRC) must
/// catch the fault.
fn reencode(b: &[u8], f: impl FnOnce(&mut ArtifactMeta)) -> Vec<u8> {
    let d = artifact::decode(b).unwrap();
    let mut meta = d.meta.clone();
    f(&mut meta);
    artifact::encode(&meta, &d.weights).unwrap()
}

fn run(m: &Model, x: &[f32]) -> Vec<f32> {
    let mut s = tern::Session::new(m, Default::default()).unwrap();
    let mut y = vec![0.0; 4];
    s.run_into(&[x], &mut [&mut y]).unwrap();
    y
}

#[test]
fn round_trip_and_reference_values() {
    let b = bytes();
    let m = Model::from_bytes(&b).unwrap();
    assert_eq!(m.format_version, artifact::FORMAT_VERSION);
    assert_eq!(m.meta("k"), Some("v"));
    let g = small();
    assert_eq!(m.graph, {
        let d = artifact::decode(&b).unwrap();
        assert_eq!(d.weights_offset % 64, 0);
        d.meta.graph
    });
    assert_eq!(m.graph.nodes, g.graph.nodes);
    // float64 reference of the same computation
    let x: Vec<f32> = (0..192)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
        .collect();
    let w = g.konst(1).unwrap();
    for (m_ch, (got, want)) in run(&m, &x).iter().zip(reference(&x, w)).enumerate() {
        assert!(
            (*got as f64 - want).abs() < 1e-5 * (1.0 + want.abs()),
            "channel {m_ch}: {got} vs {want}"
        );
    }
}

/// float64 reference of `small()`: conv (bias, relu) then the global average, per channel.
fn reference(x: &[f32], w: &[f32]) -> Vec<f64> {
    let bias = [0.1f64, -0.2, 0.3, 0.0];
    (0..4)
        .map(|m_ch| {
            let mut sum = 0f64;
            for oy in 0..8i64 {
                for ox in 0..8i64 {
                    let mut acc = bias[m_ch];
                    for c in 0..3 {
                        for ky in 0..3i64 {
                            for kx in 0..3i64 {
                                let (iy, ix) = (oy + ky - 1, ox + kx - 1);
                                if (0..8).contains(&iy) && (0..8).contains(&ix) {
                                    acc += x[(c * 64 + iy * 8 + ix) as usize] as f64
                                        * w[((m_ch * 3 + c as usize) * 9) + (ky * 3 + kx) as usize]
                                            as f64;
                                }
                            }
                        }
                    }
                    sum += acc.max(0.0);
                }
            }
            sum / 64.0
        })
        .collect()
}

/// A float layer's weights stored as f16 (format 4: the float layers of int8 artifacts) load widened
/// and compute what the f16 values define; an f16 activation is refused, naming the tensor.
#[test]
fn f16_weights_of_a_float_layer() {
    let b = bytes();
    let d = artifact::decode(&b).unwrap();
    let mut meta = d.meta.clone();
    let w: Vec<f32> = small().konst(1).unwrap().to_vec();
    let halves: Vec<half::f16> = w.iter().map(|&v| half::f16::from_f32(v)).collect();
    let mut blob = d.weights.to_vec();
    let off = blob.len().div_ceil(64) * 64;
    blob.resize(off, 0);
    blob.extend(halves.iter().flat_map(|h| h.to_le_bytes()));
    let t = &mut meta.graph.tensors[1];
    assert_eq!(t.name, "w");
    t.dtype = tern::ir::DType::F16;
    t.data = Some(tern::ir::BlobRange {
        offset: off as u64,
        len: (halves.len() * 2) as u64,
    });
    let packed = artifact::encode(&meta, &blob).unwrap();
    let m = Model::from_bytes(&packed).unwrap();
    let x: Vec<f32> = (0..192)
        .map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0)
        .collect();
    let wh: Vec<f32> = halves.iter().map(|h| h.to_f32()).collect();
    assert_ne!(wh, w, "the test needs weights f16 rounds");
    for (got, want) in run(&m, &x).iter().zip(reference(&x, &wh)) {
        assert!(
            (*got as f64 - want).abs() < 1e-5 * (1.0 + want.abs()),
            "{got} vs {want}"
        );
    }
    // an f16 tensor that is not a constant is not a float op's input
    let mut bad = meta.clone();
    bad.graph.tensors[3].dtype = tern::ir::DType::F16;
    let e = Model::from_bytes(&artifact::encode(&bad, &blob).unwrap()).unwrap_err();
    assert!(e.context.contains("\"c\""), "{e}");
}

#[test]
fn every_truncation_is_an_error() {
    let b = bytes();
    for len in 0..b.len() {
        assert!(
            Model::from_bytes(&b[..len]).is_err(),
            "truncated to {len} bytes loaded"
        );
    }
}

#[test]
fn random_byte_flips_are_errors_or_valid() {
    let b = bytes();
    let mut seed = 0x9e3779b97f4a7c15u64;
    for _ in 0..3000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut c = b.clone();
        let i = (seed % c.len() as u64) as usize;
        c[i] ^= 1 << ((seed >> 32) % 8);
        // the checksum catches single flips
        let e = Model::from_bytes(&c).unwrap_err();
        assert!(
            matches!(e.kind, ErrorKind::Format | ErrorKind::Version),
            "{e}"
        );
    }
}

#[test]
fn structural_corruption_with_valid_checksum_never_panics() {
    // flip bytes of the graph section, then fix the checksum, so decode/validate see garbage structure
    let b = bytes();
    let d = artifact::decode(&b).unwrap();
    let graph_len = postcard::to_allocvec(&d.meta).unwrap().len();
    let mut seed = 12345u64;
    for _ in 0..3000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut c = b.clone();
        let i = 64 + (seed >> 33) as usize % graph_len;
        c[i] = (seed >> 17) as u8;
        let n = c.len();
        let crc = crc32fast::hash(&c[..n - 4]);
        c[n - 4..].copy_from_slice(&crc.to_le_bytes());
        if let Ok(m) = Model::from_bytes(&c) {
            // a mutation that still validates must still run
            let x = vec![0.5f32; 192];
            let mut s = tern::Session::new(&m, Default::default()).unwrap();
            let ins: Vec<Vec<f32>> = m.inputs().map(|t| vec![0.5; t.numel()]).collect();
            let ins: Vec<&[f32]> = ins.iter().map(|v| v.as_slice()).collect();
            let mut outs: Vec<Vec<f32>> = m.outputs().map(|t| vec![0.0; t.numel()]).collect();
            let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
            s.run_into(&ins, &mut o).unwrap();
            let _ = x;
        }
    }
}

#[test]
fn wrong_magic_and_newer_version() {
    let mut b = bytes();
    b[0] = b'X';
    assert_eq!(Model::from_bytes(&b).unwrap_err().kind, ErrorKind::Format);
    let mut b = bytes();
    let newer = artifact::FORMAT_VERSION + 1;
    b[4..8].copy_from_slice(&newer.to_le_bytes());
    let e = Model::from_bytes(&b).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Version);
    assert!(
        e.context.contains(&format!("made by format {newer}")),
        "{e}"
    );
    assert_eq!(Model::from_bytes(b"").unwrap_err().kind, ErrorKind::Format);
}

#[test]
fn absurd_dims() {
    let b = reencode(&bytes(), |m| {
        m.graph.tensors[0].shape = vec![u32::MAX, u32::MAX, 3, 3]
    });
    let e = Model::from_bytes(&b).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
    assert!(e.context.contains("\"x\""), "{e}");
    let b = reencode(&bytes(), |m| m.graph.tensors[0].shape = vec![1, 3, 9, 8]);
    let e = Model::from_bytes(&b).unwrap_err();
    assert!(e.context.contains("conv"), "names the node: {e}");
}

#[test]
fn offsets_out_of_range() {
    let b = reencode(&bytes(), |m| {
        let t = m.graph.tensors.iter_mut().find(|t| t.name == "w").unwrap();
        t.data.as_mut().unwrap().offset = 1 << 40;
    });
    let e = Model::from_bytes(&b).unwrap_err();
    assert!(
        e.context.contains("\"w\"") && e.context.contains("weight blob"),
        "{e}"
    );
    let b = reencode(&bytes(), |m| m.graph.nodes[0].inputs[0] = 999);
    assert!(Model::from_bytes(&b).unwrap_err().context.contains("999"));
    let b = reencode(&bytes(), |m| m.plan.offsets[0] = m.plan.arena_bytes);
    assert_eq!(Model::from_bytes(&b).unwrap_err().kind, ErrorKind::Invalid);
    // a section pointing past the end
    let mut b = bytes();
    b[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(Model::from_bytes(&b).is_err());
}

#[test]
fn overlapping_plan_and_bad_order() {
    let b = reencode(&bytes(), |m| {
        // put the (smaller) input on top of the conv output: both live at step 0
        let c = m.graph.tensors.iter().position(|t| t.name == "c").unwrap();
        m.plan.offsets[0] = m.plan.offsets[c];
    });
    let e = Model::from_bytes(&b).unwrap_err();
    assert!(e.context.contains("overlaps"), "{e}");
    let b = reencode(&bytes(), |m| m.graph.nodes.swap(0, 1));
    let e = Model::from_bytes(&b).unwrap_err();
    assert!(e.context.contains("before any node computes it"), "{e}");
}

/// Format 6's post-activation affine on a Conv (inputs 3, 4): a fourth input alone, a computed scale, a
/// scale of the wrong shape, and the affine on a node kind that has none are each refused, naming the
/// conv; a well-formed one loads and runs.
#[test]
fn conv_post_affine_inputs_are_checked() {
    let find = |m: &ArtifactMeta, name: &str| m.graph.tensors.iter().position(|t| t.name == name);
    let b = reencode(&bytes(), |m| {
        let bias = find(m, "b").unwrap() as u32;
        m.graph.nodes[0].inputs.push(bias);
    });
    let e = Model::from_bytes(&b).unwrap_err();
    assert!(
        e.context.contains("conv") && e.context.contains("inputs"),
        "{e}"
    );
    let b = reencode(&bytes(), |m| {
        let bias = find(m, "b").unwrap() as u32;
        m.graph.nodes[0].inputs.extend([0, bias]); // tensor 0: the graph input x
    });
    let e = Model::from_bytes(&b).unwrap_err();
    assert!(e.context.contains("must be a constant"), "{e}");
    let b = reencode(&bytes(), |m| {
        let (w, bias) = (find(m, "w").unwrap() as u32, find(m, "b").unwrap() as u32);
        m.graph.nodes[0].inputs.extend([w, bias]);
    });
    let e = Model::from_bytes(&b).unwrap_err();
    assert!(e.context.contains("post-activation scale shape"), "{e}");
    let b = reencode(&bytes(), |m| {
        let bias = find(m, "b").unwrap() as u32;
        m.graph.nodes[0].inputs.extend([bias, bias]);
    });
    let m = Model::from_bytes(&b).expect("the bias as scale and shift: well-formed");
    runs(&m);
}

#[test]
fn wrong_input_length_names_the_input() {
    let b = bytes();
    let m = Model::from_bytes(&b).unwrap();
    let mut s = tern::Session::new(&m, Default::default()).unwrap();
    let mut y = vec![0.0; 4];
    let e = s.run_into(&[&[0.0; 10]], &mut [&mut y]).unwrap_err();
    assert!(
        e.context.contains("\"x\"") && e.context.contains("[1, 3, 8, 8]"),
        "{e}"
    );
}

fn int8_bytes() -> Vec<u8> {
    std::fs::read(tern_tests::root().join("runtime/tests/data/cls_int8.tern")).unwrap()
}

fn runs(m: &Model) {
    let mut s = tern::Session::new(m, Default::default()).unwrap();
    let ins: Vec<Vec<f32>> = m.inputs().map(|t| vec![0.5; t.numel()]).collect();
    let ins: Vec<&[f32]> = ins.iter().map(|v| v.as_slice()).collect();
    let mut outs: Vec<Vec<f32>> = m.outputs().map(|t| vec![0.0; t.numel()]).collect();
    let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
    s.run_into(&ins, &mut o).unwrap();
}

/// Flips one random byte of `b`'s graph section 1500 times (checksum fixed up, so the structural checks
/// must catch it): every mutant is an error or loads and runs. Returns how many loaded.
fn mutants_never_panic(b: &[u8], mut seed: u64) -> usize {
    let d = artifact::decode(b).unwrap();
    let graph_len = postcard::to_allocvec(&d.meta).unwrap().len();
    let mut valid = 0;
    for _ in 0..1500 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut c = b.to_vec();
        let i = 64 + (seed >> 33) as usize % graph_len;
        c[i] = (seed >> 17) as u8;
        let n = c.len();
        let crc = crc32fast::hash(&c[..n - 4]);
        c[n - 4..].copy_from_slice(&crc.to_le_bytes());
        if let Ok(m) = Model::from_bytes(&c) {
            runs(&m);
            valid += 1;
        }
    }
    valid
}

#[test]
fn int8_structural_corruption_never_panics() {
    let valid = mutants_never_panic(&int8_bytes(), 777);
    println!("{valid} of 1500 mutated int8 artifacts still valid (and ran)");
}

#[test]
fn bad_quantization_parameters_name_the_tensor() {
    let b = int8_bytes();
    let d = artifact::decode(&b).unwrap();
    let g = &d.meta.graph;
    let qconv = g
        .nodes
        .iter()
        .position(|n| matches!(n.op, tern::ir::Op::QConv { .. }))
        .unwrap();
    let y = g.nodes[qconv].outputs[0] as usize;
    let w = g.nodes[qconv].inputs[1] as usize;
    type Mutate = Box<dyn Fn(&mut ArtifactMeta)>;
    let cases: Vec<(Mutate, &str)> = vec![
        (
            Box::new(move |m| m.graph.tensors[y].quant.as_mut().unwrap().scale[0] = f32::NAN),
            "quantization parameters",
        ),
        (
            Box::new(move |m| m.graph.tensors[y].quant.as_mut().unwrap().zero_point[0] = 300),
            "zero point",
        ),
        (
            Box::new(move |m| m.graph.tensors[y].quant.as_mut().unwrap().scale[0] = 1e30),
            "cannot be encoded",
        ),
        (
            Box::new(move |m| m.graph.tensors[w].quant.as_mut().unwrap().zero_point[0] = 3),
            "symmetric",
        ),
        (
            Box::new(move |m| m.graph.tensors[y].dtype = tern::ir::DType::F32),
            "int8",
        ),
        (
            Box::new(move |m| {
                if let tern::ir::Op::QConv { lo, hi, .. } = &mut m.graph.nodes[qconv].op {
                    (*lo, *hi) = (5, 4);
                }
            }),
            "clamp",
        ),
    ];
    // a table lookup without its table: an error from the input count, not an index panic
    let lut = g
        .nodes
        .iter()
        .position(|n| matches!(n.op, tern::ir::Op::QLut))
        .unwrap();
    let e = Model::from_bytes(&reencode(&b, |m| {
        m.graph.nodes[lut].inputs.truncate(1);
    }))
    .unwrap_err();
    assert!(e.context.contains(&g.nodes[lut].name), "{e}");
    for (f, want) in cases {
        let c = reencode(&b, f);
        let e = Model::from_bytes(&c).unwrap_err().to_string();
        assert!(e.contains(want), "expected \"{want}\" in: {e}");
        assert!(
            e.contains(&g.nodes[qconv].name) || e.contains(&g.tensors[y].name),
            "names the node or tensor: {e}"
        );
    }
}

fn int16_bytes() -> Vec<u8> {
    std::fs::read(tern_tests::root().join("runtime/tests/data/cls_int16.tern")).unwrap()
}

#[test]
fn int16_structural_corruption_never_panics() {
    let valid = mutants_never_panic(&int16_bytes(), 991);
    println!("{valid} of 1500 mutated int16 artifacts still valid (and ran)");
}

/// The 16-bit engine's checks (format 10) name the node or tensor at fault: int16 tensors with one
/// positive scale and zero point 0, int16 tables, clamps, and every conv row's i32 bound.
#[test]
fn bad_16bit_parameters_name_the_node() {
    use tern::ir::{DType, Op};
    let b = int16_bytes();
    let d = artifact::decode(&b).unwrap();
    let g = &d.meta.graph;
    let conv = g
        .nodes
        .iter()
        .position(|n| matches!(n.op, Op::Q16Conv { .. }) && n.inputs.len() == 3)
        .unwrap();
    // a conv with a fused function: its table is input 3 and carries the scale it reads
    let lut = g
        .nodes
        .iter()
        .position(|n| matches!(n.op, Op::Q16Conv { .. }) && n.inputs.len() == 4)
        .unwrap();
    let (y, table) = (
        g.nodes[conv].outputs[0] as usize,
        g.nodes[lut].inputs[3] as usize,
    );
    type Mutate = Box<dyn Fn(&mut ArtifactMeta)>;
    let cases: Vec<(Mutate, &str, usize)> = vec![
        (
            Box::new(move |m| m.graph.tensors[y].quant.as_mut().unwrap().scale[0] = -1.0),
            "quantization parameters",
            conv,
        ),
        (
            Box::new(move |m| m.graph.tensors[y].quant.as_mut().unwrap().zero_point[0] = 3),
            "zero point 0",
            conv,
        ),
        (
            Box::new(move |m| m.graph.tensors[y].dtype = DType::I8),
            "int16",
            conv,
        ),
        (
            // (an int8 table: its bytes no longer match its shape)
            Box::new(move |m| m.graph.tensors[table].dtype = DType::I8),
            "bytes",
            lut,
        ),
        (
            Box::new(move |m| m.graph.tensors[table].quant = None),
            "int16 with one positive scale",
            lut,
        ),
        (
            Box::new(move |m| {
                if let Op::Q16Conv { lo, hi, .. } = &mut m.graph.nodes[conv].op {
                    (*lo, *hi) = (5, 4);
                }
            }),
            "clamp",
            conv,
        ),
        (
            // (format 12: a fused f32 function must have an f32 form)
            Box::new(move |m| {
                if let Op::Q16Conv { geom, lo, hi } = m.graph.nodes[conv].op.clone() {
                    let act = tern::ir::Unary::Sigmoid;
                    m.graph.nodes[conv].op = Op::Q16ConvAct { geom, act, lo, hi };
                }
            }),
            "Sigmoid has no 16-bit f32 form",
            conv,
        ),
    ];
    for (f, want, node) in cases {
        let e = Model::from_bytes(&reencode(&b, f)).unwrap_err().to_string();
        assert!(e.contains(want), "expected \"{want}\" in: {e}");
        assert!(
            e.contains(&g.nodes[node].name)
                || e.contains(&g.tensors[y].name)
                || e.contains(&g.tensors[table].name),
            "names the node or tensor: {e}"
        );
    }
    // a matmul row whose i32 sum could overflow on 16-bit inputs (2^15·Σ|w| ≥ 2^31) is refused by name;
    // one weight less fits
    for (k, ok) in [(516usize, true), (517, false)] {
        match q16_matmul(k) {
            // every x is 32767 (1.0), the exact sum 32767·127·k + 2^14 - 1 at scale 1/(32767·127)
            Ok(y) => {
                assert!(ok, "k {k} was accepted");
                let want = (32767.0 * 127.0 * k as f64 + 16383.0) / (32767.0 * 127.0);
                assert!(
                    (y[0] as f64 - want).abs() <= k as f64 / 32767.0,
                    "{y:?} vs {want}"
                );
            }
            Err(e) => {
                assert!(!ok, "k {k}: {e}");
                assert!(e.contains("overflow") && e.contains("\"mm\""), "{e}");
            }
        }
    }
}

/// The 16-bit engine reads int16 constants only as Add/Sub/Mul operands and tables: one fed to a Reshape
/// (its activations live in the arena) is refused by name.
#[test]
fn int16_constant_outside_an_operand_slot_is_refused() {
    use tern::ir::{DType, QParams};
    let mut g = ToolGraph::default();
    let x = g.add_tensor("x", &[1, 4]);
    g.graph.inputs.push(x);
    let q = QParams {
        scale: vec![0.5],
        zero_point: vec![0],
        axis: None,
    };
    let c = g.add_int_const("c16", &[1, 4], DType::I16, Some(q.clone()), vec![1u8; 8]);
    let r = g
        .emit(
            "reshape",
            Op::Reshape,
            vec![c],
            &["r".into()],
            Some(vec![vec![4]]),
        )
        .unwrap()[0];
    g.graph.tensors[r as usize].dtype = DType::I16;
    g.graph.tensors[r as usize].quant = Some(q);
    let out = g
        .emit("dequantize", Op::Dequantize, vec![r], &["y".into()], None)
        .unwrap()[0];
    g.graph.outputs.push(out);
    let e = tern_tools::export::to_bytes(&g, vec![])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("int16 constant \"c16\"") && e.contains("reshape"),
        "{e}"
    );
}

/// x `[1, k]` f32 → int16 → Q16MatMul by W `[k, 1]` of 127s (bias 2^14 - 1) → f32.
fn q16_matmul(k: usize) -> Result<Vec<f32>, String> {
    use tern::ir::{DType, QParams};
    let mut g = ToolGraph::default();
    let x = g.add_tensor("x", &[1, k]);
    g.graph.inputs.push(x);
    let q = |s: f32| QParams {
        scale: vec![s],
        zero_point: vec![0],
        axis: None,
    };
    let xq = g
        .emit("quantize", Op::Quantize, vec![x], &["xq".into()], None)
        .unwrap()[0];
    g.graph.tensors[xq as usize].dtype = DType::I16;
    g.graph.tensors[xq as usize].quant = Some(q(1.0 / 32767.0));
    let w = g.add_int_const(
        "w",
        &[k, 1],
        DType::I8,
        Some(QParams {
            scale: vec![1.0 / 127.0],
            zero_point: vec![0],
            axis: Some(1),
        }),
        vec![127u8; k],
    );
    let b = g.add_int_const(
        "b",
        &[1],
        DType::I32,
        None,
        ((1i32 << 14) - 1).to_le_bytes().to_vec(),
    );
    let y = g
        .emit(
            "mm",
            Op::Q16MatMul {
                lo: i16::MIN,
                hi: i16::MAX,
            },
            vec![xq, w, b],
            &["yq".into()],
            None,
        )
        .unwrap()[0];
    g.graph.tensors[y as usize].dtype = DType::I16;
    g.graph.tensors[y as usize].quant = Some(q(k as f32 / 32767.0));
    let out = g
        .emit("dequantize", Op::Dequantize, vec![y], &["y".into()], None)
        .unwrap()[0];
    g.graph.outputs.push(out);
    // (the tool's writer loads what it wrote: the runtime's refusal comes back through it)
    let bytes = tern_tools::export::to_bytes(&g, vec![]).map_err(|e| e.to_string())?;
    let m = Model::from_bytes(&bytes).map_err(|e| e.to_string())?;
    let mut s = tern::Session::new(&m, Default::default()).map_err(|e| e.to_string())?;
    let xs = vec![1.0f32; k];
    let mut ys = vec![0f32; 1];
    s.run_into(&[&xs], &mut [&mut ys])
        .map_err(|e| e.to_string())?;
    Ok(ys)
}

/// Format 4: deflated weights load to the same model and the same outputs as weights in place; a
/// damaged deflate stream (under a valid checksum) is a Format error naming the section; the deflated
/// kinds mean nothing to an older version's reader (skipped, so the file lacks its sections).
#[test]
fn deflated_sections() {
    let plain = bytes();
    let d = artifact::decode(&plain).unwrap();
    assert!(matches!(d.weights, std::borrow::Cow::Borrowed(_)));
    let opts = artifact::EncodeOptions {
        deflate_weights: true,
    };
    let packed = artifact::encode_with(&d.meta, &d.weights, opts).unwrap();
    let dp = artifact::decode(&packed).unwrap();
    assert!(matches!(dp.weights, std::borrow::Cow::Owned(_)));
    assert_eq!(&dp.weights[..], &d.weights[..]);
    let (m, mp) = (
        Model::from_bytes(&plain).unwrap(),
        Model::from_bytes(&packed).unwrap(),
    );
    let x: Vec<f32> = (0..192).map(|i| (i % 11) as f32 / 7.0 - 0.6).collect();
    assert_eq!(run(&m, &x), run(&mp, &x));

    // damage the weight stream's first bytes, then fix the checksum so only the inflater can object
    let entry = |b: &[u8], i: usize| {
        let e = 16 + i * 24;
        let kind = u32::from_le_bytes(b[e..e + 4].try_into().unwrap());
        let off = u64::from_le_bytes(b[e + 8..e + 16].try_into().unwrap()) as usize;
        (kind, off)
    };
    let (kind, off) = entry(&packed, 1);
    assert_eq!(kind, artifact::SECTION_WEIGHTS_DEFLATE);
    let recrc = |b: &mut Vec<u8>| {
        let n = b.len() - 4;
        let c = crc32fast::hash(&b[..n]);
        b[n..].copy_from_slice(&c.to_le_bytes());
    };
    let mut bad = packed.clone();
    for v in &mut bad[off + 8..off + 16] {
        *v = 0xff;
    }
    recrc(&mut bad);
    let e = Model::from_bytes(&bad).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Format, "{e}");
    assert!(e.context.contains("weight section"), "{e}");
    // a length field that disagrees with the stream
    let mut bad = packed.clone();
    bad[off] ^= 1;
    recrc(&mut bad);
    let e = Model::from_bytes(&bad).unwrap_err();
    assert!(e.context.contains("weight section"), "{e}");
    // a length within the 4 GiB bound but beyond what the stream can expand to (a deflate bomb): refused
    // before memory is taken for it
    let mut bad = packed.clone();
    bad[off..off + 8].copy_from_slice(&(1u64 << 30).to_le_bytes());
    recrc(&mut bad);
    let e = Model::from_bytes(&bad).unwrap_err();
    assert!(e.context.contains("more than deflate can expand"), "{e}");
    // the same bytes claiming format 3: the deflated kinds are unknown there
    let mut old = packed.clone();
    old[4..8].copy_from_slice(&3u32.to_le_bytes());
    recrc(&mut old);
    let e = Model::from_bytes(&old).unwrap_err();
    assert!(e.context.contains("no graph section"), "{e}");
}

/// A channel-scaled tensor (one scale per channel on axis 1, one zero point: a QConv's output read only
/// by QLuts, one table per channel) loads and computes: with every channel at the tensor's scale and each
/// table a copy of the old one it is the per-tensor model exactly. Malformed ones are errors naming the
/// tensor or table.
#[test]
fn channel_scaled_tensors() {
    let b = int8_bytes();
    let d = artifact::decode(&b).unwrap();
    let g = &d.meta.graph;
    // a QConv whose output only QLuts read (PP-OCR cls: the SE block's second conv, before HardSigmoid)
    let (ci, li) = g
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.op, tern::ir::Op::QConv { .. }))
        .find_map(|(ci, n)| {
            let y = n.outputs[0];
            let readers: Vec<usize> = g
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, m)| m.inputs.contains(&y))
                .map(|(i, _)| i)
                .collect();
            (readers.len() == 1 && matches!(g.nodes[readers[0]].op, tern::ir::Op::QLut))
                .then(|| (ci, readers[0]))
        })
        .expect("cls int8 has a QConv read only by a QLut");
    let y = g.nodes[ci].outputs[0] as usize;
    let table = g.nodes[li].inputs[1] as usize;
    let c = g.tensors[y].shape[1] as usize;
    let q = g.tensors[y].quant.clone().unwrap();
    let old = d.weights[g.tensors[table].data.unwrap().offset as usize..][..256].to_vec();
    // every channel on the tensor's scale, the table once per channel, appended to the blob
    let channel = move |m: &mut ArtifactMeta, blob: &mut Vec<u8>, tables: usize| {
        let off = blob.len().div_ceil(64) * 64;
        blob.resize(off, 0);
        for _ in 0..tables {
            blob.extend_from_slice(&old);
        }
        let t = &mut m.graph.tensors[table];
        t.shape = if tables == 1 {
            vec![256]
        } else {
            vec![tables as u32, 256]
        };
        t.data = Some(tern::ir::BlobRange {
            offset: off as u64,
            len: (tables * 256) as u64,
        });
        m.graph.tensors[y].quant = Some(tern::ir::QParams {
            scale: vec![q.scale[0]; c],
            zero_point: vec![q.zero_point[0]; c],
            axis: Some(1),
        });
    };
    let mut meta = d.meta.clone();
    let mut blob = d.weights.to_vec();
    channel(&mut meta, &mut blob, c);
    let packed = artifact::encode(&meta, &blob).unwrap();
    let m = Model::from_bytes(&packed).unwrap();
    let x: Vec<f32> = (0..3 * 48 * 192)
        .map(|i| ((i * 7 % 23) as f32 - 11.0) / 12.0)
        .collect();
    let base = Model::from_bytes(&b).unwrap();
    let run2 = |m: &Model| {
        let mut s = tern::Session::new(m, Default::default()).unwrap();
        let mut y = vec![0.0; 2];
        s.run_into(&[&x], &mut [&mut y]).unwrap();
        y
    };
    assert_eq!(
        run2(&m),
        run2(&base),
        "same scales, same tables: same outputs"
    );

    type Mutate = Box<dyn Fn(&mut ArtifactMeta, &mut Vec<u8>)>;
    let cases: Vec<(Mutate, String)> = vec![
        // one table for a channel-scaled input
        (
            Box::new({
                let ch = channel.clone();
                move |m, blob| ch(m, blob, 1)
            }),
            g.tensors[table].name.clone(),
        ),
        // channels that disagree on the zero point
        (
            Box::new({
                let ch = channel.clone();
                move |m, blob| {
                    ch(m, blob, c);
                    m.graph.tensors[y].quant.as_mut().unwrap().zero_point[1] += 1;
                }
            }),
            g.tensors[y].name.clone(),
        ),
        // a scale count that is not the channel count
        (
            Box::new({
                let ch = channel.clone();
                move |m, blob| {
                    ch(m, blob, c);
                    m.graph.tensors[y].quant.as_mut().unwrap().scale.pop();
                }
            }),
            g.tensors[y].name.clone(),
        ),
    ];
    for (f, want) in cases {
        let (mut meta, mut blob) = (d.meta.clone(), d.weights.to_vec());
        f(&mut meta, &mut blob);
        let e = Model::from_bytes(&artifact::encode(&meta, &blob).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&want), "expected \"{want}\" in: {e}");
    }
    // a channel-scaled tensor read by anything but a QLut: the per-tensor reader refuses it, naming it
    // (the table's reader gets the conv output itself, of the same shape: only the type check can
    // object)
    let (mut meta, mut blob) = (d.meta.clone(), d.weights.to_vec());
    channel(&mut meta, &mut blob, c);
    let lut_out = g.nodes[li].outputs[0];
    let (reader, k) = g
        .nodes
        .iter()
        .enumerate()
        .find_map(|(i, n)| n.inputs.iter().position(|&t| t == lut_out).map(|k| (i, k)))
        .expect("the table's output is read");
    meta.graph.nodes[reader].inputs[k] = y as u32;
    let e = Model::from_bytes(&artifact::encode(&meta, &blob).unwrap()).unwrap_err();
    assert!(e.context.contains(&g.tensors[y].name), "{e}");
}

/// A QLut may write a channel-scaled tensor (one table per channel) and a depthwise QConv may read one
/// (each output channel's multiplier takes its input channel's scale): with every channel on the tensor's
/// scale it is the per-tensor model exactly. A QConv with several input channels per group cannot take
/// per-channel input scales: refused, naming the tensor.
#[test]
fn channel_scaled_depthwise_inputs() {
    let b = int8_bytes();
    let d = artifact::decode(&b).unwrap();
    let g = &d.meta.graph;
    let readers = |t: u32| -> Vec<usize> {
        (0..g.nodes.len())
            .filter(|&i| g.nodes[i].inputs.contains(&t))
            .collect()
    };
    // a QLut whose output only a QConv reads: depthwise (one input channel per group) or not
    let lut_into = |depthwise: bool| {
        g.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n.op, Op::QLut))
            .find(|(_, n)| {
                let r = readers(n.outputs[0]);
                r.len() == 1
                    && match &g.nodes[r[0]].op {
                        Op::QConv { geom, .. } => {
                            let w = &g.tensors[g.nodes[r[0]].inputs[1] as usize];
                            (w.shape[1] == 1 && geom.groups > 1) == depthwise
                        }
                        _ => false,
                    }
            })
            .map(|(i, _)| i)
            .expect("cls int8 has a table read only by a (depthwise) conv")
    };
    // the table's output channel-scaled on its own scale, the table once per channel
    let channel = |li: usize| {
        let (mut meta, mut blob) = (d.meta.clone(), d.weights.to_vec());
        let (y, table) = (
            g.nodes[li].outputs[0] as usize,
            g.nodes[li].inputs[1] as usize,
        );
        let c = g.tensors[y].shape[1] as usize;
        let q = g.tensors[y].quant.clone().unwrap();
        let old = d.weights[g.tensors[table].data.unwrap().offset as usize..][..256].to_vec();
        let off = blob.len().div_ceil(64) * 64;
        blob.resize(off, 0);
        for _ in 0..c {
            blob.extend_from_slice(&old);
        }
        let t = &mut meta.graph.tensors[table];
        t.shape = vec![c as u32, 256];
        t.data = Some(tern::ir::BlobRange {
            offset: off as u64,
            len: (c * 256) as u64,
        });
        meta.graph.tensors[y].quant = Some(tern::ir::QParams {
            scale: vec![q.scale[0]; c],
            zero_point: vec![q.zero_point[0]; c],
            axis: Some(1),
        });
        (
            artifact::encode(&meta, &blob).unwrap(),
            g.tensors[y].name.clone(),
        )
    };
    let x: Vec<f32> = (0..3 * 48 * 192)
        .map(|i| ((i * 5 % 29) as f32 - 14.0) / 15.0)
        .collect();
    let run2 = |m: &Model| {
        let mut s = tern::Session::new(m, Default::default()).unwrap();
        let mut y = vec![0.0; 2];
        s.run_into(&[&x], &mut [&mut y]).unwrap();
        y
    };
    let (dw, _) = channel(lut_into(true));
    let base = Model::from_bytes(&b).unwrap();
    assert_eq!(
        run2(&Model::from_bytes(&dw).unwrap()),
        run2(&base),
        "same scales, same tables: same outputs"
    );
    let (pw, name) = channel(lut_into(false));
    let e = Model::from_bytes(&pw).unwrap_err();
    assert!(e.context.contains(&name), "{e}");
}

/// Pooling windows far larger than the input (kernel and stride 2^20, padding 2^20 − 1 on each side) are
/// valid ONNX and cost only the taps inside the input (2^40 taps per window before the walk skipped the
/// padding arithmetically). Output cell o's window starts at o·2^20 − (2^20 − 1): cell 0 ends on input
/// row/column 0, cell 1 starts on 1, so each 2×2 output holds one input cell; with the padding counted
/// (all 2^40 taps lie in the declared padding) that cell is divided by 2^40; dilated by 2 (max pooling's
/// window walk) the one 1×1 window's odd taps meet input cell (1, 1) alone.
#[test]
fn huge_pooling_windows_cost_only_the_input() {
    let x = [1.0f32, 2.0, 3.0, 4.0];
    let all = (1u64 << 40) as f32;
    for (kind, dilations, want) in [
        (
            tern::ir::PoolKind::Avg {
                count_include_pad: false,
            },
            [1, 1],
            x.to_vec(),
        ),
        (
            tern::ir::PoolKind::Avg {
                count_include_pad: true,
            },
            [1, 1],
            x.iter().map(|v| v / all).collect(),
        ),
        (tern::ir::PoolKind::Max, [2, 2], vec![4.0]),
    ] {
        let bytes = tern_tests::huge_pool(kind, dilations);
        let m = Model::from_bytes(&bytes).unwrap();
        let mut s = tern::Session::new(&m, Default::default()).unwrap();
        let mut out = vec![0f32; m.outputs().next().unwrap().numel()];
        s.run_into(&[&x], &mut [&mut out]).unwrap();
        assert_eq!(out, want, "{kind:?} dilations {dilations:?}");
    }
}

/// A pooling input with no rows, padded into one window row: valid shapes, and the window holds no input
/// cell (average: 0; max: −inf) — it was a `chunks_exact(0)` panic.
#[test]
fn pooling_an_empty_input_is_not_a_panic() {
    for (kind, want) in [
        (
            tern::ir::PoolKind::Avg {
                count_include_pad: false,
            },
            0.0,
        ),
        (tern::ir::PoolKind::Max, f32::NEG_INFINITY),
    ] {
        let mut g = ToolGraph::default();
        let x = g.add_tensor("x", &[1, 1, 0, 2]);
        g.graph.inputs.push(x);
        let pool = tern::ir::Pool2d {
            kind,
            kernel: [2, 2],
            strides: [1, 1],
            dilations: [1, 1],
            pads: [1, 0, 1, 0],
            ceil_extra: [0, 0],
        };
        let y = g
            .emit("pool", Op::Pool(pool), vec![x], &["y".into()], None)
            .unwrap()[0];
        g.graph.outputs.push(y);
        let bytes = tern_tools::export::to_bytes(&g, vec![]).unwrap();
        let m = Model::from_bytes(&bytes).unwrap();
        let mut s = tern::Session::new(&m, Default::default()).unwrap();
        let mut out = vec![1f32; m.outputs().next().unwrap().numel()];
        assert_eq!(out.len(), 1, "one window");
        s.run_into(&[&[]], &mut [&mut out]).unwrap();
        assert_eq!(out, [want], "{kind:?}");
    }
}

/// A one-layer recurrent op of `gates` gates (sequence 3, batch 1, 4 features, hidden 2, forward):
/// x [3, 1, 4], constant W, R, B and initial states (`states`: h, and c for an LSTM) → `outs`.
fn recurrent_graph(op: Op, gates: usize, states: &[&str], outs: &[&str]) -> ToolGraph {
    let mut g = ToolGraph::default();
    let x = g.add_tensor("x", &[3, 1, 4]);
    g.graph.inputs.push(x);
    let rows = 2 * gates;
    let w = g.add_const(
        "W",
        &[1, rows, 4],
        (0..rows * 4).map(|i| (i as f32 * 0.3).sin()).collect(),
    );
    let r = g.add_const(
        "R",
        &[1, rows, 2],
        (0..rows * 2).map(|i| (i as f32 * 0.7).cos()).collect(),
    );
    let b = g.add_const(
        "B",
        &[1, 2 * rows],
        (0..2 * rows).map(|i| i as f32 * 0.01).collect(),
    );
    let mut ins = vec![x, w, r, b];
    for (k, name) in states.iter().enumerate() {
        ins.push(g.add_const(name, &[1, 1, 2], vec![0.1 + k as f32 * 0.1, -0.1]));
    }
    let names: Vec<String> = outs.iter().map(|o| o.to_string()).collect();
    let ids = g.emit("rnn", op, ins, &names, None).unwrap();
    g.graph.outputs.extend(ids);
    g
}

/// The artifact of recurrent graph `g`: it loads and runs, and with R where W belongs it is refused with
/// `want` (the wrong feature count, named). Returns its bytes for further checks.
fn loads_and_names_r_for_w(g: &ToolGraph, want: &str) -> Vec<u8> {
    let good = tern_tools::export::to_bytes(g, vec![]).unwrap();
    let m = Model::from_bytes(&good).expect("a well-formed recurrent op");
    runs(&m);
    let b = reencode(&good, |m| {
        let r = m.graph.tensors.iter().position(|t| t.name == "R").unwrap() as u32;
        m.graph.nodes[0].inputs[1] = r;
    });
    let e = Model::from_bytes(&b).unwrap_err();
    assert!(e.context.contains(want), "{e}");
    good
}

/// A one-layer LSTM: x [3, 1, 4] → Y, Y_h, Y_c.
fn lstm_graph() -> ToolGraph {
    let op = Op::Lstm {
        hidden: 2,
        direction: tern::ir::Direction::Forward,
        clip: None,
        peepholes: false,
    };
    recurrent_graph(op, 4, &["h0", "c0"], &["Y", "Y_h", "Y_c"])
}

#[test]
fn lstm_inputs_are_checked() {
    let good = loads_and_names_r_for_w(&lstm_graph(), "W has shape [1, 8, 2]");
    // the graph input where W belongs: weights must be constants
    let b = reencode(&good, |m| m.graph.nodes[0].inputs[1] = 0);
    let e = Model::from_bytes(&b).unwrap_err();
    assert!(e.context.contains("must be a constant"), "{e}");
    // peepholes promised but absent
    let b = reencode(&good, |m| {
        if let Op::Lstm { peepholes, .. } = &mut m.graph.nodes[0].op {
            *peepholes = true;
        }
    });
    let e = Model::from_bytes(&b).unwrap_err();
    assert!(e.context.contains("takes 7..=7 inputs"), "{e}");
    // a hidden size the weights do not have
    let b = reencode(&good, |m| {
        if let Op::Lstm { hidden, .. } = &mut m.graph.nodes[0].op {
            *hidden = 3;
        }
    });
    assert!(Model::from_bytes(&b).is_err());
}

/// A one-layer GRU (PyTorch's form): x [3, 1, 4] → Y, Y_h.
fn gru_graph() -> ToolGraph {
    let op = Op::Gru {
        hidden: 2,
        direction: tern::ir::Direction::Forward,
        clip: None,
        linear_before_reset: true,
    };
    recurrent_graph(op, 3, &["h0"], &["Y", "Y_h"])
}

/// GRU (and RNN) inputs are validated at load, each fault named.
#[test]
fn gru_inputs_are_checked() {
    let good = loads_and_names_r_for_w(&gru_graph(), "W has shape [1, 6, 2]");
    // the graph input where the bias belongs: weights and biases must be constants
    let b = reencode(&good, |m| m.graph.nodes[0].inputs[3] = 0);
    let e = Model::from_bytes(&b).unwrap_err();
    assert!(
        e.context.contains("input 3 \"x\" must be a constant"),
        "{e}"
    );
    // an LSTM's initial c given to a GRU: one input too many
    let b = reencode(&good, |m| {
        let h0 = m.graph.nodes[0].inputs[4];
        m.graph.nodes[0].inputs.push(h0);
    });
    let e = Model::from_bytes(&b).unwrap_err();
    assert!(e.context.contains("takes 5..=5 inputs"), "{e}");
    // a hidden size the weights do not have
    let b = reencode(&good, |m| {
        if let Op::Gru { hidden, .. } = &mut m.graph.nodes[0].op {
            *hidden = 3;
        }
    });
    assert!(Model::from_bytes(&b).is_err());
    // the same weights under a plain RNN (one gate, not three): named
    let b = reencode(&good, |m| {
        m.graph.nodes[0].op = Op::Rnn {
            hidden: 2,
            direction: tern::ir::Direction::Forward,
            clip: None,
        };
    });
    let e = Model::from_bytes(&b).unwrap_err();
    assert!(
        e.context.contains("W has shape [1, 6, 4]") && e.context.contains("need [1, 2, 4]"),
        "{e}"
    );
}

/// A float op's weight stored as int8 with per-channel scales (format 7) computes exactly what the same
/// op computes on the f32 weights `scale · q`; without parameters an int8 weight is refused by name.
#[test]
fn int8_stored_weights_of_a_float_op_widen_exactly() {
    use tern::ir::{DType, QParams};
    let q: Vec<i8> = (0..108).map(|i| ((i * 37) % 255 - 127) as i8).collect();
    let scale: Vec<f32> = vec![0.011, 0.0023, 0.07, 0.5];
    // the reference: the same conv on the widened values, computed here in f32 (one rounding each)
    let mut f32_graph = small();
    let w = f32_graph
        .graph
        .tensors
        .iter()
        .position(|t| t.name == "w")
        .unwrap() as u32;
    f32_graph.set_const(
        w,
        q.iter()
            .enumerate()
            .map(|(i, &v)| v as f32 * scale[i / 27])
            .collect(),
    );
    let mut i8_graph = small();
    let w8 = i8_graph.add_int_const(
        "w8",
        &[4, 3, 3, 3],
        DType::I8,
        Some(QParams {
            scale: scale.clone(),
            zero_point: vec![0; 4],
            axis: Some(0),
        }),
        q.iter().map(|&v| v as u8).collect(),
    );
    i8_graph.graph.nodes[0].inputs[1] = w8;
    let fa = tern_tools::export::to_bytes(&f32_graph, vec![]).unwrap();
    let a = Model::from_bytes(&fa).unwrap();
    let b8 = tern_tools::export::to_bytes(&i8_graph, vec![]).unwrap();
    let b = Model::from_bytes(&b8).expect("int8-stored conv weights with scales");
    let x: Vec<f32> = (0..192).map(|i| (i as f32 * 0.13).cos()).collect();
    let (ya, yb) = (run(&a, &x), run(&b, &x));
    assert!(
        ya.iter().zip(&yb).all(|(p, q)| p.to_bits() == q.to_bits()),
        "{ya:?} vs {yb:?}"
    );
    assert!(ya.iter().any(|v| *v != 0.0));
    let bad = reencode(&b8, |m| {
        let t = m.graph.tensors.iter_mut().find(|t| t.name == "w8").unwrap();
        t.quant = None;
    });
    let e = Model::from_bytes(&bad).unwrap_err();
    assert!(
        e.context.contains("\"w8\" is I8") && e.context.contains("quantization parameters"),
        "{e}"
    );
}

/// An int8 constant is a float op's stored weight or an integer op's operand, never both (the GPU keeps
/// one form of it): the validator names the node and the constant.
#[test]
fn an_int8_constant_shared_by_float_and_integer_ops_is_refused() {
    use tern::ir::{DType, QParams};
    let mut g = small();
    let params = QParams {
        scale: vec![0.01],
        zero_point: vec![0],
        axis: None,
    };
    let w8 = g.add_int_const(
        "w8",
        &[4, 3, 3, 3],
        DType::I8,
        Some(params.clone()),
        (0..108).map(|i| (i as i8).wrapping_mul(3) as u8).collect(),
    );
    g.graph.nodes[0].inputs[1] = w8;
    let alone = tern_tools::export::to_bytes(&g, vec![]).unwrap();
    runs(&Model::from_bytes(&alone).expect("a float conv on an int8-stored weight"));
    // an int8 Reshape (an integer-side op) reading the same constant
    let r = g
        .emit(
            "also_int",
            Op::Reshape,
            vec![w8],
            &["w8_flat".into()],
            Some(vec![vec![108]]),
        )
        .unwrap()[0];
    let t = &mut g.graph.tensors[r as usize];
    t.dtype = DType::I8;
    t.quant = Some(params);
    // the tool's writer validates what it writes, so it already refuses
    let e = tern_tools::export::to_bytes(&g, vec![])
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"also_int\"") && e.contains("\"w8\""), "{e}");
}

/// x f32 → int8 (0.1, zero point 3) → Requantize → int16 (0.001) → Requantize → int8 (0.05, −2) → f32:
/// the two rescales (×100, then ÷50) are exact, so y is x on the 0.1 grid within the int8s' ranges; a
/// Requantize of an f32 tensor
/// and one whose multiplier cannot be encoded are refused by name.
#[test]
fn requantize_between_widths() {
    use tern::ir::{DType, QParams};
    let build = |s16: f32, float_in: bool| -> Result<Vec<f32>, String> {
        let mut g = ToolGraph::default();
        let x = g.add_tensor("x", &[1, 6]);
        g.graph.inputs.push(x);
        let q = |s: f32, z: i32| QParams {
            scale: vec![s],
            zero_point: vec![z],
            axis: None,
        };
        let step = |g: &mut ToolGraph, name: &str, op: Op, x: u32, dt: DType, p: QParams| {
            let t = g
                .emit(name, op, vec![x], &[format!("{name}_y")], None)
                .unwrap()[0];
            g.graph.tensors[t as usize].dtype = dt;
            g.graph.tensors[t as usize].quant = Some(p);
            t
        };
        let a = step(&mut g, "q8", Op::Quantize, x, DType::I8, q(0.1, 3));
        let from = if float_in { x } else { a };
        let b = step(&mut g, "up", Op::Requantize, from, DType::I16, q(s16, 0));
        let c = step(&mut g, "down", Op::Requantize, b, DType::I8, q(0.05, -2));
        let y = g
            .emit("dq", Op::Dequantize, vec![c], &["y".into()], None)
            .unwrap()[0];
        g.graph.outputs.push(y);
        let bytes = tern_tools::export::to_bytes(&g, vec![]).map_err(|e| e.to_string())?;
        let m = Model::from_bytes(&bytes).map_err(|e| e.to_string())?;
        let mut s = tern::Session::new(&m, Default::default()).map_err(|e| e.to_string())?;
        let xs = [0.04f32, -1.26, 3.0, -12.0, 6.33, 20.0];
        let mut ys = vec![0f32; 6];
        s.run_into(&[&xs], &mut [&mut ys])
            .map_err(|e| e.to_string())?;
        Ok(ys)
    };
    let y = build(0.001, false).unwrap();
    // 0.1·(clamp(round(x / 0.1) + 3, −128, 127) − 3), then the last int8's range [−6.3, 6.45] (20 clips
    // at 12.4 first)
    let want = [0.0f32, -1.3, 3.0, -6.3, 6.3, 6.45];
    for (a, b) in y.iter().zip(want) {
        assert!((a - b).abs() < 1e-5, "{y:?} vs {want:?}");
    }
    let e = build(0.001, true).unwrap_err();
    assert!(e.contains("up") && e.contains("int8"), "{e}");
    let e = build(1e30, false).unwrap_err();
    assert!(e.contains("up") && e.contains("rescale multiplier"), "{e}");
}
