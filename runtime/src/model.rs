//! A loaded, fully validated model. It borrows its weights from the artifact bytes (no copy), so it works
//! from a `&'static [u8]` in flash or an mmap as well as from a `Vec<u8>`; only weights stored deflated
//! (format 4) are inflated into a buffer the model owns.
use crate::artifact;
use crate::error::Result;
use crate::ir::{shape, BinOp, DType, Graph, Op, Pool2d, PoolKind, ResizeMode, Tensor};
use crate::plan::{self, MemoryPlan};
use crate::{bail, err};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// A validated model. `Send + Sync`: share one between threads, one [`crate::Session`] per thread.
#[derive(Debug)]
pub struct Model<'a> {
    /// The graph (nodes in execution order).
    pub graph: Graph,
    /// The arena plan (checked).
    pub plan: MemoryPlan,
    /// Key/value metadata written by the tool.
    pub metadata: Vec<(String, String)>,
    /// Format version of the artifact.
    pub format_version: u32,
    pub(crate) weights: alloc::borrow::Cow<'a, [u8]>,
}

impl<'a> Model<'a> {
    /// Decodes and validates an artifact. Any inconsistency gives an error naming what is wrong; no bytes
    /// make this panic.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self> {
        let d = artifact::decode(bytes)?;
        let m = Model {
            graph: d.meta.graph,
            plan: d.meta.plan,
            metadata: d.meta.metadata,
            format_version: d.version,
            weights: d.weights,
        };
        validate(&m.graph, m.weights.len())?;
        plan::check(&m.graph, &m.plan)?;
        m.check_int_biases()?;
        Ok(m)
    }

    /// Integer biases inside ±[`QMAX_BIAS`](crate::cpu::qgemm::QMAX_BIAS): then no kernel path's i32
    /// arithmetic can saturate, so every path gives the same integers.
    fn check_int_biases(&self) -> Result<()> {
        use crate::cpu::qgemm::QMAX_BIAS;
        for n in &self.graph.nodes {
            if !matches!(
                n.op,
                Op::QConv { .. }
                    | Op::QMatMul { .. }
                    | Op::QConvTranspose { .. }
                    | Op::Q16Conv { .. }
                    | Op::Q16ConvAct { .. }
                    | Op::Q16MatMul { .. }
            ) {
                continue;
            }
            let Some(&b) = n.inputs.get(2) else { continue };
            let bytes = self.const_bytes(b as usize);
            if let Some(v) = bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .find(|v| !(-QMAX_BIAS..=QMAX_BIAS).contains(v))
            {
                bail!(
                    Invalid,
                    "node \"{}\": bias \"{}\" holds {v}, outside ±2^30 (the integer kernels' bound)",
                    n.name,
                    self.graph.tensors[b as usize].name
                );
            }
        }
        self.check_acc16()
    }

    /// Every output row of a 16-bit conv or matmul keeps `2^15·Σ|w| + |bias|` within i32
    /// ([`crate::ir::quant::acc16_fits`]): then its i32 sums are exact in any order, on every path.
    fn check_acc16(&self) -> Result<()> {
        for n in &self.graph.nodes {
            let conv = match n.op {
                Op::Q16Conv { .. } | Op::Q16ConvAct { .. } => true,
                Op::Q16MatMul { .. } => false,
                _ => continue,
            };
            let wt = &self.graph.tensors[n.inputs[1] as usize];
            let w = crate::cpu::ops::quant::i8s(self.const_bytes(n.inputs[1] as usize));
            let dims = wt.dims();
            let (rows, depth) = if conv {
                (dims[0], dims[1..].iter().product::<usize>())
            } else {
                (dims[1], dims[0])
            };
            let bias: alloc::vec::Vec<i32> = match n.inputs.get(2) {
                Some(&b) => self
                    .const_bytes(b as usize)
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                None => alloc::vec![0; rows],
            };
            for r in 0..rows {
                let row: alloc::vec::Vec<i8> = if conv {
                    w.get(r * depth..(r + 1) * depth).unwrap_or(&[]).to_vec()
                } else {
                    (0..depth)
                        .filter_map(|k| w.get(k * rows + r).copied())
                        .collect()
                };
                if !crate::ir::quant::acc16_fits(&row, bias.get(r).copied().unwrap_or(0)) {
                    bail!(
                        Invalid,
                        "node \"{}\": output row {r} of weight \"{}\" can overflow i32 on 16-bit inputs (2^15·Σ|w| + |bias| ≥ 2^31)",
                        n.name,
                        wt.name
                    );
                }
            }
        }
        Ok(())
    }

    /// The raw little-endian bytes of constant tensor `t` (empty for non-constants).
    pub fn const_bytes(&self, t: usize) -> &[u8] {
        match self.graph.tensors.get(t).and_then(|t| t.data) {
            // ranges were validated against the blob in `validate`
            Some(r) => self
                .weights
                .get(r.offset as usize..(r.offset + r.len) as usize)
                .unwrap_or(&[]),
            None => &[],
        }
    }

    /// Whether the weights are read in place from the artifact bytes (`false`: they were stored deflated
    /// and inflated at load).
    pub fn weights_in_place(&self) -> bool {
        matches!(self.weights, alloc::borrow::Cow::Borrowed(_))
    }

    /// A metadata value by key.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Graph input tensors, in order.
    pub fn inputs(&self) -> impl Iterator<Item = &Tensor> {
        self.graph
            .inputs
            .iter()
            .map(|&i| &self.graph.tensors[i as usize])
    }

    /// Graph output tensors, in order.
    pub fn outputs(&self) -> impl Iterator<Item = &Tensor> {
        self.graph
            .outputs
            .iter()
            .map(|&i| &self.graph.tensors[i as usize])
    }
}

