"""Typed, versioned result records: what one variant scored on one task, and the identity of its inputs.

The schema is documented in ``docs/results-schema.md``. A record carries an ``identity``: the hash of
everything that decides its numbers (weights, ONNX file, data, encoding settings, batch policy), so a
later run reuses it only when nothing that matters has changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from evalsuite.errors import EvalsuiteError
from evalsuite.files import sha256_text
from evalsuite.machine import distinct_kernels
from evalsuite.variants import VariantSpec

SCHEMA = "evalsuite.result/1"
DEFAULT_SPLIT = "test"
CHECKSUM_FIELD = "content_sha256"


@dataclass(frozen=True)
class TaskRef:
    """Which data a result was computed on."""

    name: str
    mteb_name: str | None
    split: str
    source: str  # "local:<folder>" or "mteb:<hub path>@<revision>"
    fingerprint: str  # sha256 of the local files, or the Hub revision
    n_documents: int
    n_queries: int

    @property
    def label(self) -> str:
        """``SciFact`` for the test split (the layout results always had), ``SciFact.dev`` for another split."""
        return task_label(self.name, self.split)


def task_label(name: str, split: str) -> str:
    """The name a task's results are stored and shown under: the split is added unless it is ``test``."""
    return name if split == DEFAULT_SPLIT else f"{name}.{split}"


@dataclass(frozen=True)
class RunResult:
    """The NDCG@10 (and every other mteb retrieval score) of one variant on one task, with per-query NDCG@10."""

    model_id: str
    model_slug: str
    weights_sha256: str
    variant: str
    onnx_sha256: str
    onnx_size_bytes: int
    task: TaskRef
    encoding: dict[str, object]
    batch_policy: dict[str, object]
    main_score: str
    ndcg_at_10: float
    scores: dict[str, float]
    per_query_ndcg_at_10: dict[str, float]
    timings: dict[str, float]
    versions: dict[str, str]
    machine: dict[str, object]
    created: str
    command: str
    identity: str
    schema: str = SCHEMA
    mteb_scores: dict[str, object] = field(default_factory=dict)
    tokenizer_sha256: str = ""  # of the tokenizer files (results written before it existed have none)
    # Facts about the evaluated ONNX file, e.g. {"fused_ops": {"Attention": 6, ...}}; decided by onnx_sha256, so
    # not part of the identity (results written before it existed have none).
    graph: dict[str, object] = field(default_factory=dict)
    # The int8 kernel family the numbers were computed with (evalsuite.machine.int8_kernels): None for a file that
    # quantizes nothing; part of the identity unless it is the reference family (results written before it existed:
    # None, all computed on the reference family).
    int8_kernels: str | None = None

    @property
    def spec(self) -> VariantSpec:
        return VariantSpec.parse(self.variant)

    @property
    def composition(self) -> int:
        """The batch composition it was computed under (0: the canonical batching)."""
        return int(self.batch_policy.get("composition", 0))  # type: ignore[call-overload]

    @property
    def main_value(self) -> float:
        return float(self.scores.get(self.main_score, self.ndcg_at_10))

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, path: Path | None = None) -> RunResult:  # type: ignore[type-arg]
        if data.get("schema") != SCHEMA:
            raise EvalsuiteError(f"{path or 'result'}: schema {data.get('schema')!r} is not {SCHEMA!r}")
        names = {f.name for f in fields(cls)}
        try:
            task = TaskRef(**data["task"])
            result = cls(**{k: v for k, v in data.items() if k in names and k != "task"}, task=task)
        except (KeyError, TypeError) as exc:
            raise EvalsuiteError(f"{path or 'result'}: not a valid evalsuite result ({exc})") from None
        per_query = result.per_query_ndcg_at_10
        if not (_is_number(result.ndcg_at_10) and isinstance(per_query, dict) and per_query
                and all(_is_number(v) for v in per_query.values()) and isinstance(result.identity, str)):
            raise EvalsuiteError(f"{path or 'result'}: not a valid evalsuite result "
                                 "(ndcg_at_10, per_query_ndcg_at_10 or identity is missing or of the wrong type)")
        return result


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def content_digest(data: dict[str, object]) -> str:
    """sha256 of a result's JSON form (keys sorted, compact), stored as ``content_sha256`` to detect damage."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def identity(weights_sha256: str, tokenizer_sha256: str, variant: str, onnx_sha256: str, task: str, split: str,
             data_fingerprint: str, encoding: dict[str, object], batch_policy: dict[str, object],
             int8_kernels: str | None = None) -> str:
    """The hash of everything that decides a result's numbers; cheap to compute without loading the data.

    The ONNX hash covers the weights and ``config.json`` through the exported graph; the tokenizer, the data,
    the encoding settings, the batch policy (with its composition) and, for a quantized file, the CPU's int8 kernel
    family decide the rest. The reference family adds nothing, so identities made before it was recorded hold.
    """
    return sha256_text(SCHEMA, weights_sha256, tokenizer_sha256, variant, onnx_sha256, task, split, data_fingerprint,
                       json.dumps(encoding, sort_keys=True), json.dumps(batch_policy, sort_keys=True),
                       *distinct_kernels(int8_kernels))
