"""A variant against Float32, paired query by query: per task and on the macro mean over tasks.

Example:
    >>> comparison = compare_variant(load_results(Path("results")), "qint8", GateConfig())  # doctest: +SKIP
    >>> round(comparison.mean.mean_delta, 4)  # doctest: +SKIP
    -0.0085
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from evalsuite.analysis.stats import PairedComparison, compare, pair
from evalsuite.errors import EvalsuiteError
from evalsuite.results import MissingResults, ModelResults
from evalsuite.variants import BASELINE, VariantSpec

if TYPE_CHECKING:
    from evalsuite.analysis.gate import GateConfig


@dataclass(frozen=True)
class VariantComparison:
    """A variant against Float32: per task, and the macro mean over tasks (None unless every task has a result)."""

    model_id: str
    variant: str
    tasks: dict[str, PairedComparison]
    mean: PairedComparison | None
    missing: tuple[str, ...] = ()


def compare_variant(data: ModelResults, variant: str, cfg: GateConfig, require_all: bool = True) -> VariantComparison:
    """Paired statistics of ``variant`` against Float32 on each task of ``data`` and on their macro mean.

    With ``require_all`` a task without a result of the variant is a :class:`MissingResults` error; without it the
    task is left out and the macro mean is None.
    """
    name = VariantSpec.parse(variant).name
    pairs, missing = {}, []
    for task, by_variant in data.results.items():
        result = by_variant.get(name)
        if result is None:
            missing.append(task)
            continue
        base = by_variant[BASELINE.name]
        if result.weights_sha256 != base.weights_sha256 or result.task.fingerprint != base.task.fingerprint:
            what = "weights" if result.weights_sha256 != base.weights_sha256 else "data"
            raise EvalsuiteError(f"{name} and float32 on {task} were computed from different {what}; "
                                 f"re-run `evalsuite run --variant {name}` to refresh the stale result")
        pairs[task] = pair(result.per_query_ndcg_at_10, base.per_query_ndcg_at_10, f"{name} vs float32 on {task}")
    if missing and require_all:
        have = [v for v in data.variants() if all(v in by_v for by_v in data.results.values())]
        raise MissingResults(f"no results for variant {name!r} of {data.model_id} on {', '.join(missing)} in {data.root}/ "
                             f"(complete variants: {', '.join(have)}); run `evalsuite run --variant {name}` or pass --run")
    per_task = {t: compare([p], cfg.confidence, cfg.n_resamples, cfg.seed) for t, p in pairs.items()}
    mean = compare(list(pairs.values()), cfg.confidence, cfg.n_resamples, cfg.seed) if pairs and not missing else None
    return VariantComparison(data.model_id, name, per_task, mean, tuple(missing))


