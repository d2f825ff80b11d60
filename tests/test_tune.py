"""``evalsuite tune`` end to end on the tiny random BERT and a synthetic BEIR folder (no timings asserted)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import make_beir


def _per_query(results: Path, variant: str) -> dict[str, float]:
    [path] = [p for p in results.glob(f"*/*/{variant}.json")]
    return json.loads(path.read_text())["per_query_ndcg_at_10"]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, shared_cache: Path) -> dict:
    """One tune run in this process: start qint8-7bit, gate max drop 0 (only a build equal to or better than Float32
    passes), bench at 16 tokens (the tiny model reads at most 64) through the gate's documented speed point."""
    from evalsuite.analysis.gate import GateConfig
    from evalsuite.tune.outcome import tune
    from evalsuite.tune.search import TuneConfig

    work = tmp_path_factory.mktemp("tune")
    make_beir(work / "data" / "scifact", n_docs=80, n_queries=16, seed=3)
    results = work / "results"
    cfg = TuneConfig(starts=("qint8-7bit",), model=str(tiny_model), tasks=[str(work / "data" / "scifact")],
                     gate=GateConfig(max_drop=0.0, speed_length=16), max_nodes=9, bench_repeats=2, sample_queries=3,
                     sample_documents=5, cache_dir=shared_cache, results_dir=results)
    said: list[str] = []
    cwd = Path.cwd()
    os.chdir(work)  # configs/mixed/ is written to and read from the working directory
    try:
        doc = tune(cfg).to_dict()
        again = tune(cfg, say=said.append)  # a re-run resumes from the caches: nothing built or evaluated again
    finally:
        os.chdir(cwd)
    return {"doc": doc, "work": work, "results": results, "again": again, "said": said}


def test_tune_falls_back_nodes_until_the_gate_passes(tuned: dict) -> None:
    doc, results = tuned["doc"], tuned["results"]
    assert doc["schema"] == "evalsuite.tune/1" and doc["starts"] == ["qint8-7bit"]
    base = next(b for b in doc["builds"] if b["variant"] == "qint8-7bit")
    # independently: the base loses NDCG@10 on the per-query results it stored, so a max drop of 0 fails it
    f32, q = _per_query(results, "float32"), _per_query(results, "qint8-7bit")
    base_delta = float(np.mean([q[k] - f32[k] for k in f32]))
    assert base_delta < 0 and base["gate"]["outcome"] == "fail"
    assert base["gate"]["checks"][0]["delta"] == pytest.approx(base_delta, abs=1e-12)
    rec = doc["recommended"]
    assert rec is not None and rec.startswith("qint8-7bit-x")
    build = next(b for b in doc["builds"] if b["variant"] == rec)
    assert build["gate"]["outcome"] == "pass"
    mixed = _per_query(results, rec)
    assert float(np.mean([mixed[k] - f32[k] for k in f32])) >= 0
    # the config file holds the top of the stored ranking, in order, and names the model and base
    cfg = yaml.safe_load((tuned["work"] / build["config_file"]).read_text())
    ranked = [n["node"] for n in doc["sensitivity"]["qint8-7bit"]["nodes"]]
    assert cfg["nodes"] == ranked[:len(cfg["nodes"])] == build["float_nodes"]
    assert cfg["base"] == "qint8-7bit" and len(cfg["weights_sha256"]) == 64
    # a build the screen fails is not evaluated; one it does not fail is, and k grows by one node each time
    screened = [b for b in doc["builds"] if b["screen"] is not None]
    assert all((b["gate"] is None) == (b["screen"]["verdict"] == "fail") for b in screened)
    assert [len(b["float_nodes"]) for b in screened] == list(range(1, len(screened) + 1))
    # the front and the points agree with their own definition
    points = {p["variant"]: p for p in doc["points"]}
    assert set(points) == {"float32", "qint8-7bit", rec} and points["float32"]["speedup"] == 1.0
    for name in doc["front"]:
        p = points[name]
        assert not any(q["worst_delta"] >= p["worst_delta"] and q["speedup"] >= p["speedup"] and q["size_bytes"] <= p["size_bytes"]
                       and (q["worst_delta"], q["speedup"], q["size_bytes"]) != (p["worst_delta"], p["speedup"], p["size_bytes"])
                       for q in points.values())
    # the bench file beside tune.json is the last run's (the resumed one), and its speedups are the ones in its points
    last = {p["variant"]: p for p in tuned["again"].to_dict()["points"]}
    bench = json.loads((results / next(results.iterdir()).name / "tune" / "bench.json").read_text())
    assert bench["schema"] == "evalsuite.bench/1" and bench["config"]["lengths"] == [16]
    assert {r["variant"] for r in bench["results"]} == {"float32", "qint8-7bit", rec}
    assert last[rec]["speedup"] == pytest.approx(next(r["speedup"] for r in bench["results"] if r["variant"] == rec))


def test_the_winner_is_a_variant_anyone_can_use(tuned: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.analysis.gate import GateConfig, gate

    rec = tuned["doc"]["recommended"]
    monkeypatch.chdir(tuned["work"])
    verdict = gate(rec, GateConfig(max_drop=0.0), tuned["results"])
    assert verdict.outcome == "pass" and verdict.reason.startswith(f"PASS: {rec}")
    assert tuned["again"].recommended.variant == rec
    assert not [m for m in tuned["said"] if m.startswith(("evaluating", "building", "exporting"))]


@pytest.mark.parametrize(("args", "message"), [
    (("sensitivity", "--variant", "float16"), "--variant float16: sensitivity ranks the nodes of a dynamic int8 variant"),
    (("tune", "--start", ""), "--start is empty"),
    (("tune", "--max-nodes", "0"), "--max-nodes must be a whole number >= 1, not 0"),
    (("tune", "--rule", "median"), "--rule must be one of point, ci, not 'median'"),
    (("tune", "--start", "qint9"), "unknown dtype 'qint9'"),
])
def test_bad_options_are_one_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    from tests import clirun

    line = clirun.one_problem(clirun.run(*args, cwd=tmp_path))
    assert message in line


@pytest.mark.parametrize(("remaining", "delta", "verdict"), [(0.02, -0.004, "pass"), (0.05, -0.010, "uncertain"), (0.1, -0.020, "fail")])
def test_scaled_screen_by_hand(remaining: float, delta: float, verdict: str) -> None:
    from evalsuite.tune.screening import ScaledScreen

    result = ScaledScreen({"A": -0.04, "B": 0.01}, total_loss=0.2, max_drop=0.01)("v", remaining)
    a, b = result.tasks
    assert a.delta == pytest.approx(delta) and a.verdict == verdict
    assert b.delta == 0 and b.verdict == "pass"  # a gain is never predicted to become a loss
    assert result.verdict == verdict


def test_front_and_recommendation_by_hand() -> None:
    from evalsuite.tune.pareto import Point, front, recommend

    fast_bad = Point("a", "a", (), "fail", -0.05, 2.0, 20)
    good = Point("b", "a", ("n1",), "pass", -0.005, 1.8, 22)
    worse_than_good = Point("c", "a", ("n1", "n2"), "pass", -0.006, 1.7, 24)  # slower, bigger, worse: dominated
    exact = Point("float32", "float32", (), "pass", 0.0, 1.0, 90)
    points = [fast_bad, good, worse_than_good, exact]
    assert [p.variant for p in front(points)] == ["a", "b", "float32"]
    assert recommend(points) is good
    assert recommend([fast_bad]) is None
