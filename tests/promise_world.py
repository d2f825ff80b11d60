"""A tiny model whose int8 builds really lose, and the helpers the promise tests share (no network, nothing from ../shared).

The tiny random BERT of ``conftest.make_tiny_bert`` barely notices quantization (every build stays within about 0.001
NDCG@10 of Float32), so no gate can fail it for a reason that holds on every CPU. :func:`make_fragile_bert` plants
the failure the README describes for real models, an outlier that ruins a per-tensor int8 scale, where it can be
found and fixed by one node:

* the word embeddings are scaled by 10, so the embedding is mostly a bag of words and retrieval works (Float32
  NDCG@10 about 0.35 on :func:`make_tasks`);
* one value of the ``[MASK]`` row, a token no text is tokenized to, is set to ``outlier``. Float32 never reads it,
  but dynamic int8 quantizes the whole word table with one uint8 scale, ``(max - min) / 255``, so that value
  decides how coarse every other word vector becomes. Only the node that reads the table,
  ``EmbedLayerNormalization_0``, is harmed; kept in float, the build is near-lossless again.

Two settings are used:

* ``WIPED`` (300): the step (about 1.2) is more than twice the largest other value, so every word vector rounds to
  zero and retrieval collapses (NDCG@10 about -0.29 and -0.21 on the two tasks). The drift screen predicts that
  loss and fails the build; the gate on the full evaluation fails it too. Static int8 and int4 quantize MatMuls only,
  so they do not touch the table.
* ``MASKED`` (150): the step (about 0.6) keeps only the large negative values of each word vector. The embeddings
  move a lot (cosine about 0.66 to Float32), but every text is moved by the same function of its words, so the
  ranking mostly survives (full evaluation: about -0.02 and +0.01). The screen, which moves each document by the
  drift of *another* sampled document (README, "Limits"), predicts a large loss and fails it: the case where the
  gate on full results must win over the screen. A progressive evaluation with 8 draws per look (and the corpus in
  :func:`small_shards`) decides a fail too, at about half the corpus, so it is also the case where tune's stored full
  results must win.

In WIPED a progressive evaluation decides qint8's fail at its first look, when the corpus is cut into small enough
shards (:func:`small_shards`).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import make_beir, make_tiny_bert

WIPED = 300.0
MASKED = 150.0
CULPRIT = "EmbedLayerNormalization_0"  # the only node that reads the word table in the optimized graph
HARMLESS = "/model/encoder/layer.1/output/dense/MatMul"  # a node whose float copy changes nothing that matters here
MASK_ID = 4  # [MASK] in conftest's vocabulary: no text is tokenized to it


def make_fragile_bert(folder: Path, outlier: float) -> Path:
    """conftest's tiny BERT with word embeddings x10 and ``outlier`` planted in the [MASK] row (module docstring)."""
    from safetensors.numpy import load_file, save_file

    make_tiny_bert(folder)
    weights = load_file(str(folder / "model.safetensors"))
    [name] = [k for k in weights if k.endswith("word_embeddings.weight")]
    weights[name] = weights[name] * np.float32(10.0)
    weights[name][MASK_ID, 0] = outlier
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def make_tasks(root: Path, count: int = 2) -> list[Path]:
    """BEIR folders given to ``--tasks`` by path (120 documents and 24 judged queries each)."""
    return [make_beir(root / "scifact", n_docs=120, n_queries=24, seed=3),
            make_beir(root / "nfcorpus", n_docs=120, n_queries=24, seed=5)][:count]


@dataclass(frozen=True)
class World:
    """A model, its tasks (BEIR folders by path), a cache shared by the tests that use them, and Float32's full
    results on the tasks (evaluated once; :meth:`seed` copies them where a test wants them reused)."""

    model: Path
    tasks: list[Path]
    cache: Path
    float32_results: Path

    @property
    def task_arg(self) -> str:
        return ",".join(map(str, self.tasks))

    def seed(self, results: Path, cache: Path | None = None) -> None:
        """Make ``results`` (and a fresh ``cache``) hold what an earlier ``run --variant float32`` left: its result
        files, and in ``cache`` the export, the Float32 file and its embeddings. Nothing else is copied."""
        shutil.copytree(self.float32_results, results, dirs_exist_ok=True)
        if cache is None:
            return
        from evalsuite.build import build_variant
        from evalsuite.models import resolve_model
        from evalsuite.variants import BASELINE

        art = build_variant(resolve_model(str(self.model)), BASELINE, self.cache)
        folders = [art.path.parent, *(p for p in art.path.parent.parent.glob("export-*") if p.is_dir()),
                   self.cache / "embeddings" / art.sha256[:16]]
        for folder in folders:
            shutil.copytree(folder, cache / folder.relative_to(self.cache))


def _world(factory: pytest.TempPathFactory, name: str, outlier: float, tasks: int) -> World:
    from evalsuite.run import SweepConfig, run_sweep
    from evalsuite.variants import BASELINE

    root = factory.mktemp(name)
    world = World(make_fragile_bert(root / "model", outlier), make_tasks(root / "data", tasks), root / "cache",
                  root / "float32-results")
    run_sweep(SweepConfig(variants=[BASELINE], model=str(world.model), tasks=[str(t) for t in world.tasks],
                          cache_dir=world.cache, results_dir=world.float32_results))
    return world


@pytest.fixture(scope="session")
def wiped(tmp_path_factory: pytest.TempPathFactory) -> World:
    return _world(tmp_path_factory, "wiped", WIPED, 2)


