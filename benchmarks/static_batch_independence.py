"""Does an embedding depend on its batch neighbours? Each text alone vs inside batches of 32, on the real model.

Texts: the first ``--per-task`` queries and documents (title + text) of each task's BEIR folder, in file order,
so batches of 32 mix lengths and most rows are padded (documents are truncated at the model's 256 tokens).
Each variant embeds them once one text per call and once in batches of 32 in the given order (no embedding
cache); the figure is the max abs difference over all coordinates, and how many texts moved by more than 1e-6.
It also prints each variant's cosine to Float32 (texts alone): a drift figure on this sample, not a retrieval score.

    python benchmarks/static_batch_independence.py --data-dir ../shared/data/beir \
        --variant static8-pc-pct,static8-pc,qint8-pc-7bit,int4-b16 --output results/bench/static_batch_independence.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from evalsuite.build import build_variant
from evalsuite.config import default_cache_dir
from evalsuite.data.beir import read_beir
from evalsuite.encode import BatchPolicy, OnnxEncoder
from evalsuite.files import atomic_write_json
from evalsuite.machine import versions
from evalsuite.models import DEFAULT_MODEL, resolve_model
from evalsuite.variants import BASELINE, expand

LIMIT = 1e-6


def sample(data_dir: Path, tasks: list[str], per_task: int) -> list[str]:
    texts: list[str] = []
    for task in tasks:
        data = read_beir(data_dir / task)
        texts += list(data.queries.values())[:per_task]
        texts += [f"{d['title']} {d['text']}".strip() for d in list(data.corpus.values())[:per_task]]
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/beir"))
    parser.add_argument("--tasks", default="scifact,nfcorpus", help="BEIR folder names under --data-dir")
    parser.add_argument("--variant", default="static8-pc-pct,qint8-pc-7bit")
    parser.add_argument("--per-task", type=int, default=32, help="queries and documents taken from each task")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    source = resolve_model(args.model)
    texts = sample(args.data_dir, args.tasks.split(","), args.per_task)
    rows = []
    print(f"{len(texts)} texts ({args.per_task} queries + {args.per_task} documents of {args.tasks}), "
          f"alone vs batches of 32, {args.threads} threads")
    print(f"{'variant':<18} {'max abs diff':>13} {'texts > 1e-6':>13} {'mean cos':>9} {'min cos':>9}")
    float32 = OnnxEncoder(build_variant(source, BASELINE, default_cache_dir()), source, BatchPolicy(1, 1, "given"),
                          threads=args.threads).embed(texts)
    for spec in expand([args.variant]):
        art = build_variant(source, spec, default_cache_dir())
        alone = OnnxEncoder(art, source, BatchPolicy(1, 1, "given"), threads=args.threads).embed(texts)
        batched = OnnxEncoder(art, source, BatchPolicy(32, 32, "given"), threads=args.threads).embed(texts)
        diff = np.abs(alone - batched)
        moved = int((diff.max(axis=1) > LIMIT).sum())
        cos = (alone.astype(np.float64) * float32).sum(1) / np.linalg.norm(alone, axis=1) / np.linalg.norm(float32, axis=1)
        rows.append({"variant": spec.name, "onnx_sha256": art.sha256, "max_abs_diff": float(diff.max()),
                     "texts_over_1e-6": moved, "texts": len(texts), "mean_cos_float32": float(cos.mean()),
                     "min_cos_float32": float(cos.min())})
        print(f"{spec.name:<18} {diff.max():>13.3g} {moved:>8} / {len(texts)} {cos.mean():>9.5f} {cos.min():>9.5f}",
              flush=True)
    if args.output:
        atomic_write_json(args.output, {"model": args.model, "tasks": args.tasks, "per_task": args.per_task,
                                        "threads": args.threads, "limit": LIMIT, "versions": versions(), "rows": rows})


if __name__ == "__main__":
    main()
