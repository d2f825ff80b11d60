"""An mteb 2.x encoder over one ONNX file: tokenize, batch by policy, run onnxruntime, pool, normalise, cache.

Dynamic quantization scales activations per batch, so an int8 embedding depends on which texts share
its batch. The :class:`BatchPolicy` therefore is part of every cache key and every stored result.

Example:
    >>> enc = OnnxEncoder(artifact, source, BatchPolicy(), cache_dir=Path(".cache"))  # doctest: +SKIP
    >>> enc.embed(["how much protein should a female eat"], prompt_type="query").shape  # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import functools
import io
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from evalsuite.errors import EvalsuiteError
from evalsuite.machine import default_threads
from evalsuite.store import read_blob, sha256_text, write_blob

if TYPE_CHECKING:
    from evalsuite.convert import Artifact
    from evalsuite.models import EncodingSettings, ModelSource

PromptKind = Literal["query", "document"]
ProgressFn = Callable[[str, int, int], None]  # (what, texts done, texts total)
SHARD_BATCHES = 16  # batches per embedding-cache file: a killed run loses at most this much work
MEMO_TOKENS = 16_000_000  # token ids a tokenizer keeps for reuse (about 130 MB; SciFact's corpus is 1.2 M)
MEMO_CALLS = 32  # and at most this many calls


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


class Tokenized:
    """Token ids of a list of texts, truncated but unpadded, with their lengths."""

    def __init__(self, ids: list[np.ndarray]) -> None:
        self.ids = ids
        self.lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))


class TextTokenizer:
    """A fast (Rust) tokenizer that truncates like sentence-transformers and memoises its recent calls.

    The memo keeps whole calls (a task's corpus, its queries) up to :data:`MEMO_TOKENS` ids and :data:`MEMO_CALLS`
    calls, least recently used first out. Encoders get one instance per model through :meth:`shared`, so every
    variant of a sweep reuses the ids of a task instead of tokenizing it again (SciFact's corpus: 3 CPU-seconds).
    """

    def __init__(self, model_path: Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        file = model_path / "tokenizer.json"
        if file.is_file():
            self._tok = Tokenizer.from_file(str(file))
        else:  # slow-tokenizer-only models: let transformers build the fast one
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(model_path, use_fast=True).backend_tokenizer
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=max_length)
        self.pad_id = self._pad_id(model_path)
        self._memo: OrderedDict[str, Tokenized] = OrderedDict()

    def _pad_id(self, model_path: Path) -> int:
        special = model_path / "special_tokens_map.json"
        pad = "[PAD]"
        if special.is_file():
            value = json.loads(special.read_text(encoding="utf-8")).get("pad_token", pad)
            pad = value["content"] if isinstance(value, dict) else value
        pad_id = self._tok.token_to_id(pad)
        return 0 if pad_id is None else pad_id

    @classmethod
    def shared(cls, model_path: Path, max_length: int) -> TextTokenizer:
        """The process-wide instance for this tokenizer folder and length (a new one if ``tokenizer.json`` changed)."""
        file = model_path / "tokenizer.json"
        stamp = (file.stat().st_mtime_ns, file.stat().st_size) if file.is_file() else None
        return _shared_tokenizer(model_path.resolve(), max_length, stamp)

    def __call__(self, texts: Sequence[str]) -> Tokenized:
        key = sha256_text(*texts)
        if key in self._memo:
            self._memo.move_to_end(key)
            return self._memo[key]
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=True)
        out = Tokenized([np.asarray(e.ids, dtype=np.int64) for e in encodings])
        self._memo[key] = out
        held = sum(int(t.lengths.sum()) for t in self._memo.values())
        while len(self._memo) > 1 and (held > MEMO_TOKENS or len(self._memo) > MEMO_CALLS):
            held -= int(self._memo.popitem(last=False)[1].lengths.sum())
        return out


@functools.lru_cache(maxsize=2)
def _shared_tokenizer(model_path: Path, max_length: int, stamp: tuple[int, int] | None) -> TextTokenizer:
    return TextTokenizer(model_path, max_length)


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
        ids[r, :n] = tokenized.ids[i]
        mask[r, :n] = 1
    return ids, mask


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str, normalize: bool) -> np.ndarray:
    """Sentence embeddings from token states, as sentence-transformers' Pooling and Normalize modules compute them."""
    m = mask[..., None].astype(hidden.dtype)
    if mode == "mean":
        out = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
    elif mode == "cls":
        out = hidden[:, 0]
    elif mode == "max":
        out = np.where(m > 0, hidden, np.finfo(hidden.dtype).min).max(axis=1)
    elif mode == "lasttoken":
        out = hidden[np.arange(len(hidden)), mask.sum(axis=1) - 1]
    else:
        raise EvalsuiteError(f"unsupported pooling mode {mode!r}")
    if normalize:
        out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32, copy=False)


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
        self.cache_dir = cache_dir
        self.threads = threads or default_threads()
        self.progress = progress
        self.variant_name = variant_name or artifact.variant.name
        self.tokenizer = TextTokenizer.shared(source.path, self.settings.max_seq_length)
        self._session: Any = None
        self.stats = {"texts": 0, "cached_texts": 0, "inference_s": 0.0}

    # --- mteb EncoderProtocol -------------------------------------------------------------
    @property
    def mteb_model_meta(self) -> Any:
        """A distinct mteb identity per variant and ONNX file, so mteb never mixes variants up."""
        import mteb
        from mteb.models.model_meta import ModelMeta

        name = f"{self.source.model_id}__{self.variant_name}" if "/" in self.source.model_id else f"evalsuite/{self.source.slug}__{self.variant_name}"
        try:
            base = mteb.get_model_meta(self.source.model_id)
        except Exception:  # unknown to mteb's registry
            base = ModelMeta.create_empty()
        return base.model_copy(update={"name": name, "revision": self.artifact.sha256[:16], "loader": None,
                                       "similarity_fn_name": "cosine", "framework": ["ONNX"]})

    def encode(self, inputs: Any, *, task_metadata: Any = None, hf_split: str = "", hf_subset: str = "",
               prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
        kind: PromptKind = "query" if prompt_type is not None and str(getattr(prompt_type, "value", prompt_type)) == "query" else "document"
        return self.embed(_texts_of(inputs), prompt_type=kind)

    def similarity(self, a: Any, b: Any) -> Any:
        from mteb.similarity_functions import cos_sim

        return cos_sim(a, b)

    def similarity_pairwise(self, a: Any, b: Any) -> Any:
        from mteb.similarity_functions import pairwise_cos_sim

        return pairwise_cos_sim(a, b)

    # --- the work ---------------------------------------------------------------------------
    def embed(self, texts: Sequence[str], prompt_type: PromptKind = "document") -> np.ndarray:
        """Embeddings of ``texts`` in input order, float32, shape (len(texts), dim)."""
        prefix = self.settings.query_prefix if prompt_type == "query" else self.settings.document_prefix
        texts = [prefix + t for t in texts] if prefix else list(texts)
        if not texts:
            raise EvalsuiteError("nothing to encode: empty list of texts")
        tokenized = self.tokenizer(texts)
        batch_size = self.policy.query_batch_size if prompt_type == "query" else self.policy.batch_size
        batches = plan_batches(tokenized.lengths, batch_size, self.policy.order)
        # Only the batching that applies to this kind of text is in the key: changing the query batch size
        # must not re-encode the corpus.
        settings_key = sha256_text(self.artifact.sha256, json.dumps(self.settings.to_dict(), sort_keys=True),
                                   f"{prompt_type}-{batch_size}-{self.policy.order}")
        out: np.ndarray | None = None
        done = 0
        for start in range(0, len(batches), SHARD_BATCHES):
            shard = batches[start:start + SHARD_BATCHES]
            rows = np.concatenate(shard)
            vectors = self._shard(tokenized, shard, texts, rows, settings_key)
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
            done += len(rows)
            if self.progress:
                self.progress(prompt_type, done, len(texts))
        assert out is not None
        self.stats["texts"] += len(texts)
        return out

    def _shard(self, tokenized: Tokenized, shard: list[np.ndarray], texts: list[str], rows: np.ndarray,
               settings_key: str) -> np.ndarray:
        # The key holds every text of every batch in the shard, in batch order: int8 results depend on them all.
        boundaries = ",".join(str(len(b)) for b in shard)
        key = sha256_text(settings_key, boundaries, *(texts[i] for i in rows))
        path = self.cache_dir / "embeddings" / self.artifact.sha256[:16] / f"{key}.npy" if self.cache_dir else None
        if path is not None:
            payload = read_blob(path)
            if payload is not None:
                self.stats["cached_texts"] += len(rows)
                return np.load(io.BytesIO(payload), allow_pickle=False)
        import time

        started = time.perf_counter()
        vectors = np.concatenate([self._run(tokenized, b) for b in shard])
        self.stats["inference_s"] += time.perf_counter() - started
        if path is not None:
            buf = io.BytesIO()
            np.save(buf, vectors, allow_pickle=False)
            write_blob(path, buf.getvalue())
        return vectors

    def _run(self, tokenized: Tokenized, rows: np.ndarray) -> np.ndarray:
        session = self.session
        ids, mask = pad_batch(tokenized, rows, self.tokenizer.pad_id)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = session.run(None, {name: feed[name] for name in self._input_names})[0]
        return pool(hidden, mask, self.settings.pooling, self.settings.normalize)

    @property
    def session(self) -> Any:
        if self._session is None:
            self._session = make_session(self.artifact.path, self.threads)
            self._input_names = [i.name for i in self._session.get_inputs()]
        return self._session


def make_session(path: Path, threads: int, *, spinning: bool = True) -> Any:
    """An onnxruntime CPU session with the given intra-op threads and all graph optimizations.

    ``spinning=False`` stops idle worker threads from busy-waiting after a call: needed when several
    sessions take turns on the same cores (the benchmark), where one session's spinning threads would
    steal the CPU from the next.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise EvalsuiteError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0][:200]}") from exc


def _texts_of(inputs: Any) -> list[str]:
    """Texts from an mteb DataLoader; reads the prepared column at once instead of collating batch by batch."""
    dataset = getattr(inputs, "dataset", None)
    column_names = getattr(dataset, "column_names", None)
    if column_names is not None and "text" in column_names:
        return list(dataset["text"])
    texts: list[str] = []
    for batch in inputs:
        texts.extend(batch["text"])
    return texts
