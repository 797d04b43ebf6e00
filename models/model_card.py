#!/usr/bin/env python3
"""Prints the facts of models/README.md (the model card) for the sample models: inputs/outputs, opset, op
histogram, parameter count (initializers and Constant nodes; PaddlePaddle exports keep weights in
Constant nodes) and MACs (Conv: out_elems·Cin/group·kh·kw; ConvTranspose: in_elems·Cout/group·kh·kw;
MatMul/Gemm: M·N·K) at fixed input shapes, via onnx shape inference.

    python3 models/model_card.py
"""
import collections
import os

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

HERE = os.path.dirname(os.path.abspath(__file__))


def facts(path, shape):
    m = onnx.load(path)
    g = m.graph
    inits = {t.name for t in g.initializer}
    x = [i for i in g.input if i.name not in inits][0]
    declared = [d.dim_value or d.dim_param for d in x.type.tensor_type.shape.dim]
    for d, v in zip(x.type.tensor_type.shape.dim, shape):
        d.ClearField("dim_param")
        d.dim_value = v
    m = shape_inference.infer_shapes(m)
    g = m.graph
    shapes = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
    params = sum(int(np.prod(v.shape)) for v in consts.values() if v.dtype.kind == "f")
    macs = 0
    for n in g.node:
        if n.op_type == "Conv":
            w = consts[n.input[1]]
            macs += int(np.prod(shapes[n.output[0]])) * int(np.prod(w.shape[1:]))
        elif n.op_type == "ConvTranspose":
            w = consts[n.input[1]]
            macs += int(np.prod(shapes[n.input[0]])) * int(np.prod(w.shape[1:]))
        elif n.op_type in ("MatMul", "Gemm"):
            b = consts[n.input[1]].shape
            trans_b = any(a.name == "transB" and a.i for a in n.attribute)
            k = b[-1] if trans_b else b[-2]
            n_out = b[-2] if trans_b else b[-1]
            out = shapes.get(n.output[0]) or [1, n_out]  # inference may stop at a Reshape: batch 1
            macs += int(np.prod(out)) * k
    hist = collections.Counter(n.op_type for n in g.node)
    opset = [(o.domain or "ai.onnx", o.version) for o in m.opset_import]
    outs = [(o.name, shapes.get(o.name)) for o in g.output]
    return dict(input=(x.name, declared), outputs=outs, opset=opset, ops=dict(sorted(hist.items())), params=params, macs=macs)


def main():
    models = [
        ("digits", os.path.join(HERE, "digits/digits.onnx"), [(1, 64)]),
        ("PP-OCR cls", os.path.join(HERE, "cache/ch_ppocr_mobile_v2.0_cls_infer.onnx"), [(1, 3, 48, 192)]),
        ("PP-OCRv4 det", os.path.join(HERE, "cache/ch_PP-OCRv4_det_infer.onnx"), [(1, 3, 320, 320), (1, 3, 736, 736)]),
    ]
    for name, path, shapes in models:
        for s in shapes:
            f = facts(path, s)
            print(f"{name} @ {s}: size {os.path.getsize(path)} B")
            for k, v in f.items():
                print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
