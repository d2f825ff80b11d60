"""Result identity and embedding-cache keys, by behaviour: changing anything that decides a result's numbers
recomputes it, changing nothing reuses it, and only the embeddings a change touches are encoded again.

Nothing here knows how an identity or a cache key is hashed. A run's work is counted from outside: which results
``run_sweep`` computed (what ``run --json`` reports as ``reused``), whether the result file was rewritten, and the
``texts_encoded`` / ``texts_from_cache`` timings each result records. Each test starts from a copy of one baseline
run (Float32 on a synthetic SciFact) in its own copies of the tiny model, the data and a warm embedding cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import WORDS, make_beir
from test_gate import run_cli

from evalsuite.analysis.gate import GateConfig, gate
from evalsuite.analysis.report import build_report
from evalsuite.build import artifact_dir, build_variant
from evalsuite.encode import BatchPolicy, OnnxEncoder
from evalsuite.errors import EvalsuiteError
from evalsuite.files import atomic_write_json
from evalsuite.models import ModelSource, model_slug, resolve_model
from evalsuite.results import ResultStore, RunResult
from evalsuite.run import SweepConfig, SweepReport, run_sweep
from evalsuite.variants import BASELINE, VariantSpec, named_sets

N_DOCS, N_QUERIES = 40, 8  # every query is judged, so each run encodes 40 documents and 8 queries
TASK = "SciFact"


@dataclass(frozen=True)
class World:
    """The folders of one line of runs: a copy of the model and the data, a cache and a results folder."""

    model: Path
    data: Path
    cache: Path
    results: Path

    def result_file(self, variant: str = "float32") -> Path:
        return ResultStore(self.results).path(model_slug(str(self.model)), TASK, variant)

    def stored(self, variant: str = "float32") -> RunResult:
        result = ResultStore(self.results).get(model_slug(str(self.model)), TASK, variant)
        assert result is not None
        return result


def sweep(world: World, variants: tuple[str, ...] = ("float32",), policy: BatchPolicy | None = None) -> SweepReport:
    return run_sweep(SweepConfig(variants=[VariantSpec.parse(v) for v in variants], model=str(world.model),
                                 tasks=["scifact"], data_dir=world.data, cache_dir=world.cache, results_dir=world.results,
                                 policy=policy or BatchPolicy(), threads=1))


def stamp(path: Path) -> tuple[int, int, bytes]:
    """(inode, mtime, content): a rewritten file changes at least one of them, even when written atomically."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


@pytest.fixture(scope="module")
def warm(tiny_model: Path, shared_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    """The baseline run once: its cache holds the session's ONNX files (same weights) and the baseline embeddings."""
    root = tmp_path_factory.mktemp("identity")
    model = root / "model" / "tiny-bert"
    shutil.copytree(tiny_model, model)
    queries = make_beir(root / "data" / "scifact", n_docs=N_DOCS, n_queries=N_QUERIES, seed=4) / "queries.jsonl"
    # Drop the unjudged query (mteb would not encode it), so every count below is documents + queries.
    queries.write_text("".join(line + "\n" for line in queries.read_text().splitlines() if '"unjudged"' not in line))
    shutil.copytree(shared_cache, root / "cache", ignore=shutil.ignore_patterns("embeddings"))
    world = World(model, root / "data", root / "cache", root / "results")
    assert sweep(world).computed == [(TASK, "float32", 0)]
    timings = world.stored().timings
    assert (timings["texts_encoded"], timings["texts_from_cache"]) == (N_DOCS + N_QUERIES, 0)
    return world


@pytest.fixture()
def world(warm: World, tmp_path: Path) -> World:
    """A fresh line of runs (copies of the model, the data and the warm cache) with its baseline result, made
    from cached embeddings only. The model keeps its folder across the runs of a test: results are per model folder."""
    new = World(tmp_path / "model" / warm.model.name, tmp_path / "data", tmp_path / "cache", tmp_path / "results")
    shutil.copytree(warm.model, new.model)
    shutil.copytree(warm.data, new.data)
    shutil.copytree(warm.cache, new.cache)
    assert sweep(new).computed == [(TASK, "float32", 0)]
    assert new.stored().timings["texts_from_cache"] == N_DOCS + N_QUERIES
    return new


# --- changing nothing reuses --------------------------------------------------------------------------------

@pytest.mark.parametrize("moved", [False, True], ids=["same folders", "same data in another folder"])
def test_unchanged_inputs_reuse_the_stored_result(world: World, moved: bool, tmp_path: Path) -> None:
    """Nothing is evaluated and the result file is not touched."""
    if moved:
        shutil.copytree(world.data, tmp_path / "elsewhere")
        world = dataclasses.replace(world, data=tmp_path / "elsewhere")
    before, identity = stamp(world.result_file()), world.stored().identity
    report = sweep(world)
    assert report.computed == [] and [r["reused"] for r in report.rows()] == [True]
    assert stamp(world.result_file()) == before
    assert report.results[TASK]["float32"].identity == identity


# --- changing anything that decides the numbers recomputes --------------------------------------------------

def _edit_json_lines(path: Path, edit: Callable[[dict], None], line: int = 0) -> None:  # type: ignore[type-arg]
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    edit(rows[line])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _change_corpus(world: World) -> None:
    _edit_json_lines(world.data / "scifact" / "corpus.jsonl", lambda row: row.update(text=row["text"] + " protein"))


def _change_qrels(world: World) -> None:
    path = world.data / "scifact" / "qrels" / "test.tsv"
    lines = path.read_text().splitlines()
    qid, did, grade = lines[1].split("\t")
    lines[1] = "\t".join([qid, did, "2" if grade.strip() == "1" else "1"])
    path.write_text("\n".join(lines) + "\n")


def _change_prefix(world: World) -> None:
    (world.model / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {"query": "query: "}}))