fn tensor_name(g: &Graph, i: u32) -> &str {
    g.tensors
        .get(i as usize)
        .map(|t| t.name.as_str())
        .unwrap_or("?")
}

/// Checks a graph for internal consistency: every index in range, every tensor defined once before use,
/// constants inside the weight blob with the right length, and every node's output shapes equal to what
/// the shape rules compute from its inputs. Used by the loader and by the tool after each pass.
pub fn validate(g: &Graph, weight_len: usize) -> Result<()> {
    let nt = g.tensors.len();
    for (i, t) in g.tensors.iter().enumerate() {
        let mut n = 1usize;
        for &d in &t.shape {
            n = n
                .checked_mul(d as usize)
                .filter(|&n| n <= shape::MAX_ELEMS)
                .ok_or_else(|| {
                    err!(
                        TooLarge,
                        "tensor {i} \"{}\" has absurd shape {:?}",
                        t.name,
                        t.shape
                    )
                })?;
        }
        if t.shape.len() > 8 {
            bail!(
                Unsupported,
                "tensor {i} \"{}\" has rank {} (max 8)",
                t.name,
                t.shape.len()
            );
        }
        if let Some(r) = t.data {
            let end = r.offset.checked_add(r.len);
            if r.offset % artifact::const_align(t.dtype) as u64 != 0
                || end.is_none_or(|e| e > weight_len as u64)
            {
                bail!(
                    Invalid,
                    "constant {i} \"{}\" at blob offset {} length {} is outside the {weight_len}-byte weight blob or unaligned",
                    t.name,
                    r.offset,
                    r.len
                );
            }
            if r.len != (n * t.dtype.size()) as u64 {
                bail!(
                    Invalid,
                    "constant {i} \"{}\" has {} bytes, its shape {:?} needs {}",
                    t.name,
                    r.len,
                    t.shape,
                    n * t.dtype.size()
                );
            }
        }
        if let Some(q) = &t.quant {
            let ch = match q.axis {
                None => 1,
                Some(a) => *t.shape.get(a as usize).ok_or_else(|| {
                    err!(
                        Invalid,
                        "tensor {i} \"{}\": quant axis {a} out of range",
                        t.name
                    )
                })? as usize,
            };
            if q.scale.len() != ch
                || q.zero_point.len() != ch
                || q.scale.iter().any(|s| !(s.is_finite() && *s > 0.0))
            {
                bail!(
                    Invalid,
                    "tensor {i} \"{}\": quantization parameters do not match {ch} channel(s)",
                    t.name
                );
            }
        }
    }
    // 0 = undefined, 1 = defined
    let mut defined = vec![false; nt];
    for (k, &i) in g.inputs.iter().enumerate() {
        let t = g.tensors.get(i as usize).ok_or_else(|| {
            err!(
                Invalid,
                "graph input {k} refers to tensor {i}, there are {nt}"
            )
        })?;
        if t.is_const() || defined[i as usize] {
            bail!(
                Invalid,
                "graph input {k} \"{}\" is a constant or listed twice",
                t.name
            );
        }
        defined[i as usize] = true;
    }
    for (i, t) in g.tensors.iter().enumerate() {
        if t.is_const() {
            defined[i] = true;
        }
    }
    let mut in_shapes: Vec<Vec<usize>> = Vec::new();
    let mut out_shapes: Vec<Vec<usize>> = Vec::new();
    for (ni, n) in g.nodes.iter().enumerate() {
        let at = |msg: String| err!(Invalid, "node {ni} \"{}\" ({}): {msg}", n.name, n.op.name());
        in_shapes.clear();
        out_shapes.clear();
        for (k, &i) in n.inputs.iter().enumerate() {
            match defined.get(i as usize) {
                None => {
                    return Err(at(alloc::format!(
                        "input {k} refers to tensor {i}, there are {nt}"
                    )))
                }
                Some(false) => {
                    return Err(at(alloc::format!(
                        "input {k} \"{}\" is used before any node computes it (execution order)",
                        tensor_name(g, i)
                    )))
                }
                Some(true) => in_shapes.push(g.tensors[i as usize].dims()),
            }
        }
        if n.outputs.is_empty() {
            return Err(at("has no outputs".into()));
        }
        for (k, &o) in n.outputs.iter().enumerate() {
            match defined.get(o as usize) {
                None => return Err(at(alloc::format!("output {k} refers to tensor {o}, there are {nt}"))),
                Some(true) => {
                    return Err(at(alloc::format!(
                        "output {k} \"{}\" is already defined (a constant, an input, or an earlier node's output)",
                        tensor_name(g, o)
                    )))
                }
                Some(false) => out_shapes.push(g.tensors[o as usize].dims()),
            }
        }
        for &o in &n.outputs {
            defined[o as usize] = true;
        }
        let consts: &[usize] = match &n.op {
            Op::Conv { .. } => &[1, 2, 3, 4],
            Op::ConvTranspose { .. } => &[1, 2],
            Op::ChannelAffine { .. }
            | Op::QConv { .. }
            | Op::QMatMul { .. }
            | Op::QConvTranspose { .. }
            | Op::Q16MatMul { .. }
            | Op::Q16ConvAct { .. } => &[1, 2],
            Op::Q16Conv { .. } => &[1, 2, 3],
            Op::QLut | Op::Q16Lut => &[1],
            Op::Lstm { .. } => &[1, 2, 3, 6],
            Op::Gru { .. } | Op::Rnn { .. } => &[1, 2, 3],
            _ => &[],
        };
        for &c in consts {
            if let Some(&t) = n.inputs.get(c) {
                if !g.tensors[t as usize].is_const() {
                    return Err(at(alloc::format!(
                        "input {c} \"{}\" must be a constant",
                        tensor_name(g, t)
                    )));
                }
            }
        }
        let ins: Vec<&[usize]> = in_shapes.iter().map(|s| s.as_slice()).collect();
        let decl: Vec<&[usize]> = out_shapes.iter().map(|s| s.as_slice()).collect();
        let inferred = shape::infer(&n.op, &ins, &decl)
            .map_err(|m| at(alloc::format!("{m} (input shapes {ins:?})")))?;
        if inferred.len() != decl.len()
            || inferred.iter().zip(&decl).any(|(a, b)| a.as_slice() != *b)
        {
            return Err(at(alloc::format!(
                "declared output shapes {decl:?}, but the inputs {ins:?} give {inferred:?}"
            )));
        }
        // after shape inference, which checks the input count and ranks the type checks index by
        check_types(g, n).map_err(at)?;
    }
    if g.outputs.is_empty() {
        bail!(Invalid, "the graph has no outputs");
    }
    for &t in g.inputs.iter().chain(&g.outputs) {
        if let Some(tt) = g.tensors.get(t as usize).filter(|t| t.dtype != DType::F32) {
            bail!(
                Unsupported,
                "graph input/output \"{}\" is {:?}; sessions take and give f32 (the tool puts Quantize/Dequantize at the edges)",
                tt.name,
                tt.dtype
            );
        }
    }
    for (k, &o) in g.outputs.iter().enumerate() {
        match defined.get(o as usize) {
            Some(true) if !g.tensors[o as usize].is_const() => {}
            _ => bail!(
                Invalid,
                "graph output {k} (tensor {o} \"{}\") is never computed",
                tensor_name(g, o)
            ),
        }
    }
    // an int8 constant is either an integer op's operand or a float op's stored weight, not both: the
    // backends keep one form of it (the GPU uploads the widened words in its place)
    let as_float = read_as_float(g);
    for n in &g.nodes {
        if let Some(&t) = n
            .inputs
            .iter()
            .find(|&&t| !computes_float(g, n) && as_float[t as usize])
        {
            bail!(
                Invalid,
                "node \"{}\" ({}): int8 constant \"{}\" is also a float op's stored weight; give each its own",
                n.name,
                n.op.name(),
                g.tensors[t as usize].name
            );
        }
    }
    Ok(())
}

