"""The NDCG@10 delta of a corpus that is only partly encoded with the candidate (pure numpy and pytrec_eval).

Progressive evaluation encodes a candidate's corpus shard by shard. At a look, each query has its exact score against
every document already encoded (the candidate's query against the candidate's document). For a document not encoded
yet, the score is predicted from its *base score*, the candidate's query against Float32's document, plus a change
drawn from what the encoded documents show:

* the change of an encoded document **of the same query with a similar base score** (its neighbours in base score):
  this carries how the query itself drifted and how strongly similar documents move with it;
* for a judged-relevant document, plus a **relevance boost** drawn from the encoded relevant (query, document) pairs
  of similar base score: how much more a relevant pair's score changed than its non-relevant neighbours'. Quantization
  moves a query and the documents that answer it alike (they share words and topics), so at the same base score a
  relevant pair gains more than others (measured on qint8-7bit of all-MiniLM-L6-v2 on SciFact: +0.02 to +0.03).
  Without the boost the prediction overstates the loss about 1.5-fold; moving documents by another document's
  embedding drift, as the screen does, overstates it about twofold and more so as coverage grows.

Every draw is one corpus the candidate could still turn out to be; NDCG@10 per query comes from pytrec_eval on the
top 10 of each query, against Float32's NDCG@10 computed the same way (Float32's queries and documents). With every
document encoded there is nothing to draw: the delta is exact and the interval has width zero.

Only documents that can reach a query's top 10 are scored in a draw: a change lies between the smallest and largest
change (and boost) seen, so a document whose base score plus the largest stays below the query's 10th best lower
bound is left out, without changing any draw's result.

Example:
    >>> corpus = PartialCorpus(q_cand, q_base, d_base, query_ids, doc_ids, qrels)  # doctest: +SKIP
    >>> corpus.add(rows, candidate_vectors)  # doctest: +SKIP
    >>> corpus.predict(draws=32, seed=0).mean(axis=1)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from evalsuite.screen.drift import TOP, evaluator, unit

NEIGHBOURS = 16  # a change is drawn from this many encoded documents (or relevant pairs) nearest in base score


class PartialCorpus:
    """One task's corpus, partly encoded with the candidate, and the NDCG@10 deltas it can still produce.

    Args:
        q_cand, q_base: the candidate's and Float32's embeddings of the judged queries (rows in ``query_ids`` order).
        d_base: Float32's embeddings of every document (rows in ``doc_ids`` order).
        query_ids, doc_ids, qrels: ids of those rows and the task's graded judgements.
    """

    def __init__(self, q_cand: NDArray[np.floating], q_base: NDArray[np.floating], d_base: NDArray[np.floating],
                 query_ids: Sequence[str], doc_ids: Sequence[str], qrels: Mapping[str, Mapping[str, int]]) -> None:
        self.query_ids, self.doc_ids = list(query_ids), list(doc_ids)
        self._ev = evaluator(qrels, self.query_ids)
        d_base = unit(d_base).astype(np.float32)
        self.q = unit(q_cand).astype(np.float32)
        self.base_scores = self.q @ d_base.T  # the candidate's queries against Float32's documents
        self.scores = self.base_scores.copy()  # ... and against the candidate's own, where they are encoded
        self.known = np.zeros(len(self.doc_ids), dtype=bool)
        column = {d: j for j, d in enumerate(self.doc_ids)}
        pairs = [(i, column[d]) for i, q in enumerate(self.query_ids) for d, grade in qrels.get(q, {}).items()
                 if grade > 0 and d in column]
        self.relevant = np.zeros(self.scores.shape, dtype=bool)
        if pairs:
            self.relevant[tuple(np.array(pairs).T)] = True
        self.baseline = self._ndcg(unit(q_base).astype(np.float32) @ d_base.T)

    @property
    def coverage(self) -> float:
        return float(self.known.mean())

    def add(self, rows: NDArray[np.integer], vectors: NDArray[np.floating]) -> None:
        """Documents ``rows`` are now encoded with the candidate."""
        self.scores[:, rows] = self.q @ unit(vectors).astype(np.float32).T
        self.known[rows] = True

    def predict(self, draws: int, seed: int) -> NDArray[np.float64]:
        """Per-query NDCG@10 deltas against Float32, shape (draws, queries); one row when the corpus is complete."""
        if self.known.all():
            return (self._ndcg(self.scores) - self.baseline)[None, :]
        if not self.known.any():
            raise ValueError("no document encoded yet: nothing to draw changes from")
        rng = np.random.default_rng(seed)
        known, unknown = np.flatnonzero(self.known), np.flatnonzero(~self.known)
        base = self.base_scores[:, known]
        change = self.scores[:, known] - base
        order = np.argsort(base, axis=1, kind="stable")
        base_sorted, change_sorted = np.take_along_axis(base, order, axis=1), np.take_along_axis(change, order, axis=1)
        width = min(NEIGHBOURS, len(known))
        boost_base, boosts = self._boosts(known, base, change, base_sorted, change_sorted, width)
        # Which unknown documents can still reach a query's top 10 (see the module docstring).
        low = change.min(axis=1) + min(0.0, boosts.min(initial=0.0))
        high = change.max(axis=1) + max(0.0, boosts.max(initial=0.0))
        k = min(TOP, len(self.doc_ids))
        lower = self.scores.copy()
        lower[:, unknown] += low[:, None]
        kth = -np.partition(-lower, k - 1, axis=1)[:, k - 1]
        reach = self.base_scores[:, unknown] + high[:, None] >= kth[:, None]
        some = reach.any(axis=0)
        movable, reach = unknown[some], reach[:, some]
        moved_base = self.base_scores[:, movable]
        relevant = self.relevant[:, movable]
        start = np.clip(_search_rows(base_sorted, moved_base) - width // 2, 0, len(known) - width)
        if len(boosts):
            boost_width = min(NEIGHBOURS, len(boosts))
            boost_start = np.clip(np.searchsorted(boost_base, moved_base[relevant]) - boost_width // 2, 0,
                                  len(boosts) - boost_width)
        fixed = self.scores.copy()
        fixed[:, unknown] = -np.inf
        base_top = _top(fixed, TOP)
        deltas = np.empty((draws, len(self.query_ids)))
        for d in range(draws):
            moved = moved_base + np.take_along_axis(change_sorted, start + rng.integers(0, width, size=start.shape), axis=1)
            if len(boosts):
                moved[relevant] += boosts[boost_start + rng.integers(0, boost_width, size=boost_start.shape)]
            deltas[d] = self._ndcg_of(base_top, fixed, movable, np.where(reach, moved, -np.inf)) - self.baseline
        return deltas

    def _boosts(self, known: NDArray[np.int64], base: NDArray[np.floating], change: NDArray[np.floating],
                base_sorted: NDArray[np.floating], change_sorted: NDArray[np.floating],
                width: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Encoded relevant pairs: base score, and change minus the mean change of the query's neighbours in base score
        (sorted by base score)."""
        rows, cols = np.nonzero(self.relevant[:, known])
        if not len(rows):
            return np.zeros(0), np.zeros(0)
        pair_base = base[rows, cols]
        start = np.clip(_search_rows(base_sorted[rows], pair_base[:, None])[:, 0] - width // 2, 0, len(known) - width)
        neighbours = np.take_along_axis(change_sorted[rows], start[:, None] + np.arange(width), axis=1).mean(axis=1)
        boosts = change[rows, cols] - neighbours
        order = np.argsort(pair_base, kind="stable")
        return pair_base[order].astype(np.float64), boosts[order].astype(np.float64)

    def _ndcg(self, scores: NDArray[np.floating]) -> NDArray[np.float64]:
        top = _top(scores, TOP)
        run = {q: {self.doc_ids[j]: float(scores[i, j]) for j in top[i]} for i, q in enumerate(self.query_ids)}
        return self._evaluate(run)

    def _ndcg_of(self, base_top: NDArray[np.int64], fixed: NDArray[np.floating], movable: NDArray[np.int64],
                 moved: NDArray[np.floating]) -> NDArray[np.float64]:
        """NDCG@10 when the movable columns take ``moved``: each query's top 10 among its fixed top 10 and the moved."""
        columns = np.concatenate([base_top, np.broadcast_to(movable, (len(moved), len(movable)))], axis=1)
        values = np.concatenate([np.take_along_axis(fixed, base_top, axis=1), moved], axis=1)
        best = _top(values, TOP)
        run = {q: {self.doc_ids[columns[i, j]]: float(values[i, j]) for j in best[i] if np.isfinite(values[i, j])}
               for i, q in enumerate(self.query_ids)}
        return self._evaluate(run)

    def _evaluate(self, run: dict[str, dict[str, float]]) -> NDArray[np.float64]:
        result = self._ev.evaluate(run)  # type: ignore[attr-defined]
        return np.array([result[q]["ndcg_cut_10"] if q in result else 0.0 for q in self.query_ids])


def _search_rows(sorted_rows: NDArray[np.floating], values: NDArray[np.floating]) -> NDArray[np.int64]:
    """Row by row ``np.searchsorted(sorted_rows[i], values[i])``."""
    return np.stack([np.searchsorted(row, v) for row, v in zip(sorted_rows, values, strict=True)])


def _top(scores: NDArray[np.floating], k: int) -> NDArray[np.int64]:
    """Column indices of each row's ``k`` highest scores (unordered; fewer columns than ``k``: all)."""
    k = min(k, scores.shape[1])
    if k == scores.shape[1]:
        return np.tile(np.arange(k), (len(scores), 1))
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]
