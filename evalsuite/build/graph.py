"""Which fused operators an ONNX file holds: what the transformer optimizer and the quantizer made of a family.

onnxruntime's fusions and quantized kernels are its contrib operators (domain ``com.microsoft``: Attention,
EmbedLayerNormalization, SkipLayerNormalization, BiasGelu, QAttention, ...), so counting the nodes of that domain
shows per model family which fusions applied, without knowing the optimizer's internals.

Example:
    >>> fused_ops(Path("model.onnx"))  # doctest: +SKIP
    {'Attention': 6, 'BiasGelu': 6, 'EmbedLayerNormalization': 1, 'SkipLayerNormalization': 12}
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

CONTRIB_DOMAIN = "com.microsoft"


def fused_ops(path: Path) -> dict[str, int]:
    """Node count per contrib operator type in the ONNX file at ``path``, sorted by name."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.domain == CONTRIB_DOMAIN:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


@functools.lru_cache(maxsize=64)
def _fused_ops_of(path: str, sha256: str) -> dict[str, int]:
    return fused_ops(Path(path))


def artifact_fused_ops(meta: dict[str, object], path: Path) -> dict[str, int]:
    """The counts recorded at build time, or counted now for files cached before they were recorded."""
    recorded = meta.get("fused_ops")
    if isinstance(recorded, dict):
        return {str(k): int(v) for k, v in recorded.items()}
    return dict(_fused_ops_of(str(path), str(meta.get("sha256"))))


# onnxruntime operators that multiply integer activations by integer weights (QDQ graphs become these at load time), and
# those that quantize activations at run time: a file with any of them computes through the CPU's int8 kernels.
INTEGER_GEMMS = {"MatMulInteger", "DynamicQuantizeMatMul", "QAttention", "MatMulIntegerToFloat", "QLinearMatMul", "QGemm",
                 "ConvInteger", "QLinearConv"}
ACTIVATION_QUANTIZERS = {"DynamicQuantizeLinear", "QuantizeLinear", "DynamicQuantizeMatMul", "QAttention"}


@dataclass(frozen=True)
class Int8Profile:
    """What of a file goes through int8 kernels: whether it quantizes activations, and the largest |w| of the signed int8
    weights its integer GEMMs multiply (0: none). Such a file's numbers depend on the CPU's kernel family
    (:func:`evalsuite.machine.int8_kernels`); above 64 a u8s8 kernel without VNNI also saturates."""

    quantizes: bool
    weight_peak: int


def int8_profile(path: Path) -> Int8Profile:
    """The :class:`Int8Profile` of the ONNX file at ``path``. Weights feed an integer GEMM directly, or through a
    DequantizeLinear whose output a MatMul or Gemm reads (QDQ form); MatMulNBits computes in int8 at accuracy level 4."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {t.name: t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8}
    readers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    dequantized = {node.input[0]: node.output[0] for node in graph.node if node.op_type == "DequantizeLinear" and node.input}
    peak = 0
    for name, tensor in weights.items():
        direct = readers.get(name, set()) & INTEGER_GEMMS
        via_qdq = name in dequantized and readers.get(dequantized[name], set()) & {"MatMul", "Gemm"}
        if direct or via_qdq:
            peak = max(peak, int(np.abs(numpy_helper.to_array(tensor).astype(np.int16)).max(initial=0)))
    int8_compute = any(n.op_type == "MatMulNBits" and any(a.name == "accuracy_level" and helper.get_attribute_value(a) == 4
                                                          for a in n.attribute) for n in graph.node)
    quantizes = int8_compute or any(n.op_type in ACTIVATION_QUANTIZERS | INTEGER_GEMMS for n in graph.node)
    return Int8Profile(quantizes, peak)


@functools.lru_cache(maxsize=64)
def _profile_of(path: str, sha256: str) -> Int8Profile:
    return int8_profile(Path(path))


def artifact_int8_profile(meta: dict[str, object], path: Path) -> Int8Profile:
    """The profile recorded at build time, or measured now for files cached before it was recorded."""
    recorded = meta.get("int8")
    if isinstance(recorded, dict) and {"quantizes", "weight_peak"} <= recorded.keys():
        return Int8Profile(bool(recorded["quantizes"]), int(recorded["weight_peak"]))
    return _profile_of(str(path), str(meta.get("sha256")))