/// Per-tensor int8 parameters `(scale, zero point)` of tensor `t`, or a message naming it.
fn per_tensor(g: &Graph, t: u32) -> core::result::Result<(f32, i32), String> {
    let tt = &g.tensors[t as usize];
    match (&tt.dtype, &tt.quant) {
        (DType::I8, Some(q)) if q.axis.is_none() && q.zero_point[0] >= -128 && q.zero_point[0] <= 127 => {
            Ok((q.scale[0], q.zero_point[0]))
        }
        _ => Err(alloc::format!(
            "tensor \"{}\" must be int8 with one scale and a zero point in [-128, 127] (is {:?}, {:?})",
            tt.name, tt.dtype, tt.quant
        )),
    }
}

/// The scale of int16 tensor `t` (format 10: one finite positive scale, zero point 0), or a message
/// naming it.
fn per_tensor16(g: &Graph, t: u32) -> core::result::Result<f32, String> {
    let tt = &g.tensors[t as usize];
    match (&tt.dtype, &tt.quant) {
        (DType::I16, Some(q))
            if q.axis.is_none()
                && q.zero_point[0] == 0
                && q.scale[0].is_finite()
                && q.scale[0] > 0.0 =>
        {
            Ok(q.scale[0])
        }
        _ => {
            Err(alloc::format!(
            "tensor \"{}\" must be int16 with one positive scale and zero point 0 (is {:?}, {:?})",
            tt.name, tt.dtype, tt.quant
        ))
        }
    }
}

