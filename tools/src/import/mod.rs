//! ONNX import: tract-onnx parses the protobuf (and decodes tensors, including external data); tern fixes
//! the input shapes, folds the constant (shape) subgraphs on the host, infers every shape with the
//! runtime's own rules, and lowers each ONNX node to tern's closed op set. Every unsupported op is
//! collected so one error lists them all.
pub mod value;

use crate::graph::ToolGraph;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tern::ir::{
    BinOp, Conv2d, CoordMode, Direction, NearestMode, Op, PadMode, Pool2d, PoolKind, ReduceOp,
    ResizeMode, Unary,
};
use tract_onnx::pb::{self, NodeProto};
use tract_onnx::prelude::Framework;
use value::{axis, HostTensor};

/// A user-fixed input shape (`--input-shape NAME=1x3x48x192`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputShape {
    /// Graph input name.
    pub name: String,
    /// Dims.
    pub dims: Vec<usize>,
}

impl std::str::FromStr for InputShape {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let (name, dims) = s
            .rsplit_once('=')
            .ok_or_else(|| anyhow!("expected NAME=DIMS like input=1x3x224x224, got \"{s}\""))?;
        let dims = dims
            .split(['x', ','])
            .map(|d| {
                d.trim()
                    .parse::<usize>()
                    .map_err(|_| anyhow!("bad dim \"{d}\" in \"{s}\""))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(InputShape {
            name: name.to_string(),
            dims,
        })
    }
}

#[derive(Clone, Debug)]
enum Val {
    Const(HostTensor),
    T(u32),
    /// Output of an unsupported node: consumers are skipped so only root causes are reported.
    Poison,
}

/// ONNX op types the importer lowers or folds (some only with constant parameters; see `lower_inner`).
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Ceil",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvInteger",
    "ConvTranspose",
    "DequantizeLinear",
    "Div",
    "Dropout",
    "DynamicQuantizeLinear",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "GRU",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Greater",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LSTM",
    "LeakyRelu",
    "Less",
    "Log",
    "MatMul",
    "MatMulInteger",
    "Max",
    "MaxPool",
    "Min",
    "Mul",
    "Neg",
    "Not",
    "Pad",
    "Pow",
    "QLinearConv",
    "QLinearMatMul",
    "QuantizeLinear",
    "RNN",
    "Range",
    "Reciprocal",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Resize",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Upsample",
    "Where",
];

struct Importer {
    g: ToolGraph,
    env: HashMap<String, Val>,
    opset: i64,
    unsupported: BTreeMap<String, Vec<String>>,
    /// ONNX element type of initializers and Constant outputs (a zero point's type says whether the
    /// quantized tensor is uint8 or int8).
    elem: HashMap<String, i32>,
    /// Quantized (uint8/int8) ONNX values: each is represented by the float tensor it quantizes.
    qnames: HashMap<String, QInfo>,
}

/// How an imported int8/uint8 ONNX value relates to the float tensor that stands for it:
/// `q = round(f / scale) + zero_point` in the original element type.
#[derive(Clone, Copy, Debug, PartialEq)]
struct QInfo {
    scale: f32,
    zero_point: i64,
    unsigned: bool,
}

impl QInfo {
    /// tern's int8 parameters (uint8 values are int8 values + 128 at the same scale).
    fn params(&self) -> tern::ir::QParams {
        tern::ir::QParams {
            scale: vec![self.scale],
            zero_point: vec![(self.zero_point - if self.unsigned { 128 } else { 0 }) as i32],
            axis: None,
        }
    }
}

/// ONNX ops that only move or select values: a quantized input gives an output quantized the same way.
const QUANT_TRANSPARENT: &[&str] = &[
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "MaxPool",
    "GlobalMaxPool",
    "Identity",
    "Slice",
    "Split",
];

/// Loads an ONNX file and lowers it (see the module docs).
pub fn import(path: &Path, shapes: &[InputShape]) -> Result<ToolGraph> {
    let onnx = tract_onnx::onnx();
    let proto = onnx
        .proto_model_for_path(path)
        .map_err(|e| anyhow!("{}: cannot parse as ONNX: {e}", path.display()))?;
    let dir = path
        .parent()
        .and_then(|p| p.to_str())
        .map(|s| if s.is_empty() { "." } else { s });
    import_proto(&proto, dir, shapes).with_context(|| format!("importing {}", path.display()))
}

/// Lowers an ONNX model given as bytes (no external data).
pub fn import_bytes(bytes: &[u8], shapes: &[InputShape]) -> Result<ToolGraph> {
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut std::io::Cursor::new(bytes))
        .map_err(|e| anyhow!("cannot parse as ONNX: {e}"))?;
    import_proto(&proto, None, shapes)
}

/// Dims as `--input-shape` writes them (`1x3x320x320`).
fn shape_arg(dims: &[usize]) -> String {
    let d: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    d.join("x")
}

fn dims_of(vi: &pb::ValueInfoProto) -> Option<(i32, Vec<Option<usize>>)> {
    use pb::tensor_shape_proto::dimension::Value as D;
    use pb::type_proto::Value as T;
    let Some(T::TensorType(t)) = vi.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    let dims = t
        .shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(D::DimValue(v)) if v > 0 => Some(v as usize),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some((t.elem_type, dims))
}

/// An input's declared dims for messages: numbers, the names of symbolic dims, `?` for unnamed ones
/// (`[batch, 3, height, width]`).
fn dims_shown(vi: &pb::ValueInfoProto) -> String {
    use pb::tensor_shape_proto::dimension::Value as D;
    use pb::type_proto::Value as T;
    let dims = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(T::TensorType(t)) => t.shape.as_ref().map_or(vec![], |s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(D::DimValue(v)) if *v > 0 => v.to_string(),
                    Some(D::DimParam(p)) if !p.is_empty() => p.clone(),
                    _ => "?".to_string(),
                })
                .collect()
        }),
        _ => vec![],
    };
    format!("[{}]", dims.join(", "))
}

/// The input size an Ultralytics export records in its metadata (`imgsz`: `[320, 320]`, or `640` for a
/// square), which its image input's symbolic height and width stand for. `None` without it or when it
/// does not read as one or two sizes.
fn metadata_imgsz(proto: &pb::ModelProto) -> Option<[usize; 2]> {
    // (a size beyond any camera's is not taken from metadata: an input of it would not fit in memory)
    const IMGSZ_MAX: usize = 8192;
    let v = &proto
        .metadata_props
        .iter()
        .find(|p| p.key == "imgsz")?
        .value;
    let sizes: Vec<usize> = v
        .trim()
        .trim_start_matches(['[', '('])
        .trim_end_matches([']', ')'])
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .ok()
                .filter(|&d| (1..=IMGSZ_MAX).contains(&d))
        })
        .collect::<Option<_>>()?;
    match sizes[..] {
        [s] => Some([s, s]),
        [h, w] => Some([h, w]),
        _ => None,
    }
}

/// Lowers a parsed model. `dir` resolves external tensor data.
pub fn import_proto(
    proto: &pb::ModelProto,
    dir: Option<&str>,
    shapes: &[InputShape],
) -> Result<ToolGraph> {
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| anyhow!("the model has no graph"))?;
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(13, |o| o.version);
    let mut im = Importer {
        g: ToolGraph::default(),
        env: HashMap::new(),
        opset,
        unsupported: BTreeMap::new(),
        elem: HashMap::new(),
        qnames: HashMap::new(),
    };
    for t in &graph.initializer {
        im.elem.insert(t.name.clone(), t.data_type);
        let v = HostTensor::from_tract(&value::load_with(t, dir)?)
            .with_context(|| format!("initializer \"{}\"", t.name))?;
        im.env.insert(t.name.clone(), Val::Const(v));
    }
    for s in shapes {
        if !graph.input.iter().any(|i| i.name == s.name) {
            let names: Vec<&str> = graph
                .input
                .iter()
                .filter(|i| !im.env.contains_key(&i.name))
                .map(|i| i.name.as_str())
                .collect();
            bail!(
                "--input-shape names \"{}\", but the model's inputs are {names:?}",
                s.name
            );
        }
    }
    let imgsz = metadata_imgsz(proto);
    // inputs whose symbolic dims beyond the batch were chosen here (as 1, or from `imgsz`): named in any
    // error that follows (the usual cause)
    let mut guessed: Vec<String> = vec![];
    for vi in &graph.input {
        if im.env.contains_key(&vi.name) {
            continue; // an initializer listed as input (old exporters)
        }
        let (elem, dims) =
            dims_of(vi).ok_or_else(|| anyhow!("input \"{}\" is not a tensor", vi.name))?;
        if ![1, 10, 11, 16].contains(&elem) {
            bail!(
                "input \"{}\" has element type {elem}; tern takes float inputs",
                vi.name
            );
        }
        let fixed: Vec<usize> = match shapes.iter().find(|s| s.name == vi.name) {
            Some(s) => {
                if !dims.is_empty() && s.dims.len() != dims.len() {
                    bail!(
                        "--input-shape {}: rank {} but the model declares rank {}",
                        s.name,
                        s.dims.len(),
                        dims.len()
                    );
                }
                for (i, (&want, have)) in s.dims.iter().zip(&dims).enumerate() {
                    if let Some(h) = have {
                        if *h != want {
                            bail!(
                                "--input-shape {}: dim {i} is {want} but the model fixes it to {h}",
                                s.name
                            );
                        }
                    }
                }
                s.dims.clone()
            }
            None => {
                let mut fixed: Vec<usize> = dims.iter().map(|d| d.unwrap_or(1)).collect();
                if dims.iter().any(|d| d.is_none()) {
                    // an image input of unset height and width: the size the exporter recorded, if any
                    let from_meta = match (&dims[..], imgsz) {
                        ([_, Some(_), None, None], Some(hw)) => {
                            fixed[2..].copy_from_slice(&hw);
                            true
                        }
                        _ => false,
                    };
                    let (shown, taken) = (dims_shown(vi), shape_arg(&fixed));
                    if from_meta {
                        log::info!(
                            "input \"{}\" has symbolic dims {shown}: taking {taken}, its height and width \
                             from the model's \"imgsz\" metadata (--input-shape {}=... sets others)",
                            vi.name,
                            vi.name
                        );
                    } else {
                        log::warn!(
                            "input \"{}\" has symbolic dims {shown}; taking {taken} (set the real shape \
                             with --input-shape {}=...)",
                            vi.name,
                            vi.name
                        );
                    }
                    // named in a later error when more than the batch was chosen here (a batch of 1 is
                    // almost always what is meant; a size of 1, or the metadata's, may not be)
                    if from_meta || dims[1..].iter().any(|d| d.is_none()) {
                        let how = if from_meta {
                            " (from its \"imgsz\" metadata)"
                        } else {
                            ""
                        };
                        guessed.push(format!(
                            "input \"{}\" has symbolic dims {shown}, taken as {taken}{how} (set its real \
                             shape with --input-shape {}=...)",
                            vi.name, vi.name
                        ));
                    }
                }
                fixed
            }
        };
        let id = im.g.add_tensor(&vi.name, &fixed);
        im.g.graph.inputs.push(id);
        im.env.insert(vi.name.clone(), Val::T(id));
    }
    for (i, node) in graph.node.iter().enumerate() {
        let name = if node.name.is_empty() {
            format!("{}_{i}", node.op_type)
        } else {
            node.name.clone()
        };
        im.node(node, &name).map_err(|e| match guessed.is_empty() {
            true => e,
            false => e.context(guessed.join("; ")),
        })?;
    }
    if !im.unsupported.is_empty() {
        let total: usize = im.unsupported.values().map(|v| v.len()).sum();
        let mut msg = format!("{total} node(s) use ops tern does not support:\n");
        for (op, nodes) in &im.unsupported {
            let shown: Vec<&str> = nodes.iter().take(8).map(|s| s.as_str()).collect();
            let more = if nodes.len() > 8 {
                format!(", ... ({} more)", nodes.len() - 8)
            } else {
                String::new()
            };
            msg += &format!("  {op} ×{}: {}{more}\n", nodes.len(), shown.join(", "));
        }
        if proto.producer_name == "tern" {
            // tern's own export: say which of its forms come back, rather than leave the user to guess
            msg += "this model was written by `tern export --onnx-qdq`, whose lookup tables (Gather) and \
                    integer forms (the default `--binary-ops integer`, `--exact`) are for ONNX Runtime, not \
                    re-imported: compress the float model again (or keep the .tern it was exported from); \
                    an export written with `--binary-ops qdq` of a model without lookup tables re-imports\n";
        }
        bail!(msg.trim_end().to_string());
    }
    for vi in &graph.output {
        match im.env.get(&vi.name) {
            Some(Val::T(t)) => {
                let t = *t;
                if im.g.graph.outputs.contains(&t) || im.g.graph.inputs.contains(&t) {
                    // the same tensor listed twice, or an input passed through: give the output its own copy
                    let shape = im.g.shape(t);
                    let ids = im.g.emit(
                        &vi.name,
                        Op::Reshape,
                        vec![t],
                        std::slice::from_ref(&vi.name),
                        Some(vec![shape]),
                    )?;
                    im.g.graph.outputs.push(ids[0]);
                } else {
                    im.g.graph.tensors[t as usize].name = vi.name.clone();
                    im.g.graph.outputs.push(t);
                }
            }
            Some(Val::Const(c)) => {
                bail!("output \"{}\" is a constant (shape {:?}) for the fixed input shapes; nothing to run", vi.name, c.shape())
            }
            _ => bail!("output \"{}\" is not computed by any node", vi.name),
        }
    }
    im.g.validate()?;
    Ok(im.g)
}

