"""The drift screen: its sample, its numbers against independent computations, its verdicts, its command line."""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import cosine as scipy_cosine
from scipy.stats import norm

from clirun import environment, invoke, one_problem
from conftest import make_beir
from ranking import assert_within, ndcg_at_10_bounds
from readme_text import REPO, md_rows, readme_section
from evalsuite.errors import EvalsuiteError
from evalsuite.screen import Prediction, Screener, ScreenSample, draw, judge, overall, predict
from evalsuite.screen.drift import cosines, simulate, top_overlap


# --- the sample -----------------------------------------------------------------------------------------------------
def test_sample_is_deterministic_and_independent_of_file_order() -> None:
    queries, docs = [f"q{i}" for i in range(50)], [f"d{i}" for i in range(500)]
    s = ScreenSample(queries=20, documents=40)
    first = draw(queries, docs, s)
    shuffled_q, shuffled_d = queries[:], docs[:]
    random.Random(1).shuffle(shuffled_q)
    random.Random(2).shuffle(shuffled_d)
    assert draw(shuffled_q, shuffled_d, s) == first
    assert len(first.queries) == 20 and len(set(first.queries)) == 20 and set(first.queries) <= set(queries)
    assert len(first.documents) == 40 and len(set(first.documents)) == 40 and set(first.documents) <= set(docs)
    # A larger sample keeps every id of a smaller one, in the same order; another seed draws another sample.
    larger = draw(queries, docs, ScreenSample(queries=30, documents=80))
    assert larger.queries[:20] == first.queries and larger.documents[:40] == first.documents
    assert draw(queries, docs, ScreenSample(queries=20, documents=40, seed=1)) != first


def test_sample_takes_every_query_when_the_task_has_fewer() -> None:
    ids = draw(["a", "b", "c"], ["x", "y"], ScreenSample(queries=400, documents=96))
    assert sorted(ids.queries) == ["a", "b", "c"] and sorted(ids.documents) == ["x", "y"]


@pytest.mark.parametrize("kwargs", [{"queries": 0}, {"documents": 1}, {"draws": 1}, {"seed": -1}, {"confidence": 1.0},
                                    {"queries": 2.5}, {"documents": True}])
def test_bad_sample_settings_are_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(EvalsuiteError, match="sample"):
        ScreenSample(**kwargs)  # type: ignore[arg-type]


def test_duplicate_ids_are_an_error() -> None:
    with pytest.raises(EvalsuiteError, match="unique"):
        draw(["q", "q"], ["d1", "d2"], ScreenSample())


# --- the numbers, against independent computations --------------------------------------------------------------------
def test_cosines_match_scipy() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 16)), rng.normal(size=(30, 16))
    expected = [1 - scipy_cosine(x, y) for x, y in zip(a, b, strict=True)]
    assert np.allclose(cosines(a, b), expected, atol=1e-12)


def test_top10_overlap_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    qb, db = rng.normal(size=(20, 8)), rng.normal(size=(40, 8))
    qc, dc = qb + 0.3 * rng.normal(size=qb.shape), db + 0.3 * rng.normal(size=db.shape)

    def top10(q: np.ndarray, d: np.ndarray) -> set[int]:
        sims = [float(np.dot(q, x) / np.linalg.norm(q) / np.linalg.norm(x)) for x in d]
        return set(sorted(range(len(d)), key=lambda j: -sims[j])[:10])

    # Two computations of the similarities (a Python loop here, numpy's matrix product in the screen) agree to the
    # last bits only: the sets are well defined because no query has a near tie at its tenth place.
    for q, d in ((qb, db), (qc, dc)):
        for row in q:
            sims = sorted((float(np.dot(row, x) / np.linalg.norm(row) / np.linalg.norm(x)) for x in d), reverse=True)
            assert sims[9] - sims[10] > 1e-9
    expected = [len(top10(qb[i], db) & top10(qc[i], dc)) / 10 for i in range(20)]
    got = top_overlap(qb, db, qc, dc)
    assert np.allclose(got, expected) and 0 < got.mean() < 1


