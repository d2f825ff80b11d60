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

from evalsuite.errors import EvalsuiteError
from evalsuite.ui import console

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Is a quantized ONNX build of your embedding model good enough to ship? Measures NDCG@10 against Float32.")
out = console()
err = console(stderr=True)

VariantOpt = Annotated[list[str], typer.Option("--variant", "-v", help="Variant name or named set (seed, levels, all); repeatable or comma-separated.")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Hub id or local model folder.")]
TasksOpt = Annotated[Optional[str], typer.Option("--tasks", "-t", help="Comma-separated tasks (case-insensitive), MTEB task names or BEIR folder paths. Default: SciFact,NFCorpus,FiQA2018, skipping those without data.")]
DataOpt = Annotated[Optional[Path], typer.Option("--data-dir", envvar="EVALSUITE_DATA_DIR", help="Folder of local BEIR folders (scifact/, nfcorpus/, fiqa/). Without it, data comes from the Hub through mteb.", file_okay=False)]
TasksDirOpt = Annotated[Optional[Path], typer.Option("--tasks-dir", help="Extra folder of task YAML files.", exists=True, file_okay=False)]
CacheOpt = Annotated[Optional[Path], typer.Option("--cache-dir", envvar="EVALSUITE_CACHE_DIR", help="ONNX artifacts and embeddings (default: ~/.cache/evalsuite).", file_okay=False)]
ResultsOpt = Annotated[Optional[Path], typer.Option("--results-dir", envvar="EVALSUITE_RESULTS_DIR", help="Where results are stored (default: results/).", file_okay=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:  # typer.Exit(n), --help
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("interrupted; finished work is kept and the next run resumes from it")
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: Click's box becomes one line too
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if message:  # empty when no arguments were given and the help was already shown
            err.print(f"[red]error:[/red] {message} (see --help)", highlight=False)
        sys.exit(2)
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
    threads: Annotated[Optional[int], typer.Option(help="onnxruntime threads (default: all cores).")] = None,
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
    import shlex

    from evalsuite.bench import BenchConfig, all_tables, format_markdown, parse_families, parse_ints, run_bench, save_bench, to_rich
    from evalsuite.sweep import default_cache_dir, default_results_dir
    from evalsuite.variants import expand

    if fmt not in ("table", "md"):
        raise EvalsuiteError(f"--format must be 'table' or 'md', not {fmt!r}")
    cfg = BenchConfig(
        variants=tuple(expand(variant)), model=model, lengths=parse_ints(lengths, "--lengths"), batches=parse_ints(batch, "--batch"),
        repeats=repeats, warmup=warmup, threads=threads, level_families=parse_families(levels),
        cache_dir=cache_dir or default_cache_dir(), measure_memory=memory,
    )
    command = " ".join(shlex.quote(a) for a in ["evalsuite", *sys.argv[1:]]) if sys.argv[0].endswith("evalsuite") else ""

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


GateModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Hub id, folder or slug of the model (default: the only model in the results folder).")]
GateTasksOpt = Annotated[Optional[str], typer.Option("--tasks", "-t", help="Comma-separated tasks to compare (default: the config's tasks, else every task with a Float32 result).")]
GateConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="Gate and statistics settings, YAML (default: configs/gate.yaml).", dir_okay=False)]


@app.command(name="gate")
def gate_cli(
    variant: Annotated[str, typer.Option("--variant", "-v", help="The variant to judge, e.g. qint8-pc-7bit.", show_default=False)],
    max_drop: Annotated[Optional[float], typer.Option("--max-drop", help="Largest acceptable NDCG@10 loss vs Float32 (default from --config: 0.01).")] = None,
    relative: Annotated[Optional[bool], typer.Option("--relative/--absolute", help="--max-drop is a fraction of Float32's NDCG@10 (0.01 = 1%), or absolute NDCG@10 (default from --config: absolute).", show_default=False)] = None,
    per_task: Annotated[Optional[bool], typer.Option("--per-task/--mean", help="Every task must pass, or the macro mean over tasks (default from --config: per-task).", show_default=False)] = None,
    rule: Annotated[Optional[str], typer.Option("--rule", help="point: the mean delta must be within the limit; ci: fail only when the whole CI is beyond it ('inconclusive' when it straddles it) (default from --config: point).", show_default=False)] = None,
    config: GateConfigOpt = None,
    model: GateModelOpt = None,
    tasks: GateTasksOpt = None,
    results_dir: ResultsOpt = None,
    run_missing: Annotated[bool, typer.Option("--run", help="Evaluate the variant (and Float32) first when its results are missing, reusing caches.")] = False,
    data_dir: DataOpt = None,
    tasks_dir: TasksDirOpt = None,
    cache_dir: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pass or fail a variant against Float32: exit 0 pass (or inconclusive), 1 fail, 2 error. One line per task says why."""
    from evalsuite.gate import GateConfig, gate
    from evalsuite.models import DEFAULT_MODEL
    from evalsuite.sweep import SweepConfig, default_cache_dir, default_data_dir, default_results_dir
    from evalsuite.variants import VariantSpec

    cfg = GateConfig.load(config).override(
        max_drop=max_drop, relative=relative, rule=rule, tasks=tuple(_split(tasks) or ()) or None,
        scope=None if per_task is None else ("per-task" if per_task else "mean"))
    results = results_dir or default_results_dir()
    sweep = None
    if run_missing:
        sweep = SweepConfig(variants=[VariantSpec.parse(variant)], model=model or DEFAULT_MODEL,
                            tasks=list(cfg.tasks) if cfg.tasks else None, data_dir=data_dir or default_data_dir(),
                            tasks_dir=tasks_dir, cache_dir=cache_dir or default_cache_dir(), results_dir=results)
    verdict = gate(variant, cfg, results, model=model, sweep=sweep,
                   say=lambda m: err.print(f"[dim]{m}[/dim]", highlight=False))
    if as_json:
        print(json.dumps(verdict.to_dict(), indent=1))
    else:
        print("\n".join(verdict.lines()))
    if not verdict.passed:
        raise typer.Exit(1)


@app.command(name="report")
def report_cli(
    results_dir: ResultsOpt = None,
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="md, csv, json or html (default: from the suffix of --output, else md).", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the table to FILE instead of stdout.", dir_okay=False)] = None,
    plots: Annotated[Optional[Path], typer.Option("--plots", help="Also write PNG plots (delta with CI, per-query deltas, Pareto) into this folder.", file_okay=False)] = None,
    model: GateModelOpt = None,
    tasks: GateTasksOpt = None,
    variant: Annotated[Optional[list[str]], typer.Option("--variant", "-v", help="Rows to show: names or named sets (default: every stored variant).", show_default=False)] = None,
    config: GateConfigOpt = None,
    bench: Annotated[Optional[Path], typer.Option("--bench", help="Bench results (default: <results-dir>/<model>/bench.json when present).", dir_okay=False)] = None,
) -> None:
    """Compare every stored variant with Float32: NDCG@10 per task, mean delta, CI, significance, speed; table and plots."""
    from evalsuite.gate import GateConfig
    from evalsuite.report import FORMATS, build_report, render
    from evalsuite.sweep import default_results_dir
    from evalsuite.variants import expand

    by_suffix = {".md": "md", ".markdown": "md", ".csv": "csv", ".json": "json", ".html": "html", ".htm": "html"}
    chosen = (fmt or by_suffix.get(output.suffix.lower() if output else "", "md")).lower()
    if chosen not in FORMATS:
        raise EvalsuiteError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    report = build_report(results_dir or default_results_dir(), model=model, tasks=_split(tasks),
                          variants=[s.name for s in expand(variant)] if variant else None, cfg=GateConfig.load(config),
                          bench_path=bench)
    for note in report.notes:
        err.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    text = render(report, chosen)  # type: ignore[arg-type]
    if output is None:
        print(text, end="")
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        err.print(f"[dim]wrote {output}[/dim]", highlight=False)
    if plots is not None:
        from evalsuite.plots import write_plots

        for path in write_plots(report, plots):
            err.print(f"[dim]wrote {path}[/dim]", highlight=False)


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


if __name__ == "__main__":
    main()
