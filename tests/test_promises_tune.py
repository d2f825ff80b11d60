"""README's promises about ``evalsuite tune`` and ``evalsuite sensitivity``, end to end on a model whose int8 builds
really lose (tests/promise_world.py), each checked against numbers recomputed here from the stored files.

* a build whose fail is certain early in its progressive evaluation is not evaluated in full, and nothing after the
  decision is encoded; the ladder then fixes it;
* under ``--rule ci`` every build is evaluated in full;
* tune returns the *fastest* passing build of several starts, by its own bench file (not the first that passes);
* ``--budget`` stops starting evaluations once it has run out (a fake clock makes "after that long" exact);
* exit 1 when no build passes;
* an interrupted tune resumes and recomputes only what was not finished;
* stored full results win: a build with reusable full results is gated on them, never evaluated progressively;
* ``sensitivity`` ranks the nodes, and the top node's loss is recomputed with onnxruntime's own quantizer.

Batch-dependent builds are evaluated under 2 batch compositions here (the default is 5), and the corpora are mostly
cut into one-batch cache shards (``small_shards``) so that a progressive evaluation has looks to decide at.
"""

from __future__ import annotations

import dataclasses
import io
import json
import types
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import yaml

from promise_world import (CULPRIT, HARMLESS, World, check_looks, gate_config, point_gate, run_cli, small_shards,
                           stored_per_query, task_deltas)

if TYPE_CHECKING:
    from evalsuite.tune.search import TuneConfig

pytest_plugins = ["promise_world"]

MAX_DROP = 0.02
COMPOSITIONS = 2


def _tune_cfg(world: World, starts: tuple[str, ...], cache: Path, results: Path, **gate: object) -> TuneConfig:
    """tune's settings for these tests: the world's model and tasks, max drop 0.02 per task, 2 compositions, bench at 16
    tokens, 8 draws per look."""
    from evalsuite.analysis.gate import GateConfig
    from evalsuite.screen.stopping import StoppingRule
    from evalsuite.tune.search import TuneConfig

    return TuneConfig(starts=starts, model=str(world.model), tasks=[str(t) for t in world.tasks],
                      gate=GateConfig(max_drop=MAX_DROP, speed_length=16, compositions=COMPOSITIONS, **gate),  # type: ignore[arg-type]
                      bench_repeats=2, stopping=StoppingRule(draws=8), cache_dir=cache, results_dir=results)


def _rows(path: Path) -> int:
    """Rows of one embedding-cache shard (a sha256 digest, then an .npy payload), read here without evalsuite."""
    return int(np.load(io.BytesIO(path.read_bytes()[32:]), allow_pickle=False).shape[0])


def _n_docs(world: World) -> dict[str, int]:
    return {t.name: sum(1 for line in (t / "corpus.jsonl").read_text().splitlines() if line.strip()) for t in world.tasks}


def _by_folder(doc: dict, n_docs: dict[str, int]) -> dict[str, int]:
    """Task names of a tune document (``scifact-<hash>``) -> documents in that task's BEIR folder."""
    return {task: next(n for folder, n in n_docs.items() if task.startswith(folder + "-")) for task in doc["tasks"]}


def _bench_speedups(bench: dict, length: int, batch: int) -> dict[str, float]:
    """Speedup over Float32 of every variant in a bench document at one (length, batch) cell."""
    return {r["variant"]: r["speedup"] for r in bench["results"] if (r["length"], r["batch"]) == (length, batch)}


def _tune_folder(results: Path) -> Path:
    [folder] = [p for p in results.iterdir() if (p / "tune" / "tune.json").is_file()]
    return folder / "tune"


def _result_files(results: Path, variant: str) -> list[Path]:
    """``<variant>.json`` and ``<variant>.c<k>.json`` of every task: a variant's full results under each composition."""
    return sorted(p for p in results.rglob("*.json") if p.name == f"{variant}.json"
                  or (p.name.startswith(f"{variant}.c") and p.name[len(variant) + 2:-5].isdigit()))


