#!/usr/bin/env python3
"""Writes two GRU models and their input sets for tests/tests/rnn.rs into OUT_DIR (deterministic, seeded):

    python3 tests/rnn/gen_gru.py OUT_DIR

gru_lbr0.onnx / gru_lbr1.onnx: one bidirectional ONNX GRU (sequence 12, batch 1, 80 input features, hidden 160;
linear_before_reset 0, ONNX's default, and 1, PyTorch's), weights and biases as initializers, X named "x",
outputs Y [12, 2, 1, 160] and Y_h [2, 1, 160]. W holds 2·480·80 values and R 2·480·160, enough for the int8 pipeline to
store both as int8. calib.npy (16, 12, 1, 80) and eval.npy (4, 12, 1, 80): standard normal inputs,
different seeds.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

S, B, I, H, D = 12, 1, 80, 160, 2


def model(lbr, rng):
    # weights scaled so the gates neither saturate nor vanish (std ~ 1/sqrt(fan-in))
    w = (rng.standard_normal((D, 3 * H, I)) / np.sqrt(I)).astype(np.float32)
    r = (rng.standard_normal((D, 3 * H, H)) / np.sqrt(H)).astype(np.float32)
    b = (0.1 * rng.standard_normal((D, 6 * H))).astype(np.float32)
    node = helper.make_node(
        "GRU", ["x", "W", "R", "B"], ["Y", "Y_h"], hidden_size=H, direction="bidirectional",
        linear_before_reset=lbr,
    )
    g = helper.make_graph(
        [node], f"gru_lbr{lbr}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [S, B, I])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [S, D, B, H]),
         helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [D, B, H])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(r, "R"), numpy_helper.from_array(b, "B")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    for lbr in (0, 1):
        onnx.save(model(lbr, rng), os.path.join(out, f"gru_lbr{lbr}.onnx"))
    np.save(os.path.join(out, "calib.npy"), np.random.default_rng(8).standard_normal((16, S, B, I)).astype(np.float32))
    np.save(os.path.join(out, "eval.npy"), np.random.default_rng(9).standard_normal((4, S, B, I)).astype(np.float32))


if __name__ == "__main__":
    main()
