"""The ONNX encoder against independent computations: sentence-transformers, plain numpy, and itself unbatched."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import WORDS, make_tiny_bert

from evalsuite.build import build_variant
from evalsuite.encode import BatchPolicy, OnnxEncoder, plan_batches, pool
from evalsuite.errors import EvalsuiteError
from evalsuite.models import ModelSource, model_overrides, resolve_model
from evalsuite.variants import BASELINE

TEXTS = [
    "protein",
    "",
    "Heart DISEASE and   diet sugar insulin",
    "stock bond market price tax loan bank fund rate risk credit debt equity income " * 3,  # > 64 tokens
    "zzz qqq unknown words become word pieces",
    "cancer",
    "gene virus brain sleep exercise blood fat liver kidney drug dose trial risk study effect patient",
    "  leading and trailing spaces  ",
]


@pytest.fixture(scope="session")
def model_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Tiny BERT folders that differ only in their sentence-transformers settings (same seed, same weights)."""
    made: dict[tuple[object, ...], Path] = {}

    def make(**options: object) -> Path:
        key = tuple(sorted(options.items()))
        if key not in made:
            made[key] = make_tiny_bert(tmp_path_factory.mktemp("tiny-bert-opt"), **options)  # type: ignore[arg-type]
        return made[key]

    return make


def encoder_for(source: ModelSource, cache: Path, policy: BatchPolicy | None = None, **kwargs: object) -> OnnxEncoder:
    artifact = build_variant(source, BASELINE, cache)
    return OnnxEncoder(artifact, source, policy or BatchPolicy(batch_size=3), threads=1, **kwargs)  # type: ignore[arg-type]


