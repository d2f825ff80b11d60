"""Paired statistics against hand-computed cases, brute-force enumeration, normal theory and scipy."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from evalsuite.analysis import stats
from evalsuite.errors import EvalsuiteError


def _mean_stat(x: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(x, axis=axis)


# ---------------------------------------------------------------------------------------------------- pairing, counts


def test_pair_aligns_by_query_id_whatever_the_order() -> None:
    v, b = stats.pair({"q2": 0.2, "q1": 0.1, "q3": 0.3}, {"q3": 0.03, "q1": 0.01, "q2": 0.02})
    assert v.tolist() == [0.1, 0.2, 0.3]
    assert b.tolist() == [0.01, 0.02, 0.03]


def test_pair_refuses_different_query_sets() -> None:
    with pytest.raises(EvalsuiteError, match=r"1 only in the variant \(e.g. 'q9'\).*1 only in the baseline \(e.g. 'q2'\)"):
        stats.pair({"q1": 0.1, "q9": 0.2}, {"q1": 0.1, "q2": 0.2}, "x")
    with pytest.raises(EvalsuiteError, match="no per-query scores"):
        stats.pair({}, {})


def test_counts_hand_computed() -> None:
    assert stats.counts([0.1, -0.2, 0.0, 0.0, 1e-15, -0.3]) == (1, 2, 3)
    assert stats.counts([0.01, -0.01, 0.005], tie_tol=0.01) == (0, 0, 3)


# ---------------------------------------------------------------------------------------------------- bootstrap CI


def test_bootstrap_two_points_hand_computed() -> None:
    # Resampled means of [0, 1] are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4.
    assert stats.bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    # The 30% and 70% quantiles both fall in the 0.5 block (cumulative 0.25 .. 0.75).
    assert stats.bootstrap_ci([0.0, 1.0], confidence=0.4) == (0.5, 0.5)


def test_bootstrap_degenerate_cases() -> None:
    assert stats.bootstrap_ci([0.25] * 7) == pytest.approx((0.25, 0.25), abs=1e-15)
    assert stats.bootstrap_ci([-0.5]) == (-0.5, -0.5)


def test_bootstrap_is_reproducible_and_depends_on_the_seed() -> None:
    d = np.random.default_rng(3).normal(-0.01, 0.05, 150)
    assert stats.bootstrap_ci(d, seed=7) == stats.bootstrap_ci(d, seed=7)
    assert stats.bootstrap_ci(d, seed=7) != stats.bootstrap_ci(d, seed=8)


def test_bootstrap_matches_scipy_percentile_bootstrap() -> None:
    d = np.random.default_rng(11).normal(-0.01, 0.05, 200)
    ours = stats.bootstrap_ci(d, n_resamples=20_000, seed=1)
    ref = sps.bootstrap((d,), np.mean, method="percentile", n_resamples=20_000, confidence_level=0.95,
                        rng=np.random.default_rng(2)).confidence_interval
    se = d.std() / math.sqrt(d.size)
    # Two independent Monte Carlo runs: their quantiles differ by ~0.04 SE; allow 0.15 SE.
    assert ours[0] == pytest.approx(ref.low, abs=0.15 * se)
    assert ours[1] == pytest.approx(ref.high, abs=0.15 * se)


def test_macro_bootstrap_hand_computed() -> None:
    # Task 1 mean is 0, 0.5 or 1 (p = 1/4, 1/2, 1/4); task 2 is always 2: macro = (m1 + 2) / 2 in {1, 1.25, 1.5}.
    assert stats.macro_bootstrap_ci([[0.0, 1.0], [2.0]]) == (1.0, 1.5)


def test_macro_bootstrap_matches_normal_theory() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(-0.02, 0.04, 120), rng.normal(0.01, 0.06, 90)
    low, high = stats.macro_bootstrap_ci([a, b], n_resamples=20_000)
    # Stratified: Var(macro mean) = (var_a / n_a + var_b / n_b) / 4, with the plug-in (ddof=0) variances.
    center = (a.mean() + b.mean()) / 2
    se = math.sqrt(a.var() / a.size + b.var() / b.size) / 2
    assert low == pytest.approx(center - 1.959964 * se, abs=0.1 * se)
    assert high == pytest.approx(center + 1.959964 * se, abs=0.1 * se)


def _exact_bootstrap_quantile(groups: list[list[float]], q: float) -> float:
    """The q-quantile of the exact stratified bootstrap distribution of the macro mean, by enumeration: every
    tuple of indices drawn with replacement within each task, all equally likely."""
    per_task = [np.array([np.mean([g[i] for i in idx]) for idx in itertools.product(range(len(g)), repeat=len(g))])
                for g in groups]
    macro = functools.reduce(np.add.outer, per_task).ravel() / len(groups)  # every combination of the tasks' means
    values = np.sort(macro)
    return float(values[math.ceil(q * values.size) - 1])  # smallest value whose CDF reaches q


BOOTSTRAP_CASES = {"one task": [[0.0, 0.1, 0.3, 0.7, 1.5]], "two tasks": [[0.0, 0.2, 1.0], [-0.5, 0.1, 0.3, 0.9]]}


@pytest.mark.parametrize("chunk", [stats._CHUNK, 20], ids=["one block", "blocks of 4 to 6 resamples"])
@pytest.mark.parametrize("case", list(BOOTSTRAP_CASES))
def test_bootstrap_ci_matches_the_exact_bootstrap_distribution(case: str, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against full enumeration (3,125 and 6,912 equally likely resamples), with the draws made in one block or in
    blocks of 4 to 6 resamples (20 // n; the last block partial). With B = 100,001 the sample quantile at 2.5% lies
    between the exact 2.3% and 2.7% quantiles (4 standard errors of the empirical CDF)."""
    monkeypatch.setattr(stats, "_CHUNK", chunk)
    groups = BOOTSTRAP_CASES[case]
    low, high = stats.macro_bootstrap_ci(groups, n_resamples=100_001, seed=3)
    assert _exact_bootstrap_quantile(groups, 0.023) <= low <= _exact_bootstrap_quantile(groups, 0.027)
    assert _exact_bootstrap_quantile(groups, 0.973) <= high <= _exact_bootstrap_quantile(groups, 0.977)
    if len(groups) == 1:
        assert stats.bootstrap_ci(groups[0], n_resamples=100_001, seed=3) == (low, high)


