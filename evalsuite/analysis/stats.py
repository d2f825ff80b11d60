"""Paired statistics of a variant against Float32 on the same queries: mean delta, bootstrap CI, randomization test.

Everything here starts from per-query scores paired by query id. For task ``t`` with ``n_t`` queries,
``d_ti = v_ti - b_ti`` is the variant's NDCG@10 of query ``i`` minus Float32's. The task delta is
``mean_i d_ti``; the macro delta over ``T`` tasks is ``(1/T) sum_t mean_i d_ti`` (each task weighs the same,
whatever its number of queries), which equals the difference of the macro-averaged NDCG@10 columns.
A single task is the macro case with ``T = 1``, so one kernel serves both.

* CI: percentile bootstrap over queries, stratified by task (queries are resampled within their task).
* Batch compositions: a batch-dependent variant scored under ``K`` batch compositions has ``K`` scores per query,
  ``d_tki``. Its delta is the mean over compositions, and the bootstrap has two levels: each resample draws ``K``
  compositions and ``n_t`` queries with replacement (:func:`macro_bootstrap_ci`), so the interval holds both where
  the queries and where the batching could have fallen. With ``K = 1`` everything reduces to the one-level case.
* Significance: paired randomization (sign-flip) test of the same mean delta, two-sided; exact when small (on the
  per-query deltas averaged over compositions).

All functions are pure, vectorised with numpy, and reproducible: the same ``seed`` gives the same numbers.

Example:
    >>> c = compare_task({"q1": 0.5, "q2": 1.0, "q3": 0.0}, {"q1": 0.5, "q2": 0.8, "q3": 0.1})
    >>> round(c.mean_delta, 4), (c.better, c.worse, c.equal), c.p_value
    (0.0333, (1, 1, 1), 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from evalsuite.errors import EvalsuiteError

TEST_NAME = "paired randomization test (sign flip), two-sided"
CI_NAME = "paired percentile bootstrap over queries"
DEFAULT_RESAMPLES = 10_000
_CHUNK = 2_000_000  # random draws per vectorised block: bounds memory to ~16 MB whatever the number of queries
_TIE_EPS = 100 * np.finfo(np.float64).eps  # relative tolerance of |S*| >= |S| (as scipy.stats.permutation_test)


@dataclass(frozen=True)
class PairedComparison:
    """A variant against Float32 on the same queries (one task, or the macro average over tasks).

    Attributes:
        n_queries: number of paired queries (summed over tasks for a macro comparison).
        mean_variant: the variant's (macro) mean NDCG@10.
        mean_baseline: Float32's (macro) mean NDCG@10.
        mean_delta: ``mean_variant - mean_baseline``.
        relative_delta: ``mean_delta / mean_baseline`` (None when the baseline is 0).
        ci_low, ci_high: bootstrap confidence interval of ``mean_delta``.
        p_value: two-sided p-value of the randomization test of ``mean_delta = 0``.
        better, worse, equal: queries where the variant scores higher, lower, the same (within ``tie_tol``).
        compositions: batch compositions behind each task's variant scores (the fewest over tasks; 1: none).
        composition_deltas: the mean delta under each composition ``k`` (macro over tasks), when ``compositions > 1``.
        query_ci_low, query_ci_high: the interval with compositions held fixed (queries resampled only), when
            ``compositions > 1``; how much narrower it is than the CI shows what the batching adds.
    """

    n_queries: int
    mean_variant: float
    mean_baseline: float
    mean_delta: float
    relative_delta: float | None
    ci_low: float
    ci_high: float
    p_value: float
    better: int
    worse: int
    equal: int
    confidence: float
    n_resamples: int
    seed: int
    compositions: int = 1
    composition_deltas: tuple[float, ...] = ()
    query_ci_low: float | None = None
    query_ci_high: float | None = None

    @property
    def composition_sd(self) -> float | None:
        """Standard deviation of the per-composition mean deltas (None with one composition)."""
        return float(np.std(self.composition_deltas, ddof=1)) if len(self.composition_deltas) > 1 else None

    @property
    def composition_share(self) -> float | None:
        """The share of the CI's width that the batch compositions add: ``1 - query-only width / width``."""
        if self.query_ci_low is None or self.query_ci_high is None or self.ci_high <= self.ci_low:
            return None
        return max(0.0, 1.0 - (self.query_ci_high - self.query_ci_low) / (self.ci_high - self.ci_low))

    def significant(self, alpha: float | None = None) -> bool:
        """p < alpha, by default ``1 - confidence`` (0.05 for a 95% CI)."""
        return self.p_value < (round(1.0 - self.confidence, 10) if alpha is None else alpha)

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["composition_deltas"] = list(self.composition_deltas)
        out["composition_sd"] = self.composition_sd
        return out


