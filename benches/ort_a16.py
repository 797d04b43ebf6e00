#!/usr/bin/env python3
"""What 16-bit activations would buy on PP-OCR cls: ONNX Runtime's quantize_static (QDQ, per-channel int8
weights, MinMax on the 32 calibration images, as benches/peer.py makes ORT's int8 model) with int8 and with
int16 activations (and int16 weights too), each run by ORT (which computes 16-bit QDQ in float: a simulation
of the rounding, not an integer engine) on the 480 evaluation images; prints top-1 agreement with the float
model (all, text lines, photo strips: every third image is a strip, models/data/make_data.py) and the
outputs' relative L2. Needs models/fetch.sh and models/data/make_data.py run first. Usage: ort_a16.py"""
import os
import sys
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np
import onnx
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


def main():
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
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        print("variant  agreement (all, text, strips)  rel-L2 vs float")
        for name, wt, at, extra in variants:
            out = os.path.join(tmp, f"{name}.onnx")
            quantize_static(pre, out, Samples(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                            weight_type=wt, activation_type=at, extra_options=extra)
            q = run(out, images)
            a = q.argmax(1) == f.argmax(1)
            rel = np.linalg.norm(q - f) / np.linalg.norm(f)
            print(f"{name:7}  {a.mean():.3f} ({a.sum()}/{len(a)}), {a[~strip].sum()}/{(~strip).sum()}, "
                  f"{a[strip].sum()}/{strip.sum()}  {rel:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
