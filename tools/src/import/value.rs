//! Host-side constant values (f32 or i64 arrays) and constant folding of the shape-only subgraphs
//! (Shape, Gather, Cast, ConstantOfShape, Range, Expand, Concat, Unsqueeze, arithmetic on shapes ...).
use anyhow::{anyhow, bail, Result};
use ndarray::{ArrayD, Axis, IxDyn, Zip};
use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::{DatumType, Tensor as TractTensor};

/// Decodes a TensorProto (raw or typed data) with tract-onnx's reader.
pub fn load(t: &tract_onnx::pb::TensorProto) -> Result<TractTensor> {
    load_with(t, None)
}

/// [`load`], resolving external data relative to the model's directory.
pub fn load_with(t: &tract_onnx::pb::TensorProto, dir: Option<&str>) -> Result<TractTensor> {
    static ONNX: std::sync::OnceLock<tract_onnx::Onnx> = std::sync::OnceLock::new();
    let onnx = ONNX.get_or_init(tract_onnx::onnx);
    tract_onnx::tensor::load_tensor(&*onnx.provider, t, dir)
        .map_err(|e| anyhow!("tensor \"{}\": {e}", t.name))
}

/// A constant known at import time.
#[derive(Clone, Debug)]
pub enum HostTensor {
    /// Floating point (f16/f32/f64 all become f32).
    F(ArrayD<f32>),
    /// Integer or boolean.
    I(ArrayD<i64>),
}

impl HostTensor {
    /// Shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            HostTensor::F(a) => a.shape(),
            HostTensor::I(a) => a.shape(),
        }
    }
    /// As f32 (integers converted).
    pub fn f32(&self) -> ArrayD<f32> {
        match self {
            HostTensor::F(a) => a.clone(),
            HostTensor::I(a) => a.mapv(|v| v as f32),
        }
    }
    /// As i64 (floats truncated).
    pub fn i64(&self) -> ArrayD<i64> {
        match self {
            HostTensor::F(a) => a.mapv(|v| v as i64),
            HostTensor::I(a) => a.clone(),
        }
    }
    /// Flattened i64 values.
    pub fn ints(&self) -> Vec<i64> {
        self.i64().iter().copied().collect()
    }
    /// Flattened f32 values (row-major).
    pub fn floats(&self) -> Vec<f32> {
        self.f32().iter().copied().collect()
    }
    /// Reads a tract tensor.
    pub fn from_tract(t: &TractTensor) -> Result<HostTensor> {
        let dt = t.datum_type();
        if dt.is_float() {
            let c = t.cast_to::<f32>()?;
            Ok(HostTensor::F(c.to_plain_array_view::<f32>()?.to_owned()))
        } else if dt == DatumType::Bool || dt.is_integer() {
            let c = t.cast_to::<i64>()?;
            Ok(HostTensor::I(c.to_plain_array_view::<i64>()?.to_owned()))
        } else {
            bail!("constant of type {dt:?} is not supported")
        }
    }
    fn map_unary(&self, f: impl Fn(f32) -> f32, g: impl Fn(i64) -> i64) -> HostTensor {
        match self {
            HostTensor::F(a) => HostTensor::F(a.mapv(f)),
            HostTensor::I(a) => HostTensor::I(a.mapv(g)),
        }
    }
}

/// Refuses shapes whose element count exceeds what the runtime accepts (before anything is allocated).
pub fn check_numel(shape: &[usize]) -> Result<()> {
    let mut n = 1usize;
    for &d in shape {
        n = n
            .checked_mul(d)
            .filter(|&n| n <= tern::ir::shape::MAX_ELEMS)
            .ok_or_else(|| anyhow!("shape {shape:?} is too large"))?;
    }
    Ok(())
}

/// numpy broadcasting of two shapes (the runtime's rule).
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    tern::ir::shape::broadcast(a, b).map_err(|e| anyhow!(e))
}