fn f32_of(t: &HostTensor) -> Vec<f32> {
    t.floats()
}

impl Importer {
    fn unsupported(&mut self, what: String, name: &str) {
        self.unsupported
            .entry(what)
            .or_default()
            .push(name.to_string());
    }

    /// `Clip` with a bound computed at run time (a log-mel spectrogram's floor `max(x) − top_db`, as
    /// openWakeWord's melspectrogram model has it): `Min(Max(x, min), max)`, each bound a one-value
    /// tensor (ONNX's scalars) broadcast over x. An absent bound is skipped, as the constant form's
    /// ±inf is (ONNX's default is the type's finite extreme: an infinite x passes here).
    fn clip_dynamic(&mut self, name: &str, out0: &str, ins: &[Option<Val>]) -> Result<Lowered> {
        let x = ins
            .first()
            .and_then(|v| v.as_ref())
            .context("Clip without an input")?;
        let mut acc = self.t(x, &format!("{name}/x"));
        let bounds: Vec<(&Val, BinOp)> = [(1, BinOp::Max), (2, BinOp::Min)]
            .into_iter()
            .filter_map(|(i, op)| Some((ins.get(i)?.as_ref()?, op)))
            .collect();
        let rank = self.g.shape(acc).len();
        for &(v, op) in &bounds {
            let shape = self.shape(v);
            if shape.iter().product::<usize>() != 1 || shape.len() > rank {
                return Ok(Lowered::Unsupported(format!(
                    "Clip({op:?} bound of shape {shape:?}, not one value)"
                )));
            }
        }
        for (k, &(v, op)) in bounds.iter().enumerate() {
            let rhs = self.t(v, &format!("{name}/{op:?}"));
            let oname = if k + 1 == bounds.len() {
                out0.to_string()
            } else {
                format!("{name}/max")
            };
            acc = self.g.emit(
                name,
                Op::Binary { op, act: None },
                vec![acc, rhs],
                &[oname],
                None,
            )?[0];
        }
        Ok(Lowered::Done(vec![Val::T(acc)]))
    }

    fn t(&mut self, v: &Val, name: &str) -> u32 {
        match v {
            Val::T(t) => *t,
            Val::Const(c) => {
                let shape = c.shape().to_vec();
                self.g.add_const(name, &shape, f32_of(c))
            }
            Val::Poison => u32::MAX,
        }
    }

    fn shape(&self, v: &Val) -> Vec<usize> {
        match v {
            Val::T(t) => self.g.shape(*t),
            Val::Const(c) => c.shape().to_vec(),
            Val::Poison => vec![],
        }
    }

    fn node(&mut self, node: &NodeProto, name: &str) -> Result<()> {
        let ins: Vec<Option<Val>> = node
            .input
            .iter()
            .map(|n| {
                if n.is_empty() {
                    Ok(None)
                } else {
                    self.env.get(n).cloned().map(Some).ok_or_else(|| {
                        anyhow!(
                            "node \"{name}\" ({}): input \"{n}\" is not defined",
                            node.op_type
                        )
                    })
                }
            })
            .collect::<Result<_>>()?;
        let poison = |im: &mut Importer| {
            for o in &node.output {
                im.env.insert(o.clone(), Val::Poison);
            }
        };
        if ins.iter().flatten().any(|v| matches!(v, Val::Poison)) {
            // downstream of an unsupported node: still report this node if its op is unknown too
            if !SUPPORTED_OPS.contains(&node.op_type.as_str())
                || (!node.domain.is_empty() && node.domain != "ai.onnx")
            {
                let what = if node.domain.is_empty() {
                    node.op_type.clone()
                } else {
                    format!("{}::{}", node.domain, node.op_type)
                };
                self.unsupported(what, name);
            }
            poison(self);
            return Ok(());
        }
        if !node.domain.is_empty() && node.domain != "ai.onnx" {
            self.unsupported(format!("{}::{}", node.domain, node.op_type), name);
            poison(self);
            return Ok(());
        }
        // Shape of a tensor is known once input shapes are fixed
        if node.op_type == "Shape" {
            if let Some(Some(v)) = ins.first() {
                let s: Vec<i64> = self.shape(v).iter().map(|&d| d as i64).collect();
                let r = s.len() as i64;
                let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                let start = clampi(node.get_attr_opt::<i64>("start")?.unwrap_or(0));
                let end = clampi(node.get_attr_opt::<i64>("end")?.unwrap_or(r));
                let s = s[start..end.max(start)].to_vec();
                let n = s.len();
                self.env.insert(
                    node.output[0].clone(),
                    Val::Const(HostTensor::I(ndarray::ArrayD::from_shape_vec(
                        ndarray::IxDyn(&[n]),
                        s,
                    )?)),
                );
                return Ok(());
            }
        }
        let consts: Vec<Option<HostTensor>> = ins
            .iter()
            .map(|v| match v {
                Some(Val::Const(c)) => Some(c.clone()),
                _ => None,
            })
            .collect();
        let all_const = ins.iter().all(|v| !matches!(v, Some(Val::T(_))));
        if all_const {
            if let Some(r) = value::fold(node, &consts, self.opset) {
                let outs = r.with_context(|| {
                    format!("node \"{name}\" ({}): folding constants", node.op_type)
                })?;
                for (o, v) in node.output.iter().zip(outs) {
                    self.env.insert(o.clone(), Val::Const(v));
                }
                return Ok(());
            }
        }
        if node.op_type == "Constant" {
            if let Some(t) = node
                .attribute
                .iter()
                .find(|a| a.name == "value")
                .and_then(|a| a.t.as_ref())
            {
                self.elem.insert(node.output[0].clone(), t.data_type);
            }
        }
        match self.lower(node, name, &ins)? {
            Some(outs) => {
                for (o, v) in node.output.iter().zip(outs) {
                    if !o.is_empty() {
                        self.env.insert(o.clone(), v);
                    }
                }
                if QUANT_TRANSPARENT.contains(&node.op_type.as_str()) {
                    if let Some(info) = node.input.first().and_then(|i| self.qnames.get(i)).copied()
                    {
                        for o in &node.output {
                            self.qnames.insert(o.clone(), info);
                        }
                    }
                }
            }
            None => poison(self),
        }
        Ok(())
    }

