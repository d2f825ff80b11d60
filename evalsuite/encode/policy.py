"""How texts are grouped into onnxruntime calls: the batch policy, the batch plan, and padding.

Dynamic quantization scales activations per batch, so an int8 embedding depends on which texts share
its batch. The :class:`BatchPolicy` therefore is part of every cache key and every stored result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from evalsuite.errors import EvalsuiteError

if TYPE_CHECKING:
    from evalsuite.encode.tokenizer import Tokenized


@dataclass(frozen=True)
class BatchPolicy:
    """How texts are grouped into onnxruntime calls.

    Args:
        batch_size: documents per call. Documents are indexed offline in batches in production.
        query_batch_size: queries per call. The default 1 is how a search service embeds a live query,
            so int8 query embeddings are not scaled together with other users' queries.
        order: ``length`` sorts texts by token count (stable) so a batch pads little;
            ``given`` keeps the input order, as a plain loop would.
    """

    batch_size: int = 32
    query_batch_size: int = 1
    order: Literal["length", "given"] = "length"

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.query_batch_size < 1:
            raise EvalsuiteError("batch sizes must be at least 1")
        if self.order not in ("length", "given"):
            raise EvalsuiteError(f"batch order must be 'length' or 'given', not {self.order!r}")

    @property
    def key(self) -> str:
        """Short stable name: ``docs32-q1-length``."""
        return f"docs{self.batch_size}-q{self.query_batch_size}-{self.order}"

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "key": self.key}



def plan_batches(lengths: np.ndarray, batch_size: int, order: str) -> list[np.ndarray]:
    """Indices of each batch. ``length`` order sorts by token count, ties by input position (deterministic)."""
    idx = np.argsort(lengths, kind="stable") if order == "length" else np.arange(len(lengths))
    return [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]


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

