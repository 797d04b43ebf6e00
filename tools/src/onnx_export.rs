//! `.tern` → ONNX with QDQ quantization (`tern export --onnx-qdq`): the same graph and the same int8
//! parameters, in the form ONNX Runtime and other QDQ consumers run. Every integer op becomes
//! DequantizeLinear on its int8 inputs → the float op → QuantizeLinear to its output's parameters (the
//! fused clamp as a Clip on the exact grid bounds); int8 weights stay int8 initializers with per-channel
//! DequantizeLinear; int32 biases dequantize at s_x·s_w. A lookup table becomes Cast → Add 128 → Gather on
//! the int8 table; an integer Add/Sub/Mul becomes integer ONNX ops with tern's rounding
//! (`Writer::binary_exact`). Float ops map to their ONNX ops (opset 17).
use anyhow::{anyhow, bail, Result};
use prost::Message;
use std::collections::HashMap;
use tern::ir::{
    BinOp, CoordMode, DType, Direction, NearestMode, Node, Op, PadMode, PoolKind, QParams,
    ReduceOp, ResizeMode, Unary,
};
use tract_onnx::pb::{
    self, attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, NodeProto,
    TensorProto, ValueInfoProto,
};

const OPSET: i64 = 17;

fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f: v,
        ..Default::default()
    }
}

fn attr_is(name: &str, v: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v,
        ..Default::default()
    }
}

fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn value_info(name: &str, elem: DataType, dims: &[u32]) -> ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(Value::DimValue(d as i64)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct Writer<'m> {
    model: &'m tern::Model<'m>,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    /// ONNX value name of each tern tensor.
    names: Vec<String>,
    /// Float (dequantized) value of each int8 tensor, once made.
    deq: HashMap<u32, String>,
    fresh: usize,
    opts: ExportOptions,
}

/// How `tern export` writes an integer Add/Sub/Mul.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BinaryForm {
    /// Integer ONNX ops with tern's rounding: ONNX Runtime computes tern's int8 values.
    #[default]
    Integer,
    /// DequantizeLinear → op → QuantizeLinear, the pattern QDQ toolchains fuse into an int8 op; they
    /// round their own way (ONNX Runtime: a float add, half to even), a step apart from tern on a few
    /// outputs, which deep residual stacks carry on.
    Qdq,
}

