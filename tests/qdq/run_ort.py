#!/usr/bin/env python3
"""Runs an ONNX model with ONNX Runtime (CPU) on each row of an .npy batch: the reference for
`tern export --onnx-qdq` in tests/tests/qdq.rs.

    python3 tests/qdq/run_ort.py MODEL.onnx INPUTS.npy OUT.npy

INPUTS.npy has shape (N, *input shape without the batch axis); OUT.npy gets (N, *first output shape).
"""
import sys

import numpy as np
import onnxruntime as ort

model, inputs, out = sys.argv[1:4]
s = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name
xs = np.load(inputs).astype(np.float32)
np.save(out, np.stack([s.run(None, {name: x[None]})[0] for x in xs]))