def _hand_ndcg10(sims: list[float], doc_ids: list[str], qrels: dict[str, int]) -> float:
    ranked = sorted(range(len(doc_ids)), key=lambda j: -sims[j])[:10]
    dcg = sum(qrels.get(doc_ids[j], 0) / math.log2(r + 2) for r, j in enumerate(ranked))
    ideal = sorted(qrels.values(), reverse=True)[:10]
    return dcg / sum(g / math.log2(r + 2) for r, g in enumerate(ideal))


def _hand_bounds(sims: list[float], doc_ids: list[str], qrels: dict[str, int], tol: float) -> tuple[float, float]:
    """NDCG@10 of the scores computed here, as the bounds over the orders of near ties (another computation of the
    same similarities, in the screen, may order them otherwise: tests/ranking.py)."""
    bounds = ndcg_at_10_bounds(dict(zip(doc_ids, sims, strict=True)), qrels, tol)
    assert_within(_hand_ndcg10(sims, doc_ids, qrels), bounds, abs_tol=1e-12)
    return bounds


def test_simulation_equals_moving_each_document_by_hand() -> None:
    rng = np.random.default_rng(2)
    n_q, n_d, dim = 12, 80, 16
    qb = rng.normal(size=(n_q, dim))
    qc = qb + 0.2 * rng.normal(size=qb.shape)
    db = rng.normal(size=(n_d, dim))
    residuals = 0.3 * rng.normal(size=(7, dim))
    qids, dids = [f"q{i}" for i in range(n_q)], [f"d{j}" for j in range(n_d)]
    qrels = {q: {dids[j]: int(rng.integers(1, 3)) for j in rng.choice(n_d, 3, replace=False)} for q in qids}
    base, deltas = simulate(qb, qc, db, residuals, qids, dids, qrels, draws=4, seed=5)

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x)

    picks = np.random.default_rng(5)
    for k in range(4):
        pick = picks.integers(0, len(residuals), size=n_d)
        moved = []
        for j in range(n_d):
            d, r = unit(db[j]), residuals[pick[j]]
            moved.append(unit(d + r - np.dot(r, d) * d))
        for i, q in enumerate(qids):
            b = _hand_bounds([float(np.dot(unit(qb[i]), unit(x))) for x in db], dids, qrels[q], 1e-9)
            c = _hand_bounds([float(np.dot(unit(qc[i]), x)) for x in moved], dids, qrels[q], 1e-9)
            assert_within(base[i], b, abs_tol=1e-12, what=q)
            assert_within(deltas[k, i], (c[0] - b[1], c[1] - b[0]), abs_tol=1e-12, what=(k, q))
    assert np.abs(deltas).max() > 0


def test_no_drift_predicts_exactly_no_change() -> None:
    rng = np.random.default_rng(3)
    qb, db = rng.normal(size=(10, 8)), rng.normal(size=(30, 8))
    qids, dids = [f"q{i}" for i in range(10)], [f"d{j}" for j in range(30)]
    qrels = {q: {dids[i]: 1} for i, q in enumerate(qids)}
    _, deltas = simulate(qb, qb, db, np.zeros((5, 8)), qids, dids, qrels, draws=3, seed=0)
    p = predict(deltas, 10, 0.95)
    assert not deltas.any() and (p.delta, p.ci_low, p.ci_high) == (0.0, 0.0, 0.0)
    assert judge(p, 0.0) == "pass"


# --- the prediction and the verdict ---------------------------------------------------------------------------------
def test_prediction_interval_by_hand() -> None:
    deltas = np.array([[0.0, -0.02, 0.01], [-0.01, -0.03, 0.0], [0.01, -0.01, 0.0], [0.0, -0.02, -0.01]])
    per_draw = [statistics.fmean(row) for row in deltas.tolist()]
    z = norm.ppf(0.975)
    sd_all = math.sqrt(statistics.variance(per_draw) * (1 + 1 / 4))  # every judged query screened: no sampling term
    p = predict(deltas, 3, 0.95)
    assert p.delta == pytest.approx(statistics.fmean(per_draw)) and p.sd == pytest.approx(sd_all)
    assert (p.ci_low, p.ci_high) == (pytest.approx(p.delta - z * sd_all), pytest.approx(p.delta + z * sd_all))
    # 3 of 10 judged queries: the finite-population sampling error of their mean is added.
    per_query = [statistics.fmean(col) for col in deltas.T.tolist()]
    sd_part = math.sqrt(statistics.variance(per_draw) * 1.25 + (10 - 3) / (10 - 1) * statistics.variance(per_query) / 3)
    assert predict(deltas, 10, 0.95).sd == pytest.approx(sd_part)
    with pytest.raises(ValueError):
        predict(deltas[:1], 3, 0.95)


