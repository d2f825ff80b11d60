"""``evalsuite tune`` end to end on the tiny random BERT and a synthetic BEIR folder (no timings asserted)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import make_beir
from readme_text import REPO, md_rows, readme_section


def _per_query(results: Path, variant: str) -> dict[str, float]:
    [path] = [p for p in results.glob(f"*/*/{variant}.json")]
    return json.loads(path.read_text())["per_query_ndcg_at_10"]


def _stored_variants(results: Path) -> set[str]:
    """Variants with a full evaluation in the result store (what ``run`` wrote), whatever tune's document says."""
    from evalsuite.results.store import ResultStore

    return {r.variant for r in ResultStore(results).all()}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, shared_cache: Path) -> dict:
    """Tune twice in this process with the real drift screen: start qint8-7bit, gate max drop 0 (only a build equal to or
    better than Float32 passes), bench at 16 tokens (the tiny model reads at most 64) through the gate's speed point.
    Between the runs qint8-7bit is evaluated in full with ``run``, so the second run gates the start on stored results."""
    from evalsuite.analysis.gate import GateConfig
    from evalsuite.run import SweepConfig, run_sweep
    from evalsuite.screen import ScreenSample
    from evalsuite.tune.outcome import tune
    from evalsuite.tune.search import TuneConfig
    from evalsuite.variants import VariantSpec

    work = tmp_path_factory.mktemp("tune")
    data = work / "data" / "scifact"
    make_beir(data, n_docs=80, n_queries=16, seed=3)
    results = work / "results"
    cfg = TuneConfig(starts=("qint8-7bit",), model=str(tiny_model), tasks=[str(data)],
                     gate=GateConfig(max_drop=0.0, speed_length=16), max_nodes=9, bench_repeats=2, sample_queries=3,
                     sample_documents=5, screen_sample=ScreenSample(queries=16, documents=24, draws=8),
                     cache_dir=shared_cache, results_dir=results)
    said: list[str] = []
    cwd = Path.cwd()
    os.chdir(work)  # configs/mixed/ is written to and read from the working directory
    try:
        first = tune(cfg)
        doc = first.to_dict()
        stored_first = _stored_variants(results)
        run_sweep(SweepConfig(variants=[VariantSpec.parse("qint8-7bit")], model=str(tiny_model), tasks=[str(data)],
                              cache_dir=shared_cache, results_dir=results))
        again = tune(cfg, say=said.append)  # resumes from the caches: nothing but the stored start is gated anew
    finally:
        os.chdir(cwd)
    return {"doc": doc, "lines": first.lines(), "stored_first": stored_first, "work": work, "results": results, "again": again, "said": said}


def test_a_screen_fail_skips_the_full_evaluation(tuned: dict) -> None:
    doc = tuned["doc"]
    builds = {b["variant"]: b for b in doc["builds"]}
    assert all(b["screen"] is not None for b in builds.values())  # every build is screened, the start too
    failed = {n for n, b in builds.items() if b["screen"]["outcome"] == "fail"}
    evaluated = {n for n, b in builds.items() if b["gate"] is not None}
    # the result store holds Float32 and exactly the builds the screen did not fail: a screen fail cost no evaluation
    assert failed and tuned["stored_first"] == {"float32"} | evaluated == {"float32"} | (set(builds) - failed)
    # the start had no stored result and the screen failed it, so it was not evaluated yet nodes were fallen back
    assert "qint8-7bit" in failed and builds["qint8-7bit"]["gate"] is None and doc["sensitivity"]["qint8-7bit"]["nodes"]
    [task] = builds["qint8-7bit"]["screen"]["tasks"]
    assert [line for line in tuned["lines"] if line.startswith("screened out, not evaluated: FAIL")
            and f"qint8-7bit {task['task']} {task['predicted_delta']:+.4f}" in line]


def test_a_stored_start_is_judged_by_the_gate(tuned: dict) -> None:
    again = tuned["again"].to_dict()
    base = next(b for b in again["builds"] if b["variant"] == "qint8-7bit")
    f32, q = _per_query(tuned["results"], "float32"), _per_query(tuned["results"], "qint8-7bit")
    base_delta = float(np.mean([q[k] - f32[k] for k in f32]))
    # independently: the base loses NDCG@10 on the per-query results it stored, so a max drop of 0 fails it
    assert base_delta < 0 and base["gate"]["outcome"] == "fail"
    assert base["gate"]["checks"][0]["delta"] == pytest.approx(base_delta, abs=1e-12)
    assert base["screen"]["outcome"] == "fail"  # the screen's fail, confirmed by the full result
    assert again["recommended"] == tuned["doc"]["recommended"]


