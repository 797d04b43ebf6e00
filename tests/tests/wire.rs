//! The artifact's wire format, pinned per format version. `runtime/tests/data/wire_v9.tern` holds a
//! synthetic graph with every op, function and parameter enum of format 9 (not a runnable model: decoding
//! does not validate). Decoding it must give back exactly the graph built here, so a reordered enum
//! variant, a field added, removed or moved, or a changed encoding — each of which would make the
//! artifacts users already have read wrongly — fails here. A new format adds its own file and graph (new
//! variants go at the end of their enums); the old files stay. `TERN_REGEN_FIXTURES=1` writes the file of
//! the current format only where it does not exist yet.
use tern::artifact::{self, ArtifactMeta};
use tern::ir::{
    BinOp, BlobRange, Conv2d, CoordMode, DType, Direction, Graph, NearestMode, Node, Op, PadMode,
    Pool2d, PoolKind, QParams, ReduceOp, ResizeMode, Tensor, Unary,
};
use tern::plan::MemoryPlan;

/// Every `Unary` of format 9.
fn unaries() -> Vec<Unary> {
    vec![
        Unary::Relu,
        Unary::Clip {
            min: -1.5,
            max: 6.0,
        },
        Unary::Sigmoid,
        Unary::HardSigmoid {
            alpha: 0.2,
            beta: 0.5,
        },
        Unary::HardSwish,
        Unary::LeakyRelu { alpha: 0.01 },
        Unary::Erf,
        Unary::Sqrt,
        Unary::Exp,
        Unary::Log,
        Unary::Tanh,
        Unary::Abs,
        Unary::Neg,
        Unary::Reciprocal,
        Unary::Floor,
        Unary::Ceil,
        Unary::Silu,
    ]
}

/// Fails to compile when a variant is added to `Op` or `Unary`: pin it in the newest format's graph then
/// (and give that format its own file).
fn pinned(op: &Op) -> bool {
    let unary = |u: &Unary| match u {
        Unary::Relu
        | Unary::Clip { .. }
        | Unary::Sigmoid
        | Unary::HardSigmoid { .. }
        | Unary::HardSwish
        | Unary::LeakyRelu { .. }
        | Unary::Erf
        | Unary::Sqrt
        | Unary::Exp
        | Unary::Log
        | Unary::Tanh
        | Unary::Abs
        | Unary::Neg
        | Unary::Reciprocal
        | Unary::Floor
        | Unary::Ceil
        | Unary::Silu => true,
    };
    match op {
        Op::Unary(u) => unary(u),
        Op::Conv { .. }
        | Op::ConvTranspose { .. }
        | Op::MatMul { .. }
        | Op::Binary { .. }
        | Op::ChannelAffine { .. }
        | Op::Pool(_)
        | Op::GlobalPool(_)
        | Op::Resize { .. }
        | Op::Concat { .. }
        | Op::Split { .. }
        | Op::Slice { .. }
        | Op::Pad { .. }
        | Op::Reshape
        | Op::Transpose { .. }
        | Op::Softmax { .. }
        | Op::Reduce { .. }
        | Op::Quantize
        | Op::Dequantize
        | Op::QConv { .. }
        | Op::QMatMul { .. }
        | Op::QBinary { .. }
        | Op::QLut
        | Op::QConvTranspose { .. }
        | Op::Lstm { .. }
        | Op::Gru { .. }
        | Op::Rnn { .. }
        | Op::Q16Conv { .. }
        | Op::Q16MatMul { .. }
        | Op::Q16Binary { .. }
        | Op::Q16Lut
        | Op::Requantize => true,
        Op::Q16Unary(u) | Op::Q16ConvAct { act: u, .. } => unary(u),
    }
}