def pair(variant: Mapping[str, float], baseline: Mapping[str, float], what: str = "scores") -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Align two per-query score maps by query id (sorted ids); an error when their query sets differ.

    Example:
        >>> pair({"b": 1.0, "a": 0.5}, {"a": 0.25, "b": 0.75})
        (array([0.5, 1. ]), array([0.25, 0.75]))
    """
    if variant.keys() != baseline.keys():
        only_v, only_b = sorted(variant.keys() - baseline.keys()), sorted(baseline.keys() - variant.keys())
        shown = ", ".join([f"{len(only_v)} only in the variant (e.g. {only_v[0]!r})"] * bool(only_v)
                          + [f"{len(only_b)} only in the baseline (e.g. {only_b[0]!r})"] * bool(only_b))
        raise EvalsuiteError(f"{what}: the variant and the baseline were scored on different queries: {shown}")
    if not variant:
        raise EvalsuiteError(f"{what}: no per-query scores")
    ids = sorted(variant)
    return (np.fromiter((variant[q] for q in ids), np.float64, len(ids)),
            np.fromiter((baseline[q] for q in ids), np.float64, len(ids)))


def counts(deltas: ArrayLike, tie_tol: float = 1e-12) -> tuple[int, int, int]:
    """Queries where the variant is better (``d > tol``), worse (``d < -tol``) and equal (``|d| <= tol``).

    Example:
        >>> counts([0.1, -0.2, 0.0, 0.0])
        (1, 1, 2)
    """
    d = np.asarray(deltas, dtype=np.float64)
    better, worse = int((d > tie_tol).sum()), int((d < -tie_tol).sum())
    return better, worse, d.size - better - worse


def bootstrap_ci(deltas: ArrayLike, confidence: float = 0.95, n_resamples: int = DEFAULT_RESAMPLES,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of paired deltas; :func:`macro_bootstrap_ci` with one task.

    Example:
        >>> bootstrap_ci([0.0, 1.0])  # resampled means are 0, 0.5, 1 with probability 1/4, 1/2, 1/4
        (0.0, 1.0)
    """
    return macro_bootstrap_ci([deltas], confidence, n_resamples, seed)


