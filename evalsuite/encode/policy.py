"""How texts are grouped into onnxruntime calls: the batch policy, its compositions, the batch plan, and padding.

Dynamic quantization scales activations per batch, so an int8 embedding depends on which texts share
its batch. The :class:`BatchPolicy` therefore is part of every cache key and every stored result.

A policy (batch size and order rule) admits many batchings of one corpus; each is a *composition*.
Composition 0 is the canonical one (length-sorted, ties by input position: what evalsuite always did).
Composition ``k >= 1`` is a seeded random draw from the same policy (:func:`plan_batches`), so that a
batch-dependent build can be judged over several compositions instead of one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from evalsuite.errors import EvalsuiteError

if TYPE_CHECKING:
    from evalsuite.encode.tokenizer import Tokenized

# A composition shuffles length-sorted texts within windows of this many batches: neighbours change from one
# composition to the next, while lengths within a batch stay close (padding grows little).
WINDOW_BATCHES = 4
_SEED = 20261207  # composition k draws from default_rng((_SEED, k))
DEFAULT_COMPOSITIONS = 5  # compositions a batch-dependent build is judged over (README "Batch composition")


@dataclass(frozen=True)
class BatchPolicy:
    """How texts are grouped into onnxruntime calls.

    Args:
        batch_size: documents per call. Documents are indexed offline in batches in production.
        query_batch_size: queries per call. The default 1 is how a search service embeds a live query,
            so int8 query embeddings are not scaled together with other users' queries.
        order: ``length`` sorts texts by token count (stable) so a batch pads little;
            ``given`` keeps the input order, as a plain loop would.
        composition: 0 for the canonical batching, ``k >= 1`` for the k-th seeded random composition.
    """

    batch_size: int = 32
    query_batch_size: int = 1
    order: Literal["length", "given"] = "length"
    composition: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.query_batch_size < 1:
            raise EvalsuiteError("batch sizes must be at least 1")
        if self.order not in ("length", "given"):
            raise EvalsuiteError(f"batch order must be 'length' or 'given', not {self.order!r}")
        if isinstance(self.composition, bool) or not isinstance(self.composition, int) or self.composition < 0:
            raise EvalsuiteError(f"a composition is a whole number >= 0, not {self.composition!r}")

    @property
    def base_key(self) -> str:
        """The policy without its composition: ``docs32-q1-length`` (what results must share to be paired)."""
        return f"docs{self.batch_size}-q{self.query_batch_size}-{self.order}"

    @property
    def key(self) -> str:
        """Short stable name: ``docs32-q1-length``, ``docs32-q1-length-c3`` for composition 3."""
        return self.base_key + (f"-c{self.composition}" if self.composition else "")

    def with_composition(self, k: int) -> BatchPolicy:
        return BatchPolicy(self.batch_size, self.query_batch_size, self.order, k)

    def compositions(self, batch_dependent: bool, k: int) -> int:
        """How many compositions of this policy a build is evaluated under: ``k`` when its embeddings depend on their
        batch and a call holds several texts; else 1 (one text per call has one composition)."""
        return k if batch_dependent and (self.batch_size > 1 or self.query_batch_size > 1) else 1

    def to_dict(self) -> dict[str, object]:
        # Composition 0 is left out, so the records (and identities) of results made before compositions existed
        # are unchanged.
        fields = asdict(self)
        if not self.composition:
            del fields["composition"]
        return {**fields, "key": self.key}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> BatchPolicy:
        return cls(int(data["batch_size"]), int(data["query_batch_size"]), data["order"],  # type: ignore[arg-type]
                   int(data.get("composition", 0)))  # type: ignore[arg-type]


def plan_batches(lengths: np.ndarray, batch_size: int, order: str, composition: int = 0) -> list[np.ndarray]:
    """Indices of each batch.

    Composition 0: ``length`` order sorts by token count, ties by input position; ``given`` keeps input order; then
    consecutive batches of ``batch_size``. Composition ``k >= 1`` draws from the same rule with a generator seeded
    by ``k``: ``length`` order breaks ties at random and shuffles texts within windows of :data:`WINDOW_BATCHES`
    batches (the windows start at a random phase); both orders then start with a first batch of random size in
    ``1..batch_size``, which moves every batch boundary. One text per call has a single composition.
    """
    n = len(lengths)
    if composition == 0 or batch_size == 1 or n <= 1:
        idx = np.argsort(lengths, kind="stable") if order == "length" else np.arange(n)
        return [idx[i:i + batch_size] for i in range(0, n, batch_size)]
    rng = np.random.default_rng((_SEED, composition))
    if order == "length":
        idx = np.lexsort((rng.random(n), lengths))
        window = WINDOW_BATCHES * batch_size
        for edge in range(int(rng.integers(0, window)) - window, n, window):  # windows at a random phase
            start, stop = max(edge, 0), min(edge + window, n)
            idx[start:stop] = rng.permutation(idx[start:stop])
    else:
        idx = np.arange(n)
    first = int(rng.integers(1, batch_size + 1))
    return [idx[:first], *(idx[i:i + batch_size] for i in range(first, n, batch_size))]


def pad_batch(tokenized: Tokenized, rows: np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) of ``rows``, right-padded to the longest row of this batch only."""
    width = int(tokenized.lengths[rows].max())
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, i in enumerate(rows):
        n = tokenized.lengths[i]
        ids[r, :n] = tokenized.row(i)
        mask[r, :n] = 1
    return ids, mask
