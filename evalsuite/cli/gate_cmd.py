"""``evalsuite gate`` and ``report``: judge a variant, and compare every stored variant with Float32."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from evalsuite.cli.common import (ActorsOpt, ActorThreadsOpt, AddressOpt, CacheOpt, CompareTasksOpt, DataOpt, ExecutorOpt,
                                  GateConfigOpt, JsonOpt, JudgeSplitOpt, ModelSlugOpt, ResultsOpt, TasksDirOpt, app, executor_of,
                                  given, say, split_list, variant_names)
from evalsuite.errors import EvalsuiteError

# Report formats by the suffix of --output; a file name without a suffix gets markdown.
FORMAT_OF_SUFFIX = {".md": "md", ".markdown": "md", ".csv": "csv", ".json": "json", ".html": "html", ".htm": "html", "": "md"}


@app.command(name="gate")
def gate_cli(
    variant: Annotated[str, typer.Option("--variant", "-v", help="The variant to judge, e.g. qint8-pc-7bit.", show_default=False)],
    max_drop: Annotated[Optional[float], typer.Option("--max-drop", help="Largest acceptable NDCG@10 loss vs Float32 (default from --config: 0.01).")] = None,
    relative: Annotated[Optional[bool], typer.Option("--relative/--absolute", help="--max-drop is a fraction of Float32's NDCG@10 (0.01 = 1%), or absolute NDCG@10 (default from --config: absolute).", show_default=False)] = None,
    per_task: Annotated[Optional[bool], typer.Option("--per-task/--mean", help="Every task must pass, or the macro mean over tasks (default from --config: per-task).", show_default=False)] = None,
    rule: Annotated[Optional[str], typer.Option("--rule", help="point: the mean delta must be within the limit; ci: fail only when the whole CI is beyond it ('inconclusive' when it straddles it) (default from --config: point).", show_default=False)] = None,
    config: GateConfigOpt = None,
    model: ModelSlugOpt = None,
    tasks: CompareTasksOpt = None,
    split: JudgeSplitOpt = None,
    results_dir: ResultsOpt = None,
    run_missing: Annotated[bool, typer.Option("--run", help="Evaluate the variant (and Float32) first when its results are missing, reusing caches.")] = False,
    data_dir: DataOpt = None,
    tasks_dir: TasksDirOpt = None,
    cache_dir: CacheOpt = None,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    actors: ActorsOpt = None,
    threads_per_actor: ActorThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pass or fail a variant against Float32: exit 0 pass (or inconclusive), 1 fail, 2 error. One line per task says why."""
    from evalsuite.analysis.gate import GateConfig, gate
    from evalsuite.config import default_cache_dir, default_data_dir, default_results_dir
    from evalsuite.models import DEFAULT_MODEL
    from evalsuite.run import SweepConfig, run_sweep
    from evalsuite.variants import VariantSpec

    model = given(model, "--model")
    task_names = split_list(tasks, "--tasks")
    cfg = GateConfig.load(config).override(
        max_drop=max_drop, relative=relative, rule=rule, tasks=tuple(task_names) if task_names else None, split=split,
        scope=None if per_task is None else ("per-task" if per_task else "mean"))
    results = results_dir or default_results_dir()
    if executor != "local" and not run_missing:
        raise EvalsuiteError(f"--executor {executor} needs --run (it says where missing results are computed)")
    runs_on = executor_of(executor, address, actors, threads_per_actor)  # checked before the gate reads anything

    def compute() -> tuple[str, list[str]]:  # gate --run: the same run as `evalsuite run --variant V`
        sweep = SweepConfig(variants=[VariantSpec.parse(variant)], model=model or DEFAULT_MODEL,
                            tasks=list(cfg.tasks) if cfg.tasks else None, split=cfg.split, data_dir=data_dir or default_data_dir(),
                            tasks_dir=tasks_dir, cache_dir=cache_dir or default_cache_dir(), results_dir=results)
        report = run_sweep(sweep, say=say, executor=runs_on)  # type: ignore[arg-type]
        return report.model_id, list(report.results)

    verdict = gate(variant, cfg, results, model=model, compute=compute if run_missing else None)
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
    model: ModelSlugOpt = None,
    tasks: CompareTasksOpt = None,
    variant: Annotated[Optional[list[str]], typer.Option("--variant", "-v", help="Rows to show: names or named sets (default: every stored variant).", show_default=False)] = None,
    split: JudgeSplitOpt = None,
    config: GateConfigOpt = None,
    bench: Annotated[Optional[Path], typer.Option("--bench", help="Bench results (default: <results-dir>/<model>/bench.json when present).", dir_okay=False)] = None,
) -> None:
    """Compare every stored variant with Float32: NDCG@10 per task, mean delta, CI, significance, speed; table and plots."""
    from evalsuite.analysis.gate import GateConfig
    from evalsuite.analysis.render import FORMATS, render
    from evalsuite.analysis.report import build_report
    from evalsuite.cli.common import invocation
    from evalsuite.config import default_results_dir
    from evalsuite.files import atomic_write_text, reporting_full_disk
    from evalsuite.variants import expand

    suffix = output.suffix.lower() if output else ""
    if fmt is None and suffix not in FORMAT_OF_SUFFIX:
        raise EvalsuiteError(f"--output {output}: unknown suffix {suffix!r}; name a .md, .csv, .json or .html file, or give --format")
    chosen = (fmt or FORMAT_OF_SUFFIX[suffix]).lower()
    if chosen not in FORMATS:
        raise EvalsuiteError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    names = variant_names(variant) if variant else None
    report = build_report(results_dir or default_results_dir(), model=given(model, "--model"), tasks=split_list(tasks, "--tasks"),
                          variants=[s.name for s in expand(names)] if names else None, cfg=GateConfig.load(config).override(split=split),
                          bench_file=bench)
    for note in report.notes:
        say(f"note: {note}", "yellow")
    text = render(report, chosen, command=invocation())  # type: ignore[arg-type]
    if output is None:
        print(text, end="")
    else:
        atomic_write_text(output, text)
        say(f"wrote {output}")
    if plots is not None:
        from evalsuite.analysis.plots import write_plots

        with reporting_full_disk(plots):
            written = write_plots(report, plots)
        for path in written:
            say(f"wrote {path}")
