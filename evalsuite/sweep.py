"""The ``run`` job: every (variant, task) pair evaluated once, Float32 first, reusing what is stored.

Each unit of work is cached on its own (ONNX artifact, embedding shards, result file), written
atomically and guarded by a file lock, so a sweep killed at any point resumes where it stopped and
two sweeps at once share the work instead of corrupting it.

Example:
    >>> cfg = SweepConfig(variants=expand(["seed"]), tasks=["scifact"], data_dir=Path("../shared/data/beir"))  # doctest: +SKIP
    >>> report = run_sweep(cfg)  # doctest: +SKIP
    >>> report.rows()[0]["delta"]  # doctest: +SKIP
    0.0
"""

from __future__ import annotations

import datetime
import math
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from evalsuite.convert import Artifact, build_variant
from evalsuite.encoder import BatchPolicy, OnnxEncoder
from evalsuite.errors import DataUnavailable, EvalsuiteError
from evalsuite.evaluate import LoadedTask, data_fingerprint, load_task, run_mteb, task_unavailable
from evalsuite.machine import cpu_info, versions
from evalsuite.models import DEFAULT_MODEL, ModelSource, resolve_model
from evalsuite.results import ResultStore, RunResult, identity
from evalsuite.store import file_lock, remove_leftovers
from evalsuite.tasks import TaskSpec, default_tasks, find_task
from evalsuite.variants import BASELINE, VariantSpec

Say = Callable[[str], None]


def default_cache_dir() -> Path:
    return Path(os.environ.get("EVALSUITE_CACHE_DIR") or Path.home() / ".cache" / "evalsuite")


def default_results_dir() -> Path:
    return Path(os.environ.get("EVALSUITE_RESULTS_DIR") or "results")


def default_data_dir() -> Path | None:
    value = os.environ.get("EVALSUITE_DATA_DIR")
    return Path(value) if value else None


@dataclass
class SweepConfig:
    """What ``evalsuite run`` was asked to do."""

    variants: list[VariantSpec]
    model: str = DEFAULT_MODEL
    tasks: list[str] | None = None  # None: the default tasks, skipping those without data
    data_dir: Path | None = None
    tasks_dir: Path | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    results_dir: Path = field(default_factory=default_results_dir)
    policy: BatchPolicy = field(default_factory=BatchPolicy)
    threads: int | None = None
    force: bool = False


@dataclass
class SweepReport:
    """Results of a sweep, by task then variant, with the Float32 baseline of each task."""

    model_id: str
    results: dict[str, dict[str, RunResult]]
    skipped: dict[str, str]
    computed: list[tuple[str, str]]

    def rows(self) -> list[dict[str, object]]:
        """One row per (task, variant): the documented ``--json`` records."""
        out = []
        for task, by_variant in self.results.items():
            base = by_variant[BASELINE.name].ndcg_at_10
            for name, r in by_variant.items():
                out.append({"task": task, "variant": name, "ndcg_at_10": r.ndcg_at_10, "float32_ndcg_at_10": base,
                            "delta": r.ndcg_at_10 - base, "relative_delta": (r.ndcg_at_10 - base) / base if base else None,
                            "n_queries": len(r.per_query_ndcg_at_10), "batch_policy": r.batch_policy["key"],
                            "onnx_sha256": r.onnx_sha256, "reused": (task, name) not in self.computed})
        return out


