"""The split a task names (or ``--split``) is the split loaded, evaluated, stored, shown and judged.

A synthetic BEIR folder holds ``qrels/train.tsv``, ``qrels/dev.tsv`` and ``qrels/test.tsv`` with different judgments
(different queries, different relevant documents). Each split's NDCG@10 must equal an independent computation
(sentence-transformers embeddings, numpy cosine, trec_eval's NDCG@10) on that split's qrels alone.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import make_beir
from ranking import assert_within, ndcg_at_10_bounds
from test_gate import run_cli

from evalsuite.models import ModelSource

SPLITS = ("train", "dev", "test")


def _write_split_qrels(folder: Path) -> dict[str, dict[str, dict[str, int]]]:
    """Give each split its own queries and judgments; returns the qrels per split."""
    rng = random.Random(11)
    docs = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines() if line.strip()]
    queries = [json.loads(line) for line in (folder / "queries.jsonl").read_text().splitlines() if line.strip()]
    qids = [q["_id"] for q in queries if q["_id"] != "unjudged"]
    by_split: dict[str, dict[str, dict[str, int]]] = {}
    for i, split in enumerate(SPLITS):
        chosen = qids[i::3]  # disjoint queries per split
        qrels = {q: {d["_id"]: rng.choice([1, 2]) for d in rng.sample(docs, rng.randint(1, 3))} for q in chosen}
        lines = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t{g}" for q, rel in qrels.items() for d, g in rel.items())]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
        by_split[split] = qrels
    return by_split


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], shared_cache: Path, tmp_path: Path):  # noqa: ANN201
    """``evalsuite ARGS`` in this process (a subprocess per call costs seconds of imports): (exit code, stdout, stderr)."""
    results = tmp_path / "results"

    def call(*args: object) -> tuple[int, str, str]:
        return run_cli(monkeypatch, capsys, *map(str, args), "--results-dir", str(results),
                       *(("--cache-dir", str(shared_cache)) if args[0] == "run" else ()))

    call.results = results  # type: ignore[attr-defined]
    return call


@pytest.fixture(scope="module")
def split_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, dict[str, int]]]]:
    root = tmp_path_factory.mktemp("splitdata")
    make_beir(root / "scifact", n_docs=50, n_queries=18, seed=3)
    return root, _write_split_qrels(root / "scifact")


@pytest.fixture(scope="module")
def st_scores(split_data: tuple[Path, dict], tiny_model: Path) -> dict[str, dict[str, float]]:  # type: ignore[type-arg]
    """Per query of the folder, the cosine of every document: sentence-transformers embeddings (the model loaded
    once for the module), cosine in numpy."""
    from sentence_transformers import SentenceTransformer

    folder = split_data[0] / "scifact"
    corpus = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines() if line.strip()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (folder / "queries.jsonl").read_text().splitlines()) if q}
    model = SentenceTransformer(str(tiny_model), device="cpu")
    docs = model.encode([f"{d['title']} {d['text']}".strip() for d in corpus]).astype(np.float64)
    qids = sorted(queries)
    qv = model.encode([queries[q] for q in qids]).astype(np.float64)
    cosine = (qv / np.linalg.norm(qv, axis=1, keepdims=True)) @ (docs / np.linalg.norm(docs, axis=1, keepdims=True)).T
    return {q: {d["_id"]: float(s) for d, s in zip(corpus, row, strict=True)} for q, row in zip(qids, cosine, strict=True)}


def _expected(st_scores: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> dict[str, tuple[float, float]]:
    """Per judged query of one split, trec_eval's NDCG@10 on that split's qrels alone, as the bounds over the orders of
    documents whose scores are within 1e-6 (PyTorch against the ONNX file: tests/ranking.py)."""
    return {q: ndcg_at_10_bounds(st_scores[q], qrels[q], 1e-6) for q in sorted(qrels)}


def _mean_within(value: float, bounds: dict[str, tuple[float, float]]) -> None:
    low = sum(lo for lo, _ in bounds.values()) / len(bounds)
    high = sum(hi for _, hi in bounds.values()) / len(bounds)
    assert_within(value, (low, high), abs_tol=1e-6)


@pytest.mark.parametrize("how", ["mteb-named", "folder-path"])
def test_each_split_is_evaluated_on_its_own_qrels(how: str, split_data: tuple[Path, dict], tiny_model: Path,  # type: ignore[type-arg]
                                                  tiny_source: ModelSource, cli, st_scores) -> None:  # noqa: ANN001
    root, qrels = split_data
    folder = root / "scifact"
    results = cli.results
    task_args = ["--tasks", "scifact", "--data-dir", root] if how == "mteb-named" else ["--tasks", folder]
    stored: dict[str, dict[str, float]] = {}
    for split in SPLITS:
        code, out, err = cli("run", "--model", tiny_model, "--variant", "float32", *task_args, "--split", split, "--json")
        assert code == 0, err[-2000:]
        row = json.loads(out)["results"][0]
        assert row["split"] == split and row["n_queries"] == len(qrels[split])
        expected = _expected(st_scores, qrels[split])
        task_dir = row["task"] if split == "test" else f"{row['task']}.{split}"
        record = json.loads((results / tiny_source.slug / task_dir / "float32.json").read_text())
        assert record["task"]["split"] == split and sorted(record["per_query_ndcg_at_10"]) == sorted(qrels[split])
        for qid, bounds in expected.items():
            assert_within(record["per_query_ndcg_at_10"][qid], bounds, abs_tol=1e-6, what=(split, qid))
        _mean_within(row["ndcg_at_10"], expected)
        stored[split] = record["per_query_ndcg_at_10"]
    assert len({json.dumps(v, sort_keys=True) for v in stored.values()}) == 3  # three splits, side by side
    # Re-running one split reuses its own result and leaves the others alone.
    code, out, _ = cli("run", "--model", tiny_model, "--variant", "float32", *task_args, "--split", "dev", "--json")
    assert code == 0 and json.loads(out)["results"][0]["reused"] is True


def test_a_task_yaml_split_is_the_split_evaluated(split_data: tuple[Path, dict], tiny_model: Path,  # type: ignore[type-arg]
                                                  cli, tmp_path: Path, st_scores) -> None:  # noqa: ANN001
    """The case from the issue: ``mteb_name: SciFact`` with ``split: train`` used to fail with KeyError: 'test'."""
    root, qrels = split_data
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "scifact_train.yaml").write_text("name: SciFactTrain\nmteb_name: SciFact\nsplit: train\nbeir_folder: scifact\n")
    code, out, err = cli("run", "--model", tiny_model, "--variant", "float32", "--tasks", "SciFactTrain", "--tasks-dir", tasks,
                         "--data-dir", root, "--json")
    assert code == 0, err[-2000:]
    row = json.loads(out)["results"][0]
    assert (row["task"], row["split"], row["n_queries"]) == ("SciFactTrain", "train", len(qrels["train"]))
    _mean_within(row["ndcg_at_10"], _expected(st_scores, qrels["train"]))


def test_gate_and_report_judge_one_split_and_name_it(split_data: tuple[Path, dict], tiny_model: Path,  # type: ignore[type-arg]
                                                     tiny_source: ModelSource, cli) -> None:  # noqa: ANN001
    root, _ = split_data
    for split in ("dev", "test"):
        code, _, err = cli("run", "--model", tiny_model, "--variant", "float16", "--tasks", "scifact", "--data-dir", root,
                           "--split", split)
        assert code == 0, err[-2000:]
    verdicts = {}
    for split in ("dev", "test"):
        code, out, _ = cli("gate", "--variant", "float16", "--max-drop", "0.5", "--split", split, "--json")
        verdicts[split] = json.loads(out)
        stored = json.loads((cli.results / tiny_source.slug / ("SciFact" if split == "test" else "SciFact.dev")
                             / "float32.json").read_text())
        assert verdicts[split]["config"]["split"] == split
        assert verdicts[split]["checks"][0]["mean_baseline"] == pytest.approx(stored["ndcg_at_10"], abs=1e-12)
        assert verdicts[split]["checks"][0]["n_queries"] == len(stored["per_query_ndcg_at_10"])
    assert verdicts["dev"]["checks"][0]["mean_baseline"] != verdicts["test"]["checks"][0]["mean_baseline"]
    _, text, _ = cli("gate", "--variant", "float16", "--max-drop", "0.5", "--split", "dev")
    assert "split dev" in text.splitlines()[0]
    _, report, _ = cli("report", "--split", "dev")
    assert "split dev" in report
    code, _, err = cli("gate", "--variant", "float16", "--split", "train")
    assert code == 2 and "no results on split 'train'" in err and "splits stored: dev, test" in err


def test_a_split_without_qrels_names_the_splits_that_exist(split_data: tuple[Path, dict], tiny_model: Path,  # type: ignore[type-arg]
                                                           cli) -> None:  # noqa: ANN001
    root, _ = split_data
    code, _, err = cli("run", "--model", tiny_model, "--variant", "float32", "--tasks", "scifact", "--data-dir", root,
                       "--split", "validation")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "missing qrels/validation.tsv" in err and "qrels for splits: dev, test, train" in err

