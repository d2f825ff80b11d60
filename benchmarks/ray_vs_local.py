"""The local executor against the Ray executor on one machine: the same numbers, and the wall time of each.

Both sides run ``run_sweep`` on the same variants and tasks with the default batch policy, each with its own
empty embedding cache and results folder, so both really encode everything. ONNX conversion is done once before
anything is timed, and both caches link to those files (conversion is the same driver code on both sides).
The local side uses ``--local-threads`` onnxruntime threads in one session; the Ray side starts a local cluster
and runs ``--actors`` actors of ``--threads-per-actor`` threads each (the defaults, 2 x 1 against 2 threads, use
the same 2 cores). The Ray side's time includes starting the cluster and its actors.

Printed per (task, variant): NDCG@10 of each side, how many queries have exactly the same NDCG@10, and whether
the embedding caches hold the same shards byte for byte; then the wall time of each side and their ratio.

Usage (from the repository root; a quiet 2-core machine needs about 2 x 6 minutes for float32 + qint8-pc-7bit
on SciFact, and 2 x 14 minutes for the seed sweep):
    .venv/bin/python benchmarks/ray_vs_local.py --variant float32,qint8-pc-7bit --tasks scifact
    .venv/bin/python benchmarks/ray_vs_local.py --variant seed --work-dir /tmp/rvl --reuse   # keep and reuse both sides
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from evalsuite.build import build_variant
from evalsuite.machine import cpu_info, versions
from evalsuite.models import DEFAULT_MODEL, resolve_model
from evalsuite.run import SweepConfig, SweepReport, run_sweep
from evalsuite.run.ray_executor import RayExecutor, RayOptions
from evalsuite.variants import expand


def shard_bytes(cache: Path) -> dict[str, bytes]:
    folder = cache / "embeddings"
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.npy"))}


def side(name: str, work: Path, onnx: Path, reuse: bool, **cfg: object) -> Path:
    """A fresh folder for one side (cache linking to the shared ONNX files), or the old one with ``reuse``."""
    folder = work / name
    if folder.exists() and not reuse:
        shutil.rmtree(folder)
    (folder / "cache").mkdir(parents=True, exist_ok=True)
    if not (folder / "cache" / "onnx").exists():
        (folder / "cache" / "onnx").symlink_to(onnx, target_is_directory=True)
    return folder


def main(
    variant: Annotated[str, typer.Option(help="Variants or named sets, comma-separated.")] = "seed",
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks.")] = "scifact",
    data_dir: Annotated[Path, typer.Option(help="Folder of BEIR folders.")] = Path("/work/shared/data/beir"),
    model: Annotated[str, typer.Option(help="Hub id or model folder.")] = DEFAULT_MODEL,
    actors: Annotated[int, typer.Option(help="Ray actors.")] = 2,
    threads_per_actor: Annotated[int, typer.Option(help="onnxruntime threads per actor.")] = 1,
    local_threads: Annotated[Optional[int], typer.Option(help="onnxruntime threads of the local side (default: all cores).")] = None,
    work_dir: Annotated[Optional[Path], typer.Option(help="Where both sides keep caches and results (default: a temporary folder).")] = None,
    reuse: Annotated[bool, typer.Option("--reuse", help="Keep what each side already has in --work-dir (times then cover only what is missing).")] = False,
    output: Annotated[Optional[Path], typer.Option(help="Also write the figures as JSON.")] = None,
) -> None:
    work = work_dir or Path(tempfile.mkdtemp(prefix="ray-vs-local-"))
    specs = expand([v.strip() for v in variant.split(",")])
    source = resolve_model(model)
    for spec in specs:  # conversion, untimed, shared by both sides
        build_variant(source, spec, work / "onnx-cache")
    onnx = (work / "onnx-cache" / "onnx").resolve()

    def config(folder: Path, threads: int | None) -> SweepConfig:
        return SweepConfig(variants=specs, model=model, tasks=tasks.split(","), data_dir=data_dir,
                           cache_dir=folder / "cache", results_dir=folder / "results", threads=threads)

    timed: dict[str, float] = {}
    reports: dict[str, SweepReport] = {}
    folders: dict[str, Path] = {}
    for name, executor, threads in (("local", None, local_threads),
                                    ("ray", RayExecutor(RayOptions(None, actors, threads_per_actor)), None)):
        folders[name] = side(name, work, onnx, reuse)
        started = time.perf_counter()
        reports[name] = run_sweep(config(folders[name], threads), say=lambda m, n=name: print(f"[{n}] {m}", flush=True),
                                  executor=executor)
        timed[name] = time.perf_counter() - started

    rows, same_everywhere = [], True
    for task, by_variant in reports["local"].results.items():
        for name, lr in by_variant.items():
            rr = reports["ray"].results[task][name]
            equal = sum(rr.per_query_ndcg_at_10.get(q) == v for q, v in lr.per_query_ndcg_at_10.items())
            same = equal == len(lr.per_query_ndcg_at_10) == len(rr.per_query_ndcg_at_10) and rr.ndcg_at_10 == lr.ndcg_at_10
            same_everywhere &= same
            rows.append({"task": task, "variant": name, "local_ndcg_at_10": lr.ndcg_at_10, "ray_ndcg_at_10": rr.ndcg_at_10,
                         "queries_equal": equal, "queries": len(lr.per_query_ndcg_at_10), "same": same})
    same_shards = shard_bytes(folders["local"] / "cache") == shard_bytes(folders["ray"] / "cache")
    print(f"\n{'task':<10} {'variant':<16} {'local NDCG@10':>14} {'ray NDCG@10':>12} {'equal queries':>14}")
    for r in rows:
        print(f"{r['task']:<10} {r['variant']:<16} {r['local_ndcg_at_10']:>14.6f} {r['ray_ndcg_at_10']:>12.6f} "
              f"{r['queries_equal']:>6}/{r['queries']:<7}")
    print(f"same per-query NDCG@10 everywhere: {same_everywhere}; same embedding shards, byte for byte: {same_shards}")
    ray_label = f"ray ({actors} actors x {threads_per_actor} thread{'s' if threads_per_actor > 1 else ''})"
    print(f"wall time: local {timed['local']:.1f} s, {ray_label} {timed['ray']:.1f} s, "
          f"local / ray = {timed['local'] / timed['ray']:.2f}x")
    if output:
        output.write_text(json.dumps({"variants": [s.name for s in specs], "tasks": tasks, "actors": actors,
                                      "threads_per_actor": threads_per_actor, "local_threads": local_threads,
                                      "rows": rows, "same_shards": same_shards, "wall_s": timed, "machine": cpu_info(),
                                      "versions": versions(), "load_average_after": os.getloadavg()}, indent=1))
    raise typer.Exit(0 if same_everywhere and same_shards else 1)


if __name__ == "__main__":
    typer.run(main)
