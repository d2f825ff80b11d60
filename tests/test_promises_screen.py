"""README's promises about ``evalsuite screen`` (section "Screening a candidate in seconds"), on a model whose int8
builds really lose (tests/promise_world.py):

* ``screen --json``'s predicted NDCG@10 delta, its sd and interval, Float32's NDCG@10 and the verdict equal an
  independent implementation of the documented simulation (numpy and pytrec_eval, written here from the README);
* with every query screened, Float32's NDCG@10 is the full evaluation's (docs/screen-schema.md);
* exit code 0 whatever the verdict;
* no decided screen verdict is contradicted by the gate on the full evaluation, per build and per task, on builds
  that pass and builds that fail.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
from scipy.stats import norm

from promise_world import CULPRIT, World, point_gate, run_cli, stored_per_query, task_deltas

pytest_plugins = ["promise_world"]


# ------------------------------------------------------------------- an independent implementation of the screen


def read_folder(folder: Path, split: str = "test") -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """Documents (title and text joined, as mteb hands them to the encoder), judged queries and qrels of a BEIR folder."""
    docs = {}
    for line in (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            docs[str(d["_id"])] = f"{d['title']} {d['text']}".strip() if d.get("title") else d["text"].strip()
    qrels: dict[str, dict[str, int]] = {}
    for line in (folder / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        if line.strip():
            q, d, score = line.strip().split("\t")
            qrels.setdefault(q, {})[d] = int(score)
    queries = {}
    for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            q = json.loads(line)
            if str(q["_id"]) in qrels:
                queries[str(q["_id"])] = q["text"]
    return docs, queries, qrels


def hash_order(ids: list[str], seed: int, kind: str) -> list[str]:
    """The documented sample order: ids ranked by sha256 of (seed, kind, id)."""
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}\0{kind}\0{i}".encode()).digest())


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def ndcg10(query_vectors: np.ndarray, doc_vectors: np.ndarray, query_ids: list[str], doc_ids: list[str],
           qrels: dict[str, dict[str, int]]) -> np.ndarray:
    """Per-query NDCG@10 by pytrec_eval over a run that ranks every document by cosine (no top-k cut of our own)."""
    scores = unit(query_vectors) @ unit(doc_vectors).T
    run = {q: {d: float(s) for d, s in zip(doc_ids, row, strict=True)} for q, row in zip(query_ids, scores, strict=True)}
    result = pytrec_eval.RelevanceEvaluator({q: qrels[q] for q in query_ids}, {"ndcg_cut.10"}).evaluate(run)
    return np.array([result[q]["ndcg_cut_10"] for q in query_ids])


def simulate(q_base: np.ndarray, q_cand: np.ndarray, d_base: np.ndarray, residuals: np.ndarray, query_ids: list[str],
             doc_ids: list[str], qrels: dict[str, dict[str, int]], draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """README: the candidate's query embeddings search the whole Float32 corpus after every document has been moved by
    the drift of a sampled document, drawn with replacement and kept orthogonal to the document it moves. Each
    document is moved here explicitly (d + r - (r.d) d, renormalised) and the whole run is ranked by pytrec_eval."""
    base = ndcg10(q_base, d_base, query_ids, doc_ids, qrels)
    rng = np.random.default_rng(seed)  # same seed, same draws: the prediction is reproducible (README)
    d_unit = unit(d_base)
    deltas = []
    for _ in range(draws):
        pick = rng.integers(0, len(residuals), size=len(d_unit))
        r = residuals[pick]
        moved = d_unit + r - np.sum(r * d_unit, axis=1, keepdims=True) * d_unit
        deltas.append(ndcg10(q_cand, moved, query_ids, doc_ids, qrels) - base)
    return base, np.array(deltas)


def prediction(deltas: np.ndarray, judged: int, confidence: float) -> tuple[float, float, float, float]:
    """(delta, sd, low, high): the draws' mean; the sd of a new draw, plus the finite-population sampling error of the
    screened queries' mean when not every judged query was screened; mean +- z sd."""
    draws, n = deltas.shape
    per_draw = deltas.mean(axis=1)
    var = np.var(per_draw, ddof=1) * (1 + 1 / draws)
    if 1 < n < judged:
        var += (judged - n) / (judged - 1) * np.var(deltas.mean(axis=0), ddof=1) / n
    sd = math.sqrt(var)
    z = norm.ppf(0.5 + confidence / 2)
    return float(per_draw.mean()), sd, float(per_draw.mean() - z * sd), float(per_draw.mean() + z * sd)