def _change_max_seq_length(world: World) -> None:
    (world.model / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 16, "do_lower_case": False}))


def _change_onnx_file(world: World) -> None:
    """Another Float32 file for the same weights (as a new onnxruntime or converter would build): same graph,
    other bytes, registered in the cache as a valid entry."""
    import onnx

    folder = artifact_dir(resolve_model(str(world.model)), "float32", world.cache)
    model = onnx.load(str(folder / "model.onnx"))
    model.doc_string = "rebuilt"
    onnx.save(model, str(folder / "model.onnx"))
    meta = json.loads((folder / "meta.json").read_text())
    data = (folder / "model.onnx").read_bytes()
    meta.update(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    atomic_write_json(folder / "meta.json", meta)


# id: (change to the copied folders, batch policy of the second run, (least, most) texts it may take from the cache)
CHANGES: dict[str, tuple[Callable[[World], None] | None, BatchPolicy, tuple[int, int]]] = {
    # Only the batching that applies to a text is keyed: the other kind of text comes from the cache.
    "batch size": (None, BatchPolicy(batch_size=16), (N_QUERIES, N_QUERIES)),
    "query batch size": (None, BatchPolicy(query_batch_size=4), (N_DOCS, N_DOCS)),
    "order": (None, BatchPolicy(order="given"), (0, N_QUERIES)),  # the corpus is re-encoded
    "query prefix": (_change_prefix, BatchPolicy(), (0, N_DOCS)),  # the queries are re-encoded
    "max_seq_length": (_change_max_seq_length, BatchPolicy(), (0, 0)),
    "corpus file": (_change_corpus, BatchPolicy(), (N_QUERIES, N_QUERIES)),  # the corpus is one shard: all of it again
    "qrels file": (_change_qrels, BatchPolicy(), (N_DOCS + N_QUERIES, N_DOCS + N_QUERIES)),  # same texts
    "onnx file": (_change_onnx_file, BatchPolicy(), (0, 0)),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_change_that_decides_the_numbers_recomputes(change: str, world: World) -> None:
    edit, policy, from_cache = CHANGES[change]
    old = world.stored()
    if edit is not None:
        edit(world)
    before = stamp(world.result_file())
    report = sweep(world, policy=policy)
    assert report.computed == [(TASK, "float32", 0)] and [r["reused"] for r in report.rows()] == [False]
    assert stamp(world.result_file()) != before
    new = world.stored()
    assert new.identity != old.identity
    # The stored record describes what changed.
    assert new.batch_policy["key"] == policy.key
    if change == "query prefix":
        assert new.encoding["query_prefix"] == "query: " != old.encoding["query_prefix"]
    if change == "max_seq_length":
        assert new.encoding["max_seq_length"] == 16 != old.encoding["max_seq_length"]
    if change in ("corpus file", "qrels file"):
        assert new.task.fingerprint != old.task.fingerprint
    if change == "onnx file":
        assert new.onnx_sha256 == hashlib.sha256(artifact_dir(resolve_model(str(world.model)), "float32", world.cache)
                                                 .joinpath("model.onnx").read_bytes()).hexdigest() != old.onnx_sha256
    assert new.timings["texts_encoded"] == N_DOCS + N_QUERIES
    assert from_cache[0] <= new.timings["texts_from_cache"] <= from_cache[1]
    # The new result is reused by the next identical run.
    assert sweep(world, policy=policy).computed == []


# --- the embedding cache: keys ---------------------------------------------------------------------------------

def test_order_is_part_of_the_embedding_key(tiny_source: ModelSource, shared_cache: Path, tmp_path: Path) -> None:
    """Texts already sorted by length give the same batches in both orders: only the key can tell them apart."""
    texts = [" ".join(WORDS[:n]) for n in range(1, 13)]
    art = build_variant(tiny_source, BASELINE, shared_cache)
    by_length = OnnxEncoder(art, tiny_source, BatchPolicy(batch_size=4, order="length"), cache_dir=tmp_path, threads=1)
    a = by_length.embed(texts)
    given = OnnxEncoder(art, tiny_source, BatchPolicy(batch_size=4, order="given"), cache_dir=tmp_path, threads=1)
    b = given.embed(texts)
    assert given.stats["cached_texts"] == 0 and np.array_equal(a, b)
    again = OnnxEncoder(art, tiny_source, BatchPolicy(batch_size=4, order="given"), cache_dir=tmp_path, threads=1)
    again.embed(texts)
    assert again.stats["cached_texts"] == len(texts)


# --- mteb sees one model per variant ---------------------------------------------------------------------------

def test_each_variant_has_its_own_mteb_model_meta(tiny_source: ModelSource, shared_cache: Path) -> None:
    """mteb keys its caches and result folders by model name and revision: every variant must differ in both."""
    metas = {}
    for name in named_sets()["seed"]:
        art = build_variant(tiny_source, VariantSpec.parse(name), shared_cache)
        meta = OnnxEncoder(art, tiny_source, threads=1).mteb_model_meta
        assert meta.revision == hashlib.sha256(art.path.read_bytes()).hexdigest()[:16]
        assert meta.name.endswith(f"__{name}") and meta.similarity_fn_name == "cosine"
        metas[name] = (meta.name, meta.revision)
    assert len({m[0] for m in metas.values()}) == len(metas) and len({m[1] for m in metas.values()}) == len(metas)
    hub = ModelSource("org/model", tiny_source.path, tiny_source.weights_sha256, tiny_source.settings)
    meta = OnnxEncoder(build_variant(tiny_source, VariantSpec.parse("qint8"), shared_cache), hub, threads=1).mteb_model_meta
    assert meta.name == "org/model__qint8"


# --- gate and report never pair results of different policies ------------------------------------------------

def test_gate_and_report_refuse_a_variant_and_float32_of_different_policies(world: World,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A later run under another policy re-evaluates Float32 and leaves other variants' results as they were."""
    sweep(world, ("qint8",))
    sweep(world, ("float16",), BatchPolicy(batch_size=1))  # Float32 now docs1; qint8 stays docs32
    assert world.stored().batch_policy["key"] == "docs1-q1-length" == world.stored("float16").batch_policy["key"]
    assert world.stored("qint8").batch_policy["key"] == "docs32-q1-length"
    expected = r"qint8 and float32 on SciFact were computed under different batch policies \(qint8: docs32-q1-length, float32: docs1-q1-length\)"
    with pytest.raises(EvalsuiteError, match=expected):
        gate("qint8", GateConfig(), world.results)
    with pytest.raises(EvalsuiteError, match=expected):
        build_report(world.results)
    assert gate("float16", GateConfig(max_drop=0.5), world.results).passed  # same policy: compared

    code, out, err = run_cli(monkeypatch, capsys, "gate", "-v", "qint8", "--results-dir", str(world.results))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # The error names the command that refreshes the stale result; following it makes the pair comparable.
    command = shlex.split(re.search(r"re-run `([^`]+)`", err).group(1))  # type: ignore[union-attr]
    assert command[:4] == ["evalsuite", "run", "--variant", "qint8"]
    code, _, err = run_cli(monkeypatch, capsys, *command[1:], "--model", str(world.model), "--tasks", "scifact",
                           "--data-dir", str(world.data), "--cache-dir", str(world.cache), "--results-dir", str(world.results),
                           "--threads", "1")
    assert code == 0, err
    assert world.stored("qint8").batch_policy["key"] == "docs1-q1-length"
    assert gate("qint8", GateConfig(max_drop=0.5), world.results).checks[0].comparison.n_queries == N_QUERIES


def test_gate_refuses_a_variant_and_float32_of_different_encoding_settings(world: World) -> None:
    sweep(world, ("float16",))
    _change_max_seq_length(world)
    sweep(world)  # Float32 again, now with max_seq_length 16; float16 keeps 64
    with pytest.raises(EvalsuiteError, match=r"float16 and float32 on SciFact were computed with different encoding "
                                             r"settings \(float16 vs float32: max_seq_length 64 vs 16\); re-run "
                                             r"`evalsuite run --variant float16`"):
        gate("float16", GateConfig(), world.results)