    /// Lowers one node; `Ok(None)` when it is unsupported (recorded for the final report).
    fn lower(
        &mut self,
        node: &NodeProto,
        name: &str,
        ins: &[Option<Val>],
    ) -> Result<Option<Vec<Val>>> {
        let op = node.op_type.as_str();
        let ctx = |e: anyhow::Error| e.context(format!("node \"{name}\" ({op})"));
        let r = match self.lower_quant(node, name, ins) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => self.lower_inner(node, name, ins),
            Err(e) => Err(e),
        };
        match r {
            Ok(Lowered::Done(v)) => Ok(Some(v)),
            Ok(Lowered::Unsupported(what)) => {
                self.unsupported(what, name);
                Ok(None)
            }
            // the graph builder's errors name the node already
            Err(e) if e.to_string().starts_with(&format!("node \"{name}\"")) => Err(e),
            Err(e) => Err(ctx(e)),
        }
    }

    fn out_name(node: &NodeProto, k: usize) -> String {
        node.output.get(k).cloned().unwrap_or_default()
    }

    fn emit1(
        &mut self,
        node: &NodeProto,
        name: &str,
        op: Op,
        inputs: Vec<u32>,
        declared: Option<Vec<usize>>,
    ) -> Result<Val> {
        let ids = self.g.emit(
            name,
            op,
            inputs,
            &[Self::out_name(node, 0)],
            declared.map(|d| vec![d]),
        )?;
        Ok(Val::T(ids[0]))
    }

    /// ONNX LSTM as [`Op::Lstm`], GRU as [`Op::Gru`] and RNN as [`Op::Rnn`]: constant weights, the default activations, no
    /// LSTM input-forget coupling, every sequence full length; absent biases and initial states become
    /// zero constants, and `layout = 1` (batch first) becomes transposes around the op. Everything that
    /// can make the node unsupported is checked before the first node is emitted.
    fn recurrent(&mut self, node: &NodeProto, name: &str, ins: &[Option<Val>]) -> Result<Lowered> {
        use Lowered::*;
        let lstm = node.op_type == "LSTM";
        let op_type = node.op_type.as_str();
        let konst = |i: usize| match ins.get(i) {
            Some(Some(Val::Const(c))) => Some(c),
            _ => None,
        };
        let given = |i: usize| matches!(ins.get(i), Some(Some(_)));
        let direction = match node.get_attr_opt::<&str>("direction")?.unwrap_or("forward") {
            "forward" => Direction::Forward,
            "reverse" => Direction::Reverse,
            "bidirectional" => Direction::Bidirectional,
            d => bail!("unknown direction \"{d}\""),
        };
        let d = direction.count();
        let (gates, default): (usize, &[&str]) = match op_type {
            "LSTM" => (4, &["Sigmoid", "Tanh", "Tanh"]),
            "GRU" => (3, &["Sigmoid", "Tanh"]),
            _ => (1, &["Tanh"]),
        };
        if let Some(acts) = node.get_attr_opt_vec::<String>("activations")? {
            let k = default.len();
            if acts.len() != k * d || acts.iter().enumerate().any(|(j, a)| a != default[j % k]) {
                return Ok(Unsupported(format!("{op_type}(activations={acts:?})")));
            }
        }
        if lstm && node.get_attr_opt::<i64>("input_forget")?.unwrap_or(0) != 0 {
            return Ok(Unsupported("LSTM(input_forget)".into()));
        }
        let batch_first = node.get_attr_opt::<i64>("layout")?.unwrap_or(0) == 1;
        let (Some(w), Some(r)) = (konst(1), konst(2)) else {
            return Ok(Unsupported(format!("{op_type}(non-constant weights)")));
        };
        if given(3) && konst(3).is_none() || lstm && given(7) && konst(7).is_none() {
            return Ok(Unsupported(format!(
                "{op_type}(non-constant bias or peepholes)"
            )));
        }
        let x = ins[0].clone().ok_or_else(|| anyhow!("missing input 0"))?;
        let mut xt = self.t(&x, &format!("{name}/X"));
        let xs = self.g.shape(xt);
        if xs.len() != 3 {
            bail!("input X must have rank 3, has shape {xs:?}");
        }
        let (s, b) = if batch_first {
            (xs[1], xs[0])
        } else {
            (xs[0], xs[1])
        };
        let ws = w.shape().to_vec();
        let h = match node.get_attr_opt::<i64>("hidden_size")? {
            Some(h) => h as usize,
            None => r.shape().last().copied().unwrap_or(0),
        };
        if ws.len() != 3 || ws[0] != d || ws[1] != gates * h {
            bail!(
                "W has shape {ws:?}, {d} direction(s) of hidden size {h} need [{d}, {}, I]",
                gates * h
            );
        }
        if let Some(lens) = konst(4) {
            if lens.ints().iter().any(|&l| l != s as i64) {
                return Ok(Unsupported(format!(
                    "{op_type}(sequence_lens shorter than the sequence)"
                )));
            }
        } else if given(4) {
            return Ok(Unsupported(format!(
                "{op_type}(non-constant sequence_lens)"
            )));
        }
        if batch_first {
            xt = self.permute(name, xt, vec![1, 0, 2], "X_seq_first")?;
        }
        let wt = self.t(&Val::Const(w.clone()), &format!("{name}/W"));
        let rt = self.t(&Val::Const(r.clone()), &format!("{name}/R"));
        let bias = match konst(3) {
            Some(c) => self.t(&Val::Const(c.clone()), &format!("{name}/B")),
            None => self.g.add_const(
                &format!("{name}/B"),
                &[d, 2 * gates * h],
                vec![0.0; d * 2 * gates * h],
            ),
        };
        let mut inputs = vec![xt, wt, rt, bias];
        let states: &[(usize, &str)] = if lstm {
            &[(5, "initial_h"), (6, "initial_c")]
        } else {
            &[(5, "initial_h")]
        };
        for &(k, what) in states {
            let t = match ins.get(k).and_then(|v| v.as_ref()) {
                Some(v) => {
                    let t = self.t(v, &format!("{name}/{what}"));
                    if batch_first {
                        self.permute(name, t, vec![1, 0, 2], &format!("{what}_dir_first"))?
                    } else {
                        t
                    }
                }
                None => {
                    self.g
                        .add_const(&format!("{name}/{what}"), &[d, b, h], vec![0.0; d * b * h])
                }
            };
            inputs.push(t);
        }
        let clip = node.get_attr_opt::<f32>("clip")?;
        let (op, suffixes): (Op, &[&str]) = if lstm {
            let peepholes = given(7);
            if let Some(p) = konst(7) {
                inputs.push(self.t(&Val::Const(p.clone()), &format!("{name}/P")));
            }
            let op = Op::Lstm {
                hidden: h as u32,
                direction,
                clip,
                peepholes,
            };
            (op, &["Y", "Y_h", "Y_c"])
        } else if op_type == "GRU" {
            let op = Op::Gru {
                hidden: h as u32,
                direction,
                clip,
                linear_before_reset: node
                    .get_attr_opt::<i64>("linear_before_reset")?
                    .unwrap_or(0)
                    != 0,
            };
            (op, &["Y", "Y_h"])
        } else {
            let op = Op::Rnn {
                hidden: h as u32,
                direction,
                clip,
            };
            (op, &["Y", "Y_h"])
        };
        // the op's own outputs take the node's names unless a transpose follows (batch first)
        let names: Vec<String> = suffixes
            .iter()
            .enumerate()
            .map(|(k, suffix)| match Self::out_name(node, k) {
                o if !o.is_empty() && !batch_first => o,
                _ => format!("{name}/{suffix}"),
            })
            .collect();
        let ids = self.g.emit(name, op, inputs, &names, None)?;
        if !batch_first {
            return Ok(Done(ids.into_iter().map(Val::T).collect()));
        }
        let mut outs = Vec::new();
        for (k, (&id, perm)) in ids
            .iter()
            .zip([vec![2, 0, 1, 3], vec![1, 0, 2], vec![1, 0, 2]])
            .enumerate()
        {
            let o = Self::out_name(node, k);
            let o = if o.is_empty() {
                format!("{name}/out{k}")
            } else {
                o
            };
            outs.push(Val::T(
                self.g
                    .emit(name, Op::Transpose { perm }, vec![id], &[o], None)?[0],
            ));
        }
        Ok(Done(outs))
    }

    /// `x` with its axes permuted, as a new node output `{name}/{suffix}`.
    fn permute(&mut self, name: &str, x: u32, perm: Vec<u32>, suffix: &str) -> Result<u32> {
        Ok(self.g.emit(
            name,
            Op::Transpose { perm },
            vec![x],
            &[format!("{name}/{suffix}")],
            None,
        )?[0])
    }

    /// `x` with its two axes swapped, as a new node output `{name}/{suffix}`.
    fn transpose2d(&mut self, name: &str, x: u32, suffix: &str) -> Result<u32> {
        let out = format!("{name}/{suffix}");
        Ok(self.g.emit(
            name,
            Op::Transpose { perm: vec![1, 0] },
            vec![x],
            &[out],
            None,
        )?[0])
    }

    /// `x · factor`, as a new node output `{name}/{suffix}`.
    fn scale(&mut self, name: &str, x: u32, factor: f32, suffix: &str) -> Result<u32> {
        let f = self
            .g
            .add_const(&format!("{name}/{suffix}_factor"), &[], vec![factor]);
        let op = Op::Binary {
            op: BinOp::Mul,
            act: None,
        };
        Ok(self
            .g
            .emit(name, op, vec![x, f], &[format!("{name}/{suffix}")], None)?[0])
    }

    fn reshape(&mut self, name: &str, x: u32, shape: Vec<usize>, out: &str) -> Result<u32> {
        Ok(self.g.emit(
            name,
            Op::Reshape,
            vec![x],
            &[out.to_string()],
            Some(vec![shape]),
        )?[0])
    }

    /// The int8/uint8 activation parameters given by inputs `scale_i` (a one-element scale) and `zp_i` (a
    /// one-element zero point, optional: then uint8 zero). `None` for per-axis or non-constant parameters.
    fn qinfo(
        &self,
        node: &NodeProto,
        ins: &[Option<Val>],
        scale_i: usize,
        zp_i: usize,
    ) -> Option<QInfo> {
        let konst = |i: usize| match ins.get(i) {
            Some(Some(Val::Const(c))) => Some(c),
            _ => None,
        };
        let s = konst(scale_i)?.floats();
        if s.len() != 1 || !(s[0].is_finite() && s[0] > 0.0) {
            return None;
        }
        let zname = node.input.get(zp_i).filter(|n| !n.is_empty());
        let (zero_point, unsigned) = match zname {
            None => (0, true), // ONNX: no zero point means uint8 with zero point 0
            Some(n) => {
                let z = konst(zp_i)?.ints();
                if z.len() != 1 {
                    return None;
                }
                // element type 2 is uint8, 3 int8
                let unsigned = match self.elem.get(n) {
                    Some(&t) => t == 2,
                    None => z[0] > 127,
                };
                (z[0], unsigned)
            }
        };
        Some(QInfo {
            scale: s[0],
            zero_point,
            unsigned,
        })
    }

    /// Records `info` as the fixed int8 parameters of float tensor `t` (what the quantize pass uses instead
    /// of a calibrated range).
    fn fix_params(&mut self, t: u32, info: &QInfo) {
        let tt = &mut self.g.graph.tensors[t as usize];
        if tt.quant.is_none() {
            tt.quant = Some(info.params());
        }
    }

    /// `node` as `op` on new inputs (the float form of a quantized op).
    fn as_float(
        &mut self,
        node: &NodeProto,
        name: &str,
        op: &str,
        ins: &[Option<Val>],
    ) -> Result<Lowered> {
        let mut n = node.clone();
        n.op_type = op.to_string();
        n.input = (0..ins.len()).map(|i| format!("{name}/in{i}")).collect();
        n.output.truncate(1);
        self.lower_inner(&n, name, ins)
    }

    /// Quantized ONNX (QDQ and operator form, static and dynamic): every quantized value is represented by
    /// the float tensor it quantizes, whose int8 parameters are recorded on it; quantized operators become
    /// their float op on dequantized constants. The quantize pass then rebuilds the integer graph with those
    /// parameters (no calibration needed). `Ok(None)`: not a quantization op.
    fn lower_quant(
        &mut self,
        node: &NodeProto,
        name: &str,
        ins: &[Option<Val>],
    ) -> Result<Option<Lowered>> {
        use Lowered::*;
        let op = node.op_type.as_str();
        if !matches!(
            op,
            "QuantizeLinear"
                | "DequantizeLinear"
                | "DynamicQuantizeLinear"
                | "MatMulInteger"
                | "ConvInteger"
                | "QLinearConv"
                | "QLinearMatMul"
        ) {
            return Ok(None);
        }
        let konst = |i: usize| -> Option<HostTensor> {
            match ins.get(i) {
                Some(Some(Val::Const(c))) => Some(c.clone()),
                _ => None,
            }
        };
        let float_of = |i: usize| -> Option<u32> {
            match ins.get(i) {
                Some(Some(Val::T(t))) => Some(*t),
                _ => None,
            }
        };
        let in_name = |i: usize| node.input.get(i).cloned().unwrap_or_default();
        let out0 = Self::out_name(node, 0);
        // the quantized input `i` (with its scale and zero point at `si`, `zi` when the op restates them)
        let qin = |im: &Importer,
                   i: usize,
                   si: Option<usize>,
                   zi: Option<usize>|
         -> Option<(u32, QInfo)> {
            let t = float_of(i)?;
            let info = *im.qnames.get(&in_name(i))?;
            if let Some(si) = si {
                let stated = im.qinfo(node, ins, si, zi.unwrap_or(usize::MAX))?;
                if (stated.scale, stated.zero_point) != (info.scale, info.zero_point) {
                    return None;
                }
            } else if let Some(zi) = zi {
                let z = konst(zi).map_or(0, |z| z.ints().first().copied().unwrap_or(0));
                if z != info.zero_point {
                    return None;
                }
            }
            Some((t, info))
        };
        Ok(Some(match op {
            "QuantizeLinear" => {
                let Some(info) = self.qinfo(node, ins, 1, 2) else {
                    return Ok(Some(Unsupported(
                        "QuantizeLinear(per-axis or non-constant parameters)".into(),
                    )));
                };
                if let Some(c) = konst(0) {
                    // a constant quantized on the host (fake-quantized weights): round half to even, saturate
                    let (lo, hi) = if info.unsigned {
                        (0.0, 255.0)
                    } else {
                        (-128.0, 127.0)
                    };
                    let q = c.f32().mapv(|v| {
                        ((v / info.scale).round_ties_even() + info.zero_point as f32).clamp(lo, hi)
                            as i64
                    });
                    return Ok(Some(Done(vec![Val::Const(HostTensor::I(q))])));
                }
                let Some(x) = float_of(0) else {
                    return Ok(Some(Unsupported("QuantizeLinear(unknown input)".into())));
                };
                self.fix_params(x, &info);
                self.qnames.insert(out0, info);
                Done(vec![Val::T(x)])
            }
            "DequantizeLinear" => match qin(self, 0, None, None) {
                Some((x, info)) => {
                    let same = self
                        .qinfo(node, ins, 1, 2)
                        .is_some_and(|d| (d.scale, d.zero_point) == (info.scale, info.zero_point));
                    if !same {
                        return Ok(Some(Unsupported(
                            "DequantizeLinear(parameters differ from the tensor's QuantizeLinear)"
                                .into(),
                        )));
                    }
                    Done(vec![Val::T(x)])
                }
                None => Unsupported(
                    "DequantizeLinear(of a value that is not quantized in the model)".into(),
                ),
            },
            "DynamicQuantizeLinear" => {
                // run-time scales have no static form: the value stays float (scale 1, zero point 0), so
                // the integer ops below compute the float product and `tern compress --int8 --calib`
                // quantizes it statically
                let Some(x) = float_of(0) else {
                    return Ok(Some(Unsupported(
                        "DynamicQuantizeLinear(unknown input)".into(),
                    )));
                };
                let info = QInfo {
                    scale: 1.0,
                    zero_point: 0,
                    unsigned: true,
                };
                self.qnames.insert(out0, info);
                let one = HostTensor::F(ndarray::ArrayD::from_elem(ndarray::IxDyn(&[]), 1.0));
                let zero = HostTensor::I(ndarray::ArrayD::from_elem(ndarray::IxDyn(&[]), 0));
                Done(vec![Val::T(x), Val::Const(one), Val::Const(zero)])
            }
            "MatMulInteger" | "ConvInteger" => {
                let conv = op == "ConvInteger";
                let Some((x, info)) = qin(self, 0, None, Some(2)) else {
                    return Ok(Some(Unsupported(format!(
                        "{op}(input not quantized in the model, or zero point differs)"
                    ))));
                };
                let Some(w) = konst(1) else {
                    return Ok(Some(Unsupported(format!("{op}(non-constant weights)"))));
                };
                // Σ (q_x − zp_x)(w − zp_w) = Σ (x / s_x)(w − zp_w): the float op on (w − zp_w) / s_x
                let zp_w = konst(3);
                let n = zp_w
                    .as_ref()
                    .map_or(1, |z| z.shape().iter().product::<usize>());
                let dims: &[usize] = if n > 1 { &[n] } else { &[] };
                let inv = HostTensor::F(ndarray::ArrayD::from_elem(
                    ndarray::IxDyn(dims),
                    1.0 / info.scale,
                ));
                // a per-channel zero point lies on axis 0 of conv weights, on the last axis of a matmul's B
                let wf = value::dequantize(&w, &inv, zp_w.as_ref(), if conv { 0 } else { -1 })?;
                let new_ins = vec![Some(Val::T(x)), Some(Val::Const(wf))];
                self.as_float(node, name, if conv { "Conv" } else { "MatMul" }, &new_ins)?
            }
            "QLinearConv" | "QLinearMatMul" => {
                let conv = op == "QLinearConv";
                let Some((x, _)) = qin(self, 0, Some(1), Some(2)) else {
                    return Ok(Some(Unsupported(format!(
                        "{op}(input not quantized as stated)"
                    ))));
                };
                let (Some(w), Some(ws)) = (konst(3), konst(4)) else {
                    return Ok(Some(Unsupported(format!("{op}(non-constant weights)"))));
                };
                let Some(yinfo) = self.qinfo(node, ins, 6, 7) else {
                    return Ok(Some(Unsupported(format!(
                        "{op}(per-axis or non-constant output parameters)"
                    ))));
                };
                let sx = konst(1).map_or(1.0, |s| s.floats()[0]);
                let wf = value::dequantize(&w, &ws, konst(5).as_ref(), if conv { 0 } else { -1 })?;
                let mut new_ins = vec![Some(Val::T(x)), Some(Val::Const(wf))];
                if conv {
                    if let Some(b) = konst(8) {
                        // int32 bias at scale s_x · s_w[m]
                        let wsv = ws.floats();
                        let bf: Vec<f32> = b
                            .ints()
                            .iter()
                            .enumerate()
                            .map(|(m, &v)| v as f32 * sx * wsv[if wsv.len() == 1 { 0 } else { m }])
                            .collect();
                        let n = bf.len();
                        new_ins.push(Some(Val::Const(HostTensor::F(
                            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n]), bf)?,
                        ))));
                    }
                }
                let r =
                    self.as_float(node, name, if conv { "Conv" } else { "MatMul" }, &new_ins)?;
                if let Done(v) = &r {
                    if let Some(Val::T(y)) = v.first() {
                        self.fix_params(*y, &yinfo);
                        self.qnames.insert(out0, yinfo);
                    }
                }
                r
            }
            _ => unreachable!("checked above"),
        }))
    }

    fn lower_inner(
        &mut self,
        node: &NodeProto,
        name: &str,
        ins: &[Option<Val>],
    ) -> Result<Lowered> {
        use Lowered::*;
        let op = node.op_type.as_str();
        let ai = |n: &str, d: i64| -> Result<i64> { Ok(node.get_attr_opt::<i64>(n)?.unwrap_or(d)) };
        let af = |n: &str, d: f32| -> Result<f32> { Ok(node.get_attr_opt::<f32>(n)?.unwrap_or(d)) };
        let astr = |n: &str, d: &str| -> Result<String> {
            Ok(node.get_attr_opt::<&str>(n)?.unwrap_or(d).to_string())
        };
        let avec = |n: &str| -> Result<Option<Vec<i64>>> { node.get_attr_opt_vec::<i64>(n) };
        let input = |i: usize| -> Result<&Val> {
            ins.get(i)
                .and_then(|v| v.as_ref())
                .ok_or_else(|| anyhow!("missing input {i}"))
        };
        let konst = |i: usize| -> Option<&HostTensor> {
            match ins.get(i) {
                Some(Some(Val::Const(c))) => Some(c),
                _ => None,
            }
        };
        let out0 = Self::out_name(node, 0);
        let unary = |u: Unary| -> Option<Unary> { Some(u) };
        let un = match op {
            "Relu" => unary(Unary::Relu),
            "Sigmoid" => unary(Unary::Sigmoid),
            "HardSigmoid" => unary(Unary::HardSigmoid {
                alpha: af("alpha", 0.2)?,
                beta: af("beta", 0.5)?,
            }),
            "HardSwish" => unary(Unary::HardSwish),
            "LeakyRelu" => unary(Unary::LeakyRelu {
                alpha: af("alpha", 0.01)?,
            }),
            "Erf" => unary(Unary::Erf),
            "Sqrt" => unary(Unary::Sqrt),
            "Exp" => unary(Unary::Exp),
            "Log" => unary(Unary::Log),
            "Tanh" => unary(Unary::Tanh),
            "Abs" => unary(Unary::Abs),
            "Neg" => unary(Unary::Neg),
            "Reciprocal" => unary(Unary::Reciprocal),
            "Floor" => unary(Unary::Floor),
            "Ceil" => unary(Unary::Ceil),
            "Clip" => {
                let (mut lo, mut hi) = (f32::NEG_INFINITY, f32::INFINITY);
                if self.opset < 11 {
                    lo = af("min", lo)?;
                    hi = af("max", hi)?;
                } else {
                    for (i, v) in [(1, &mut lo), (2, &mut hi)] {
                        match ins.get(i) {
                            Some(Some(Val::Const(c))) => {
                                *v = c.floats().first().copied().unwrap_or(*v)
                            }
                            Some(Some(Val::T(_))) => return self.clip_dynamic(name, &out0, ins),
                            Some(Some(Val::Poison)) => {
                                return Ok(Unsupported("Clip(non-constant bounds)".into()))
                            }
                            _ => {}
                        }
                    }
                }
                unary(Unary::Clip { min: lo, max: hi })
            }
            _ => None,
        };
        if let Some(u) = un {
            let x = self.t(input(0)?, name);
            return Ok(Done(vec![self.emit1(
                node,
                name,
                Op::Unary(u),
                vec![x],
                None,
            )?]));
        }
        let bin = match op {
            "Add" | "Sum" => Some(BinOp::Add),
            "Sub" => Some(BinOp::Sub),
            "Mul" => Some(BinOp::Mul),
            "Div" => Some(BinOp::Div),
            "Pow" => Some(BinOp::Pow),
            "Max" => Some(BinOp::Max),
            "Min" => Some(BinOp::Min),
            _ => None,
        };
        if let Some(b) = bin {
            let vals: Vec<&Val> = ins.iter().flatten().collect();
            if vals.is_empty() {
                bail!("no inputs");
            }
            let mut acc = self.t(vals[0], &format!("{name}/a"));
            if vals.len() == 1 {
                return Ok(Done(vec![self.emit1(
                    node,
                    name,
                    Op::Reshape,
                    vec![acc],
                    Some(self.g.shape(acc)),
                )?]));
            }
            for (k, v) in vals.iter().enumerate().skip(1) {
                let rhs = self.t(v, &format!("{name}/b{k}"));
                let last = k == vals.len() - 1;
                let oname = if last {
                    out0.clone()
                } else {
                    format!("{name}/{k}")
                };
                acc = self.g.emit(
                    name,
                    Op::Binary { op: b, act: None },
                    vec![acc, rhs],
                    &[oname],
                    None,
                )?[0];
            }
            return Ok(Done(vec![Val::T(acc)]));
        }
        Ok(Done(match op {
            "Identity" | "Dropout" => {
                if op == "Dropout"
                    && konst(2).is_some_and(|t| t.ints().first().copied().unwrap_or(0) != 0)
                {
                    return Ok(Unsupported("Dropout(training_mode)".into()));
                }
                if op == "Dropout" && matches!(ins.get(2), Some(Some(Val::T(_)))) {
                    return Ok(Unsupported("Dropout(non-constant training_mode)".into()));
                }
                if node.output.len() > 1
                    && node.output[1..].iter().any(|o| !o.is_empty())
                    && op == "Dropout"
                {
                    return Ok(Unsupported("Dropout(mask output)".into()));
                }
                vec![input(0)?.clone()]
            }
            "Cast" => {
                let to = ai("to", 1)?;
                if ![1, 10, 11, 16].contains(&to) {
                    return Ok(Unsupported(format!("Cast(to={to})")));
                }
                vec![input(0)?.clone()]
            }
            "Conv" => return self.conv(node, name, ins, false),
            "ConvTranspose" => return self.conv(node, name, ins, true),
            "Gemm" => {
                let (a, b) = (input(0)?.clone(), input(1)?.clone());
                let (ta, tb) = (ai("transA", 0)? != 0, ai("transB", 0)? != 0);
                let (alpha, beta) = (af("alpha", 1.0)?, af("beta", 1.0)?);
                let mut at = self.t(&a, &format!("{name}/A"));
                if ta {
                    at = self.transpose2d(name, at, "At")?;
                }
                let bt = match konst(1) {
                    Some(c) => {
                        let mut m = c.f32();
                        if m.ndim() != 2 {
                            bail!("B must be 2-D, has shape {:?}", m.shape());
                        }
                        if tb {
                            m = m.t().as_standard_layout().into_owned().into_dyn();
                        }
                        if alpha != 1.0 {
                            m.mapv_inplace(|v| v * alpha);
                        }
                        let s = m.shape().to_vec();
                        self.g
                            .add_const(&format!("{name}/B"), &s, m.iter().copied().collect())
                    }
                    None => {
                        let mut bt = self.t(&b, &format!("{name}/B"));
                        if tb {
                            bt = self.transpose2d(name, bt, "Bt")?;
                        }
                        if alpha != 1.0 {
                            bt = self.scale(name, bt, alpha, "aB")?;
                        }
                        bt
                    }
                };
                let n = self.g.shape(bt)[1];
                let mut inputs = vec![at, bt];
                let mut post_add = None;
                match ins.get(2).and_then(|v| v.as_ref()) {
                    None => {}
                    Some(Val::Const(c))
                        if c.shape().iter().product::<usize>() == n
                            && c.shape().last().copied().unwrap_or(1) == n =>
                    {
                        let v: Vec<f32> = c.floats().iter().map(|x| x * beta).collect();
                        inputs.push(self.g.add_const(&format!("{name}/bias"), &[n], v));
                    }
                    Some(Val::Const(c)) if c.shape().iter().product::<usize>() == 1 => {
                        let v = c.floats()[0] * beta;
                        inputs.push(self.g.add_const(&format!("{name}/bias"), &[n], vec![v; n]));
                    }
                    Some(v) => {
                        let mut ct = self.t(v, &format!("{name}/C"));
                        if beta != 1.0 {
                            ct = self.scale(name, ct, beta, "bC")?;
                        }
                        post_add = Some(ct);
                    }
                }
                match post_add {
                    None => vec![self.emit1(node, name, Op::MatMul { act: None }, inputs, None)?],
                    Some(ct) => {
                        let y = self.g.emit(
                            name,
                            Op::MatMul { act: None },
                            inputs,
                            &[format!("{name}/AB")],
                            None,
                        )?[0];
                        vec![self.emit1(
                            node,
                            name,
                            Op::Binary {
                                op: BinOp::Add,
                                act: None,
                            },
                            vec![y, ct],
                            None,
                        )?]
                    }
                }
            }
            "MatMul" => {
                let (a, b) = (input(0)?.clone(), input(1)?.clone());
                let (sa, sb) = (self.shape(&a), self.shape(&b));
                let mut at = self.t(&a, &format!("{name}/A"));
                let mut bt = self.t(&b, &format!("{name}/B"));
                let (va, vb) = (sa.len() == 1, sb.len() == 1);
                if va {
                    at = self.reshape(name, at, vec![1, sa[0]], &format!("{name}/A2"))?;
                }
                if vb {
                    bt = self.reshape(name, bt, vec![sb[0], 1], &format!("{name}/B2"))?;
                }
                if va || vb {
                    let y = self.g.emit(
                        name,
                        Op::MatMul { act: None },
                        vec![at, bt],
                        &[format!("{name}/Y2")],
                        None,
                    )?[0];
                    let mut s = self.g.shape(y);
                    let r = s.len();
                    if vb {
                        s.remove(r - 1);
                    }
                    if va {
                        s.remove(s.len() - if vb { 1 } else { 2 });
                    }
                    vec![Val::T(self.reshape(name, y, s, &out0)?)]
                } else {
                    vec![self.emit1(node, name, Op::MatMul { act: None }, vec![at, bt], None)?]
                }
            }
            "BatchNormalization" => {
                if node.output.iter().skip(1).any(|o| !o.is_empty()) {
                    return Ok(Unsupported("BatchNormalization(training outputs)".into()));
                }
                let eps = af("epsilon", 1e-5)?;
                let (Some(sc), Some(b), Some(mean), Some(var)) =
                    (konst(1), konst(2), konst(3), konst(4))
                else {
                    return Ok(Unsupported(
                        "BatchNormalization(non-constant parameters)".into(),
                    ));
                };
                let (sc, b, mean, var) = (sc.floats(), b.floats(), mean.floats(), var.floats());
                let c = sc.len();
                // s = γ/√(σ²+ε), t = β − μ·s, in f64 so the folding adds no error of its own
                let s: Vec<f32> = (0..c)
                    .map(|i| (sc[i] as f64 / (var[i] as f64 + eps as f64).sqrt()) as f32)
                    .collect();
                let t: Vec<f32> = (0..c)
                    .map(|i| (b[i] as f64 - mean[i] as f64 * s[i] as f64) as f32)
                    .collect();
                let x = self.t(input(0)?, name);
                let si = self.g.add_const(&format!("{name}/scale"), &[c], s);
                let ti = self.g.add_const(&format!("{name}/shift"), &[c], t);
                vec![self.emit1(
                    node,
                    name,
                    Op::ChannelAffine { act: None },
                    vec![x, si, ti],
                    None,
                )?]
            }
            "GlobalAveragePool" | "GlobalMaxPool" => {
                let kind = if op == "GlobalMaxPool" {
                    PoolKind::Max
                } else {
                    PoolKind::Avg {
                        count_include_pad: false,
                    }
                };
                let x = self.t(input(0)?, name);
                vec![self.emit1(node, name, Op::GlobalPool(kind), vec![x], None)?]
            }
            "MaxPool" | "AveragePool" => {
                if node.output.len() > 1 && !node.output[1].is_empty() {
                    return Ok(Unsupported(format!("{op}(indices output)")));
                }
                let xs = self.shape(input(0)?);
                if xs.len() != 4 {
                    return Ok(Unsupported(format!(
                        "{op}({}-D)",
                        xs.len().saturating_sub(2)
                    )));
                }
                let k = avec("kernel_shape")?.ok_or_else(|| anyhow!("no kernel_shape"))?;
                let s = avec("strides")?.unwrap_or(vec![1, 1]);
                let d = avec("dilations")?.unwrap_or(vec![1, 1]);
                let kind = if op == "MaxPool" {
                    PoolKind::Max
                } else {
                    PoolKind::Avg {
                        count_include_pad: ai("count_include_pad", 0)? != 0,
                    }
                };
                if matches!(kind, PoolKind::Avg { .. }) && d.iter().any(|&v| v != 1) {
                    return Ok(Unsupported("AveragePool(dilations)".into()));
                }
                check_window(&k, &s, &d)?;
                let pads = resolve_pads(
                    &astr("auto_pad", "NOTSET")?,
                    avec("pads")?,
                    &xs[2..],
                    &k,
                    &s,
                    &d,
                )?;
                let ceil = ai("ceil_mode", 0)? != 0;
                let mut p = [
                    pads[0] as u32,
                    pads[1] as u32,
                    pads[2] as u32,
                    pads[3] as u32,
                ];
                let mut extra = [0u32; 2];
                if ceil {
                    for a in 0..2 {
                        let eff = d[a] * (k[a] - 1) + 1;
                        let span = xs[2 + a] as i64 + pads[a] + pads[a + 2] - eff;
                        let mut out = (span + s[a] - 1).div_euclid(s[a]) + 1;
                        // the last window must start inside the input or its left padding
                        if (out - 1) * s[a] >= xs[2 + a] as i64 + pads[a] {
                            out -= 1;
                        }
                        let need =
                            (out - 1) * s[a] + eff - (xs[2 + a] as i64 + pads[a] + pads[a + 2]);
                        if need > 0 {
                            extra[a] = need as u32;
                            p[a + 2] += need as u32;
                        }
                    }
                }
                let pool = Pool2d {
                    kind,
                    kernel: [k[0] as u32, k[1] as u32],
                    strides: [s[0] as u32, s[1] as u32],
                    dilations: [d[0] as u32, d[1] as u32],
                    pads: p,
                    ceil_extra: extra,
                };
                let x = self.t(input(0)?, name);
                vec![self.emit1(node, name, Op::Pool(pool), vec![x], None)?]
            }
            "Resize" | "Upsample" => return self.resize(node, name, ins),
            "Concat" => {
                let vals: Vec<Val> = ins.iter().flatten().cloned().collect();
                let r = self.shape(&vals[0]).len();
                let a = axis(ai("axis", 0)?, r)?;
                let mut ts = Vec::new();
                for (k, v) in vals.iter().enumerate() {
                    if self.shape(v)[a] > 0 {
                        ts.push(self.t(v, &format!("{name}/in{k}")));
                    }
                }
                vec![self.emit1(node, name, Op::Concat { axis: a as u32 }, ts, None)?]
            }
            "LSTM" | "GRU" | "RNN" => return self.recurrent(node, name, ins),
            "Split" => {
                let xs = self.shape(input(0)?);
                let a = axis(ai("axis", 0)?, xs.len())?;
                let n_out = node.output.len();
                let sizes: Vec<usize> = match (avec("split")?, konst(1)) {
                    (Some(s), _) => s.iter().map(|&v| v as usize).collect(),
                    (None, Some(c)) => c.ints().iter().map(|&v| v as usize).collect(),
                    (None, None) => {
                        if matches!(ins.get(1), Some(Some(_))) {
                            return Ok(Unsupported("Split(non-constant split)".into()));
                        }
                        let n = node
                            .get_attr_opt::<i64>("num_outputs")?
                            .map_or(n_out, |v| v as usize);
                        let chunk = xs[a].div_ceil(n.max(1));
                        (0..n)
                            .map(|i| chunk.min(xs[a].saturating_sub(i * chunk)))
                            .collect()
                    }
                };
                let declared: Vec<Vec<usize>> = sizes
                    .iter()
                    .map(|&s| {
                        let mut d = xs.clone();
                        d[a] = s;
                        d
                    })
                    .collect();
                let x = self.t(input(0)?, name);
                let names: Vec<String> = (0..sizes.len())
                    .map(|k| {
                        let o = Self::out_name(node, k);
                        if o.is_empty() {
                            format!("{name}/out{k}")
                        } else {
                            o
                        }
                    })
                    .collect();
                let ids = self.g.emit(
                    name,
                    Op::Split { axis: a as u32 },
                    vec![x],
                    &names,
                    Some(declared),
                )?;
                ids.into_iter().map(Val::T).collect()
            }
            "Gather" => {
                // constant indices into a runtime tensor (`state[0]`, a channel pick; the all-constant
                // case is folded before this): each run of consecutive indices is a Slice, several runs
                // are concatenated along the axis, and a Reshape gives Gather's shape where the indices
                // are not one list (a scalar drops the axis)
                let Some(ix) = konst(1) else {
                    return Ok(Unsupported("Gather(non-constant indices)".into()));
                };
                let xs = self.shape(input(0)?);
                let a = value::axis(ai("axis", 0)?, xs.len())?;
                let d = xs[a] as i64;
                let idx: Vec<i64> = ix
                    .ints()
                    .iter()
                    .map(|&i| if i < 0 { i + d } else { i })
                    .collect();
                if let Some(&bad) = idx.iter().find(|&&i| i < 0 || i >= d) {
                    bail!("index {bad} out of range for axis {a} of input shape {xs:?}");
                }
                if idx.is_empty() {
                    return Ok(Unsupported("Gather(no indices)".into()));
                }
                let x = self.t(input(0)?, name);
                let mut runs: Vec<(i64, usize)> = Vec::new();
                for &i in &idx {
                    match runs.last_mut() {
                        Some((start, len)) if *start + *len as i64 == i => *len += 1,
                        _ => runs.push((i, 1)),
                    }
                }
                let mut out = xs[..a].to_vec();
                out.extend(ix.shape());
                out.extend(&xs[a + 1..]);
                let mut gathered = xs.clone();
                gathered[a] = idx.len();
                let last = out == gathered;
                let mut parts = Vec::new();
                for (k, &(start, len)) in runs.iter().enumerate() {
                    let mut starts = vec![0i64; xs.len()];
                    starts[a] = start;
                    let mut shape = xs.clone();
                    shape[a] = len;
                    let op = Op::Slice {
                        starts,
                        steps: vec![1; xs.len()],
                    };
                    if last && runs.len() == 1 {
                        return Ok(Done(vec![self.emit1(
                            node,
                            name,
                            op,
                            vec![x],
                            Some(shape),
                        )?]));
                    }
                    let o = [format!("{name}/run{k}")];
                    parts.extend(self.g.emit(name, op, vec![x], &o, Some(vec![shape]))?);
                }
                let cat = Op::Concat { axis: a as u32 };
                if last {
                    vec![self.emit1(node, name, cat, parts, Some(gathered))?]
                } else {
                    if parts.len() > 1 {
                        let o = [format!("{name}/concat")];
                        parts = self.g.emit(name, cat, parts, &o, Some(vec![gathered]))?;
                    }
                    vec![self.emit1(node, name, Op::Reshape, parts, Some(out))?]
                }
            }
            "Slice" => {
                let xs = self.shape(input(0)?);
                let (st, en, axes, steps) = if self.opset < 10 {
                    (
                        avec("starts")?.unwrap_or_default(),
                        avec("ends")?.unwrap_or_default(),
                        avec("axes")?,
                        None,
                    )
                } else {
                    let need = |i: usize| -> Option<Option<Vec<i64>>> {
                        match ins.get(i) {
                            Some(Some(Val::Const(c))) => Some(Some(c.ints())),
                            Some(Some(_)) => None,
                            _ => Some(None),
                        }
                    };
                    let (Some(Some(st)), Some(Some(en)), Some(ax), Some(sp)) =
                        (need(1), need(2), need(3), need(4))
                    else {
                        return Ok(Unsupported(
                            "Slice(non-constant starts/ends/axes/steps)".into(),
                        ));
                    };
                    (st, en, ax, sp)
                };
                let spec = value::slice_spec(&xs, &st, &en, axes.as_deref(), steps.as_deref())?;
                let x = self.t(input(0)?, name);
                let starts = spec.starts.clone();
                vec![self.emit1(
                    node,
                    name,
                    Op::Slice {
                        starts,
                        steps: spec.steps,
                    },
                    vec![x],
                    Some(spec.shape),
                )?]
            }
            "Pad" => {
                let xs = self.shape(input(0)?);
                let r = xs.len();
                let mode = astr("mode", "constant")?;
                let (pads, value) = if self.opset < 11 {
                    (avec("pads")?.unwrap_or_default(), af("value", 0.0)?)
                } else {
                    let Some(p) = konst(1) else {
                        return Ok(Unsupported("Pad(non-constant pads)".into()));
                    };
                    let v = match ins.get(2) {
                        Some(Some(Val::Const(c))) => c.floats().first().copied().unwrap_or(0.0),
                        Some(Some(_)) => return Ok(Unsupported("Pad(non-constant value)".into())),
                        _ => 0.0,
                    };
                    let mut pads = p.ints();
                    if let Some(ax) = konst(3) {
                        let ax: Vec<usize> = ax
                            .ints()
                            .iter()
                            .map(|&a| axis(a, r))
                            .collect::<Result<_>>()?;
                        if pads.len() != 2 * ax.len() {
                            bail!("pads {pads:?} do not match axes {ax:?}");
                        }
                        let mut full = vec![0i64; 2 * r];
                        for (i, &a) in ax.iter().enumerate() {
                            full[a] = pads[i];
                            full[a + r] = pads[i + ax.len()];
                        }
                        pads = full;
                    }
                    (pads, v)
                };
                let mode = match mode.as_str() {
                    "constant" => PadMode::Constant(value),
                    "reflect" => PadMode::Reflect,
                    "edge" => PadMode::Edge,
                    m => return Ok(Unsupported(format!("Pad(mode={m})"))),
                };
                let x = self.t(input(0)?, name);
                vec![self.emit1(node, name, Op::Pad { pads, mode }, vec![x], None)?]
            }
            "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => {
                let xs = self.shape(input(0)?);
                let target = match op {
                    "Reshape" => {
                        let Some(s) = konst(1) else {
                            return Ok(Unsupported("Reshape(non-constant shape)".into()));
                        };
                        value::reshape_target(&xs, &s.ints(), ai("allowzero", 0)? != 0)?
                    }
                    "Flatten" => {
                        let a = value::flatten_axis(ai("axis", 1)?, xs.len())?;
                        vec![xs[..a].iter().product(), xs[a..].iter().product()]
                    }
                    _ => {
                        let Some(axes) = attr_or_const_ints(node, ins, "axes", 1)? else {
                            return Ok(Unsupported(format!("{op}(non-constant axes)")));
                        };
                        if op == "Squeeze" {
                            value::squeeze_shape(&xs, axes.as_deref())?
                        } else {
                            value::unsqueeze_shape(&xs, &axes.ok_or_else(|| anyhow!("no axes"))?)?
                        }
                    }
                };
                let x = self.t(input(0)?, name);
                vec![self.emit1(node, name, Op::Reshape, vec![x], Some(target))?]
            }
            "Transpose" => {
                let r = self.shape(input(0)?).len();
                let perm: Vec<u32> = match avec("perm")? {
                    Some(p) => p
                        .iter()
                        .map(|&a| axis(a, r).map(|v| v as u32))
                        .collect::<Result<_>>()?,
                    None => (0..r as u32).rev().collect(),
                };
                let x = self.t(input(0)?, name);
                vec![self.emit1(node, name, Op::Transpose { perm }, vec![x], None)?]
            }
            "Softmax" => {
                let xs = self.shape(input(0)?);
                let r = xs.len();
                let a = axis(ai("axis", if self.opset >= 13 { -1 } else { 1 })?, r)?;
                let x = self.t(input(0)?, name);
                if self.opset >= 13 || a == r - 1 {
                    vec![self.emit1(node, name, Op::Softmax { axis: a as u32 }, vec![x], None)?]
                } else {
                    // opset < 13 normalizes over all axes from `axis` on: flatten them, softmax, restore
                    let flat = vec![xs[..a].iter().product(), xs[a..].iter().product()];
                    let f = self.reshape(name, x, flat, &format!("{name}/flat"))?;
                    let s = self.g.emit(
                        name,
                        Op::Softmax { axis: 1 },
                        vec![f],
                        &[format!("{name}/sm")],
                        None,
                    )?[0];
                    vec![Val::T(self.reshape(name, s, xs, &out0)?)]
                }
            }
            "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" => {
                let rop = match op {
                    "ReduceMean" => ReduceOp::Mean,
                    "ReduceSum" => ReduceOp::Sum,
                    "ReduceMax" => ReduceOp::Max,
                    _ => ReduceOp::Min,
                };
                let xs = self.shape(input(0)?);
                let Some(axes) = attr_or_const_ints(node, ins, "axes", 1)? else {
                    return Ok(Unsupported(format!("{op}(non-constant axes)")));
                };
                let keep = ai("keepdims", 1)? != 0;
                let axes: Vec<u32> = match axes {
                    Some(a) if !a.is_empty() => {
                        let mut v: Vec<u32> = a
                            .iter()
                            .map(|&x| axis(x, xs.len()).map(|v| v as u32))
                            .collect::<Result<_>>()?;
                        v.sort_unstable();
                        v.dedup();
                        v
                    }
                    _ if ai("noop_with_empty_axes", 0)? != 0 => {
                        return Ok(Done(vec![input(0)?.clone()]));
                    }
                    _ => (0..xs.len() as u32).collect(),
                };
                let x = self.t(input(0)?, name);
                vec![self.emit1(
                    node,
                    name,
                    Op::Reduce {
                        op: rop,
                        axes,
                        keepdims: keep,
                    },
                    vec![x],
                    None,
                )?]
            }
            "Expand" => {
                let Some(s) = konst(1) else {
                    return Ok(Unsupported("Expand(non-constant shape)".into()));
                };
                let target: Vec<usize> = s.ints().iter().map(|&d| d.max(0) as usize).collect();
                let xs = self.shape(input(0)?);
                let out = value::broadcast(&xs, &target)?;
                value::check_numel(&out)?;
                let x = self.t(input(0)?, name);
                let zeros = self.g.add_const(
                    &format!("{name}/zeros"),
                    &out,
                    vec![0.0; out.iter().product()],
                );
                vec![self.emit1(
                    node,
                    name,
                    Op::Binary {
                        op: BinOp::Add,
                        act: None,
                    },
                    vec![x, zeros],
                    None,
                )?]
            }
            other => return Ok(Unsupported(other.to_string())),
        }))
    }

    fn conv(
        &mut self,
        node: &NodeProto,
        name: &str,
        ins: &[Option<Val>],
        transposed: bool,
    ) -> Result<Lowered> {
        let op = if transposed { "ConvTranspose" } else { "Conv" };
        let x = ins
            .first()
            .and_then(|v| v.clone())
            .ok_or_else(|| anyhow!("missing input"))?;
        let Some(Some(Val::Const(w))) = ins.get(1) else {
            return Ok(Lowered::Unsupported(format!("{op}(non-constant weights)")));
        };
        let bias = match ins.get(2) {
            Some(Some(Val::Const(b))) => Some(b.floats()),
            Some(Some(_)) => return Ok(Lowered::Unsupported(format!("{op}(non-constant bias)"))),
            _ => None,
        };
        let mut xs = self.shape(&x);
        let mut ws = w.shape().to_vec();
        let one_d = xs.len() == 3;
        if !(xs.len() == 4 || one_d) {
            return Ok(Lowered::Unsupported(format!(
                "{op}({}-D)",
                xs.len().saturating_sub(2)
            )));
        }
        let getv = |n: &str| -> Result<Option<Vec<i64>>> { node.get_attr_opt_vec::<i64>(n) };
        let lift = |v: Option<Vec<i64>>, fill: i64| -> Option<Vec<i64>> {
            v.map(|v| {
                if one_d {
                    let mut o = vec![fill];
                    o.extend(v);
                    o
                } else {
                    v
                }
            })
        };
        let mut k = lift(getv("kernel_shape")?, 1)
            .unwrap_or_else(|| ws[2..].iter().map(|&d| d as i64).collect());
        let s = lift(getv("strides")?, 1).unwrap_or(vec![1, 1]);
        let d = lift(getv("dilations")?, 1).unwrap_or(vec![1, 1]);
        let pads_attr = getv("pads")?.map(|p| if one_d { vec![0, p[0], 0, p[1]] } else { p });
        let group = node.get_attr_opt::<i64>("group")?.unwrap_or(1);
        let auto_pad = node
            .get_attr_opt::<&str>("auto_pad")?
            .unwrap_or("NOTSET")
            .to_string();
        let mut xt = self.t(&x, name);
        if one_d {
            xs.insert(2, 1);
            ws.insert(2, 1);
            xt = self.reshape(name, xt, xs.clone(), &format!("{name}/x2d"))?;
            if k.len() == 1 {
                k.insert(0, 1);
            }
        }
        let wt = self.g.add_const(&format!("{name}/W"), &ws, w.floats());
        let mut inputs = vec![xt, wt];
        if let Some(b) = bias {
            let n = b.len();
            inputs.push(self.g.add_const(&format!("{name}/B"), &[n], b));
        }
        let mut output_padding = [0u32; 2];
        check_window(&k, &s, &d)?;
        let pads: Vec<i64> = if transposed {
            let op_attr = lift(getv("output_padding")?, 0).unwrap_or(vec![0, 0]);
            let out_shape = lift(getv("output_shape")?, 1);
            let mut pads = pads_attr.clone().unwrap_or(vec![0; 4]);
            let mut outp = [op_attr[0], op_attr[1]];
            if out_shape.is_some() || auto_pad.starts_with("SAME") {
                for a in 0..2 {
                    let full = s[a] * (xs[2 + a] as i64 - 1) + op_attr[a] + (k[a] - 1) * d[a] + 1;
                    let target = match &out_shape {
                        Some(o) => o[o.len() - 2 + a],
                        None => xs[2 + a] as i64 * s[a],
                    };
                    let total = full - target;
                    if total < 0 {
                        // a larger requested output is reached with output_padding
                        outp[a] += -total;
                        pads[a] = 0;
                        pads[a + 2] = 0;
                    } else if auto_pad == "SAME_UPPER" {
                        pads[a] = total / 2;
                        pads[a + 2] = total - total / 2;
                    } else {
                        pads[a] = total - total / 2;
                        pads[a + 2] = total / 2;
                    }
                }
            }
            output_padding = [outp[0] as u32, outp[1] as u32];
            pads
        } else {
            resolve_pads(&auto_pad, pads_attr, &xs[2..], &k, &s, &d)?
        };
        if pads.iter().chain(&k).chain(&s).chain(&d).any(|&v| v < 0) || group < 1 {
            bail!("negative pads/kernel/strides/dilations or group < 1");
        }
        let geom = Conv2d {
            kernel: [k[0] as u32, k[1] as u32],
            strides: [s[0] as u32, s[1] as u32],
            dilations: [d[0] as u32, d[1] as u32],
            pads: [
                pads[0] as u32,
                pads[1] as u32,
                pads[2] as u32,
                pads[3] as u32,
            ],
            groups: group as u32,
            output_padding,
        };
        let op = if transposed {
            Op::ConvTranspose { geom, act: None }
        } else {
            Op::Conv { geom, act: None }
        };
        let out0 = Self::out_name(node, 0);
        if one_d {
            let y = self
                .g
                .emit(name, op, inputs, &[format!("{name}/y2d")], None)?[0];
            let mut ys = self.g.shape(y);
            ys.remove(2);
            Ok(Lowered::Done(vec![Val::T(
                self.reshape(name, y, ys, &out0)?,
            )]))
        } else {
            Ok(Lowered::Done(vec![Val::T(
                self.g.emit(name, op, inputs, &[out0], None)?[0],
            )]))
        }
    }

    fn resize(&mut self, node: &NodeProto, name: &str, ins: &[Option<Val>]) -> Result<Lowered> {
        let x = ins
            .first()
            .and_then(|v| v.clone())
            .ok_or_else(|| anyhow!("missing input"))?;
        let xs = self.shape(&x);
        let r = xs.len();
        let attr = |n: &str, d: &str| -> Result<String> {
            Ok(node.get_attr_opt::<&str>(n)?.unwrap_or(d).to_string())
        };
        let mode = attr("mode", "nearest")?;
        if node.get_attr_opt::<i64>("antialias")?.unwrap_or(0) != 0 {
            return Ok(Lowered::Unsupported("Resize(antialias)".into()));
        }
        if attr("keep_aspect_ratio_policy", "stretch")? != "stretch" {
            return Ok(Lowered::Unsupported(
                "Resize(keep_aspect_ratio_policy)".into(),
            ));
        }
        let (scales_in, sizes_in) = if node.op_type == "Upsample" || self.opset < 11 {
            (ins.get(1).cloned().flatten(), None)
        } else {
            (ins.get(2).cloned().flatten(), ins.get(3).cloned().flatten())
        };
        let as_const = |v: Option<Val>| -> Result<Option<HostTensor>, ()> {
            match v {
                Some(Val::Const(c)) if c.shape().iter().product::<usize>() > 0 => Ok(Some(c)),
                Some(Val::Const(_)) | None => Ok(None),
                Some(_) => Err(()),
            }
        };
        let (Ok(scales_c), Ok(sizes_c)) = (as_const(scales_in), as_const(sizes_in)) else {
            return Ok(Lowered::Unsupported(
                "Resize(non-constant scales/sizes)".into(),
            ));
        };
        let axes: Vec<usize> = match node.get_attr_opt_vec::<i64>("axes")? {
            Some(a) => a.iter().map(|&v| axis(v, r)).collect::<Result<_>>()?,
            None => (0..r).collect(),
        };
        let mut scales = vec![1f32; r];
        let mut out = xs.clone();
        for (what, t) in [("sizes", &sizes_c), ("scales", &scales_c)] {
            if let Some(t) = t {
                if t.shape().iter().product::<usize>() != axes.len() {
                    bail!(
                        "{what} has {} values for {} axes",
                        t.shape().iter().product::<usize>(),
                        axes.len()
                    );
                }
            }
        }
        if xs.contains(&0) {
            bail!("cannot resize an empty tensor {xs:?}");
        }
        if let Some(sz) = sizes_c {
            for (i, &a) in axes.iter().enumerate() {
                out[a] = sz.ints()[i] as usize;
                scales[a] = out[a] as f32 / xs[a] as f32;
            }
        } else if let Some(sc) = scales_c {
            for (i, &a) in axes.iter().enumerate() {
                scales[a] = sc.floats()[i];
                out[a] = (xs[a] as f32 * scales[a]).floor() as usize;
            }
        } else {
            bail!("neither scales nor sizes given");
        }
        let coord = match attr(
            "coordinate_transformation_mode",
            if node.op_type == "Upsample" || self.opset < 11 {
                "asymmetric"
            } else {
                "half_pixel"
            },
        )?
        .as_str()
        {
            "half_pixel" => CoordMode::HalfPixel,
            "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
            "asymmetric" => CoordMode::Asymmetric,
            "align_corners" => CoordMode::AlignCorners,
            "tf_half_pixel_for_nearest" => CoordMode::TfHalfPixelForNearest,
            m => {
                return Ok(Lowered::Unsupported(format!(
                    "Resize(coordinate_transformation_mode={m})"
                )))
            }
        };
        let rmode = match mode.as_str() {
            "nearest" => ResizeMode::Nearest(
                match attr(
                    "nearest_mode",
                    if self.opset < 11 {
                        "floor"
                    } else {
                        "round_prefer_floor"
                    },
                )?
                .as_str()
                {
                    "round_prefer_floor" => NearestMode::RoundPreferFloor,
                    "round_prefer_ceil" => NearestMode::RoundPreferCeil,
                    "floor" => NearestMode::Floor,
                    "ceil" => NearestMode::Ceil,
                    m => return Ok(Lowered::Unsupported(format!("Resize(nearest_mode={m})"))),
                },
            ),
            "linear" | "bilinear" => {
                if (0..r.saturating_sub(2)).any(|a| out[a] != xs[a]) {
                    return Ok(Lowered::Unsupported(
                        "Resize(linear beyond the last two axes)".into(),
                    ));
                }
                ResizeMode::Linear
            }
            m => return Ok(Lowered::Unsupported(format!("Resize(mode={m})"))),
        };
        let xt = self.t(&x, name);
        Ok(Lowered::Done(vec![self.emit1(
            node,
            name,
            Op::Resize {
                mode: rmode,
                coord,
                scales,
            },
            vec![xt],
            Some(out),
        )?]))
    }
}

