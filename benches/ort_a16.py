#!/usr/bin/env python3
"""What 16-bit activations would buy on PP-OCR cls: ONNX Runtime's quantize_static (QDQ, per-channel int8
weights, MinMax on the 32 calibration images, as benches/peer.py makes ORT's int8 model) with int8 and with
int16 activations (and int16 weights too), each run by ORT (which computes 16-bit QDQ in float: a simulation
of the rounding, not an integer engine) on the 480 evaluation images; prints top-1 agreement with the float
model (all, text lines, photo strips: every third image is a strip, models/data/make_data.py) and the
outputs' relative L2. Needs models/fetch.sh and models/data/make_data.py run first.

Usage: ort_a16.py [--weights QDQ.onnx] [--widen K ...]
  --weights: quantize this model instead, the QDQ export of a `tern compress --int8 --weights-only` artifact
             (`tern export cls_w.tern --onnx-qdq QDQ.onnx`: float compute on tern's GPTQ-rounded int8 weights,
             BatchNorm folded): its weight DequantizeLinear nodes are folded into float weights for ORT's
             quantizer, and ORT's int8 weights are then replaced by tern's own codes and scales, so the
             weights are exactly GPTQ's and only the activations are ORT's.
  --widen:   also run each variant with its activation ranges widened K times over the calibrated ones
             (scales ×K, quantized with QDQKeepRemovableActivations: ORT otherwise drops a Relu or Clip
             before a quantizer and lets the quantizer's range clamp), e.g. --widen 1.25 2 4: shows what
             clipping at ranges calibrated on 32 images costs on the evaluation images."""
import os
import sys
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np
import onnx
from onnx import numpy_helper
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quant_pre_process, quantize_static

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "models", "cache", "ch_ppocr_mobile_v2.0_cls_infer.onnx")
DATA = os.path.join(ROOT, "models", "data", "out")


class Samples(CalibrationDataReader):
    def __init__(self, calib):
        self.rows = iter(calib)

    def get_next(self):
        row = next(self.rows, None)
        return None if row is None else {"x": row.reshape(1, 3, 48, 192)}


def run(path, images):
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"x": images[i : i + 1]})[0] for i in range(len(images))]).reshape(len(images), -1)


def fold_weights(path, out):
    """The model at `path` with every DequantizeLinear of an initializer folded into a float initializer;
    returns {float initializer name: (codes, scales)} of the folded weights."""
    m = onnx.load(path)
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    codes, keep, rename = {}, [], {}
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in init:
            q, s = init[n.input[0]], init[n.input[1]]
            if len(n.input) > 2 and np.any(init[n.input[2]] != 0):
                raise SystemExit(f"{path}: weight {n.input[0]} has a non-zero zero point")
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            if s.ndim:
                shape[axis] = -1
            name = f"w{len(codes)}"
            m.graph.initializer.append(numpy_helper.from_array((q * s.reshape(shape)).astype(np.float32), name))
            codes[name], rename[n.output[0]] = (q, s), name
        else:
            keep.append(n)
    for n in keep:
        for k, i in enumerate(n.input):
            n.input[k] = rename.get(i, i)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    onnx.save(m, out)
    return codes


def set_weights(path, codes):
    """Replaces ORT's quantized weights (`<name>_quantized`) by tern's codes and scales, in place."""
    m = onnx.load(path)
    init = {i.name: i for i in m.graph.initializer}
    done = 0
    for n in m.graph.node:
        name = n.input[0][: -len("_quantized")]
        if n.op_type == "DequantizeLinear" and n.input[0].endswith("_quantized") and name in codes:
            q, s = codes[name]
            old = numpy_helper.to_array(init[n.input[0]])
            init[n.input[0]].CopyFrom(numpy_helper.from_array(q.astype(old.dtype), n.input[0]))
            init[n.input[1]].CopyFrom(numpy_helper.from_array(s.astype(np.float32), n.input[1]))
            zp = numpy_helper.to_array(init[n.input[2]])
            init[n.input[2]].CopyFrom(numpy_helper.from_array(np.zeros_like(zp), n.input[2]))
            done += 1
    if done != len(codes):
        raise SystemExit(f"{path}: {done} of {len(codes)} weights found in ORT's model")
    onnx.save(m, path)


