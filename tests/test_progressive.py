"""Progressive evaluation: predictions from a partly encoded corpus, the stopping rule, and the run it must equal.

The prediction is checked against a brute-force NDCG@10 (numpy scores, pytrec_eval) at full coverage and against its
definition on a hand-made corpus; the stopping rule against hand-computed quantiles and a sequence of intervals that
crosses the threshold late; the whole mechanism on the tiny model against a plain ``run`` (per query, bit for bit, and
the same cache shards), and across an interrupt.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
from conftest import make_beir
from scipy.stats import norm

from evalsuite.data.tasks import find_task
from evalsuite.encode import BatchPolicy
from evalsuite.models import model_slug
from evalsuite.results import ResultStore
from evalsuite.run import SweepConfig, run_sweep
from evalsuite.screen import progressive as progressive_module
from evalsuite.screen.partial import PartialCorpus
from evalsuite.screen.progressive import Progressive
from evalsuite.screen.stopping import StoppingRule
from evalsuite.variants import VariantSpec


# --- the prediction -----------------------------------------------------------------------------------------------

def _world(seed: int = 0, n: int = 600, q: int = 40, dim: int = 16):  # noqa: ANN202
    rng = np.random.default_rng(seed)
    docs = rng.normal(size=(n, dim))
    queries = rng.normal(size=(q, dim))
    qrels = {}
    for i in range(q):
        relevant = rng.choice(n, 3, replace=False)
        docs[relevant] += 1.2 * queries[i]
        qrels[f"q{i}"] = {f"d{j}": int(g) for j, g in zip(relevant, (2, 1, 1), strict=True)}
    cand_docs = docs + rng.normal(scale=0.25, size=docs.shape)
    cand_queries = queries + rng.normal(scale=0.25, size=queries.shape)
    return docs, queries, cand_docs, cand_queries, qrels


def _brute_ndcg(queries: np.ndarray, docs: np.ndarray, qrels: dict) -> np.ndarray:
    """NDCG@10 per query from the full score matrix, written independently of evalsuite."""
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    dn = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    scores = qn @ dn.T
    run = {f"q{i}": {f"d{j}": float(scores[i, j]) for j in np.argsort(-scores[i])[:10]} for i in range(len(queries))}
    result = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    return np.array([result[f"q{i}"]["ndcg_cut_10"] for i in range(len(queries))])


def test_at_full_coverage_the_prediction_is_the_exact_delta() -> None:
    docs, queries, cand_docs, cand_queries, qrels = _world()
    corpus = PartialCorpus(cand_queries, queries, docs, [f"q{i}" for i in range(40)], [f"d{j}" for j in range(600)], qrels)
    corpus.add(np.arange(600), cand_docs)
    deltas = corpus.predict(draws=8, seed=0)
    assert deltas.shape == (1, 40)  # nothing left to draw: one exact corpus
    expected = _brute_ndcg(cand_queries, cand_docs, qrels) - _brute_ndcg(queries, docs, qrels)
    assert np.allclose(deltas[0], expected, atol=1e-9)


def test_known_documents_are_exact_and_unknown_ones_move_within_the_bound() -> None:
    docs, queries, cand_docs, cand_queries, qrels = _world(seed=1)
    corpus = PartialCorpus(cand_queries, queries, docs, [f"q{i}" for i in range(40)], [f"d{j}" for j in range(600)], qrels)
    half = np.random.default_rng(2).permutation(600)[:300]
    corpus.add(half, cand_docs[half])
    qn = cand_queries / np.linalg.norm(cand_queries, axis=1, keepdims=True)
    cn = cand_docs / np.linalg.norm(cand_docs, axis=1, keepdims=True)
    assert np.allclose(corpus.scores[:, half], qn @ cn[half].T, atol=1e-5)
    fn = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    unknown = np.setdiff1d(np.arange(600), half)
    assert np.allclose(corpus.scores[:, unknown], qn @ fn[unknown].T, atol=1e-5)  # not encoded: Float32's documents
    assert math.isclose(corpus.coverage, 0.5)
    a, b = corpus.predict(draws=16, seed=5), corpus.predict(draws=16, seed=5)
    assert np.array_equal(a, b)  # seeded: the same computation twice
    assert a.shape == (16, 40) and np.std(a.mean(axis=1)) > 0  # different corpora per draw
    # A change drawn for an unknown document is an encoded document's change: with no drift anywhere, nothing moves.
    still = PartialCorpus(queries, queries, docs, [f"q{i}" for i in range(40)], [f"d{j}" for j in range(600)], qrels)
    still.add(half, docs[half])
    assert np.allclose(still.predict(draws=4, seed=0), 0.0, atol=1e-12)


# --- the stopping rule ------------------------------------------------------------------------------------------

def test_spending_and_quantiles_by_hand() -> None:
    rule = StoppingRule(alpha=0.01, min_coverage=0.1, step=0.05)
    spent = 0.01 * math.log(1 + (math.e - 1) * 0.1)
    assert rule.spent(0.1) == pytest.approx(spent)
    assert rule.z(0.0, 0.1) == pytest.approx(norm.isf(spent))
    assert rule.z(0.1, 0.2) == pytest.approx(norm.isf(0.01 * math.log(1 + (math.e - 1) * 0.2) - spent))
    assert rule.spent(1.0) == pytest.approx(0.01)  # the whole alpha, at full coverage
    grid = [0.1 + 0.05 * i for i in range(19)]
    increments = [rule.spent(t) - rule.spent(s) for s, t in zip([0.0, *grid], grid, strict=False)]
    assert sum(increments) <= 0.01 + 1e-12
    assert [rule.due(0.0, 0.05), rule.due(0.05, 0.1), rule.due(0.1, 0.14), rule.due(0.14, 0.15)] == [False, True, False, True]


def test_a_delta_that_crosses_the_threshold_late_is_not_stopped_early() -> None:
    """Predictions drifting from -0.008 to -0.013 with a shrinking sd: the first looks straddle -0.01, so nothing is
    decided until the interval clears it; a fixed z of 1.96 would have stopped at the first look already."""
    rule = StoppingRule()
    looks = [(0.10, -0.0125, 0.0012), (0.15, -0.0115, 0.0010), (0.20, -0.0121, 0.0008), (0.25, -0.0128, 0.0006)]
    decided, previous = None, 0.0
    for coverage, delta, sd in looks:
        high = delta + rule.z(previous, coverage) * sd
        if high < -0.01:
            decided = coverage
            break
        previous = coverage
    assert -0.0125 + 1.96 * 0.0012 < -0.01  # naive repeated 95% intervals would stop at 10%
    assert decided == 0.25


# --- the mechanism on the tiny model ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = tmp_path_factory.mktemp("progressive")
    make_beir(root / "data" / "scifact", n_docs=400, n_queries=16, seed=11)
    return tiny_model, root


def _sweep(model: Path, root: Path, cache: Path, results: Path, variant: str) -> SweepConfig:
    return SweepConfig(variants=[VariantSpec.parse(variant)], model=str(model), tasks=["scifact"], data_dir=root / "data",
                       cache_dir=cache, results_dir=results, policy=BatchPolicy(batch_size=4), compositions=1, threads=1)


def test_at_full_coverage_it_is_the_plain_run(world, tmp_path: Path) -> None:  # noqa: ANN001
    model, root = world
    from evalsuite.models import resolve_model

    source = resolve_model(str(model))
    plain_cache, prog_cache = tmp_path / "plain-cache", tmp_path / "prog-cache"
    run_sweep(_sweep(model, root, plain_cache, tmp_path / "plain", "qint8"))
    run_sweep(_sweep(model, root, prog_cache, tmp_path / "prog", "float32"))  # Float32 first, as tune does
    prog = Progressive(source, [find_task("scifact")], data_dir=root / "data", cache_dir=prog_cache, policy=BatchPolicy(batch_size=4),
                       rule=StoppingRule(min_coverage=0.2, step=0.2, draws=4))
    outcome = prog.evaluate("qint8", max_drop=0.9)  # nothing can fail by 0.9: it runs to the end
    assert outcome.outcome == "complete" and outcome.coverage == {"SciFact": 1.0}
    steps = [math.floor(look.coverage / 0.2 + 1e-9) for look in outcome.looks]
    assert len(outcome.looks) >= 3 and steps == sorted(set(steps)) and all(0.2 <= lk.coverage < 1 for lk in outcome.looks)
    shards = {p.name for p in (prog_cache / "embeddings").rglob("*.npy")}
    report = run_sweep(_sweep(model, root, prog_cache, tmp_path / "prog", "qint8"))
    assert {p.name for p in (prog_cache / "embeddings").rglob("*.npy")} == shards  # the run encoded nothing new
    timings = report.results["SciFact"]["qint8"].timings
    assert timings["texts_from_cache"] == timings["texts_encoded"] > 0  # every text came from the cache
    assert shards == {p.name for p in (plain_cache / "embeddings").rglob("*.npy")}  # the same shard files as a plain run
    slug = model_slug(str(model))
    a = ResultStore(tmp_path / "plain").get(slug, "SciFact", "qint8")
    b = ResultStore(tmp_path / "prog").get(slug, "SciFact", "qint8")
    assert a is not None and b is not None and a.per_query_ndcg_at_10 == b.per_query_ndcg_at_10  # the same computation
    assert a.identity == b.identity


def test_interrupted_at_a_shard_it_resumes_to_the_same_outcome(world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    model, root = world
    from evalsuite.models import resolve_model

    source = resolve_model(str(model))
    cache = tmp_path / "cache"
    run_sweep(_sweep(model, root, cache, tmp_path / "results", "float32"))
    float32_shards = {p.name for p in (cache / "embeddings").rglob("*.npy")}
    rule = StoppingRule(min_coverage=0.2, step=0.2, draws=4)

    def fresh() -> Progressive:
        return Progressive(source, [find_task("scifact")], data_dir=root / "data", cache_dir=cache, policy=BatchPolicy(batch_size=4),
                           rule=rule)

    reference = fresh().evaluate("qint8-7bit", max_drop=0.9)
    shards = sorted(p.name for p in (cache / "embeddings").rglob("*.npy"))
    for p in (cache / "embeddings").rglob("*.npy"):  # start over, keeping only Float32's shards
        if p.name not in float32_shards:
            p.unlink()
    calls = {"n": 0}
    real = progressive_module._State.encode_next

    def interrupted(self):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(progressive_module._State, "encode_next", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fresh().evaluate("qint8-7bit", max_drop=0.9)
    monkeypatch.setattr(progressive_module._State, "encode_next", real)
    resumed = fresh().evaluate("qint8-7bit", max_drop=0.9)
    assert 0 < resumed.texts_encoded < reference.texts_encoded  # shards finished before the interrupt were read
    assert [(lk.coverage, lk.delta, lk.low, lk.high) for lk in resumed.looks] == [
        (lk.coverage, lk.delta, lk.low, lk.high) for lk in reference.looks]
    assert sorted(p.name for p in (cache / "embeddings").rglob("*.npy")) == shards



# --- gate --run --fail-fast ---------------------------------------------------------------------------------------

pytest_plugins = ["promise_world"]


@pytest.fixture(scope="module")
def wiped_large(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """promise_world's wiped model (its qint8 loses the word table) on a corpus of several shards (1,400 documents in
    batches of 32: 3 shards), so that a progressive evaluation can decide before the corpus is complete."""
    from promise_world import WIPED, make_fragile_bert

    root = tmp_path_factory.mktemp("wiped-large")
    return make_fragile_bert(root / "model", WIPED), make_beir(root / "data" / "scifact", n_docs=1400, n_queries=24, seed=3)


def test_gate_fail_fast_stops_at_a_certain_fail_and_measures_a_pass_in_full(wiped_large, tmp_path: Path,  # noqa: ANN001
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The wiped model's qint8 loses its word table: ``gate --run --fail-fast`` exits 1 before its corpus is encoded,
    naming the coverage and the interval, and stores no result of it; float16 passes and is measured in full."""
    import json

    from promise_world import run_cli, stored_per_query

    model, task = wiped_large
    results = tmp_path / "results"
    common = ("--model", model, "--tasks", task, "--cache-dir", tmp_path / "cache", "--results-dir", results,
              "--run", "--fail-fast", "--max-drop", "0.02", "--compositions", "2")
    code, out, err = run_cli(monkeypatch, capsys, "gate", "--variant", "qint8", *common)
    assert code == 1, err[-2000:]
    lines = out.strip().splitlines()
    assert lines[-1].startswith("FAIL decided early: qint8") and "% of the corpus encoded" in out
    assert set(stored_per_query(results)) == {"float32"}  # no result of qint8: nothing partial is ever stored
    shards = {p.name for p in (tmp_path / "cache" / "embeddings").rglob("*.npy")}
    code, out, err = run_cli(monkeypatch, capsys, "gate", "--variant", "qint8", *common, "--json")  # resumes: same decision
    assert {p.name for p in (tmp_path / "cache" / "embeddings").rglob("*.npy")} == shards  # nothing encoded again
    doc = json.loads(out)
    assert code == 1 and doc["schema"] == "evalsuite.progressive/1" and doc["outcome"] == "fail"
    assert all(0 < c < 1 for c in doc["decided"].values())
    for task, coverage in doc["decided"].items():
        look = next(lk for lk in doc["looks"] if lk["task"] == task and lk["fail"])
        low, high = look["interval"]
        assert look["coverage"] == coverage and high < -look["limit"] and low == pytest.approx(look["delta"] - look["z"] * look["sd"])
    code, out, err = run_cli(monkeypatch, capsys, "gate", "--variant", "float16", *common)
    assert code == 0, err[-2000:]
    assert out.strip().splitlines()[-1].startswith("PASS: float16") and "float16" in stored_per_query(results)
    assert shards <= {p.name for p in (tmp_path / "cache" / "embeddings").rglob("*.npy")}  # nothing thrown away