fn binary(
    a: &HostTensor,
    b: &HostTensor,
    f: impl Fn(f32, f32) -> f32,
    g: impl Fn(i64, i64) -> i64,
) -> Result<HostTensor> {
    let shape = broadcast(a.shape(), b.shape())?;
    Ok(match (a, b) {
        (HostTensor::I(x), HostTensor::I(y)) => {
            let (x, y) = (
                x.broadcast(IxDyn(&shape)).unwrap(),
                y.broadcast(IxDyn(&shape)).unwrap(),
            );
            HostTensor::I(Zip::from(&x).and(&y).map_collect(|&p, &q| g(p, q)))
        }
        _ => {
            let (x, y) = (a.f32(), b.f32());
            let (x, y) = (
                x.broadcast(IxDyn(&shape)).unwrap(),
                y.broadcast(IxDyn(&shape)).unwrap(),
            );
            HostTensor::F(Zip::from(&x).and(&y).map_collect(|&p, &q| f(p, q)))
        }
    })
}

/// Normalizes a possibly negative axis against `rank`.
pub fn axis(a: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if a < -r || a >= r.max(1) {
        bail!("axis {a} out of range for rank {rank}");
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

/// Flatten's axis: in `-rank..=rank`, negative counts from the end.
pub fn flatten_axis(a: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if a < -r || a > r {
        bail!("flatten axis {a} out of range for rank {rank}");
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

/// Result of normalizing ONNX Slice parameters for one tensor.
pub struct SliceSpec {
    /// Start per axis.
    pub starts: Vec<i64>,
    /// Step per axis.
    pub steps: Vec<i64>,
    /// Output shape.
    pub shape: Vec<usize>,
}

/// ONNX Slice semantics (clamping, negative indices and steps) → start/step/count per axis.
pub fn slice_spec(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> Result<SliceSpec> {
    let r = shape.len();
    let mut out = SliceSpec {
        starts: vec![0; r],
        steps: vec![1; r],
        shape: shape.to_vec(),
    };
    if starts.len() != ends.len()
        || axes.is_some_and(|a| a.len() != starts.len())
        || steps.is_some_and(|s| s.len() != starts.len())
    {
        bail!(
            "starts {starts:?}, ends {ends:?}, axes {axes:?} and steps {steps:?} differ in length"
        );
    }
    for i in 0..starts.len() {
        let a = axis(axes.map_or(i as i64, |ax| ax[i]), r)?;
        let step = steps.map_or(1, |s| s[i]);
        if step == 0 {
            bail!("slice step 0");
        }
        let dim = shape[a] as i64;
        let norm = |v: i64| if v < 0 { v + dim } else { v };
        let (mut s, mut e) = (
            norm(starts[i].clamp(-(i64::MAX / 2), i64::MAX / 2)),
            norm(ends[i].clamp(-(i64::MAX / 2), i64::MAX / 2)),
        );
        if step > 0 {
            s = s.clamp(0, dim);
            e = e.clamp(0, dim);
        } else {
            s = s.clamp(-1, dim - 1);
            e = e.clamp(-1, dim - 1);
        }
        let count = if step > 0 {
            (e - s + step - 1).div_euclid(step).max(0)
        } else {
            (s - e + (-step) - 1).div_euclid(-step).max(0)
        };
        out.starts[a] = if count > 0 { s } else { 0 };
        out.steps[a] = step;
        out.shape[a] = count as usize;
    }
    Ok(out)
}

/// Gathers along `axis` with (possibly negative) indices; the output shape is
/// `data[..axis] + indices.shape + data[axis+1..]`.
pub fn gather(data: &HostTensor, idx: &HostTensor, ax: usize) -> Result<HostTensor> {
    let dim = data.shape()[ax] as i64;
    let ids: Vec<usize> = idx
        .ints()
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + dim } else { i };
            if j < 0 || j >= dim {
                bail!("gather index {i} out of range for axis of length {dim}")
            }
            Ok(j as usize)
        })
        .collect::<Result<_>>()?;
    let mut shape = data.shape()[..ax].to_vec();
    shape.extend_from_slice(idx.shape());
    shape.extend_from_slice(&data.shape()[ax + 1..]);
    Ok(match data {
        HostTensor::F(a) => HostTensor::F(
            a.select(Axis(ax), &ids)
                .as_standard_layout()
                .into_owned()
                .into_shape_with_order(IxDyn(&shape))?,
        ),
        HostTensor::I(a) => HostTensor::I(
            a.select(Axis(ax), &ids)
                .as_standard_layout()
                .into_owned()
                .into_shape_with_order(IxDyn(&shape))?,
        ),
    })
}

fn reshape(x: &HostTensor, shape: &[usize]) -> Result<HostTensor> {
    Ok(match x {
        HostTensor::F(a) => HostTensor::F(
            a.as_standard_layout()
                .into_owned()
                .into_shape_with_order(IxDyn(shape))?,
        ),
        HostTensor::I(a) => HostTensor::I(
            a.as_standard_layout()
                .into_owned()
                .into_shape_with_order(IxDyn(shape))?,
        ),
    })
}

/// ONNX Reshape's target shape (0 copies the input dim unless `allowzero`, -1 is inferred).
pub fn reshape_target(input: &[usize], spec: &[i64], allowzero: bool) -> Result<Vec<usize>> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1)
            }
            0 if !allowzero => out.push(
                *input
                    .get(i)
                    .ok_or_else(|| anyhow!("reshape 0 at {i} beyond input rank"))?,
            ),
            d if d >= 0 => out.push(d as usize),
            _ => bail!("bad reshape target {spec:?}"),
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            bail!("cannot infer -1 reshaping {input:?} to {spec:?}");
        }
        out[i] = total / known;
    }
    if out.iter().product::<usize>() != total {
        bail!("cannot reshape {input:?} ({total} elements) to {spec:?}");
    }
    Ok(out)
}

