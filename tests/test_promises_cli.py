"""README promises of the command line that no other test runs to success, in this process (tests/test_gate.py's way):

* ``evalsuite run --executor ray`` and ``evalsuite gate --run --executor ray`` succeed, encode on Ray actors and give
  the local executor's per-query NDCG@10 ("Sweeps on Ray");
* two BEIR folders with the same name, given by path, get a result each that never overwrites the other, and each
  result holds its own folder's numbers ("A local model folder or a BEIR folder given by path is stored under its
  name plus a hash of its path").

Ray: one local cluster for the module (1 CPU, no dashboard, ``RAY_ADDRESS`` cleared), started by evalsuite's own
``start_local_ray``; a command run while it is up uses it (``_cluster`` yields the open session) instead of starting
its own, so only the command's own work is timed here.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import make_beir
from promise_world import run_cli

pytest_plugins = ["promise_world"]


def _per_query(results: Path) -> dict[tuple[str, str], dict[str, float]]:
    """``{(task, variant): {query: NDCG@10}}`` of every result file under ``results``."""
    out = {}
    for path in sorted(results.rglob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and "per_query_ndcg_at_10" in doc:
            out[(doc["task"]["name"], doc["variant"])] = doc["per_query_ndcg_at_10"]
    return out


# ---------------------------------------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_cluster():  # noqa: ANN201
    ray = pytest.importorskip("ray")
    from evalsuite.run.ray_executor import start_local_ray

    address = os.environ.pop("RAY_ADDRESS", None)
    try:
        start_local_ray(1)
        yield ray
    finally:
        ray.shutdown()
        if address is not None:
            os.environ["RAY_ADDRESS"] = address


@pytest.fixture(scope="module")
def ray_data(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Path]:
    """A BEIR folder, and the local executor's results on it (its own cache: nothing is shared with the Ray runs)."""
    from evalsuite.run import SweepConfig, run_sweep
    from evalsuite.variants import expand

    root = tmp_path_factory.mktemp("ray-data")
    make_beir(root / "data" / "scifact", n_docs=70, n_queries=10, seed=11)
    run_sweep(SweepConfig(variants=expand(["float32", "qint8"]), model=str(tiny_model), tasks=["scifact"],
                          data_dir=root / "data", cache_dir=root / "local-cache", results_dir=root / "local-results"))
    return {"data": root / "data", "local": root / "local-results", "root": root}


def test_run_with_the_ray_executor_succeeds_with_the_local_numbers(ray_cluster, ray_data: dict[str, Path], tiny_model: Path,  # noqa: ANN001
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root = ray_data["root"]
    code, out, err = run_cli(monkeypatch, capsys, "run", "--executor", "ray", "--actors", 1, "--variant", "float32,qint8",
                             "--model", tiny_model, "--tasks", "scifact", "--data-dir", ray_data["data"],
                             "--cache-dir", root / "ray-cache", "--results-dir", root / "ray-results", "--json")
    assert code == 0, err[-2000:]
    doc = json.loads(out)
    assert {(r["task"], r["variant"], r["reused"]) for r in doc["results"]} == {("SciFact", "float32", False), ("SciFact", "qint8", False)}
    assert "Ray: 1 actors x 1 onnxruntime thread on 1 node" in err
    assert "encoding float32 on SciFact on 1 Ray actors" in err and "encoding qint8 on SciFact on 1 Ray actors" in err
    on_ray, local = _per_query(root / "ray-results"), _per_query(ray_data["local"])
    assert on_ray == local and len(on_ray) == 2  # every query of both variants, exactly
    for path in (root / "ray-results").rglob("*.json"):
        timings = json.loads(path.read_text())["timings"]
        assert timings["texts_from_cache"] == timings["texts_encoded"] > 0  # the driver encoded nothing itself


def test_gate_run_with_the_ray_executor_evaluates_on_ray_then_gates(ray_cluster, ray_data: dict[str, Path], tiny_model: Path,  # noqa: ANN001
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = ray_data["root"]
    cache = root / "gate-cache"
    shutil.copytree(root / "local-cache" / "onnx", cache / "onnx")  # the built files, not one embedding
    code, out, err = run_cli(monkeypatch, capsys, "gate", "--variant", "qint8", "--max-drop", 0.5, "--run", "--executor", "ray",
                             "--actors", 1, "--model", tiny_model, "--tasks", "scifact", "--data-dir", ray_data["data"],
                             "--cache-dir", cache, "--results-dir", root / "gate-results")
    assert code == 0, err[-2000:]
    assert out.strip().splitlines()[-1].startswith("PASS: qint8")
    assert "encoding float32 on SciFact on 1 Ray actors" in err and "encoding qint8 on SciFact on 1 Ray actors" in err
    assert _per_query(root / "gate-results") == _per_query(ray_data["local"])


# ------------------------------------------------------------------------------------ two BEIR folders, one name


def test_two_beir_folders_of_one_name_never_share_results(tiny_model: Path, shared_cache: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_beir(tmp_path / "a" / "scifact", n_docs=40, n_queries=6, seed=21)
    b = make_beir(tmp_path / "b" / "scifact", n_docs=50, n_queries=9, seed=22)
    results = tmp_path / "results"
    common = ("--model", tiny_model, "--variant", "float32", "--cache-dir", shared_cache, "--json")
    code, out, err = run_cli(monkeypatch, capsys, "run", "--tasks", f"{a},{b}", "--results-dir", results, *common)
    assert code == 0, err[-2000:]
    rows = {r["task"]: r for r in json.loads(out)["results"]}
    assert len(rows) == 2 and all(name.startswith("scifact-") for name in rows)
    stored = {}
    for path in results.rglob("float32.json"):
        doc = json.loads(path.read_text())
        stored[doc["task"]["name"]] = doc
    assert stored.keys() == rows.keys()  # two files, one per folder
    by_folder = {Path(d["task"]["source"].removeprefix("local:")): d for d in stored.values()}
    assert set(by_folder) == {a.resolve(), b.resolve()}
    for folder, (docs, queries) in ((a, (40, 6)), (b, (50, 9))):
        doc = by_folder[folder.resolve()]
        assert (doc["task"]["n_documents"], len(doc["per_query_ndcg_at_10"])) == (docs, queries)
        # its numbers are its own folder's: the same folder read as the built-in SciFact through --data-dir
        code, out, err = run_cli(monkeypatch, capsys, "run", "--tasks", "scifact", "--data-dir", folder.parent,
                                 "--results-dir", tmp_path / f"builtin-{folder.parent.name}", *common)
        assert code == 0, err[-2000:]
        [builtin] = [p for p in (tmp_path / f"builtin-{folder.parent.name}").rglob("float32.json")]
        assert json.loads(builtin.read_text())["per_query_ndcg_at_10"] == doc["per_query_ndcg_at_10"]
    # running one folder again reuses its stored result: the other folder's run did not overwrite it
    code, out, err = run_cli(monkeypatch, capsys, "run", "--tasks", str(a), "--results-dir", results, *common)
    assert code == 0, err[-2000:]
    [row] = json.loads(out)["results"]
    assert row["reused"] is True and row["ndcg_at_10"] == by_folder[a.resolve()]["ndcg_at_10"]