def top10_overlap(q_base: np.ndarray, d_base: np.ndarray, q_cand: np.ndarray, d_cand: np.ndarray) -> float:
    """Mean over queries of |top 10 of Float32 & top 10 of the candidate| / 10 over the sampled documents."""
    a = np.argsort(-(unit(q_base) @ unit(d_base).T), axis=1, kind="stable")[:, :10]
    b = np.argsort(-(unit(q_cand) @ unit(d_cand).T), axis=1, kind="stable")[:, :10]
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b, strict=True)]))


# -------------------------------------------------------------------------------------------------------- tests


def test_screen_json_prediction_equals_an_independent_simulation(wiped: World, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """10 of 24 judged queries and 40 of 120 documents per task, 6 draws, seed 7, a lossy and a near-lossless build."""
    from evalsuite.build import build_variant
    from evalsuite.encode import BatchPolicy, OnnxEncoder
    from evalsuite.models import resolve_model
    from evalsuite.variants import BASELINE, VariantSpec

    code, out, err = run_cli(monkeypatch, capsys, "screen", "--variant", "qint8,int4-b16", "--model", wiped.model,
                             "--tasks", wiped.task_arg, "--cache-dir", wiped.cache, "--queries", 10, "--documents", 40,
                             "--draws", 6, "--seed", 7, "--max-drop", 0.02, "--json")
    assert code == 0, err[-2000:]
    doc = json.loads(out)
    source = resolve_model(str(wiped.model))

    def encoder(variant: str) -> OnnxEncoder:  # the embeddings the screen uses: the full evaluation's batch policy
        return OnnxEncoder(build_variant(source, VariantSpec.parse(variant), wiped.cache), source, BatchPolicy(), cache_dir=None)

    f32 = encoder(BASELINE.name)
    checked = 0
    for result in doc["results"]:
        cand = encoder(result["variant"])
        assert [t["task"].split("-")[0] for t in result["tasks"]] == [t.name for t in wiped.tasks]
        for task, folder in zip(result["tasks"], wiped.tasks, strict=True):
            docs, queries, qrels = read_folder(folder)
            doc_ids, judged = list(docs), list(queries)
            q_ids, d_ids = hash_order(judged, 7, "query")[:10], hash_order(doc_ids, 7, "document")[:40]
            q_base = f32.embed([queries[q] for q in judged], "query")[[judged.index(q) for q in q_ids]]
            d_base = f32.embed([docs[d] for d in doc_ids], "document")
            q_cand = cand.embed([queries[q] for q in q_ids], "query")
            d_cand = cand.embed([docs[d] for d in d_ids], "document")
            d_rows = [doc_ids.index(d) for d in d_ids]
            base, deltas = simulate(q_base, q_cand, d_base, unit(d_cand) - unit(d_base[d_rows]), q_ids, doc_ids, qrels, 6, 7)
            delta, sd, low, high = prediction(deltas, len(judged), 0.95)
            assert (task["queries"], task["judged_queries"], task["documents"], task["corpus"]) == (10, 24, 40, 120)
            assert task["float32_ndcg_at_10"] == pytest.approx(base.mean(), abs=1e-9)
            assert task["predicted_delta"] == pytest.approx(delta, abs=1e-9)
            assert task["predicted_sd"] == pytest.approx(sd, rel=1e-6, abs=1e-12)
            assert task["predicted_ci"] == pytest.approx([low, high], abs=1e-9)
            assert task["outcome"] == ("pass" if low >= -0.02 else "fail" if high < -0.02 else "uncertain")
            assert task["top10_overlap"] == pytest.approx(top10_overlap(q_base, d_base[d_rows], q_cand, d_cand), abs=1e-12)
            checked += 1
        macro = sum(t["predicted_delta"] for t in result["tasks"]) / len(result["tasks"])
        assert result["predicted_macro_delta"] == pytest.approx(macro, abs=1e-12)
    by_variant = {r["variant"]: r for r in doc["results"]}
    assert by_variant["qint8"]["outcome"] == "fail" and max(t["predicted_delta"] for t in by_variant["qint8"]["tasks"]) < -0.1
    assert checked == 4


def test_with_every_query_screened_float32_ndcg_is_the_full_evaluations(wiped: World, monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "screen", "--variant", "float16", "--model", wiped.model,
                             "--tasks", wiped.task_arg, "--cache-dir", wiped.cache, "--draws", 2, "--json")
    assert code == 0, err[-2000:]
    [result] = json.loads(out)["results"]
    full = {}
    for path in wiped.float32_results.rglob("float32.json"):
        stored = json.loads(path.read_text())
        full[stored["task"]["name"]] = stored["ndcg_at_10"]
    assert {t["task"]: t["float32_ndcg_at_10"] for t in result["tasks"]} == pytest.approx(full, abs=1e-9)
    assert all(t["queries"] == t["judged_queries"] for t in result["tasks"])


def test_screen_exits_0_on_a_fail(wiped: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "screen", "--variant", "qint8", "--model", wiped.model,
                             "--tasks", wiped.task_arg, "--cache-dir", wiped.cache, "--draws", 4)
    assert code == 0, err[-2000:]
    assert [line for line in out.splitlines() if line.startswith("FAIL: a predicted interval lies wholly beyond")]
    assert "FAIL" in [cell.strip() for line in out.splitlines() for cell in line.split("│")]  # the per-task table says so too


def test_no_decided_screen_verdict_is_contradicted_by_the_gate(wiped: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Three builds on two tasks, screened with the default sample and evaluated in full: the lossy qint8, the same
    build with its culprit node in float (a mixed build, near-lossless), and int4 (small, real drift). Every pass or
    fail the screen decides, per build and per task, is the gate's verdict on the full results."""
    from evalsuite.models import resolve_model
    from evalsuite.variants.float_nodes import MixedConfig

    max_drop = 0.02
    monkeypatch.chdir(tmp_path)  # configs/mixed/ is read from the working directory
    source = resolve_model(str(wiped.model))
    MixedConfig("fixed", source.model_id, source.weights_sha256, "qint8", (CULPRIT,)).write()
    variants = ["qint8", "qint8-xfixed", "int4-b16"]
    common = ("--model", wiped.model, "--tasks", wiped.task_arg, "--cache-dir", wiped.cache)
    code, out, err = run_cli(monkeypatch, capsys, "screen", "--variant", ",".join(variants), "--max-drop", max_drop, *common, "--json")
    assert code == 0, err[-2000:]
    screens = {r["variant"]: r for r in json.loads(out)["results"]}
    results = tmp_path / "results"
    wiped.seed(results)
    code, _, err = run_cli(monkeypatch, capsys, "run", "--variant", ",".join(variants), *common, "--results-dir", results)
    assert code == 0, err[-2000:]
    per_query = stored_per_query(results)
    decided = {"pass": 0, "fail": 0}
    for variant in variants:
        code, _, _ = run_cli(monkeypatch, capsys, "gate", "--variant", variant, "--max-drop", max_drop, "--rule", "point",
                             "--per-task", "--results-dir", results, "--model", wiped.model)
        verdict = point_gate(per_query, variant, max_drop)  # by hand, from the stored per-query values
        assert code == {"pass": 0, "fail": 1}[verdict]
        screen = screens[variant]
        if screen["outcome"] != "uncertain":
            assert screen["outcome"] == verdict, variant
            decided[verdict] += 1
        measured = task_deltas(per_query, variant)
        for task in screen["tasks"]:
            if task["outcome"] == "pass":
                assert measured[task["task"]] >= -max_drop, (variant, task["task"])
            elif task["outcome"] == "fail":
                assert measured[task["task"]] < -max_drop, (variant, task["task"])
    assert decided["pass"] >= 1 and decided["fail"] >= 1  # both kinds of verdict were put to the test
