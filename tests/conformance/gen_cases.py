#!/usr/bin/env python3
"""Writes ONNX's own backend *node* test cases, made by the generators that ship in the installed
`onnx` wheel (`onnx.backend.test.case.node`), in the layout of onnx's `onnx/backend/test/data/node`:

    OUT_DIR/<test_name>/model.onnx
    OUT_DIR/<test_name>/test_data_set_0/input_J.pb    J-th graph input  (TensorProto, name = graph.input[J].name)
    OUT_DIR/<test_name>/test_data_set_0/output_J.pb   J-th graph output (TensorProto, name = graph.output[J].name)

The wheel ships the generators but not the generated data, so tern's conformance runner makes them.
Serialisation mirrors `onnx/backend/test/cmd_tools.py::generate_data` (tensor branch only).

Kept: cases whose graph inputs/outputs are all tensors and whose nodes (subgraphs included) are all in
the default domain ("" or "ai.onnx"). Skipped, with counts printed: sequence/optional/map typed
inputs or outputs, other domains (ai.onnx.ml, ai.onnx.preview.training, local functions), and
generators that raise (one export at a time is guarded, so one failing export loses only itself).

Idempotent: after success `OUT_DIR/.complete` holds the onnx version, this script's format version and
the case count; when it matches, the script exits at once. Cases are written into a temporary sibling
directory that is renamed onto OUT_DIR at the end, so an interrupted run leaves no half-made OUT_DIR.

    python3 tests/conformance/gen_cases.py ~/.cache/tern-onnx-node
"""
from __future__ import annotations

import os
import shutil
import sys
import time
import warnings

FORMAT = 2  # bump when the selection or layout changes: an older stamp then forces regeneration
DEFAULT_DOMAINS = ("", "ai.onnx")


def stamp_text(onnx_version: str, count: int) -> str:
    return f"onnx {onnx_version}\nformat {FORMAT}\ncases {count}\n"


def stamp_ok(out: str, onnx_version: str) -> int | None:
    """The case count when OUT_DIR/.complete matches this onnx version and format, else None."""
    try:
        with open(os.path.join(out, ".complete")) as f:
            kv = dict(line.split(" ", 1) for line in f.read().splitlines() if " " in line)
        if kv.get("onnx") == onnx_version and kv.get("format") == str(FORMAT):
            n = int(kv["cases"])
            return n
    except (OSError, ValueError, KeyError):
        pass
    return None


