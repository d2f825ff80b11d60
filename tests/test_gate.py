"""The release gate on synthetic stored results: config, rules, scopes, missing results, and the CLI's exit codes."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from evalsuite import cli
from evalsuite.errors import EvalsuiteError
from evalsuite.analysis.gate import GateConfig, MissingResults, gate, judge_check, load_results
from evalsuite.results import ResultStore, RunResult, TaskRef
from evalsuite.analysis.stats import PairedComparison
from evalsuite.variants import VariantSpec

MODEL = "org/tiny-model"


POLICY = {"batch_size": 32, "query_batch_size": 1, "order": "length", "key": "docs32-q1-length"}
ENCODING = {"max_seq_length": 256, "pooling": "mean", "normalize": True, "query_prefix": "", "document_prefix": ""}


def make_result(task: str, variant: str, scores: dict[str, float], model_id: str = MODEL, weights: str = "w" * 64,
                size: int = 1_000_000, policy: dict[str, object] | None = None,
                encoding: dict[str, object] | None = None) -> RunResult:
    """A stored result as `evalsuite run` writes it, with made-up per-query NDCG@10."""
    ref = TaskRef(name=task, mteb_name=task, split="test", source="local:x", fingerprint="data", n_documents=100,
                  n_queries=len(scores))
    mean = math.fsum(scores.values()) / len(scores)
    return RunResult(model_id=model_id, model_slug=model_id.replace("/", "__"), weights_sha256=weights, variant=variant,
                     onnx_sha256=f"onnx-{variant}", onnx_size_bytes=size, task=ref, encoding=encoding or ENCODING,
                     batch_policy=policy or POLICY, main_score="ndcg_at_10", ndcg_at_10=mean,
                     scores={"ndcg_at_10": round(mean, 5)}, per_query_ndcg_at_10=scores, timings={}, versions={},
                     machine={}, created="2026-01-01T00:00:00+00:00", command="", identity=f"id-{task}-{variant}")


def baseline_scores(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.2, 0.8, n)


def write_variant(root: Path, variant: str, deltas: dict[str, np.ndarray], **kw: object) -> None:
    """Store Float32 (fixed per task) and ``variant`` = Float32 + deltas, per task; a batch-dependent variant under each
    of the gate's default batch compositions, with the same deltas (so its mean over them is those deltas)."""
    store = ResultStore(root)
    compositions = GateConfig().compositions if VariantSpec.parse(variant).kind.batch_dependent else 1
    for k, (task, d) in enumerate(sorted(deltas.items())):
        base = baseline_scores(d.size, seed=k)
        ids = [f"{task[:1]}{i}" for i in range(d.size)]
        store.put(make_result(task, "float32", dict(zip(ids, base.tolist(), strict=True)), **kw))  # type: ignore[arg-type]
        for c in range(compositions):
            policy = {**(kw.get("policy") or POLICY)}  # type: ignore[dict-item]
            if c:
                policy.update(composition=c, key=f"{policy['key']}-c{c}")
            store.put(make_result(task, variant, dict(zip(ids, (base + d).tolist(), strict=True)),  # type: ignore[arg-type]
                                  **{**kw, "policy": policy}))


def noisy(mean: float, sd: float, n: int, seed: int) -> np.ndarray:
    """Deltas with exactly this mean (so the point rule's answer is known) and spread ``sd``."""
    x = np.random.default_rng(seed).normal(0.0, sd, n)
    return x - x.mean() + mean


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    """SciFact (40 queries) and NFCorpus (30): float16 equal, qint8-7bit -0.02 everywhere, qint8-pc noisy -0.012,
    qint8 failing on SciFact only (-0.02) but fine on the mean (+0.012 on NFCorpus)."""
    root = tmp_path / "results"
    write_variant(root, "float16", {"SciFact": np.zeros(40), "NFCorpus": np.zeros(30)})
    write_variant(root, "qint8-7bit", {"SciFact": np.full(40, -0.02), "NFCorpus": np.full(30, -0.02)})
    write_variant(root, "qint8-pc", {"SciFact": noisy(-0.012, 0.08, 40, 1), "NFCorpus": noisy(-0.012, 0.08, 30, 2)})
    write_variant(root, "qint8", {"SciFact": noisy(-0.02, 0.002, 40, 3), "NFCorpus": noisy(0.012, 0.002, 30, 4)})
    return root


def comparison(delta: float, low: float, high: float, baseline: float = 0.5) -> PairedComparison:
    return PairedComparison(n_queries=10, mean_variant=baseline + delta, mean_baseline=baseline, mean_delta=delta,
                            relative_delta=delta / baseline, ci_low=low, ci_high=high, p_value=0.5, better=0, worse=0,
                            equal=10, confidence=0.95, n_resamples=10_000, seed=0)


