"""The Ray executor gives the local executor's results, per query and per cached embedding, even when a worker dies.

One small Ray session serves the whole module (2 CPUs, no dashboard), never a cluster named by ``RAY_ADDRESS`` (the
test environment has none: conftest.py). The batch policy here uses batches of 4 so that the corpus fills several
cache shards and int8 embeddings really depend on how batches are formed.

Local and Ray runs are compared bit for bit because they are the same computation: the same batches through the same
session code with one onnxruntime thread on both sides (the local side is pinned to one thread here, as each actor
has one). README's benchmark compares two local threads against one per actor on the real model.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from clirun import environment, invoke, one_problem, run
from conftest import make_beir
from readme_text import REPO, readme_section
from evalsuite.encode import BatchPolicy
from evalsuite.encode.cache import EmbeddingCache
from evalsuite.run import SweepConfig, SweepReport, run_sweep
from evalsuite.variants import expand

ray = pytest.importorskip("ray")

from evalsuite.run.ray_executor import FAULT_ENV, RayExecutor, RayOptions, start_local_ray  # noqa: E402
from evalsuite.run.shards import missing_shards, run_shard  # noqa: E402

VARIANTS = ["float32", "qint8"]  # qint8: dynamic int8, activations scaled per onnxruntime call
POLICY = BatchPolicy(batch_size=4)


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fault-injection marker: while it exists no actor dies; remove it and the next shard kills its actor once."""
    path = tmp_path_factory.mktemp("fault") / "killed"
    path.touch()
    return path


@pytest.fixture(scope="module")
def ray_session(marker: Path):  # noqa: ANN201
    """One local Ray cluster for the in-process tests of this module (the command-line tests start none)."""
    os.environ[FAULT_ENV] = str(marker)  # the local cluster's processes (and so its actors) inherit it at start
    try:
        start_local_ray(2)
    finally:
        del os.environ[FAULT_ENV]
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_beir(root / "scifact", n_docs=150, n_queries=20, crlf=True)
    return root


def sweep(tiny_model: Path, data: Path, where: Path, executor: RayExecutor | None = None, force: bool = False,
          said: list[str] | None = None) -> SweepReport:
    cfg = SweepConfig(variants=expand(VARIANTS), model=str(tiny_model), tasks=["scifact"], data_dir=data,
                      cache_dir=where / "cache", results_dir=where / "results", policy=POLICY, force=force, threads=1,
                      compositions=2)
    return run_sweep(cfg, say=(said.append if said is not None else None), executor=executor)


def shards(where: Path) -> dict[str, bytes]:
    """Every embedding shard of a run's cache, by path below embeddings/ (the key names its texts and batches)."""
    folder = where / "cache" / "embeddings"
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.npy"))}