/// The checks of the 16-bit engine's nodes (format 10), `None` for other nodes.
fn check_q16(g: &Graph, n: &crate::ir::Node) -> Option<core::result::Result<(), String>> {
    use crate::ir::quant::{add16_params, FixedMultiplier};
    let dt = |t: u32| g.tensors[t as usize].dtype;
    let mult = |real: f64, what: &str| -> core::result::Result<(), String> {
        FixedMultiplier::from_real(real).map(|_| ()).ok_or_else(|| {
            alloc::format!("{what} multiplier {real:e} cannot be encoded in 32-bit fixed point")
        })
    };
    let clamp = |lo: i16, hi: i16| {
        if lo > hi {
            Err(alloc::format!("clamp [{lo}, {hi}] is empty"))
        } else {
            Ok(())
        }
    };
    let (x, y) = (n.inputs.first().copied(), n.outputs[0]);
    // an int16 constant is a 16-bit Add/Sub/Mul operand or a table; the engine reads no other (its
    // activations live in the arena)
    for (k, &t) in n.inputs.iter().enumerate() {
        let tt = &g.tensors[t as usize];
        let operand = matches!(
            (&n.op, k),
            (Op::Q16Binary { .. }, 0 | 1) | (Op::Q16Lut, 1) | (Op::Q16Conv { .. }, 3)
        );
        if tt.dtype == DType::I16 && tt.is_const() && !operand {
            return Some(Err(alloc::format!(
                "int16 constant \"{}\" as input {k}: only a 16-bit Add/Sub/Mul operand or a table may be one",
                tt.name
            )));
        }
    }
    let r = (|| match &n.op {
        Op::Quantize if dt(y) == DType::I16 => {
            all_of(&[x], DType::F32, g)?;
            per_tensor16(g, y).map(|_| ())
        }
        Op::Dequantize if x.is_some_and(|x| dt(x) == DType::I16) => {
            all_of(&[Some(y)], DType::F32, g)?;
            per_tensor16(g, x.unwrap_or(y)).map(|_| ())
        }
        Op::Q16Conv { lo, hi, .. } | Op::Q16MatMul { lo, hi } | Op::Q16ConvAct { lo, hi, .. } => {
            let (sx, mut sy) = (per_tensor16(g, n.inputs[0])?, per_tensor16(g, y)?);
            if let (Op::Q16Conv { .. }, Some(&t)) = (&n.op, n.inputs.get(3)) {
                // a fused function's table: int16, with the scale of the codes it reads
                sy = per_tensor16(g, t)?;
            }
            let conv = !matches!(n.op, Op::Q16MatMul { .. });
            let w = &g.tensors[n.inputs[1] as usize];
            let axis = if conv { 0 } else { 1 };
            let q = w.quant.as_ref().filter(|q| {
                w.dtype == DType::I8
                    && q.zero_point.iter().all(|&z| z == 0)
                    && (q.axis == Some(axis as u32) || (q.axis.is_none() && axis == 1))
            });
            let Some(q) = q else {
                return Err(alloc::format!(
                    "weight \"{}\" must be int8, symmetric (zero point 0), per channel on axis {axis}",
                    w.name
                ));
            };
            let ch = w.shape[axis] as usize;
            let depth: usize = if conv {
                w.shape[1..].iter().map(|&d| d as usize).product()
            } else {
                w.shape[0] as usize
            };
            if depth > crate::cpu::qgemm::QMAX_K {
                return Err(alloc::format!(
                    "weight \"{}\": reduction depth {depth} exceeds the integer kernels' {}",
                    w.name,
                    crate::cpu::qgemm::QMAX_K
                ));
            }
            let bias = match n.inputs.get(2) {
                Some(&b) if dt(b) != DType::I32 => {
                    return Err(alloc::format!(
                        "bias \"{}\" must be int32",
                        g.tensors[b as usize].name
                    ))
                }
                Some(&b) => Some(b),
                None => None,
            };
            if let Op::Q16ConvAct { act, .. } = &n.op {
                // (checked whatever the channel count: the kernels need the function's constants)
                if crate::ir::quant::unary16_params(act, sx, sy).is_none() {
                    return Err(alloc::format!(
                        "{act:?} has no 16-bit f32 form with scales {sx:e} -> {sy:e} (HardSwish has)"
                    ));
                }
            }
            for k in 0..ch {
                let sw = q.scale[if q.scale.len() == 1 { 0 } else { k }];
                if let Op::Q16ConvAct { .. } = &n.op {
                    // the sums' real values in f32, finite for every i32 sum (an infinite one times
                    // the function's zero would be NaN)
                    let s = crate::ir::quant::f32_scale(sx as f64 * sw as f64);
                    if !(s.is_finite() && s > 0.0 && (s * 2147483648.0).is_finite()) {
                        return Err(alloc::format!(
                            "sum scale {s:e} is not a positive f32 whose sums stay finite"
                        ));
                    }
                } else {
                    mult(sx as f64 * sw as f64 / sy as f64, "output")?;
                }
            }
            let _ = bias; // (its values: `Model::check_acc16`)
            clamp(*lo, *hi)
        }
        Op::Q16Binary { op, lo, hi } => {
            let sa = per_tensor16(g, n.inputs[0])? as f64;
            let sb = per_tensor16(g, n.inputs[1])? as f64;
            let sy = per_tensor16(g, y)? as f64;
            match op {
                BinOp::Add | BinOp::Sub => {
                    if add16_params(sa / sy, sb / sy).is_none() {
                        return Err(alloc::format!(
                            "16-bit {op:?} rescales {:e} and {:e} have no integer form",
                            sa / sy,
                            sb / sy
                        ));
                    }
                }
                BinOp::Mul => mult(sa * sb / sy, "product")?,
                _ => return Err(alloc::format!("{op:?} has no integer form")),
            }
            clamp(*lo, *hi)
        }
        Op::Requantize => {
            // either side int8 or int16, each per tensor
            let side = |t: u32| match dt(t) {
                DType::I16 => per_tensor16(g, t).map(|s| (s, 0)),
                _ => per_tensor(g, t),
            };
            let (sx, _) = side(x.unwrap_or(y))?;
            let (sy, _) = side(y)?;
            mult(sx as f64 / sy as f64, "rescale")
        }
        Op::Q16Unary(f) => {
            let (sx, sy) = (per_tensor16(g, n.inputs[0])?, per_tensor16(g, y)?);
            crate::ir::quant::unary16_params(f, sx, sy)
                .map(|_| ())
                .ok_or_else(|| alloc::format!("{f:?} has no 16-bit f32 form (HardSwish has)"))
        }
        Op::Q16Lut => {
            per_tensor16(g, n.inputs[0])?;
            per_tensor16(g, y)?;
            if dt(n.inputs[1]) != DType::I16 {
                return Err(alloc::format!(
                    "table \"{}\" must be int16",
                    g.tensors[n.inputs[1] as usize].name
                ));
            }
            Ok(())
        }
        op if moves_integers(op) && dt(y) == DType::I16 => {
            moves_or_rescales(n, "int16", &|t| per_tensor16(g, t).map(|s| (s, 0)))
        }
        _ => Err(String::new()),
    })();
    match r {
        Err(e) if e.is_empty() => None,
        r => Some(r),
    }
}