def _shards(cache: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (cache / "embeddings").rglob("*.npy")}


# ------------------------------------------------------------------------- a fail decided early is not evaluated in full


@pytest.fixture(scope="module")
def decided(wiped: World, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``tune --start qint8`` in this process on WIPED (qint8 loses about 0.3 NDCG@10), with a fresh cache that holds
    only what ``run --variant float32`` left. The shards of qint8's embeddings are counted before anything else
    touches the cache."""
    from evalsuite.tune.outcome import tune

    work = tmp_path_factory.mktemp("tune-decided")
    cache, results = work / "cache", work / "results"
    wiped.seed(results, cache)
    said: list[str] = []
    mp = pytest.MonkeyPatch()
    small_shards(mp)
    mp.chdir(work)
    try:
        outcome = tune(_tune_cfg(wiped, ("qint8",), cache, results), say=said.append)
    finally:
        mp.undo()
    doc = outcome.to_dict()
    sha = doc["builds"][0]["progressive"]["onnx_sha256"]
    return {"doc": doc, "lines": outcome.lines(), "said": said, "work": work, "cache": cache, "results": results,
            "qint8_shards": {p.name: _rows(p) for p in (cache / "embeddings" / sha[:16]).glob("*.npy")},
            "qint8_sha": sha}


def test_a_progressive_fail_skips_the_full_evaluation(decided: dict, wiped: World) -> None:
    import hashlib

    from evalsuite.build import build_variant
    from evalsuite.models import resolve_model
    from evalsuite.variants import VariantSpec

    doc, results = decided["doc"], decided["results"]
    builds = {b["variant"]: b for b in doc["builds"]}
    n_docs = _by_folder(doc, _n_docs(wiped))
    start = builds["qint8"]["progressive"]
    # decided fail at a look before the corpus was complete, on an interval wholly below -max drop; never gated
    assert start["outcome"] == "fail" and builds["qint8"]["gate"] is None
    [(task, coverage)] = start["decided"].items()
    fail = start["looks"][-1]
    assert fail["task"] == task and fail["coverage"] == coverage < 1 and fail["interval"][1] < -MAX_DROP
    check_looks(start, doc["stopping"], MAX_DROP, n_docs)
    # no result file of qint8, under any composition: the store holds Float32 and the ladder's step only
    assert _result_files(results, "qint8") == [] and set(stored_per_query(results)) == {"float32"} | set(builds) - {"qint8"}
    # nothing after the decision was encoded: qint8's shards (its ONNX file's folder, named by the file's own sha256)
    # hold its queries (one per shard: query batches hold one text) and only the documents up to each task's last look
    art = build_variant(resolve_model(str(wiped.model)), VariantSpec.parse("qint8"), decided["cache"])
    assert hashlib.sha256(art.path.read_bytes()).hexdigest() == decided["qint8_sha"]
    document_shards = [rows for rows in decided["qint8_shards"].values() if rows > 1]
    last = {lk["task"]: lk for lk in start["looks"]}  # each task's last look (a shard of 24 or 32 of 120 is always one)
    assert len(document_shards) == sum(lk["shards"] for lk in last.values())
    assert sum(document_shards) == sum(round(lk["coverage"] * n_docs[t]) for t, lk in last.items()) < sum(n_docs.values())
    # ... and the ladder moved the word table's node to float; that build passes, by hand from its stored results
    [step] = [b for b in doc["builds"] if b["variant"] != "qint8"]
    assert step["float_nodes"] == [CULPRIT] and step["progressive"]["outcome"] == "complete"
    check_looks(step["progressive"], doc["stopping"], MAX_DROP, n_docs)
    per_query = stored_per_query(results)
    assert step["gate"]["outcome"] == point_gate(per_query, step["variant"], MAX_DROP) == "pass"
    files = _result_files(results, step["variant"])
    assert len(files) == COMPOSITIONS * len(n_docs)  # a mixed build depends on its batch: one result per composition
    for path in files:  # composition 0 read every text from the shards its progressive evaluation left; 1 encoded anew
        timings = json.loads(path.read_text())["timings"]
        assert (timings["texts_from_cache"] == timings["texts_encoded"]) == (path.name == f"{step['variant']}.json"), path
    assert doc["recommended"] == step["variant"]
    # said at each look; qint8 was never evaluated in full; the summary gives the early fail's evidence
    looks_said = [m for m in decided["said"] if m.startswith("qint8 ") and "%: predicted delta " in m]
    assert len(looks_said) == len(start["looks"]) and looks_said[-1].endswith("FAIL")
    assert not [m for m in decided["said"] if m.startswith("evaluating qint8 ")]
    low, high = fail["interval"]
    assert (f"decided early, not evaluated in full: FAIL decided early: qint8 {task} at {100 * coverage:.0f}%: "
            f"delta {fail['delta']:+.4f}, interval [{low:+.4f}, {high:+.4f}] beyond -{MAX_DROP:.4f}") in decided["lines"]
    # the start is timed anyway (not a point): the mixed build's share of its speedup
    bench = json.loads((_tune_folder(results) / "bench.json").read_text())
    speed = _bench_speedups(bench, 16, 1)
    assert set(speed) == {"float32", "qint8", step["variant"]} and {p["variant"] for p in doc["points"]} == {"float32", step["variant"]}
    assert step["speedup_kept"] == pytest.approx(speed[step["variant"]] / speed["qint8"])


def test_under_the_ci_rule_every_build_is_evaluated_in_full(decided: dict, wiped: World, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Progressive evaluation decides the point rule; the ci rule fails only an established loss, so no build is decided
    early: qint8, decided early under the point rule (``decided``), is evaluated in full, and its full result confirms
    the early decision on that task. (The cache of ``decided`` is reused: its rankings and shards.)"""
    from evalsuite.tune.outcome import tune

    small_shards(monkeypatch)
    monkeypatch.chdir(decided["work"])
    results = tmp_path / "results"
    wiped.seed(results)
    [(task, _)] = decided["doc"]["builds"][0]["progressive"]["decided"].items()
    [folder] = [str(t) for t in wiped.tasks if task.startswith(t.name + "-")]  # that task alone is enough
    cfg = dataclasses.replace(_tune_cfg(wiped, ("qint8",), decided["cache"], results, rule="ci"), tasks=[folder])
    doc = tune(cfg).to_dict()
    assert doc["tasks"] == [task]
    assert doc["builds"] and all(b["progressive"] is None and b["gate"] is not None for b in doc["builds"])
    assert set(stored_per_query(results)) == {"float32"} | {b["variant"] for b in doc["builds"]}
    assert any("per-task point rule" in n and "every build was evaluated in full" in n for n in doc["notes"])
    assert task_deltas(stored_per_query(results), "qint8")[task] < -MAX_DROP  # the full evaluation: a real loss there
    assert doc["builds"][0]["gate"]["outcome"] == "fail"


# ------------------------------------------------------------------------------------ several starts, fastest pass


@pytest.fixture(scope="module")
def several(wiped: World, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``evalsuite tune --start float16,qint8,int4-b16,int4 --max-drop 0.02 --compositions 2 --json`` in this process
    (bench at 16 tokens). Four builds pass; which one is fastest is up to the bench (on the tiny model they are all
    within noise of Float32), so "the first that passes" (float16) is the fastest in only about one run in four."""
    work = tmp_path_factory.mktemp("tune-several")
    results = work / "results"
    mp = pytest.MonkeyPatch()
    small_shards(mp)
    capture = _Capture()
    wiped.seed(results)  # Float32's full results, as an earlier run left them
    mp.chdir(work)
    try:
        code, out, err = capture.cli(mp, "tune", "--start", "float16,qint8,int4-b16,int4", "--max-drop", MAX_DROP,
                                     "--compositions", COMPOSITIONS, "--config", gate_config(work), "--bench-repeats", 5,
                                     "--model", wiped.model, "--tasks", wiped.task_arg, "--cache-dir", wiped.cache,
                                     "--results-dir", results, "--json")
    finally:
        mp.undo()
    return {"code": code, "doc": json.loads(out) if code in (0, 1) else None, "err": err, "results": results, "work": work}


class _Capture:
    """Stdout, stderr and exit code of an in-process command, for a module-scoped fixture (capsys is per test)."""

    def cli(self, mp: pytest.MonkeyPatch, *args: object) -> tuple[int, str, str]:
        import sys

        from evalsuite import cli

        out, err = io.StringIO(), io.StringIO()
        mp.setattr(sys, "argv", ["evalsuite", *map(str, args)])
        mp.setattr(sys, "stdout", out)
        mp.setattr(sys, "stderr", err)
        try:
            cli.main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        else:
            code = 0
        return code, out.getvalue(), err.getvalue()


def test_several_starts_return_the_fastest_passing_build_of_the_bench(several: dict) -> None:
    assert several["code"] == 0, several["err"][-2000:]
    doc, results = several["doc"], several["results"]
    assert doc == json.loads((_tune_folder(results) / "tune.json").read_text())  # --json prints what it writes
    builds = {b["variant"]: b for b in doc["builds"]}
    assert doc["starts"] == ["float16", "qint8", "int4-b16", "int4"] and [b["variant"] for b in doc["builds"]][0] == "float16"
    assert doc["gate"]["compositions"] == COMPOSITIONS
    # every verdict recomputed from the stored per-query NDCG@10 (mean over compositions) with the point rule by hand
    per_query = stored_per_query(results)
    evaluated = [name for name, b in builds.items() if b["gate"] is not None]
    assert set(per_query) == {"float32", *evaluated}
    for name in evaluated:
        assert builds[name]["gate"]["outcome"] == point_gate(per_query, name, MAX_DROP), name
    passing = [name for name in evaluated if builds[name]["gate"]["outcome"] == "pass"]
    # more than one build passes, and the first evaluated one is only one of them
    assert len(passing) == 4 and passing[0] == "float16"
    # evaluated in full exactly when the progressive evaluation did not decide fail (nothing was stored before)
    assert all((b["gate"] is None) == (b["progressive"]["outcome"] == "fail") for b in builds.values())
    # qint8 lost its word table (a fail decided early, no full evaluation) and came back with that one node in float
    assert builds["qint8"]["progressive"]["outcome"] == "fail" and builds["qint8"]["gate"] is None
    [mixed] = [b for b in doc["builds"] if b["base"] == "qint8" and b["variant"] != "qint8"]
    assert mixed["float_nodes"] == [CULPRIT] and mixed["gate"]["outcome"] == "pass"
    # batch-independent builds have one composition, the mixed int8 build one per composition
    for name in evaluated:
        assert len(_result_files(results, name)) == (COMPOSITIONS if name == mixed["variant"] else 1) * len(doc["tasks"]), name
    # the recommended build is the fastest passing one in tune's own bench file (ties: the smaller file)
    bench = json.loads((_tune_folder(results) / "bench.json").read_text())
    point = doc["bench_point"]
    speed = _bench_speedups(bench, point["length"], point["batch"])
    assert set(passing) <= set(speed)
    fastest = min(passing, key=lambda n: (-speed[n], bench["variants"][n]["size_bytes"], n))
    assert doc["recommended"] == fastest
    assert builds[fastest]["speedup"] == pytest.approx(speed[fastest])


# ------------------------------------------------------------------------------------------------------- budget


def test_budget_stops_starting_evaluations(wiped: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake clock that advances one minute per full evaluation of a task (and per sensitivity ranking); Float32 is
    stored. With a budget of half a minute the first start is evaluated (progressively, then in full: two minutes, the
    second task's evaluation begun after the budget ran out is finished), and the second is never begun; in a ladder,
    the ranking uses the budget up and tune stops before the first step is even built."""
    from evalsuite.tune import search as search_module
    from evalsuite.tune.outcome import tune

    minutes = [0.0]
    monkeypatch.setattr(search_module, "time", types.SimpleNamespace(monotonic=lambda: 60 * minutes[0]))
    small_shards(monkeypatch)

    def say(message: str) -> None:
        if message.startswith(("evaluating ", "ranking the nodes")):
            minutes[0] += 1

    def run(starts: tuple[str, ...], folder: Path) -> dict:
        minutes[0] = 0.0
        folder.mkdir()
        monkeypatch.chdir(folder)
        cfg = dataclasses.replace(_tune_cfg(wiped, starts, wiped.cache, folder / "results"), budget_minutes=0.5)
        wiped.seed(folder / "results")
        return tune(cfg, say=say).to_dict()

    doc = run(("float16", "int4-b16"), tmp_path / "r1")
    assert doc["budget_exhausted"] is True and doc["budget_minutes"] == 0.5 and minutes[0] == 2
    assert [b["variant"] for b in doc["builds"]] == ["float16"]  # int4-b16 was not even begun
    assert doc["builds"][0]["progressive"]["outcome"] == "complete" and doc["builds"][0]["gate"]["outcome"] == "pass"
    assert set(stored_per_query(tmp_path / "r1" / "results")) == {"float32", "float16"} and doc["recommended"] == "float16"

    doc = run(("qint8",), tmp_path / "r2")  # decided early (no minute), ranked (a minute): out before the first step
    assert minutes[0] == 1 and [b["variant"] for b in doc["builds"]] == ["qint8"]  # no entry for the step
    assert doc["builds"][0]["progressive"]["outcome"] == "fail" and doc["builds"][0]["gate"] is None
    assert doc["budget_exhausted"] is True and "budget exhausted before step 1 of qint8 was evaluated" in doc["notes"]
    written = [yaml.safe_load(p.read_text())["chosen_by"]["method"] for p in (tmp_path / "r2").glob("configs/mixed/*.yaml")]
    assert all(m.startswith("probe") for m in written)  # the step's config file was never written (a probe's may be)
    assert set(stored_per_query(tmp_path / "r2" / "results")) == {"float32"} and doc["recommended"] is None


def test_a_budget_that_runs_out_at_once_exits_1(wiped: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    wiped.seed(tmp_path / "r")
    code, out, err = run_cli(monkeypatch, capsys, "tune", "--start", "float16", "--budget", "0.0000001", "--max-drop", MAX_DROP,
                             "--compositions", COMPOSITIONS, "--config", gate_config(tmp_path), "--model", wiped.model,
                             "--tasks", wiped.task_arg, "--cache-dir", wiped.cache, "--results-dir", tmp_path / "r", "--json")
    assert code == 1, err[-2000:]
    doc = json.loads(out)
    assert doc["budget_exhausted"] is True and doc["builds"] == [] and doc["recommended"] is None
    assert set(stored_per_query(tmp_path / "r")) == {"float32"}


# ------------------------------------------------------------------------------------------- nothing passes: exit 1


def test_exit_1_when_no_build_passes(wiped: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A start that loses its word table and cannot climb (it already names a mixed config: no nodes to fall back).
    Its full result is stored first, so the gate itself fails it, on the stored result (no progressive evaluation)."""
    from evalsuite.models import resolve_model
    from evalsuite.variants.float_nodes import MixedConfig

    monkeypatch.chdir(tmp_path)
    source = resolve_model(str(wiped.model))
    MixedConfig("harmless", source.model_id, source.weights_sha256, "qint8", (HARMLESS,)).write()
    common = ("--model", wiped.model, "--tasks", wiped.task_arg, "--cache-dir", wiped.cache, "--results-dir", tmp_path / "r",
              "--compositions", COMPOSITIONS)
    wiped.seed(tmp_path / "r")
    code, _, err = run_cli(monkeypatch, capsys, "run", "--variant", "qint8-xharmless", *common)
    assert code == 0, err[-2000:]
    per_query = stored_per_query(tmp_path / "r")
    assert min(task_deltas(per_query, "qint8-xharmless").values()) < -5 * MAX_DROP  # a real loss, far beyond the limit
    stored = {p: p.stat().st_mtime_ns for p in _result_files(tmp_path / "r", "qint8-xharmless")}
    assert len(stored) == COMPOSITIONS * len(wiped.tasks)
    code, out, err = run_cli(monkeypatch, capsys, "tune", "--start", "qint8-xharmless", "--max-drop", MAX_DROP,
                             "--config", gate_config(tmp_path), "--bench-repeats", 2, *common)
    assert code == 1, err[-2000:]
    assert "no build passes the gate" in out
    doc = json.loads((_tune_folder(tmp_path / "r") / "tune.json").read_text())
    [build] = doc["builds"]
    assert build["gate"]["outcome"] == "fail" and build["progressive"] is None and doc["recommended"] is None
    assert {p: p.stat().st_mtime_ns for p in _result_files(tmp_path / "r", "qint8-xharmless")} == stored  # read, not redone
    assert "qint8-xharmless fails and is not a dynamic int8 base: no nodes to fall back" in doc["notes"]


# ------------------------------------------------------------------------------------------------------- resume


def test_an_interrupted_tune_resumes_without_redoing_work(wiped: World, decided: dict, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (a KeyboardInterrupt from the status callbacks) during qint8's progressive evaluation, then during the
    sensitivity ranking, then during the ladder step's full evaluation (its second task): each re-run rereads every
    stored shard, ranking and result, recomputes only what had not finished, and the last one reaches the same
    recommendation as the uninterrupted run of ``decided``."""
    from evalsuite.tune.outcome import tune

    small_shards(monkeypatch)
    monkeypatch.chdir(tmp_path)
    cache, results = tmp_path / "cache", tmp_path / "results"
    cfg = _tune_cfg(wiped, ("qint8",), cache, results)
    task_names = [f"{t.name}-" for t in wiped.tasks]
    wiped.seed(results, cache)  # as if `run --variant float32` had run: its files, embeddings and results only

    def ranked() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in (cache / "sensitivity").rglob("*.json")}

    def kept(before: dict[Path, int]) -> bool:
        now = _shards(cache)
        return {p: now.get(p) for p in before} == before

    # 1. during the progressive evaluation of qint8, right after its first document shard was stored
    def stop_in_progressive(variant: str, what: str, done: int, total: int) -> None:
        if variant == "qint8" and "progressive" in what:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(cfg, progress=stop_in_progressive)
    first = _shards(cache)
    assert not _result_files(results, "qint8") and not ranked()

    # 2. during the ranking, at its third node
    def stop_at_node(variant: str, what: str, done: int, total: int) -> None:
        if what == "sensitivity" and done == 3:
            raise KeyboardInterrupt

    said: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        tune(cfg, say=said.append, progress=stop_at_node)
    assert kept(first)  # the shard encoded before the interrupt was read back, not encoded again
    # qint8's progressive evaluation resumed to the shards and decision of the uninterrupted run
    qint8 = next(p for p in _shards(cache) if p.parent.name == decided["qint8_sha"][:16]).parent
    assert {p.name for p in qint8.glob("*.npy")} == set(decided["qint8_shards"])
    assert [m for m in said if m.startswith("qint8 ") and "%: predicted delta" in m][-1].endswith("FAIL")
    assert len(ranked()) == 3  # three nodes measured and kept
    second = _shards(cache)
    first_ranked = ranked()

    # 3. during the full evaluation of the ladder step, when it starts its second task
    said.clear()

    def stop_at_second_task(message: str) -> None:
        said.append(message)
        if message.startswith("evaluating qint8-x") and task_names[1] in message:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(cfg, say=stop_at_second_task)
    assert kept(second) and {p: ranked()[p] for p in first_ranked} == first_ranked  # nothing measured twice
    assert len(ranked()) > len(first_ranked)
    mixed = [m for m in said if m.startswith("evaluating qint8-x")]
    assert len(mixed) == 2 and task_names[0] in mixed[0]  # the first task of the ladder step finished and was stored
    [step_variant] = {m.split()[1] for m in mixed}
    assert [p.name for p in _result_files(results, step_variant)] == [f"{step_variant}.json"]
    third = _shards(cache)

    # 4. to the end
    said.clear()
    doc = tune(cfg, say=said.append).to_dict()
    assert kept(third)  # nothing stored was encoded again
    assert not [m for m in said if m.startswith(("exporting", "building"))]  # every file was built already
    evaluations = sorted(m for m in said if m.startswith("evaluating "))
    # exactly the step's missing results: composition 0 of its second task, composition 1 of both
    assert evaluations == sorted([f"evaluating {step_variant} on {task_of(doc, task_names[1])}",
                                  *(f"evaluating {step_variant} on {task_of(doc, n)} (composition 1)" for n in task_names)])
    assert len(_shards(cache)) > len(third)  # composition 1's shards are new
    # the same result as the uninterrupted run
    assert doc["recommended"] == decided["doc"]["recommended"] == step_variant
    [step] = [b for b in doc["builds"] if b["variant"] != "qint8"]
    per_query = stored_per_query(results)
    assert step["float_nodes"] == [CULPRIT] and step["gate"]["outcome"] == point_gate(per_query, step_variant, MAX_DROP) == "pass"
    assert doc["builds"][0]["progressive"]["looks"] == decided["doc"]["builds"][0]["progressive"]["looks"]


def task_of(doc: dict, prefix: str) -> str:
    [task] = [t for t in doc["tasks"] if t.startswith(prefix)]
    return task


# ------------------------------------------------------------------------------------------- stored full results win


def test_stored_full_results_win_over_a_progressive_fail(masked: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """MASKED qint8: the full evaluation loses little, while a progressive evaluation with the very settings of the tune
    below decides a fail early (it cannot see that the outlier moves every text alike). With the full result stored,
    tune gates the start on it and keeps it, with no progressive evaluation."""
    from evalsuite.data.tasks import find_task
    from evalsuite.models import resolve_model
    from evalsuite.screen.progressive import Progressive, composition_sd
    from evalsuite.tune.outcome import tune

    max_drop = 0.05
    monkeypatch.chdir(tmp_path)
    small_shards(monkeypatch)
    cache, results = tmp_path / "cache", tmp_path / "r"
    masked.seed(results, cache)
    code, _, err = run_cli(monkeypatch, capsys, "run", "--variant", "qint8", "--model", masked.model, "--tasks", masked.task_arg,
                           "--cache-dir", cache, "--results-dir", results, "--compositions", COMPOSITIONS)
    assert code == 0, err[-2000:]
    per_query = stored_per_query(results)
    assert point_gate(per_query, "qint8", max_drop) == "pass"  # by hand, from the stored per-query values
    cfg = _tune_cfg(masked, ("qint8",), cache, results)
    cfg = dataclasses.replace(cfg, gate=cfg.gate.override(max_drop=max_drop))
    # what tune's progressive evaluation of it would say, run here as tune runs it (rule, limit, compositions and their
    # spread): a fail decided early, where the full result passes. Its shards are the full run's own (composition 0).
    source = resolve_model(str(masked.model))
    tasks = [find_task(str(t)) for t in masked.tasks]
    spread = composition_sd(results, source.model_id, [t.name for t in tasks], COMPOSITIONS, "test")
    predicted = Progressive(source, tasks, data_dir=None, cache_dir=cache, rule=cfg.stopping).evaluate(
        "qint8", max_drop, False, spread, COMPOSITIONS)
    assert predicted.outcome == "fail" and predicted.looks[-1].high < -max_drop, predicted.looks
    shards = _shards(cache)
    said: list[str] = []
    outcome = tune(cfg, say=said.append)
    doc = outcome.to_dict()
    build = doc["builds"][0]
    assert build["progressive"] is None and not [m for m in said if "predicted delta" in m]
    assert build["gate"]["outcome"] == "pass" and doc["recommended"] == "qint8"
    assert len(doc["builds"]) == 1 and doc["sensitivity"] == {}  # kept as it is: no ranking, no ladder
    assert not [line for line in outcome.lines() if line.startswith("decided early")]
    assert _shards(cache) == shards  # nothing encoded: the gate read the stored results


# ---------------------------------------------------------------------------------------------------- sensitivity


def test_sensitivity_ranks_the_nodes_and_its_losses_are_onnxruntimes(wiped: World, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``evalsuite sensitivity`` succeeds; the nodes are those quantize_dynamic rewrites, ranked by loss; the planted
    culprit is first; its loss is recomputed here: onnxruntime's quantize_dynamic of that node alone, an onnxruntime
    session, mean pooling and the cosine to Float32, over the same sample texts."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoTokenizer

    from evalsuite.build import build_variant
    from evalsuite.data.tasks import find_task
    from evalsuite.models import resolve_model
    from evalsuite.tune.sample import draw_sample
    from evalsuite.variants import BASELINE

    args = ("sensitivity", "--variant", "qint8", "--model", wiped.model, "--tasks", wiped.task_arg, "--cache-dir", wiped.cache,
            "--sample-queries", 3, "--sample-documents", 5)
    code, out, err = run_cli(monkeypatch, capsys, *args, "--json")
    assert code == 0, err[-2000:]
    doc = json.loads(out)
    nodes = doc["nodes"]
    assert doc["schema"] == "evalsuite.sensitivity/1" and doc["variant"] == "qint8"
    assert [n["rank"] for n in nodes] == list(range(1, len(nodes) + 1))
    assert [n["loss"] for n in nodes] == sorted((n["loss"] for n in nodes), reverse=True)
    source = resolve_model(str(wiped.model))
    parent = build_variant(source, BASELINE, wiped.cache)
    graph = onnx.load(str(parent.path))
    constants = {i.name for i in graph.graph.initializer}
    expected = {n.name for n in graph.graph.node if (n.op_type == "MatMul" and n.input[1] in constants)
                or n.op_type in ("Attention", "EmbedLayerNormalization")}
    assert {n["node"] for n in nodes} == expected
    top = nodes[0]
    assert top["node"] == CULPRIT and top["loss"] > 10 * nodes[1]["loss"]

    sample = draw_sample([find_task(str(t)) for t in wiped.tasks], None, 3, 5)
    tokenizer = AutoTokenizer.from_pretrained(str(wiped.model))

    def embed(model_path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        rows = []
        for text in [*sample.queries, *sample.documents]:  # one text per call, as the ranking embeds them
            enc = tokenizer(text, truncation=True, max_length=64, return_tensors="np")
            feed = {k: v.astype(np.int64) for k, v in enc.items() if k in names}
            tokens = session.run(None, feed)[0][0]
            rows.append(tokens.mean(axis=0))
        return np.array(rows, dtype=np.float64)

    quantized = tmp_path / "one-node.onnx"
    quantize_dynamic(parent.path, quantized, weight_type=QuantType.QInt8, per_channel=False, reduce_range=False,
                     nodes_to_quantize=[CULPRIT], extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    a, b = embed(quantized), embed(parent.path)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert top["loss"] == pytest.approx(1 - cos.mean(), abs=1e-5)
    assert top["min_cos"] == pytest.approx(cos.min(), abs=1e-5)

    code, out, _ = run_cli(monkeypatch, capsys, *args, "--top", 2)  # the table for people
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].split() == ["rank", "loss", "min", "cos", "node"] and len(lines) == 3
    assert lines[1].split()[0] == "1" and CULPRIT in lines[1]
