#!/usr/bin/env python3
"""Makes quantized ONNX test models with ONNX Runtime's own quantizer, and ORT's outputs on them.

    python3 tests/qdq/gen_qdq.py OUT_DIR

A small seeded float CNN (Conv+Relu, depthwise Conv+Relu, MaxPool, 1x1 Conv, residual Add, Sigmoid gate,
2x2 stride-2 ConvTranspose+Relu, GlobalAveragePool, MatMul) is quantized by `onnxruntime.quantization` in four ways, one directory each:

  qdq_s8s8_channel   quantize_static, QDQ, int8 activations and weights, per-channel weights
  qdq_u8s8_tensor    quantize_static, QDQ, uint8 activations, int8 per-tensor weights
  qoperator_u8s8     quantize_static, QOperator form (QLinearConv, QLinearMatMul), uint8 activations
  dynamic_u8         quantize_dynamic (DynamicQuantizeLinear, ConvInteger, MatMulInteger)

The directory `intops` holds a float CNN of ops tern runs in integers (3x3 Conv+Relu, strided depthwise
Conv, 1x1 Conv with bias, GlobalAveragePool, a per-channel Mul by it, a batched MatMul, a residual Add),
with calib.npy and inputs.npy, for `tern export --exact`. The directory `binary` holds a float model of element-wise Add/Sub/Mul only (float.onnx: operands sliced
from one input, broadcast per channel and per row, a Relu after an Add), with calib.npy and inputs.npy, for
tern's own quantization and its ONNX export.

Each of the four quantized directories holds model.onnx, float.onnx (the float model), calib.npy (16 samples, the calibration set
both ORT and tern use), inputs.npy (8 evaluation samples), ort.npy (ORT's outputs on the quantized model),
float.npy (ORT's outputs on the float model) and case.json (the output's quantization step where static).
Deterministic; skipped when OUT_DIR/stamp matches this script's version.
"""
import json
import os
import sys

import numpy as np

VERSION = "qdq-5"