/// A channel-scaled int8 tensor (see [`crate::ir::quant::QParams`]): one scale per channel (axis 1) and one
/// zero point shared by all channels; `(scales, zero point)`, or a message naming it.
fn channel_scaled(g: &Graph, t: u32) -> core::result::Result<(&[f32], i32), String> {
    let tt = &g.tensors[t as usize];
    let ok = |q: &crate::ir::quant::QParams| {
        tt.shape.len() >= 2
            && q.axis == Some(1)
            && q.scale.len() == tt.shape[1] as usize
            && !q.zero_point.is_empty()
            && q.zero_point.iter().all(|&z| z == q.zero_point[0])
            && (-128..=127).contains(&q.zero_point[0])
    };
    match (&tt.dtype, &tt.quant) {
        (DType::I8, Some(q)) if ok(q) => Ok((&q.scale, q.zero_point[0])),
        _ => Err(alloc::format!(
            "tensor \"{}\" must be int8 with one scale (or one per channel on axis 1) and one zero point in [-128, 127] (is {:?}, {:?})",
            tt.name, tt.dtype, tt.quant
        )),
    }
}

/// Ops that run on integer tensors (int8 or int16) as they are: data movement and pooling. (The tool's
/// quantize pass gives these an integer form: one list.)
pub fn moves_integers(op: &Op) -> bool {
    matches!(
        op,
        Op::Pool(_)
            | Op::GlobalPool(_)
            | Op::Concat { .. }
            | Op::Split { .. }
            | Op::Slice { .. }
            | Op::Pad { .. }
            | Op::Reshape
            | Op::Transpose { .. }
            | Op::Resize {
                mode: ResizeMode::Nearest(_),
                ..
            }
    )
}