@pytest.mark.parametrize(("low", "high", "outcome"), [
    (-0.01, 0.002, "pass"),          # the interval reaches the limit exactly: a delta of -max_drop passes the point rule
    (-0.0100001, 0.002, "uncertain"),
    (-0.03, -0.01, "uncertain"),     # the upper end at the limit could still pass
    (-0.03, -0.0100001, "fail"),
    (0.001, 0.004, "pass"),
])
def test_verdict_at_the_boundaries(low: float, high: float, outcome: str) -> None:
    assert judge(Prediction((low + high) / 2, 0.0, low, high, 0.95), 0.01) == outcome


def test_overall_verdict_is_per_task() -> None:
    assert overall(["pass", "pass"]) == "pass"
    assert overall(["pass", "uncertain"]) == "uncertain"
    assert overall(["uncertain", "fail"]) == "fail"


# --- end to end on a tiny model -------------------------------------------------------------------------------------
@pytest.fixture()
def beir_task(tmp_path: Path):  # noqa: ANN201
    from evalsuite.data.tasks import find_task

    folder = make_beir(tmp_path / "tinytask", n_docs=60, n_queries=12)
    return find_task(str(folder))


def test_screen_of_a_tiny_model_against_independent_numbers(tiny_source, shared_cache: Path, beir_task) -> None:  # noqa: ANN001
    from evalsuite.build import build_variant
    from evalsuite.data.beir import read_beir
    from evalsuite.encode import BatchPolicy, OnnxEncoder
    from evalsuite.variants import VariantSpec

    sample = ScreenSample(queries=400, documents=25, draws=4)
    screener = Screener(tiny_source, [beir_task], data_dir=None, cache_dir=shared_cache, sample=sample)
    same = screener.screen("float32", max_drop=0.0)
    t = same.tasks[0]
    assert same.outcome == "pass" and t.prediction.delta == 0.0 and t.query_cosine.min == pytest.approx(1.0)
    assert t.top10_overlap == 1.0 and (t.queries, t.judged_queries, t.documents, t.corpus) == (12, 12, 25, 60)

    result = screener.screen("qint8", max_drop=0.01)
    task = result.tasks[0]
    data = read_beir(Path(beir_task.beir_folder), "test")
    ids = draw(list(data.queries), list(data.corpus), sample)
    assert "unjudged" not in ids.queries and sorted(ids.queries) == sorted(data.qrels)
    texts = [(data.corpus[d]["title"] + " " + data.corpus[d]["text"]).strip() for d in ids.documents]
    queries = [data.queries[q] for q in ids.queries]
    embedded = {}
    for name in ("float32", "qint8"):
        art = build_variant(tiny_source, VariantSpec.parse(name), shared_cache)
        enc = OnnxEncoder(art, tiny_source, BatchPolicy(), cache_dir=None)
        embedded[name] = (enc.embed(queries, "query"), enc.embed(texts, "document"))
    q_cos = [1 - scipy_cosine(a, b) for a, b in zip(embedded["qint8"][0], embedded["float32"][0], strict=True)]
    d_cos = [1 - scipy_cosine(a, b) for a, b in zip(embedded["qint8"][1], embedded["float32"][1], strict=True)]
    assert task.query_cosine.mean == pytest.approx(statistics.fmean(q_cos), abs=1e-6)
    assert task.query_cosine.min == pytest.approx(min(q_cos), abs=1e-6)
    assert task.document_cosine.mean == pytest.approx(statistics.fmean(d_cos), abs=1e-6)
    assert task.document_cosine.p05 == pytest.approx(float(np.percentile(d_cos, 5)), abs=1e-6)
    assert task.document_cosine.mean < 1 - 1e-6  # int8 moved the embeddings: the comparison above is not vacuous
    f32_q = embedded["float32"][0]
    corpus = OnnxEncoder(build_variant(tiny_source, VariantSpec.parse("float32"), shared_cache), tiny_source,
                         cache_dir=None).embed([(d["title"] + " " + d["text"]).strip() for d in data.corpus.values()], "document")
    hand = [_hand_bounds([1 - scipy_cosine(q, d) for d in corpus], list(data.corpus), data.qrels[qid], 1e-6)
            for q, qid in zip(f32_q, ids.queries, strict=True)]
    assert_within(task.float32_ndcg_at_10, (statistics.fmean(lo for lo, _ in hand), statistics.fmean(hi for _, hi in hand)),
                  abs_tol=1e-6)
    assert result.outcome == judge(task.prediction, 0.01) and result.to_dict()["schema"] == "evalsuite.screen/1"