/// An int list given as attribute `attr` (older opsets) or as constant input `idx` (newer ones):
/// `Some(None)` when absent, `None` when the input is computed at run time.
fn attr_or_const_ints(
    node: &NodeProto,
    ins: &[Option<Val>],
    attr: &str,
    idx: usize,
) -> Result<Option<Option<Vec<i64>>>> {
    if let Some(a) = node.get_attr_opt_vec::<i64>(attr)? {
        return Ok(Some(Some(a)));
    }
    Ok(match ins.get(idx) {
        Some(Some(Val::Const(c))) => Some(Some(c.ints())),
        Some(Some(_)) => None,
        _ => Some(None),
    })
}

enum Lowered {
    Done(Vec<Val>),
    Unsupported(String),
}

/// Explicit pads (top, left, bottom, right) from ONNX `auto_pad` / `pads` for a 2-D window.
/// Checks 2-D window attributes: two positive values each for kernel, strides and dilations.
fn check_window(k: &[i64], s: &[i64], d: &[i64]) -> Result<()> {
    for (name, v) in [("kernel_shape", k), ("strides", s), ("dilations", d)] {
        if v.len() != 2 || v.iter().any(|&x| x <= 0 || x > 1 << 20) {
            bail!("{name} {v:?}: expected two positive values (2-D)");
        }
    }
    Ok(())
}