# ---------------------------------------------------------------------------------------------------- config


def test_shipped_config_is_the_documented_default() -> None:
    assert GateConfig.load() == GateConfig()
    assert GateConfig().max_drop == 0.01 and GateConfig().speed_length == 128


def test_config_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text("max_drop: 0.02\nrule: ci\ntasks: [SciFact]\n")
    cfg = GateConfig.load(path)
    assert (cfg.max_drop, cfg.rule, cfg.tasks, cfg.scope) == (0.02, "ci", ("SciFact",), "per-task")
    assert cfg.override(max_drop=0.005, rule=None).max_drop == 0.005
    assert cfg.override(max_drop=0.005, rule=None).rule == "ci"


@pytest.mark.parametrize(("text", "message"), [
    ("max_dorp: 0.01\n", "did you mean 'max_drop'"),
    ("max_drop: -0.1\n", "max_drop must be a number >= 0"),
    ("confidence: '0.9'\n", "confidence must be a number"),
    ("relative: 'yes'\n", "relative must be true or false"),
    ("relative: true\nmax_drop: 1\n", "fraction"),
    ("rule: strict\n", "rule must be 'point' or 'ci'"),
    ("scope: all\n", "scope must be"),
    ("n_resamples: 100\n", "at least 10000"),
    ("seed: 1.5\n", "seed must be an integer"),
    ("max_drop: [0.01\n", r"gate.yaml:2: invalid YAML in gate config"),
])
def test_bad_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(text)
    with pytest.raises(EvalsuiteError, match=message):
        GateConfig.load(path)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(EvalsuiteError, match="gate config not found"):
        GateConfig.load(tmp_path / "nope.yaml")


# ---------------------------------------------------------------------------------------------------- rules


def test_point_rule_boundary_absolute() -> None:
    cfg = GateConfig(max_drop=0.01)
    assert judge_check(comparison(-0.0099, -0.05, 0.03), cfg, "T").outcome == "pass"
    assert judge_check(comparison(-0.0101, -0.0102, -0.0100), cfg, "T").outcome == "fail"
    assert judge_check(comparison(0.004, 0.0, 0.01), cfg, "T").reason.startswith("gain 0.0040")


def test_point_rule_relative_limit_is_a_fraction_of_float32() -> None:
    cfg = GateConfig(max_drop=0.02, relative=True)  # 2% of 0.5 = 0.01
    check = judge_check(comparison(-0.0105, -0.02, 0.0), cfg, "T")
    assert check.outcome == "fail" and check.limit == pytest.approx(0.01)
    assert judge_check(comparison(-0.0095, -0.02, 0.0), cfg, "T").outcome == "pass"


@pytest.mark.parametrize(("low", "high", "outcome"), [
    (-0.030, -0.011, "fail"),          # the whole CI is beyond -0.01: the loss is established
    (-0.009, 0.002, "pass"),           # the whole CI is within the limit
    (-0.020, -0.005, "inconclusive"),  # straddles -0.01
    (-0.020, 0.010, "inconclusive"),
])
def test_ci_rule(low: float, high: float, outcome: str) -> None:
    check = judge_check(comparison((low + high) / 2, low, high), GateConfig(max_drop=0.01, rule="ci"), "T")
    assert check.outcome == outcome


def test_a_drop_of_exactly_max_drop_passes() -> None:
    """``pass when delta >= -max_drop``: the limit itself is allowed (absolute, and relative: 2% of 0.5 is 0.01)."""
    assert judge_check(comparison(-0.01, -0.02, 0.0), GateConfig(max_drop=0.01), "T").outcome == "pass"
    assert judge_check(comparison(-0.01, -0.02, 0.0), GateConfig(max_drop=0.02, relative=True), "T").outcome == "pass"
    assert judge_check(comparison(-0.03, -0.01, 0.01), GateConfig(max_drop=0.01, rule="ci"), "T").outcome == "pass"
    assert judge_check(comparison(-0.03, -0.05, -0.01), GateConfig(max_drop=0.01, rule="ci"), "T").outcome == "inconclusive"


@pytest.mark.parametrize(("low", "high", "outcome"), [
    (-0.012, -0.011, "fail"),  # the whole CI is beyond -0.01
    (-0.009, 0.002, "pass"),
    (-0.011, 0.002, "inconclusive"),
])
def test_ci_rule_with_a_relative_limit(low: float, high: float, outcome: str) -> None:
    """2% of Float32's 0.5 is a limit of 0.01; read as absolute, 0.02 would pass all three."""
    check = judge_check(comparison((low + high) / 2, low, high), GateConfig(max_drop=0.02, relative=True, rule="ci"), "T")
    assert check.outcome == outcome and check.limit == pytest.approx(0.01)


