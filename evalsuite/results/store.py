"""Result records on disk: one JSON file per (model, task, variant), written atomically with a checksum.

Layout: ``<results-dir>/<model-slug>/<Task>/<variant>.json``, and ``<variant>.c<k>.json`` for batch composition
``k >= 1`` of a batch-dependent variant (variant names never hold a dot).

Example:
    >>> store = ResultStore(Path("results"))  # doctest: +SKIP
    >>> r = store.get("sentence-transformers__all-MiniLM-L6-v2", "SciFact", "float32")  # doctest: +SKIP
    >>> round(r.ndcg_at_10, 5)  # doctest: +SKIP
    0.64508
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

from evalsuite.errors import EvalsuiteError
from evalsuite.files import atomic_write_json
from evalsuite.results.records import CHECKSUM_FIELD, DEFAULT_SPLIT, SCHEMA, RunResult, content_digest, task_label

log = logging.getLogger(__name__)


class ResultStore:
    """Reads and atomically writes :class:`RunResult` files under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.damaged: dict[Path, str] = {}  # files that look like results but cannot be trusted, and why

    def path(self, model_slug: str, task: str, variant: str, split: str = DEFAULT_SPLIT, composition: int = 0) -> Path:
        return self.root / model_slug / task_label(task, split) / (f"{variant}.c{composition}.json" if composition else f"{variant}.json")

    def get(self, model_slug: str, task: str, variant: str, split: str = DEFAULT_SPLIT, composition: int = 0) -> RunResult | None:
        return self._read(self.path(model_slug, task, variant, split, composition))

    def put(self, result: RunResult) -> Path:
        """Write ``result`` atomically, with a checksum of its content that :meth:`get` verifies."""
        path = self.path(result.model_slug, result.task.name, result.variant, result.task.split, result.composition)
        data = json.loads(json.dumps(result.to_dict()))  # its JSON form, exactly as it will be read back
        atomic_write_json(path, {**data, CHECKSUM_FIELD: content_digest(data)})
        return path

    def all(self, model_slug: str | None = None) -> Iterator[RunResult]:
        """Every readable result, sorted by path (files that are not evalsuite results are skipped)."""
        return (result for _, result in self.items(model_slug))

    def items(self, model_slug: str | None = None) -> Iterator[tuple[Path, RunResult]]:
        """Every readable result with its file, sorted by path."""
        if not self.root.is_dir():
            return
        pattern = f"{model_slug}/*/*.json" if model_slug else "*/*/*.json"
        for path in sorted(self.root.glob(pattern)):
            result = self._read(path)
            if result is not None:
                yield path, result

    def _read(self, path: Path) -> RunResult | None:
        """The result in ``path``, or None when it is missing, foreign or damaged (a sweep then recomputes it).

        A record without a valid ``content_sha256`` is damaged: it was edited or written by something else, so its
        numbers may not belong to its identity. Damaged files are listed in :attr:`damaged`.
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return self._damaged(path, "not valid JSON")
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            return None
        stored = data.pop(CHECKSUM_FIELD, None)
        if stored is None:
            return self._damaged(path, f"no {CHECKSUM_FIELD}")
        if stored != content_digest(data):
            return self._damaged(path, "does not match its checksum (damaged or edited)")
        try:
            return RunResult.from_dict(data, path)
        except EvalsuiteError as exc:
            return self._damaged(path, str(exc).removeprefix(f"{path}: "))

    def _damaged(self, path: Path, why: str) -> None:
        log.warning("%s: %s; ignoring it", path, why)
        self.damaged[path] = why
        return None
