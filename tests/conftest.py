"""Shared fixtures: a tiny random BERT with sentence-transformers files, its ONNX files, and small synthetic BEIR
folders.

Tests never need the Hub or ../shared: they build what they use. Session-scoped fixtures keep the suite fast (the
tiny model exports in about a second); under pytest-xdist each worker builds them once.

The environment of every test and every command it starts: offline, results and caches in fresh temporary folders
(never the repository's results/ or the user's cache), one onnxruntime thread (``EVALSUITE_THREADS``: two test workers
on two cores must not run four spinning onnxruntime threads), and none of the developer's variables that change what
a command does or prints (clirun.NOT_INHERITED: ``RAY_ADDRESS``, as Ray tests start their own cluster, the debug
switch, the data folder, terminal size and forced colours).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from clirun import NOT_INHERITED

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A test that forgets to pass folders must never write into the repository's results/ or the user's cache.
os.environ["EVALSUITE_RESULTS_DIR"] = tempfile.mkdtemp(prefix="evalsuite-results-")
os.environ["EVALSUITE_CACHE_DIR"] = tempfile.mkdtemp(prefix="evalsuite-cache-")
os.environ["EVALSUITE_THREADS"] = "1"
for _name in NOT_INHERITED:  # the developer's debug switch, data folder, Ray cluster, terminal size and colours
    os.environ.pop(_name, None)

WORDS = ("protein vitamin heart cancer diet sugar insulin cell gene virus brain sleep exercise blood fat "
         "liver kidney drug dose trial risk study effect patient mouse tumor immune bone muscle skin lung "
         "stock bond market price tax loan bank fund rate risk credit debt equity income").split()


def make_tiny_bert(folder: Path, *, pooling: str = "mean", normalize: bool = True, max_seq_length: int = 64,
                   seed: int = 0) -> Path:
    """Write a random 2-layer BERT (hidden 32) with a WordPiece tokenizer and sentence-transformers config files."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS)), *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"],
             *"abcdefghijklmnopqrstuvwxyz0123456789"]
    vocab_map = {t: i for i, t in enumerate(dict.fromkeys(vocab))}
    tok = Tokenizer(models.WordPiece(vocab_map, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab_map["[CLS]"]), ("[SEP]", vocab_map["[SEP]"])])
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)
    fast.save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab_map), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, type_vocab_size=2)
    BertModel(config).eval().save_pretrained(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": pooling == "cls", "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": pooling == "max", "pooling_mode_mean_sqrt_len_tokens": False}))
    return folder


def make_beir(folder: Path, *, n_docs: int = 60, n_queries: int = 12, seed: int = 0, crlf: bool = False,
              numeric_ids: bool = False) -> Path:
    """Write a small BEIR folder whose relevant documents share words with their query (so retrieval is non-trivial)."""
    rng = random.Random(seed)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    nl = "\r\n" if crlf else "\n"
    docs, lines = {}, []
    for i in range(n_docs):
        doc_id = str(1000 + i)
        words = rng.sample(WORDS, rng.randint(3, 25))
        docs[doc_id] = words
        _id: object = int(doc_id) if numeric_ids else doc_id
        lines.append(json.dumps({"_id": _id, "title": " ".join(words[:2]), "text": " ".join(words), "metadata": {}}))
    (folder / "corpus.jsonl").write_text(nl.join(lines) + nl, encoding="utf-8", newline="")
    q_lines, qrels = [], ["query-id\tcorpus-id\tscore"]
    doc_ids = list(docs)
    for q in range(n_queries):
        relevant = rng.sample(doc_ids, rng.randint(1, 3))
        words = rng.sample(docs[relevant[0]], min(3, len(docs[relevant[0]])))
        q_lines.append(json.dumps({"_id": f"q{q}", "text": " ".join(words)}))
        qrels += [f"q{q}\t{d}\t{rng.choice([1, 2])}" for d in relevant]
    q_lines.append(json.dumps({"_id": "unjudged", "text": "a query without judgements"}))
    (folder / "queries.jsonl").write_text(nl.join(q_lines) + nl, encoding="utf-8", newline="")
    (folder / "qrels" / "test.tsv").write_text(nl.join(qrels) + nl, encoding="utf-8", newline="")
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny BERT folder (mean pooling, normalised, max_seq_length 64)."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_source(tiny_model: Path):  # noqa: ANN201
    from evalsuite.models import resolve_model

    return resolve_model(str(tiny_model))


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifact cache for the session, so each tiny variant is converted once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_source, shared_cache: Path) -> Path:  # noqa: ANN001
    """``shared_cache`` holding the tiny model's export, Float32 and qint8 (built once per session)."""
    from evalsuite.build import build_variant
    from evalsuite.variants import VariantSpec

    for name in ("float32", "qint8"):
        build_variant(tiny_source, VariantSpec.parse(name), shared_cache)
    return shared_cache


@pytest.fixture(scope="session")
def process_server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """Real ``evalsuite`` processes forked from one server that imported the heavy libraries once (tests/zygote.py),
    for tests that kill, interrupt or overlap runs, or run them on a small file system of their own."""
    from zygote import Zygote

    server = Zygote(tmp_path_factory.mktemp("process-server") / "server.log")
    yield server
    server.close()


def copy_onnx_cache(source: Path, target: Path) -> Path:
    """A cache folder ``target`` holding the committed ONNX artifacts of ``source`` (no embeddings, locks or temporary
    folders): a test that counts what it builds or encodes starts from the session's conversions, not from an export."""
    def skip(directory: str, names: list[str]) -> list[str]:
        return [n for n in names if n.startswith(".") or n.endswith(".lock")]

    shutil.copytree(source / "onnx", target / "onnx", ignore=skip)
    return target


@pytest.fixture()
def beir_dir(tmp_path: Path) -> Path:
    """A data dir holding a synthetic ``scifact/`` BEIR folder (CRLF qrels, like the real one)."""
    make_beir(tmp_path / "data" / "scifact", crlf=True)
    return tmp_path / "data"


# The modules that take longest, in this order, before all others (which keep pytest's order). Under pytest-xdist
# (pyproject.toml: -n 2 --dist loadfile) a worker takes one module at a time from the front of this order, so the
# long modules start first and no worker is left alone with one of them at the end.
SLOW_FIRST = ("test_faults.py", "test_resume.py", "test_families.py", "test_ray_executor.py", "test_bad_input.py",
              "test_html_export.py", "test_report.py", "test_model_identity.py", "test_identity.py", "test_large_corpus.py",
              "test_kinds.py", "test_convert.py", "test_cli.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: tests keep their order in a module