@pytest.fixture(scope="session")
def masked(tmp_path_factory: pytest.TempPathFactory) -> World:
    """One task: its screen fails MASKED qint8 (an interval wholly below -0.05) and the full evaluation passes it."""
    return _world(tmp_path_factory, "masked", MASKED, 1)


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """``evalsuite ARGS`` in this process (as tests/test_gate.py does): exit code, stdout, stderr."""
    from evalsuite import cli

    monkeypatch.setattr(sys, "argv", ["evalsuite", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def gate_config(folder: Path, speed_length: int = 16) -> Path:
    """A gate YAML like configs/gate.yaml with the bench point at ``speed_length`` tokens (the tiny model reads 64)."""
    path = folder / "gate.yaml"
    path.write_text(f"max_drop: 0.01\nspeed_length: {speed_length}\nspeed_batch: 1\n", encoding="utf-8")
    return path


def check_looks(record: dict, rule: dict, max_drop: float, n_docs: dict[str, int], batch: int = 32) -> None:
    """The looks of one ``evalsuite.progressive/1`` record against the stopping rule, recomputed by hand, for corpora cut
    into shards of one batch (``small_shards``: ``ceil(n / 32)`` shards of at most 32 documents): a look only from
    ``min_coverage`` on, at whole documents, before the corpus is complete, each crossing a new multiple of ``step``;
    ``z`` the normal quantile of the Lan-DeMets Pocock-type alpha spent since the task's previous look; interval =
    delta -/+ z sd; fail exactly when its upper end lies below -max_drop. A completed task was looked at until its
    last shard; a fail stops the evaluation at once."""
    from scipy.stats import norm

    def spent(t: float) -> float:
        return rule["alpha"] * math.log(1 + (math.e - 1) * t)

    by_task: dict[str, list[dict]] = {}
    for look in record["looks"]:
        by_task.setdefault(look["task"], []).append(look)
    assert set(by_task) <= set(n_docs) == set(record["coverage"])
    for task, n in n_docs.items():
        looks, previous, shards = by_task.get(task, []), 0.0, 0
        total = -(-n // batch)
        for look in looks:
            t = look["coverage"]
            assert t * n == pytest.approx(round(t * n), abs=1e-9) and round(t * n) <= batch * look["shards"], look
            assert rule["min_coverage"] <= t < 1 and shards < look["shards"] < total, ("coverage", look)
            assert previous == 0.0 or math.floor(t / rule["step"] + 1e-9) > math.floor(previous / rule["step"] + 1e-9), (
                "no new step crossed", previous, look)
            assert look["z"] == pytest.approx(float(norm.isf(spent(t) - spent(previous))), rel=1e-9), ("z", previous, look)
            low, high = look["interval"]
            assert low == pytest.approx(look["delta"] - look["z"] * look["sd"], abs=1e-12), ("interval", look)
            assert high == pytest.approx(look["delta"] + look["z"] * look["sd"], abs=1e-12), ("interval", look)
            assert look["limit"] == max_drop and look["fail"] == (high < -max_drop), ("fail", look)
            previous, shards = t, look["shards"]
        if record["outcome"] == "complete":
            assert record["coverage"][task] == 1.0 and looks and looks[-1]["shards"] == total - 1, ("last look", task, looks[-1:])
    if record["outcome"] == "complete":
        assert record["decided"] == {} and not any(lk["fail"] for lk in record["looks"]), record["decided"]
    else:  # stopped at the first fail: it is the last look, and its task's coverage is where it stopped
        last = record["looks"][-1]
        assert last["fail"] and not any(lk["fail"] for lk in record["looks"][:-1]), ("stopped at the first fail", record["looks"])
        assert record["decided"] == {last["task"]: last["coverage"]} and record["coverage"][last["task"]] == last["coverage"], (
            record["decided"], record["coverage"])


def small_shards(mp: pytest.MonkeyPatch) -> None:
    """One batch per embedding-cache shard. A shard holds 16 batches of 32 texts by default, so each corpus here (80 or
    120 documents) is a single shard, and a progressive evaluation, which looks only between shards, could only
    complete it. With 32-document shards a 120-document corpus gets looks at about 27%, 53% and 80% (the shard order is
    seeded). Shard keys name their batches, so the smaller shards never mix with the default ones in a cache.
    (Only the cache's granularity changes: batches, their texts and every vector are the same.)"""
    mp.setattr("evalsuite.encode.encoder.SHARD_BATCHES", 1)


def stored_per_query(results: Path) -> dict[str, dict[str, dict[str, float]]]:
    """``{variant: {task: {query: NDCG@10}}}`` of every result file under ``results`` (read as plain JSON); a variant
    stored under several batch compositions gets each query's mean over them (what the gate judges)."""
    draws: dict[str, dict[str, list[dict[str, float]]]] = {}
    for path in sorted(results.rglob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and "per_query_ndcg_at_10" in doc:
            draws.setdefault(doc["variant"], {}).setdefault(doc["task"]["name"], []).append(doc["per_query_ndcg_at_10"])
    return {v: {t: {q: math.fsum(d[q] for d in ds) / len(ds) for q in ds[0]} for t, ds in by_task.items()}
            for v, by_task in draws.items()}


def task_deltas(per_query: dict[str, dict[str, dict[str, float]]], variant: str) -> dict[str, float]:
    """Per task, the mean over queries of (variant - Float32) NDCG@10, from stored per-query values."""
    out = {}
    for task, scores in per_query[variant].items():
        base = per_query["float32"][task]
        assert scores.keys() == base.keys()
        out[task] = math.fsum(scores[q] - base[q] for q in base) / len(base)
    return out


def point_gate(per_query: dict[str, dict[str, dict[str, float]]], variant: str, max_drop: float) -> str:
    """The per-task point rule of README "Gating a release", by hand: pass when every task's delta >= -max_drop."""
    return "pass" if all(d >= -max_drop for d in task_deltas(per_query, variant).values()) else "fail"
