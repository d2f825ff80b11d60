"""``evalsuite tune`` end to end on the tiny random BERT and a synthetic BEIR folder (no timings asserted).

The ladder's mechanics, the progressive evaluation's looks and the reuse of stored full results; a fail decided early
(which the tiny model never gives) is in tests/test_promises_tune.py."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import yaml

from conftest import make_beir
from promise_world import check_looks, small_shards
from readme_text import REPO, md_rows, readme_section

COMPOSITIONS = 2  # batch compositions a batch-dependent build is evaluated and judged under here (default 5)


def _per_query(results: Path, variant: str) -> dict[str, float]:
    """Per query, the mean NDCG@10 over the variant's stored batch compositions (``<variant>.json`` and
    ``<variant>.c<k>.json``: what the gate judges), read as plain JSON."""
    docs = [json.loads(p.read_text()) for p in results.glob("*/*/*.json")
            if re.fullmatch(re.escape(variant) + r"(\.c\d+)?\.json", p.name)]
    assert docs and all(d["variant"] == variant for d in docs)
    return {q: math.fsum(d["per_query_ndcg_at_10"][q] for d in docs) / len(docs) for q in docs[0]["per_query_ndcg_at_10"]}


def _result_files(results: Path, variant: str) -> list[str]:
    return sorted(p.name for p in results.glob("*/*/*.json") if re.fullmatch(re.escape(variant) + r"(\.c\d+)?\.json", p.name))


def _stored_variants(results: Path) -> set[str]:
    """Variants with a full evaluation in the result store (what ``run`` wrote), whatever tune's document says."""
    from evalsuite.results.store import ResultStore

    return {r.variant for r in ResultStore(results).all()}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, shared_cache: Path) -> dict:
    """Tune twice in this process: start qint8-7bit, gate max drop 0 (only a build equal to or better than Float32
    passes) over 2 batch compositions, bench at 16 tokens (the tiny model reads at most 64) through the gate's speed
    point. One batch per embedding-cache shard (``small_shards``): the 400 documents make 13 shards of at most 32, so
    the first ends below the rule's min coverage of 10% and the later ones are looks when they cross a step of 5%. The
    first run evaluates every build progressively, then in full; the second finds every full result stored and gates
    on them."""
    from evalsuite.analysis.gate import GateConfig
    from evalsuite.screen.stopping import StoppingRule
    from evalsuite.tune.outcome import tune
    from evalsuite.tune.search import TuneConfig

    work = tmp_path_factory.mktemp("tune")
    data = work / "data" / "scifact"
    make_beir(data, n_docs=400, n_queries=16, seed=3)
    results = work / "results"
    cfg = TuneConfig(starts=("qint8-7bit",), model=str(tiny_model), tasks=[str(data)],
                     gate=GateConfig(max_drop=0.0, speed_length=16, compositions=COMPOSITIONS), max_nodes=9, bench_repeats=2,
                     sample_queries=3, sample_documents=5, stopping=StoppingRule(draws=8),
                     cache_dir=shared_cache, results_dir=results)
    said_first: list[str] = []
    said: list[str] = []
    mp = pytest.MonkeyPatch()
    small_shards(mp)
    mp.chdir(work)  # configs/mixed/ is written to and read from the working directory
    try:
        first = tune(cfg, say=said_first.append)
        doc = first.to_dict()
        stored_first = _stored_variants(results)
        again = tune(cfg, say=said.append)  # resumes from the caches: every build is gated on its stored results
    finally:
        mp.undo()
    return {"doc": doc, "lines": first.lines(), "stored_first": stored_first, "work": work, "results": results, "again": again,
            "said_first": said_first, "said": said, "n_docs": 400}


def test_a_build_is_evaluated_in_full_exactly_when_its_progressive_evaluation_does_not_fail(tuned: dict) -> None:
    """Every build of the first run was evaluated progressively (nothing was stored), and the result store holds Float32
    and exactly the builds whose progressive evaluation did not decide fail, each under every batch composition.
    (tests/test_promises_tune.py: a build whose fail is certain early is not evaluated in full.)"""
    doc = tuned["doc"]
    builds = {b["variant"]: b for b in doc["builds"]}
    assert all(b["progressive"] is not None for b in builds.values())
    failed = {n for n, b in builds.items() if b["progressive"]["outcome"] == "fail"}
    evaluated = {n for n, b in builds.items() if b["gate"] is not None}
    assert evaluated == set(builds) - failed and tuned["stored_first"] == {"float32"} | evaluated
    assert "qint8-7bit" in evaluated  # a loss of about 0.001 NDCG@10 is no certain fail: evaluated, failed by the gate
    for name in evaluated:  # dynamic int8 builds depend on their batch: one result file per composition
        assert _result_files(tuned["results"], name) == [f"{name}.c1.json", f"{name}.json"]
    assert _result_files(tuned["results"], "float32") == ["float32.json"]
    # a progressive evaluation says what it predicts at each look, a full evaluation names each composition
    for name in builds:
        looks = builds[name]["progressive"]["looks"]
        lines = [m for m in tuned["said_first"] if m.startswith(f"{name} ") and "%: predicted delta " in m]
        assert len(lines) == len(looks) and all(f"{100 * lk['coverage']:.0f}%: predicted delta {lk['delta']:+.4f}" in m
                                                for lk, m in zip(looks, lines, strict=True))
        assert any(m.startswith(f"evaluating {name} on ") and m.endswith("(composition 1)") for m in tuned["said_first"])
    assert not [line for line in tuned["lines"] if line.startswith("decided early")]