/// Data movement and pooling on an integer type (`what`, with `params` its per-tensor parameters): every
/// output keeps the input's scale and zero point, except where the kernel rescales (Concat, average
/// pooling: then the rescale must be encodable).
fn moves_or_rescales(
    n: &crate::ir::Node,
    what: &str,
    params: &dyn Fn(u32) -> core::result::Result<(f32, i32), String>,
) -> core::result::Result<(), String> {
    let (sy, _) = params(n.outputs[0])?;
    for &o in &n.outputs[1..] {
        params(o)?;
    }
    let rescales = matches!(
        n.op,
        Op::Concat { .. }
            | Op::Pool(Pool2d {
                kind: PoolKind::Avg { .. },
                ..
            })
            | Op::GlobalPool(PoolKind::Avg { .. })
    );
    for &i in &n.inputs {
        let (sx, zx) = params(i)?;
        if rescales {
            let real = sx as f64 / sy as f64;
            if crate::ir::quant::FixedMultiplier::from_real(real).is_none() {
                return Err(alloc::format!(
                    "rescale multiplier {real:e} cannot be encoded in 32-bit fixed point"
                ));
            }
        } else if n.outputs.iter().any(|&o| params(o) != Ok((sx, zx))) {
            return Err(alloc::format!(
                "{what} output must keep the input's scale and zero point ({sx}, {zx})"
            ));
        }
    }
    Ok(())
}