@pytest.mark.parametrize("chunk", [stats._CHUNK, 7], ids=["one block", "one draw per block"])
def test_monte_carlo_randomization_matches_the_exact_p_value(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """12 non-zero deltas and B = 3,000 < 2**12: Monte Carlo, here against all 4,096 sign vectors by brute force.
    Its standard error is about 0.0085, so 0.04 is 4.7 of them."""
    monkeypatch.setattr(stats, "_CHUNK", chunk)  # 7 // 12 = 0: one sign vector per block
    d = np.round(np.random.default_rng(2).normal(0.03, 0.1, 12), 3)
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=12)))
    exact = float(np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-12))
    assert 0.2 < exact < 0.4  # far from 0 and 1, where a broken sampler is easy to miss
    assert stats.randomization_test(d, n_resamples=3000, seed=1) == pytest.approx(exact, abs=0.04)


# ---------------------------------------------------------------------------------------------------- randomization test


def test_randomization_hand_computed() -> None:
    assert stats.randomization_test([1.0, 2.0, 3.0]) == 0.25  # |+-1 +-2 +-3| >= 6: 2 of 8 sign vectors
    assert stats.randomization_test([1.0, 2.0, 3.0, 0.0, 0.0]) == 0.25  # zeros do not move S*
    assert stats.randomization_test([0.1] * 10) == 2 / 1024
    assert stats.randomization_test([0.0, 1.0]) == 1.0
    assert stats.randomization_test([0.0, 0.0]) == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_randomization_equals_scipy_permutation_test(seed: int) -> None:
    d = np.round(np.random.default_rng(seed).normal(0.05, 0.1, 9), 3)
    ref = sps.permutation_test((d,), _mean_stat, permutation_type="samples", n_resamples=np.inf, alternative="two-sided")
    assert stats.randomization_test(d) == pytest.approx(ref.pvalue, abs=1e-12)


def test_monte_carlo_randomization_agrees_with_scipy() -> None:
    d = np.random.default_rng(21).normal(0.008, 0.05, 40)
    ours = stats.randomization_test(d, n_resamples=20_000, seed=3)
    ref = sps.permutation_test((d,), _mean_stat, permutation_type="samples", n_resamples=20_000,
                               alternative="two-sided", rng=np.random.default_rng(4)).pvalue
    assert 0.05 < ref < 0.5  # a case where Monte Carlo error matters
    assert ours == pytest.approx(ref, abs=0.015)  # two runs, each with SE <= 0.0035


