"""README's promises about ``evalsuite tune`` and ``evalsuite sensitivity``, end to end on a model whose int8 builds
really lose (tests/promise_world.py), each checked against numbers recomputed here from the stored files.

* tune returns the *fastest* passing build of several starts, by its own bench file (not the first that passes);
* ``--budget`` stops starting evaluations once it has run out (a fake clock makes "after that long" exact);
* exit 1 when no build passes;
* an interrupted tune resumes and recomputes only what was not finished;
* the gate on stored full results wins over a screen fail, with a note;
* ``sensitivity`` ranks the nodes, and the top node's loss is recomputed with onnxruntime's own quantizer.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest

from promise_world import CULPRIT, HARMLESS, World, gate_config, point_gate, run_cli, stored_per_query, task_deltas

pytest_plugins = ["promise_world"]

MAX_DROP = 0.02


def _bench_speedups(bench: dict, length: int, batch: int) -> dict[str, float]:
    """Speedup over Float32 of every variant in a bench document at one (length, batch) cell."""
    return {r["variant"]: r["speedup"] for r in bench["results"] if (r["length"], r["batch"]) == (length, batch)}


def _tune_folder(results: Path) -> Path:
    [folder] = [p for p in results.iterdir() if (p / "tune" / "tune.json").is_file()]
    return folder / "tune"


# ------------------------------------------------------------------------------------ several starts, fastest pass


@pytest.fixture(scope="module")
def several(wiped: World, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``evalsuite tune --start float16,qint8,int4-b16,int4 --max-drop 0.02 --json`` in this process (bench at 16 tokens).
    Four builds pass; which one is fastest is up to the bench (on the tiny model they are all within noise of Float32),
    so "the first that passes" (float16) is the fastest in only about one run in four."""
    work = tmp_path_factory.mktemp("tune-several")
    results = work / "results"
    mp = pytest.MonkeyPatch()
    capture = _Capture()
    wiped.seed(results)  # Float32's full results, as an earlier run left them
    mp.chdir(work)
    try:
        code, out, err = capture.cli(mp, "tune", "--start", "float16,qint8,int4-b16,int4", "--max-drop", MAX_DROP,
                                     "--config", gate_config(work), "--bench-repeats", 5, "--model", wiped.model,
                                     "--tasks", wiped.task_arg, "--cache-dir", wiped.cache, "--results-dir", results, "--json")
    finally:
        mp.undo()
    return {"code": code, "doc": json.loads(out) if code in (0, 1) else None, "err": err, "results": results, "work": work}


class _Capture:
    """Stdout, stderr and exit code of an in-process command, for a module-scoped fixture (capsys is per test)."""

    def cli(self, mp: pytest.MonkeyPatch, *args: object) -> tuple[int, str, str]:
        import io
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
    # every verdict recomputed from the stored per-query NDCG@10 with the point rule by hand
    per_query = stored_per_query(results)
    evaluated = [name for name, b in builds.items() if b["gate"] is not None]
    assert set(per_query) == {"float32", *evaluated}
    for name in evaluated:
        assert builds[name]["gate"]["outcome"] == point_gate(per_query, name, MAX_DROP), name
    passing = [name for name in evaluated if builds[name]["gate"]["outcome"] == "pass"]
    # more than one build passes, and the first evaluated one is only one of them
    assert len(passing) == 4 and passing[0] == "float16"
    # qint8 lost its word table (screen fail, no full evaluation) and came back with that one node in float
    assert builds["qint8"]["screen"]["outcome"] == "fail" and builds["qint8"]["gate"] is None
    [mixed] = [b for b in doc["builds"] if b["base"] == "qint8" and b["variant"] != "qint8"]
    assert mixed["float_nodes"] == [CULPRIT] and mixed["gate"]["outcome"] == "pass"
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
    stored. With a budget of half a minute the first start is screened and evaluated (two minutes), and the second
    is never begun; in a ladder, the ranking uses the budget up and tune stops before the step's evaluation."""
    from evalsuite.analysis.gate import GateConfig
    from evalsuite.tune import search as search_module
    from evalsuite.tune.outcome import tune
    from evalsuite.tune.search import TuneConfig

    minutes = [0.0]
    monkeypatch.setattr(search_module, "time", types.SimpleNamespace(monotonic=lambda: 60 * minutes[0]))
    monkeypatch.chdir(tmp_path)

    def say(message: str) -> None:
        if message.startswith(("evaluating ", "ranking the nodes")):
            minutes[0] += 1

    def run(starts: tuple[str, ...], results: Path) -> dict:
        minutes[0] = 0.0
        cfg = TuneConfig(starts=starts, model=str(wiped.model), tasks=[str(t) for t in wiped.tasks],
                         gate=GateConfig(max_drop=MAX_DROP, speed_length=16), budget_minutes=0.5, bench_repeats=2,
                         cache_dir=wiped.cache, results_dir=results)
        wiped.seed(results)
        return tune(cfg, say=say).to_dict()

    doc = run(("float16", "int4-b16"), tmp_path / "r1")
    assert doc["budget_exhausted"] is True and doc["budget_minutes"] == 0.5 and minutes[0] == 2
    assert [b["variant"] for b in doc["builds"]] == ["float16"]  # int4-b16 was not even screened
    assert set(stored_per_query(tmp_path / "r1")) == {"float32", "float16"} and doc["recommended"] == "float16"

    doc = run(("qint8",), tmp_path / "r2")  # the ranking's minute: out before the first ladder step is evaluated
    [step] = [b for b in doc["builds"] if b["variant"] != "qint8"]
    assert step["screen"] is not None and step["gate"] is None
    assert doc["budget_exhausted"] is True and f"budget exhausted before {step['variant']} was evaluated" in doc["notes"]
    assert set(stored_per_query(tmp_path / "r2")) == {"float32"} and doc["recommended"] is None