impl Writer<'_> {
    fn fresh(&mut self, hint: &str) -> String {
        self.fresh += 1;
        format!("{hint}#{}", self.fresh)
    }

    fn init(&mut self, hint: &str, dt: DataType, dims: &[i64], raw: Vec<u8>) -> String {
        let name = self.fresh(hint);
        self.inits.push(TensorProto {
            name: name.clone(),
            data_type: dt as i32,
            dims: dims.to_vec(),
            raw_data: raw,
            ..Default::default()
        });
        name
    }

    fn f32s(&mut self, hint: &str, dims: &[i64], v: &[f32]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.init(hint, DataType::Float, dims, raw)
    }

    fn i64s(&mut self, hint: &str, v: &[i64]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.init(hint, DataType::Int64, &[v.len() as i64], raw)
    }

    fn node(
        &mut self,
        op: &str,
        name: &str,
        ins: Vec<String>,
        outs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) {
        // node names must be unique: one tern node becomes several ONNX nodes
        let name = self.fresh(name);
        self.nodes.push(NodeProto {
            op_type: op.into(),
            name,
            input: ins,
            output: outs,
            attribute: attrs,
            ..Default::default()
        });
    }

    /// A one-node op with a fresh float output.
    fn op1(
        &mut self,
        op: &str,
        name: &str,
        ins: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) -> String {
        let out = self.fresh(&format!("{name}/{op}"));
        self.node(op, name, ins, vec![out.clone()], attrs);
        out
    }

    fn tensor(&self, t: u32) -> &tern::ir::Tensor {
        &self.model.graph.tensors[t as usize]
    }

    /// Scale and zero point initializers of an activation's parameters, and the attributes of its
    /// Quantize/DequantizeLinear: per tensor, or per channel on axis 1 for a channel-scaled tensor.
    fn qparams(&mut self, hint: &str, q: &QParams) -> (String, String, Vec<AttributeProto>) {
        let n = q.scale.len();
        if n == 1 {
            let s = self.f32s(&format!("{hint}/scale"), &[], &q.scale[..1]);
            let z = self.init(
                &format!("{hint}/zero_point"),
                DataType::Int8,
                &[],
                vec![q.zero_point[0] as i8 as u8],
            );
            return (s, z, vec![]);
        }
        let s = self.f32s(&format!("{hint}/scale"), &[n as i64], &q.scale);
        let z = self.init(
            &format!("{hint}/zero_point"),
            DataType::Int8,
            &[n as i64],
            (0..n)
                .map(|i| q.zero_point[i.min(q.zero_point.len() - 1)] as i8 as u8)
                .collect(),
        );
        (s, z, vec![attr_i("axis", q.axis.unwrap_or(1) as i64)])
    }

    fn q_of(&self, t: u32) -> Result<QParams> {
        self.tensor(t).quant.clone().ok_or_else(|| {
            anyhow!(
                "tensor \"{}\" has no quantization parameters",
                self.tensor(t).name
            )
        })
    }

    /// The float value of tensor `t`: itself for f32, a DequantizeLinear of it for int8.
    fn f(&mut self, t: u32) -> Result<String> {
        if self.tensor(t).dtype != DType::I8 {
            return Ok(self.names[t as usize].clone());
        }
        if let Some(v) = self.deq.get(&t) {
            return Ok(v.clone());
        }
        let name = self.names[t as usize].clone();
        let q = self.q_of(t)?;
        let (s, z, attrs) = self.qparams(&name, &q);
        let out = self.op1(
            "DequantizeLinear",
            &format!("{name}/dq"),
            vec![name.clone(), s, z],
            attrs,
        );
        self.deq.insert(t, out.clone());
        Ok(out)
    }

    /// QuantizeLinear of float value `v` into int8 tensor `t` (after a Clip to `[lo, hi]` in its ints).
    fn q_into(&mut self, v: String, t: u32, clamp: Option<(i8, i8)>, name: &str) -> Result<()> {
        let q = self.q_of(t)?;
        let (s, z) = (q.scale[0], q.zero_point[0]);
        let mut v = v;
        if let Some((lo, hi)) = clamp.filter(|&(lo, hi)| lo > -128 || hi < 127) {
            let lo = self.f32s(
                &format!("{name}/clip_lo"),
                &[],
                &[(lo as i32 - z) as f32 * s],
            );
            let hi = self.f32s(
                &format!("{name}/clip_hi"),
                &[],
                &[(hi as i32 - z) as f32 * s],
            );
            v = self.op1("Clip", name, vec![v, lo, hi], vec![]);
        }
        let (si, zi, attrs) = self.qparams(name, &q);
        let out = self.names[t as usize].clone();
        self.node(
            "QuantizeLinear",
            &format!("{name}/q"),
            vec![v, si, zi],
            vec![out],
            attrs,
        );
        Ok(())
    }

    /// An int8 weight with its DequantizeLinear (per channel along `axis`, or per tensor).
    fn weight(&mut self, t: u32, axis: i64) -> Result<String> {
        let q = self.q_of(t)?;
        let name = self.names[t as usize].clone();
        let n = q.scale.len();
        let dims: Vec<i64> = if n > 1 { vec![n as i64] } else { vec![] };
        let s = self.f32s(&format!("{name}/scale"), &dims, &q.scale);
        let z = self.init(
            &format!("{name}/zero_point"),
            DataType::Int8,
            &dims,
            vec![0u8; n],
        );
        let attrs = if n > 1 {
            vec![attr_i("axis", axis)]
        } else {
            vec![]
        };
        Ok(self.op1(
            "DequantizeLinear",
            &format!("{name}/dq"),
            vec![name, s, z],
            attrs,
        ))
    }

    /// An int32 bias at scale `s_x · s_w[m]`, dequantized; `sx` holds one input scale, or one per input
    /// channel of a channel-scaled depthwise input (output channel m reads input channel m / (M / C)).
    fn bias(&mut self, t: u32, sx: &[f32], w: &QParams) -> Result<String> {
        let name = self.names[t as usize].clone();
        let m = self.tensor(t).shape[0] as usize;
        let per_in = (m / sx.len().max(1)).max(1);
        let scales: Vec<f32> = (0..m)
            .map(|i| {
                let si = sx.get((i / per_in).min(sx.len().saturating_sub(1)));
                si.copied().unwrap_or(1.0) * w.scale[if w.scale.len() == 1 { 0 } else { i }]
            })
            .collect();
        let s = self.f32s(&format!("{name}/scale"), &[m as i64], &scales);
        let z = self.init(
            &format!("{name}/zero_point"),
            DataType::Int32,
            &[m as i64],
            vec![0u8; 4 * m],
        );
        Ok(self.op1(
            "DequantizeLinear",
            &format!("{name}/dq"),
            vec![name, s, z],
            vec![attr_i("axis", 0)],
        ))
    }

    fn act(&mut self, v: String, act: Option<Unary>, name: &str) -> Result<String> {
        match act {
            None => Ok(v),
            Some(u) => self.unary(v, u, name),
        }
    }

    fn unary(&mut self, v: String, u: Unary, name: &str) -> Result<String> {
        Ok(match u {
            Unary::Relu => self.op1("Relu", name, vec![v], vec![]),
            Unary::Clip { min, max } => {
                let lo = self.f32s(&format!("{name}/min"), &[], &[min]);
                let hi = self.f32s(&format!("{name}/max"), &[], &[max]);
                self.op1("Clip", name, vec![v, lo, hi], vec![])
            }
            Unary::Sigmoid => self.op1("Sigmoid", name, vec![v], vec![]),
            // ONNX has no SiLU before opset 24 (Swish): x · Sigmoid(x)
            Unary::Silu => {
                let s = self.op1("Sigmoid", name, vec![v.clone()], vec![]);
                self.op1("Mul", name, vec![v, s], vec![])
            }
            Unary::HardSigmoid { alpha, beta } => self.op1(
                "HardSigmoid",
                name,
                vec![v],
                vec![attr_f("alpha", alpha), attr_f("beta", beta)],
            ),
            Unary::HardSwish => self.op1("HardSwish", name, vec![v], vec![]),
            Unary::LeakyRelu { alpha } => {
                self.op1("LeakyRelu", name, vec![v], vec![attr_f("alpha", alpha)])
            }
            Unary::Erf => self.op1("Erf", name, vec![v], vec![]),
            Unary::Sqrt => self.op1("Sqrt", name, vec![v], vec![]),
            Unary::Exp => self.op1("Exp", name, vec![v], vec![]),
            Unary::Log => self.op1("Log", name, vec![v], vec![]),
            Unary::Tanh => self.op1("Tanh", name, vec![v], vec![]),
            Unary::Abs => self.op1("Abs", name, vec![v], vec![]),
            Unary::Neg => self.op1("Neg", name, vec![v], vec![]),
            Unary::Reciprocal => self.op1("Reciprocal", name, vec![v], vec![]),
            Unary::Floor => self.op1("Floor", name, vec![v], vec![]),
            Unary::Ceil => self.op1("Ceil", name, vec![v], vec![]),
        })
    }

    fn conv_attrs(g: &tern::ir::Conv2d, transposed: bool) -> Vec<AttributeProto> {
        let mut a = vec![
            attr_is("kernel_shape", g.kernel.iter().map(|&v| v as i64).collect()),
            attr_is("strides", g.strides.iter().map(|&v| v as i64).collect()),
            attr_is("dilations", g.dilations.iter().map(|&v| v as i64).collect()),
            attr_is("pads", g.pads.iter().map(|&v| v as i64).collect()),
            attr_i("group", g.groups as i64),
        ];
        if transposed {
            a.push(attr_is(
                "output_padding",
                g.output_padding.iter().map(|&v| v as i64).collect(),
            ));
        }
        a
    }

    /// `x·scale + shift` per channel along axis 1 of `x` (shape `xs`): the `[C]` constants reshaped to
    /// broadcast, a Mul and an Add.
    fn channel_affine(
        &mut self,
        x: String,
        scale: String,
        shift: String,
        xs: &[u32],
        name: &str,
    ) -> String {
        let mut dims = vec![1i64; xs.len()];
        dims[1] = xs[1] as i64;
        let shape = self.i64s(&format!("{name}/shape"), &dims);
        let s = self.op1("Reshape", name, vec![scale, shape.clone()], vec![]);
        let t = self.op1("Reshape", name, vec![shift, shape], vec![]);
        let v = self.op1("Mul", name, vec![x, s], vec![]);
        self.op1("Add", name, vec![v, t], vec![])
    }

    /// The float op of `n` on float inputs `ins`; returns its float outputs.
    fn float_op(&mut self, n: &Node, ins: Vec<String>) -> Result<Vec<String>> {
        let name = n.name.as_str();
        let model = self.model;
        let g = &model.graph;
        let out_shape = |k: usize| g.tensors[n.outputs[k] as usize].shape.clone();
        let in_shape = |k: usize| g.tensors[n.inputs[k] as usize].shape.clone();
        let one = |w: &mut Self,
                   op: &str,
                   ins: Vec<String>,
                   attrs: Vec<AttributeProto>|
         -> Result<Vec<String>> { Ok(vec![w.op1(op, name, ins, attrs)]) };
        match &n.op {
            Op::Conv { geom, act } | Op::ConvTranspose { geom, act } => {
                let tr = matches!(n.op, Op::ConvTranspose { .. });
                let op = if tr { "ConvTranspose" } else { "Conv" };
                let v = self.op1(
                    op,
                    name,
                    ins[..ins.len().min(3)].to_vec(),
                    Self::conv_attrs(geom, tr),
                );
                let v = self.act(v, *act, name)?;
                // a post-activation affine (inputs 3, 4): Mul and Add as for a ChannelAffine
                Ok(vec![match ins.get(3..5) {
                    Some([s, t]) => {
                        self.channel_affine(v, s.clone(), t.clone(), &out_shape(0), name)
                    }
                    _ => v,
                }])
            }
            Op::MatMul { act } => {
                let mut v = self.op1("MatMul", name, ins[..2].to_vec(), vec![]);
                if let Some(b) = ins.get(2) {
                    v = self.op1("Add", name, vec![v, b.clone()], vec![]);
                }
                Ok(vec![self.act(v, *act, name)?])
            }
            Op::Binary { op, act } => {
                let o = match op {
                    BinOp::Add => "Add",
                    BinOp::Sub => "Sub",
                    BinOp::Mul => "Mul",
                    BinOp::Div => "Div",
                    BinOp::Pow => "Pow",
                    BinOp::Max => "Max",
                    BinOp::Min => "Min",
                };
                let v = self.op1(o, name, ins, vec![]);
                Ok(vec![self.act(v, *act, name)?])
            }
            Op::Unary(u) => Ok(vec![self.unary(ins[0].clone(), *u, name)?]),
            Op::ChannelAffine { act } => {
                let v = self.channel_affine(
                    ins[0].clone(),
                    ins[1].clone(),
                    ins[2].clone(),
                    &in_shape(0),
                    name,
                );
                Ok(vec![self.act(v, *act, name)?])
            }
            Op::Pool(p) => {
                // tern's end pads include the extra cells of ceil mode; ONNX states them as ceil_mode
                let mut pads: Vec<i64> = p.pads.iter().map(|&v| v as i64).collect();
                pads[2] -= p.ceil_extra[0] as i64;
                pads[3] -= p.ceil_extra[1] as i64;
                let mut attrs = vec![
                    attr_is("kernel_shape", p.kernel.iter().map(|&v| v as i64).collect()),
                    attr_is("strides", p.strides.iter().map(|&v| v as i64).collect()),
                    attr_is("pads", pads),
                ];
                if p.ceil_extra != [0, 0] {
                    attrs.push(attr_i("ceil_mode", 1));
                }
                let op = match p.kind {
                    PoolKind::Max => {
                        attrs.push(attr_is(
                            "dilations",
                            p.dilations.iter().map(|&v| v as i64).collect(),
                        ));
                        "MaxPool"
                    }
                    PoolKind::Avg { count_include_pad } => {
                        if p.dilations != [1, 1] {
                            bail!("node \"{name}\": dilated average pooling has no opset-{OPSET} form");
                        }
                        attrs.push(attr_i("count_include_pad", count_include_pad as i64));
                        "AveragePool"
                    }
                };
                one(self, op, ins, attrs)
            }
            Op::GlobalPool(k) => {
                let op = if matches!(k, PoolKind::Max) {
                    "GlobalMaxPool"
                } else {
                    "GlobalAveragePool"
                };
                one(self, op, ins, vec![])
            }
            Op::Resize {
                mode,
                coord,
                scales,
            } => {
                let sc = self.f32s(&format!("{name}/scales"), &[scales.len() as i64], scales);
                let coord = match coord {
                    CoordMode::HalfPixel => "half_pixel",
                    CoordMode::PytorchHalfPixel => "pytorch_half_pixel",
                    CoordMode::Asymmetric => "asymmetric",
                    CoordMode::AlignCorners => "align_corners",
                    CoordMode::TfHalfPixelForNearest => "tf_half_pixel_for_nearest",
                };
                let mut attrs = vec![attr_s("coordinate_transformation_mode", coord)];
                match mode {
                    ResizeMode::Nearest(nm) => {
                        attrs.push(attr_s("mode", "nearest"));
                        attrs.push(attr_s(
                            "nearest_mode",
                            match nm {
                                NearestMode::RoundPreferFloor => "round_prefer_floor",
                                NearestMode::RoundPreferCeil => "round_prefer_ceil",
                                NearestMode::Floor => "floor",
                                NearestMode::Ceil => "ceil",
                            },
                        ));
                    }
                    ResizeMode::Linear => attrs.push(attr_s("mode", "linear")),
                }
                one(
                    self,
                    "Resize",
                    vec![ins[0].clone(), String::new(), sc],
                    attrs,
                )
            }
            Op::Concat { axis } => one(self, "Concat", ins, vec![attr_i("axis", *axis as i64)]),
            Op::Split { axis } => {
                let sizes: Vec<i64> = (0..n.outputs.len())
                    .map(|k| out_shape(k)[*axis as usize] as i64)
                    .collect();
                let sp = self.i64s(&format!("{name}/split"), &sizes);
                let outs: Vec<String> = (0..n.outputs.len())
                    .map(|k| self.fresh(&format!("{name}/split{k}")))
                    .collect();
                self.node(
                    "Split",
                    name,
                    vec![ins[0].clone(), sp],
                    outs.clone(),
                    vec![attr_i("axis", *axis as i64)],
                );
                Ok(outs)
            }
            Op::Lstm {
                hidden,
                direction,
                clip,
                ..
            }
            | Op::Gru {
                hidden,
                direction,
                clip,
                ..
            }
            | Op::Rnn {
                hidden,
                direction,
                clip,
            } => {
                // ONNX's own op: tern's inputs are ONNX's but for the absent sequence_lens (input 4)
                let mut rnn_ins = ins[..4].to_vec();
                rnn_ins.push(String::new());
                rnn_ins.extend_from_slice(&ins[4..]);
                let (op_type, suffixes): (&str, &[&str]) = match &n.op {
                    Op::Lstm { .. } => ("LSTM", &["Y", "Y_h", "Y_c"]),
                    Op::Gru { .. } => ("GRU", &["Y", "Y_h"]),
                    _ => ("RNN", &["Y", "Y_h"]),
                };
                let outs: Vec<String> = suffixes
                    .iter()
                    .map(|o| self.fresh(&format!("{name}/{o}")))
                    .collect();
                let dir = match direction {
                    Direction::Forward => "forward",
                    Direction::Reverse => "reverse",
                    Direction::Bidirectional => "bidirectional",
                };
                let mut attrs = vec![
                    attr_i("hidden_size", *hidden as i64),
                    attr_s("direction", dir),
                ];
                if let Some(c) = clip {
                    attrs.push(attr_f("clip", *c));
                }
                if let Op::Gru {
                    linear_before_reset: true,
                    ..
                } = &n.op
                {
                    attrs.push(attr_i("linear_before_reset", 1));
                }
                self.node(op_type, name, rnn_ins, outs.clone(), attrs);
                Ok(outs)
            }
            Op::Slice { starts, steps } => {
                let os = out_shape(0);
                let ends: Vec<i64> = starts
                    .iter()
                    .zip(steps)
                    .zip(&os)
                    .map(|((&s, &st), &c)| {
                        let e = s + st * c as i64;
                        if st < 0 && e < 0 {
                            i64::MIN
                        } else {
                            e
                        }
                    })
                    .collect();
                let axes: Vec<i64> = (0..starts.len() as i64).collect();
                let (a, b, c, d) = (
                    self.i64s(&format!("{name}/starts"), starts),
                    self.i64s(&format!("{name}/ends"), &ends),
                    self.i64s(&format!("{name}/axes"), &axes),
                    self.i64s(&format!("{name}/steps"), steps),
                );
                one(self, "Slice", vec![ins[0].clone(), a, b, c, d], vec![])
            }
            Op::Pad { pads, mode } => {
                let p = self.i64s(&format!("{name}/pads"), pads);
                let (m, v) = match mode {
                    PadMode::Constant(v) => ("constant", *v),
                    PadMode::Reflect => ("reflect", 0.0),
                    PadMode::Edge => ("edge", 0.0),
                };
                let cv = self.f32s(&format!("{name}/value"), &[], &[v]);
                one(
                    self,
                    "Pad",
                    vec![ins[0].clone(), p, cv],
                    vec![attr_s("mode", m)],
                )
            }
            Op::Reshape => {
                let dims: Vec<i64> = out_shape(0).iter().map(|&d| d as i64).collect();
                let s = self.i64s(&format!("{name}/shape"), &dims);
                one(self, "Reshape", vec![ins[0].clone(), s], vec![])
            }
            Op::Transpose { perm } => one(
                self,
                "Transpose",
                ins,
                vec![attr_is("perm", perm.iter().map(|&v| v as i64).collect())],
            ),
            Op::Softmax { axis } => one(self, "Softmax", ins, vec![attr_i("axis", *axis as i64)]),
            Op::Reduce { op, axes, keepdims } => {
                let o = match op {
                    ReduceOp::Mean => "ReduceMean",
                    ReduceOp::Sum => "ReduceSum",
                    ReduceOp::Max => "ReduceMax",
                    ReduceOp::Min => "ReduceMin",
                };
                let ax: Vec<i64> = axes.iter().map(|&v| v as i64).collect();
                let kd = attr_i("keepdims", *keepdims as i64);
                if *op == ReduceOp::Sum {
                    // ReduceSum takes its axes as an input from opset 13 on
                    let a = self.i64s(&format!("{name}/axes"), &ax);
                    one(self, o, vec![ins[0].clone(), a], vec![kd])
                } else {
                    one(self, o, ins, vec![attr_is("axes", ax), kd])
                }
            }
            other => bail!(
                "node \"{name}\": {} has no float form here (integer ops are handled separately)",
                other.name()
            ),
        }
    }

    /// A scalar int64 initializer.
    fn i64_scalar(&mut self, hint: &str, v: i64) -> String {
        self.init(hint, DataType::Int64, &[], v.to_le_bytes().to_vec())
    }

    /// Int8 tensor `t` widened to int64.
    fn wide(&mut self, t: u32, name: &str) -> String {
        self.widened(t, DataType::Int64, 0, name)
    }

    /// A Cast of value `v` to `dt`.
    fn cast(&mut self, v: String, dt: DataType, name: &str) -> String {
        self.op1("Cast", name, vec![v], vec![attr_i("to", dt as i64)])
    }

    /// Int8 tensor `t` cast to the integer type `dt`, plus `offset` (128: a table index, or the uint8
    /// value): the one int8 → wider-integer step of tables, integer Add/Sub/Mul and the exact form.
    fn widened(&mut self, t: u32, dt: DataType, offset: i32, name: &str) -> String {
        let x = self.names[t as usize].clone();
        let v = self.cast(x, dt, name);
        if offset == 0 {
            return v;
        }
        let raw = match dt {
            DataType::Int64 => (offset as i64).to_le_bytes().to_vec(),
            _ => offset.to_le_bytes().to_vec(),
        };
        let c = self.init(&format!("{name}/offset"), dt, &[], raw);
        self.op1("Add", name, vec![v, c], vec![])
    }

    /// `round_half_away_from_zero(x / 2^total)` of int64 `x` (|x| < 2^62, 0 < total < 63), as
    /// `sign(x)·⌊(|x| + 2^(total−1)) / 2^total⌋`: ONNX's integer Div truncates, which is the floor on the
    /// non-negative numerator.
    fn round_shift(&mut self, x: String, total: i32, name: &str) -> String {
        let half = self.i64_scalar(&format!("{name}/half"), 1i64 << (total - 1));
        let den = self.i64_scalar(&format!("{name}/den"), 1i64 << total);
        self.round_div(x, half, den, name)
    }

    /// [`Writer::round_shift`] with the int64 `half` and `den = 2·half` given (scalars, or one per
    /// channel).
    fn round_div(&mut self, x: String, half: String, den: String, name: &str) -> String {
        let sign = self.op1("Sign", name, vec![x.clone()], vec![]);
        let abs = self.op1("Abs", name, vec![x], vec![]);
        let up = self.op1("Add", name, vec![abs, half], vec![]);
        let q = self.op1("Div", name, vec![up, den], vec![]);
        self.op1("Mul", name, vec![q, sign], vec![])
    }

    /// int64 `v` clamped to `[lo, hi]`.
    fn clip64(&mut self, v: String, (lo, hi): (i64, i64), name: &str) -> String {
        let lo = self.i64_scalar(&format!("{name}/lo"), lo);
        let hi = self.i64_scalar(&format!("{name}/hi"), hi);
        self.op1("Clip", name, vec![v, lo, hi], vec![])
    }

    /// An integer Add/Sub/Mul in integer ONNX ops with tern's own rounding (`tern::cpu::ops::quant::QBin`),
    /// so ONNX Runtime computes the same int8 values: Add/Sub look both operands up in their int64 tables
    /// (Gather at `v + 128`), sum and round away the fraction bits; Mul multiplies the integer product
    /// by the fixed-point multiplier and rounds the same way. Then `+ z_y`, the clamp, Cast to int8.
    /// (Through float — DequantizeLinear, Add, QuantizeLinear — ONNX Runtime rounds half to even after a
    /// float add: one step apart on 0.05% of a residual Add's outputs, which 200 layers of PP-OCR det
    /// and ddddocr's LSTM amplified.)
    fn binary_exact(&mut self, n: &Node) -> Result<()> {
        let name = n.name.clone();
        let b = tern::cpu::ops::quant::QBin::for_node(self.model, n)
            .ok_or_else(|| anyhow!("node \"{name}\": not an integer binary op"))?;
        let (za, zb, zy) = b.zero_points();
        let (lo, hi) = b.clamp();
        // Mul reads the values, Add/Sub index their tables at v + 128
        let off = if b.op() == BinOp::Mul { 0 } else { 128 };
        let xa = self.widened(n.inputs[0], DataType::Int64, off, &name);
        let xb = self.widened(n.inputs[1], DataType::Int64, off, &name);
        let r = match b.op() {
            BinOp::Mul => {
                let za = self.i64_scalar(&format!("{name}/za"), za as i64);
                let zb = self.i64_scalar(&format!("{name}/zb"), zb as i64);
                let pa = self.op1("Sub", &name, vec![xa, za], vec![]);
                let pb = self.op1("Sub", &name, vec![xb, zb], vec![]);
                let p = self.op1("Mul", &name, vec![pa, pb], vec![]);
                let m = b.mul_multiplier();
                // |p| ≤ 255²: the shared requantization, where the multiplier's shift fits it
                if Self::shifts_fit(&[m]) {
                    self.requant_into(p, &[m], &[], (zy, lo, hi), n.outputs[0], &name);
                    return Ok(());
                }
                let mv = self.i64_scalar(&format!("{name}/mult"), m.mult as i64);
                let x = self.op1("Mul", &name, vec![p, mv], vec![]);
                if 31 + m.shift <= 0 {
                    // a multiplier ≥ 2^30: saturate before the left shift (the result clamps to i32
                    // anyway; the i32 clamp after it is implied by the final clamp to int8 values)
                    let x = self.clip64(x, (i32::MIN as i64, i32::MAX as i64), &name);
                    let k = self.i64_scalar(&format!("{name}/scale"), 1i64 << (-31 - m.shift));
                    self.op1("Mul", &name, vec![x, k], vec![])
                } else {
                    // below 2^-32: |p·mult| < 2^47 rounds to 0
                    let zero = self.i64_scalar(&format!("{name}/zero"), 0);
                    self.op1("Mul", &name, vec![x, zero], vec![])
                }
            }
            op => {
                let (ta, tb) = b.add_tables();
                let table = |t: &[i32; 256]| -> Vec<u8> {
                    t.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect()
                };
                let (ta, tb) = (table(ta), table(tb));
                let ta = self.init(&format!("{name}/table_a"), DataType::Int64, &[256], ta);
                let tb = self.init(&format!("{name}/table_b"), DataType::Int64, &[256], tb);
                let attrs = || vec![attr_i("axis", 0)];
                let ga = self.op1("Gather", &name, vec![ta, xa], attrs());
                let gb = self.op1("Gather", &name, vec![tb, xb], attrs());
                let o = if op == BinOp::Sub { "Sub" } else { "Add" };
                let s = self.op1(o, &name, vec![ga, gb], vec![]);
                // (|s| < 2^33; the i32 clamp of the rule is implied by the final clamp)
                self.round_shift(s, tern::cpu::ops::quant::ADD_FRAC as i32, &name)
            }
        };
        self.int8_out(r, (zy, lo, hi), n.outputs[0], &name);
        Ok(())
    }

    /// `clamp(r + z_y, lo, hi)` of int64 `r`, cast to int8 into tensor `out`.
    fn int8_out(&mut self, r: String, (zy, lo, hi): (i32, i32, i32), out: u32, name: &str) {
        let zy = self.i64_scalar(&format!("{name}/zy"), zy as i64);
        let v = self.op1("Add", name, vec![r, zy], vec![]);
        let v = self.clip64(v, (lo as i64, hi as i64), name);
        let out = self.names[out as usize].clone();
        self.node(
            "Cast",
            name,
            vec![v],
            vec![out],
            vec![attr_i("to", DataType::Int8 as i64)],
        );
    }

    /// Int8 tensor `t` as uint8 (`v + 128`): ConvInteger's operands on every ONNX Runtime version
    /// (int8 ones only since 1.24).
    fn as_u8(&mut self, t: u32, name: &str) -> String {
        let v = self.widened(t, DataType::Int32, 128, name);
        self.cast(v, DataType::Uint8, name)
    }

    /// Int8 constant `t` as a uint8 initializer (`v + 128`) with zero point 128.
    fn weight_u8(&mut self, t: u32, name: &str) -> (String, String) {
        let dims: Vec<i64> = self.tensor(t).shape.iter().map(|&d| d as i64).collect();
        let bytes: Vec<u8> = tern::cpu::ops::quant::i8s(self.model.const_bytes(t as usize))
            .iter()
            .map(|&v| (v as i32 + 128) as u8)
            .collect();
        let w = self.init(&format!("{name}/w_u8"), DataType::Uint8, &dims, bytes);
        let z = self.init(
            &format!("{name}/w_zero_point"),
            DataType::Uint8,
            &[],
            vec![128],
        );
        (w, z)
    }

    /// A uint8 scalar zero point `z + 128` for int8 zero point `z`.
    fn zp_u8(&mut self, z: i32, name: &str) -> String {
        self.init(
            &format!("{name}/x_zero_point"),
            DataType::Uint8,
            &[],
            vec![(z + 128) as u8],
        )
    }

    /// An int64 constant of one value per channel, shaped `dims` to broadcast along the channel axis.
    fn i64_channels(&mut self, hint: &str, dims: &[i64], v: impl Iterator<Item = i64>) -> String {
        let raw = v.flat_map(|x| x.to_le_bytes()).collect();
        self.init(hint, DataType::Int64, dims, raw)
    }

    /// Whether every multiplier's total shift `31 + shift` lies in 1..=62, the range
    /// [`Writer::requant_into`] writes (outside it: a multiplier ≥ 2^30 or below 2^-32).
    fn shifts_fit(mults: &[tern::ir::quant::FixedMultiplier]) -> bool {
        mults.iter().all(|m| (1..=62).contains(&(31 + m.shift)))
    }

    /// `clamp(round_half_away(x·m / 2^total) + z_y, lo, hi)` as int8 into tensor `out`, for int64 `x`
    /// with one [`tern::ir::quant::FixedMultiplier`] per channel (`dims`: their broadcast shape), every
    /// one with [`Writer::shifts_fit`] (the caller checks before writing anything).
    fn requant_into(
        &mut self,
        x: String,
        mults: &[tern::ir::quant::FixedMultiplier],
        dims: &[i64],
        (zy, lo, hi): (i32, i32, i32),
        out: u32,
        name: &str,
    ) {
        let total = |m: &tern::ir::quant::FixedMultiplier| 31 + m.shift;
        let mv = self.i64_channels(
            &format!("{name}/mult"),
            dims,
            mults.iter().map(|m| m.mult as i64),
        );
        let half = self.i64_channels(
            &format!("{name}/half"),
            dims,
            mults.iter().map(|m| 1i64 << (total(m) - 1)),
        );
        let den = self.i64_channels(
            &format!("{name}/den"),
            dims,
            mults.iter().map(|m| 1i64 << total(m)),
        );
        // |x| < 2^31 and mult < 2^31: the product is exact in int64
        let p = self.op1("Mul", name, vec![x, mv], vec![]);
        let r = self.round_div(p, half, den, name);
        self.int8_out(r, (zy, lo, hi), out, name);
    }

    /// The exact integer form of a QConv (not transposed), QMatMul or int8 GlobalAveragePool
    /// ([`ExportOptions::exact`]); `false` for other ops, or where a multiplier needs the QDQ form.
    fn emit_exact(&mut self, n: &Node) -> Result<bool> {
        use tern::cpu::ops::quant::{acc_rule, global_avg_rule};
        let name = n.name.clone();
        let (x, out) = (n.inputs[0], n.outputs[0]);
        let rank = self.tensor(out).shape.len();
        if self.tensor(x).dtype != DType::I8 || self.tensor(out).dtype != DType::I8 {
            return Ok(false); // a float op (a float GlobalAveragePool is the same op)
        }
        if let Op::GlobalPool(PoolKind::Avg { .. }) = n.op {
            let xs = self.tensor(x).shape.clone();
            let d: usize = xs[2..].iter().map(|&v| v as usize).product();
            let Some((zx, m, zy)) = global_avg_rule(self.model, n, d) else {
                return Ok(false);
            };
            if !Self::shifts_fit(&[m]) {
                return Ok(false);
            }
            let xw = self.wide(x, &name);
            let zx = self.i64_scalar(&format!("{name}/zx"), zx as i64);
            let v = self.op1("Sub", &name, vec![xw, zx], vec![]);
            let axes = self.i64s(
                &format!("{name}/axes"),
                &(2..xs.len() as i64).collect::<Vec<_>>(),
            );
            let sum = self.op1(
                "ReduceSum",
                &name,
                vec![v, axes],
                vec![attr_i("keepdims", 1)],
            );
            // tern sums in wrapping i32: the same value for any plane under 2^23 values
            self.requant_into(sum, &[m], &[], (zy, -128, 127), out, &name);
            return Ok(true);
        }
        let Some(rule) = acc_rule(self.model, n).filter(|r| Self::shifts_fit(&r.mult)) else {
            return Ok(false);
        };
        let xu = self.as_u8(x, &name);
        let zx = self.zp_u8(rule.zp_in, &name);
        let (w, wz) = self.weight_u8(n.inputs[1], &name);
        let m = rule.mult.len() as i64;
        let (acc, dims) = match &n.op {
            Op::QConv { geom, .. } => {
                let attrs = Self::conv_attrs(geom, false);
                let acc = self.op1("ConvInteger", &name, vec![xu, w, zx, wz], attrs);
                let mut dims = vec![1i64; rank];
                dims[1] = m;
                (acc, dims)
            }
            _ => (
                self.op1("MatMulInteger", &name, vec![xu, w, zx, wz], vec![]),
                vec![m],
            ),
        };
        let acc = self.cast(acc, DataType::Int64, &name);
        let b = self.i64_channels(
            &format!("{name}/bias"),
            &dims,
            rule.bias.iter().map(|&v| v as i64),
        );
        let s = self.op1("Add", &name, vec![acc, b], vec![]);
        // acc + bias saturates to i32 in tern
        let s = self.clip64(s, (i32::MIN as i64, i32::MAX as i64), &name);
        let q = (rule.zp_out, rule.lo, rule.hi);
        self.requant_into(s, &rule.mult, &dims, q, out, &name);
        Ok(true)
    }

    fn emit(&mut self, n: &Node) -> Result<()> {
        let name = n.name.clone();
        let out0 = n.outputs[0];
        if self.opts.exact && self.emit_exact(n)? {
            return Ok(());
        }
        match &n.op {
            Op::Quantize => {
                let x = self.f(n.inputs[0])?;
                self.q_into(x, out0, None, &name)
            }
            Op::Dequantize => {
                let x = self.f(n.inputs[0])?;
                let out = self.names[out0 as usize].clone();
                self.node("Identity", &name, vec![x], vec![out], vec![]);
                Ok(())
            }
            Op::QConv { geom, lo, hi } => {
                let x = self.f(n.inputs[0])?;
                let sx = self.q_of(n.inputs[0])?.scale;
                let wq = self.q_of(n.inputs[1])?;
                let w = self.weight(n.inputs[1], 0)?;
                let mut ins = vec![x, w];
                if let Some(&b) = n.inputs.get(2) {
                    ins.push(self.bias(b, &sx, &wq)?);
                }
                let v = self.op1("Conv", &name, ins, Self::conv_attrs(geom, false));
                self.q_into(v, out0, Some((*lo, *hi)), &name)
            }
            Op::QConvTranspose { geom, lo, hi } => {
                let x = self.f(n.inputs[0])?;
                let sx = self.q_of(n.inputs[0])?.scale;
                let wq = self.q_of(n.inputs[1])?;
                let w = self.weight(n.inputs[1], 1)?;
                let mut ins = vec![x, w];
                if let Some(&b) = n.inputs.get(2) {
                    ins.push(self.bias(b, &sx, &wq)?);
                }
                let v = self.op1("ConvTranspose", &name, ins, Self::conv_attrs(geom, true));
                self.q_into(v, out0, Some((*lo, *hi)), &name)
            }
            Op::QMatMul { lo, hi } => {
                let x = self.f(n.inputs[0])?;
                let sx = self.q_of(n.inputs[0])?.scale;
                let wq = self.q_of(n.inputs[1])?;
                let w = self.weight(n.inputs[1], 1)?;
                let mut v = self.op1("MatMul", &name, vec![x, w], vec![]);
                if let Some(&b) = n.inputs.get(2) {
                    let b = self.bias(b, &sx, &wq)?;
                    v = self.op1("Add", &name, vec![v, b], vec![]);
                }
                self.q_into(v, out0, Some((*lo, *hi)), &name)
            }
            Op::QBinary { op, lo, hi }
                if self.opts.binary == BinaryForm::Qdq && !self.opts.exact =>
            {
                let (a, b) = (self.f(n.inputs[0])?, self.f(n.inputs[1])?);
                let o = match op {
                    BinOp::Add => "Add",
                    BinOp::Sub => "Sub",
                    _ => "Mul",
                };
                let v = self.op1(o, &name, vec![a, b], vec![]);
                self.q_into(v, out0, Some((*lo, *hi)), &name)
            }
            Op::QBinary { .. } => self.binary_exact(n),
            Op::QLut => {
                let mut table = self.names[n.inputs[1] as usize].clone();
                let mut idx = self.widened(n.inputs[0], DataType::Int32, 128, &name);
                let tshape = self.tensor(n.inputs[1]).shape.clone();
                if tshape.len() == 2 {
                    // one table per channel: index the flattened tables at 256·channel + q + 128
                    let xr = self.tensor(n.inputs[0]).shape.len();
                    let ch = tshape[0] as usize;
                    let mut dims = vec![1i64; xr];
                    dims[1] = ch as i64;
                    let offs: Vec<u8> = (0..ch)
                        .flat_map(|k| (256 * k as i32).to_le_bytes())
                        .collect();
                    let o = self.init(
                        &format!("{name}/channel_offset"),
                        DataType::Int32,
                        &dims,
                        offs,
                    );
                    idx = self.op1("Add", &name, vec![idx, o], vec![]);
                    let flat = self.i64s(&format!("{name}/flat"), &[-1]);
                    table = self.op1("Reshape", &name, vec![table, flat], vec![]);
                }
                let out = self.names[out0 as usize].clone();
                self.node(
                    "Gather",
                    &name,
                    vec![table, idx],
                    vec![out],
                    vec![attr_i("axis", 0)],
                );
                Ok(())
            }
            _ => {
                // float ops, and data movement / pooling on int8: through float, quantized back to each
                // output's own parameters (exact for pure data movement: same grid both ways)
                let ins = n
                    .inputs
                    .iter()
                    .map(|&t| self.f(t))
                    .collect::<Result<Vec<_>>>()?;
                let outs = self.float_op(n, ins)?;
                for (k, v) in outs.into_iter().enumerate() {
                    let t = n.outputs[k];
                    if self.tensor(t).dtype == DType::I8 {
                        self.q_into(v, t, None, &format!("{name}/out{k}"))?;
                    } else {
                        let out = self.names[t as usize].clone();
                        self.node(
                            "Identity",
                            &format!("{name}/out{k}"),
                            vec![v],
                            vec![out],
                            vec![],
                        );
                    }
                }
                Ok(())
            }
        }
    }
}

