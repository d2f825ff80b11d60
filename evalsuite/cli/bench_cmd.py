"""``evalsuite bench``: speed of each variant against Float32, measured side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from evalsuite.cli.common import CacheOpt, JsonOpt, ModelOpt, ResultsOpt, VariantOpt, app, err, invocation, out
from evalsuite.errors import EvalsuiteError


@app.command()
def bench(
    variant: VariantOpt = ["seed"],  # noqa: B006
    model: ModelOpt = "sentence-transformers/all-MiniLM-L6-v2",
    lengths: Annotated[str, typer.Option(help="Comma-separated input lengths in tokens (CLS and SEP included), at most the model's max_seq_length.")] = "4,8,16,32,64,128,256",
    batch: Annotated[str, typer.Option("--batch", help="Comma-separated batch sizes: 1 = single-sequence latency, larger = throughput.")] = "1,32",
    repeats: Annotated[int, typer.Option(help="Timed rounds; each runs every variant once per (length, batch), round-robin.")] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed rounds before the timed ones.")] = 1,
    threads: Annotated[Optional[int], typer.Option(help="onnxruntime threads (default: all cores).")] = None,
    levels: Annotated[str, typer.Option(help="Variants whose optimizer levels 0, 1, 2, 99 are also timed for the optimizer-level table; 'none' to skip.")] = "float32,qint8-pc-7bit",
    memory: Annotated[bool, typer.Option("--memory/--no-memory", help="Probe peak memory (one child process per variant).")] = True,
    cache_dir: CacheOpt = None,
    results_dir: ResultsOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="Output: table (rich) or md (markdown).")] = "table",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Also write the report to this file (markdown; JSON if it ends in .json).", dir_okay=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Time Float32 and each variant side by side (interleaved), per input length and batch size; print the speedup tables.

    Also writes <results-dir>/<model>/bench.json (schema: docs/bench-schema.md).
    """
    from evalsuite.analysis.tables import to_rich
    from evalsuite.bench import BenchConfig, all_tables, format_markdown, parse_families, parse_ints, run_bench, save_bench
    from evalsuite.config import default_cache_dir, default_results_dir
    from evalsuite.variants import expand

    if fmt not in ("table", "md"):
        raise EvalsuiteError(f"--format must be 'table' or 'md', not {fmt!r}")
    cfg = BenchConfig(
        variants=tuple(expand(variant)), model=model, lengths=parse_ints(lengths, "--lengths"), batches=parse_ints(batch, "--batch"),
        repeats=repeats, warmup=warmup, threads=threads, level_families=parse_families(levels),
        cache_dir=cache_dir or default_cache_dir(), measure_memory=memory,
    )
    command = invocation()

    def progress(done: int, total: int) -> None:  # a line per round: a live progress bar would steal CPU from the timings
        if done < total:
            err.print(f"[dim]round {done + 1}/{total}{' (warm-up)' if done < warmup else ''}[/dim]", highlight=False)

    result = run_bench(cfg, say=lambda m: err.print(f"[dim]{m}[/dim]", highlight=False), progress=progress, command=command)
    path = save_bench(result, results_dir or default_results_dir())
    err.print(f"[dim]wrote {path}[/dim]", highlight=False)
    if output is not None:
        text = json.dumps(result.to_dict(), indent=1) + "\n" if output.suffix == ".json" else format_markdown(result)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    if as_json:
        print(json.dumps(result.to_dict(), indent=1))
    elif fmt == "md":
        print(format_markdown(result), end="")
    else:
        for table in all_tables(result):
            out.print(to_rich(table))
