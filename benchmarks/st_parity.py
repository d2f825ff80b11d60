"""Float32 ONNX (evalsuite) vs the PyTorch sentence-transformers model, and vs published MTEB, on NDCG@10.

Both sides go through the same ``mteb.evaluate`` on the same local BEIR data; only the encoder differs:
evalsuite's ONNX encoder (from its stored Float32 result, or run now) against
``SentenceTransformer(<model folder>)`` on CPU in PyTorch.

    python benchmarks/st_parity.py --data-dir ../shared/data/beir --tasks scifact,nfcorpus \
        --output results/parity/all-MiniLM-L6-v2.json
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from sentence_transformers import SentenceTransformer
from rich.table import Table

from evalsuite.data.loading import load_task
from evalsuite.run.evaluate import run_mteb
from evalsuite.models import DEFAULT_MODEL, resolve_model
from evalsuite.files import atomic_write_json
from evalsuite.config import default_cache_dir
from evalsuite.run import SweepConfig, run_sweep
from evalsuite.data.tasks import find_task
from evalsuite.ui import console
from evalsuite.variants import BASELINE

# Published MTEB NDCG@10 of all-MiniLM-L6-v2 (max_seq_length 256, no prefixes).
PUBLISHED = {"SciFact": 0.64508, "NFCorpus": 0.31594, "FiQA2018": 0.36867}
PARITY_TOLERANCE = 0.0005
PUBLISHED_TOLERANCE = 0.003


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/beir"))
    parser.add_argument("--tasks", default="scifact")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    source = resolve_model(args.model)
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    sweep = run_sweep(SweepConfig(variants=[BASELINE], model=args.model, tasks=names, data_dir=args.data_dir,
                                  cache_dir=args.cache_dir, results_dir=args.results_dir))
    rows = []
    for name in names:
        spec = find_task(name)
        onnx = sweep.results[spec.name][BASELINE.name]
        started = time.perf_counter()
        torch_out = run_mteb(SentenceTransformer(str(source.path), device="cpu"), load_task(spec, args.data_dir), batch_size=32)
        torch_ndcg = math.fsum(torch_out.per_query.values()) / len(torch_out.per_query)
        onnx_ndcg = math.fsum(onnx.per_query_ndcg_at_10.values()) / len(onnx.per_query_ndcg_at_10)
        per_query = [abs(onnx.per_query_ndcg_at_10[q] - torch_out.per_query[q]) for q in torch_out.per_query]
        rows.append({
            "task": spec.name, "onnx_float32_ndcg_at_10": onnx_ndcg, "pytorch_ndcg_at_10": torch_ndcg,
            "diff": onnx_ndcg - torch_ndcg, "parity_ok": abs(onnx_ndcg - torch_ndcg) <= PARITY_TOLERANCE,
            "queries_that_differ": sum(d > 0 for d in per_query), "max_per_query_diff": max(per_query),
            "published": PUBLISHED.get(spec.name),
            "published_diff": onnx_ndcg - PUBLISHED[spec.name] if spec.name in PUBLISHED else None,
            "published_ok": abs(onnx_ndcg - PUBLISHED[spec.name]) <= PUBLISHED_TOLERANCE if spec.name in PUBLISHED else None,
            "pytorch_seconds": round(time.perf_counter() - started, 1),
        })

    table = Table(title=f"NDCG@10 parity: evalsuite Float32 ONNX vs PyTorch ({source.model_id})", title_justify="left")
    for col in ("task", "ONNX fp32", "PyTorch", "diff", f"|diff|<={PARITY_TOLERANCE}", "published", "diff",
                f"|diff|<={PUBLISHED_TOLERANCE}", "queries differing"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for r in rows:
        pub = r["published"]
        table.add_row(r["task"], f"{r['onnx_float32_ndcg_at_10']:.5f}", f"{r['pytorch_ndcg_at_10']:.5f}", f"{r['diff']:+.6f}",
                      "PASS" if r["parity_ok"] else "FAIL", f"{pub:.5f}" if pub else "-",
                      f"{r['published_diff']:+.5f}" if pub else "-", ("PASS" if r["published_ok"] else "FAIL") if pub else "-",
                      str(r["queries_that_differ"]))
    console().print(table)
    if args.output:
        atomic_write_json(args.output, {"model": source.to_dict(), "rows": rows,
                                        "command": "python benchmarks/st_parity.py " + " ".join(
                                            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "cache_dir")})
    if not all(r["parity_ok"] for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
