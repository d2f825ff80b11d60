"""Rankings compared across two different computations of the same scores, with a tie rule.

Two computations of one cosine (numpy against torch, a block of the corpus against all of it, PyTorch against the
ONNX file, the kernels one CPU picks against another's) agree to about 1e-7, not bit for bit. Where two documents'
scores are closer than that, the two may order them differently, and the top k or NDCG@10 may differ although
both are right. So a test that compares a ranking with an independent one treats documents whose scores lie within
``tol`` of each other as tied: they may come in either order. Everything outside such a near tie must agree
exactly, and where a query has no near tie the bounds below are one number.

Bit equality stays only between two runs of the same computation (same batches, same code path, same threads).

Example:
    >>> lo, hi = ndcg_at_10_bounds({"a": 0.5, "b": 0.5 + 1e-9, "c": 0.1}, {"a": 1}, tol=1e-6)
    >>> round(lo, 4), round(hi, 4)
    (0.6309, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def near_tie_groups(scores: Mapping[str, float], tol: float) -> list[list[str]]:
    """Documents by descending score, in groups whose neighbouring scores differ by at most ``tol``."""
    groups: list[list[str]] = []
    for doc in sorted(scores, key=lambda d: (-scores[d], d)):
        if groups and scores[groups[-1][-1]] - scores[doc] <= tol:
            groups[-1].append(doc)
        else:
            groups.append([doc])
    return groups


def ndcg_at_10(ranked: list[str], relevant: Mapping[str, int]) -> float:
    """NDCG@10 as trec_eval computes it: linear gains, log2(rank + 1) discount, the ideal from the judged grades."""
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:10]))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:10]
    idcg = sum(grade / math.log2(rank + 2) for rank, grade in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def ndcg_at_10_bounds(scores: Mapping[str, float], relevant: Mapping[str, int], tol: float) -> tuple[float, float]:
    """The lowest and highest NDCG@10 over every order of the near ties in ``scores`` (relevant documents last
    or first within each group of scores within ``tol``)."""
    groups = near_tie_groups(scores, tol)
    worst = [d for g in groups for d in sorted(g, key=lambda d: relevant.get(d, 0))]
    best = [d for g in groups for d in sorted(g, key=lambda d: -relevant.get(d, 0))]
    return ndcg_at_10(worst, relevant), ndcg_at_10(best, relevant)


def assert_within(value: float, bounds: tuple[float, float], abs_tol: float = 1e-9, what: object = "") -> None:
    low, high = bounds
    assert low - abs_tol <= value <= high + abs_tol, f"{what}: {value} not in [{low}, {high}]"


def top_k_bounds(scores: Mapping[str, float], k: int, tol: float) -> tuple[set[str], set[str]]:
    """(must, may): the documents any top ``k`` must hold (scores above the k-th by more than ``tol``), and those it
    may hold (scores no more than ``tol`` below the k-th)."""
    cut = sorted(scores.values(), reverse=True)[k - 1]
    return {d for d, s in scores.items() if s > cut + tol}, {d for d, s in scores.items() if s >= cut - tol}


def assert_top_k(got: list[str] | set[str], scores: Mapping[str, float], k: int, tol: float, what: object = "") -> None:
    """``got`` is a top ``k`` of ``scores`` under the tie rule."""
    must, may = top_k_bounds(scores, k, tol)
    assert len(set(got)) == len(got) == k, (what, got)
    assert must <= set(got) <= may, (what, sorted(must - set(got)), sorted(set(got) - may))
