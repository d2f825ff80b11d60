"""The numbers of a screen, from embeddings only (pure numpy; no model, no files).

* **Cosine drift**: the cosine of each text's candidate embedding to its Float32 embedding.
* **Top-10 overlap** on the sample index: for each sampled query, the share of Float32's top 10 among the sampled
  documents that the candidate also ranks in its top 10 there.
* **Predicted NDCG@10 delta** (:func:`simulate`): the candidate's own query embeddings (every sampled query) are
  searched against the *whole* Float32 corpus after each document has been moved by the drift of a sampled
  document (drawn with replacement, its component along the target document removed, then renormalised), and
  NDCG@10 is computed with pytrec_eval against the task's qrels, as mteb does. Each draw is one corpus the
  candidate could have produced; the spread of the draws is how much the delta depends on which documents drift
  which way. Nothing is fitted to measured deltas.

Example:
    >>> a = np.array([[1.0, 0.0], [0.0, 1.0]]); b = np.array([[1.0, 0.0], [1.0, 1.0]])
    >>> np.round(cosines(a, b), 4)
    array([1.    , 0.7071])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray

Matrix = NDArray[np.float32] | NDArray[np.float64]
TOP = 10


@dataclass(frozen=True)
class DriftStats:
    """Cosine of candidate to Float32 embeddings over ``n`` texts: mean, 5th percentile and minimum."""

    n: int
    mean: float
    p05: float
    min: float

    @classmethod
    def of(cls, cos: NDArray[np.float64]) -> DriftStats:
        return cls(len(cos), float(np.mean(cos)), float(np.percentile(cos, 5)), float(np.min(cos)))

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def unit(x: Matrix) -> NDArray[np.float64]:
    """Rows scaled to length 1 (in float64): retrieval scores are cosines whether or not the model normalises."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cosines(candidate: Matrix, baseline: Matrix) -> NDArray[np.float64]:
    """Row-wise cosine of two matrices of the same shape."""
    return np.sum(unit(candidate) * unit(baseline), axis=1)


def top_ids(scores: NDArray[np.float64], k: int) -> NDArray[np.int64]:
    """Column indices of each row's ``k`` highest scores (unordered)."""
    k = min(k, scores.shape[1])
    return np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else np.tile(np.arange(k), (len(scores), 1))


def top_overlap(q_base: Matrix, d_base: Matrix, q_cand: Matrix, d_cand: Matrix, k: int = TOP) -> NDArray[np.float64]:
    """Per query: |top-k(Float32) ∩ top-k(candidate)| / k over the given documents (k capped at their number)."""
    k = min(k, len(d_base))
    a = top_ids(unit(q_base) @ unit(d_base).T, k)
    b = top_ids(unit(q_cand) @ unit(d_cand).T, k)
    return np.array([len(np.intersect1d(x, y)) / k for x, y in zip(a, b, strict=True)])


def ndcg_at_10(scores: NDArray[np.float64], query_ids: Sequence[str], doc_ids: Sequence[str],
               evaluator: object) -> NDArray[np.float64]:
    """Per-query NDCG@10 of a (queries x documents) score matrix, through a ``pytrec_eval.RelevanceEvaluator``."""
    top = top_ids(scores, TOP)
    run = {q: {doc_ids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(query_ids)}
    result = evaluator.evaluate(run)  # type: ignore[attr-defined]
    return np.array([result[q]["ndcg_cut_10"] if q in result else 0.0 for q in query_ids])


def evaluator(qrels: Mapping[str, Mapping[str, int]], query_ids: Sequence[str]) -> object:
    import pytrec_eval

    return pytrec_eval.RelevanceEvaluator({q: dict(qrels[q]) for q in query_ids}, {"ndcg_cut.10"})


def simulate(q_base: Matrix, q_cand: Matrix, d_base: Matrix, residuals: Matrix, query_ids: Sequence[str],
             doc_ids: Sequence[str], qrels: Mapping[str, Mapping[str, int]], draws: int,
             seed: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Float32's per-query NDCG@10, and the candidate's simulated per-query deltas, shape (draws, queries).

    Args:
        q_base, q_cand: Float32's and the candidate's embeddings of the sampled queries.
        d_base: Float32's embeddings of the whole corpus (rows in ``doc_ids`` order).
        residuals: ``unit(candidate) - unit(Float32)`` of the sampled documents, one row each.
        query_ids, doc_ids, qrels: ids of those rows and the task's graded judgements.
        draws, seed: number of simulated corpora and their seed.
    """
    ev = evaluator(qrels, query_ids)
    d_unit = unit(d_base)
    baseline = ndcg_at_10(unit(q_base) @ d_unit.T, query_ids, doc_ids, ev)
    # Document d moved by residual r = R[j]: m = r - a d with a = r.d, so |d + m|^2 = 1 + |r|^2 - a^2 and
    # q.(d + m) = (1 - a) q.d + q.r. Precomputing q.d, q.r and d.r makes a draw O(queries x documents).
    q_unit = unit(q_cand)
    residuals = np.asarray(residuals, dtype=np.float64)
    qd, qr, dr = q_unit @ d_unit.T, q_unit @ residuals.T, d_unit @ residuals.T
    r2 = np.sum(residuals * residuals, axis=1)
    rng = np.random.default_rng(seed)
    rows = np.arange(len(d_unit))
    deltas = np.empty((draws, len(query_ids)))
    for k in range(draws):
        pick = rng.integers(0, len(residuals), size=len(d_unit))
        a = dr[rows, pick]
        scores = (qd * (1 - a) + qr[:, pick]) / np.sqrt(1 + r2[pick] - a * a)
        deltas[k] = ndcg_at_10(scores, query_ids, doc_ids, ev) - baseline
    return baseline, deltas
