"""Stored results in mteb's own results layout, so mteb's loaders read them beside published MTEB results.

The layout of mteb's ``ResultCache`` and of the public results repository::

    <out>/<model name as path>/<revision>/<Task>.json        mteb's TaskResult, written by TaskResult.to_disk
    <out>/<model name as path>/<revision>/model_meta.json    mteb's ModelMeta.to_dict()
    <out>/<model>/<revision>/experiments/batch_policy_<key>/  the same, for a result under another batch policy

Each variant is its own mteb model: ``<hub id>__<variant>`` (``evalsuite/<slug>__<variant>`` for a local folder), at
revision ``onnx_sha256[:16]``. :func:`variant_model_meta` is also the identity the encoder gives mteb, so an export
and an evaluation agree. The scores are the ``TaskResult`` mteb itself produced (stored as ``mteb_scores``): nothing is
re-formatted, and each is checked against the result's NDCG@10 before anything is written.

``ResultCache(cache_path=C)`` reads ``C/results/`` (your results) and ``C/remote/results/`` (published ones), so
export into ``C/results``.

Example:
    >>> export_mteb(ResultStore(Path("results")).items(), Path("mteb-cache/results"))  # doctest: +SKIP
    >>> mteb.ResultCache("mteb-cache").load_results(tasks=["SciFact"]).to_dataframe()  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError
from evalsuite.files import atomic_write_bytes
from evalsuite.results.records import RunResult

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
REVISION_CHARS = 16
EXPERIMENTS = "experiments"  # mteb's folder for results of one model and revision under other settings
MTEB_DECIMALS = 5  # mteb rounds retrieval scores to 5 decimals before they reach its TaskResult


class ExportError(EvalsuiteError):
    """A result that cannot be written as an mteb result (the message names its file)."""


def default_policy() -> str:
    from evalsuite.encode.policy import BatchPolicy

    return BatchPolicy().key


def variant_model_name(model_id: str, model_slug: str, variant: str) -> str:
    """mteb's name for a variant: ``<hub id>__<variant>``, or ``evalsuite/<slug>__<variant>`` for a local folder
    (mteb needs ``organization/name``; a folder path is not one).

    Example:
        >>> variant_model_name("sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers__all-MiniLM-L6-v2", "qint8")
        'sentence-transformers/all-MiniLM-L6-v2__qint8'
        >>> variant_model_name("/models/my-model", "my-model", "float16")
        'evalsuite/my-model__float16'
    """
    hub = _HUB_ID.fullmatch(model_id) and model_slug == model_id.replace("/", "__")  # a folder's slug is its own name
    return f"{model_id}__{variant}" if hub else f"evalsuite/{model_slug}__{variant}"


def variant_model_meta(model_id: str, model_slug: str, variant: str, onnx_sha256: str, size_bytes: int | None,
                       policy: str | None = None) -> Any:
    """mteb's ``ModelMeta`` of a variant: the source model's registry entry (when mteb knows it, offline) with this
    build's name, revision, framework and size, validated by mteb.

    A ``policy`` other than the default batch policy becomes ``experiment_kwargs={"batch_policy": policy}``, mteb's
    own way to keep results of one model and revision under other settings apart (``experiments/<name>/``).
    """
    import mteb
    from mteb.models.model_meta import ModelMeta, ScoringFunction

    try:
        base = mteb.get_model_meta(model_id)  # the registry only: no network
    except Exception:  # unknown to mteb (KeyError), or a name it cannot parse
        base = ModelMeta.create_empty()
    name = variant_model_name(model_id, model_slug, variant)
    meta = base.model_copy(update={
        "name": name, "revision": onnx_sha256[:REVISION_CHARS], "loader": None, "similarity_fn_name": ScoringFunction.COSINE,
        "framework": ["ONNX"], "adapted_from": model_id if name.startswith(f"{model_id}__") else None,
        "memory_usage_mb": round(size_bytes / 2**20) if size_bytes else None,
        "experiment_kwargs": {"batch_policy": policy} if policy and policy != default_policy() else None})
    data = meta.to_dict()  # model_copy does not validate: mteb's validators run on the dict
    data.pop("is_cross_encoder", None)
    ModelMeta.model_validate({**data, "loader": None})
    return meta


def task_result_of(result: RunResult, where: Path | str) -> Any:
    """mteb's ``TaskResult`` stored in ``result``, validated by mteb and checked against the result's NDCG@10."""
    from mteb.results import TaskResult

    if not result.mteb_scores:
        raise ExportError(f"{where}: no mteb_scores (written by an older evalsuite); re-run it with --force")
    try:
        task_result = TaskResult.from_dict(json.loads(json.dumps(result.mteb_scores)))
    except Exception as exc:  # pydantic's ValidationError, or a missing key
        raise ExportError(f"{where}: mteb_scores is not an mteb TaskResult ({str(exc).splitlines()[0]})") from None
    expected = result.task.mteb_name or result.task.name
    if task_result.task_name != expected:
        raise ExportError(f"{where}: mteb_scores is for task {task_result.task_name!r}, not {expected!r}")
    scores = task_result.scores.get(result.task.split) or []
    values = [s.get("ndcg_at_10") for s in scores]
    if len(values) != 1 or not isinstance(values[0], (int, float)):
        raise ExportError(f"{where}: expected one ndcg_at_10 in split {result.task.split!r} of mteb_scores, found {values}")
    if not math.isclose(values[0], result.ndcg_at_10, rel_tol=0, abs_tol=0.5 * 10**-MTEB_DECIMALS + 1e-12):
        raise ExportError(f"{where}: mteb_scores has ndcg_at_10 {values[0]}, the result {result.ndcg_at_10:.6f}")
    return task_result.model_copy(update={"scores": {result.task.split: scores}})  # only the split this result is


@dataclass(frozen=True)
class Exported:
    """One mteb file: where it goes, the result files it holds (one per split), mteb's model identity and scores."""

    sources: tuple[Path, ...]
    path: Path
    meta: Any  # mteb ModelMeta
    task_result: Any  # mteb TaskResult


