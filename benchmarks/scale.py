"""Large corpora: wall time per document and peak memory of one evaluation at 10k, 100k and 1M documents.

A tiny random BERT (2 layers, hidden 32, max_seq_length 64, ``tests/tiny_models.py``) evaluates synthetic BEIR
folders (``benchmarks/synthetic_beir.py``: FiQA-like lengths, the same 200 queries at every size) with the
default batch policy. Each size runs in its own child process with a cold embedding cache; the parent builds
the model, its ONNX file and the folders first (untimed).

In each child, after imports, the model and the onnxruntime session (the *baseline*), three phases are measured
with Linux's peak-RSS counter (VmHWM, reset between phases through ``/proc/self/clear_refs``):

- **load**: reading the BEIR folder into mteb's task (the corpus text in memory, which grows with the corpus);
- **evaluate**: ``mteb.evaluate`` through evalsuite's encoder: encoding in shards written to the cache as they
  are produced, exact top-k in retrieval blocks of ``evalsuite.run.evaluate.CORPUS_BLOCK`` documents, and
  pytrec_eval. Its peak above the loaded RSS is the working set of one block (its texts, token ids of one shard,
  its embeddings, the query x block score matrix); it should stop growing once the corpus exceeds one block.

Wall time per document covers load + evaluate; so does the process CPU time per document, which stays meaningful
when other jobs share the cores (with one onnxruntime thread it is nearly the work done). A 10k run takes seconds,
so its time varies by tens of percent on a shared VM; give the first size several times (``--sizes
10000,100000,10000,1000000,10000``) and the ratios are taken against its median run. Targets: time per document within +-15% from 10k to 1M; nothing
but the corpus text grows with corpus size beyond one block.

Usage (from the repository root):
    nice -n 10 .venv/bin/python benchmarks/scale.py --sizes 10000,100000,1000000 --work /tmp/scale
    nice -n 10 .venv/bin/python benchmarks/scale.py --sizes 57638 --queries 648 --work /tmp/fiqa   # FiQA-sized
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

app = typer.Typer(add_completion=False)


def _status() -> dict[str, float]:
    """VmRSS and VmHWM of this process, in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)


def _child(size: int, work: Path, threads: int) -> dict[str, object]:
    import mteb  # noqa: F401 - lazy imports paid before the clock, as a long-lived process would have
    import pytrec_eval  # noqa: F401
    import torch  # noqa: F401

    from evalsuite.build import build_variant
    from evalsuite.data.loading import load_task
    from evalsuite.data.tasks import find_task
    from evalsuite.encode import BatchPolicy, OnnxEncoder
    from evalsuite.models import resolve_model
    from evalsuite.run.evaluate import run_mteb
    from evalsuite.variants import BASELINE

    source = resolve_model(str(work / "model"))
    artifact = build_variant(source, BASELINE, work / "cache")
    encoder = OnnxEncoder(artifact, source, BatchPolicy(), cache_dir=work / "cache", threads=threads)
    calls: list[int] = []  # texts per encode call: the retrieval block
    embed = encoder.embed
    encoder.embed = lambda texts, prompt_type="document": (calls.append(len(texts)), embed(texts, prompt_type))[1]  # type: ignore[method-assign]
    run_mteb(encoder, load_task(find_task(str(work / "data" / "warmup")), None))  # lazy imports of mteb's path
    inference_before = encoder.stats["inference_s"]
    base = _status()["VmRSS"]
    _reset_peak()
    started, cpu_started = time.perf_counter(), time.process_time()
    loaded = load_task(find_task(str(work / "data" / f"n{size}")), None)
    load_s = time.perf_counter() - started
    after_load = _status()
    _reset_peak()
    outcome = run_mteb(encoder, loaded)
    total_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    after_eval = _status()
    shards = list((work / "cache" / "embeddings").rglob("*.npy"))
    return {"docs": size, "queries": loaded.ref.n_queries, "load_s": load_s, "total_s": total_s, "cpu_s": cpu_s,
            "inference_s": encoder.stats["inference_s"] - inference_before, "ndcg_at_10": outcome.scores["ndcg_at_10"],
            "baseline_mb": base, "corpus_mb": after_load["VmRSS"] - base, "load_peak_mb": after_load["VmHWM"],
            "evaluate_above_loaded_mb": after_eval["VmHWM"] - after_load["VmRSS"],
            "peak_mb": max(after_load["VmHWM"], after_eval["VmHWM"]), "largest_encode_call": max(calls),
            "embedding_files": len(shards), "embeddings_on_disk_mb": sum(p.stat().st_size for p in shards) / 2**20}


