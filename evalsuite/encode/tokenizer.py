"""Tokenization as sentence-transformers does it (fast tokenizer, truncation, no padding), memoised per task."""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evalsuite.files import sha256_text

MEMO_TOKENS = 16_000_000  # token ids a tokenizer keeps for reuse (about 130 MB; SciFact's corpus is 1.2 M)
MEMO_CALLS = 32  # and at most this many calls


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

    def __init__(self, model_path: Path, max_length: int, lowercase: bool = False) -> None:
        from transformers import AutoTokenizer

        # The Rust tokenizer transformers builds, as sentence-transformers uses it, rather than tokenizer.json read
        # directly: transformers 5 rebuilds some families' pipelines from their vocabulary (XLM-R: WhitespaceSplit +
        # Metaspace, not the file's normalizer), which tokenizes extra or edge whitespace differently.
        hf = AutoTokenizer.from_pretrained(model_path)
        self._tok = hf.backend_tokenizer
        if lowercase:  # sentence_bert_config.json do_lower_case, applied as sentence-transformers does
            from tokenizers import normalizers

            current = self._tok.normalizer
            self._tok.normalizer = normalizers.Sequence([normalizers.Lowercase(), *([current] if current else [])])
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=max_length)
        # transformers 5 no longer writes special_tokens_map.json; the pad id is the tokenizer's own.
        self.pad_id = int(hf.pad_token_id) if hf.pad_token_id is not None else 0
        self._memo: OrderedDict[str, Tokenized] = OrderedDict()

    @classmethod
    def shared(cls, model_path: Path, max_length: int, lowercase: bool = False) -> TextTokenizer:
        """The process-wide instance for this tokenizer folder and length (a new one if ``tokenizer.json`` changed)."""
        file = model_path / "tokenizer.json"
        stamp = (file.stat().st_mtime_ns, file.stat().st_size) if file.is_file() else None
        return _shared_tokenizer(model_path.resolve(), max_length, lowercase, stamp)

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
def _shared_tokenizer(model_path: Path, max_length: int, lowercase: bool, stamp: tuple[int, int] | None) -> TextTokenizer:
    return TextTokenizer(model_path, max_length, lowercase)