@pytest.fixture(scope="module")
def local(tiny_model: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[SweepReport, Path]:
    where = tmp_path_factory.mktemp("local")
    return sweep(tiny_model, data, where), where


@pytest.fixture(scope="module")
def on_ray(tiny_model: Path, data: Path, tmp_path_factory: pytest.TempPathFactory,
           ray_session: None) -> tuple[SweepReport, Path, list[str]]:
    where, said = tmp_path_factory.mktemp("ray"), []
    return sweep(tiny_model, data, where, RayExecutor(RayOptions(actors=2)), said=said), where, said


def assert_same_results(a: SweepReport, b: SweepReport) -> None:
    assert a.results.keys() == b.results.keys() == {"SciFact"}
    assert set(a.results["SciFact"]) == set(b.results["SciFact"]) == set(VARIANTS)
    for variant, ra in a.results["SciFact"].items():
        rb = b.results["SciFact"][variant]
        assert rb.onnx_sha256 == ra.onnx_sha256
        assert rb.per_query_ndcg_at_10 == ra.per_query_ndcg_at_10, variant  # exact, query by query
        assert rb.ndcg_at_10 == ra.ndcg_at_10
        for da, db in zip(a.draws("SciFact", variant), b.draws("SciFact", variant), strict=True):  # every composition
            assert (da.composition, da.per_query_ndcg_at_10) == (db.composition, db.per_query_ndcg_at_10)


def test_ray_results_equal_local_results_per_query(local, on_ray) -> None:  # noqa: ANN001
    assert_same_results(local[0], on_ray[0])
    expected = sorted([("SciFact", v, 0) for v in VARIANTS] + [("SciFact", "qint8", 1)])  # qint8 depends on its batch
    assert sorted(on_ray[0].computed) == sorted(local[0].computed) == expected


def test_ray_fills_the_same_cache_shards_with_the_same_bytes(local, on_ray) -> None:  # noqa: ANN001
    local_shards, ray_shards = shards(local[1]), shards(on_ray[1])
    # 150 documents in batches of 4 make 38 batches, 3 shards of 16; 20 queries one per call make 2 shards. qint8's
    # second composition batches the documents anew (3 more shards); its queries, one per call, are the same.
    assert len(local_shards) == len(VARIANTS) * (3 + 2) + 3
    assert ray_shards == local_shards


def test_the_driver_encoded_nothing_itself(on_ray) -> None:  # noqa: ANN001
    report, _, said = on_ray
    for r in report.results["SciFact"].values():
        assert r.timings["texts_from_cache"] == r.timings["texts_encoded"] > 0
        assert r.timings["inference_s"] == 0
    assert said.count("Ray: 2 actors x 1 onnxruntime thread on 1 node") == 1
    assert [m for m in said if "Ray actors" in m] == [
        *(f"encoding {v} on SciFact on 2 Ray actors: 5 shards, 170 texts" for v in VARIANTS),
        "encoding qint8 on SciFact (composition 1) on 2 Ray actors: 3 shards, 150 texts"]


def test_int8_shards_depend_on_batch_boundaries(tiny_model: Path, tiny_source, data: Path, on_ray) -> None:  # noqa: ANN001
    """Why the executor keeps the encoder's batches: the same qint8 texts in other batches give other vectors."""
    from evalsuite.build import build_variant
    from evalsuite.data.loading import load_task
    from evalsuite.data.tasks import find_task
    from evalsuite.encode.session import make_session
    from evalsuite.variants import VariantSpec

    cache = on_ray[1] / "cache"
    art = build_variant(tiny_source, VariantSpec.parse("qint8"), cache)
    empty = cache.parent / "empty-cache"
    jobs = missing_shards(art, tiny_source, POLICY, empty, load_task(find_task("scifact"), data))
    assert len(jobs) == 5 and all(len(ids) <= 4 for j in jobs for ids, _ in j.batches)
    session = make_session(art.path, 1)
    store = EmbeddingCache(cache, art.sha256)
    for job in jobs:
        assert np.array_equal(run_shard(session, job.batches, "mean", True), store.get(job.key, job.rows))
    one_by_one = [run_shard(session, [(ids[i:i + 1], mask[i:i + 1])], "mean", True)
                  for job in jobs for ids, mask in job.batches for i in range(len(ids))]
    stored = np.concatenate([store.get(job.key, job.rows) for job in jobs])
    assert np.abs(np.concatenate(one_by_one) - stored).max() > 1e-6


def test_rerun_reuses_every_cached_embedding(tiny_model: Path, data: Path, on_ray, local) -> None:  # noqa: ANN001
    _, where, _ = on_ray
    before = {p: p.stat().st_mtime_ns for p in (where / "cache" / "embeddings").rglob("*.npy")}
    said: list[str] = []
    again = sweep(tiny_model, data, where, RayExecutor(RayOptions(actors=2)), force=True, said=said)
    assert not [m for m in said if "Ray" in m]  # no shard was sent anywhere (Ray was not even needed)
    assert {p: p.stat().st_mtime_ns for p in (where / "cache" / "embeddings").rglob("*.npy")} == before
    assert_same_results(local[0], again)
    stored = sweep(tiny_model, data, where, RayExecutor(RayOptions(actors=2)))
    assert stored.computed == []


def test_a_killed_worker_is_restarted_and_results_are_identical(tiny_model: Path, data: Path, local, marker: Path,  # noqa: ANN001
                                                                ray_session: None, tmp_path: Path) -> None:
    marker.unlink()  # armed: the first shard any actor receives kills that actor's process
    report = sweep(tiny_model, data, tmp_path, RayExecutor(RayOptions(actors=2)))
    assert marker.exists()  # an actor did die
    assert_same_results(local[0], report)
    assert shards(tmp_path) == shards(local[1])


def test_killed_driver_resumes_from_the_cache(tiny_model: Path, data: Path, local, ray_session: None,  # noqa: ANN001
                                              tmp_path: Path) -> None:
    """A driver killed after some shards were stored: the next run sends only the others."""
    sweep(tiny_model, data, tmp_path, RayExecutor(RayOptions(actors=2)))
    everything = shards(tmp_path)
    lost = sorted((tmp_path / "cache" / "embeddings").rglob("*.npy"))[::3]  # as if the driver died before storing these
    for path in lost:
        path.unlink()
    shutil.rmtree(tmp_path / "results")
    said: list[str] = []
    report = sweep(tiny_model, data, tmp_path, RayExecutor(RayOptions(actors=2)), said=said)
    sent = sum(int(m.split(": ")[1].split(" shards")[0]) for m in said if "Ray actors" in m)
    assert sent == len(lost)
    assert shards(tmp_path) == everything
    assert_same_results(local[0], report)


def test_tune_runs_its_full_evaluations_on_ray(tiny_model: Path, data: Path, ray_session: None, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """tune's full evaluations are encoded by the actors, with the local verdicts: Float32, and the compositions of the
    start candidate that its progressive evaluation (here, on this machine: composition 0) did not encode."""
    from evalsuite.analysis.gate import GateConfig
    from evalsuite.tune.outcome import tune
    from evalsuite.tune.search import TuneConfig

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EVALSUITE_THREADS", "1")  # tune's local encoder: one thread, as each actor has
    outcomes, said = {}, []
    for name, executor in (("local", None), ("ray", RayExecutor(RayOptions(actors=2)))):
        cfg = TuneConfig(starts=("qint8",), model=str(tiny_model), tasks=["scifact"], data_dir=data,
                         gate=GateConfig(max_drop=0.5, speed_length=16, compositions=2), bench_repeats=1,
                         cache_dir=tmp_path / name / "cache", results_dir=tmp_path / name / "results")
        outcomes[name] = tune(cfg, say=said.append if name == "ray" else None, executor=executor)
    # default policy: 150 documents in batches of 32 fill 1 shard, 20 queries one per call 2
    assert [m for m in said if "Ray actors" in m] == ["encoding float32 on SciFact on 2 Ray actors: 3 shards, 170 texts",
                                                      "encoding qint8 on SciFact (composition 1) on 2 Ray actors: 1 shards, 150 texts"]
    local, on_ray = (outcomes[n].found.builds["qint8"].verdict for n in ("local", "ray"))
    assert local is not None and on_ray is not None and on_ray.outcome == local.outcome == "pass"
    assert [c.comparison for c in on_ray.checks] == [c.comparison for c in local.checks]
    stored = {n: sorted((tmp_path / n / "results").rglob("SciFact/*.json")) for n in outcomes}
    assert [p.name for p in stored["ray"]] == [p.name for p in stored["local"]] == ["float32.json", "qint8.c1.json", "qint8.json"]
    for a, b in zip(stored["local"], stored["ray"], strict=True):
        assert json.loads(a.read_text())["per_query_ndcg_at_10"] == json.loads(b.read_text())["per_query_ndcg_at_10"]


# --- the command line ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--executor", "spark"], "--executor must be one of local, ray, not 'spark'"),
    (["--address", "127.0.0.1:6379"], "--address needs --executor ray"),
    (["--actors", "2"], "--actors needs --executor ray"),
    (["--executor", "ray", "--actors", "0"], "--actors must be a whole number >= 1, not 0"),
    (["--executor", "ray", "--threads-per-actor", "0"], "--threads-per-actor must be a whole number >= 1, not 0"),
])
def test_bad_executor_options(args: list[str], message: str, tiny_model: Path, data: Path, tmp_path: Path) -> None:
    proc = invoke("run", "--model", tiny_model, "--tasks", "scifact", "--data-dir", data, "--cache-dir", tmp_path / "c",
                  "--results-dir", tmp_path / "r", *args)
    assert one_problem(proc).endswith(message)
    assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists()


