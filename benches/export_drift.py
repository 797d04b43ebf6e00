#!/usr/bin/env python3
"""How far ONNX Runtime's run of `tern export --onnx-qdq` is from tern's own run of the artifact.

    python3 benches/export_drift.py MODEL.tern DATA.npy [--samples N] [--binary-ops integer|qdq] [--exact]

Exports MODEL.tern (with the release `tern` binary: build `-p tern-tools --release` first, or set TERN),
runs the first N samples of DATA.npy (shape (N, *input shape without the batch axis of 1), or with it) through
`tern run` and through ONNX Runtime on the export, and prints per sample the first output's largest absolute
difference, its relative L2 and the fraction of values that differ.
"""
import argparse
import os
import subprocess
import tempfile

import numpy as np
import onnxruntime as ort

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("data")
p.add_argument("--samples", type=int, default=4)
p.add_argument("--binary-ops", default="integer")
p.add_argument("--exact", action="store_true")
a = p.parse_args()
tern = os.environ.get("TERN", os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "tern"))
with tempfile.TemporaryDirectory() as td:
    onnx_path = os.path.join(td, "export.onnx")
    subprocess.run([tern, "export", a.model, "--onnx-qdq", onnx_path, "--binary-ops", a.binary_ops, "-q"]
                   + (["--exact"] if a.exact else []), check=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    xs = np.load(a.data).astype(np.float32)
    for i in range(min(a.samples, len(xs))):
        x = xs[i].reshape([d if isinstance(d, int) else 1 for d in inp.shape])
        xp, od = os.path.join(td, "x.npy"), os.path.join(td, "out")
        np.save(xp, x)
        subprocess.run([tern, "run", a.model, "--input", f"{inp.name}={xp}", "--output-dir", od], check=True,
                       capture_output=True)
        name = s.get_outputs()[0].name
        fname = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
        t = np.load(os.path.join(od, f"{fname}.npy"))
        o = s.run(None, {inp.name: x})[0]
        d = np.abs(t - o)
        rel = np.linalg.norm(t - o) / max(np.linalg.norm(t), 1e-30)
        print(f"sample {i}: max abs {d.max():.5f}, rel-L2 {rel:.5f}, differing {np.mean(d > 0):.4f}")
