"""Typed, versioned result records on disk: one JSON file per (model, task, variant).

Layout: ``<results-dir>/<model-slug>/<Task>/<variant>.json``. The schema is documented in
``docs/results-schema.md``. A record carries an ``identity``: the hash of everything that decides its
numbers (weights, ONNX file, data, encoding settings, batch policy), so a later run reuses it only
when nothing that matters has changed.

Example:
    >>> store = ResultStore(Path("results"))  # doctest: +SKIP
    >>> r = store.get("sentence-transformers__all-MiniLM-L6-v2", "SciFact", "float32")  # doctest: +SKIP
    >>> round(r.ndcg_at_10, 5)  # doctest: +SKIP
    0.64508
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from evalsuite.errors import EvalsuiteError
from evalsuite.store import atomic_write_json, sha256_text
from evalsuite.variants import VariantSpec

SCHEMA = "evalsuite.result/1"


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

    @property
    def spec(self) -> VariantSpec:
        return VariantSpec.parse(self.variant)

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
            return cls(**{k: v for k, v in data.items() if k in names and k != "task"}, task=task)
        except (KeyError, TypeError) as exc:
            raise EvalsuiteError(f"{path or 'result'}: not a valid evalsuite result ({exc})") from None


def identity(weights_sha256: str, variant: str, onnx_sha256: str, task: TaskRef, encoding: dict[str, object],
             batch_policy: dict[str, object]) -> str:
    """The hash of everything that decides a result's numbers."""
    return sha256_text(SCHEMA, weights_sha256, variant, onnx_sha256, task.name, task.split, task.fingerprint,
                       json.dumps(encoding, sort_keys=True), json.dumps(batch_policy, sort_keys=True))


class ResultStore:
    """Reads and atomically writes :class:`RunResult` files under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, model_slug: str, task: str, variant: str) -> Path:
        return self.root / model_slug / task / f"{variant}.json"

    def get(self, model_slug: str, task: str, variant: str) -> RunResult | None:
        return self._read(self.path(model_slug, task, variant))

    def put(self, result: RunResult) -> Path:
        path = self.path(result.model_slug, result.task.name, result.variant)
        atomic_write_json(path, result.to_dict())
        return path

    def all(self, model_slug: str | None = None) -> Iterator[RunResult]:
        """Every readable result, sorted by path (files that are not evalsuite results are skipped)."""
        if not self.root.is_dir():
            return
        pattern = f"{model_slug}/*/*.json" if model_slug else "*/*/*.json"
        for path in sorted(self.root.glob(pattern)):
            result = self._read(path)
            if result is not None:
                yield result

    def _read(self, path: Path) -> RunResult | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None  # a foreign or damaged file is not a result; it will be recomputed
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            return None
        return RunResult.from_dict(data, path)
