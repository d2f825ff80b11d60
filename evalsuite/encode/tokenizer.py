"""Tokenization as sentence-transformers does it (fast tokenizer, truncation, no padding), in bounded chunks.

A fast tokenizer keeps, for every truncated text, the overflowing rest as extra encodings (with token strings
and offsets), so a list of encodings costs far more than the ids: a whole corpus' worth must never exist at once.
Texts are therefore tokenized :data:`TOKENIZE_CHUNK` at a time and kept only as compact ids.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evalsuite.files import sha256_text

TOKENIZE_CHUNK = 1024  # texts per call of the Rust tokenizer: bounds its transient encodings
MEMO_TOKENS = 16_000_000  # token ids a tokenizer keeps for reuse (64 MB as int32; SciFact's corpus is 1.2 M)
MEMO_CALLS = 32  # and at most this many calls


class Tokenized:
    """Token ids of a list of texts, truncated but unpadded: one flat int32 array and each text's offsets.

    Example:
        >>> t = Tokenized.from_rows([np.array([101, 7, 102]), np.array([101, 102])])
        >>> t.lengths.tolist(), t.row(1).tolist()
        ([3, 2], [101, 102])
    """

    def __init__(self, flat: np.ndarray, offsets: np.ndarray) -> None:
        self.flat = flat
        self.offsets = offsets
        self.lengths = np.diff(offsets)

    @classmethod
    def from_rows(cls, rows: Sequence[np.ndarray]) -> Tokenized:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        flat = np.concatenate(rows).astype(np.int32, copy=False) if len(rows) else np.empty(0, np.int32)
        return cls(flat, np.concatenate([[0], np.cumsum(lengths)]))

    def row(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i]:self.offsets[i + 1]]

    def __len__(self) -> int:
        return len(self.lengths)


class TextTokenizer:
    """A fast (Rust) tokenizer that truncates like sentence-transformers and memoises its recent calls.

    The memo keeps the ids of whole calls (a task's corpus block, its queries) up to :data:`MEMO_TOKENS` ids and
    :data:`MEMO_CALLS` calls, least recently used first out; a call above the budget keeps only its lengths, and
    its texts are tokenized again shard by shard when they are embedded (:meth:`survey`). Encoders get one
    instance per model through :meth:`shared`, so every variant of a sweep reuses the ids of a task instead of
    tokenizing it again (SciFact's corpus: 3 CPU-seconds).
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
        self._memo: OrderedDict[str, tuple[np.ndarray, Tokenized | None]] = OrderedDict()

    @classmethod
    def shared(cls, model_path: Path, max_length: int, lowercase: bool = False) -> TextTokenizer:
        """The process-wide instance for this tokenizer folder and length (a new one if ``tokenizer.json`` changed)."""
        file = model_path / "tokenizer.json"
        stamp = (file.stat().st_mtime_ns, file.stat().st_size) if file.is_file() else None
        return _shared_tokenizer(model_path.resolve(), max_length, lowercase, stamp)

    def __call__(self, texts: Sequence[str]) -> Tokenized:
        """Token ids of ``texts``, tokenized :data:`TOKENIZE_CHUNK` at a time (not memoised)."""
        rows: list[np.ndarray] = []
        for start in range(0, len(texts), TOKENIZE_CHUNK):
            encodings = self._tok.encode_batch(list(texts[start:start + TOKENIZE_CHUNK]), add_special_tokens=True)
            rows.extend(np.asarray(e.ids, dtype=np.int32) for e in encodings)
            del encodings
        return Tokenized.from_rows(rows)

    def survey(self, texts: Sequence[str]) -> tuple[np.ndarray, Tokenized | None]:
        """Token counts of ``texts``, and their ids when they fit in the memo (None: tokenize again when needed).

        Memoised per call, so the variants of a sweep tokenize a task's texts once.
        """
        key = sha256_text(*texts)
        if key in self._memo:
            self._memo.move_to_end(key)
            return self._memo[key]
        lengths_parts: list[np.ndarray] = []
        kept: list[Tokenized] | None = []
        held = 0
        for start in range(0, len(texts), TOKENIZE_CHUNK):
            part = self(texts[start:start + TOKENIZE_CHUNK])
            lengths_parts.append(part.lengths)
            held += len(part.flat)
            if kept is not None and held <= MEMO_TOKENS:
                kept.append(part)
            else:
                kept = None  # too large to keep: only the lengths are memoised
        lengths = np.concatenate(lengths_parts) if lengths_parts else np.empty(0, np.int64)
        tokenized = None
        if kept is not None:
            flat = np.concatenate([k.flat for k in kept]) if kept else np.empty(0, np.int32)
            tokenized = Tokenized(flat, np.concatenate([[0], np.cumsum(lengths)]))
        entry = self._memo[key] = (lengths, tokenized)
        self._trim()
        return entry

    def _trim(self) -> None:
        def size(entry: tuple[np.ndarray, Tokenized | None]) -> int:
            return len(entry[0]) + (len(entry[1].flat) if entry[1] is not None else 0)

        held = sum(size(e) for e in self._memo.values())
        while len(self._memo) > 1 and (held > MEMO_TOKENS or len(self._memo) > MEMO_CALLS):
            held -= size(self._memo.popitem(last=False)[1])


@functools.lru_cache(maxsize=2)
def _shared_tokenizer(model_path: Path, max_length: int, lowercase: bool, stamp: tuple[int, int] | None) -> TextTokenizer:
    return TextTokenizer(model_path, max_length, lowercase)
