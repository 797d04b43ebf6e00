#!/usr/bin/env python3
"""Writes ONNX's own backend node test cases (from the installed `onnx` package's generators) as
`OUT_DIR/<test_name>/model.onnx` + `test_data_set_N/{input,output}_J.pb`, the layout of onnx's
`onnx/backend/test/data/node`. The onnx wheel ships the generators, not the data, so tern's conformance
runner makes them at test time. Idempotent: a stamp `OUT_DIR/.complete` (onnx version + count) skips
regeneration; cases are written into a temporary sibling directory that is renamed at the end.

    python3 tests/conformance/gen_cases.py ~/.cache/tern-onnx-node
"""
import os
import shutil
import sys
import tempfile
import warnings

import numpy as np
import onnx
from onnx import numpy_helper


def write_value(path, name, value):
    if isinstance(value, np.ndarray) or np.isscalar(value):
        t = numpy_helper.from_array(np.asarray(value), name)
    else:
        raise TypeError(type(value).__name__)
    with open(path, "wb") as f:
        f.write(t.SerializeToString())


def main():
    out = os.path.abspath(sys.argv[1])
    stamp = os.path.join(out, ".complete")
    if os.path.exists(stamp) and open(stamp).read().startswith(onnx.__version__ + " "):
        return
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tern-onnx-node-", dir=parent)
    written, skipped = 0, 0
    for c in cases:
        model = c.model
        if any(n.domain not in ("", "ai.onnx") for n in model.graph.node):
            skipped += 1
            continue
        d = os.path.join(tmp, c.name)
        try:
            os.makedirs(d)
            names_in = [i.name for i in model.graph.input]
            names_out = [o.name for o in model.graph.output]
            for k, (ins, outs) in enumerate(c.data_sets):
                ds = os.path.join(d, f"test_data_set_{k}")
                os.makedirs(ds)
                for j, v in enumerate(ins):
                    write_value(os.path.join(ds, f"input_{j}.pb"), names_in[j] if j < len(names_in) else "", v)
                for j, v in enumerate(outs):
                    write_value(os.path.join(ds, f"output_{j}.pb"), names_out[j] if j < len(names_out) else "", v)
            with open(os.path.join(d, "model.onnx"), "wb") as f:
                f.write(model.SerializeToString())
            written += 1
        except Exception:  # sequences, optionals, maps: not tensors
            shutil.rmtree(d, ignore_errors=True)
            skipped += 1
    with open(os.path.join(tmp, ".complete"), "w") as f:
        f.write(f"{onnx.__version__} {written}\n")
    if os.path.exists(out):
        shutil.rmtree(out)
    os.rename(tmp, out)
    print(f"gen_cases: {written} node test cases in {out} ({skipped} skipped: non-tensor data or other domains)")


if __name__ == "__main__":
    main()
