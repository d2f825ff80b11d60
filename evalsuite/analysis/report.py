"""The comparison report: every stored variant of a model against Float32, judged by the gate, with its speed.

The report has the layout of the reference quality table: one row per variant (Float32 and the ``seed``
variants first), its build settings, NDCG@10 per task, the macro mean over tasks, the delta of the mean
against Float32 (absolute and %), its bootstrap CI and a significance marker (see :mod:`evalsuite.analysis.stats`).
:mod:`evalsuite.analysis.render` turns it into markdown, CSV, JSON or HTML; :mod:`evalsuite.analysis.plots` into PNGs.

Example:
    >>> report = build_report(Path("results"))  # doctest: +SKIP
    >>> print(render(report, "md"))  # doctest: +SKIP
    | Variant | dtype | per-chan | 7-bit | opt | NFCorpus | SciFact | Mean | Δ | Δ % | 95% CI | sig |
    ...
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from evalsuite.analysis.compare import VariantComparison, compare_variant
from evalsuite.analysis.gate import GateConfig, Verdict, judge
from evalsuite.analysis.provenance import Provenance, provenance
from evalsuite.bench.schema import BenchResult, bench_path, read_bench
from evalsuite.errors import EvalsuiteError
from evalsuite.machine import REFERENCE_KERNELS
from evalsuite.results import ModelResults, load_results
from evalsuite.variants import BASELINE, VariantSpec


@dataclass(frozen=True)
class Speed:
    """A variant's speed at the report's bench point, and its file size."""

    speedup: float | None
    median_ms: float | None
    size_bytes: int | None
    onnx_sha256: str | None = None  # of the file that was timed


@dataclass(frozen=True)
class Bench:
    """What the report uses of ``bench.json``: the speed of each variant at one (length, batch) point."""

    path: Path
    length: int
    batch: int
    machine: dict[str, object]
    speeds: dict[str, Speed]
    result: BenchResult | None = None  # the whole document: every length and batch, its command

    def describe(self) -> str:
        return str(self.machine.get("description") or "unknown machine")


def bench_point(result: BenchResult, path: Path, length: int, batch: int) -> tuple[Bench | None, list[str]]:
    """The speeds of ``result`` at (``length``, ``batch``); the nearest measured length, with a note, when it lacks it."""
    lengths = sorted({m.length for m in result.measurements if m.batch == batch})
    if not lengths:
        return None, [f"{path}: no bench results at batch {batch}; speed columns left out"]
    used = min(lengths, key=lambda n: (abs(n - length), n))
    notes = []
    if used != length:
        notes.append(f"{path}: no bench results at {length} tokens, batch {batch}; showing {used} tokens (measured: {', '.join(map(str, lengths))})")
    speeds = {}
    for m in result.measurements:
        if m.length == used and m.batch == batch:
            info = result.variants.get(m.variant)
            speeds[VariantSpec.parse(m.variant).name] = Speed(m.speedup, m.median_ms, info.size_bytes if info else None,
                                                             info.onnx_sha256 if info else None)
    return Bench(path, used, batch, result.machine.to_dict(), speeds, result), notes


def load_bench(path: Path | None, default: Path, cfg: GateConfig, weights_sha256: str) -> tuple[Bench | None, list[str]]:
    """The report's bench point from ``path`` (named by the user: an unusable file is an error) or from ``default``
    (an unusable file there is only a note)."""
    chosen = path or default
    if path is None and not default.is_file():
        return None, []
    try:
        result = read_bench(chosen)
    except EvalsuiteError as exc:
        if path is not None:
            raise
        return None, [f"{exc}; ignored"]
    if result.weights_sha256 != weights_sha256:
        problem = f"{chosen}: benchmarks other weights ({result.weights_sha256[:12]}...) than the results"
        if path is not None:
            raise EvalsuiteError(problem)
        return None, [f"{problem}; ignored"]
    return bench_point(result, chosen, cfg.speed_length, cfg.speed_batch)


@dataclass(frozen=True)
class Row:
    """One variant of the report: its comparison with Float32, gate verdict, speed and per-query deltas."""

    spec: VariantSpec
    comparison: VariantComparison
    verdict: Verdict | None  # None when a task has no result
    speed: Speed | None
    size_bytes: int | None
    deltas: dict[str, NDArray[np.float64]]  # per task, per-query deltas in query-id order (for plots)
    kernels: str | None = None  # the int8 kernel family of its results when it is not the reference one

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_baseline(self) -> bool:
        return self.spec == BASELINE

    @property
    def off_reference(self) -> bool:
        """Computed with int8 kernels of another family than the reference one (its numbers hold for that family)."""
        return self.kernels is not None


@dataclass(frozen=True)
class Report:
    """Everything ``evalsuite report`` shows; render it with :func:`evalsuite.analysis.render.render`, plot it with :mod:`evalsuite.analysis.plots`."""

    model_id: str
    model_slug: str
    tasks: list[str]
    n_queries: dict[str, int]
    rows: list[Row]
    config: GateConfig
    bench: Bench | None
    recommended: str | None
    recommendation: str
    notes: tuple[str, ...]
    provenance: Provenance | None = None


def build_report(results_dir: Path, model: str | None = None, tasks: Iterable[str] | None = None,
                 variants: Iterable[str] | None = None, cfg: GateConfig | None = None,
                 bench_file: Path | None = None) -> Report:
    """Compare every stored variant of a model with Float32 and judge it with the gate.

    Args:
        results_dir: the results folder (``<results-dir>/<model-slug>/<Task>/<variant>.json``).
        model: Hub id, folder or slug; optional when the folder holds one model.
        tasks: task columns, in order; default: ``cfg.tasks``, else every task with a Float32 result.
        variants: rows (names; Float32 is always first); default: every stored variant.
        cfg: gate and statistics settings; default ``configs/gate.yaml``.
        bench_file: bench results; default ``<results-dir>/<model-slug>/bench.json`` when it exists.
    """
    cfg = cfg or GateConfig.load()
    data = load_results(results_dir, model, tasks if tasks is not None else cfg.tasks, cfg.split)
    stored = data.variants()
    if variants is None:
        names = stored
    else:
        wanted = [VariantSpec.parse(v).name for v in variants]
        absent = [v for v in wanted if v not in stored]
        if absent:
            raise EvalsuiteError(f"no results for {', '.join(absent)} of {data.model_id} in {results_dir}/ (have: {', '.join(stored)})")
        names = [BASELINE.name] + [v for v in dict.fromkeys(wanted) if v != BASELINE.name]
    weights = data.results[data.tasks[0]][BASELINE.name].weights_sha256
    bench, notes = load_bench(bench_file, bench_path(results_dir, data.model_slug), cfg, weights)
    rows = [_row(data, name, cfg, bench, notes) for name in names]
    recommended, why = recommend(rows, bench, cfg)
    n_queries = {t: len(data.results[t][BASELINE.name].per_query_ndcg_at_10) for t in data.tasks}
    origin = provenance(data, names, bench.result if bench else None)
    if len(origin.machines) > 1:
        notes.append(f"the results were computed on {len(origin.machines)} different machines: "
                     + "; ".join(m.describe() for m in origin.machines))
    return Report(data.model_id, data.model_slug, data.tasks, n_queries, rows, cfg, bench, recommended, why, tuple(notes), origin)


def _row(data: ModelResults, name: str, cfg: GateConfig, bench: Bench | None, notes: list[str]) -> Row:
    comparison = compare_variant(data, name, cfg, require_all=False)
    if comparison.missing:
        notes.append(f"{name} has no result on {', '.join(comparison.missing)}: its mean and gate are left out")
    for task, have in comparison.short.items():
        notes.append(f"{name} has {have} of the {cfg.compositions} batch compositions it is judged over on {task}: "
                     f"its numbers there use those")
    verdict = judge(comparison, cfg) if comparison.mean is not None else None
    results = [r for task in data.results for r in data.draws(task, name)]
    deltas = comparison.deltas
    speed = bench.speeds.get(name) if bench else None
    if bench and speed is None:
        notes.append(f"{name} has no bench result at {bench.length} tokens, batch {bench.batch}")
    if speed and speed.onnx_sha256 and any(r.onnx_sha256 != speed.onnx_sha256 for r in results):
        notes.append(f"{name}: the bench timed another ONNX file than the one evaluated (re-run `evalsuite bench`)")
    size = speed.size_bytes if speed and speed.size_bytes else (results[0].onnx_size_bytes if results else None)
    kernels = next((r.int8_kernels for r in results if r.int8_kernels not in (None, REFERENCE_KERNELS)), None)
    return Row(VariantSpec.parse(name), comparison, verdict, speed, size, deltas, kernels)


def recommend(rows: list[Row], bench: Bench | None, cfg: GateConfig) -> tuple[str | None, str]:
    """The fastest variant (highest speedup; ties: the smaller file) that passes the gate, and why."""
    if bench is None:
        return None, "no bench results (run `evalsuite bench`): cannot name the fastest variant that passes the gate"
    passing = [r for r in rows if r.verdict is not None and r.verdict.passed and r.speed and r.speed.speedup]
    if not passing:
        return None, f"no variant with bench results passes the gate ({cfg.describe()})"
    best = max(passing, key=lambda r: (r.speed.speedup, -(r.size_bytes or 0)))  # type: ignore[union-attr]
    caveat = " (its CI is inconclusive)" if best.verdict and best.verdict.outcome == "inconclusive" else ""
    return best.name, (f"{best.name}: the fastest variant that passes the gate{caveat}, {best.speed.speedup:.2f}x Float32 "  # type: ignore[union-attr]
                       f"at {bench.length} tokens, batch {bench.batch} ({cfg.describe()})")