/// The format-9 graph: one node per op variant (activations and parameters varied), tensors of every
/// element type, with and without constant data and quantization parameters, a plan and metadata.
fn graph_v9() -> ArtifactMeta {
    let geom = Conv2d {
        kernel: [3, 2],
        strides: [2, 1],
        dilations: [1, 2],
        pads: [1, 0, 2, 1],
        groups: 4,
        output_padding: [1, 0],
    };
    let pool = |kind| Pool2d {
        kind,
        kernel: [3, 3],
        strides: [2, 2],
        dilations: [1, 1],
        pads: [1, 1, 0, 0],
        ceil_extra: [1, 0],
    };
    let mut ops = vec![
        Op::Conv {
            geom: geom.clone(),
            act: Some(Unary::HardSwish),
        },
        Op::ConvTranspose {
            geom: geom.clone(),
            act: None,
        },
        Op::MatMul {
            act: Some(Unary::Relu),
        },
        Op::ChannelAffine {
            act: Some(Unary::Clip { min: 0.0, max: 6.0 }),
        },
        Op::Pool(pool(PoolKind::Max)),
        Op::Pool(pool(PoolKind::Avg {
            count_include_pad: true,
        })),
        Op::GlobalPool(PoolKind::Avg {
            count_include_pad: false,
        }),
        Op::Concat { axis: 1 },
        Op::Split { axis: 2 },
        Op::Slice {
            starts: vec![0, -3],
            steps: vec![1, -2],
        },
        Op::Pad {
            pads: vec![0, 1, -1, 2],
            mode: PadMode::Constant(0.5),
        },
        Op::Pad {
            pads: vec![1, 1],
            mode: PadMode::Reflect,
        },
        Op::Pad {
            pads: vec![2, 0],
            mode: PadMode::Edge,
        },
        Op::Reshape,
        Op::Transpose {
            perm: vec![0, 2, 3, 1],
        },
        Op::Softmax { axis: 3 },
        Op::Quantize,
        Op::Dequantize,
        Op::QConv {
            geom: geom.clone(),
            lo: -128,
            hi: 100,
        },
        Op::QMatMul { lo: -5, hi: 127 },
        Op::QBinary {
            op: BinOp::Mul,
            lo: -128,
            hi: 127,
        },
        Op::QLut,
        Op::QConvTranspose {
            geom,
            lo: 0,
            hi: 127,
        },
        Op::Lstm {
            hidden: 128,
            direction: Direction::Bidirectional,
            clip: Some(3.0),
            peepholes: true,
        },
        Op::Gru {
            hidden: 64,
            direction: Direction::Reverse,
            clip: None,
            linear_before_reset: true,
        },
        Op::Rnn {
            hidden: 32,
            direction: Direction::Forward,
            clip: Some(1.0),
        },
    ];
    let bins = [
        BinOp::Add,
        BinOp::Sub,
        BinOp::Mul,
        BinOp::Div,
        BinOp::Pow,
        BinOp::Max,
        BinOp::Min,
    ];
    ops.extend(bins.map(|op| Op::Binary { op, act: None }));
    ops.extend(unaries().into_iter().map(Op::Unary));
    let nearest = [
        NearestMode::RoundPreferFloor,
        NearestMode::RoundPreferCeil,
        NearestMode::Floor,
        NearestMode::Ceil,
    ];
    let coords = [
        CoordMode::HalfPixel,
        CoordMode::PytorchHalfPixel,
        CoordMode::Asymmetric,
        CoordMode::AlignCorners,
        CoordMode::TfHalfPixelForNearest,
    ];
    for (i, coord) in coords.into_iter().enumerate() {
        let mode = match nearest.get(i) {
            Some(&n) => ResizeMode::Nearest(n),
            None => ResizeMode::Linear,
        };
        ops.push(Op::Resize {
            mode,
            coord,
            scales: vec![1.0, 1.0, 2.0, 0.5],
        });
    }
    for (op, keepdims) in [
        (ReduceOp::Mean, true),
        (ReduceOp::Sum, false),
        (ReduceOp::Max, true),
        (ReduceOp::Min, false),
    ] {
        ops.push(Op::Reduce {
            op,
            axes: vec![1, 3],
            keepdims,
        });
    }
    assert!(ops.iter().all(pinned));
    let tensor = |name: &str, dtype, data: Option<BlobRange>, quant| Tensor {
        name: name.into(),
        dtype,
        shape: vec![1, 4, 5, 6],
        data,
        quant,
    };
    let tensors = vec![
        tensor("x", DType::F32, None, None),
        tensor("w", DType::F16, Some(BlobRange { offset: 0, len: 8 }), None),
        tensor(
            "q",
            DType::I8,
            None,
            Some(QParams {
                scale: vec![0.25, 0.5, 1.0, 2.0],
                zero_point: vec![-3; 4],
                axis: Some(1),
            }),
        ),
        tensor(
            "k",
            DType::I8,
            Some(BlobRange { offset: 64, len: 4 }),
            Some(QParams {
                scale: vec![0.125],
                zero_point: vec![7],
                axis: None,
            }),
        ),
        tensor("u", DType::U8, None, None),
        tensor(
            "b",
            DType::I32,
            Some(BlobRange {
                offset: 128,
                len: 16,
            }),
            None,
        ),
    ];
    let nodes = ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| Node {
            name: format!("node {i} ü"),
            op,
            inputs: vec![0, 1, 3, 5],
            outputs: vec![2, 4],
        })
        .collect();
    ArtifactMeta {
        graph: Graph {
            tensors,
            nodes,
            inputs: vec![0],
            outputs: vec![2],
        },
        plan: MemoryPlan {
            arena_bytes: 4096,
            offsets: vec![0, u64::MAX, 64, u64::MAX, 1024, u64::MAX],
        },
        metadata: vec![
            ("producer".into(), "wire test".into()),
            ("quant.note".into(), "€ and ü".into()),
        ],
    }
}