def test_progressive_looks_follow_the_stopping_rule(tuned: dict) -> None:
    doc = tuned["doc"]
    rule = doc["stopping"]
    assert {k: rule[k] for k in ("alpha", "min_coverage", "step", "draws", "seed")} == {
        "alpha": 0.01, "min_coverage": 0.05, "step": 0.05, "draws": 8, "seed": 0}
    [task] = doc["tasks"]
    for b in doc["builds"]:
        record = b["progressive"]
        assert record["schema"] == "evalsuite.progressive/1" and record["variant"] == b["variant"]
        assert len(record["looks"]) > 5, b["variant"]
        check_looks(record, rule, 0.0, {task: tuned["n_docs"]})
        assert record["outcome"] == "complete" and record["coverage"] == {task: 1.0}


def test_stored_full_results_are_gated_without_a_progressive_evaluation(tuned: dict) -> None:
    again = tuned["again"].to_dict()
    first = {b["variant"]: b for b in tuned["doc"]["builds"]}
    assert [b["variant"] for b in again["builds"]] == list(first)
    assert all(b["progressive"] is None and b["gate"] is not None for b in again["builds"])
    base = next(b for b in again["builds"] if b["variant"] == "qint8-7bit")
    f32, q = _per_query(tuned["results"], "float32"), _per_query(tuned["results"], "qint8-7bit")
    base_delta = math.fsum(q[k] - f32[k] for k in f32) / len(f32)
    # independently: the base loses NDCG@10 on the per-query results it stored (mean of 2 compositions), so a max drop
    # of 0 fails it
    assert base_delta < 0 and base["gate"]["outcome"] == "fail"
    assert base["gate"]["checks"][0]["delta"] == pytest.approx(base_delta, abs=1e-12)
    for b in again["builds"]:  # the same verdicts as the first run, now read from the store
        assert b["gate"]["outcome"] == first[b["variant"]]["gate"]["outcome"]
        assert b["gate"]["checks"][0]["delta"] == pytest.approx(first[b["variant"]]["gate"]["checks"][0]["delta"], abs=1e-12)
    assert again["recommended"] == tuned["doc"]["recommended"]
    assert not [m for m in tuned["said"] if m.startswith(("evaluating", "building", "exporting", "progressive"))
                or ": predicted delta " in m]


def test_tune_falls_back_nodes_until_the_gate_passes(tuned: dict) -> None:
    doc, results = tuned["doc"], tuned["results"]
    assert doc["schema"] == "evalsuite.tune/1" and doc["starts"] == ["qint8-7bit"]
    assert doc["gate"]["compositions"] == COMPOSITIONS and doc["gate"]["max_drop"] == 0.0
    f32 = _per_query(results, "float32")
    rec = doc["recommended"]
    assert rec is not None and rec.startswith("qint8-7bit-x")
    build = next(b for b in doc["builds"] if b["variant"] == rec)
    assert build["gate"]["outcome"] == "pass"
    mixed = _per_query(results, rec)
    assert math.fsum(mixed[k] - f32[k] for k in f32) / len(f32) >= 0
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
    # the loop stops at the first gate pass: every earlier step failed, progressively or in full
    assert steps[-1]["variant"] == rec
    assert all(b["gate"] is None or b["gate"]["outcome"] == "fail" for b in steps[:-1])
    # the front and the points agree with their own definition: Float32 and every build evaluated in full
    points = {p["variant"]: p for p in doc["points"]}
    assert set(points) == {"float32"} | {b["variant"] for b in doc["builds"] if b["gate"] is not None}
    assert points["float32"]["speedup"] == 1.0
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
    from evalsuite.results import MissingResults

    rec = tuned["doc"]["recommended"]
    monkeypatch.chdir(tuned["work"])
    verdict = gate(rec, GateConfig(max_drop=0.0, compositions=COMPOSITIONS), tuned["results"])
    assert verdict.outcome == "pass" and verdict.reason.startswith(f"PASS: {rec}")
    with pytest.raises(MissingResults):  # tune stored the compositions it was asked for, and no more
        gate(rec, GateConfig(max_drop=0.0, compositions=COMPOSITIONS + 1), tuned["results"])
    assert tuned["again"].recommended.variant == rec


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