# ---------------------------------------------------------------------------------------------------- gate on stored results


def test_constant_drop_fails_and_equal_variant_passes(results: Path) -> None:
    bad = gate("qint8-7bit", GateConfig(max_drop=0.01), results)
    assert bad.outcome == "fail" and not bad.passed
    assert [(c.scope, c.outcome, c.decides) for c in bad.checks] == [
        ("NFCorpus", "fail", True), ("SciFact", "fail", True), ("mean", "fail", False)]
    assert bad.checks[0].comparison.mean_delta == pytest.approx(-0.02)
    good = gate("float16", GateConfig(max_drop=0.01), results)
    assert good.outcome == "pass" and good.passed
    assert gate("qint8-7bit", GateConfig(max_drop=0.03), results).passed


def test_ci_rule_on_noisy_results_is_inconclusive_not_failing(results: Path) -> None:
    point = gate("qint8-pc", GateConfig(max_drop=0.01), results)
    assert point.outcome == "fail"  # -0.012 < -0.01
    ci = gate("qint8-pc", GateConfig(max_drop=0.01, rule="ci"), results)
    assert ci.outcome == "inconclusive" and ci.passed
    for check in ci.checks:
        c = check.comparison
        assert c.ci_low < -0.01 < c.ci_high
    assert gate("qint8-7bit", GateConfig(max_drop=0.01, rule="ci"), results).outcome == "fail"


def test_scope_per_task_versus_mean(results: Path) -> None:
    per_task = gate("qint8", GateConfig(max_drop=0.01), results)
    assert per_task.outcome == "fail" and "SciFact" in per_task.reason and "NFCorpus" not in per_task.reason
    mean = gate("qint8", GateConfig(max_drop=0.01, scope="mean"), results)
    assert mean.outcome == "pass"
    assert mean.checks[-1].comparison.mean_delta == pytest.approx((-0.02 + 0.012) / 2)


def test_tasks_restrict_the_gate(results: Path) -> None:
    verdict = gate("qint8", GateConfig(max_drop=0.01, tasks=("nfcorpus",)), results)
    assert verdict.outcome == "pass" and [c.scope for c in verdict.checks] == ["NFCorpus", "mean"]
    with pytest.raises(MissingResults, match="no Float32 result on task 'FiQA2018'"):
        gate("qint8", GateConfig(tasks=("FiQA2018",)), results)


def test_missing_and_unknown_variants(results: Path) -> None:
    with pytest.raises(MissingResults, match="no results for variant 'quint8'.*complete variants: float32, float16"):
        gate("quint8", GateConfig(), results)
    with pytest.raises(EvalsuiteError, match="unknown dtype 'qint9'"):
        gate("qint9-pc", GateConfig(), results)
    with pytest.raises(MissingResults, match="no results in"):
        gate("float16", GateConfig(), results.parent / "empty")


def test_variant_missing_one_task_cannot_be_gated(results: Path) -> None:
    ResultStore(results).path(MODEL.replace("/", "__"), "NFCorpus", "qint8-pc").unlink()
    with pytest.raises(MissingResults, match="'qint8-pc' .* on NFCorpus"):
        gate("qint8-pc", GateConfig(), results)