def widen(path, k, out):
    """`path` with every activation quantizer's range widened k times (weights and biases untouched)."""
    m = onnx.load(path)
    init = {i.name: i for i in m.graph.initializer}
    consts = {i for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in init for i in n.input[1:]}
    pairs = {(n.input[1], n.input[2]) for n in m.graph.node
             if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[1] not in consts}
    for s, z in pairs:
        init[s].CopyFrom(numpy_helper.from_array((numpy_helper.to_array(init[s]) * k).astype(np.float32), s))
        zp = numpy_helper.to_array(init[z])
        init[z].CopyFrom(numpy_helper.from_array(np.round(zp / k).astype(zp.dtype), z))
    onnx.save(m, out)


def main():
    args, weights, factors = sys.argv[1:], None, [1.0]
    while args:
        if args[0] == "--weights" and len(args) > 1:
            weights, args = args[1], args[2:]
        elif args[0] == "--widen" and len(args) > 1:
            args = args[1:]
            while args and not args[0].startswith("--"):
                factors.append(float(args.pop(0)))
        else:
            raise SystemExit(__doc__)
    calib, images = np.load(os.path.join(DATA, "cls_calib.npy"))[:32], np.load(os.path.join(DATA, "cls_eval.npy"))
    f = run(SRC, images)
    strip = np.arange(len(images)) % 3 == 2
    # 16-bit QuantizeLinear/DequantizeLinear: ORT's com.microsoft forms (UseQDQContribOps)
    variants = [
        ("W8A8", QuantType.QInt8, QuantType.QInt8, {}),
        ("W8A16", QuantType.QInt8, QuantType.QInt16, {"UseQDQContribOps": True}),
        ("W16A16", QuantType.QInt16, QuantType.QInt16, {"UseQDQContribOps": True}),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        # peer.py's preparation: opset 13 (per-channel DequantizeLinear), then ORT's pre-processing
        m, src = onnx.load(SRC), os.path.join(tmp, "opset13.onnx")
        onnx.save(onnx.version_converter.convert_version(m, 13), src)
        pre, codes = os.path.join(tmp, "pre.onnx"), {}
        if weights:
            codes = fold_weights(weights, pre)
            q = run(pre, images)
            a = q.argmax(1) == f.argmax(1)
            print(f"{weights}: weights only (float activations) {a.mean():.3f}, "
                  f"rel-L2 {np.linalg.norm(q - f) / np.linalg.norm(f):.4f}")
        else:
            quant_pre_process(src, pre, skip_symbolic_shape=True)
        print("variant  agreement (all, text, strips)  rel-L2 vs float")
        for name, wt, at, extra in variants:
            for keep in [False] + [True] * (len(factors) > 1):
                path = os.path.join(tmp, f"{name}{'_keep' * keep}.onnx")
                quantize_static(pre, path, Samples(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                                weight_type=wt, activation_type=at,
                                extra_options={**extra, "QDQKeepRemovableActivations": keep})
                if codes and wt == QuantType.QInt8:
                    set_weights(path, codes)
            for k in factors:
                path = os.path.join(tmp, f"{name}.onnx")
                if k != 1.0:
                    path = os.path.join(tmp, f"{name}x{k}.onnx")
                    widen(os.path.join(tmp, f"{name}_keep.onnx"), k, path)
                q = run(path, images)
                a = q.argmax(1) == f.argmax(1)
                rel = np.linalg.norm(q - f) / np.linalg.norm(f)
                label = name if k == 1.0 else f"{name} x{k:g}"
                print(f"{label:12}  {a.mean():.3f} ({a.sum()}/{len(a)}), {a[~strip].sum()}/{(~strip).sum()}, "
                      f"{a[strip].sum()}/{strip.sum()}  {rel:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