def _prepare(work: Path, sizes: list[int], queries: int) -> None:
    from synthetic_beir import write_beir
    from tiny_models import make_bert

    from evalsuite.build import build_variant
    from evalsuite.models import resolve_model
    from evalsuite.variants import BASELINE

    if not (work / "model" / "modules.json").is_file():
        make_bert(work / "model", max_seq_length=64)
    build_variant(resolve_model(str(work / "model")), BASELINE, work / "cache")
    if not (work / "data" / "warmup" / "qrels" / "test.tsv").is_file():
        write_beir(work / "data" / "warmup", 300, 20, seed=1)
    for size in sizes:
        folder = work / "data" / f"n{size}"
        marker = folder / f".complete-{queries}"
        if not marker.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            write_beir(folder, size, queries)
            marker.touch()


@app.command()
def main(sizes: Annotated[str, typer.Option(help="corpus sizes, comma-separated; the first is the reference")] = "10000,100000,1000000",
         queries: Annotated[int, typer.Option(help="queries of every folder")] = 200,
         work: Annotated[Path, typer.Option(help="folder for the model, cache and data (kept between runs)")] = Path("/tmp/evalsuite-scale"),
         threads: Annotated[int, typer.Option(help="onnxruntime threads")] = 1,
         output: Annotated[Path | None, typer.Option(help="write the measurements as JSON")] = None,
         child: Annotated[int | None, typer.Option(hidden=True)] = None) -> None:
    work = work.resolve()
    if child is not None:
        print(json.dumps(_child(child, work, threads)))
        return
    from evalsuite.machine import cpu_info

    wanted = [int(s) for s in sizes.split(",")]
    _prepare(work, wanted, queries)
    rows = []
    for size in wanted:
        shutil.rmtree(work / "cache" / "embeddings", ignore_errors=True)  # every size starts cold
        proc = subprocess.Popen([sys.executable, __file__, "--child", str(size), "--work", str(work), "--threads", str(threads)],
                                stdout=subprocess.PIPE, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        out = proc.stdout.read()  # type: ignore[union-attr]
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            raise SystemExit(f"child for {size} documents failed with status {status}")
        row = json.loads(out.decode().strip().splitlines()[-1])
        row["child_maxrss_mb"] = usage.ru_maxrss / 1024
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)  # each size as it finishes: a long run keeps what it measured
        if output is not None:
            output.write_text(json.dumps({"sizes": wanted, "queries": queries, "threads": threads, "rows": rows}, indent=2))
    # A size may be given more than once (e.g. 10000,100000,10000,1000000,10000): the reference is the median run of
    # the first size, so one lucky or unlucky short run on a shared machine does not set every ratio.
    firsts = sorted((r for r in rows if r["docs"] == wanted[0]), key=lambda r: r["total_s"])
    ref = firsts[len(firsts) // 2]
    table = Table(title=f"evaluation of a tiny model on synthetic corpora ({queries} queries, {threads} onnxruntime thread(s))")
    for col in ("docs", "wall s", "µs/doc", "vs first", "CPU µs/doc", "vs first", "peak RSS MB", "vs first", "corpus text MB", "evaluate above loaded MB",
                "largest encode call", "embeddings on disk MB", "NDCG@10"):
        table.add_column(col, justify="right")
    for r in rows:
        per_doc = r["total_s"] / r["docs"] * 1e6
        table.add_row(f"{r['docs']:,}", f"{r['total_s']:.1f}", f"{per_doc:.1f}",
                      f"{per_doc / (ref['total_s'] / ref['docs'] * 1e6):.2f}x", f"{r['cpu_s'] / r['docs'] * 1e6:.1f}",
                      f"{(r['cpu_s'] / r['docs']) / (ref['cpu_s'] / ref['docs']):.2f}x", f"{r['child_maxrss_mb']:.0f}",
                      f"{r['child_maxrss_mb'] / ref['child_maxrss_mb']:.2f}x", f"{r['corpus_mb']:.0f}",
                      f"{r['evaluate_above_loaded_mb']:.0f}", f"{r['largest_encode_call']:,}",
                      f"{r['embeddings_on_disk_mb']:.0f}", f"{r['ndcg_at_10']:.4f}")
    Console(width=200).print(table)
    cpu = cpu_info()
    print(f"cpu: {json.dumps(cpu)}")
    if output is not None:
        output.write_text(json.dumps({"sizes": wanted, "queries": queries, "threads": threads, "machine": cpu,
                                      "reference_index": rows.index(ref), "rows": rows}, indent=2))


if __name__ == "__main__":
    app()
