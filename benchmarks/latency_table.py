"""Reproduce the reference latency table for the default model: speedup over Float32 per input length.

Runs ``evalsuite.bench.run_bench`` for sentence-transformers/all-MiniLM-L6-v2 with the seven ``seed``
variants at 4..256 tokens, batch 1 (latency) and 32 (throughput), plus optimizer levels 0/1/2/99 of
float32 and qint8-pc-7bit; prints the markdown tables and writes

    results/bench/all-MiniLM-L6-v2.md     tables, with the command and the machine description
    results/bench/all-MiniLM-L6-v2.json   the evalsuite.bench/1 document (docs/bench-schema.md)
    results/<model slug>/bench.json       the same document where ``evalsuite report`` reads it (--no-store: skip)

Run it on a quiet machine: anything else using the CPU distorts the numbers. With the defaults
(13 variants, 14 cells, 10 rounds + 1 warm-up) a 2-core machine should take about 5 minutes: a round is
about 20 s, nearly all of it batch 32 (Float32 at 32 x 256 tokens is about 1.3 s a call), plus about a
minute of memory probes and session loading. Time scales with --repeats; --levels none saves 6 variants.
A quick check of the script itself:

    python benchmarks/latency_table.py --lengths 16 --batch 1 --repeats 2 --levels none --out-dir /tmp/b --no-store
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from evalsuite.bench import (
    DEFAULT_LENGTHS,
    DEFAULT_LEVEL_FAMILIES,
    DEFAULT_REPEATS,
    DEFAULT_WARMUP,
    BenchConfig,
    format_markdown,
    parse_families,
    parse_ints,
    run_bench,
    save_bench,
)
from evalsuite.errors import EvalsuiteError
from evalsuite.models import DEFAULT_MODEL
from evalsuite.files import atomic_write_bytes, atomic_write_json
from evalsuite.config import default_cache_dir, default_results_dir
from evalsuite.variants import expand


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--variant", default="seed", help="variants or named sets, comma-separated [seed]")
    parser.add_argument("--lengths", default=",".join(map(str, DEFAULT_LENGTHS)))
    parser.add_argument("--batch", default="1,32")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help=f"timed rounds [{DEFAULT_REPEATS}]")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help=f"untimed rounds first [{DEFAULT_WARMUP}]")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads [all cores]")
    parser.add_argument("--levels", default=",".join(DEFAULT_LEVEL_FAMILIES), help="families for the optimizer-level table, or none")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory probe")
    parser.add_argument("--cache-dir", type=Path, default=None, help="ONNX artifact cache [EVALSUITE_CACHE_DIR or ~/.cache/evalsuite]")
    parser.add_argument("--results-dir", type=Path, default=None, help="where bench.json is stored for evalsuite report [results/]")
    parser.add_argument("--no-store", action="store_true", help="do not write <results-dir>/<model>/bench.json")
    parser.add_argument("--out-dir", type=Path, default=Path("results/bench"), help="markdown and JSON copy [results/bench]")
    args = parser.parse_args(argv)
    try:
        cfg = BenchConfig(
            variants=tuple(expand([args.variant])), model=args.model, lengths=parse_ints(args.lengths, "--lengths"),
            batches=parse_ints(args.batch, "--batch"), repeats=args.repeats, warmup=args.warmup, threads=args.threads,
            level_families=parse_families(args.levels), cache_dir=args.cache_dir or default_cache_dir(),
            measure_memory=not args.no_memory,
        )
        command = " ".join(shlex.quote(a) for a in ["python", "benchmarks/latency_table.py", *(sys.argv[1:] if argv is None else argv)])
        result = run_bench(cfg, say=lambda m: print(m, file=sys.stderr, flush=True),
                           progress=lambda done, total: print(f"round {done + 1}/{total}", file=sys.stderr, flush=True) if done < total else None,
                           command=command)
    except EvalsuiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = format_markdown(result, title=f"Latency of {result.model_id}: ONNX variants against Float32")
    stem = Path(result.model_id.rstrip("/")).name
    atomic_write_bytes(args.out_dir / f"{stem}.md", text.encode("utf-8"))
    atomic_write_json(args.out_dir / f"{stem}.json", result.to_dict())
    written = [args.out_dir / f"{stem}.md", args.out_dir / f"{stem}.json"]
    if not args.no_store:
        written.append(save_bench(result, args.results_dir or default_results_dir()))
    print(text, end="")
    print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