def collect(log) -> tuple[list, int]:
    """All node test cases; exports that raise are skipped (counted), not fatal."""
    import importlib
    import pkgutil

    import numpy as np

    from onnx import ONNX_ML
    from onnx.backend.test.case import base

    failed = []

    # Each test class runs its export* staticmethods from the metaclass __init__ at import time
    # (base._Exporter). Guard each export separately instead of the whole module.
    def guarded_init(cls, name, bases, dct):
        for k, v in dct.items():
            if k.startswith("export") and isinstance(v, staticmethod):
                np.random.seed(seed=0)
                try:
                    getattr(cls, k)()
                except Exception as e:  # noqa: BLE001
                    failed.append(f"{name}.{k}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        type.__init__(cls, name, bases, dct)

    base._Exporter.__init__ = guarded_init

    import onnx.backend.test.case.node as node_pkg

    def walk(pkg):
        for _loader, name, ispkg in pkgutil.iter_modules(pkg.__path__):
            mod_name = f"{pkg.__name__}.{name}"
            if not ONNX_ML and mod_name.startswith("onnx.backend.test.case.node.ai_onnx_ml"):
                continue
            try:
                mod = importlib.import_module(mod_name)
            except Exception as e:  # noqa: BLE001
                failed.append(f"import {mod_name}: {type(e).__name__}: {e}")
                continue
            if ispkg:
                walk(mod)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            walk(node_pkg)
    for f in failed:
        log(f"  generator failed: {f}")
    return list(node_pkg._NodeTestCases), len(failed)


def all_nodes(graph):
    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.HasField("g"):
                yield from all_nodes(a.g)
            for g in a.graphs:
                yield from all_nodes(g)


def tensor_proto(value, name):
    import numpy as np

    from onnx import TensorProto, numpy_helper

    if isinstance(value, TensorProto):
        t = TensorProto()
        t.CopyFrom(value)
        # cmd_tools writes TensorProto values as they are; keep that, but name them like the rest
        # when the generator left the name empty (the runner matches by position anyway).
        if not t.name:
            t.name = name
        return t
    if isinstance(value, (np.ndarray, np.generic)) or np.isscalar(value):
        return numpy_helper.from_array(np.asarray(value), name)
    raise TypeError(f"not a tensor value: {type(value).__name__}")


def write_case(case, d: str) -> None:
    model = case.model
    os.makedirs(d)
    with open(os.path.join(d, "model.onnx"), "wb") as f:
        f.write(model.SerializeToString())
    for i, (inputs, outputs) in enumerate(case.data_sets):
        ds = os.path.join(d, f"test_data_set_{i}")
        os.makedirs(ds)
        for kind, values, vis in (("input", inputs, model.graph.input), ("output", outputs, model.graph.output)):
            for j, v in enumerate(values):
                t = tensor_proto(v, vis[j].name)
                with open(os.path.join(ds, f"{kind}_{j}.pb"), "wb") as f:
                    f.write(t.SerializeToString())


def skip_reason(case) -> str | None:
    model = case.model
    if model is None or not case.data_sets:
        return "no model/data"
    g = model.graph
    for vi in list(g.input) + list(g.output):
        if not vi.type.HasField("tensor_type"):
            return "non-tensor io"
    if any(n.domain not in DEFAULT_DOMAINS for n in all_nodes(g)):
        return "other domain"
    if model.functions:
        return "local functions"
    for inputs, outputs in case.data_sets:
        if len(inputs) != len(g.input) or len(outputs) != len(g.output):
            return "io count mismatch"
    return None


def remove_stale(out: str) -> None:
    """Removes `OUT.tmp-<pid>` / `OUT.old-<pid>` left by killed runs (whose process is gone)."""
    parent, base = os.path.split(out)
    for e in os.listdir(parent):
        for tag in (".tmp-", ".old-"):
            if e.startswith(base + tag) and e[len(base + tag):].isdigit():
                pid = int(e[len(base + tag):])
                try:
                    os.kill(pid, 0)
                    alive = pid != os.getpid()
                except ProcessLookupError:
                    alive = False
                except PermissionError:
                    alive = True
                if not alive:
                    shutil.rmtree(os.path.join(parent, e), ignore_errors=True)


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python3 tests/conformance/gen_cases.py OUT_DIR", file=sys.stderr)
        return 2
    from importlib.metadata import version

    out = os.path.abspath(os.path.expanduser(sys.argv[1]))
    n = stamp_ok(out, version("onnx"))  # without importing onnx: a cached run takes milliseconds
    if n is not None:
        print(f"gen_cases: {n} node test cases in {out} (cached, onnx {version('onnx')})")
        return 0
    import onnx

    t0 = time.time()
    log = lambda s: print(s, file=sys.stderr)  # noqa: E731
    cases, n_failed = collect(log)
    t_collect = time.time() - t0

    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    remove_stale(out)
    tmp = f"{out}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    written, skipped = 0, {}
    try:
        for c in sorted(cases, key=lambda c: c.name):
            why = skip_reason(c)
            d = os.path.join(tmp, c.name)
            if why is None:
                try:
                    write_case(c, d)
                except Exception as e:  # noqa: BLE001
                    shutil.rmtree(d, ignore_errors=True)
                    why = f"write failed ({type(e).__name__})"
            if why is None:
                written += 1
            else:
                skipped[why] = skipped.get(why, 0) + 1
        with open(os.path.join(tmp, ".complete"), "w") as f:
            f.write(stamp_text(version("onnx"), written))
        if os.path.lexists(out):
            old = f"{out}.old-{os.getpid()}"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    sk = ", ".join(f"{v} {k}" for k, v in sorted(skipped.items())) or "none"
    print(
        f"gen_cases: {written} node test cases in {out} (onnx {onnx.__version__}; "
        f"{len(cases)} generated, skipped: {sk}; {n_failed} generator export(s) raised; "
        f"{time.time() - t0:.1f}s, collect {t_collect:.1f}s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
