#!/usr/bin/env python3
"""Makes tern's bundled sample model: an MLP digit classifier, and its train/test split.

    python3 models/digits/make.py

Trains sklearn's MLPClassifier(hidden_layer_sizes=(512, 256), random_state=0, max_iter=200) on
scikit-learn's bundled digits (X/16, stratified 70/30 split, random_state=0), exports it to ONNX with
skl2onnx (zipmap off), keeps only the float `probabilities` output (the int64 label branch uses ai.onnx.ml
ops; the label is argmax of the probabilities), and writes digits.onnx, X_train/y_train/X_test/y_test.npy
beside this file. Deterministic: re-running gives identical files (BLAS is pinned to one thread: with more
threads the float reductions in training change order and the weights drift by ~1e-2 from run to run on
machines with different core counts; even so, another CPU family's BLAS kernels may give other bits).
Prints the sklearn and onnxruntime test accuracies (they must agree: 0.9796) and the ONNX op types.
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ[_v] = "1"  # before numpy is imported

import warnings

import numpy as np
import onnx
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from threadpoolctl import threadpool_limits

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    clf = MLPClassifier(hidden_layer_sizes=(512, 256), random_state=0, max_iter=200)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(xtr, ytr)
    acc = clf.score(xte, yte)

    m = convert_sklearn(
        clf,
        initial_types=[("input", FloatTensorType([None, 64]))],
        options={id(clf): {"zipmap": False}},
        target_opset={"": 13, "ai.onnx.ml": 1},
    )
    # keep only the probabilities output and what it needs
    g = m.graph
    keep_out = [o for o in g.output if o.name == "probabilities"]
    assert keep_out, [o.name for o in g.output]
    needed = {"probabilities"}
    nodes = []
    for n in reversed(list(g.node)):
        if any(o in needed for o in n.output):
            nodes.append(n)
            needed.update(i for i in n.input if i)
    nodes.reverse()
    inits = [t for t in g.initializer if t.name in needed]
    graph = onnx.helper.make_graph(nodes, "digits_mlp", list(g.input), keep_out, inits)
    used_domains = {n.domain for n in nodes}
    assert used_domains <= {"", "ai.onnx"}, used_domains
    opsets = [o for o in m.opset_import if o.domain in ("", "ai.onnx")]
    model = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="tern models/digits/make.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(HERE, "digits.onnx"))
    for name, arr in [("X_train", xtr), ("y_train", ytr), ("X_test", xte), ("y_test", yte)]:
        np.save(os.path.join(HERE, f"{name}.npy"), arr)

    ops = {}
    for n in nodes:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    print("ops:", ops)
    print(f"sklearn test accuracy: {acc:.4f}")
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed: ONNX accuracy not checked")
        return
    s = ort.InferenceSession(os.path.join(HERE, "digits.onnx"), providers=["CPUExecutionProvider"])
    p = s.run(None, {"input": xte})[0]
    ort_acc = (p.argmax(1) == yte).mean()
    print(f"onnxruntime test accuracy: {ort_acc:.4f}")
    assert (p.argmax(1) == clf.predict(xte)).all(), "onnxruntime and sklearn disagree on some test sample"
    assert np.allclose(p, clf.predict_proba(xte), atol=1e-5), "probabilities differ from sklearn's"


if __name__ == "__main__":
    main()