def float_model(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(42)

    def w(name, *shape, scale=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [
        w("w1", 8, 3, 3, 3), w("b1", 8, scale=0.1),
        w("w2", 8, 1, 3, 3), w("b2", 8, scale=0.1),
        w("w3", 8, 8, 1, 1), w("b3", 8, scale=0.1),
        w("w4", 8, 8, 1, 1), w("b4", 8, scale=0.1),
        w("w5", 8, 8, 2, 2), w("b5", 8, scale=0.1),
        w("fc", 8, 10), w("fcb", 10, scale=0.1),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=8, name="dw"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
        helper.make_node("Conv", ["p", "w3", "b3"], ["c3"], name="pw"),
        helper.make_node("Add", ["c3", "p"], ["a"], name="residual"),
        helper.make_node("Conv", ["a", "w4", "b4"], ["c4"], name="gate_conv"),
        helper.make_node("Sigmoid", ["c4"], ["s"], name="gate"),
        helper.make_node("Mul", ["a", "s"], ["m"], name="gated"),
        helper.make_node("ConvTranspose", ["m", "w5", "b5"], ["u"], kernel_shape=[2, 2], strides=[2, 2],
                         name="up"),
        helper.make_node("Relu", ["u"], ["ur"], name="relu_up"),
        helper.make_node("GlobalAveragePool", ["ur"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "fc"], ["mm"], name="fc"),
        helper.make_node("Add", ["mm", "fcb"], ["y"], name="fc_bias"),
    ]
    g = helper.make_graph(
        nodes, "qdq_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)


def save_model(path, name, nodes, inits, in_shape, out_shape):
    """A checked opset-17 model of `nodes` from float input x to float output y."""
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)


def binary_model(path):
    """x (1, 8, 32, 40) -> c = Conv1x1(x) (int8 activations after it); a = c[:, :4], b = c[:, 4:],
    gate = c[:, 4:, :1, :1], row = c[:, :4, :1, :]; y = (Relu(a + b) * gate - a) * b + row."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(11)
    w = lambda n, *shape: numpy_helper.from_array(rng.normal(0, 0.4, shape).astype(np.float32), n)

    def sl(name, out, starts, ends, axes):
        c = lambda n, v: helper.make_tensor(f"{name}_{n}", TensorProto.INT64, [len(v)], v)
        inits.extend([c("s", starts), c("e", ends), c("a", axes)])
        return helper.make_node("Slice", ["c", f"{name}_s", f"{name}_e", f"{name}_a"], [out], name=name)

    inits = [w("w_in", 8, 8, 1, 1)]
    nodes = [
        helper.make_node("Conv", ["x", "w_in"], ["c"], name="conv_in"),
        sl("slice_a", "a", [0], [4], [1]),
        sl("slice_b", "b", [4], [8], [1]),
        sl("slice_gate", "gate", [4, 0, 0], [8, 1, 1], [1, 2, 3]),
        sl("slice_row", "row", [0, 0], [4, 1], [1, 2]),
        helper.make_node("Add", ["a", "b"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["r"], name="relu"),
        helper.make_node("Mul", ["r", "gate"], ["m"], name="mul_channel"),
        helper.make_node("Sub", ["m", "a"], ["d"], name="sub"),
        helper.make_node("Mul", ["d", "b"], ["p"], name="mul"),
        helper.make_node("Add", ["p", "row"], ["y"], name="add_row"),
    ]
    save_model(path, "binary", nodes, inits, [1, 8, 32, 40], [1, 4, 32, 40])


def intops_model(path):
    """x (1, 8, 32, 40) -> c = Relu(Conv3x3(x)) (16 ch) -> d = depthwise Conv3x3 stride 2 -> p = Conv1x1(d) + b
    -> g = GlobalAveragePool(p) -> m = p * g -> y = MatMul(m, W[20, 20]) + m."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(13)
    w = lambda n, *shape, s=0.3: numpy_helper.from_array(rng.normal(0, s, shape).astype(np.float32), n)
    inits = [w("w1", 16, 8, 3, 3), w("w2", 16, 1, 3, 3, s=0.5), w("w3", 16, 16, 1, 1), w("b3", 16, s=0.2),
             w("fc", 20, 20, s=0.25)]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c1"], ["c"], name="relu"),
        helper.make_node("Conv", ["c", "w2"], ["d"], pads=[1, 1, 1, 1], strides=[2, 2], group=16, name="dw"),
        helper.make_node("Conv", ["d", "w3", "b3"], ["p"], name="pw"),
        helper.make_node("GlobalAveragePool", ["p"], ["g"], name="gap"),
        helper.make_node("Mul", ["p", "g"], ["m"], name="scale"),
        helper.make_node("MatMul", ["m", "fc"], ["mm"], name="fc"),
        helper.make_node("Add", ["mm", "m"], ["y"], name="residual"),
    ]
    save_model(path, "intops", nodes, inits, [1, 8, 32, 40], [1, 16, 16, 20])


def out_step(path):
    """Scale of the DequantizeLinear (or QLinear op) that produces the graph output, if any."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] not in inits]
    return float(np.asarray(inits[dq[-1].input[1]]).reshape(-1)[0]) if dq else None


def main():
    out = sys.argv[1]
    stamp = os.path.join(out, "stamp")
    if os.path.exists(stamp) and open(stamp).read() == VERSION:
        return
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    calib = rng.uniform(-1, 1, (16, 1, 3, 16, 16)).astype(np.float32)
    inputs = rng.uniform(-1, 1, (8, 1, 3, 16, 16)).astype(np.float32)
    fpath = os.path.join(out, "float.onnx")
    float_model(fpath)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": c} for c in calib])

        def get_next(self):
            return next(self.it, None)

    def run(path):
        s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return np.stack([s.run(None, {"x": x})[0] for x in inputs])

    fref = run(fpath)
    cases = {
        "qdq_s8s8_channel": dict(quant_format=QuantFormat.QDQ, per_channel=True,
                                 activation_type=QuantType.QInt8, weight_type=QuantType.QInt8),
        "qdq_u8s8_tensor": dict(quant_format=QuantFormat.QDQ, per_channel=False,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8),
        "qoperator_u8s8": dict(quant_format=QuantFormat.QOperator, per_channel=True,
                               activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                               op_types_to_quantize=["Conv", "MatMul"]),
    }
    for name, kw in cases.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        mpath = os.path.join(d, "model.onnx")
        quantize_static(fpath, mpath, Reader(), **kw)
        np.save(os.path.join(d, "ort.npy"), run(mpath))
        json.dump({"static": True, "out_step": out_step(mpath)}, open(os.path.join(d, "case.json"), "w"))
    d = os.path.join(out, "dynamic_u8")
    os.makedirs(d, exist_ok=True)
    mpath = os.path.join(d, "model.onnx")
    quantize_dynamic(fpath, mpath, op_types_to_quantize=["Conv", "MatMul"], weight_type=QuantType.QUInt8)
    np.save(os.path.join(d, "ort.npy"), run(mpath))
    json.dump({"static": False, "out_step": None}, open(os.path.join(d, "case.json"), "w"))
    for name in list(cases) + ["dynamic_u8"]:
        d = os.path.join(out, name)
        np.save(os.path.join(d, "calib.npy"), calib[:, 0])
        np.save(os.path.join(d, "inputs.npy"), inputs[:, 0])
        np.save(os.path.join(d, "float.npy"), fref)
    d = os.path.join(out, "binary")
    os.makedirs(d, exist_ok=True)
    binary_model(os.path.join(d, "float.onnx"))
    # operands of both signs and unequal spreads, so the zero points and scales differ per tensor
    spread = np.array([1.0, 0.5, 2.0, 1.0, 0.7, 1.5, 0.3, 1.0], np.float32)[:, None, None]
    shift = np.array([0.2, -0.4, 0.0, 0.5, 0.3, -0.2, 0.6, 0.0], np.float32)[:, None, None]
    np.save(os.path.join(d, "calib.npy"), (rng.uniform(-1, 1, (16, 8, 32, 40)) * spread + shift).astype(np.float32))
    np.save(os.path.join(d, "inputs.npy"), (rng.uniform(-1, 1, (16, 8, 32, 40)) * spread + shift).astype(np.float32))
    d = os.path.join(out, "intops")
    os.makedirs(d, exist_ok=True)
    intops_model(os.path.join(d, "float.onnx"))
    np.save(os.path.join(d, "calib.npy"), rng.uniform(-1, 1, (16, 8, 32, 40)).astype(np.float32))
    np.save(os.path.join(d, "inputs.npy"), rng.uniform(-1, 1, (16, 8, 32, 40)).astype(np.float32))
    open(stamp, "w").write(VERSION)
    print(f"gen_qdq: {len(cases) + 1} quantized models in {out}")


if __name__ == "__main__":
    main()
