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