def plan_export(stored: Iterable[tuple[Path, RunResult]], out_dir: Path) -> list[Exported]:
    """Check every result and decide its file, before anything is written.

    Results of one build and task on different splits share a file, as in mteb (merged by ``TaskResult.merge``);
    two results for the same split of one file are an error.
    """
    planned: dict[Path, Exported] = {}
    for source, r in stored:
        meta = variant_model_meta(r.model_id, r.model_slug, r.variant, r.onnx_sha256, r.onnx_size_bytes,
                                  str(r.batch_policy.get("key") or "") or None)
        task_result = task_result_of(r, source)
        folder = out_dir / meta.model_name_as_path() / str(meta.revision)
        if meta.experiment_name:
            folder = folder / EXPERIMENTS / meta.experiment_name
        path = folder / f"{task_result.task_name}.json"
        if path in planned:
            first = planned[path]
            if r.task.split in first.task_result.scores:
                raise ExportError(f"{source} and {first.sources[0]} would both be split {r.task.split!r} of {path}: the "
                                  "same ONNX file, task, split and batch policy; export them to separate folders")
            try:
                task_result = first.task_result.merge(task_result)
            except ValueError as exc:
                raise ExportError(f"{source} and {first.sources[0]}: mteb cannot merge their splits ({exc})") from None
            planned[path] = Exported((*first.sources, source), path, meta, task_result)
        else:
            planned[path] = Exported((source,), path, meta, task_result)
    return list(planned.values())


def export_mteb(stored: Iterable[tuple[Path, RunResult]], out_dir: Path) -> list[Exported]:
    """Write each (result file, result) as mteb's ``<Task>.json`` and its folder's ``model_meta.json``, atomically.

    Every result is checked first (:func:`plan_export`), so a bad one stops the export before any file is written.
    An existing file of the same model, revision, experiment and task is replaced: it holds the same build's scores.
    """
    planned = plan_export(stored, out_dir)
    for item in planned:
        item.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=item.path.parent, prefix=f".{item.path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            item.task_result.to_disk(Path(tmp))  # mteb's own writer
            os.replace(tmp, item.path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    for folder, item in {p.path.parent: p for p in planned}.items():  # as ResultCache.save_to_cache writes it
        atomic_write_bytes(folder / "model_meta.json", json.dumps(item.meta.to_dict(), default=str, indent=4).encode("utf-8"))
    return planned