def test_stale_or_mismatched_results_are_refused(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.put(make_result("SciFact", "float32", {"a": 0.5, "b": 0.4}))
    store.put(make_result("SciFact", "float16", {"a": 0.5, "b": 0.4}, weights="x" * 64))
    with pytest.raises(EvalsuiteError, match="different weights"):
        gate("float16", GateConfig(), tmp_path)
    store.put(make_result("SciFact", "float16", {"a": 0.5, "c": 0.4}))
    with pytest.raises(EvalsuiteError, match="different queries"):
        gate("float16", GateConfig(), tmp_path)


@pytest.mark.parametrize(("change", "message"), [
    ({"policy": {"batch_size": 1, "query_batch_size": 1, "order": "length", "key": "docs1-q1-length"}},
     r"float16 and float32 on SciFact were computed under different batch policies \(float16: docs1-q1-length, "
     r"float32: docs32-q1-length\); re-run `evalsuite run --variant float16 --batch-size 32 --query-batch-size 1 "
     r"--order length` to evaluate it under float32's policy$"),
    ({"policy": {"batch_size": 32, "query_batch_size": 32, "order": "length", "key": "docs32-q32-length"}},
     r"float16: docs32-q32-length, float32: docs32-q1-length"),
    ({"encoding": {**ENCODING, "query_prefix": "query: "}},
     r"computed with different encoding settings \(float16 vs float32: query_prefix 'query: ' vs ''\); "
     r"re-run `evalsuite run --variant float16`"),
], ids=["batch size", "query batch size", "query prefix"])
def test_results_of_another_policy_or_encoding_are_refused(tmp_path: Path, change: dict[str, dict[str, object]],
                                                            message: str, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Equal per-query numbers, but computed under other settings: the delta would belong to no single setting."""
    store = ResultStore(tmp_path)
    store.put(make_result("SciFact", "float32", {"a": 0.5, "b": 0.4}))
    store.put(make_result("SciFact", "float16", {"a": 0.5, "b": 0.4}, **change))  # type: ignore[arg-type]
    with pytest.raises(EvalsuiteError, match=message):
        gate("float16", GateConfig(), tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "gate", "-v", "float16", "--results-dir", str(tmp_path))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    store.put(make_result("SciFact", "float16", {"a": 0.5, "b": 0.4}))  # refreshed under Float32's settings
    assert gate("float16", GateConfig(), tmp_path).passed


def test_several_models_need_a_choice(results: Path) -> None:
    write_variant(results, "float16", {"SciFact": np.zeros(5)}, model_id="other/model")
    with pytest.raises(EvalsuiteError, match="2 models.*--model"):
        load_results(results)
    assert load_results(results, "other/model").tasks == ["SciFact"]
    assert load_results(results, "org__tiny-model").model_id == MODEL
    with pytest.raises(MissingResults, match="no results for model 'nobody/x'"):
        load_results(results, "nobody/x")


def test_run_computes_missing_results_then_judges(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def compute() -> tuple[str, list[str]]:
        calls.append(1)
        write_variant(results, "quint8-pc-7bit", {"SciFact": np.full(40, -0.001), "NFCorpus": np.full(30, 0.0)})
        return MODEL, ["SciFact", "NFCorpus"]

    verdict = gate("quint8-pc-7bit", GateConfig(), results, compute=compute)
    assert verdict.outcome == "pass" and len(calls) == 1
    gate("quint8-pc-7bit", GateConfig(), results, compute=compute)
    assert len(calls) == 1  # stored now: no second evaluation


# ---------------------------------------------------------------------------------------------------- CLI


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["evalsuite", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_cli_exit_codes_and_lines(results: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(monkeypatch, capsys, "gate", "--variant", "qint8-7bit", "--max-drop", "0.01", "--results-dir", str(results))
    lines = out.strip().splitlines()
    assert code == 1
    assert lines[1].startswith("FAIL") and "NFCorpus" in lines[1] and "drop 0.0200 > max drop 0.0100" in lines[1]
    assert lines[2].startswith("FAIL") and "SciFact" in lines[2]
    assert lines[-1].startswith("FAIL: qint8-7bit")

    code, out, _ = run_cli(monkeypatch, capsys, "gate", "-v", "float16", "--max-drop", "0.01", "--results-dir", str(results))
    assert code == 0 and out.strip().splitlines()[-1].startswith("PASS: float16")

    code, out, err = run_cli(monkeypatch, capsys, "gate", "-v", "quint8", "--results-dir", str(results))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "no results for variant 'quint8'" in err

    code, _, err = run_cli(monkeypatch, capsys, "gate", "-v", "qint8", "--rule", "exact", "--results-dir", str(results))
    assert code == 2 and "rule must be 'point' or 'ci'" in err and "Traceback" not in err


def test_cli_options_override_the_config(results: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("gate", "-v", "qint8", "--results-dir", str(results))
    assert run_cli(monkeypatch, capsys, *args)[0] == 1
    assert run_cli(monkeypatch, capsys, *args, "--mean")[0] == 0
    assert run_cli(monkeypatch, capsys, *args, "--tasks", "NFCorpus")[0] == 0
    # A relative limit of 10% of Float32's NDCG@10 (about 0.5 here) allows SciFact's -0.02.
    assert run_cli(monkeypatch, capsys, *args, "--relative", "--max-drop", "0.1")[0] == 0
    assert run_cli(monkeypatch, capsys, *args, "--rule", "ci", "--max-drop", "0.019")[0] == 1


def test_cli_json_verdict(results: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(monkeypatch, capsys, "gate", "-v", "qint8-pc", "--rule", "ci", "--json", "--results-dir", str(results))
    doc = json.loads(out)
    assert code == 0
    assert (doc["schema"], doc["variant"], doc["outcome"], doc["passed"]) == ("evalsuite.gate/1", "qint8-pc", "inconclusive", True)
    assert [c["scope"] for c in doc["checks"]] == ["NFCorpus", "SciFact", "mean"]
    assert doc["checks"][0]["mean_delta"] == pytest.approx(-0.012)
    assert doc["config"]["rule"] == "ci" and doc["config"]["max_drop"] == 0.01


def test_cli_gate_at_exactly_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Per-query scores that are exact in binary: the delta is exactly -0.25."""
    store = ResultStore(tmp_path)
    store.put(make_result("SciFact", "float32", {"a": 0.75, "b": 0.5}))
    store.put(make_result("SciFact", "qint8", {"a": 0.5, "b": 0.25}))
    args = ("gate", "-v", "qint8", "--compositions", "1", "--results-dir", str(tmp_path), "--max-drop")
    assert run_cli(monkeypatch, capsys, *args, "0.25")[0] == 0
    assert run_cli(monkeypatch, capsys, *args, "0.2499")[0] == 1


def test_cli_ci_rule_with_relative_limit(results: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """qint8-7bit loses exactly 0.02 on every query (a point CI). The limit is a fraction of each task's Float32."""
    store = ResultStore(results)
    base = {t: float(np.mean(list(store.get(MODEL.replace("/", "__"), t, "float32").per_query_ndcg_at_10.values())))  # type: ignore[union-attr]
            for t in ("NFCorpus", "SciFact")}
    for fraction in (0.03, 0.05):
        code, out, _ = run_cli(monkeypatch, capsys, "gate", "-v", "qint8-7bit", "--rule", "ci", "--relative",
                               "--max-drop", str(fraction), "--json", "--results-dir", str(results))
        checks = {c["scope"]: c for c in json.loads(out)["checks"]}
        for task, mean in base.items():
            assert checks[task]["limit"] == pytest.approx(fraction * mean, abs=1e-12)
            assert checks[task]["outcome"] == ("fail" if -0.02 < -fraction * mean else "pass")
        assert code == (1 if any(-0.02 < -fraction * m for m in base.values()) else 0)
    assert min(base.values()) * 0.05 > 0.02 > max(base.values()) * 0.03  # so the two fractions test both outcomes


def test_cli_gate_run_evaluates_missing_results_then_judges(tiny_model: Path, shared_cache: Path, beir_dir: Path,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """``gate --run`` evaluates the variant (under each batch composition) and Float32 with the CLI's folders, then
    judges the mean delta of the stored per-query numbers (computed here with numpy), and evaluates nothing the second
    time."""
    results = tmp_path / "results"
    args = ("gate", "-v", "qint8", "--model", str(tiny_model), "--tasks", "scifact", "--results-dir", str(results),
            "--json")
    code, _, err = run_cli(monkeypatch, capsys, *args, "--max-drop", "0")
    assert code == 2 and "no results" in err  # without --run nothing is evaluated
    run = ("--run", "--data-dir", str(beir_dir), "--cache-dir", str(shared_cache))
    code, out, err = run_cli(monkeypatch, capsys, *args, *run, "--max-drop", "0")
    files = {p.name: json.loads(p.read_text()) for p in results.glob("*/SciFact/*.json")}
    k = GateConfig().compositions
    assert sorted(files) == ["float32.json", *(f"qint8.c{c}.json" for c in range(1, k)), "qint8.json"], err
    b = files["float32.json"]["per_query_ndcg_at_10"]
    per_composition = []
    for name in ["qint8.json", *(f"qint8.c{c}.json" for c in range(1, k))]:
        v = files[name]["per_query_ndcg_at_10"]
        assert v.keys() == b.keys() and len(v) == 12
        per_composition.append(np.mean([v[q] - b[q] for q in v]))
    delta = float(np.mean(per_composition))
    assert delta < 0  # qint8 of the tiny model changes the ranking of some queries: a verdict that can go both ways
    doc = json.loads(out)
    assert doc["checks"][0]["scope"] == "SciFact" and doc["checks"][0]["mean_delta"] == pytest.approx(delta, abs=1e-12)
    assert code == 1 and doc["outcome"] == "fail"  # any loss fails a max drop of 0
    stamps = {p: p.stat().st_mtime_ns for p in results.rglob("*.json")}
    assert run_cli(monkeypatch, capsys, *args, *run, "--max-drop", str(-delta * 1.01))[0] == 0
    assert run_cli(monkeypatch, capsys, *args, *run, "--max-drop", str(-delta * 0.99))[0] == 1
    assert {p: p.stat().st_mtime_ns for p in results.rglob("*.json")} == stamps  # stored now: nothing re-evaluated
