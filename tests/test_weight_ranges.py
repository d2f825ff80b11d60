"""benchmarks/weight_ranges.py: the share of the int8 range a per-tensor scale leaves the median output column."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from weight_ranges import column_fractions


def test_column_fractions_by_hand() -> None:
    # w's columns' max|w|: 2, 0.5, 1 -> median 1 over matrix max 2 = 0.5; a's: 4, 1 -> median 2.5 over 4 = 0.625.
    # The 1-D and activation inputs are not weight matrices.
    w = np.array([[1.0, 0.5, -1.0], [-2.0, 0.25, 0.5]], dtype=np.float32)
    a = np.array([[4.0, -1.0], [-3.0, 0.5]], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("MatMul", ["y", "v"], ["z"]),
         helper.make_node("MatMul", ["x", "x2"], ["u"]),
         helper.make_node("Attention", ["x", "a"], ["t"], domain="com.microsoft")],
        "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "x2")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("z", "u", "t")],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.ones(3, dtype=np.float32), "v"),
         numpy_helper.from_array(a, "a")])
    assert column_fractions(helper.make_model(graph)).tolist() == [0.5, 0.625]
