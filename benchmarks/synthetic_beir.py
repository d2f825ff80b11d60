"""Deterministic synthetic BEIR folders of any size, with document lengths like FiQA's.

Document ``i`` depends only on ``(seed, i)`` (it is drawn in blocks of :data:`BLOCK` documents, each from its own
seeded generator), so a 1M folder starts with the same documents as a 10k one, and the fixed queries, which only
judge documents among the first 10k, are the same question at every size.

Lengths: words per document are log-normal with median 100 and sigma 0.7, clipped to [5, 1500]: mean about 128
words, as FiQA2018's 132 (SciFact: 213). Words are drawn from a small finance/medical vocabulary plus made-up
words (5%) that a WordPiece tokenizer splits into pieces, so a document has about as many tokens as real text.

Example:
    >>> write_beir(Path("/tmp/fiqa-synth/fiqa"), 57_638, 648)  # doctest: +SKIP

From the shell (FiQA2018-sized, with a tiny model to run it):
    python benchmarks/synthetic_beir.py /tmp/fiqa-synth/fiqa --docs 57638 --queries 648 --tiny-model /tmp/tiny-bert
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

BLOCK = 10_000
JUDGED = 10_000  # queries judge documents among the first JUDGED, which every size holds
VOCAB = ("protein vitamin heart cancer diet sugar insulin cell gene virus brain sleep exercise blood fat liver kidney "
         "drug dose trial risk study effect patient mouse tumor immune bone muscle skin lung stock bond market price "
         "tax loan bank fund rate credit debt equity income the of and to in is for on that with as by").split()


def _made_up_words(n: int, rng: np.random.Generator) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return ["".join(rng.choice(letters, size=int(rng.integers(3, 10)))) for _ in range(n)]


_WORDS = np.array(VOCAB, dtype=object)
_MADE_UP = np.array(_made_up_words(400, np.random.default_rng(12345)), dtype=object)
MADE_UP_SHARE = 0.05  # of words; each is split into several pieces, so about 1.3 tokens per word, as English has


def _block(seed: int, index: int) -> list[str]:
    """The texts of documents ``index * BLOCK`` .. ``(index + 1) * BLOCK - 1``."""
    rng = np.random.default_rng([seed, index])
    counts = np.clip(np.rint(rng.lognormal(np.log(100), 0.7, size=BLOCK)), 5, 1500).astype(np.int64)
    total = int(counts.sum())
    words = np.where(rng.random(total) < MADE_UP_SHARE, _MADE_UP[rng.integers(0, len(_MADE_UP), size=total)],
                     _WORDS[rng.integers(0, len(_WORDS), size=total)])
    ends = np.cumsum(counts)
    return [" ".join(words[e - c:e]) for c, e in zip(counts, ends, strict=True)]


def documents(n_docs: int, seed: int = 0):  # noqa: ANN201 - a generator of (id, title, text)
    for index in range((n_docs + BLOCK - 1) // BLOCK):
        for offset, text in enumerate(_block(seed, index)):
            i = index * BLOCK + offset
            if i >= n_docs:
                return
            yield f"d{i}", " ".join(text.split(" ", 3)[:3]), text


def write_beir(folder: Path, n_docs: int, n_queries: int = 200, seed: int = 0) -> Path:
    """Write ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/test.tsv`` (one to three judged documents per query)."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    judged = min(n_docs, JUDGED)
    first = _block(seed, 0)
    rng = np.random.default_rng([seed, 999_999])
    queries, qrels = [], ["query-id\tcorpus-id\tscore"]
    for q in range(n_queries):
        relevant = rng.choice(judged, size=int(rng.integers(1, 4)), replace=False)
        words = first[int(relevant[0])].split()[:40]  # from the part a 64-token model reads
        picked = [words[int(j)] for j in rng.choice(len(words), size=min(6, len(words)), replace=False)]
        queries.append(json.dumps({"_id": f"q{q}", "text": " ".join(picked)}))
        qrels += [f"q{q}\td{int(d)}\t{int(rng.integers(1, 3))}" for d in relevant]
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as out:
        for doc_id, title, text in documents(n_docs, seed):
            out.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    (folder / "queries.jsonl").write_text("\n".join(queries) + "\n", encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n", encoding="utf-8")
    return folder


def main(output: Path, docs: int = 57_638, queries: int = 648, seed: int = 0, tiny_model: Path | None = None) -> None:
    """Write a synthetic BEIR folder (default: FiQA2018's size) and, with ``--tiny-model DIR``, a tiny random BERT."""
    write_beir(output, docs, queries, seed)
    if tiny_model is not None:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from tiny_models import make_bert

        make_bert(tiny_model, max_seq_length=64)


if __name__ == "__main__":
    import typer

    typer.run(main)
