"""``evalsuite bench``: speed of each variant against Float32, measured side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from evalsuite.cli.common import (CacheOpt, JsonOpt, ModelOpt, ResultsOpt, ThreadsOpt, VariantOpt, app, at_least, given, invocation,
                                  one_of, out, say, variant_names)
from evalsuite.errors import EvalsuiteError

OUTPUT_SUFFIXES = {".md": "md", ".markdown": "md", ".json": "json", "": "md"}


@app.command()
def bench(
    variant: VariantOpt = ["seed"],  # noqa: B006
    model: ModelOpt = "sentence-transformers/all-MiniLM-L6-v2",
    lengths: Annotated[str, typer.Option(help="Comma-separated input lengths in tokens (CLS and SEP included), at most the model's max_seq_length.")] = "4,8,16,32,64,128,256",
    batch: Annotated[str, typer.Option("--batch", help="Comma-separated batch sizes: 1 = single-sequence latency, larger = throughput.")] = "1,32",
    repeats: Annotated[int, typer.Option(help="Timed rounds, at least 1; each runs every variant once per (length, batch), round-robin.")] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed rounds before the timed ones, 0 or more.")] = 1,
    threads: ThreadsOpt = None,
    levels: Annotated[str, typer.Option(help="Variants whose optimizer levels 0, 1, 2, 99 are also timed for the optimizer-level table; 'none' to skip.")] = "float32,qint8-pc-7bit",
    memory: Annotated[bool, typer.Option("--memory/--no-memory", help="Probe peak memory (one child process per variant).")] = True,
    cache_dir: CacheOpt = None,
    results_dir: ResultsOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="Output: table (rich) or md (markdown).")] = "table",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Also write the report to this file: .md (markdown) or .json.", dir_okay=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Time Float32 and each variant side by side (interleaved), per input length and batch size; print the speedup tables.

    Also writes <results-dir>/<model>/bench.json (schema: docs/bench-schema.md).
    """
    from evalsuite.analysis.tables import to_rich
    from evalsuite.bench import BenchConfig, all_tables, format_markdown, parse_families, parse_ints, run_bench, save_bench
    from evalsuite.config import default_cache_dir, default_results_dir
    from evalsuite.files import atomic_write_text
    from evalsuite.variants import expand

    at_least(1, repeats=repeats, threads=threads)
    at_least(0, warmup=warmup)
    one_of("--format", fmt, ("table", "md"))
    if output is not None and output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise EvalsuiteError(f"--output {output}: unknown suffix {output.suffix!r}; name a .md (markdown) or .json file")
    cfg = BenchConfig(
        variants=tuple(expand(variant_names(variant))), model=given(model, "--model"),  # type: ignore[arg-type]
        lengths=parse_ints(lengths, "--lengths"), batches=parse_ints(batch, "--batch"),
        repeats=repeats, warmup=warmup, threads=threads, level_families=parse_families(levels),
        cache_dir=cache_dir or default_cache_dir(), measure_memory=memory,
    )
    command = invocation()

    def progress(done: int, total: int) -> None:  # a line per round: a live progress bar would steal CPU from the timings
        if done < total:
            say(f"round {done + 1}/{total}{' (warm-up)' if done < warmup else ''}")

    result = run_bench(cfg, say=say, progress=progress, command=command)
    path = save_bench(result, results_dir or default_results_dir())
    say(f"wrote {path}")
    if output is not None:
        as_md = OUTPUT_SUFFIXES[output.suffix.lower()] == "md"
        atomic_write_text(output, format_markdown(result) if as_md else json.dumps(result.to_dict(), indent=1) + "\n")
    if as_json:
        print(json.dumps(result.to_dict(), indent=1))
    elif fmt == "md":
        print(format_markdown(result), end="")
    else:
        for table in all_tables(result):
            out.print(to_rich(table))
