"""Every model file that decides a number is part of its identity, results never overwrite another model's, and a
result that cannot be trusted is never used.

Each test copies the tiny model, runs ``evalsuite run`` in this process, changes one thing and runs again, counting
what was rebuilt: ONNX files in the cache, results recomputed (``reused`` in ``run --json``), texts encoded anew.
The cache of each test starts with the session's ONNX files of the tiny model (its copy has the same content, so
the same artifacts): the export is not repeated per test, and what a change rebuilds is still counted from there.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_onnx_cache, make_beir
from test_gate import run_cli

from evalsuite.errors import EvalsuiteError
from evalsuite.files import read_blob, write_blob
from evalsuite.models import model_slug, resolve_model


@pytest.fixture()
def env(tmp_path: Path, tiny_model: Path, tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN201
        capsys: pytest.CaptureFixture[str]):
    """A private copy of the tiny model, a BEIR folder, a cache (with the session's ONNX files) and a results folder,
    and ``run(*args) -> json``."""
    model = tmp_path / "m" / "model"
    shutil.copytree(tiny_model, model)
    data = tmp_path / "data"
    make_beir(data / "scifact", n_docs=30, n_queries=6)
    copy_onnx_cache(tiny_onnx, tmp_path / "cache")

    class Env:
        cache, results = tmp_path / "cache", tmp_path / "results"

        def __init__(self) -> None:
            self.model, self.data = model, data

        def run(self, *args: str, model_dir: Path | None = None) -> dict:  # type: ignore[type-arg]
            code, out, err = run_cli(monkeypatch, capsys, "run", "--model", str(model_dir or self.model), "--tasks", "scifact",
                                     "--data-dir", str(self.data), "--cache-dir", str(self.cache),
                                     "--results-dir", str(self.results), "--json", *args)
            assert code == 0, err[-3000:]
            return json.loads(out)

        def cli(self, *args: str) -> tuple[int, str, str]:
            return run_cli(monkeypatch, capsys, *args, "--results-dir", str(self.results))

        def onnx_files(self) -> int:
            return len(list(self.cache.rglob("model.onnx")))

        def record(self, variant: str) -> dict:  # type: ignore[type-arg]
            slug = model_slug(str(self.model))
            return json.loads((self.results / slug / "SciFact" / f"{variant}.json").read_text())

    return Env()


def reused(doc: dict) -> dict[str, bool]:  # type: ignore[type-arg]
    return {r["variant"]: r["reused"] for r in doc["results"]}


def test_unchanged_inputs_reuse_everything(env) -> None:  # noqa: ANN001
    env.run("--variant", "qint8")
    files = env.onnx_files()
    assert reused(env.run("--variant", "qint8")) == {"float32": True, "qint8": True}
    assert env.onnx_files() == files


def test_a_changed_tokenizer_recomputes_results_and_embeddings(env) -> None:  # noqa: ANN001
    first = env.run("--variant", "qint8")
    before = {v: env.record(v)["per_query_ndcg_at_10"] for v in ("float32", "qint8")}
    tok = json.loads((env.model / "tokenizer.json").read_text())
    tok["normalizer"]["lowercase"] = False  # same vocabulary, other ids for capitalised words
    (env.model / "tokenizer.json").write_text(json.dumps(tok))
    (env.data / "scifact" / "queries.jsonl").write_text(  # capitalised queries, so the change matters
        (env.data / "scifact" / "queries.jsonl").read_text().replace('"text": "', '"text": "Protein '))
    second = env.run("--variant", "qint8")
    assert reused(second) == {"float32": False, "qint8": False}
    for variant in ("float32", "qint8"):
        timings = env.record(variant)["timings"]
        assert timings["texts_from_cache"] == 0 and timings["texts_encoded"] > 0  # no stale embedding reused
    assert env.record("float32")["tokenizer_sha256"] != ""
    assert first["results"][0]["onnx_sha256"] == second["results"][0]["onnx_sha256"]  # same graph, new identity
    assert before != {v: env.record(v)["per_query_ndcg_at_10"] for v in ("float32", "qint8")}


def test_a_changed_model_config_rebuilds_the_export(env) -> None:  # noqa: ANN001
    first = env.run("--variant", "qint8")
    config = json.loads((env.model / "config.json").read_text())
    config["hidden_act"] = "relu"  # same weights, another function
    (env.model / "config.json").write_text(json.dumps(config))
    second = env.run("--variant", "qint8")
    assert reused(second) == {"float32": False, "qint8": False}
    old = {r["variant"]: r["onnx_sha256"] for r in first["results"]}
    new = {r["variant"]: r["onnx_sha256"] for r in second["results"]}
    assert all(old[v] != new[v] for v in old)  # every ONNX file was rebuilt from the new config


def test_two_model_folders_with_one_name_never_share_results(env, tmp_path: Path) -> None:  # noqa: ANN001
    twin = tmp_path / "other" / "model"
    shutil.copytree(env.model, twin)
    config = json.loads((twin / "config.json").read_text())
    config["hidden_act"] = "relu"
    (twin / "config.json").write_text(json.dumps(config))
    a = env.run("--variant", "float32")
    b = env.run("--variant", "float32", model_dir=twin)
    assert model_slug(str(env.model)) != model_slug(str(twin))
    assert reused(env.run("--variant", "float32")) == {"float32": True}  # b did not overwrite a
    assert a["results"][0]["onnx_sha256"] != b["results"][0]["onnx_sha256"]
    assert len(list(env.results.glob("*/SciFact/float32.json"))) == 2


@pytest.mark.parametrize("tamper", ["no-checksum", "edited"])
def test_a_record_without_a_valid_checksum_is_never_used(env, tamper: str) -> None:  # noqa: ANN001
    env.run("--variant", "qint8")
    slug = model_slug(str(env.model))
    path = env.results / slug / "SciFact" / "qint8.json"
    record = json.loads(path.read_text())
    honest = dict(record["per_query_ndcg_at_10"])
    if tamper == "no-checksum":
        del record["content_sha256"]
    record["per_query_ndcg_at_10"] = {q: 1.0 for q in record["per_query_ndcg_at_10"]}
    path.write_text(json.dumps(record))
    for command in (("gate", "--variant", "qint8"), ("report",)):
        code, _, err = env.cli(*command)
        assert code == 2 and str(path) in err and "damaged result file" in err and "Traceback" not in err
    assert reused(env.run("--variant", "qint8")) == {"float32": True, "qint8": False}  # recomputed, not trusted
    assert env.record("qint8")["per_query_ndcg_at_10"] == honest
    assert env.cli("gate", "--variant", "qint8", "--max-drop", "0.5")[0] == 0


def test_a_cached_embedding_shard_of_the_wrong_shape_is_recomputed(env) -> None:  # noqa: ANN001
    env.run("--variant", "float32", "--force")
    expected = env.record("float32")["per_query_ndcg_at_10"]
    shards = sorted(env.cache.rglob("embeddings/*/*.npy"))
    assert shards
    for shard in shards:  # a valid checksum around a matrix of the wrong shape
        payload = read_blob(shard)
        assert payload is not None
        vectors = np.load(io.BytesIO(payload))
        buf = io.BytesIO()
        np.save(buf, vectors[:-1] if len(vectors) > 1 else np.zeros((1, 3), np.float32))
        write_blob(shard, buf.getvalue())
    env.run("--variant", "float32", "--force")
    record = env.record("float32")
    assert record["timings"]["texts_from_cache"] == 0 and record["per_query_ndcg_at_10"] == expected


def test_a_model_without_any_tokenizer_file_is_an_error(env) -> None:  # noqa: ANN001
    for name in ("tokenizer.json", "vocab.txt"):
        (env.model / name).unlink(missing_ok=True)
    code, _, err = env.cli("run", "--model", str(env.model), "--variant", "float32", "--tasks", "scifact",
                           "--data-dir", str(env.data))
    assert code == 2 and f"no tokenizer in {env.model}" in err and "Traceback" not in err


def test_a_tokenizer_larger_than_the_embedding_matrix_is_an_error(env) -> None:  # noqa: ANN001
    config = json.loads((env.model / "config.json").read_text())
    config["vocab_size"] = 10  # fewer rows than the tokenizer has tokens
    (env.model / "config.json").write_text(json.dumps(config))
    with pytest.raises(EvalsuiteError, match=r"tokenizer\.json: the tokenizer has \d+ tokens but the model's embedding matrix has 10 rows"):
        resolve_model(str(env.model))