/// Which element types and quantization parameters each op accepts. Integer ops also need their
/// requantization multipliers to be encodable.
fn check_types(g: &Graph, n: &crate::ir::Node) -> core::result::Result<(), String> {
    use crate::ir::quant::FixedMultiplier;
    let dt = |t: u32| g.tensors[t as usize].dtype;
    let name = |t: u32| g.tensors[t as usize].name.as_str();
    let mult = |real: f64, what: &str| -> core::result::Result<(), String> {
        // the same encoder the kernels use, so a session never meets a multiplier it cannot build
        FixedMultiplier::from_real(real).map(|_| ()).ok_or_else(|| {
            alloc::format!("{what} multiplier {real:e} cannot be encoded in 32-bit fixed point")
        })
    };
    if let Some(r) = check_q16(g, n) {
        return r;
    }
    let (x, y) = (n.inputs.first().copied(), n.outputs[0]);
    match &n.op {
        Op::Q16Conv { .. }
        | Op::Q16ConvAct { .. }
        | Op::Q16MatMul { .. }
        | Op::Q16Binary { .. }
        | Op::Q16Lut
        | Op::Q16Unary(_) => Err("a 16-bit integer op must read and write int16 tensors".into()),
        Op::Quantize => {
            all_of(&[x], DType::F32, g)?;
            per_tensor(g, y).map(|_| ())
        }
        Op::Dequantize => {
            all_of(&[Some(y)], DType::F32, g)?;
            per_tensor(g, x.unwrap_or(y)).map(|_| ())
        }
        Op::QConv { lo, hi, .. } | Op::QMatMul { lo, hi } | Op::QConvTranspose { lo, hi, .. } => {
            // a depthwise QConv (one input channel per group) may read a channel-scaled tensor: its
            // per-channel multipliers take each channel's input scale
            let sx: Vec<f32> = match (per_tensor(g, n.inputs[0]), &n.op) {
                (Ok((s, _)), _) => vec![s],
                (Err(e), Op::QConv { geom, .. }) => {
                    let ws = &g.tensors[n.inputs[1] as usize].shape;
                    let xs = &g.tensors[n.inputs[0] as usize].shape;
                    if ws.len() != 4 || ws[1] != 1 || xs.len() < 2 || geom.groups != xs[1] {
                        return Err(e);
                    }
                    channel_scaled(g, n.inputs[0])?.0.to_vec()
                }
                (Err(e), _) => return Err(e),
            };
            // a QConv may write a channel-scaled tensor (one multiplier per output channel anyway)
            let sy: Vec<f32> = match (per_tensor(g, y), &n.op) {
                (Ok((s, _)), _) => vec![s],
                (Err(_), Op::QConv { .. }) => channel_scaled(g, y)?.0.to_vec(),
                (Err(e), _) => return Err(e),
            };
            let w = &g.tensors[n.inputs[1] as usize];
            if let Op::QConvTranspose { geom, .. } = &n.op {
                let plain = geom.kernel == geom.strides
                    && geom.pads == [0; 4]
                    && geom.dilations == [1, 1]
                    && geom.groups == 1
                    && geom.output_padding == [0, 0];
                if !plain {
                    return Err(alloc::format!(
                        "int8 ConvTranspose needs kernel = stride, no padding, dilation 1, one group (got {geom:?})"
                    ));
                }
            }
            let axis = if matches!(n.op, Op::QConv { .. }) {
                0
            } else {
                1
            };
            let ch = w.shape[axis] as usize;
            // the reduction depth: C/groups·kh·kw for conv, the rows of W for matmul
            let depth: u64 = if axis == 0 {
                w.shape[1..].iter().map(|&d| d as u64).product()
            } else {
                w.shape[0] as u64
            };
            if depth > crate::cpu::qgemm::QMAX_K as u64 {
                return Err(alloc::format!(
                    "weight \"{}\": reduction depth {depth} exceeds the integer kernels' {}",
                    w.name,
                    crate::cpu::qgemm::QMAX_K
                ));
            }
            let q = w.quant.as_ref().filter(|q| {
                w.dtype == DType::I8
                    && q.zero_point.iter().all(|&z| z == 0)
                    && (q.axis == Some(axis as u32) || (q.axis.is_none() && axis == 1))
            });
            let Some(q) = q else {
                return Err(alloc::format!(
                    "weight \"{}\" must be int8, symmetric (zero point 0), per channel on axis {axis}",
                    w.name
                ));
            };
            if sy.len() != 1 && sy.len() != ch {
                return Err(alloc::format!(
                    "output has {} channel scales for {ch} output channels",
                    sy.len()
                ));
            }
            // output channel k of a channel-scaled depthwise input reads input channel k / (ch / C)
            let per_in = (ch / sx.len()).max(1);
            for k in 0..ch {
                let sw = q.scale[if q.scale.len() == 1 { 0 } else { k }];
                let so = sy[if sy.len() == 1 { 0 } else { k }];
                let si = sx[(k / per_in).min(sx.len() - 1)];
                mult(si as f64 * sw as f64 / so as f64, "output")?;
            }
            if let Some(&b) = n.inputs.get(2) {
                if dt(b) != DType::I32 {
                    return Err(alloc::format!("bias \"{}\" must be int32", name(b)));
                }
            }
            if lo > hi {
                return Err(alloc::format!("clamp [{lo}, {hi}] is empty"));
            }
            Ok(())
        }
        Op::QBinary { op, lo, hi } => {
            let (sa, _) = per_tensor(g, n.inputs[0])?;
            let (sb, _) = per_tensor(g, n.inputs[1])?;
            let (sy, _) = per_tensor(g, y)?;
            match op {
                BinOp::Add | BinOp::Sub => {
                    mult(sa as f64 / sy as f64, "left")?;
                    mult(sb as f64 / sy as f64, "right")?;
                }
                BinOp::Mul => mult(sa as f64 * sb as f64 / sy as f64, "product")?,
                _ => return Err(alloc::format!("{op:?} has no integer form")),
            }
            if lo > hi {
                return Err(alloc::format!("clamp [{lo}, {hi}] is empty"));
            }
            Ok(())
        }
        Op::QLut => {
            // a channel-scaled input or output takes one table per channel ([C, 256]; shape inference
            // checks the shape)
            let count = |t: u32| match per_tensor(g, t) {
                Ok(_) => Ok(1),
                Err(_) => channel_scaled(g, t).map(|c| c.0.len()),
            };
            let tables = count(n.inputs[0])?.max(count(y)?);
            if g.tensors[n.inputs[1] as usize].numel() != tables * 256 {
                return Err(alloc::format!(
                    "table \"{}\" must hold {tables} 256-entry table(s): one, or one per channel of a channel-scaled input or output",
                    name(n.inputs[1])
                ));
            }
            if dt(n.inputs[1]) != DType::I8 {
                return Err(alloc::format!(
                    "table \"{}\" must be int8",
                    name(n.inputs[1])
                ));
            }
            Ok(())
        }
        // data movement and pooling run on either type; on int8 the output keeps the input's
        // parameters, except where the kernel rescales (Concat, average pooling)
        op if moves_integers(op) && dt(y) == DType::I8 => {
            moves_or_rescales(n, "int8", &|t| per_tensor(g, t))
        }
        // format 9: a pointwise float conv may write int8 (quantized band by band, see
        // `conv::run_pointwise_q`)
        Op::Conv { geom, .. } if dt(y) == DType::I8 => {
            let pointwise = *geom == crate::ir::Conv2d::pointwise(1);
            if !pointwise || g.tensors[n.inputs[0] as usize].shape.len() != 4 {
                return Err(alloc::format!(
                    "a float Conv writing int8 must be pointwise on a 4-D input (1×1, stride 1, no padding, one group; got {geom:?})"
                ));
            }
            if n.outputs.len() != 1 {
                return Err("a float Conv writing int8 has one output".into());
            }
            per_tensor(g, y)?;
            float_tensors(g, &n.inputs)
        }
        _ => float_tensors(g, n.inputs.iter().chain(&n.outputs)),
    }
}