def test_under_the_ci_rule_a_screen_fail_skips_nothing(tuned: dict, tiny_model: Path, shared_cache: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The screen predicts the point rule; the ci rule fails only an established loss, so a screen fail decides nothing."""
    from evalsuite.analysis.gate import GateConfig
    from evalsuite.screen import ScreenSample
    from evalsuite.tune.outcome import tune
    from evalsuite.tune.search import TuneConfig

    monkeypatch.chdir(tuned["work"])
    results = tmp_path / "results"
    cfg = TuneConfig(starts=("qint8-7bit",), model=str(tiny_model), tasks=[str(tuned["work"] / "data" / "scifact")],
                     gate=GateConfig(max_drop=0.0, rule="ci", speed_length=16), max_nodes=1, bench_repeats=2, sample_queries=3,
                     sample_documents=5, screen_sample=ScreenSample(queries=16, documents=24, draws=8),
                     cache_dir=shared_cache, results_dir=results)
    doc = tune(cfg).to_dict()
    base = next(b for b in doc["builds"] if b["variant"] == "qint8-7bit")
    assert base["screen"]["outcome"] == "fail" and base["gate"] is not None  # the same screen as in `tuned`, evaluated anyway
    assert _stored_variants(results) == {"float32"} | {b["variant"] for b in doc["builds"]}
    assert any("per-task point rule" in n for n in doc["notes"])


def test_tune_falls_back_nodes_until_the_gate_passes(tuned: dict) -> None:
    doc, results = tuned["doc"], tuned["results"]
    assert doc["schema"] == "evalsuite.tune/1" and doc["starts"] == ["qint8-7bit"]
    f32 = _per_query(results, "float32")
    rec = doc["recommended"]
    assert rec is not None and rec.startswith("qint8-7bit-x")
    build = next(b for b in doc["builds"] if b["variant"] == rec)
    assert build["gate"]["outcome"] == "pass"
    mixed = _per_query(results, rec)
    assert float(np.mean([mixed[k] - f32[k] for k in f32])) >= 0
    # the config file holds the build's node sets and names the model and base
    cfg = yaml.safe_load((tuned["work"] / build["config_file"]).read_text())
    assert cfg["nodes"] == build["float_nodes"] and cfg.get("full_range_nodes", []) == build["full_range_nodes"]
    assert cfg["base"] == "qint8-7bit" and len(cfg["weights_sha256"]) == 64
    # each step moves one node one step up (7-bit -> 8-bit weights -> float; a node without weights straight to float):
    # the node with the largest loss at its current precision, by the two stored rankings (7 and 8 bits)
    steps = [b for b in doc["builds"] if b["base"] != b["variant"]]
    ranks = doc["sensitivity"]
    loss7, loss8 = ({n["node"]: n["loss"] for n in ranks[v]["nodes"]} for v in ("qint8-7bit", "qint8"))
    weighted = {n["node"] for n in ranks["qint8-7bit"]["nodes"] if n["op_type"] == "MatMul"}

    def level(b: dict, node: str) -> int:
        return 0 if node in b["float_nodes"] else 8 if node in b["full_range_nodes"] else 7

    before: dict = {"float_nodes": [], "full_range_nodes": []}
    for b in steps:
        [moved] = [n for n in loss7 if level(b, n) != level(before, n)]
        current = {n: loss7[n] if level(before, n) == 7 else loss8[n] for n in loss7 if level(before, n)}
        assert current[moved] == max(current.values())
        assert level(b, moved) == (8 if level(before, moved) == 7 and moved in weighted else 0)
        before = b
    assert set(ranks) == {"qint8-7bit", "qint8"}  # a 7-bit start is ranked at 8 bits too (test_the_climb_by_hand: the climb)
    # a step is evaluated exactly when its screen does not fail, and the loop stops at the first gate pass
    assert steps[-1]["variant"] == rec
    assert all((b["gate"] is None) == (b["screen"]["outcome"] == "fail") for b in steps)
    # each step carries the screen's per-task prediction and interval, judged against the gate's max drop (0 here)
    for b in steps:
        [task] = b["screen"]["tasks"]
        low, high = task["predicted_ci"]
        assert low <= task["predicted_delta"] <= high and task["limit"] == 0.0
        assert task["outcome"] == ("pass" if low >= 0 else "fail" if high < 0 else "uncertain") == b["screen"]["outcome"]
    # the front and the points agree with their own definition; the start is timed (not a point) for the kept share
    points = {p["variant"]: p for p in doc["points"]}
    assert set(points) == {"float32", rec} and points["float32"]["speedup"] == 1.0
    for name in doc["front"]:
        p = points[name]
        assert not any(q["worst_delta"] >= p["worst_delta"] and q["speedup"] >= p["speedup"] and q["size_bytes"] <= p["size_bytes"]
                       and (q["worst_delta"], q["speedup"], q["size_bytes"]) != (p["worst_delta"], p["speedup"], p["size_bytes"])
                       for q in points.values())
    # the bench file beside tune.json is the last run's (the resumed one), and its speedups are the ones in its document
    last = {b["variant"]: b for b in tuned["again"].to_dict()["builds"]}
    bench = json.loads((results / next(results.iterdir()).name / "tune" / "bench.json").read_text())
    assert bench["schema"] == "evalsuite.bench/1" and bench["config"]["lengths"] == [16]
    speed = {r["variant"]: r["speedup"] for r in bench["results"]}
    assert set(speed) == {"float32", "qint8-7bit", rec}
    assert last[rec]["speedup"] == pytest.approx(speed[rec])
    assert last[rec]["speedup_kept"] == pytest.approx(speed[rec] / speed["qint8-7bit"])


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
    (("tune", "--executor", "spark"), "--executor must be one of local, ray, not 'spark'"),
    (("tune", "--actors", "2"), "--actors needs --executor ray"),
])
def test_bad_options_are_one_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    import clirun

    line = clirun.one_problem(clirun.invoke(*args, cwd=tmp_path))
    assert message in line


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


def test_the_climb_by_hand() -> None:
    """A node with weights goes 7-bit -> 8-bit -> float, one without straight to float; the largest current loss moves
    first; the climb stops before a step would exceed the float budget."""
    from evalsuite.tune.ladder import climb, to_float

    loss7 = {"ffn0": 0.09, "att": 0.05, "ffn2": 0.03, "q": 0.002}
    loss8 = {"ffn0": 0.04, "att": 0.05, "ffn2": 0.001, "q": 0.0005}
    steps = [(s.float_nodes, s.full_range, s.moved) for s in climb(loss7, loss8, {"ffn0", "ffn2", "q"}, max_float=3)]
    assert steps == [
        ((), ("ffn0",), "ffn0"),                              # 0.09 at 7 bits
        (("att",), ("ffn0",), "att"),                          # 0.05 > ffn0's 0.04 at 8 bits; no weights: float
        (("att", "ffn0"), (), "ffn0"),                         # 0.04 at 8 bits
        (("att", "ffn0"), ("ffn2",), "ffn2"),                  # 0.03
        (("att", "ffn0"), ("ffn2", "q"), "q"),                 # 0.002 > ffn2's 0.001 at 8 bits
        (("att", "ffn0", "ffn2"), ("q",), "ffn2"),             # 0.001; then q to float would be a fourth float node
    ]
    assert [s.float_nodes for s in to_float(["a", "b", "c"], 2)] == [("a",), ("a", "b")]


def test_readme_tune_tables_are_the_committed_run() -> None:
    """README's tune table from results/tune/.../tune.json and its speed table from bench_quiet.json, cell for cell."""
    rows = [[c.strip("*") for c in r] for r in md_rows(readme_section("## Tune: the fastest build that passes the gate"))
            if r[0].lstrip("*").startswith("qint8")]
    folder = REPO / "results" / "tune" / "sentence-transformers__all-MiniLM-L6-v2" / "tune"
    doc = json.loads((folder / "tune.json").read_text())
    expected = []
    for b in doc["builds"]:
        cells = [b["variant"], str(len(b["float_nodes"])), str(len(b["full_range_nodes"])), b["screen"]["outcome"]]
        if b["gate"] is None:
            expected.append(cells + ["—"] * 4)
            continue
        checks = {c["scope"]: c for c in b["gate"]["checks"]}
        worst = min(checks[t]["delta"] for t in ("SciFact", "NFCorpus"))
        expected.append(cells + [b["gate"]["outcome"], f"{worst:+.4f}", f"{checks['SciFact']['ndcg_at_10']:.4f}",
                                 f"{checks['NFCorpus']['ndcg_at_10']:.4f}"])
    tune_rows = [r for r in rows if len(r) == 8]
    assert sorted(tune_rows) == sorted(expected)
    bench = {r["variant"]: r["speedup"] for r in json.loads((folder / "bench_quiet.json").read_text())["results"]}
    speed_rows = {r[0].split(" ")[0].strip("*"): [c.strip("*") for c in r[1:]] for r in rows if len(r) == 3}
    base = {"qint8-xf5c28e354": "qint8", "qint8-7bit-xfcab02f2e": "qint8-7bit", "qint8-7bit-xfbdbb3ce4": "qint8-7bit"}
    assert set(speed_rows) == set(bench) - {"float32"}
    for name, (speed, kept) in speed_rows.items():
        assert speed == f"{bench[name]:.2f}x"
        assert kept == (f"{100 * bench[name] / bench[base[name]]:.0f}%" if name in base else "")
