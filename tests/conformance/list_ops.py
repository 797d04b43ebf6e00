#!/usr/bin/env python3
"""Lists the ONNX node test cases made by gen_cases.py, one line per case:

    test_name <TAB> op_types <TAB> input dtypes <TAB> output dtypes <TAB> input shapes

op_types: distinct op types of the graph (If/Loop/Scan bodies included), comma-separated, in graph order.
dtypes: comma-separated, one per graph input/output (ONNX names: FLOAT, INT64...).
shapes: comma-separated, one per graph input, dims joined by 'x' ("()" rank 0, "?" no shape, a
symbolic dim is printed by name, an unknown one as '?').

    python3 tests/conformance/list_ops.py OUT_DIR                       # the table, on stdout
    python3 tests/conformance/list_ops.py OUT_DIR --candidates FILE     # also write the candidate list
    python3 tests/conformance/list_ops.py OUT_DIR --candidates FILE --aux FILE2

FILE (candidates.txt): cases made ONLY of ops in RUNTIME_OPS whose graph inputs and outputs are ALL
float32 tensors with fully static shapes (and at least one input: the runner feeds input 0).
FILE2 (candidates_aux.txt): same ops and outputs, input 0 float32, but some other input is an
int64/int32 tensor (shape, axes, pads, starts/ends, repeats...). The runner binds inputs 1.. as
constants from test_data_set_0, so these can pass when the importer folds such constants.
Both are grouped by the op under test (for *_expanded cases: the op of the unexpanded case).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

import onnx
from onnx import TensorProto

RUNTIME_OPS = {
    "Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "Relu", "Clip", "Sigmoid",
    "HardSigmoid", "HardSwish", "Mul", "Add", "Sub", "Div", "Pow", "Sqrt", "GlobalAveragePool",
    "GlobalMaxPool", "AveragePool", "MaxPool", "Resize", "Concat", "Split", "Slice", "Pad", "Reshape",
    "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Softmax", "ReduceMean", "Erf", "Identity", "Tanh",
    "LeakyRelu", "Exp", "Log", "Abs", "Neg", "Reciprocal", "Floor", "Ceil", "Dropout", "Constant",
    "Shape", "Gather", "Cast", "ConstantOfShape", "Range", "Expand",
}
AUX_INT = {TensorProto.INT64, TensorProto.INT32}


def all_nodes(graph):
    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.HasField("g"):
                yield from all_nodes(a.g)
            for g in a.graphs:
                yield from all_nodes(g)


def dtype_name(vi) -> str:
    t = vi.type
    if t.HasField("tensor_type"):
        return TensorProto.DataType.Name(t.tensor_type.elem_type)
    return t.WhichOneof("value") or "?"


def shape_of(vi) -> tuple[str, bool]:
    """(printed shape, fully static)"""
    t = vi.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return "?", False
    dims, static = [], True
    for d in t.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(str(d.dim_value))
        else:
            static = False
            dims.append(d.dim_param or "?")
    return ("x".join(dims) if dims else "()"), static


def load_cases(root: str):
    cases = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "model.onnx")
        if not os.path.exists(path):
            continue
        m = onnx.load(path)
        g = m.graph
        ops = list(dict.fromkeys(n.op_type for n in all_nodes(g)))
        ins = [(dtype_name(v), *shape_of(v)) for v in g.input]
        outs = [(dtype_name(v), *shape_of(v)) for v in g.output]
        cases.append({"name": name, "ops": ops, "ins": ins, "outs": outs,
                      "single": ops[0] if len(g.node) == 1 else None})
    return cases


def subject_op(c, single_by_name) -> str:
    """The op a case tests: for `<base>_expanded[_verN]` the base case's node (or the op named by
    the test name when the base case was skipped), else its only node."""
    name = c["name"]
    if "_expanded" in name:
        base = name[: name.index("_expanded")]
        if base in single_by_name:
            return single_by_name[base]
        by_lower = {s.name.lower(): s.name for s in onnx.defs.get_all_schemas()}
        words = base.split("_")[1:]
        for k in range(len(words), 0, -1):
            if "".join(words[:k]) in by_lower:
                return by_lower["".join(words[:k])]
    if c["single"]:
        return c["single"]
    return c["ops"][0] if c["ops"] else "?"


def write_list(path: str, title: list[str], chosen, single_by_name) -> dict[str, int]:
    groups = defaultdict(list)
    for c in chosen:
        groups[subject_op(c, single_by_name)].append(c)
    counts = {op: len(v) for op, v in sorted(groups.items())}
    with open(path, "w") as f:
        for line in title:
            f.write(f"# {line}\n")
        f.write(f"# {len(chosen)} cases; per op: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + "\n")
        for op in sorted(groups):
            f.write(f"\n# == {op} ({len(groups[op])})\n")
            for c in sorted(groups[op], key=lambda c: c["name"]):
                f.write(f"{c['name']}\t{','.join(c['ops'])}\n")
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--candidates", help="write the float32-only candidate list here")
    ap.add_argument("--aux", help="write the candidates with int64/int32 auxiliary inputs here")
    ap.add_argument("-q", "--quiet", action="store_true", help="do not print the table")
    a = ap.parse_args()

    cases = load_cases(os.path.expanduser(a.out_dir))
    if not a.quiet:
        out = sys.stdout
        for c in cases:
            out.write("\t".join([
                c["name"], ",".join(c["ops"]),
                ",".join(d for d, _, _ in c["ins"]), ",".join(d for d, _, _ in c["outs"]),
                ",".join(s for _, s, _ in c["ins"]),
            ]) + "\n")

    single_by_name = {c["name"]: c["single"] for c in cases if c["single"]}
    in_set = [c for c in cases if c["ops"] and set(c["ops"]) <= RUNTIME_OPS]

    def f32_static(io):
        return io[0] == "FLOAT" and io[2]

    strict = [c for c in in_set if c["ins"] and all(map(f32_static, c["ins"] + c["outs"]))]
    aux = [c for c in in_set if c["ins"] and c not in strict
           and f32_static(c["ins"][0]) and all(map(f32_static, c["outs"]))
           and all(f32_static(i) or (TensorProto.DataType.Value(i[0]) in AUX_INT and i[2])
                   for i in c["ins"][1:])]
    version = onnx.__version__
    if a.candidates:
        counts = write_list(a.candidates, [
            f"ONNX node test cases (onnx {version}) a float32 runtime may pass: made only of ops in",
            "tests/conformance/list_ops.py RUNTIME_OPS, every graph input and output a float32 tensor",
            "with a fully static shape. Generated by:",
            "  python3 tests/conformance/list_ops.py $CACHE -q --candidates tests/conformance/candidates.txt"
            " --aux tests/conformance/candidates_aux.txt",
            "Format: test_name<TAB>op types of the graph. Grouped by the op under test.",
        ], strict, single_by_name)
        print(f"candidates: {len(strict)} -> {a.candidates}", file=sys.stderr)
        for k, v in counts.items():
            print(f"  {k}\t{v}", file=sys.stderr)
    if a.aux:
        counts = write_list(a.aux, [
            f"ONNX node test cases (onnx {version}) made only of RUNTIME_OPS, float32 static outputs and",
            "input 0, where some other input is an int64/int32 tensor (shape/axes/pads/starts...). They",
            "need those graph inputs bound as constants (the runner does: inputs 1.. from test_data_set_0).",
            "Format: test_name<TAB>op types of the graph. Grouped by the op under test.",
        ], aux, single_by_name)
        print(f"aux candidates: {len(aux)} -> {a.aux}", file=sys.stderr)
        for k, v in counts.items():
            print(f"  {k}\t{v}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
