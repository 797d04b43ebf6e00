#!/usr/bin/env python3
"""Prints the facts of models/README.md (the model card) for the sample models.

    python3 models/model_card.py            # facts per model and input shape
    python3 models/model_card.py --details  # also every op's distinct attribute/input combinations

Needs the PP-OCR files in models/cache/ (`bash models/fetch.sh`) and models/digits/digits.onnx.

Per model: file size and sha256, ir_version/producer/opset, the declared input dims (which are dynamic and how
they are written), outputs with their shapes at the fixed input shape, the op histogram (Constant included),
parameter counts, and MACs at fixed input shapes via onnx shape inference (where it leaves a shape unknown,
as in rec, from one onnxruntime run on zeros):
  Conv: out_elems * Cin/group * kh * kw;  ConvTranspose: in_elems * Cout/group * kh * kw;  MatMul/Gemm: M*N*K.
Parameters: PaddlePaddle exports keep weights in Constant nodes, not initializers, so both are counted.
`params` is every float element of initializers and Constant nodes; the breakdown splits it into weights
(Conv/ConvTranspose/MatMul/Gemm inputs 1-2, and the Constant->Reshape->Add conv biases of the cls SE blocks),
BatchNormalization scale/bias and mean/var, other learned tensors (PP-LCNetV3 per-layer affine scale/bias,
ConvTranspose biases added by Add, the fc bias), rank-0 helper scalars (the 3/6/0 of hard-swish, Clip bounds)
and Resize roi/scales.
"""
import collections
import hashlib
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = [
    ("digits", "digits/digits.onnx", [(1, 64)]),
    ("PP-OCR mobile v2.0 cls", "cache/ch_ppocr_mobile_v2.0_cls_infer.onnx", [(1, 3, 48, 192)]),
    ("PP-OCRv4 det", "cache/ch_PP-OCRv4_det_infer.onnx", [(1, 3, 320, 320), (1, 3, 736, 736)]),
    ("PP-OCRv4 rec", "cache/ch_PP-OCRv4_rec_infer.onnx", [(1, 3, 48, 320)]),
]


def dim_str(d):
    if d.HasField("dim_value"):
        return str(d.dim_value)
    if d.HasField("dim_param"):
        return repr(d.dim_param)
    return "unset"


def constants(g):
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            a = n.attribute[0]
            assert a.name == "value", (n.output, a.name)
            consts[n.output[0]] = numpy_helper.to_array(a.t)
    return consts


def param_breakdown(g, consts):
    consumers = collections.defaultdict(list)
    for n in g.node:
        for k, i in enumerate(n.input):
            consumers[i].append((n, k))
    kinds = collections.Counter()
    for name, v in consts.items():
        if v.dtype.kind != "f":
            continue
        uses = consumers[name]
        ops = {(n.op_type, k) for n, k in uses}
        if v.ndim == 0:
            kind = "helper scalars (rank 0)"
        elif any(op in ("Conv", "ConvTranspose", "MatMul", "Gemm") and k >= 1 for op, k in ops):
            kind = "weights"
        elif any(op == "Reshape" and k == 0 for op, k in ops):
            kind = "weights"  # cls: conv bias as Constant -> Reshape([1,C,1,1]) -> Add
        elif any(op == "BatchNormalization" and k in (1, 2) for op, k in ops):
            kind = "BN scale/bias"
        elif any(op == "BatchNormalization" and k in (3, 4) for op, k in ops):
            kind = "BN mean/var"
        elif any(op == "Resize" for op, k in ops):
            kind = "Resize roi/scales"
        else:
            kind = "other learned (affine, biases)"
        kinds[kind] += int(v.size)
    return dict(sorted(kinds.items()))