def test_monte_carlo_p_value_is_never_zero() -> None:
    assert stats.randomization_test(np.full(50, 0.01) + np.arange(50) * 1e-4, n_resamples=10_000) == 1 / 10_001


def test_macro_randomization_hand_computed() -> None:
    # S* = (s1 + 2 s2 + 3 s3) / 6 - s4 / 2 and S = 0.5: 12 of the 16 sign vectors reach |S*| >= 0.5 (ties included).
    assert stats.macro_randomization_test([[1.0, 2.0, 3.0], [-1.0]]) == 0.75


def test_macro_randomization_equals_brute_force_enumeration() -> None:
    rng = np.random.default_rng(8)
    groups = [rng.normal(0.02, 0.05, 3), rng.normal(-0.01, 0.05, 4)]
    observed = abs(np.mean([g.mean() for g in groups]))
    hits = 0
    for signs in itertools.product((-1.0, 1.0), repeat=7):
        s = np.array(signs)
        flipped = [groups[0] * s[:3], groups[1] * s[3:]]
        hits += abs(np.mean([g.mean() for g in flipped])) >= observed - 1e-12
    assert stats.macro_randomization_test(groups) == pytest.approx(hits / 128)


# ---------------------------------------------------------------------------------------------------- compare


def test_compare_task_hand_computed() -> None:
    c = stats.compare_task({"a": 0.5, "b": 1.0, "c": 0.0, "d": 0.4}, {"a": 0.5, "b": 0.8, "c": 0.1, "d": 0.2})
    assert c.n_queries == 4
    assert c.mean_variant == pytest.approx(0.475)
    assert c.mean_baseline == pytest.approx(0.4)
    assert c.mean_delta == pytest.approx(0.075)
    assert c.relative_delta == pytest.approx(0.1875)
    assert (c.better, c.worse, c.equal) == (2, 1, 1)
    assert c.p_value == pytest.approx(0.5)  # +-0.2 +-0.1 +-0.2 with |sum| >= 0.3: 4 of 8 sign vectors
    assert c.ci_low <= c.mean_delta <= c.ci_high
    assert not c.significant()


def test_compare_macro_weights_tasks_equally() -> None:
    big_v, big_b = np.full(100, 0.6), np.full(100, 0.5)  # +0.1 on 100 queries
    small_v, small_b = np.array([0.2, 0.2]), np.array([0.5, 0.5])  # -0.3 on 2 queries
    c = stats.compare([(big_v, big_b), (small_v, small_b)])
    assert c.mean_delta == pytest.approx((0.1 - 0.3) / 2)
    assert c.mean_baseline == pytest.approx(0.5)
    assert c.mean_variant == pytest.approx((0.6 + 0.2) / 2)
    assert (c.n_queries, c.better, c.worse, c.equal) == (102, 100, 2, 0)
    assert (c.ci_low, c.ci_high) == pytest.approx((-0.1, -0.1))  # constant within each task


def test_compare_is_reproducible() -> None:
    rng = np.random.default_rng(1)
    b = rng.random(80)
    v = b + rng.normal(-0.005, 0.03, 80)
    assert stats.compare([(v, b)], seed=5) == stats.compare([(v, b)], seed=5)


@pytest.mark.parametrize(("groups", "message"), [
    ([], "at least one query"), ([[]], "at least one query"), ([[0.1, float("nan")]], "finite"),
])
def test_bad_input_is_an_evalsuite_error(groups: list[list[float]], message: str) -> None:
    with pytest.raises(EvalsuiteError, match=message):
        stats.macro_bootstrap_ci(groups)


def test_bad_parameters_are_evalsuite_errors() -> None:
    with pytest.raises(EvalsuiteError, match="confidence"):
        stats.bootstrap_ci([0.1], confidence=1.0)
    with pytest.raises(EvalsuiteError, match="n_resamples"):
        stats.randomization_test([0.1], n_resamples=0)
    with pytest.raises(EvalsuiteError, match="same length"):
        stats.compare([([0.1, 0.2], [0.1])])
