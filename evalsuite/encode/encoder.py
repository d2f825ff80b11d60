"""An mteb 2.x encoder over one ONNX file: tokenize, batch by policy, run onnxruntime, pool, normalise, cache.

Example:
    >>> enc = OnnxEncoder(artifact, source, BatchPolicy(), cache_dir=Path(".cache"))  # doctest: +SKIP
    >>> enc.embed(["how much protein should a female eat"], prompt_type="query").shape  # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from evalsuite.encode.cache import EmbeddingCache
from evalsuite.encode.policy import BatchPolicy, pad_batch, plan_batches
from evalsuite.encode.session import make_session, model_inputs, pool
from evalsuite.encode.tokenizer import TextTokenizer, Tokenized
from evalsuite.errors import EvalsuiteError
from evalsuite.files import sha256_text
from evalsuite.machine import default_threads, distinct_kernels

if TYPE_CHECKING:
    from evalsuite.build import Artifact
    from evalsuite.models import EncodingSettings, ModelSource

PromptKind = Literal["query", "document"]


@dataclass(frozen=True)
class Shard:
    """One embedding-cache file of an encode call: its key, its batches (row indices of the call) and all its rows."""

    key: str
    batches: list[np.ndarray]
    rows: np.ndarray


@dataclass(frozen=True)
class EncodePlan:
    """One encode call, planned: its texts (prefixed), their token counts and ids (None: too many to keep), its shards."""

    texts: list[str]
    lengths: np.ndarray
    tokenized: Tokenized | None
    shards: list[Shard]

ProgressFn = Callable[[str, int, int], None]  # (what, texts done, texts total)
SHARD_BATCHES = 16  # batches per embedding-cache file: a killed run loses at most this much work


class OnnxEncoder:
    """Embeds texts with one ONNX variant; usable directly (:meth:`embed`) or by mteb (:meth:`encode`).

    Args:
        artifact: the ONNX file to run.
        source: the model it was built from (tokenizer, pooling, prefixes).
        policy: batching policy; recorded with every embedding.
        cache_dir: where embeddings are cached; None disables the cache.
        threads: onnxruntime intra-op threads (default: all usable cores).
        progress: called as batches finish, for progress bars.
    """

    def __init__(self, artifact: Artifact, source: ModelSource, policy: BatchPolicy | None = None, *,
                 cache_dir: Path | None = None, threads: int | None = None, progress: ProgressFn | None = None,
                 variant_name: str | None = None) -> None:
        self.artifact = artifact
        self.source = source
        self.settings: EncodingSettings = source.settings
        self.policy = policy or BatchPolicy()
        self.cache = EmbeddingCache(cache_dir, artifact.sha256) if cache_dir is not None else None
        self.threads = threads or default_threads()
        self.progress = progress
        self.variant_name = variant_name or artifact.variant.name
        self.tokenizer = TextTokenizer.shared(source.path, self.settings.max_seq_length, self.settings.lowercase)
        self._session: Any = None
        self.stats = {"texts": 0, "cached_texts": 0, "encoded_texts": 0, "inference_s": 0.0}

    # --- mteb EncoderProtocol -------------------------------------------------------------
    @property
    def mteb_model_meta(self) -> Any:
        """A distinct mteb identity per variant and ONNX file, so mteb never mixes variants up (the same as an export's)."""
        from evalsuite.results.mteb_export import variant_model_meta

        return variant_model_meta(self.source.model_id, self.source.slug, self.variant_name, self.artifact.sha256,
                                  self.artifact.size_bytes, self.policy.key)

    def encode(self, inputs: Any, *, task_metadata: Any = None, hf_split: str = "", hf_subset: str = "",
               prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
        kind: PromptKind = "query" if prompt_type is not None and str(getattr(prompt_type, "value", prompt_type)) == "query" else "document"
        return self.embed(texts_of(inputs), prompt_type=kind)

    def similarity(self, a: Any, b: Any) -> Any:
        from mteb.similarity_functions import cos_sim

        return cos_sim(a, b)

    def similarity_pairwise(self, a: Any, b: Any) -> Any:
        from mteb.similarity_functions import pairwise_cos_sim

        return pairwise_cos_sim(a, b)

    # --- the work ---------------------------------------------------------------------------
    def embed(self, texts: Sequence[str], prompt_type: PromptKind = "document") -> np.ndarray:
        """Embeddings of ``texts`` in input order, float32, shape (len(texts), dim)."""
        plan = self.plan(texts, prompt_type)
        out: np.ndarray | None = None
        done = 0
        for shard in plan.shards:
            vectors = self.shard_vectors(plan, shard)
            if out is None:
                out = np.empty((len(plan.texts), vectors.shape[1]), dtype=np.float32)
            out[shard.rows] = vectors
            done += len(shard.rows)
            if self.progress:
                self.progress(prompt_type, done, len(plan.texts))
        assert out is not None
        self.stats["texts"] += len(plan.texts)
        return out

    def plan(self, texts: Sequence[str], prompt_type: PromptKind = "document") -> EncodePlan:
        """How one call embeds ``texts``: its batches, grouped into cache shards with their keys (nothing is run)."""
        prefix = self.settings.query_prefix if prompt_type == "query" else self.settings.document_prefix
        texts = [prefix + t for t in texts] if prefix else list(texts)
        if not texts:
            raise EvalsuiteError("nothing to encode: empty list of texts")
        lengths, tokenized = self.tokenizer.survey(texts)
        batch_size = self.policy.query_batch_size if prompt_type == "query" else self.policy.batch_size
        batches = plan_batches(lengths, batch_size, self.policy.order, self.policy.composition)
        # Only the batching that applies to this kind of text is in the key: changing the query batch size
        # must not re-encode the corpus. The composition needs no place here: it shows in each shard's batches.
        settings_key = sha256_text(self.artifact.sha256, self.source.tokenizer_sha256,
                                   json.dumps(self.settings.to_dict(), sort_keys=True), f"{prompt_type}-{batch_size}-{self.policy.order}",
                                   *distinct_kernels(self.artifact.kernels))
        shards = []
        for start in range(0, len(batches), SHARD_BATCHES):
            group = batches[start:start + SHARD_BATCHES]
            rows = np.concatenate(group)
            # The key holds every text of every batch in the shard, in batch order: int8 results depend on them all.
            key = sha256_text(settings_key, ",".join(str(len(b)) for b in group), *(texts[i] for i in rows))
            shards.append(Shard(key, group, rows))
        return EncodePlan(texts, lengths, tokenized, shards)

    def shard_vectors(self, plan: EncodePlan, shard: Shard) -> np.ndarray:
        """One shard's vectors, from the cache or computed and stored at once (a killed run keeps every finished shard)."""
        if self.cache is not None:
            cached = self.cache.get(shard.key, len(shard.rows))
            if cached is not None:
                self.stats["cached_texts"] += len(shard.rows)
                return cached
        tokenized, batches = plan.tokenized, shard.batches
        if tokenized is None:  # the call was too large to keep its ids: tokenize this shard's texts only
            tokenized = self.tokenizer([plan.texts[i] for i in shard.rows])
            ends = np.cumsum([len(b) for b in batches])
            batches = [np.arange(e - len(b), e) for b, e in zip(batches, ends, strict=True)]
        started = time.perf_counter()
        vectors = np.concatenate([self._run(tokenized, b) for b in batches])
        self.stats["inference_s"] += time.perf_counter() - started
        self.stats["encoded_texts"] += len(shard.rows)
        if self.cache is not None:
            self.cache.put(shard.key, vectors)
        return vectors

    def _run(self, tokenized: Tokenized, rows: np.ndarray) -> np.ndarray:
        session = self.session
        ids, mask = pad_batch(tokenized, rows, self.tokenizer.pad_id)
        hidden = session.run(None, model_inputs(ids, mask, self._input_names))[0]
        return pool(hidden, mask, self.settings.pooling, self.settings.normalize)

    @property
    def session(self) -> Any:
        if self._session is None:
            self._session = make_session(self.artifact.path, self.threads)
            self._input_names = [i.name for i in self._session.get_inputs()]
        return self._session



def texts_of(inputs: Any) -> list[str]:
    """Texts from an mteb DataLoader; reads the prepared column at once instead of collating batch by batch."""
    dataset = getattr(inputs, "dataset", None)
    column_names = getattr(dataset, "column_names", None)
    if column_names is not None and "text" in column_names:
        return list(dataset["text"])
    texts: list[str] = []
    for batch in inputs:
        texts.extend(batch["text"])
    return texts