fn resolve_pads(
    auto_pad: &str,
    pads: Option<Vec<i64>>,
    input: &[usize],
    k: &[i64],
    s: &[i64],
    d: &[i64],
) -> Result<Vec<i64>> {
    Ok(match auto_pad {
        "NOTSET" => {
            let p = pads.unwrap_or(vec![0; 4]);
            if p.len() != 4 {
                bail!("pads {p:?}: expected 4 values");
            }
            p
        }
        "VALID" => vec![0; 4],
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut p = vec![0; 4];
            for a in 0..2 {
                let n = input[a] as i64;
                let out = (n + s[a] - 1) / s[a];
                let total = ((out - 1) * s[a] + (k[a] - 1) * d[a] + 1 - n).max(0);
                let (lo, hi) = if auto_pad == "SAME_UPPER" {
                    (total / 2, total - total / 2)
                } else {
                    (total - total / 2, total / 2)
                };
                p[a] = lo;
                p[a + 2] = hi;
            }
            p
        }
        other => bail!("unknown auto_pad \"{other}\""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unsupported op is named with its node; in a model that tern's own export wrote (its producer
    /// "tern"), the error also says which of the export's forms re-import, and only there.
    #[test]
    fn unsupported_ops_in_terns_own_export_say_which_forms_reimport() {
        let base: &[u8] = include_bytes!("../../tests/data/unsupported.onnx");
        let shape: InputShape = "x=1x8".parse().unwrap();
        let plain = import_bytes(base, std::slice::from_ref(&shape)).unwrap_err();
        let plain = format!("{plain:#}");
        assert!(plain.contains("ops tern does not support"), "{plain}");
        assert!(!plain.contains("tern export"), "{plain}");
        // ModelProto field 2 (producer_name), appended: protobuf's last occurrence wins
        let mut b = base.to_vec();
        b.extend_from_slice(&[0x12, 4]);
        b.extend_from_slice(b"tern");
        let ours = format!(
            "{:#}",
            import_bytes(&b, std::slice::from_ref(&shape)).unwrap_err()
        );
        assert!(ours.contains("ops tern does not support"), "{ours}");
        assert!(
            ours.contains("tern export --onnx-qdq") && ours.contains("--binary-ops qdq"),
            "{ours}"
        );
    }

    /// `Clip` with a bound computed from the input (a log-mel floor `max(x) − 2`, as openWakeWord's
    /// melspectrogram model has it) as its lower or upper bound, the other constant or absent: the
    /// values equal `min(max(x, lo), hi)` computed in float64; a bound of more than one value is refused.
    #[test]
    fn clip_with_a_bound_computed_at_run_time() {
        let vi = |name: &str, dims: &[i64]| {
            use pb::tensor_shape_proto::{dimension::Value as D, Dimension};
            let dim = |d: i64| Dimension {
                value: Some(D::DimValue(d)),
                ..Default::default()
            };
            pb::ValueInfoProto {
                name: name.into(),
                r#type: Some(pb::TypeProto {
                    value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                        elem_type: 1,
                        shape: Some(pb::TensorShapeProto {
                            dim: dims.iter().map(|&d| dim(d)).collect(),
                        }),
                    })),
                    ..Default::default()
                }),
                ..Default::default()
            }
        };
        let scalar = |name: &str, v: f32| pb::TensorProto {
            name: name.into(),
            data_type: 1,
            float_data: vec![v],
            ..Default::default()
        };
        let node = |op: &str, ins: &[&str], out: &str, attrs: Vec<pb::AttributeProto>| NodeProto {
            name: out.into(),
            op_type: op.into(),
            input: ins.iter().map(|s| s.to_string()).collect(),
            output: vec![out.into()],
            attribute: attrs,
            ..Default::default()
        };
        let keepdims = pb::AttributeProto {
            name: "keepdims".into(),
            i: 0,
            r#type: 2,
            ..Default::default()
        };
        let model = |clip_ins: &[&str]| pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            graph: Some(pb::GraphProto {
                node: vec![
                    node("ReduceMax", &["x"], "m", vec![keepdims.clone()]),
                    node("Sub", &["m", "two"], "top", vec![]),
                    node("Clip", clip_ins, "y", vec![]),
                ],
                initializer: vec![scalar("two", 2.0), scalar("hi", 1.5), scalar("lo", -1.0)],
                input: vec![vi("x", &[1, 7])],
                output: vec![vi("y", &[1, 7])],
                ..Default::default()
            }),
            ..Default::default()
        };
        let x = [-3.0f32, 0.25, 1.0, -0.5, 2.5, 0.75, -1.25];
        let top = x.iter().fold(f64::MIN, |a, &v| a.max(v as f64)) - 2.0;
        // (Clip's inputs, its lower and upper bound in float64)
        let cases: [(&[&str], f64, f64); 4] = [
            (&["x", "top", "hi"], top, 1.5),
            (&["x", "", "hi"], f64::MIN, 1.5),
            (&["x", "", "top"], f64::MIN, top),
            (&["x", "lo", "top"], -1.0, top),
        ];
        for (ins, lo, hi) in cases {
            let g = import_proto(&model(ins), None, &[]).unwrap();
            let got = crate::quant::outputs(&g, &[vec![x.to_vec()]]).unwrap();
            let want: Vec<f32> = x
                .iter()
                .map(|&v| (v as f64).max(lo).min(hi) as f32)
                .collect();
            assert_eq!(got[0][0], want, "Clip{ins:?}");
        }
        // a bound of more than one value is not a Clip bound (it would widen the output): named
        let e = import_proto(&model(&["x", "", "x"]), None, &[]).unwrap_err();
        assert!(format!("{e:#}").contains("not one value"), "{e:#}");
    }

    /// `x [batch, 3, height, width]` → 3×3 Conv (no padding) → `y`, with `meta` as metadata_props.
    fn symbolic_conv(meta: &[(&str, &str)]) -> pb::ModelProto {
        use pb::tensor_shape_proto::{dimension::Value as D, Dimension};
        let dim = |v: D| Dimension {
            value: Some(v),
            ..Default::default()
        };
        let shape = pb::TensorShapeProto {
            dim: vec![
                dim(D::DimParam("batch".into())),
                dim(D::DimValue(3)),
                dim(D::DimParam("height".into())),
                dim(D::DimParam("width".into())),
            ],
        };
        let ty = pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: 1,
                shape: Some(shape),
            })),
            ..Default::default()
        };
        let vi = |name: &str, ty: Option<pb::TypeProto>| pb::ValueInfoProto {
            name: name.into(),
            r#type: ty,
            ..Default::default()
        };
        let w = pb::TensorProto {
            name: "w".into(),
            dims: vec![2, 3, 3, 3],
            data_type: 1,
            float_data: vec![0.5; 54],
            ..Default::default()
        };
        let conv = NodeProto {
            name: "conv".into(),
            op_type: "Conv".into(),
            input: vec!["x".into(), "w".into()],
            output: vec!["y".into()],
            ..Default::default()
        };
        pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            metadata_props: meta
                .iter()
                .map(|&(k, v)| pb::StringStringEntryProto {
                    key: k.into(),
                    value: v.into(),
                })
                .collect(),
            graph: Some(pb::GraphProto {
                node: vec![conv],
                initializer: vec![w],
                input: vec![vi("x", Some(ty))],
                output: vec![vi("y", None)],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// An image input of symbolic height and width takes the size an Ultralytics export records
    /// (`imgsz`); without it its dims are taken as 1, and a node that then fails says so and names the
    /// flag that sets the shape; `--input-shape` wins over the metadata.
    #[test]
    fn symbolic_image_dims_come_from_imgsz_or_are_named_in_the_error() {
        let shape_of = |g: &ToolGraph| g.shape(g.graph.inputs[0]).to_vec();
        for (imgsz, want) in [("[32, 48]", [1, 3, 32, 48]), ("20", [1, 3, 20, 20])] {
            let g = import_proto(&symbolic_conv(&[("imgsz", imgsz)]), None, &[]).unwrap();
            assert_eq!(shape_of(&g), want, "imgsz {imgsz}");
            assert_eq!(
                g.shape(g.graph.outputs[0]),
                [1, 2, want[2] - 2, want[3] - 2]
            );
        }
        let given: InputShape = "x=2x3x8x9".parse().unwrap();
        let g = import_proto(&symbolic_conv(&[("imgsz", "[32, 48]")]), None, &[given]).unwrap();
        assert_eq!(shape_of(&g), [2, 3, 8, 9]);
        let big: &[_] = &[("imgsz", "100000")];
        for meta in [
            &[][..],
            &[("imgsz", "[32, 48, 3]")],
            &[("imgsz", "big")],
            big,
        ] {
            let e = import_proto(&symbolic_conv(meta), None, &[]).unwrap_err();
            let e = format!("{e:#}");
            assert!(
                e.contains(
                    "input \"x\" has symbolic dims [batch, 3, height, width], taken as 1x3x1x1"
                ) && e.contains("--input-shape x=")
                    && e.contains("\"conv\""),
                "{meta:?}: {e}"
            );
        }
        // a size from the metadata that the graph cannot take is named as such
        let e = import_proto(&symbolic_conv(&[("imgsz", "2")]), None, &[]).unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("taken as 1x3x2x2 (from its \"imgsz\" metadata)") && e.contains("\"conv\""),
            "{e}"
        );
    }
}
