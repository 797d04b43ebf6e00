#!/usr/bin/env python3
"""ORT int8 fidelity: ONNX Runtime on each float model and on its int8 QDQ model (the one benches/peer.py builds
and caches, same calibration samples) over the model's evaluation set, batch 1.

    python3 benches/fidelity.py [--models digits cls det320 det736] [--json]

Per model: rel-L2 (‖int8 − float‖ / ‖float‖ over all outputs of the set) and cosine of int8 vs float outputs,
and the task's measure: digits accuracy on its test split (float, int8, drop in points); cls top-1 agreement
of int8 with float; det IoU of the int8 and float text maps (probability > 0.3, the OCR pipeline's threshold)
over every pixel of the set. Prints a markdown table, or JSON with --json.
"""
import argparse
import json
import os
import sys

from peer import MODELS, ROOT, ensure_ort, ort_int8_model

# name: (inputs, labels or None); disjoint from the calibration sets in peer.MODELS
EVAL = {
    "digits": ("models/digits/X_test.npy", "models/digits/y_test.npy"),
    "cls": ("models/data/out/cls_eval.npy", None),
    "det320": ("models/data/out/det320_eval.npy", None),
    "det736": ("models/data/out/det736_eval.npy", None),
}
DET_THRESHOLD = 0.3


def outputs(path, inp, shape, xs):
    import numpy as np
    import onnxruntime as ort

    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return np.stack([s.run(None, {inp: x.reshape(shape)})[0][0] for x in xs]).astype(np.float64)


def evaluate(name):
    import numpy as np

    rel, inp, shape, _ = MODELS[name]
    xs_rel, labels = EVAL[name]
    xs = np.load(os.path.join(ROOT, xs_rel))
    f = outputs(os.path.join(ROOT, rel), inp, shape, xs)
    q = outputs(ort_int8_model(name), inp, shape, xs)
    r = {
        "model": name,
        "eval": xs_rel,
        "samples": len(xs),
        "rel_l2": float(np.linalg.norm(q - f) / np.linalg.norm(f)),
        "cosine": float((q * f).sum() / (np.linalg.norm(q) * np.linalg.norm(f))),
    }
    if labels:
        y = np.load(os.path.join(ROOT, labels))
        r["float_accuracy"] = float((f.argmax(1) == y).mean())
        r["int8_accuracy"] = float((q.argmax(1) == y).mean())
        r["drop_points"] = 100 * (r["float_accuracy"] - r["int8_accuracy"])
    elif name == "cls":
        r["top1_agreement"] = float((f.argmax(1) == q.argmax(1)).mean())
    else:
        a, b = f > DET_THRESHOLD, q > DET_THRESHOLD
        r["text_iou"] = float((a & b).sum() / (a | b).sum())
        r["float_text_fraction"] = float(a.mean())
    return r


def task_cells(r):
    """(measure, float, ORT int8) for the table."""
    if "float_accuracy" in r:
        return "accuracy", "%.4f" % r["float_accuracy"], "%.4f (drop %.2f pt)" % (r["int8_accuracy"], r["drop_points"])
    if "top1_agreement" in r:
        return "top-1 agreement with float", "—", "%.4f" % r["top1_agreement"]
    return (f"text-map IoU with float (p > {DET_THRESHOLD})", "%.1f%% text px" % (100 * r["float_text_fraction"]),
            "%.4f" % r["text_iou"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    missing = ensure_ort()
    if missing:
        sys.exit(f"fidelity.py: {missing}")
    import onnxruntime

    rows = [evaluate(name) for name in a.models]
    if a.json:
        print(json.dumps({"onnxruntime": onnxruntime.__version__, "results": rows}, indent=1))
        return
    print(f"onnxruntime {onnxruntime.__version__}; ORT int8 = quantize_static QDQ as in benches/peer.py; batch 1.\n")
    print("| model | eval set | samples | measure | float | ORT int8 | rel-L2 | cosine |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        measure, fl, q = task_cells(r)
        print(f"| {r['model']} | {os.path.basename(r['eval'])} | {r['samples']} | {measure} | {fl} | {q} | "
              f"{r['rel_l2']:.4f} | {r['cosine']:.6f} |")


if __name__ == "__main__":
    main()