/// How `tern export --onnx-qdq` writes the integer ops.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExportOptions {
    /// Integer Add/Sub/Mul.
    pub binary: BinaryForm,
    /// Convolutions, matrix products and global average pooling as integer ONNX ops too (ConvInteger
    /// and MatMulInteger on uint8-shifted operands, ReduceSum, then tern's requantization in int64), so
    /// that ONNX Runtime computes tern's values for every integer op (transposed convolutions, windowed
    /// average pooling and Concat rescaling stay DequantizeLinear → op → QuantizeLinear).
    pub exact: bool,
}

/// Encodes `model` as a QDQ ONNX model (opset 17), with the default [`ExportOptions`].
pub fn to_onnx(model: &tern::Model) -> Result<Vec<u8>> {
    to_onnx_with(model, ExportOptions::default())
}

/// [`to_onnx`] with the forms of the integer ops chosen.
pub fn to_onnx_with(model: &tern::Model, opts: ExportOptions) -> Result<Vec<u8>> {
    let g = &model.graph;
    if let Some(t) = g.tensors.iter().find(|t| t.dtype == DType::I16) {
        bail!(
            "tensor \"{}\" is int16 (16-bit activations, format 10): there is no QDQ export of them yet (ONNX's int16 QuantizeLinear needs opset 21; this exporter writes opset {OPSET})",
            t.name
        );
    }
    let io: Vec<u32> = g.inputs.iter().chain(&g.outputs).copied().collect();
    let names = g
        .tensors
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if io.contains(&(i as u32)) {
                t.name.clone()
            } else {
                format!("{}#t{i}", t.name)
            }
        })
        .collect();
    let mut w = Writer {
        model,
        nodes: vec![],
        inits: vec![],
        names,
        deq: HashMap::new(),
        fresh: 0,
        opts,
    };
    for (i, t) in g.tensors.iter().enumerate() {
        if t.data.is_none() {
            continue;
        }
        let dt = match t.dtype {
            DType::F32 | DType::F16 => DataType::Float,
            DType::I8 => DataType::Int8,
            DType::I32 => DataType::Int32,
            other => bail!(
                "constant \"{}\" of type {other:?} cannot be exported",
                t.name
            ),
        };
        w.inits.push(TensorProto {
            name: w.names[i].clone(),
            data_type: dt as i32,
            dims: t.shape.iter().map(|&d| d as i64).collect(),
            raw_data: if t.dtype == DType::F16 {
                // exported widened: the float op that reads it takes float
                model
                    .const_bytes(i)
                    .chunks_exact(2)
                    .flat_map(|c| {
                        half::f16::from_le_bytes([c[0], c[1]])
                            .to_f32()
                            .to_le_bytes()
                    })
                    .collect()
            } else {
                model.const_bytes(i).to_vec()
            },
            ..Default::default()
        });
    }
    for n in &g.nodes {
        w.emit(n)
            .map_err(|e| e.context(format!("exporting node \"{}\" ({})", n.name, n.op.name())))?;
    }
    let vi = |t: u32| {
        let tt = &g.tensors[t as usize];
        value_info(&tt.name, DataType::Float, &tt.shape)
    };
    // constants no node reads (the int8 weights the exact form re-encoded as uint8) stay out; a graph
    // output that is a constant is read by the graph
    let outputs: Vec<&str> = g
        .outputs
        .iter()
        .map(|&t| w.names[t as usize].as_str())
        .collect();
    let read: std::collections::HashSet<&str> = w
        .nodes
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .chain(outputs)
        .collect();
    let inits: Vec<TensorProto> = w
        .inits
        .iter()
        .filter(|t| read.contains(t.name.as_str()))
        .cloned()
        .collect();
    let graph = pb::GraphProto {
        name: "tern".into(),
        initializer: inits,
        node: w.nodes,
        input: g.inputs.iter().map(|&t| vi(t)).collect(),
        output: g.outputs.iter().map(|&t| vi(t)).collect(),
        ..Default::default()
    };
    let m = pb::ModelProto {
        ir_version: 8,
        producer_name: "tern".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        graph: Some(graph),
        ..Default::default()
    };
    Ok(m.encode_to_vec())
}