/// A float op's tensors: F32, or constants stored as f16, or as int8 with their scales (weights only: a
/// float layer of an int8 artifact, widened to f32 at session creation, see `read_as_float`).
fn float_tensors<'a>(
    g: &Graph,
    ts: impl IntoIterator<Item = &'a u32>,
) -> core::result::Result<(), String> {
    for &t in ts {
        let tt = &g.tensors[t as usize];
        let stored = tt.is_const()
            && (tt.dtype == DType::F16 || tt.dtype == DType::I8 && tt.quant.is_some());
        if tt.dtype != DType::F32 && !stored {
            return Err(alloc::format!(
                "tensor \"{}\" is {:?}, this op needs F32 (or an F16 constant, or an int8 one with quantization parameters)",
                tt.name,
                tt.dtype
            ));
        }
    }
    Ok(())
}

fn all_of(ts: &[Option<u32>], want: DType, g: &Graph) -> core::result::Result<(), String> {
    for t in ts.iter().flatten() {
        let tt = &g.tensors[*t as usize];
        if tt.dtype != want {
            return Err(alloc::format!(
                "tensor \"{}\" is {:?}, expected {want:?}",
                tt.name,
                tt.dtype
            ));
        }
    }
    Ok(())
}

/// Whether node `n` computes in float (its first output is f32 and it is not the int8 → f32 boundary, or it
/// is a float Conv writing int8).
fn computes_float(g: &Graph, n: &crate::ir::Node) -> bool {
    let y = n.outputs.first().map(|&y| g.tensors[y as usize].dtype);
    (!matches!(n.op, Op::Dequantize) && y == Some(DType::F32))
        || (matches!(n.op, Op::Conv { .. }) && y == Some(DType::I8))
}

/// Per tensor: whether it is an int8 constant that a float op reads (weights stored as int8 with their
/// scales, format 7), which the backends widen to f32 once, as `scale · (q − zero point)`
/// ([`widen_i8`]).
pub fn read_as_float(g: &Graph) -> Vec<bool> {
    let mut out = vec![false; g.tensors.len()];
    for n in g.nodes.iter().filter(|n| computes_float(g, n)) {
        for &t in &n.inputs {
            let tt = &g.tensors[t as usize];
            if tt.dtype == DType::I8 && tt.is_const() && tt.quant.is_some() {
                out[t as usize] = true;
            }
        }
    }
    out
}

/// An int8 constant's values as f32: `scale[c] · (q − zero_point[c])` with `c` its index along the
/// parameters' axis (one rounding per value: the same bits on every backend). `q` is the tensor's
/// parameters, validated against its shape.
pub fn widen_i8(bytes: &[u8], shape: &[u32], q: &crate::ir::QParams) -> Vec<f32> {
    let inner: usize = match q.axis {
        Some(a) => shape[a as usize + 1..]
            .iter()
            .map(|&d| d as usize)
            .product(),
        None => 1,
    };
    let channels = q.scale.len().max(1);
    bytes
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            let c = (i / inner.max(1)) % channels;
            (b as i8 as i32 - q.zero_point[c]) as f32 * q.scale[c]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// A model is shared between threads (one session each).
    #[test]
    fn model_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Model<'static>>();
    }
}