def macro_bootstrap_ci(groups: Sequence[ArrayLike], confidence: float = 0.95, n_resamples: int = DEFAULT_RESAMPLES,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the macro mean delta, resampling queries (and compositions) within each task.

    A group is a task's paired deltas: 1-d over its ``n_t`` queries, or 2-d ``(K_t, n_t)`` over ``K_t`` batch
    compositions. For each resample ``b = 1..B`` and task ``t``, draw ``n_t`` query indices uniformly with
    replacement from ``0..n_t-1`` (and, for a 2-d group, ``K_t`` composition indices from ``0..K_t-1``) and set
    ``M*_b = (1/T) sum_t mean_{k*} mean_{i*} d_t[k*, i*]``. The CI is ``[q(alpha/2), q(1 - alpha/2)]`` of
    ``{M*_b}``, ``alpha = 1 - confidence``, with numpy's default (linear) quantiles. Draws come from
    ``numpy.random.default_rng(seed)``, task by task, in blocks (query indices, then composition indices).

    Args:
        groups: per-task arrays of paired deltas, each non-empty.
        confidence: coverage of the interval, in (0, 1).
        n_resamples: bootstrap resamples ``B``.
        seed: seed of the generator; the same seed gives the same interval.
    """
    arrays = _groups(groups)
    if not 0.0 < confidence < 1.0:
        raise EvalsuiteError(f"confidence must be in (0, 1), not {confidence}")
    if n_resamples < 1:
        raise EvalsuiteError(f"n_resamples must be at least 1, not {n_resamples}")
    rng = np.random.default_rng(seed)
    means = np.zeros(n_resamples)
    for d in arrays:
        k, n = d.shape
        step = max(1, _CHUNK // (n * k))
        for start in range(0, n_resamples, step):
            stop = min(start + step, n_resamples)
            idx = rng.integers(0, n, size=(stop - start, n))
            if k == 1:
                means[start:stop] += d[0][idx].mean(axis=1)
                continue
            per_composition = d[:, idx].mean(axis=2)  # (K, resamples): each composition's mean over the drawn queries
            drawn = rng.integers(0, k, size=(stop - start, k))
            means[start:stop] += np.take_along_axis(per_composition.T, drawn, axis=1).mean(axis=1)
    means /= len(arrays)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def randomization_test(deltas: ArrayLike, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> float:
    """Two-sided p-value of the paired randomization test of ``mean(d) = 0``; :func:`macro_randomization_test` with one task.

    Example:
        >>> randomization_test([1.0, 2.0, 3.0])  # exact: |+-1 +-2 +-3| >= 6 for 2 of the 8 sign vectors
        0.25
    """
    return macro_randomization_test([deltas], n_resamples, seed)


def macro_randomization_test(groups: Sequence[ArrayLike], n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> float:
    """Two-sided p-value of the paired randomization (sign-flip) test of ``macro mean delta = 0``.

    Under H0 the labels "variant" and "Float32" of each query are exchangeable, so each delta keeps its size
    and gets a random sign. With weights ``w_ti = 1 / (T n_t)`` the statistic is ``S = sum w_ti d_ti`` (the macro
    mean delta) and its null copies are ``S* = sum w_ti s_ti d_ti``, ``s_ti`` uniform on ``{-1, +1}``;
    ``p = P(|S*| >= |S|)``, with a relative tolerance of 100 machine epsilons so that rounding cannot break ties.

    * Exact when ``2**m <= n_resamples`` (``m`` = number of non-zero deltas; zeros do not move ``S*``):
      all ``2**m`` sign vectors, ``p = #{|S*| >= |S|} / 2**m``. This is what ``scipy.stats.permutation_test``
      with ``permutation_type="samples"`` computes for one sample.
    * Otherwise Monte Carlo with ``B = n_resamples`` draws from ``numpy.random.default_rng(seed)``:
      ``p = (1 + #{|S*_b| >= |S|}) / (1 + B)``, never 0 (Phipson & Smyth 2010).
    """
    arrays = [d.mean(axis=0) for d in _groups(groups)]
    if n_resamples < 1:
        raise EvalsuiteError(f"n_resamples must be at least 1, not {n_resamples}")
    weights = np.concatenate([np.full(d.size, 1.0 / (len(arrays) * d.size)) for d in arrays])
    wd = weights * np.concatenate(arrays)
    wd = wd[wd != 0.0]
    observed = abs(float(wd.sum()))
    if wd.size == 0:
        return 1.0
    threshold = observed - _TIE_EPS * observed
    m = wd.size
    if 2**m <= n_resamples:
        signs = 1 - 2 * ((np.arange(2**m)[:, None] >> np.arange(m)) & 1)
        return float(np.mean(np.abs(signs @ wd) >= threshold))
    rng = np.random.default_rng(seed)
    hits = 0
    step = max(1, _CHUNK // m)
    for start in range(0, n_resamples, step):
        flips = rng.integers(0, 2, size=(min(step, n_resamples - start), m), dtype=np.int8)
        null = wd.sum() - 2.0 * (flips @ wd)  # sum of s_i * wd_i with s_i = 1 - 2 * flip_i
        hits += int(np.count_nonzero(np.abs(null) >= threshold))
    return (1 + hits) / (1 + n_resamples)


def compare(tasks: Sequence[tuple[ArrayLike, ArrayLike]], confidence: float = 0.95, n_resamples: int = DEFAULT_RESAMPLES,
            seed: int = 0, tie_tol: float = 1e-12) -> PairedComparison:
    """All paired statistics of the macro average over tasks (one pair of aligned arrays per task).

    Args:
        tasks: per task, ``(variant, baseline)`` per-query scores aligned by query (see :func:`pair`); the variant's
            may be 2-d, ``(compositions, queries)``, for a variant scored under several batch compositions.
        confidence: coverage of the bootstrap CI; ``1 - confidence`` is also the default significance level.
        n_resamples: resamples of both the bootstrap and the (Monte Carlo) randomization test.
        seed: seed of both; the same seed gives the same CI and p-value.
        tie_tol: ``|d| <= tie_tol`` counts as equal.
    """
    if not tasks:
        raise EvalsuiteError("nothing to compare: no task")
    variants = [np.atleast_2d(np.asarray(v, dtype=np.float64)) for v, _ in tasks]
    baselines = [np.asarray(b, dtype=np.float64) for _, b in tasks]
    if any(v.ndim != 2 or b.ndim != 1 or v.shape[1] != b.shape[0] for v, b in zip(variants, baselines, strict=True)):
        raise EvalsuiteError("variant and baseline scores must be arrays of the same length (queries) per task")
    deltas = [v - b for v, b in zip(variants, baselines, strict=True)]
    mean_v = float(np.mean([v.mean() for v in variants]))
    mean_b = float(np.mean([b.mean() for b in baselines]))
    mean_d = float(np.mean([d.mean() for d in deltas]))
    low, high = macro_bootstrap_ci(deltas, confidence, n_resamples, seed)
    averaged = [d.mean(axis=0) for d in deltas]
    better, worse, equal = counts(np.concatenate(averaged), tie_tol)
    k = min(d.shape[0] for d in deltas)
    extra: dict[str, object] = {}
    if k > 1:
        query_low, query_high = macro_bootstrap_ci(averaged, confidence, n_resamples, seed)
        per_k = [float(np.mean([d[c].mean() for d in deltas])) for c in range(k)]
        extra = {"compositions": k, "composition_deltas": tuple(per_k), "query_ci_low": query_low, "query_ci_high": query_high}
    return PairedComparison(
        n_queries=sum(d.shape[1] for d in deltas), mean_variant=mean_v, mean_baseline=mean_b, mean_delta=mean_d,
        relative_delta=mean_d / mean_b if mean_b else None, ci_low=low, ci_high=high,
        p_value=macro_randomization_test(deltas, n_resamples, seed), better=better, worse=worse, equal=equal,
        confidence=confidence, n_resamples=n_resamples, seed=seed, **extra)  # type: ignore[arg-type]


def compare_task(variant: Mapping[str, float], baseline: Mapping[str, float], confidence: float = 0.95,
                 n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> PairedComparison:
    """All paired statistics of one task, from per-query score maps keyed by query id."""
    return compare([pair(variant, baseline)], confidence, n_resamples, seed)


def _groups(groups: Sequence[ArrayLike]) -> list[NDArray[np.float64]]:
    """Each group as a 2-d array (compositions x queries); a 1-d group is one composition."""
    arrays = [np.atleast_2d(np.asarray(g, dtype=np.float64)) for g in groups]
    if any(a.ndim != 2 for a in arrays):
        raise EvalsuiteError("per-query deltas must be 1-d (queries) or 2-d (compositions x queries) per task")
    if not arrays or any(a.size == 0 for a in arrays):
        raise EvalsuiteError("every task needs at least one query")
    if not all(np.isfinite(a).all() for a in arrays):
        raise EvalsuiteError("per-query scores must be finite numbers")
    return arrays