def st_embed(folder: Path, texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    return model.encode(texts, batch_size=4, convert_to_numpy=True)


# --- (1) against sentence-transformers ----------------------------------------------------------

@pytest.mark.parametrize(("pooling", "normalize"), [("mean", True), ("mean", False), ("cls", True), ("cls", False),
                                                    ("max", True), ("max", False)])
def test_matches_sentence_transformers(model_factory: Callable[..., Path], shared_cache: Path, tiny_source: ModelSource,
                                       pooling: str, normalize: bool) -> None:
    folder = model_factory(pooling=pooling, normalize=normalize)
    source = resolve_model(str(folder))
    assert (source.settings.pooling, source.settings.normalize) == (pooling, normalize)
    assert source.weights_sha256 == tiny_source.weights_sha256  # same seed: the ONNX file is shared
    got = encoder_for(source, shared_cache).embed(TEXTS)
    expected = st_embed(folder, TEXTS)
    assert got.dtype == np.float32 and got.shape == expected.shape == (len(TEXTS), 32)
    assert np.abs(got - expected).max() < 1e-5
    norms = np.linalg.norm(got, axis=1)
    if normalize:
        assert np.allclose(norms, 1.0, atol=1e-5)
    else:
        assert not np.allclose(norms, 1.0, atol=1e-2)
    # The texts are really different inputs (a constant encoder would pass the comparison above too).
    assert np.abs(got[0] - got[5]).max() > 1e-3


# --- (2) truncation -----------------------------------------------------------------------------

def test_truncation_matches_sentence_transformers(model_factory: Callable[..., Path], shared_cache: Path) -> None:
    folder = model_factory(max_seq_length=8)
    source = resolve_model(str(folder))
    assert source.settings.max_seq_length == 8
    words = list(WORDS[:20])  # each is one token of the tiny vocabulary
    texts = [" ".join(words[:n]) for n in (3, 6, 7, 12, 20)]
    got = encoder_for(source, shared_cache).embed(texts)
    assert np.abs(got - st_embed(folder, texts)).max() < 1e-5
    # [CLS] + 6 words + [SEP] = 8 tokens: everything after the 6th word is cut.
    assert np.abs(got[1] - got[2]).max() < 1e-6 and np.abs(got[1] - got[4]).max() < 1e-6
    assert np.abs(got[0] - got[1]).max() > 1e-3
    assert encoder_for(source, shared_cache).tokenizer(texts).lengths.tolist() == [5, 8, 8, 8, 8]


# --- (3) batching ------------------------------------------------------------------------------

def test_batching_keeps_input_order(tiny_source: ModelSource, shared_cache: Path) -> None:
    one_by_one = np.stack([encoder_for(tiny_source, shared_cache, BatchPolicy(batch_size=1)).embed([t])[0] for t in TEXTS])
    for batch_size in (1, 2, 3, 64):
        for order in ("length", "given"):
            policy = BatchPolicy(batch_size=batch_size, query_batch_size=batch_size, order=order)  # type: ignore[arg-type]
            encoder = encoder_for(tiny_source, shared_cache, policy)
            for kind in ("document", "query"):
                got = encoder.embed(TEXTS, prompt_type=kind)  # type: ignore[arg-type]
                assert np.abs(got - one_by_one).max() < 1e-5, (batch_size, order, kind)


def test_plan_batches() -> None:
    lengths = np.array([5, 2, 9, 2, 7])
    assert [b.tolist() for b in plan_batches(lengths, 2, "length")] == [[1, 3], [0, 4], [2]]  # ties keep input order
    assert [b.tolist() for b in plan_batches(lengths, 2, "given")] == [[0, 1], [2, 3], [4]]
    assert [b.tolist() for b in plan_batches(lengths, 10, "length")] == [[1, 3, 0, 4, 2]]


def test_batch_policy_checks() -> None:
    assert BatchPolicy().key == "docs32-q1-length"
    with pytest.raises(EvalsuiteError):
        BatchPolicy(batch_size=0)
    with pytest.raises(EvalsuiteError):
        BatchPolicy(order="random")  # type: ignore[arg-type]


def test_empty_input_is_an_error(tiny_source: ModelSource, shared_cache: Path) -> None:
    with pytest.raises(EvalsuiteError, match="nothing to encode"):
        encoder_for(tiny_source, shared_cache).embed([])


# --- (4) prefixes --------------------------------------------------------------------------------

def test_prefixes_from_a_model_config(tiny_model: Path, tiny_source: ModelSource, shared_cache: Path, tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "other.yaml").write_text("ids: [someone/else]\nquery_prefix: 'wrong: '\n")
    (configs / "tiny.yaml").write_text(f"# e5-style prefixes\nids: [{json.dumps(str(tiny_model))}]\n"
                                       "query_prefix: 'query: '\ndocument_prefix: 'passage: '\n")
    prefixed = resolve_model(str(tiny_model), configs_dir=configs)
    assert (prefixed.settings.query_prefix, prefixed.settings.document_prefix) == ("query: ", "passage: ")
    assert prefixed.weights_sha256 == tiny_source.weights_sha256
    plain = encoder_for(tiny_source, shared_cache)
    with_prefix = encoder_for(prefixed, shared_cache)
    texts = TEXTS[:4]
    queries = with_prefix.embed(texts, prompt_type="query")
    documents = with_prefix.embed(texts, prompt_type="document")
    assert np.array_equal(queries, plain.embed([f"query: {t}" for t in texts], prompt_type="query"))
    assert np.array_equal(documents, plain.embed([f"passage: {t}" for t in texts], prompt_type="document"))
    assert np.abs(queries - plain.embed(texts, prompt_type="query")).max() > 1e-3  # the prefix does change them
    assert np.abs(queries - documents).max() > 1e-3


def test_mteb_prompt_type_selects_the_prefix(tiny_model: Path, tiny_source: ModelSource, shared_cache: Path,
                                             tmp_path: Path) -> None:
    from mteb.types import PromptType

    (tmp_path / "tiny.yaml").write_text(f"ids: [{json.dumps(str(tiny_model))}]\nquery_prefix: 'query: '\n")
    encoder = encoder_for(resolve_model(str(tiny_model), configs_dir=tmp_path), shared_cache)
    batches = [{"text": TEXTS[:2]}, {"text": TEXTS[2:3]}]
    plain = encoder_for(tiny_source, shared_cache)
    assert np.array_equal(encoder.encode(batches, prompt_type=PromptType.query),
                          plain.embed([f"query: {t}" for t in TEXTS[:3]], prompt_type="query"))
    assert np.array_equal(encoder.encode(batches, prompt_type=PromptType.document), plain.embed(TEXTS[:3]))
    assert np.array_equal(encoder.encode(batches), plain.embed(TEXTS[:3]))


def test_prompts_in_the_model_folder_and_yaml_override(model_factory: Callable[..., Path], tmp_path: Path) -> None:
    folder = model_factory(seed=0, pooling="mean", normalize=True, max_seq_length=64)
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {"query": "q: ", "passage": "p: "}}))
    try:
        settings = resolve_model(str(folder), configs_dir=tmp_path).settings
        assert (settings.query_prefix, settings.document_prefix) == ("q: ", "p: ")
        (tmp_path / "m.yaml").write_text(f"ids: [{json.dumps(str(folder))}]\nquery_prefix: ''\nmax_seq_length: 16\n")
        settings = resolve_model(str(folder), configs_dir=tmp_path).settings
        assert (settings.query_prefix, settings.document_prefix, settings.max_seq_length) == ("", "p: ", 16)
    finally:
        (folder / "config_sentence_transformers.json").unlink()


def test_model_config_with_unknown_keys_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("ids: [some/model]\nquery_prefx: 'query: '\n")
    with pytest.raises(EvalsuiteError, match=r"bad\.yaml: unknown key 'query_prefx' in model config .*did you mean 'query_prefix'"):
        model_overrides("some/model", tmp_path)


# --- (5) the embedding cache ----------------------------------------------------------------------

