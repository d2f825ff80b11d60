"""Per-node sensitivity of an int8 variant: how much each quantized node alone moves the embeddings.

For every node the dynamic quantizer rewrites (names from the optimized Float32 parent, the graph that is
quantized), build the parent with only that node quantized (the variant's own settings), embed a fixed sample of
texts one per call (no batch neighbours) and compare with Float32: ``loss = 1 - mean cosine`` (float64). Nodes are
ranked by loss, largest first; tune keeps the top of the ranking in float.

Each node's numbers are cached under ``<cache>/sensitivity/`` by the parent's hash, the variant, the node, the
sample's texts and the encoding settings, so a re-run (or tune after ``evalsuite sensitivity``) recomputes nothing.

Example:
    >>> s = rank_nodes(source, VariantSpec.parse("qint8-7bit"), sample, cache_dir)  # doctest: +SKIP
    >>> s.ranked[0].node, round(s.ranked[0].loss, 4)  # doctest: +SKIP
    ('/model/encoder/layer.0/output/dense/MatMul', 0.0687)
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evalsuite.errors import EvalsuiteError
from evalsuite.files import atomic_write_json, sha256_file, sha256_text
from evalsuite.machine import versions
from evalsuite.tune.sample import TextSample
from evalsuite.variants import VariantSpec
from evalsuite.variants.float_nodes import base_of, quantizable_nodes

if TYPE_CHECKING:
    from evalsuite.build import Artifact
    from evalsuite.models import ModelSource

SCHEMA = "evalsuite.sensitivity/1"
Say = Callable[[str], None]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class NodeLoss:
    """One node quantized alone: ``loss = 1 - mean cosine`` to Float32 over the sample, and the worst text's cosine."""

    node: str
    op_type: str
    loss: float
    min_cos: float


@dataclass(frozen=True)
class Sensitivity:
    """The ranking of one variant's quantizable nodes, most harmful first."""

    model_id: str
    variant: str
    parent_sha256: str
    sample: TextSample
    ranked: tuple[NodeLoss, ...]

    def top(self, k: int) -> list[str]:
        return [n.node for n in self.ranked[:k]]

    def to_dict(self) -> dict[str, object]:
        """The ``evalsuite.sensitivity/1`` document (docs/tune-schema.md)."""
        return {"schema": SCHEMA, "model": self.model_id, "variant": self.variant, "parent_sha256": self.parent_sha256,
                "sample": self.sample.describe(), "loss": "1 - mean cosine to Float32, texts embedded one per call",
                "nodes": [{"rank": i + 1, **asdict(n)} for i, n in enumerate(self.ranked)]}


def rank_nodes(source: ModelSource, spec: VariantSpec, sample: TextSample, cache_dir: Path, say: Say | None = None,
               progress: Progress | None = None) -> Sensitivity:
    """Rank the quantizable nodes of ``spec`` (its base, without float nodes) by how much each alone moves the embeddings."""
    import onnx

    from evalsuite.build import build_variant

    say = say or (lambda _m: None)
    base = base_of(spec) if spec.kind.name == "dynamic" else spec
    if base.kind.name != "dynamic":
        raise EvalsuiteError(f"sensitivity ranks the nodes of a dynamic int8 variant (qint8/quint8), not {spec.name}")
    parent_spec = base.kind.parent(base)
    assert parent_spec is not None
    parent = build_variant(source, parent_spec, cache_dir, say)
    graph = onnx.load(str(parent.path), load_external_data=False)
    ops = {n.name: n.op_type for n in graph.graph.node}
    nodes = quantizable_nodes(graph)
    reference = _embed(parent, source, sample)
    folder = cache_dir / "sensitivity" / source.weights_sha256[:16]
    losses = []
    for i, node in enumerate(nodes):
        if progress:
            progress(i, len(nodes))
        key = sha256_text(SCHEMA, parent.sha256, base.name, node, sample.sha256, source.tokenizer_sha256,
                          json.dumps(source.settings.to_dict(), sort_keys=True), versions()["onnxruntime"])
        path = folder / f"{key[:24]}.json"
        cached = _read(path, node)
        if cached is None:
            cached = _measure(source, base, parent, node, ops[node], sample, reference)
            atomic_write_json(path, asdict(cached))
        losses.append(cached)
    if progress:
        progress(len(nodes), len(nodes))
    ranked = tuple(sorted(losses, key=lambda n: (-n.loss, nodes.index(n.node))))
    return Sensitivity(source.model_id, base.name, parent.sha256, sample, ranked)


def cosine_losses(vectors: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """``(1 - mean cosine, min cosine)`` of paired rows, in float64.

    Example:
        >>> cosine_losses(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]))
        (0.0, 1.0)
    """
    a, b = vectors.astype(np.float64), reference.astype(np.float64)
    cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(1.0 - cos.mean()), float(cos.min())


def _measure(source: ModelSource, base: VariantSpec, parent: Artifact, node: str, op_type: str, sample: TextSample,
             reference: np.ndarray) -> NodeLoss:
    from evalsuite.build import Artifact
    from evalsuite.variants.dynamic import quantize

    tmp = Path(tempfile.mkdtemp(prefix=".sensitivity-"))
    try:
        out = tmp / "model.onnx"
        quantize(base, parent.path, out, only=[node])
        artifact = Artifact(base, out, sha256_file(out), out.stat().st_size, {})
        loss, worst = cosine_losses(_embed(artifact, source, sample), reference)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return NodeLoss(node, op_type, loss, worst)


def _embed(artifact: Artifact, source: ModelSource, sample: TextSample) -> np.ndarray:
    """Sample embeddings, each text alone in its call (int8 scales never shared with a neighbour); queries first."""
    from evalsuite.encode import BatchPolicy, OnnxEncoder

    encoder = OnnxEncoder(artifact, source, BatchPolicy(1, 1), cache_dir=None)
    parts = [encoder.embed(list(texts), kind) for kind, texts in (("query", sample.queries), ("document", sample.documents))
             if texts]
    return np.concatenate(parts)


def _read(path: Path, node: str) -> NodeLoss | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        loss = NodeLoss(**doc)
    except (OSError, ValueError, TypeError):
        return None
    return loss if loss.node == node else None