#[test]
fn format_9_reads_as_written() {
    let path = tern_tests::root().join("runtime/tests/data/wire_v9.tern");
    let want = graph_v9();
    if std::env::var("TERN_REGEN_FIXTURES").is_ok()
        && !path.exists()
        && artifact::FORMAT_VERSION == 9
    {
        std::fs::write(&path, artifact::encode(&want, &[0u8; 192]).unwrap()).unwrap();
    }
    let bytes = std::fs::read(&path).expect("the pinned format-9 artifact");
    let d = artifact::decode(&bytes).unwrap();
    assert_eq!(d.version, 9);
    assert!(
        d.meta == want,
        "format 9 no longer reads as written: an enum variant moved or a field changed"
    );
    assert_eq!(d.weights.len(), 192);
}

/// The format-10 graph: format 9's, plus the 16-bit engine's ops and an int16 tensor.
fn graph_v10() -> ArtifactMeta {
    let mut m = graph_v9();
    let geom = Conv2d {
        kernel: [3, 3],
        strides: [1, 2],
        dilations: [1, 1],
        pads: [1, 1, 1, 1],
        groups: 8,
        output_padding: [0, 0],
    };
    let ops = vec![
        Op::Q16Conv {
            geom,
            lo: -32768,
            hi: 1200,
        },
        Op::Q16MatMul { lo: 0, hi: 32767 },
        Op::Q16Binary {
            op: BinOp::Sub,
            lo: -7,
            hi: 9,
        },
        Op::Q16Lut,
    ];
    assert!(ops.iter().all(pinned));
    let base = m.graph.nodes.len();
    m.graph
        .nodes
        .extend(ops.into_iter().enumerate().map(|(i, op)| Node {
            name: format!("q16 node {}", base + i),
            op,
            inputs: vec![6, 1],
            outputs: vec![6],
        }));
    m.graph.tensors.push(Tensor {
        name: "h".into(),
        dtype: DType::I16,
        shape: vec![1, 8, 3, 3],
        data: None,
        quant: Some(QParams {
            scale: vec![0.001],
            zero_point: vec![0],
            axis: None,
        }),
    });
    m.plan.offsets.push(2048);
    m
}

