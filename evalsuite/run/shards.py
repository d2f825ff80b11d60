"""The embedding-cache shards an evaluation still needs, found without running the model, and how one is computed.

An executor that encodes elsewhere (on Ray actors) must fill exactly the cache shards the local encoder would
read: a dynamic int8 embedding depends on the other texts of its onnxruntime call, and a shard's key names every
text of its batches. Rather than predict which texts mteb passes in which call (it chunks large corpora, adds
titles, prefixes), :func:`missing_shards` lets mteb drive the real encoder once with the model taken out:
:class:`ShardRecorder` is an :class:`OnnxEncoder` whose batches are padded and recorded instead of run, and whose
cache reports each shard it lacks as a :class:`ShardJob` (cache key plus the padded batches, in the encoder's own
order and boundaries). :func:`run_shard` computes a job the way ``OnnxEncoder`` computes a shard.

Example:
    >>> jobs = missing_shards(artifact, source, BatchPolicy(), cache_dir, loaded_task)  # doctest: +SKIP
    >>> cache.put(jobs[0].key, run_shard(session, jobs[0].batches, "mean", True))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evalsuite.encode import BatchPolicy, OnnxEncoder
from evalsuite.encode.cache import EmbeddingCache
from evalsuite.encode.policy import pad_batch
from evalsuite.encode.session import model_inputs, pool
from evalsuite.run.evaluate import run_mteb

if TYPE_CHECKING:
    from evalsuite.build import Artifact
    from evalsuite.data.loading import LoadedTask
    from evalsuite.encode.tokenizer import Tokenized
    from evalsuite.models import ModelSource

PLACEHOLDER_DIM = 8  # mteb ranks placeholder vectors during the recording pass; their values are never used


@dataclass
class ShardJob:
    """One missing cache shard: its key and its onnxruntime calls as (input_ids, attention_mask), in order."""

    key: str
    batches: list[tuple[np.ndarray, np.ndarray]]

    @property
    def rows(self) -> int:
        return sum(len(ids) for ids, _ in self.batches)


class _MissingShards:
    """Stands in for the encoder's cache: answers "not stored" for missing shards and records them when "stored"."""

    def __init__(self, cache: EmbeddingCache, placeholder: Any) -> None:
        self.cache = cache
        self.placeholder = placeholder
        self.jobs: list[ShardJob] = []
        self.batches: list[tuple[np.ndarray, np.ndarray]] = []  # of the shard being recorded

    def get(self, key: str, rows: int) -> np.ndarray | None:
        # A stored shard is read (and a damaged one removed) as the evaluation will read it, but never returned:
        # mteb sees placeholders of one width only.
        return self.placeholder(rows) if self.cache.get(key, rows) is not None else None

    def put(self, key: str, vectors: np.ndarray) -> None:
        self.jobs.append(ShardJob(key, self.batches))
        self.batches = []


class ShardRecorder(OnnxEncoder):
    """An encoder that records the cache shards it lacks instead of computing them (see the module docstring)."""

    def __init__(self, artifact: Artifact, source: ModelSource, policy: BatchPolicy, cache_dir: Path) -> None:
        super().__init__(artifact, source, policy, cache_dir=cache_dir, threads=1)
        self._rng = np.random.default_rng(0)
        self.missing = _MissingShards(EmbeddingCache(cache_dir, artifact.sha256), self._placeholder)
        self.cache = self.missing  # type: ignore[assignment]

    def _placeholder(self, rows: int) -> np.ndarray:
        v = self._rng.standard_normal((rows, PLACEHOLDER_DIM)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def _run(self, tokenized: Tokenized, rows: np.ndarray) -> np.ndarray:
        self.missing.batches.append(pad_batch(tokenized, rows, self.tokenizer.pad_id))
        return self._placeholder(len(rows))


def missing_shards(artifact: Artifact, source: ModelSource, policy: BatchPolicy, cache_dir: Path,
                   loaded: LoadedTask) -> list[ShardJob]:
    """The cache shards evaluating ``artifact`` on ``loaded`` would compute now, in the order it would compute them."""
    recorder = ShardRecorder(artifact, source, policy, cache_dir)
    run_mteb(recorder, loaded)
    return recorder.missing.jobs


def run_shard(session: Any, batches: list[tuple[np.ndarray, np.ndarray]], pooling: str, normalize: bool) -> np.ndarray:
    """A shard's embeddings: each batch run as one onnxruntime call and pooled, as ``OnnxEncoder`` does it."""
    names = [i.name for i in session.get_inputs()]
    out = []
    for ids, mask in batches:
        out.append(pool(session.run(None, model_inputs(ids, mask, names))[0], mask, pooling, normalize))
    return np.concatenate(out)