# --- the command line -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "needle"), [
    (["--documents", "1"], "--documents must be a whole number >= 2"),
    (["--max-drop", "1.5"], "--max-drop must be a number >= 0 and < 1"),
    (["--tasks", ""], "--tasks is empty"),
    (["--variant", "qint9"], "qint9"),
    ([], "pass --data-dir"),
])
def test_cli_errors_are_one_line(args: list[str], needle: str) -> None:
    line = one_problem(invoke("screen", *args))
    assert needle in line


def test_cli_json(tiny_model: Path, shared_cache: Path, beir_task) -> None:  # noqa: ANN001
    proc = invoke("screen", "--model", tiny_model, "--variant", "float16", "--tasks", beir_task.beir_folder, "--cache-dir",
                  shared_cache, "--documents", "20", "--draws", "3", "--json", env=environment())
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    (result,) = doc["results"]
    assert doc["schema"] == result["schema"] == "evalsuite.screen/1" and result["variant"] == "float16"
    (task,) = result["tasks"]
    assert task["documents"] == 20 and task["queries"] == 12 and result["sample"]["draws"] == 3
    assert task["predicted_ci"][0] <= task["predicted_delta"] <= task["predicted_ci"][1]
    assert result["outcome"] in ("pass", "fail", "uncertain")


def test_readme_screen_evidence_is_the_committed_benchmark() -> None:
    """README's screen table, cell for cell, and its headline figures from results/screen/all-MiniLM-L6-v2.json."""
    import json

    from scipy.stats import pearsonr

    section = readme_section("## Screening a candidate in seconds")
    doc = json.loads((REPO / "results" / "screen" / "all-MiniLM-L6-v2.json").read_text())

    def interval(row: dict, task: str) -> str:
        t = next(x for x in row["screen"]["tasks"] if x["task"] == task)
        return f"{t['predicted_delta']:+.4f} [{t['predicted_ci'][0]:+.4f}, {t['predicted_ci'][1]:+.4f}]"

    expected = [[r["variant"], interval(r, "NFCorpus"), f"{r['measured']['NFCorpus']:+.4f}", interval(r, "SciFact"),
                 f"{r['measured']['SciFact']:+.4f}", f"{r['screen']['predicted_macro_delta']:+.4f}", f"{r['measured_macro']:+.4f}",
                 r["screen"]["outcome"], r["gate"], f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}"] for r in doc["rows"]]
    rows = md_rows(section)[2:]
    assert rows == expected
    seed = [r for r in doc["rows"] if r["variant"] in {"float32", "float16", "quint8-pc-7bit", "qint8-pc-7bit", "qint8-pc", "qint8-7bit", "qint8"}]
    r_seed = pearsonr([r["screen"]["predicted_macro_delta"] for r in seed], [r["measured_macro"] for r in seed]).statistic
    prose = " ".join(section.split())
    assert f"**{r_seed:.4f}** over the 7 seed variants and **{doc['pearson_r']:.4f}** over all {len(doc['rows'])}" in prose
    assert f"{doc['seed_wall_s']:.1f} s wall ({doc['seed_cpu_s']:.1f} CPU s)" in prose
