"""Large corpora: streamed encoding equals encoding everything at once, blockwise top-k equals brute force, and the
encoder's working set is bounded by its chunk sizes (checked with spies, never with timings).

Streamed and unstreamed encoding run the same batches through the same session and pooling: the same computation,
so the embeddings are compared bit for bit. A search over blocks of the corpus and one full similarity matrix are two
different computations (summation order and kernels differ by block shape and CPU): their scores are compared with a
tolerance and their rankings with the tie rule of tests/ranking.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evalsuite.build import build_variant
from evalsuite.data.loading import load_task
from evalsuite.data.tasks import find_task
from evalsuite.encode import BatchPolicy, OnnxEncoder, make_session, pool
from evalsuite.encode import encoder as encoder_module
from evalsuite.encode import tokenizer as tokenizer_module
from evalsuite.models import ModelSource
from evalsuite.run.evaluate import run_mteb
from evalsuite.variants import BASELINE
from ranking import assert_top_k, assert_within, ndcg_at_10_bounds

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from synthetic_beir import write_beir  # noqa: E402


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic folder with FiQA-like lengths (most documents longer than the tiny model's 64 tokens)."""
    return write_beir(tmp_path_factory.mktemp("synth") / "synth", 600, 40)


def _corpus_texts(folder: Path) -> list[str]:
    rows = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines()]
    return [(r["title"] + " " + r["text"]).strip() for r in rows]  # as mteb joins a document's title and text


def _encoder(source: ModelSource, cache: Path, policy: BatchPolicy, **kwargs: Any) -> OnnxEncoder:
    return OnnxEncoder(build_variant(source, BASELINE, cache), source, policy, threads=1, **kwargs)


def _unstreamed(source: ModelSource, cache: Path, texts: list[str], batch_size: int) -> np.ndarray:
    """The whole corpus tokenized at once by transformers, batched by length (stable), run and pooled."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source.path)
    ids = tok(texts, truncation=True, max_length=source.settings.max_seq_length)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    session = make_session(build_variant(source, BASELINE, cache).path, 1)
    out = np.empty((len(texts), 32), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(ids[i]) for i in rows)
        batch = np.array([ids[i] + [tok.pad_token_id] * (width - len(ids[i])) for i in rows], dtype=np.int64)
        mask = np.array([[1] * len(ids[i]) + [0] * (width - len(ids[i])) for i in rows], dtype=np.int64)
        hidden = session.run(None, {"input_ids": batch, "attention_mask": mask, "token_type_ids": np.zeros_like(batch)})[0]
        out[rows] = pool(hidden, mask, "mean", True)
    return out


@pytest.mark.parametrize("memo_tokens", [16_000_000, 0])  # ids kept for the call / tokenized again per shard
def test_streamed_embeddings_equal_unstreamed(synth: Path, tiny_source: ModelSource, shared_cache: Path,
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memo_tokens: int) -> None:
    texts = _corpus_texts(synth)
    expected = _unstreamed(tiny_source, shared_cache, texts, 8)  # the same batches, session and pooling: bit for bit
    monkeypatch.setattr(tokenizer_module, "TOKENIZE_CHUNK", 7)
    monkeypatch.setattr(tokenizer_module, "MEMO_TOKENS", memo_tokens)
    monkeypatch.setattr(encoder_module, "SHARD_BATCHES", 3)
    encoder = _encoder(tiny_source, shared_cache, BatchPolicy(batch_size=8), cache_dir=tmp_path / "emb")
    encoder.tokenizer._memo.clear()
    got = encoder.embed(texts)
    assert np.array_equal(got, expected)
    assert (encoder.tokenizer.survey(texts)[1] is None) == (memo_tokens == 0)
    again = _encoder(tiny_source, shared_cache, BatchPolicy(batch_size=8), cache_dir=tmp_path / "emb")
    assert np.array_equal(again.embed(texts), expected) and again.stats["cached_texts"] == len(texts)


def _brute_force_ndcg(vectors: np.ndarray, queries: np.ndarray, doc_ids: list[str], query_ids: list[str],
                      qrels: dict[str, dict[str, int]]) -> dict[str, tuple[float, float]]:
    """Per query, pytrec_eval's NDCG@10 over one full numpy similarity matrix, as the bounds over the orders of
    documents whose scores are within 1e-6 (mteb's blockwise torch scores differ in the last bits)."""
    import pytrec_eval

    scores = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).T
    run = {q: {d: float(s) for d, s in zip(doc_ids, row, strict=True)} for q, row in zip(query_ids, scores, strict=True)}
    measured = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    bounds = {q: ndcg_at_10_bounds(run[q], qrels[q], 1e-6) for q in measured}
    for q, v in measured.items():  # our bounds hold trec_eval's own number for these scores
        assert_within(v["ndcg_cut_10"], bounds[q], what=q)
    return bounds


def _assert_ndcg_within(got: dict[str, float], expected: dict[str, tuple[float, float]]) -> None:
    assert got.keys() == expected.keys()
    for q in got:
        assert_within(got[q], expected[q], what=q)