def test_gate_executor_needs_run(tmp_path: Path) -> None:
    proc = invoke("gate", "--variant", "qint8", "--results-dir", tmp_path, "--executor", "ray")
    assert one_problem(proc).endswith("--executor ray needs --run (it says where missing results are computed)")


def test_without_ray_installed_the_error_is_one_line(tiny_model: Path, data: Path, tmp_path: Path) -> None:
    hidden = tmp_path / "no-ray" / "ray"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("No module named \'ray\'")\n')
    env = environment(PYTHONPATH=os.pathsep.join([str(hidden.parent), os.environ.get("PYTHONPATH", "")]))
    proc = run("run", "--model", tiny_model, "--tasks", "scifact", "--data-dir", data, "--cache-dir", tmp_path / "c",
               "--results-dir", tmp_path / "r", "--executor", "ray", env=env)
    assert one_problem(proc).endswith("""--executor ray needs Ray (No module named 'ray'): pip install "evalsuite[ray]\"""")


def test_an_address_where_no_cluster_listens_is_one_line(tiny_model: Path, data: Path, tmp_path: Path) -> None:
    import socket

    # A port this test holds (bound, never listening) while the command runs: a connection is refused, and no other
    # process (another test's Ray cluster) can take the port in between.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        proc = invoke("run", "--model", tiny_model, "--tasks", "scifact", "--data-dir", data, "--cache-dir", tmp_path / "c",
                      "--results-dir", tmp_path / "r", "--executor", "ray", "--address", f"127.0.0.1:{port}")
    assert one_problem(proc).startswith(f"error: --address 127.0.0.1:{port}: no Ray cluster answers there (Connection refused)")
    assert not (tmp_path / "r").exists()


def test_readme_ray_against_local_is_the_committed_benchmark() -> None:
    """README's real-model comparison, line for line, from results/bench/ray_vs_local.json."""
    section = readme_section("### Ray against local on one machine")
    doc = json.loads((REPO / "results" / "bench" / "ray_vs_local.json").read_text())
    for r in doc["rows"]:
        line = f"{r['task']:<10} {r['variant']:<16} {r['local_ndcg_at_10']:>14.6f} {r['ray_ndcg_at_10']:>12.6f} {r['queries_equal']:>6}/{r['queries']}"
        assert line in section and r["same"]
    wall = doc["wall_s"]
    assert (f"wall time: local {wall['local']:.1f} s, ray ({doc['actors']} actors x {doc['threads_per_actor']} thread) "
            f"{wall['ray']:.1f} s, local / ray = {wall['local'] / wall['ray']:.2f}x") in section
    assert doc["same_shards"] and doc["variants"] == ["float32", "float16", "quint8-pc-7bit", "qint8-pc-7bit", "qint8-pc", "qint8-7bit", "qint8"]
