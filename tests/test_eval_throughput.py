"""The throughput benchmark's data trimming (benchmarks/eval_throughput.py): a smaller corpus that keeps every judged document."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from conftest import make_beir

from evalsuite.data.beir import read_beir


def _script():  # noqa: ANN202
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "eval_throughput.py"
    spec = importlib.util.spec_from_file_location("eval_throughput", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_trim_beir_keeps_the_first_documents_and_every_judged_one(tmp_path: Path) -> None:
    src = make_beir(tmp_path / "full", n_docs=60, crlf=True)
    _script().trim_beir(src, tmp_path / "small", limit_docs=5)
    full, small = read_beir(src), read_beir(tmp_path / "small")
    judged = {d for docs in full.qrels.values() for d in docs}
    first = [json.loads(line)["_id"] for line in (src / "corpus.jsonl").read_text().splitlines()[:5]]
    assert set(small.corpus) == judged | set(first)
    assert small.queries == full.queries and small.qrels == full.qrels
    assert all(small.corpus[d] == full.corpus[d] for d in small.corpus)