def runtime_shapes(path, shape, names):
    """Shapes that onnx shape inference leaves unknown (rec: Reshape targets computed by Shape -> Cast ->
    Slice -> Concat chains), taken from one onnxruntime run on zeros."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {}
    m = onnx.load(path)
    have = {o.name for o in m.graph.output}
    for t in dict.fromkeys(names):
        if t not in have:
            m.graph.output.append(helper.make_empty_tensor_value_info(t))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    outs = s.run(None, {m.graph.input[0].name: np.zeros(shape, np.float32)})
    return {o.name: list(v.shape) for o, v in zip(s.get_outputs(), outs)}


def facts(path, shape):
    m = onnx.load(path)
    g = m.graph
    inits = {t.name for t in g.initializer}
    x = [i for i in g.input if i.name not in inits][0]
    declared = [dim_str(d) for d in x.type.tensor_type.shape.dim]
    declared_out = {o.name: [dim_str(d) for d in o.type.tensor_type.shape.dim] for o in g.output}
    for d, v in zip(x.type.tensor_type.shape.dim, shape):
        d.ClearField("dim_param")
        d.dim_value = v
    m = shape_inference.infer_shapes(m)
    g = m.graph
    shapes = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    consts = constants(g)
    params = sum(int(v.size) for v in consts.values() if v.dtype.kind == "f")
    needed = [t for n in g.node if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm") for t in (n.input[0], n.output[0])]
    needed += [o.name for o in g.output]
    if any(not shapes.get(t) or 0 in shapes[t] for t in needed):
        shapes.update(runtime_shapes(path, shape, needed))
    macs = collections.Counter()
    for n in g.node:
        if n.op_type == "Conv":
            w = consts[n.input[1]]
            macs[n.op_type] += int(np.prod(shapes[n.output[0]])) * int(np.prod(w.shape[1:]))
        elif n.op_type == "ConvTranspose":
            w = consts[n.input[1]]
            macs[n.op_type] += int(np.prod(shapes[n.input[0]])) * int(np.prod(w.shape[1:]))
        elif n.op_type in ("MatMul", "Gemm") and n.input[1] not in consts:  # activation x activation
            a_shape, out = shapes[n.input[0]], shapes[n.output[0]]
            trans_a = any(a.name == "transA" and a.i for a in n.attribute)
            macs[n.op_type] += int(np.prod(out)) * (a_shape[-2] if trans_a else a_shape[-1])
        elif n.op_type in ("MatMul", "Gemm"):
            b = consts[n.input[1]].shape
            trans_b = any(a.name == "transB" and a.i for a in n.attribute)
            k = b[-1] if trans_b else b[-2]
            n_out = b[-2] if trans_b else b[-1]
            out = shapes.get(n.output[0])
            if not out or 0 in out:  # unknown and no onnxruntime: assume [1, N]
                out = [1, n_out]
            macs[n.op_type] += int(np.prod(out)) * k
    hist = collections.Counter(n.op_type for n in g.node)
    return dict(
        ir_version=m.ir_version,
        producer=f"{m.producer_name} {m.producer_version}".strip(),
        opset=[(o.domain or "ai.onnx", o.version) for o in m.opset_import],
        input=(x.name, onnx.TensorProto.DataType.Name(x.type.tensor_type.elem_type), declared),
        outputs=[
            (o.name, onnx.TensorProto.DataType.Name(o.type.tensor_type.elem_type), declared_out[o.name], shapes.get(o.name))
            for o in g.output
        ],
        ops=dict(sorted(hist.items())),
        nodes_without_constant=sum(v for k, v in hist.items() if k != "Constant"),
        params=params,
        params_breakdown=param_breakdown(g, consts),
        macs=sum(macs.values()),
        macs_by_op=dict(macs),
    )


def details(path):
    """Every op type's distinct (attributes, input kinds) combinations, with counts."""
    m = onnx.load(path)
    g = m.graph
    consts = constants(g)
    combos = collections.Counter()
    for n in g.node:
        if n.op_type == "Constant":
            v = consts[n.output[0]]
            combos[(n.op_type, (("dtype", v.dtype.name), ("rank", v.ndim)), ())] += 1
            continue
        attrs = []
        for a in n.attribute:
            v = helper.get_attribute_value(a)
            attrs.append((a.name, v.decode() if isinstance(v, bytes) else v if not isinstance(v, list) else tuple(v)))
        ins = []
        for k, i in enumerate(n.input):
            if not i:
                ins.append("(none)")
            elif i in consts:
                v = consts[i]
                small = v.size <= 4 and (v.dtype.kind != "f" or n.op_type in ("Clip", "Resize", "Div") or v.ndim == 0)
                ins.append(f"const {v.dtype.name}{list(v.shape)}" + (f"={v.tolist()}" if small else ""))
            else:
                ins.append("x")
        if n.op_type in ("Conv", "ConvTranspose"):
            w = consts[n.input[1]]
            grp = dict(attrs).get("group", 1)
            cin = w.shape[1] * grp if n.op_type == "Conv" else w.shape[0]
            kind = "depthwise" if n.op_type == "Conv" and grp > 1 and grp == cin and w.shape[1] == 1 else "dense" if grp == 1 else "grouped"
            attrs = [a for a in attrs if a[0] != "group"] + [("group", kind)]
            ins = ["x", "W"] + (["bias"] if len(n.input) > 2 and n.input[2] else [])
        elif n.op_type in ("BatchNormalization",):
            ins = ["x"] + ["const f32[C]"] * 4
        elif n.op_type in ("Add", "Mul", "Sub", "Div") and any(s.startswith("const") for s in ins):
            ins = [s if s == "x" else s.split("=")[0] + ("=" + s.split("=")[1] if "[]" in s else "") for s in ins]
        combos[(n.op_type, tuple(sorted(attrs)), tuple(ins))] += 1
    lines = []
    for (op, attrs, ins), c in sorted(combos.items(), key=lambda kv: (kv[0][0], -kv[1])):
        a = ", ".join(f"{k}={v}" for k, v in attrs)
        lines.append(f"  {c:4d} x {op}({', '.join(ins)})" + (f"  [{a}]" if a else ""))
    return lines


def main():
    want_details = "--details" in sys.argv[1:]
    for name, rel, shapes in MODELS:
        path = os.path.join(HERE, rel)
        if not os.path.exists(path):
            print(f"{name}: {path} missing (bash models/fetch.sh / python3 models/digits/make.py)")
            continue
        with open(path, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        print(f"== {name}: models/{rel}, {os.path.getsize(path)} B, sha256 {sha}")
        for s in shapes:
            print(f"  @ input {s}:")
            for k, v in facts(path, s).items():
                print(f"    {k}: {v}")
        if want_details:
            print("  op details (count x op(inputs) [attributes]):")
            print("\n".join(details(path)))


if __name__ == "__main__":
    main()
