"""How much of the int8 range a per-tensor weight scale leaves each output column, per model.

Per-tensor quantization gives a MatMul weight one scale, set by its largest |w|; an output column whose own largest
|w| is a fraction r of that gets about r * 127 of the 127 levels a per-channel scale would give it. This prints, for
each model's Float32 build, the median over its weight matrices (MatMul, and fused Attention's packed Q/K/V) of
(median column's max|w|) / (matrix max|w|).
README's base-model section quotes it to show that MiniLM's and MPNet's weights are alike in this respect.

Example:
    python benchmarks/weight_ranges.py --model sentence-transformers/all-MiniLM-L6-v2 --model /work/models/all-mpnet-base-v2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from evalsuite.build import build_variant
from evalsuite.config import default_cache_dir
from evalsuite.models import resolve_model
from evalsuite.variants import VariantSpec


def column_fractions(model: onnx.ModelProto) -> np.ndarray:
    """Per weight matrix (input 1 of MatMul and Attention): the median column's max|w| over the matrix's max|w|."""
    weights = {i.name: i for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Attention") and node.input[1] in weights:
            w = numpy_helper.to_array(weights[node.input[1]])
            if w.ndim == 2:
                columns = np.abs(w).max(axis=0)  # [in, out] in both ops: a column is one output channel
                out.append(float(np.median(columns) / columns.max()))
    return np.array(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="hub id or local folder; repeatable")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    args = parser.parse_args(argv)
    print("| model | weight matrices | median column max / matrix max, abs w (median, min) | levels of 127 |")
    print("|:---|---:|---:|---:|")
    for name in args.model:
        path = build_variant(resolve_model(name), VariantSpec.parse("float32"), args.cache_dir).path
        r = column_fractions(onnx.load(str(path)))
        print(f"| {name} | {len(r)} | {np.median(r):.3f}, {r.min():.3f} | {127 * np.median(r):.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