def run_sweep(cfg: SweepConfig, say: Say | None = None, progress: Callable[[str, str, int, int], None] | None = None) -> SweepReport:
    """Evaluate every requested variant (and the Float32 baseline) on every requested task."""
    say = say or (lambda _m: None)
    source = resolve_model(cfg.model)
    specs = _task_specs(cfg)
    skipped = {s.name: why for s, why in specs if why}
    runnable = [s for s, why in specs if not why]
    if not runnable:
        raise EvalsuiteError("no task can run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    variants = [BASELINE] + [v for v in cfg.variants if v != BASELINE]
    store = ResultStore(cfg.results_dir)
    loaded: dict[str, LoadedTask] = {}
    fingerprints: dict[str, str] = {}
    results: dict[str, dict[str, RunResult]] = {s.name: {} for s in runnable}
    computed: list[tuple[str, str]] = []
    command = " ".join(shlex.quote(a) for a in ["evalsuite", *sys.argv[1:]]) if sys.argv[0].endswith("evalsuite") else ""
    for spec in variants:
        artifact = build_variant(source, spec, cfg.cache_dir, say)
        encoder: OnnxEncoder | None = None
        for task in list(runnable):
            if task.name not in fingerprints:
                fingerprints[task.name] = data_fingerprint(task, cfg.data_dir)
            ident = identity(source.weights_sha256, spec.name, artifact.sha256, task.name, task.split,
                             fingerprints[task.name], source.settings.to_dict(), cfg.policy.to_dict())
            path = store.path(source.slug, task.name, spec.name)
            with file_lock(path):
                remove_leftovers(path)  # temporary files of runs killed while writing it
                existing = store.get(source.slug, task.name, spec.name)
                if existing is not None and existing.identity == ident and not cfg.force:
                    results[task.name][spec.name] = existing
                    continue
                if task.name not in loaded:
                    say(f"loading {task.name}")
                    try:
                        loaded[task.name] = load_task(task, cfg.data_dir)
                    except DataUnavailable as exc:  # malformed data is an error even in a default task
                        if cfg.tasks is not None:
                            raise
                        skipped[task.name] = str(exc)
                        results.pop(task.name, None)
                        runnable.remove(task)
                        continue
                lt = loaded[task.name]
                if encoder is None:
                    encoder = OnnxEncoder(artifact, source, cfg.policy, cache_dir=cfg.cache_dir, threads=cfg.threads,
                                          variant_name=spec.name)
                encoder.progress = (lambda kind, done, total, _v=spec.name, _t=task.name: progress(_v, f"{_t} {kind}", done, total)) if progress else None
                say(f"evaluating {spec.name} on {task.name}")
                result = _evaluate(encoder, lt, source, artifact, ident, command)
                store.put(result)
                computed.append((task.name, spec.name))
                results[task.name][spec.name] = result
    if not results:
        raise EvalsuiteError("no task could be loaded: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return SweepReport(source.model_id, results, skipped, computed)


def _task_specs(cfg: SweepConfig) -> list[tuple[TaskSpec, str | None]]:
    if cfg.tasks is None:
        out = []
        for spec in default_tasks(cfg.tasks_dir):
            out.append((spec, task_unavailable(spec, cfg.data_dir)))
        return out
    specs = []
    for name in cfg.tasks:
        spec = find_task(name, cfg.tasks_dir)
        why = task_unavailable(spec, cfg.data_dir)
        if why:
            raise EvalsuiteError(f"task {spec.name}: {why}")
        if spec not in specs:
            specs.append(spec)
    return [(s, None) for s in specs]


def _evaluate(encoder: OnnxEncoder, lt: LoadedTask, source: ModelSource, artifact: Artifact, ident: str,
              command: str) -> RunResult:
    before = dict(encoder.stats)
    started = time.perf_counter()
    outcome = run_mteb(encoder, lt, encoder.policy.batch_size)
    # mteb rounds its scores to 5 decimals; deltas are taken between exact means of pytrec_eval's per-query values.
    ndcg = math.fsum(outcome.per_query.values()) / len(outcome.per_query)
    reported = outcome.scores.get("ndcg_at_10")
    if reported is None or abs(reported - ndcg) > 1e-5:
        raise EvalsuiteError(f"task {lt.spec.name}: per-query NDCG@10 mean {ndcg:.6f} does not match mteb's {reported}")
    return RunResult(
        model_id=source.model_id, model_slug=source.slug, weights_sha256=source.weights_sha256,
        variant=artifact.variant.name, onnx_sha256=artifact.sha256, onnx_size_bytes=artifact.size_bytes,
        task=lt.ref, encoding=source.settings.to_dict(), batch_policy=encoder.policy.to_dict(),
        main_score=lt.spec.main_score, ndcg_at_10=ndcg, scores=outcome.scores,
        per_query_ndcg_at_10=outcome.per_query,
        timings={"evaluate_s": round(time.perf_counter() - started, 3),
                 "inference_s": round(encoder.stats["inference_s"] - before["inference_s"], 3),
                 "texts_encoded": encoder.stats["texts"] - before["texts"],
                 "texts_from_cache": encoder.stats["cached_texts"] - before["cached_texts"],
                 "threads": encoder.threads},
        versions=versions(), machine=cpu_info(), created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        command=command, identity=ident, mteb_scores=outcome.mteb_scores,
    )


__all__ = ["SweepConfig", "SweepReport", "default_cache_dir", "default_data_dir", "default_results_dir", "run_sweep"]
