#!/usr/bin/env python3
"""ORT int8 fidelity: ONNX Runtime on each float model and on its int8 QDQ model (the one benches/peer.py builds
and caches, same calibration samples) over the model's evaluation set, batch 1.

    python3 benches/fidelity.py [--models digits cls det320 det736 layout captcha] [--json]

Per model: rel-L2 (‖int8 − float‖ / ‖float‖ over all outputs of the set) and cosine of int8 vs float outputs,
and the task's measure: digits accuracy on its test split (float, int8, drop in points); cls top-1 agreement
of int8 with float; det IoU of the int8 and float text maps (probability > 0.3, the OCR pipeline's threshold)
over every pixel of the set; layout (PicoDet) and captcha (YOLOX) the share of the float model's detections that
int8 finds (recall: same class, IoU >= 0.5, one to one) and the share of int8's detections that match (precision),
decoded as tests/tests/e2e.rs `picodet_decode` / `yolox_decode` do. Prints a markdown table, or JSON with --json.
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
    "layout": ("models/data/out/layout_eval.npy", None),
    "captcha": ("models/data/out/captcha_eval.npy", None),
}
DET_THRESHOLD = 0.3


def outputs(path, inp, shape, xs, every=False):
    """The first output per sample, stacked; with `every`, all outputs per sample (a list per sample)."""
    import numpy as np
    import onnxruntime as ort

    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    if every:
        return [[o[0].astype(np.float64) for o in s.run(None, {inp: x.reshape(shape)})] for x in xs]
    return np.stack([s.run(None, {inp: x.reshape(shape)})[0][0] for x in xs]).astype(np.float64)


def picodet_decode(outs, width, conf=0.5, nms=0.5):
    """PicoDet detections (class, score, box) from 4 score maps [N, C] and 4 box distributions [N, 32]."""
    import numpy as np

    boxes, scores = [], []
    for stride, sc, bd in zip([8, 16, 32, 64], outs[:4], outs[4:]):
        fw = -(-width // stride)
        cell = np.arange(sc.shape[0])
        cx, cy = (cell % fw + 0.5) * stride, (cell // fw + 0.5) * stride
        d = bd.reshape(-1, 8)
        d = np.exp(d - d.max(1, keepdims=True))
        d = ((d / d.sum(1, keepdims=True)) * np.arange(8)).sum(1).reshape(-1, 4) * stride
        boxes.append(np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], 1))
        scores.append(sc)
    b, s = np.concatenate(boxes), np.concatenate(scores)
    cand = sorted(((c, s[i, c], b[i]) for i, c in zip(*np.nonzero(s > conf))), key=lambda t: -t[1])
    keep = []
    for d in cand:
        if all(k[0] != d[0] or box_iou(k[2], d[2]) <= nms for k in keep):
            keep.append(d)
    return keep


def yolox_decode(outs, conf=0.3, nms=0.45):
    """YOLOX detections (class 0, score, box) from its [3549, 6] rows, class-agnostic NMS (as ddddocr)."""
    import numpy as np

    o = outs[0]
    cells = [(s, c % (416 // s), c // (416 // s)) for s in (8, 16, 32) for c in range((416 // s) ** 2)]
    cand = []
    for r, (s, gx, gy) in zip(o, cells):
        if r[4] * r[5] > conf:
            cx, cy, w, h = (r[0] + gx) * s, (r[1] + gy) * s, np.exp(r[2]) * s, np.exp(r[3]) * s
            cand.append((0, r[4] * r[5], (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
    keep = []
    for d in sorted(cand, key=lambda t: -t[1]):
        if all(box_iou(k[2], d[2]) <= nms for k in keep):
            keep.append(d)
    return keep


def box_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / u if u > 0 else 0.0


def detections_matched(want, got):
    """Greedy one-to-one matching of `want` (highest score first) to `got`: same class, IoU >= 0.5."""
    used, n = set(), 0
    for c, _, bw in want:
        best = max(((box_iou(bw, bg), j) for j, (cg, _, bg) in enumerate(got) if cg == c and j not in used),
                   default=(0.0, None))
        if best[0] >= 0.5:
            used.add(best[1])
            n += 1
    return n


def evaluate_detections(name):
    import numpy as np

    rel, inp, shape, _ = MODELS[name]
    xs_rel, _ = EVAL[name]
    xs = np.load(os.path.join(ROOT, xs_rel))
    f = outputs(os.path.join(ROOT, rel), inp, shape, xs, every=True)
    q = outputs(ort_int8_model(name), inp, shape, xs, every=True)
    matched = found = got = 0
    decode = (lambda o: picodet_decode(o, shape[3])) if name == "layout" else yolox_decode
    scores = 4 if name == "layout" else 1  # the outputs rel-L2 and cosine cover
    for fo, qo in zip(f, q):
        want, mine = decode(fo), decode(qo)
        matched += detections_matched(want, mine)
        found, got = found + len(want), got + len(mine)
    ff = np.concatenate([o.ravel() for s in f for o in s[:scores]])
    qq = np.concatenate([o.ravel() for s in q for o in s[:scores]])
    return {
        "model": name,
        "eval": xs_rel,
        "samples": len(xs),
        "rel_l2": float(np.linalg.norm(qq - ff) / np.linalg.norm(ff)),
        "cosine": float((qq * ff).sum() / (np.linalg.norm(qq) * np.linalg.norm(ff))),
        "float_detections": found,
        "recall": matched / max(found, 1),
        "precision": matched / max(got, 1),
    }


def evaluate(name):
    import numpy as np

    if name in ("layout", "captcha"):
        return evaluate_detections(name)

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
        same = f.argmax(1) == q.argmax(1)
        r["top1_agreement"] = float(same.mean())
        # make_data.py's cls_set: every third sample is a photo strip without text, the rest text lines
        strip = np.arange(len(xs)) % 3 == 2
        r["top1_agreement_text_lines"] = float(same[~strip].mean())
        r["top1_agreement_photo_strips"] = float(same[strip].mean())
    else:
        a, b = f > DET_THRESHOLD, q > DET_THRESHOLD
        r["text_iou"] = float((a & b).sum() / (a | b).sum())
        r["float_text_fraction"] = float(a.mean())
    return r


def task_cells(r):
    """(measure, float, ORT int8) for the table."""
    if "float_accuracy" in r:
        return "accuracy", "%.4f" % r["float_accuracy"], "%.4f (drop %.2f pt)" % (r["int8_accuracy"], r["drop_points"])
    if "recall" in r:
        return ("detections found (recall) / matched (precision), scores' rel-L2", "%d detections" % r["float_detections"],
                "%.3f / %.3f" % (r["recall"], r["precision"]))
    if "top1_agreement" in r:
        return ("top-1 agreement with float (text lines / photo strips)", "—", "%.4f (%.4f / %.4f)" % (
            r["top1_agreement"], r["top1_agreement_text_lines"], r["top1_agreement_photo_strips"]))
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