#[test]
fn format_10_reads_as_written() {
    let path = tern_tests::root().join("runtime/tests/data/wire_v10.tern");
    let want = graph_v10();
    if std::env::var("TERN_REGEN_FIXTURES").is_ok()
        && !path.exists()
        && artifact::FORMAT_VERSION == 10
    {
        std::fs::write(&path, artifact::encode(&want, &[0u8; 192]).unwrap()).unwrap();
    }
    let bytes = std::fs::read(&path).expect("the pinned format-10 artifact");
    let d = artifact::decode(&bytes).unwrap();
    assert_eq!(d.version, 10);
    assert!(
        d.meta == want,
        "format 10 no longer reads as written: an enum variant moved or a field changed"
    );
    assert_eq!(d.weights.len(), 192);
}

/// The format-11 graph: format 10's, plus `Op::Requantize`.
fn graph_v11() -> ArtifactMeta {
    let mut m = graph_v10();
    assert!(pinned(&Op::Requantize));
    let base = m.graph.nodes.len();
    m.graph.nodes.push(Node {
        name: format!("rescale node {base}"),
        op: Op::Requantize,
        inputs: vec![6],
        outputs: vec![1],
    });
    m
}

#[test]
fn format_11_reads_as_written() {
    let path = tern_tests::root().join("runtime/tests/data/wire_v11.tern");
    let want = graph_v11();
    if std::env::var("TERN_REGEN_FIXTURES").is_ok()
        && !path.exists()
        && artifact::FORMAT_VERSION == 11
    {
        std::fs::write(&path, artifact::encode(&want, &[0u8; 192]).unwrap()).unwrap();
    }
    let bytes = std::fs::read(&path).expect("the pinned format-11 artifact");
    let d = artifact::decode(&bytes).unwrap();
    assert_eq!(d.version, 11);
    assert!(
        d.meta == want,
        "format 11 no longer reads as written: an enum variant moved or a field changed"
    );
    assert_eq!(d.weights.len(), 192);
}

/// The format-12 graph: format 11's, plus `Op::Q16Unary` and `Op::Q16ConvAct` (12 also reads the 16-bit
/// Conv, MatMul and Mul with the f32 requantization: the same bytes, another rule, pinned by
/// `runtime/tests/host_artifact.rs`).
fn graph_v12() -> ArtifactMeta {
    let mut m = graph_v11();
    let geom = Conv2d {
        kernel: [5, 3],
        strides: [2, 1],
        dilations: [1, 2],
        pads: [2, 1, 2, 1],
        groups: 8,
        output_padding: [0, 0],
    };
    let ops = [
        Op::Q16Unary(Unary::HardSwish),
        Op::Q16ConvAct {
            geom,
            act: Unary::HardSwish,
            lo: -32000,
            hi: 31000,
        },
    ];
    assert!(ops.iter().all(pinned));
    let base = m.graph.nodes.len();
    m.graph
        .nodes
        .extend(ops.into_iter().enumerate().map(|(i, op)| Node {
            name: format!("q16 f32 node {}", base + i),
            op,
            inputs: vec![6, 1],
            outputs: vec![6],
        }));
    m
}

#[test]
fn format_12_reads_as_written() {
    let path = tern_tests::root().join("runtime/tests/data/wire_v12.tern");
    let want = graph_v12();
    if std::env::var("TERN_REGEN_FIXTURES").is_ok()
        && !path.exists()
        && artifact::FORMAT_VERSION == 12
    {
        std::fs::write(&path, artifact::encode(&want, &[0u8; 192]).unwrap()).unwrap();
    }
    let bytes = std::fs::read(&path).expect("the pinned format-12 artifact");
    let d = artifact::decode(&bytes).unwrap();
    assert_eq!(d.version, 12);
    assert!(
        d.meta == want,
        "format 12 no longer reads as written: an enum variant moved or a field changed"
    );
    assert_eq!(d.weights.len(), 192);
}
