"""What gate and report read: one model's stored results by task and variant, Float32 required.

Example:
    >>> data = load_results(Path("results"))  # doctest: +SKIP
    >>> data.tasks, data.variants()[:2]  # doctest: +SKIP
    (['NFCorpus', 'SciFact'], ['float32', 'float16'])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from evalsuite.errors import EvalsuiteError
from evalsuite.models import model_slug
from evalsuite.results.records import DEFAULT_SPLIT, RunResult
from evalsuite.results.store import ResultStore
from evalsuite.variants import BASELINE, variant_order


class MissingResults(EvalsuiteError):
    """The results a comparison needs are not stored (``gate --run`` computes them)."""


def is_model(result: RunResult, model: str) -> bool:
    """Whether ``result`` is of ``model``: its Hub id or folder as given, its slug, or the folder's name."""
    return result.model_id == model or result.model_slug in {model, model_slug(model), Path(model).name}


@dataclass(frozen=True)
class ModelResults:
    """Stored results of one model: ``results[task][variant]`` (its canonical batch composition), tasks limited to
    those with a Float32 result, and every stored composition of each in ``compositions[task][variant][k]``."""

    model_id: str
    model_slug: str
    results: dict[str, dict[str, RunResult]]
    root: Path
    split: str = DEFAULT_SPLIT
    compositions: dict[str, dict[str, dict[int, RunResult]]] = field(default_factory=dict)

    def draws(self, task: str, variant: str, k: int | None = None) -> list[RunResult]:
        """The stored results of ``variant`` on ``task`` under compositions ``0..k-1`` that exist (all when None)."""
        stored = self.compositions.get(task, {}).get(variant, {})
        return [stored[c] for c in sorted(stored) if k is None or c < k]

    @property
    def tasks(self) -> list[str]:
        return list(self.results)

    def variants(self) -> list[str]:
        """Every variant with a result on some task, in table order (see :func:`variant_order`)."""
        return variant_order({v for by_variant in self.results.values() for v in by_variant})


def load_results(results_dir: Path, model: str | None = None, tasks: Iterable[str] | None = None,
                 split: str = DEFAULT_SPLIT) -> ModelResults:
    """Read one model's results on one split; ``model`` is a Hub id, folder name or slug, optional when only one
    model is stored.

    Tasks are matched case-insensitively and kept in the order given; without ``tasks``, every task that has a
    Float32 result, by name. A requested task without a Float32 result is a :class:`MissingResults` error.
    """
    store = ResultStore(results_dir)
    stored = list(store.all())
    if not stored:
        raise MissingResults(f"no results in {results_dir}/ (run `evalsuite run` first, or pass --run)")
    everything = [r for r in stored if r.task.split == split]
    if not everything:
        splits = ", ".join(sorted({r.task.split for r in stored}))
        raise MissingResults(f"no results on split {split!r} in {results_dir}/ (splits stored: {splits}); "
                             f"run `evalsuite run --split {split}` first, or pass --run")
    slugs = sorted({r.model_slug for r in everything})
    if model is None:
        if len(slugs) > 1:
            raise EvalsuiteError(f"{results_dir}/ holds results of {len(slugs)} models ({', '.join(slugs)}); choose one with --model")
        slug = slugs[0]
    else:
        matches = sorted({r.model_slug for r in everything if is_model(r, model)})
        if not matches:
            raise MissingResults(f"no results for model {model!r} in {results_dir}/ (have: {', '.join(slugs)})")
        slug = matches[0]
    damaged = [f"{path} ({why})" for path, why in store.damaged.items() if path.parent.parent.name == slug]
    if damaged:
        raise EvalsuiteError(f"damaged result file {damaged[0]}: re-run `evalsuite run` to recompute it, or delete it"
                             + (f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""))
    mine = [r for r in everything if r.model_slug == slug]
    by_task: dict[str, dict[str, RunResult]] = {}
    drawn: dict[str, dict[str, dict[int, RunResult]]] = {}
    for r in mine:
        drawn.setdefault(r.task.name, {}).setdefault(r.variant, {})[r.composition] = r
        if r.composition == 0:
            by_task.setdefault(r.task.name, {})[r.variant] = r
    with_baseline = sorted(t for t, by_variant in by_task.items() if BASELINE.name in by_variant)
    if tasks is None:
        chosen = with_baseline
    else:
        names = {t.lower(): t for t in by_task}
        chosen = []
        for t in tasks:
            name = names.get(t.strip().lower())
            if name is None or BASELINE.name not in by_task[name]:
                raise MissingResults(f"no Float32 result on task {t!r} (split {split}) for {mine[0].model_id} in {results_dir}/"
                                     f" (tasks with Float32 results: {', '.join(with_baseline) or 'none'})")
            if name not in chosen:
                chosen.append(name)
    if not chosen:
        raise MissingResults(f"no Float32 result for {mine[0].model_id} in {results_dir}/: nothing to compare against")
    return ModelResults(mine[0].model_id, slug, {t: by_task[t] for t in chosen}, results_dir, split,
                        {t: drawn[t] for t in chosen})


