"""Batch compositions: seeded batchings of one policy, evaluated for batch-dependent builds only, judged on their mean
with a two-level bootstrap; and the CPU's int8 kernel family in a result's identity.

The statistics are checked against independent computations (exact enumeration of the composition-level bootstrap,
means recomputed from the result files), the batch plans against their definition, and the identities of committed
results against the stored ones (compositions and kernel families must not change any result made before them).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import make_beir

from evalsuite.analysis import stats
from evalsuite.analysis.gate import GateConfig, gate
from evalsuite.analysis.report import build_report
from evalsuite.analysis.render import render
from evalsuite.build import build_variant
from evalsuite.encode import BatchPolicy, OnnxEncoder
from evalsuite.encode.policy import WINDOW_BATCHES, plan_batches
from evalsuite.errors import EvalsuiteError
from evalsuite.results import ResultStore, identity, load_results
from evalsuite.run import SweepConfig, run_sweep
from evalsuite.variants import VariantSpec

REPO = Path(__file__).resolve().parent.parent


# --- batch plans ------------------------------------------------------------------------------------------------

LENGTHS = np.random.default_rng(5).integers(3, 120, size=500)


def test_composition_zero_is_the_canonical_batching() -> None:
    batches = plan_batches(LENGTHS, 32, "length")
    assert np.array_equal(np.concatenate(batches), np.argsort(LENGTHS, kind="stable"))
    assert [len(b) for b in batches] == [32] * 15 + [20]
    assert np.array_equal(np.concatenate(plan_batches(LENGTHS, 32, "given")), np.arange(500))


@pytest.mark.parametrize("k", [1, 2, 7])
def test_a_composition_is_a_batching_of_the_same_policy(k: int) -> None:
    batches = plan_batches(LENGTHS, 32, "length", k)
    order = np.concatenate(batches)
    assert sorted(order.tolist()) == list(range(500))  # every text once
    assert 1 <= len(batches[0]) <= 32 and all(len(b) == 32 for b in batches[1:-1]) and 1 <= len(batches[-1]) <= 32
    # Length order up to shuffles within windows of WINDOW_BATCHES batches: a text moves at most one window away.
    rank = np.empty(500, dtype=int)
    rank[np.lexsort((np.arange(500), LENGTHS))] = np.arange(500)
    assert np.abs(rank[order] - np.arange(500)).max() < 2 * WINDOW_BATCHES * 32
    assert [b.tolist() for b in plan_batches(LENGTHS, 32, "length", k)] == [b.tolist() for b in batches]  # seeded


def test_compositions_differ_from_each_other_and_keep_padding_low() -> None:
    plans = {k: plan_batches(LENGTHS, 32, "length", k) for k in range(4)}
    neighbours = {k: {frozenset(b.tolist()) for b in p} for k, p in plans.items()}
    assert all(neighbours[a] != neighbours[b] for a, b in itertools.combinations(range(4), 2))

    def padded(p: list[np.ndarray]) -> int:
        return sum(len(b) * int(LENGTHS[b].max()) for b in p)

    assert all(padded(plans[k]) < 1.25 * padded(plans[0]) for k in (1, 2, 3))


def test_given_order_moves_only_the_boundaries_and_one_text_per_call_has_one_composition() -> None:
    batches = plan_batches(LENGTHS, 32, "given", 3)
    assert np.array_equal(np.concatenate(batches), np.arange(500)) and len(batches[0]) < 32
    assert [b.tolist() for b in plan_batches(LENGTHS, 1, "length", 3)] == [b.tolist() for b in plan_batches(LENGTHS, 1, "length")]


def test_policy_records_of_composition_zero_are_unchanged() -> None:
    """Results made before compositions existed keep their identity: composition 0 adds nothing to the record."""
    assert BatchPolicy().to_dict() == {"batch_size": 32, "query_batch_size": 1, "order": "length", "key": "docs32-q1-length"}
    third = BatchPolicy(composition=3)
    assert third.key == "docs32-q1-length-c3" and third.base_key == "docs32-q1-length"
    assert BatchPolicy.from_dict(third.to_dict()) == third
    with pytest.raises(EvalsuiteError, match="composition"):
        BatchPolicy(composition=-1)


# --- statistics -------------------------------------------------------------------------------------------------

def test_the_composition_level_of_the_bootstrap_against_exact_enumeration() -> None:
    """Queries that all move by the same amount under a composition leave only the composition level: the bootstrap
    mean is the mean of K draws with replacement from the K per-composition deltas, whose exact distribution is
    enumerated here."""
    per_composition = np.array([-0.03, -0.01, 0.0])
    baseline = np.linspace(0.2, 0.8, 50)
    variant = baseline[None, :] + per_composition[:, None]
    c = stats.compare([(variant, baseline)], n_resamples=20_000, seed=1)
    means = sorted(np.mean(draw) for draw in itertools.product(per_composition, repeat=3))  # 27 equally likely
    # The bootstrap's quantiles converge to those of this discrete distribution (its atoms hold 1/27 > 2.5% each end).
    assert c.mean_delta == pytest.approx(per_composition.mean())
    assert c.ci_low == pytest.approx(np.quantile(means, 0.025, method="inverted_cdf"), abs=1e-9)
    assert c.ci_high == pytest.approx(np.quantile(means, 0.975, method="inverted_cdf"), abs=1e-9)
    assert c.query_ci_low == pytest.approx(c.query_ci_high) == pytest.approx(per_composition.mean())  # no query spread
    assert c.composition_share == pytest.approx(1.0)
    assert c.composition_deltas == pytest.approx(tuple(per_composition))
    assert c.composition_sd == pytest.approx(float(np.std(per_composition, ddof=1)))


def test_one_composition_gives_the_one_level_numbers() -> None:
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 1, 80)
    var = base + rng.normal(-0.01, 0.05, 80)
    one = stats.compare([(var, base)])
    also = stats.compare([(var[None, :], base)])
    assert (one.ci_low, one.ci_high, one.p_value) == (also.ci_low, also.ci_high, also.p_value)  # the same computation
    assert one.compositions == 1 and one.composition_sd is None and one.composition_share is None


def test_composition_spread_widens_the_interval() -> None:
    rng = np.random.default_rng(4)
    base = rng.uniform(0, 1, 200)
    noise = rng.normal(0, 0.05, 200)
    steady = np.stack([base - 0.01 + noise] * 5)
    shaky = steady + np.array([-0.02, -0.01, 0.0, 0.01, 0.02])[:, None]
    a, b = stats.compare([(steady, base)]), stats.compare([(shaky, base)])
    assert a.mean_delta == pytest.approx(b.mean_delta)
    assert (b.ci_high - b.ci_low) > 1.5 * (a.ci_high - a.ci_low)
    assert b.composition_share > 0.3 > a.composition_share


# --- end to end on the tiny model ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sweep3(tiny_model: Path, shared_cache: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = tmp_path_factory.mktemp("compositions")
    make_beir(root / "data" / "scifact", n_docs=120, n_queries=10, seed=8)
    cfg = SweepConfig(variants=[VariantSpec.parse(v) for v in ("qint8", "float16")], model=str(tiny_model), tasks=["scifact"],
                      data_dir=root / "data", cache_dir=shared_cache, results_dir=root / "results",
                      policy=BatchPolicy(batch_size=8), compositions=3, threads=1)
    return cfg, run_sweep(cfg)


def test_only_batch_dependent_builds_get_several_compositions(sweep3) -> None:  # noqa: ANN001
    cfg, report = sweep3
    files = sorted(p.name for p in (cfg.results_dir).rglob("*.json"))
    assert files == ["float16.json", "float32.json", "qint8.c1.json", "qint8.c2.json", "qint8.json"]
    assert sorted(report.computed) == sorted([("SciFact", "float32", 0), ("SciFact", "float16", 0),
                                              *(("SciFact", "qint8", k) for k in range(3))])
    draws = report.draws("SciFact", "qint8")
    assert [d.composition for d in draws] == [0, 1, 2]
    assert [d.batch_policy["key"] for d in draws] == ["docs8-q1-length", "docs8-q1-length-c1", "docs8-q1-length-c2"]
    assert len({d.identity for d in draws}) == 3
    row = next(r for r in report.rows() if r["variant"] == "qint8")
    assert row["ndcg_at_10"] == pytest.approx(math.fsum(d.ndcg_at_10 for d in draws) / 3)
    assert row["compositions"] == [d.ndcg_at_10 for d in draws]
    again = run_sweep(cfg)  # everything reused
    assert again.computed == []


def test_compositions_change_dynamic_embeddings_only(sweep3, tiny_source) -> None:  # noqa: ANN001
    cfg = sweep3[0]
    texts = [f"protein heart {'cell ' * (i % 7)}gene {i}" for i in range(40)]
    for name, moves in (("qint8", True), ("float16", False)):
        artifact = build_variant(tiny_source, VariantSpec.parse(name), cfg.cache_dir)
        a = OnnxEncoder(artifact, tiny_source, BatchPolicy(batch_size=8), cache_dir=None, threads=1).embed(texts)
        b = OnnxEncoder(artifact, tiny_source, BatchPolicy(batch_size=8, composition=2), cache_dir=None, threads=1).embed(texts)
        assert (np.abs(a - b).max() > 1e-6) == moves, name


def test_gate_and_report_judge_the_mean_over_compositions(sweep3) -> None:  # noqa: ANN001
    cfg = sweep3[0]
    store = ResultStore(cfg.results_dir)
    slug = next(cfg.results_dir.iterdir()).name
    base = store.get(slug, "SciFact", "float32").per_query_ndcg_at_10  # type: ignore[union-attr]
    per_k = []
    for k in range(3):
        doc = json.loads(store.path(slug, "SciFact", "qint8", composition=k).read_text())
        per_k.append(sum(doc["per_query_ndcg_at_10"][q] - base[q] for q in base) / len(base))
    verdict = gate("qint8", GateConfig(max_drop=0.5, compositions=3), cfg.results_dir)
    check = next(c for c in verdict.checks if c.scope == "SciFact")
    assert check.comparison.mean_delta == pytest.approx(sum(per_k) / 3)
    assert check.comparison.composition_deltas == pytest.approx(tuple(per_k))
    assert "batch compositions" in check.line() or len(set(per_k)) == 1
    # Asking for more compositions than are stored is a missing result, never a silent judgement on fewer.
    with pytest.raises(EvalsuiteError, match="judged over 4 batch compositions and has 3"):
        gate("qint8", GateConfig(max_drop=0.5, compositions=4), cfg.results_dir)
    report = build_report(cfg.results_dir, cfg=GateConfig(max_drop=0.5, compositions=3))
    md = render(report, "md")
    assert "batch compositions" in md
    data = load_results(cfg.results_dir)
    assert [d.composition for d in data.draws("SciFact", "qint8")] == [0, 1, 2]


# --- int8 kernels -----------------------------------------------------------------------------------------------

def test_int8_profile_and_kernel_family(tiny_source, shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    import evalsuite.machine as machine

    profiles = {v: build_variant(tiny_source, VariantSpec.parse(v), shared_cache).int8
                for v in ("float32", "float16", "qint8", "qint8-7bit", "quint8")}
    assert not profiles["float32"].quantizes and not profiles["float16"].quantizes
    assert all(profiles[v].quantizes for v in ("qint8", "qint8-7bit", "quint8"))
    assert profiles["quint8"].weight_peak == 0  # unsigned weights: u8u8 kernels never saturate
    assert profiles["qint8"].weight_peak == 127 and 0 < profiles["qint8-7bit"].weight_peak <= 64

    def on(flags: dict[str, bool], vnni: bool) -> None:
        monkeypatch.setattr(machine, "cpu_info", lambda: {"flags": flags, "vnni": vnni})
        monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")

    on({"avx2": True, "avx512f": True}, True)  # Intel Xeon with AMX, AMD Zen 4
    assert machine.kernel_family() == machine.REFERENCE_KERNELS == "avx512-vnni"
    assert machine.distinct_kernels(machine.int8_kernels(True, 127)) == ()  # the reference family: identities as before
    on({"avx2": True, "avx512f": False}, False)  # AMD Zen 3
    kernels = {v: machine.int8_kernels(p.quantizes, p.weight_peak) for v, p in profiles.items()}
    assert kernels == {"float32": None, "float16": None, "qint8": "avx2-saturating", "qint8-7bit": "avx2", "quint8": "avx2"}
    assert machine.distinct_kernels(kernels["qint8-7bit"]) == ("avx2",) and machine.distinct_kernels(None) == ()


def test_committed_identities_are_unchanged() -> None:
    """Every committed result's identity, recomputed from its own fields, is the stored one (compositions and kernel
    families added nothing to the identities of results made before them)."""
    files = sorted((REPO / "results").rglob("*.json"))
    checked = 0
    for path in files:
        doc = json.loads(path.read_text())
        if not (isinstance(doc, dict) and doc.get("schema") == "evalsuite.result/1"):
            continue
        t = doc["task"]
        again = identity(doc["weights_sha256"], doc.get("tokenizer_sha256", ""), doc["variant"], doc["onnx_sha256"], t["name"],
                         t["split"], t["fingerprint"], doc["encoding"], doc["batch_policy"], doc.get("int8_kernels"))
        assert again == doc["identity"], path
        checked += 1
    assert checked > 0
