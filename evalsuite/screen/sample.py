"""Which queries and documents a screen embeds: a fixed, seeded sample that does not depend on file order.

Each id is ranked by ``sha256(seed, kind, id)`` and the first ``n`` are taken, so the sample is the same for the
same ids whatever order the files list them in, and a larger sample contains every smaller one (a screen can
grow its sample without throwing away what it embedded).

Example:
    >>> s = ScreenSample(queries=2, documents=3)
    >>> ids = draw(["q1", "q2", "q3"], ["d1", "d2", "d3", "d4"], s)
    >>> len(ids.queries), len(ids.documents)
    (2, 3)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from evalsuite.errors import EvalsuiteError


@dataclass(frozen=True)
class ScreenSample:
    """How much a screen embeds with the candidate, per task, and how it predicts.

    Args:
        queries: judged queries embedded with the candidate (all of them when the task has fewer). Queries are short
            and embedded one per call, so they are cheap; SciFact (300) and NFCorpus (323) are screened on all.
        documents: corpus documents embedded with the candidate. Their drift (candidate minus Float32) is what the
            prediction transplants onto the rest of the corpus, and they form the sample index of the top-10 overlap.
        draws: simulated corpora behind the predicted NDCG@10 delta and its interval (at least 2).
        seed: seed of the sample and of the simulation; the same seed gives the same numbers.
        confidence: coverage of the predicted interval and of the overlap CI.
    """

    queries: int = 400
    documents: int = 96
    draws: int = 32
    seed: int = 0
    confidence: float = 0.95

    def __post_init__(self) -> None:
        for name, low in (("queries", 1), ("documents", 2), ("draws", 2), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise EvalsuiteError(f"sample {name} must be a whole number >= {low}, not {value!r}")
        if not 0.5 <= self.confidence < 1:
            raise EvalsuiteError(f"sample confidence must be in [0.5, 1), not {self.confidence!r}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class SampleIds:
    """The ids a screen embeds with the candidate, in sample order (the hash order, not the files')."""

    queries: tuple[str, ...]
    documents: tuple[str, ...]


def ranked(ids: Sequence[str], seed: int, kind: str) -> list[str]:
    """``ids`` in their seeded hash order (ties cannot happen: ids are distinct)."""
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}\0{kind}\0{i}".encode()).digest())


def draw(query_ids: Sequence[str], document_ids: Sequence[str], sample: ScreenSample) -> SampleIds:
    """The first ``sample.queries`` judged queries and ``sample.documents`` documents in seeded hash order.

    Args:
        query_ids: the judged queries of the split (every one has qrels).
        document_ids: the whole corpus.
    """
    if len(set(query_ids)) != len(query_ids) or len(set(document_ids)) != len(document_ids):
        raise EvalsuiteError("query and document ids must be unique")
    if len(document_ids) < 2:
        raise EvalsuiteError(f"a screen needs a corpus of at least 2 documents, not {len(document_ids)}")
    return SampleIds(tuple(ranked(query_ids, sample.seed, "query")[:sample.queries]),
                     tuple(ranked(document_ids, sample.seed, "document")[:sample.documents]))