/// Output shape of Unsqueeze.
pub fn unsqueeze_shape(input: &[usize], axes: &[i64]) -> Result<Vec<usize>> {
    let r = input.len() + axes.len();
    let mut ax: Vec<usize> = axes.iter().map(|&a| axis(a, r)).collect::<Result<_>>()?;
    ax.sort_unstable();
    let mut out = Vec::with_capacity(r);
    let mut it = input.iter();
    for i in 0..r {
        if ax.contains(&i) {
            out.push(1)
        } else {
            out.push(
                *it.next()
                    .ok_or_else(|| anyhow!("bad unsqueeze axes {axes:?}"))?,
            )
        }
    }
    Ok(out)
}

/// Output shape of Squeeze (no axes: every 1).
pub fn squeeze_shape(input: &[usize], axes: Option<&[i64]>) -> Result<Vec<usize>> {
    let ax: Vec<usize> = match axes {
        Some(a) => a
            .iter()
            .map(|&a| axis(a, input.len()))
            .collect::<Result<_>>()?,
        None => (0..input.len()).filter(|&i| input[i] == 1).collect(),
    };
    for &a in &ax {
        if input[a] != 1 {
            bail!("cannot squeeze axis {a} of {input:?}");
        }
    }
    Ok(input
        .iter()
        .enumerate()
        .filter(|(i, _)| !ax.contains(i))
        .map(|(_, &d)| d)
        .collect())
}

/// Input `i` of a node, if present and constant.
pub type Ins<'a> = &'a [Option<HostTensor>];

fn req<'a>(ins: Ins<'a>, i: usize) -> Result<&'a HostTensor> {
    ins.get(i)
        .and_then(|x| x.as_ref())
        .ok_or_else(|| anyhow!("missing input {i}"))
}

fn ints_attr_or_input(
    node: &NodeProto,
    ins: Ins,
    name: &str,
    i: usize,
) -> Result<Option<Vec<i64>>> {
    if let Some(v) = node.get_attr_opt_vec::<i64>(name)? {
        return Ok(Some(v));
    }
    Ok(ins.get(i).and_then(|x| x.as_ref()).map(|t| t.ints()))
}

/// ONNX DequantizeLinear on host values: `(x − zp) · scale`, per tensor (scalar or one-element scale and
/// zero point) or per slice along `axis` (1-D scale and zero point of that axis' length).
pub fn dequantize(
    x: &HostTensor,
    scale: &HostTensor,
    zp: Option<&HostTensor>,
    ax: i64,
) -> Result<HostTensor> {
    let xv = x.f32();
    let rank = xv.ndim();
    let sv = scale.floats();
    let zv: Vec<f32> = zp.map_or_else(|| vec![0.0; sv.len()], |z| z.floats());
    if zv.len() != sv.len() {
        bail!(
            "zero point has {} values but scale has {}",
            zv.len(),
            sv.len()
        );
    }
    if sv.len() == 1 {
        return Ok(HostTensor::F(xv.mapv(|v| (v - zv[0]) * sv[0])));
    }
    let a = axis(ax, rank)?;
    if xv.shape()[a] != sv.len() {
        bail!(
            "per-axis scale has {} values but axis {a} of {:?} has {}",
            sv.len(),
            xv.shape(),
            xv.shape()[a]
        );
    }
    let mut out = xv;
    for (i, mut lane) in out.axis_iter_mut(ndarray::Axis(a)).enumerate() {
        lane.mapv_inplace(|v| (v - zv[i]) * sv[i]);
    }
    Ok(HostTensor::F(out))
}