def test_streamed_per_query_ndcg_equals_brute_force(synth: Path, tiny_source: ModelSource, shared_cache: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.data.beir import read_beir

    monkeypatch.setattr(tokenizer_module, "TOKENIZE_CHUNK", 7)
    monkeypatch.setattr(tokenizer_module, "MEMO_TOKENS", 0)
    monkeypatch.setattr(encoder_module, "SHARD_BATCHES", 2)
    encoder = _encoder(tiny_source, shared_cache, BatchPolicy())
    got = run_mteb(encoder, load_task(find_task(str(synth)), None)).per_query
    data = read_beir(synth)
    texts, query_ids = _corpus_texts(synth), list(data.queries)
    vectors = _unstreamed(tiny_source, shared_cache, texts, 32)
    queries = np.stack([_unstreamed(tiny_source, shared_cache, [data.queries[q]], 1)[0] for q in query_ids])
    expected = _brute_force_ndcg(vectors, queries, list(data.corpus), query_ids, data.qrels)
    _assert_ndcg_within(got, expected)
    assert sum(v > 0 for v in got.values()) >= 3  # retrieval really found something


# --- blockwise top-k ----------------------------------------------------------------------------

class TableEncoder:
    """An mteb encoder whose vectors are fixed per text, so the search is tested apart from batching."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table
        self.calls: list[int] = []
        import mteb

        self.mteb_model_meta = mteb.get_model_meta("sentence-transformers/all-MiniLM-L6-v2")

    def encode(self, inputs: Any, **kwargs: Any) -> np.ndarray:
        texts = list(inputs.dataset["text"])
        self.calls.append(len(texts))
        return np.stack([self.table[t] for t in texts])

    def similarity(self, a: Any, b: Any) -> Any:
        from mteb.similarity_functions import cos_sim

        return cos_sim(a, b)


def _tied_corpus(n: int) -> tuple[dict[str, str], dict[str, str], dict[str, np.ndarray]]:
    """Documents whose vectors come in pairs (exact score ties), the two copies n/2 positions apart.

    mteb keeps the top k + 1 of each block before merging, so its rule (ties at the cut keep the larger
    document id) is exact when at most two documents of one block tie at the cut; with more, ``torch.topk``
    picks among them.
    """
    rng = np.random.default_rng(3)
    distinct = [rng.integers(-3, 4, size=8).astype(np.float32) for _ in range(n // 2)]
    docs, table = {}, {}
    for i in range(n):
        v = i % len(distinct)
        docs[f"d{i:04d}"] = f"vector {v}"
        table[f"vector {v}"] = distinct[v]
    queries = {f"q{j}": f"query {j}" for j in range(15)}
    table.update({f"query {j}": rng.integers(-3, 4, size=8).astype(np.float32) for j in range(15)})
    return docs, queries, table


@pytest.mark.parametrize("block", [5, 40, 10_000])
def test_blockwise_top_k_equals_brute_force_with_ties(block: int) -> None:
    import torch
    from datasets import Dataset
    from mteb.models.search_wrappers import SearchEncoderWrapper

    top_k = 10
    docs, queries, table = _tied_corpus(200)
    encoder = TableEncoder(table)
    search = SearchEncoderWrapper(encoder, corpus_chunk_size=block)
    corpus = Dataset.from_dict({"id": list(docs), "text": list(docs.values())})
    meta = _scifact_meta()
    search.index(corpus, task_metadata=meta, hf_split="test", hf_subset="default", encode_kwargs={"show_progress_bar": False})
    got = search.search(Dataset.from_dict({"id": list(queries), "text": list(queries.values())}), task_metadata=meta,
                        hf_split="test", hf_subset="default", top_k=top_k, encode_kwargs={"show_progress_bar": False})
    assert max(encoder.calls[1:]) == min(block, len(docs))  # the corpus is encoded one block at a time

    from mteb.similarity_functions import cos_sim

    scores = cos_sim(torch.as_tensor(np.stack([table[t] for t in queries.values()])),
                     torch.as_tensor(np.stack([table[t] for t in docs.values()]))).numpy()
    ids = np.array(list(docs))
    ties = 0
    for row, qid in zip(scores, queries, strict=True):
        full = {str(i): float(s) for i, s in zip(ids, row, strict=True)}
        # Every returned score is the document's score in the full matrix, to float32 rounding.
        assert max(abs(s - full[d]) for d, s in got[qid].items()) <= 1e-6, qid
        # The top k of the full matrix, where documents within 1e-6 of each other may stand in for one another:
        # the two copies of a vector sit in different blocks, so their two scores need not be equal bit for bit.
        assert_top_k(list(got[qid]), full, top_k, 1e-6, qid)
        order = np.lexsort((ids, row))[::-1][:top_k]
        if block >= len(docs):
            # One block is the full matrix, computed the same way: mteb's own tie rule holds exactly (the k largest
            # (score, document id) pairs, i.e. ties at the cut keep the larger id).
            assert got[qid] == {ids[i]: float(row[i]) for i in order}, qid
        ties += int(np.sum(np.abs(row - row[order[-1]]) <= 1e-6) > 1)
    assert ties >= 5  # the cut really falls inside tied scores


def _scifact_meta() -> Any:
    import mteb

    return mteb.get_task("SciFact").metadata


# --- bounded working set ------------------------------------------------------------------------

def test_encoder_working_set_is_bounded_by_its_chunks(synth: Path, tiny_source: ModelSource, shared_cache: Path,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunk, batch, shard_batches, block = 9, 4, 3, 250
    monkeypatch.setattr(tokenizer_module, "TOKENIZE_CHUNK", chunk)
    monkeypatch.setattr(tokenizer_module, "MEMO_TOKENS", 0)
    monkeypatch.setattr(encoder_module, "SHARD_BATCHES", shard_batches)
    encoder = _encoder(tiny_source, shared_cache, BatchPolicy(batch_size=batch), cache_dir=tmp_path / "emb")
    encoder.tokenizer._memo.clear()
    events: list[tuple[str, int]] = []
    rust = encoder.tokenizer._tok
    spy_tok = _Spy(rust, "encode_batch", lambda texts, **kw: events.append(("tokenize", len(texts))))
    monkeypatch.setattr(encoder.tokenizer, "_tok", spy_tok)
    tokenized_sizes: list[int] = []
    original_init = tokenizer_module.Tokenized.__init__

    def record(self: Any, flat: np.ndarray, offsets: np.ndarray) -> None:
        tokenized_sizes.append(len(flat))
        original_init(self, flat, offsets)

    monkeypatch.setattr(tokenizer_module.Tokenized, "__init__", record)
    run = encoder._run
    monkeypatch.setattr(encoder, "_run", lambda tok, rows: (events.append(("run", len(rows))), run(tok, rows))[1])
    put = encoder.cache.put  # type: ignore[union-attr]
    monkeypatch.setattr(encoder.cache, "put", lambda key, v: (events.append(("put", len(v))), put(key, v))[1])
    embed = encoder.embed
    monkeypatch.setattr(encoder, "embed", lambda texts, prompt_type="document": (events.append(("embed", len(texts))), embed(texts, prompt_type))[1])

    run_mteb(encoder, load_task(find_task(str(synth)), None), corpus_block=block)

    max_len = tiny_source.settings.max_seq_length
    assert max(n for e, n in events if e == "tokenize") <= chunk
    assert max(n for e, n in events if e == "run") <= batch
    assert max(n for e, n in events if e == "put") <= batch * shard_batches
    assert max(tokenized_sizes) <= batch * shard_batches * max_len  # no token matrix beyond one shard's texts
    assert [n for e, n in events if e == "embed"] == [40, 250, 250, 100]  # the queries, then one call per block
    # Embeddings are stored as they are produced: every shard is written before the next one runs.
    kinds = [e for e, _ in events if e in ("run", "put")]
    runs_between = [len(s) for s in "".join("r" if k == "run" else "|" for k in kinds).split("|")[:-1]]
    assert runs_between and max(runs_between) <= shard_batches


class _Spy:
    """Forwards everything to ``target`` and calls ``hook`` with the arguments of ``method`` first."""

    def __init__(self, target: Any, method: str, hook: Any) -> None:
        self._target, self._method, self._hook = target, method, hook

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name != self._method:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._hook(*args, **kwargs)
            return attr(*args, **kwargs)

        return call


def test_fiqa_sized_folder_runs_as_fiqa2018(tmp_path: Path, tiny_source: ModelSource, shared_cache: Path) -> None:
    """The built-in FiQA2018 task on a synthetic ``fiqa`` folder, in three retrieval blocks; per-query NDCG@10 equals
    brute force over embeddings made block by block (the full 57,638 documents: README, benchmarks/scale.py)."""
    from evalsuite.data.beir import read_beir

    folder = write_beir(tmp_path / "data" / "fiqa", 1_200, 30)
    spec = find_task("fiqa")
    assert spec.mteb_name == "FiQA2018"
    loaded = load_task(spec, tmp_path / "data")
    assert (loaded.ref.n_documents, loaded.ref.n_queries) == (1_200, 30)
    encoder = _encoder(tiny_source, shared_cache, BatchPolicy(), cache_dir=tmp_path / "emb")
    got = run_mteb(encoder, loaded, corpus_block=500).per_query
    data = read_beir(folder)
    texts, query_ids = _corpus_texts(folder), list(data.queries)
    # The length sort of the default policy applies within a block (one encode call), so the reference does too.
    vectors = np.concatenate([_unstreamed(tiny_source, shared_cache, texts[s:s + 500], 32) for s in range(0, 1_200, 500)])
    queries = np.stack([_unstreamed(tiny_source, shared_cache, [data.queries[q]], 1)[0] for q in query_ids])
    expected = _brute_force_ndcg(vectors, queries, list(data.corpus), query_ids, data.qrels)
    _assert_ndcg_within(got, expected)