def test_embedding_cache(tiny_source: ModelSource, shared_cache: Path, tmp_path: Path) -> None:
    texts = [f"{WORDS[i % len(WORDS)]} {WORDS[(3 * i) % len(WORDS)]} " * (1 + i % 5) for i in range(40)]
    policy = BatchPolicy(batch_size=2)  # 20 batches: two cache shards
    first = encoder_for(tiny_source, shared_cache, policy, cache_dir=tmp_path)
    a = first.embed(texts)
    assert first.stats["texts"] == 40 and first.stats["cached_texts"] == 0
    shards = sorted((tmp_path / "embeddings").rglob("*.npy"))
    assert len(shards) == 2

    second = encoder_for(tiny_source, shared_cache, policy, cache_dir=tmp_path)
    b = second.embed(texts)
    assert second.stats["cached_texts"] == 40 and second.stats["inference_s"] == 0.0
    assert np.array_equal(a, b)
    assert np.abs(a - encoder_for(tiny_source, shared_cache, policy).embed(texts)).max() == 0.0  # same as uncached

    # Another batch policy or prompt type is another key: no stale hits.
    third = encoder_for(tiny_source, shared_cache, BatchPolicy(batch_size=3), cache_dir=tmp_path)
    third.embed(texts)
    assert third.stats["cached_texts"] == 0
    fourth = encoder_for(tiny_source, shared_cache, policy, cache_dir=tmp_path)
    fourth.embed(texts, prompt_type="query")
    assert fourth.stats["cached_texts"] == 0

    # A damaged shard is detected, recomputed and rewritten.
    data = bytearray(shards[0].read_bytes())
    data[-5] ^= 0xFF
    shards[0].write_bytes(bytes(data))
    fifth = encoder_for(tiny_source, shared_cache, policy, cache_dir=tmp_path)
    assert np.array_equal(fifth.embed(texts), a)
    assert 0 < fifth.stats["cached_texts"] < 40
    sixth = encoder_for(tiny_source, shared_cache, policy, cache_dir=tmp_path)
    assert np.array_equal(sixth.embed(texts), a) and sixth.stats["cached_texts"] == 40


# --- (6) pooling by hand --------------------------------------------------------------------------

HIDDEN = np.array([[[1.0, -2.0], [3.0, -4.0], [100.0, 100.0]],
                   [[-5.0, -6.0], [50.0, 50.0], [70.0, 70.0]],
                   [[0.0, 1.0], [2.0, -3.0], [-4.0, 2.0]]], dtype=np.float32)
MASK = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=np.int64)


@pytest.mark.parametrize(("mode", "expected"), [
    ("mean", [[2.0, -3.0], [-5.0, -6.0], [-2 / 3, 0.0]]),
    ("cls", [[1.0, -2.0], [-5.0, -6.0], [0.0, 1.0]]),
    ("max", [[3.0, -2.0], [-5.0, -6.0], [2.0, 2.0]]),  # padding (100, 50, 70) never wins, even over negatives
    ("lasttoken", [[3.0, -4.0], [-5.0, -6.0], [-4.0, 2.0]]),
])
def test_pool_by_hand(mode: str, expected: list[list[float]]) -> None:
    out = pool(HIDDEN, MASK, mode, normalize=False)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.array(expected), rtol=0, atol=1e-6)
    unit = pool(HIDDEN, MASK, mode, normalize=True)
    np.testing.assert_allclose(unit, np.array(expected) / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6)


def test_pool_normalize_zero_vector_and_unknown_mode() -> None:
    zeros = np.zeros((1, 2, 3), dtype=np.float32)
    assert np.array_equal(pool(zeros, np.ones((1, 2), dtype=np.int64), "mean", normalize=True), np.zeros((1, 3)))
    with pytest.raises(EvalsuiteError, match="unsupported pooling mode 'sum'"):
        pool(HIDDEN, MASK, "sum", normalize=False)


# --- (7) one tokenization per task, shared by the variants of a model ----------------------------

def test_encoders_of_one_model_share_tokenized_ids(tiny_source: ModelSource, shared_cache: Path) -> None:
    first = encoder_for(tiny_source, shared_cache)
    second = encoder_for(tiny_source, shared_cache, BatchPolicy(batch_size=2))
    assert first.tokenizer is second.tokenizer
    texts = [f"{w} shared across variants" for w in WORDS]
    assert second.tokenizer.survey(texts) is first.tokenizer.survey(texts)  # the second variant does not tokenize again
    assert np.abs(first.embed(texts) - second.embed(texts)).max() < 1e-5


def test_tokenizer_memo_is_bounded(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.encode import tokenizer as encoder_module
    from evalsuite.encode import TextTokenizer

    tokenizer = TextTokenizer(tiny_model, 64)
    monkeypatch.setattr(encoder_module, "MEMO_CALLS", 3)
    for word in WORDS[:5]:
        tokenizer.survey([word])
    assert len(tokenizer._memo) == 3
    monkeypatch.setattr(encoder_module, "MEMO_TOKENS", 10)
    newest = tokenizer.survey([" ".join(WORDS)])  # above the budget alone: its lengths are kept, not its ids
    assert newest[1] is None and newest[0].tolist() == [len(WORDS) + 2]
    entries = list(tokenizer._memo.values())
    assert entries[-1] is newest  # older calls go first, until what is held fits the budget
    assert sum(len(lengths) + (0 if t is None else len(t.flat)) for lengths, t in entries) <= 10