/// Evaluates `node` on constant inputs. `None` when this op is not folded on the host (the importer then
/// lowers it to a runtime node).
pub fn fold(node: &NodeProto, ins: Ins, opset: i64) -> Option<Result<Vec<HostTensor>>> {
    let all_const = ins.iter().all(|x| x.is_some()) || node.op_type == "Constant";
    if !all_const {
        return None;
    }
    let r: Result<Vec<HostTensor>> = (|| {
        let x = || req(ins, 0);
        Ok(vec![match node.op_type.as_str() {
            "Identity" | "Dropout" => x()?.clone(),
            "DequantizeLinear" => dequantize(
                x()?,
                req(ins, 1)?,
                ins.get(2).and_then(|z| z.as_ref()),
                node.get_attr_opt::<i64>("axis")?.unwrap_or(1),
            )?,
            "Cast" => {
                let to = node.get_attr::<i64>("to")?;
                // 1 float, 10 float16, 11 double, 16 bfloat16
                if [1, 10, 11, 16].contains(&to) {
                    HostTensor::F(x()?.f32())
                } else if to == 9 {
                    HostTensor::I(x()?.f32().mapv(|v| (v != 0.0) as i64))
                } else {
                    HostTensor::I(x()?.i64())
                }
            }
            "Gather" => {
                let d = x()?;
                let a = axis(
                    node.get_attr_opt::<i64>("axis")?.unwrap_or(0),
                    d.shape().len(),
                )?;
                gather(d, req(ins, 1)?, a)?
            }
            "Unsqueeze" => {
                let axes =
                    ints_attr_or_input(node, ins, "axes", 1)?.ok_or_else(|| anyhow!("no axes"))?;
                reshape(x()?, &unsqueeze_shape(x()?.shape(), &axes)?)?
            }
            "Squeeze" => {
                let axes = ints_attr_or_input(node, ins, "axes", 1)?;
                reshape(x()?, &squeeze_shape(x()?.shape(), axes.as_deref())?)?
            }
            "Reshape" => {
                let allow = node.get_attr_opt::<i64>("allowzero")?.unwrap_or(0) != 0;
                reshape(
                    x()?,
                    &reshape_target(x()?.shape(), &req(ins, 1)?.ints(), allow)?,
                )?
            }
            "Flatten" => {
                let s = x()?.shape();
                let a = flatten_axis(node.get_attr_opt::<i64>("axis")?.unwrap_or(1), s.len())?;
                reshape(x()?, &[s[..a].iter().product(), s[a..].iter().product()])?
            }
            "Concat" => {
                let a = axis(node.get_attr::<i64>("axis")?, x()?.shape().len())?;
                let parts: Vec<&HostTensor> = ins.iter().flatten().collect();
                if parts.iter().all(|p| matches!(p, HostTensor::I(_))) {
                    let v: Vec<_> = parts.iter().map(|p| p.i64()).collect();
                    let views: Vec<_> = v.iter().map(|a| a.view()).collect();
                    HostTensor::I(ndarray::concatenate(Axis(a), &views)?)
                } else {
                    let v: Vec<_> = parts.iter().map(|p| p.f32()).collect();
                    let views: Vec<_> = v.iter().map(|a| a.view()).collect();
                    HostTensor::F(ndarray::concatenate(Axis(a), &views)?)
                }
            }
            "Slice" if opset >= 10 => {
                let (st, en) = (req(ins, 1)?.ints(), req(ins, 2)?.ints());
                let axes = ins.get(3).and_then(|v| v.as_ref()).map(|t| t.ints());
                let steps = ins.get(4).and_then(|v| v.as_ref()).map(|t| t.ints());
                let spec = slice_spec(x()?.shape(), &st, &en, axes.as_deref(), steps.as_deref())?;
                let mut cur = x()?.clone();
                for a in 0..spec.shape.len() {
                    let idx: Vec<i64> = (0..spec.shape[a] as i64)
                        .map(|i| spec.starts[a] + i * spec.steps[a])
                        .collect();
                    cur = gather(
                        &cur,
                        &HostTensor::I(ArrayD::from_shape_vec(IxDyn(&[idx.len()]), idx)?),
                        a,
                    )?;
                }
                cur
            }
            "Add" => binary(x()?, req(ins, 1)?, |a, b| a + b, |a, b| a.wrapping_add(b))?,
            "Sub" => binary(x()?, req(ins, 1)?, |a, b| a - b, |a, b| a.wrapping_sub(b))?,
            "Mul" => binary(x()?, req(ins, 1)?, |a, b| a * b, |a, b| a.wrapping_mul(b))?,
            "Div" => binary(
                x()?,
                req(ins, 1)?,
                |a, b| a / b,
                |a, b| if b == 0 { 0 } else { a / b },
            )?,
            "Pow" => binary(x()?, req(ins, 1)?, libm::powf, |a, b| {
                a.pow(b.clamp(0, 63) as u32)
            })?,
            "Equal" => HostTensor::I(
                binary(
                    x()?,
                    req(ins, 1)?,
                    |a, b| (a == b) as i32 as f32,
                    |a, b| (a == b) as i64,
                )?
                .i64(),
            ),
            "Less" => HostTensor::I(
                binary(
                    x()?,
                    req(ins, 1)?,
                    |a, b| (a < b) as i32 as f32,
                    |a, b| (a < b) as i64,
                )?
                .i64(),
            ),
            "Greater" => HostTensor::I(
                binary(
                    x()?,
                    req(ins, 1)?,
                    |a, b| (a > b) as i32 as f32,
                    |a, b| (a > b) as i64,
                )?
                .i64(),
            ),
            "Max" if ins.len() == 2 => binary(x()?, req(ins, 1)?, f32::max, i64::max)?,
            "Min" if ins.len() == 2 => binary(x()?, req(ins, 1)?, f32::min, i64::min)?,
            "Neg" => x()?.map_unary(|v| -v, |v| -v),
            "Abs" => x()?.map_unary(f32::abs, i64::abs),
            "Sqrt" => HostTensor::F(x()?.f32().mapv(f32::sqrt)),
            "Floor" => x()?.map_unary(f32::floor, |v| v),
            "Ceil" => x()?.map_unary(f32::ceil, |v| v),
            "Not" => HostTensor::I(x()?.i64().mapv(|v| (v == 0) as i64)),
            "Where" => {
                let (c, a, b) = (x()?.i64(), req(ins, 1)?, req(ins, 2)?);
                let shape = broadcast(&broadcast(c.shape(), a.shape())?, b.shape())?;
                let c = c
                    .broadcast(IxDyn(&shape))
                    .ok_or_else(|| anyhow!("where broadcast"))?
                    .to_owned();
                match (a, b) {
                    (HostTensor::I(p), HostTensor::I(q)) => {
                        let (p, q) = (
                            p.broadcast(IxDyn(&shape)).unwrap(),
                            q.broadcast(IxDyn(&shape)).unwrap(),
                        );
                        HostTensor::I(Zip::from(&c).and(&p).and(&q).map_collect(|&c, &p, &q| {
                            if c != 0 {
                                p
                            } else {
                                q
                            }
                        }))
                    }
                    _ => {
                        let (p, q) = (a.f32(), b.f32());
                        let (p, q) = (
                            p.broadcast(IxDyn(&shape)).unwrap(),
                            q.broadcast(IxDyn(&shape)).unwrap(),
                        );
                        HostTensor::F(Zip::from(&c).and(&p).and(&q).map_collect(|&c, &p, &q| {
                            if c != 0 {
                                p
                            } else {
                                q
                            }
                        }))
                    }
                }
            }
            "ConstantOfShape" => {
                let shape: Vec<usize> = x()?.ints().iter().map(|&d| d.max(0) as usize).collect();
                check_numel(&shape)?;
                match node.get_attr_opt::<&tract_onnx::pb::TensorProto>("value")? {
                    Some(t) => {
                        let v = HostTensor::from_tract(&load(t)?)?;
                        match v {
                            HostTensor::F(a) => HostTensor::F(ArrayD::from_elem(
                                IxDyn(&shape),
                                a.iter().next().copied().unwrap_or(0.0),
                            )),
                            HostTensor::I(a) => HostTensor::I(ArrayD::from_elem(
                                IxDyn(&shape),
                                a.iter().next().copied().unwrap_or(0),
                            )),
                        }
                    }
                    None => HostTensor::F(ArrayD::zeros(IxDyn(&shape))),
                }
            }
            "Range" => match (x()?, req(ins, 1)?, req(ins, 2)?) {
                (HostTensor::I(s), HostTensor::I(l), HostTensor::I(d)) => {
                    let (s, l, d) = (
                        s.iter().next().copied().unwrap_or(0),
                        l.iter().next().copied().unwrap_or(0),
                        d.iter().next().copied().unwrap_or(1),
                    );
                    if d == 0 {
                        bail!("range delta 0");
                    }
                    let n = ((l as f64 - s as f64) / d as f64).ceil().max(0.0);
                    if n > tern::ir::shape::MAX_ELEMS as f64 {
                        bail!("range of {n} elements is too large");
                    }
                    let n = n as usize;
                    HostTensor::I(ArrayD::from_shape_vec(
                        IxDyn(&[n]),
                        (0..n as i64).map(|i| s + i * d).collect(),
                    )?)
                }
                (s, l, d) => {
                    let first = |t: &HostTensor| {
                        t.floats()
                            .first()
                            .copied()
                            .ok_or_else(|| anyhow!("empty range bound"))
                    };
                    let (s, l, d) = (first(s)?, first(l)?, first(d)?);
                    if d == 0.0 || !((l - s) / d).is_finite() || ((l - s) / d) > 1e9 {
                        bail!("bad range {s}..{l} step {d}");
                    }
                    let n = ((l - s) / d).ceil().max(0.0) as usize;
                    HostTensor::F(ArrayD::from_shape_vec(
                        IxDyn(&[n]),
                        (0..n).map(|i| s + i as f32 * d).collect(),
                    )?)
                }
            },
            "Expand" => {
                let target: Vec<usize> = req(ins, 1)?
                    .ints()
                    .iter()
                    .map(|&d| d.max(0) as usize)
                    .collect();
                let shape = broadcast(x()?.shape(), &target)?;
                check_numel(&shape)?;
                match x()? {
                    HostTensor::F(a) => HostTensor::F(
                        a.broadcast(IxDyn(&shape))
                            .ok_or_else(|| anyhow!("expand"))?
                            .to_owned(),
                    ),
                    HostTensor::I(a) => HostTensor::I(
                        a.broadcast(IxDyn(&shape))
                            .ok_or_else(|| anyhow!("expand"))?
                            .to_owned(),
                    ),
                }
            }
            "Transpose" => {
                let r = x()?.shape().len();
                let perm: Vec<usize> = match node.get_attr_opt_vec::<i64>("perm")? {
                    Some(p) => p.iter().map(|&a| axis(a, r)).collect::<Result<_>>()?,
                    None => (0..r).rev().collect(),
                };
                match x()? {
                    HostTensor::F(a) => HostTensor::F(
                        a.clone()
                            .permuted_axes(IxDyn(&perm))
                            .as_standard_layout()
                            .into_owned(),
                    ),
                    HostTensor::I(a) => HostTensor::I(
                        a.clone()
                            .permuted_axes(IxDyn(&perm))
                            .as_standard_layout()
                            .into_owned(),
                    ),
                }
            }
            "Constant" => constant_value(node)?,
            _ => return Err(anyhow!("__not_folded")),
        }])
    })();
    match r {
        Err(e) if e.to_string() == "__not_folded" => None,
        r => Some(r),
    }
}

/// The value of a Constant node (any of its value attributes).
pub fn constant_value(node: &NodeProto) -> Result<HostTensor> {
    if let Some(t) = node.get_attr_opt::<&tract_onnx::pb::TensorProto>("value")? {
        return HostTensor::from_tract(&load(t)?);
    }
    if let Some(v) = node.get_attr_opt::<f32>("value_float")? {
        return Ok(HostTensor::F(ArrayD::from_elem(IxDyn(&[]), v)));
    }
    if let Some(v) = node.get_attr_opt::<i64>("value_int")? {
        return Ok(HostTensor::I(ArrayD::from_elem(IxDyn(&[]), v)));
    }
    if let Some(v) = node.get_attr_opt_vec::<f32>("value_floats")? {
        return Ok(HostTensor::F(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v)?));
    }
    if let Some(v) = node.get_attr_opt_vec::<i64>("value_ints")? {
        return Ok(HostTensor::I(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v)?));
    }
    bail!("Constant without a supported value attribute")
}