def test_a_budget_that_runs_out_at_once_exits_1(wiped: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    wiped.seed(tmp_path / "r")
    code, out, err = run_cli(monkeypatch, capsys, "tune", "--start", "float16", "--budget", "0.0000001", "--max-drop", MAX_DROP,
                             "--config", gate_config(tmp_path), "--model", wiped.model, "--tasks", wiped.task_arg,
                             "--cache-dir", wiped.cache, "--results-dir", tmp_path / "r", "--json")
    assert code == 1, err[-2000:]
    doc = json.loads(out)
    assert doc["budget_exhausted"] is True and doc["builds"] == [] and doc["recommended"] is None
    assert set(stored_per_query(tmp_path / "r")) == {"float32"}


# ------------------------------------------------------------------------------------------- nothing passes: exit 1


def test_exit_1_when_no_build_passes(wiped: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A start that loses its word table and cannot climb (it already names a mixed config: no nodes to fall back).
    Its full result is stored first, so the gate itself, not only the screen, fails it."""
    from evalsuite.models import resolve_model
    from evalsuite.variants.float_nodes import MixedConfig

    monkeypatch.chdir(tmp_path)
    source = resolve_model(str(wiped.model))
    MixedConfig("harmless", source.model_id, source.weights_sha256, "qint8", (HARMLESS,)).write()
    common = ("--model", wiped.model, "--tasks", wiped.task_arg, "--cache-dir", wiped.cache, "--results-dir", tmp_path / "r")
    wiped.seed(tmp_path / "r")
    code, _, err = run_cli(monkeypatch, capsys, "run", "--variant", "qint8-xharmless", *common)
    assert code == 0, err[-2000:]
    per_query = stored_per_query(tmp_path / "r")
    assert min(task_deltas(per_query, "qint8-xharmless").values()) < -5 * MAX_DROP  # a real loss, far beyond the limit
    code, out, err = run_cli(monkeypatch, capsys, "tune", "--start", "qint8-xharmless", "--max-drop", MAX_DROP,
                             "--config", gate_config(tmp_path), "--bench-repeats", 2, *common)
    assert code == 1, err[-2000:]
    assert "no build passes the gate" in out
    doc = json.loads((_tune_folder(tmp_path / "r") / "tune.json").read_text())
    [build] = doc["builds"]
    assert build["gate"]["outcome"] == "fail" and doc["recommended"] is None
    assert "qint8-xharmless fails and is not a dynamic int8 base: no nodes to fall back" in doc["notes"]


# ------------------------------------------------------------------------------------------------------- resume


def test_an_interrupted_tune_resumes_without_redoing_work(wiped: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (a KeyboardInterrupt from the status callbacks) during the sensitivity ranking, then during the second
    task's evaluation of the ladder step: each re-run recomputes only what had not finished."""
    from evalsuite.analysis.gate import GateConfig
    from evalsuite.tune.outcome import tune
    from evalsuite.tune.search import TuneConfig

    monkeypatch.chdir(tmp_path)
    cache, results = tmp_path / "cache", tmp_path / "results"
    cfg = TuneConfig(starts=("qint8",), model=str(wiped.model), tasks=[str(t) for t in wiped.tasks],
                     gate=GateConfig(max_drop=MAX_DROP, speed_length=16), bench_repeats=2, cache_dir=cache, results_dir=results)
    task_names = [f"{t.name}-" for t in wiped.tasks]
    wiped.seed(results, cache)  # as if `run --variant float32` had run: its files, embeddings and results only

    def ranked() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in (cache / "sensitivity").rglob("*.json")}

    def shards() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in (cache / "embeddings").rglob("*.npy")}

    def stop_at_node(n: int):  # noqa: ANN202
        def progress(variant: str, what: str, done: int, total: int) -> None:
            if what == "sensitivity" and done == n:
                raise KeyboardInterrupt
        return progress

    with pytest.raises(KeyboardInterrupt):
        tune(cfg, progress=stop_at_node(3))
    first = ranked()
    assert len(first) == 3  # three nodes measured and kept

    said: list[str] = []

    def stop_at_second_task(message: str) -> None:
        said.append(message)
        if message.startswith("evaluating qint8-x") and task_names[1] in message:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(cfg, say=stop_at_second_task)
    second = ranked()
    assert {p: second[p] for p in first} == first  # the three measured nodes were read back, not measured again
    assert len(second) > len(first)
    mixed = [m for m in said if m.startswith("evaluating qint8-x")]
    assert len(mixed) == 2 and task_names[0] in mixed[0]  # the first task of the ladder step finished and was stored
    before = shards()

    said.clear()
    doc = tune(cfg, say=said.append).to_dict()
    assert ranked() == second
    assert not [m for m in said if m.startswith(("exporting", "building"))]  # every file was built already
    evaluations = [m for m in said if m.startswith("evaluating ")]
    assert len(evaluations) == 1 and evaluations[0].startswith("evaluating qint8-x") and task_names[1] in evaluations[0]
    after = shards()
    assert {p: after[p] for p in before} == before  # nothing stored was written again; only the missing task's shards are new
    assert 0 < len(after) - len(before)
    [step] = [b for b in doc["builds"] if b["variant"] != "qint8"]
    per_query = stored_per_query(results)
    assert step["float_nodes"] == [CULPRIT] and step["gate"]["outcome"] == point_gate(per_query, step["variant"], MAX_DROP) == "pass"
    assert doc["recommended"] == step["variant"]


