"""A variant against Float32, paired query by query: per task and on the macro mean over tasks.

Example:
    >>> comparison = compare_variant(load_results(Path("results")), "qint8", GateConfig())  # doctest: +SKIP
    >>> round(comparison.mean.mean_delta, 4)  # doctest: +SKIP
    -0.0085
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from evalsuite.analysis.stats import PairedComparison, compare, pair
from evalsuite.encode.policy import BatchPolicy
from evalsuite.errors import EvalsuiteError
from evalsuite.machine import REFERENCE_KERNELS
from evalsuite.results import MissingResults, ModelResults, RunResult
from evalsuite.variants import BASELINE, VariantSpec

if TYPE_CHECKING:
    from evalsuite.analysis.gate import GateConfig


@dataclass(frozen=True)
class VariantComparison:
    """A variant against Float32: per task, and the macro mean over tasks (None unless every task has a result).

    ``short`` names the tasks where a batch-dependent variant has fewer batch compositions stored than the config asks
    for, with how many it has (its statistics then use those).
    """

    model_id: str
    variant: str
    tasks: dict[str, PairedComparison]
    mean: PairedComparison | None
    missing: tuple[str, ...] = ()
    short: dict[str, int] = field(default_factory=dict)
    deltas: dict[str, np.ndarray] = field(default_factory=dict)  # per task, per-query deltas (mean over compositions), by query id


def compare_variant(data: ModelResults, variant: str, cfg: GateConfig, require_all: bool = True) -> VariantComparison:
    """Paired statistics of ``variant`` against Float32 on each task of ``data`` and on their macro mean.

    With ``require_all`` a task without a result of the variant is a :class:`MissingResults` error; without it the
    task is left out and the macro mean is None.
    """
    spec = VariantSpec.parse(variant)
    name = spec.name
    pairs, missing, short, averaged = {}, [], {}, {}
    for task, by_variant in data.results.items():
        if by_variant.get(name) is None:
            missing.append(task)
            continue
        base = by_variant[BASELINE.name]
        want = _policy(by_variant[name]).compositions(spec.kind.batch_dependent, cfg.compositions)
        draws = data.draws(task, name, want)
        if len(draws) < want or [d.composition for d in draws] != list(range(want)):
            short[task] = len(draws)
        kinds = sorted({str(d.int8_kernels or REFERENCE_KERNELS) for d in draws})
        if len(kinds) > 1:
            raise EvalsuiteError(f"{name} on {task}: its batch compositions were computed with int8 kernels of different "
                                 f"families ({' and '.join(kinds)}); re-run them on one kind of machine")
        rows = []
        for result in draws:
            problem = mismatch(result, base)
            if problem:
                raise EvalsuiteError(f"{name} and float32 on {task} {problem}")
            v, b = pair(result.per_query_ndcg_at_10, base.per_query_ndcg_at_10, f"{name} vs float32 on {task}")
            rows.append(v)
        pairs[task] = (np.stack(rows), b)
        averaged[task] = pairs[task][0].mean(axis=0) - b
    if short and require_all:
        task, have = next(iter(short.items()))
        raise MissingResults(f"{name} is judged over {want} batch compositions and has {have} on {task}; "
                             f"run `evalsuite run --variant {name} --compositions {want}` or pass --run")
    if missing and require_all:
        have = [v for v in data.variants() if all(v in by_v for by_v in data.results.values())]
        raise MissingResults(f"no results for variant {name!r} of {data.model_id} on {', '.join(missing)} in {data.root}/ "
                             f"(complete variants: {', '.join(have)}); run `evalsuite run --variant {name}` or pass --run")
    per_task = {t: compare([p], cfg.confidence, cfg.n_resamples, cfg.seed) for t, p in pairs.items()}
    mean = compare(list(pairs.values()), cfg.confidence, cfg.n_resamples, cfg.seed) if pairs and not missing else None
    return VariantComparison(data.model_id, name, per_task, mean, tuple(missing), short, averaged)


def mismatch(result: RunResult, base: RunResult) -> str | None:
    """Why ``result`` cannot be paired with Float32's ``base`` (and how to refresh it), or None when it can.

    A delta belongs to one set of inputs: the same weights and data, and the same encoding settings and batch
    policy (int8 embeddings depend on their batch neighbours), so a variant computed under another policy than
    Float32's is refused rather than silently compared.

    Example:
        >>> mismatch(stored["qint8"], stored["float32"])  # doctest: +SKIP
        'were computed under different batch policies (qint8: docs1-q1-length, float32: docs32-q1-length); ...'
    """
    rerun = f"re-run `evalsuite run --variant {result.variant}"
    if result.weights_sha256 != base.weights_sha256 or result.task.fingerprint != base.task.fingerprint:
        what = "weights" if result.weights_sha256 != base.weights_sha256 else "data"
        return f"were computed from different {what}; {rerun}` to refresh the stale result"
    mine, theirs = _policy_key(result.batch_policy), _policy_key(base.batch_policy)
    if mine != theirs:
        flags = _policy_flags(base.batch_policy)
        return (f"were computed under different batch policies ({result.variant}: {mine}, float32: {theirs}); "
                f"{rerun}{flags}` to evaluate it under float32's policy")
    changed = sorted(k for k in result.encoding.keys() | base.encoding.keys() if result.encoding.get(k) != base.encoding.get(k))
    if changed:
        shown = ", ".join(f"{k} {result.encoding.get(k)!r} vs {base.encoding.get(k)!r}" for k in changed)
        return (f"were computed with different encoding settings ({result.variant} vs float32: {shown}); "
                f"{rerun}` to evaluate both with the model's current settings")
    return None


def _policy_key(policy: dict[str, object]) -> str:
    """The policy without its batch composition: results under different compositions of one policy pair up."""
    try:
        return BatchPolicy.from_dict(policy).base_key
    except (KeyError, TypeError, ValueError, EvalsuiteError):
        return str(policy.get("key") or sorted(policy.items()))


def _policy(result: RunResult) -> BatchPolicy:
    """The batch policy a result was computed under (the default for a record that cannot say)."""
    try:
        return BatchPolicy.from_dict(result.batch_policy)
    except (KeyError, TypeError, ValueError, EvalsuiteError):
        return BatchPolicy()


def _policy_flags(policy: dict[str, object]) -> str:
    """The ``evalsuite run`` options that reproduce ``policy`` (empty when the record lacks its fields)."""
    options = (("batch_size", "--batch-size"), ("query_batch_size", "--query-batch-size"), ("order", "--order"))
    if not all(name in policy for name, _ in options):
        return ""
    return "".join(f" {flag} {policy[name]}" for name, flag in options)
