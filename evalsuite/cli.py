"""The ``evalsuite`` command: thin Typer commands over the library. Each command's docstring is its --help.

Exit codes: 0 success, 1 a gate failed, 2 bad input or an error (one line on stderr, no traceback).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from evalsuite.errors import EvalsuiteError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Is a quantized ONNX build of your embedding model good enough to ship? Measures NDCG@10 against Float32.")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

VariantOpt = Annotated[list[str], typer.Option("--variant", "-v", help="Variant name or named set (seed, levels, all); repeatable or comma-separated.")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Hub id or local model folder.")]
TasksOpt = Annotated[Optional[str], typer.Option("--tasks", "-t", help="Comma-separated tasks (case-insensitive), MTEB task names or BEIR folder paths. Default: SciFact,NFCorpus,FiQA2018, skipping those without data.")]
DataOpt = Annotated[Optional[Path], typer.Option("--data-dir", envvar="EVALSUITE_DATA_DIR", help="Folder of local BEIR folders (scifact/, nfcorpus/, fiqa/). Without it, data comes from the Hub through mteb.", file_okay=False)]
TasksDirOpt = Annotated[Optional[Path], typer.Option("--tasks-dir", help="Extra folder of task YAML files.", exists=True, file_okay=False)]
CacheOpt = Annotated[Optional[Path], typer.Option("--cache-dir", envvar="EVALSUITE_CACHE_DIR", help="ONNX artifacts and embeddings [default: ~/.cache/evalsuite].", file_okay=False)]
ResultsOpt = Annotated[Optional[Path], typer.Option("--results-dir", envvar="EVALSUITE_RESULTS_DIR", help="Where results are stored [default: results/].", file_okay=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except EvalsuiteError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted; finished work is kept and the next run resumes from it")
        sys.exit(130)
    except Exception as exc:  # the last line of defence: never a traceback unless asked for
        if os.environ.get("EVALSUITE_DEBUG"):
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        err.print(f"[red]error:[/red] {type(exc).__name__}: {first[:300]} (set EVALSUITE_DEBUG=1 for a traceback)", highlight=False)
        sys.exit(2)


@app.command()
def run(
    variant: VariantOpt = ["seed"],  # noqa: B006  typer needs a list default
    model: ModelOpt = "sentence-transformers/all-MiniLM-L6-v2",
    tasks: TasksOpt = None,
    data_dir: DataOpt = None,
    tasks_dir: TasksDirOpt = None,
    cache_dir: CacheOpt = None,
    results_dir: ResultsOpt = None,
    batch_size: Annotated[int, typer.Option(help="Documents per onnxruntime call.")] = 32,
    query_batch_size: Annotated[int, typer.Option(help="Queries per call (1 = online serving).")] = 1,
    order: Annotated[str, typer.Option(help="Batch order: length (sorted, little padding) or given.")] = "length",
    threads: Annotated[Optional[int], typer.Option(help="onnxruntime threads [default: all cores].")] = None,
    force: Annotated[bool, typer.Option("--force", help="Recompute results even when stored ones match.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build each variant, evaluate it and Float32 on retrieval tasks, and print NDCG@10 and the delta per task."""
    from evalsuite.encoder import BatchPolicy
    from evalsuite.report import sweep_tables
    from evalsuite.sweep import SweepConfig, default_cache_dir, default_results_dir, run_sweep
    from evalsuite.ui import Progressbars
    from evalsuite.variants import expand

    cfg = SweepConfig(
        variants=expand(variant), model=model, tasks=_split(tasks), data_dir=data_dir, tasks_dir=tasks_dir,
        cache_dir=cache_dir or default_cache_dir(), results_dir=results_dir or default_results_dir(),
        policy=BatchPolicy(batch_size, query_batch_size, order),  # type: ignore[arg-type]
        threads=threads, force=force,
    )
    with Progressbars(err) as bars:
        report = run_sweep(cfg, say=bars.say, progress=bars.update)
    for name, why in report.skipped.items():
        err.print(f"[yellow]skipped {name}:[/yellow] {why}", highlight=False)
    if as_json:
        print(json.dumps({"model": report.model_id, "results": report.rows(), "skipped": report.skipped}, indent=1))
    else:
        for table in sweep_tables(report):
            out.print(table)


@app.command()
def convert(
    variant: VariantOpt = ["float32"],  # noqa: B006
    model: ModelOpt = "sentence-transformers/all-MiniLM-L6-v2",
    cache_dir: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export the model to ONNX and build each variant (cached by content); print the file of each."""
    from evalsuite.convert import build_variant
    from evalsuite.models import resolve_model
    from evalsuite.sweep import default_cache_dir
    from evalsuite.variants import expand

    source = resolve_model(model)
    built = []
    for spec in expand(variant):
        with err.status(f"building {spec.name}"):
            art = build_variant(source, spec, cache_dir or default_cache_dir(), lambda m: err.print(m))
        built.append({"variant": spec.name, "path": str(art.path), "sha256": art.sha256, "size_bytes": art.size_bytes,
                      "export_max_abs_diff": art.meta.get("export_max_abs_diff")})
    if as_json:
        print(json.dumps({"model": model, "artifacts": built}, indent=1))
    else:
        for b in built:
            out.print(f"{b['variant']:<20} {b['size_bytes'] / 1e6:7.1f} MB  {b['path']}", highlight=False)


@app.command()
def variants(as_json: JsonOpt = False) -> None:
    """Explain the variant grammar and list the named sets."""
    from evalsuite.variants import GRAMMAR, NAMED_SETS

    if as_json:
        print(json.dumps({"grammar": GRAMMAR, "sets": NAMED_SETS}, indent=1))
        return
    out.print(GRAMMAR, highlight=False)
    out.print("\nNamed sets (use as --variant NAME):", highlight=False)
    for name, members in NAMED_SETS.items():
        shown = ", ".join(members) if len(members) <= 10 else f"{', '.join(members[:6])}, ... ({len(members)} variants)"
        out.print(f"  {name:<7} {shown}", highlight=False)


@app.command(name="tasks")
def list_tasks(tasks_dir: TasksDirOpt = None, data_dir: DataOpt = None) -> None:
    """List the registered tasks and whether their local data is present."""
    from evalsuite.evaluate import task_unavailable
    from evalsuite.tasks import registry

    for spec in registry(tasks_dir).values():
        state = "" if data_dir is None else (task_unavailable(spec, data_dir) or "data ok")
        out.print(f"{spec.name:<12} mteb={spec.mteb_name or '-':<10} split={spec.split:<5} folder={spec.beir_folder or '-':<10} {state}", highlight=False)


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


if __name__ == "__main__":
    main()