# -------------------------------------------------------------------------------------- the gate wins over the screen


def test_a_screen_fail_is_overruled_by_a_stored_full_result_that_passes(masked: World, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """MASKED qint8: the screen predicts a large loss (every document moved by another's drift), the full evaluation
    loses little. With that result stored, tune gates the start on it, keeps it and notes the disagreement."""
    max_drop = 0.05
    monkeypatch.chdir(tmp_path)
    common = ("--model", masked.model, "--tasks", masked.task_arg, "--cache-dir", masked.cache, "--results-dir", tmp_path / "r")
    masked.seed(tmp_path / "r")
    code, _, err = run_cli(monkeypatch, capsys, "run", "--variant", "qint8", *common)
    assert code == 0, err[-2000:]
    per_query = stored_per_query(tmp_path / "r")
    assert point_gate(per_query, "qint8", max_drop) == "pass"  # by hand, from the stored per-query values
    code, out, err = run_cli(monkeypatch, capsys, "tune", "--start", "qint8", "--max-drop", max_drop,
                             "--config", gate_config(tmp_path), "--bench-repeats", 2, *common)
    assert code == 0, err[-2000:]
    doc = json.loads((_tune_folder(tmp_path / "r") / "tune.json").read_text())
    [build] = doc["builds"]  # kept as it is: no ranking, no ladder
    assert build["screen"]["outcome"] == "fail"
    assert any(t["predicted_ci"][1] < -max_drop for t in build["screen"]["tasks"])  # a decided fail, not an uncertain one
    assert build["gate"]["outcome"] == "pass" and doc["recommended"] == "qint8" and doc["sensitivity"] == {}
    note = "qint8: the screen predicted fail, the gate on full results says pass"
    assert note in doc["notes"] and f"note: {note}" in out


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
