"""``evalsuite gate`` and ``report``: judge a variant, and compare every stored variant with Float32."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from evalsuite.cli.common import (ActorsOpt, ActorThreadsOpt, AddressOpt, CacheOpt, CompareTasksOpt, CompositionsOpt, DataOpt, ExecutorOpt,
                                  GateConfigOpt, JsonOpt, JudgeSplitOpt, ModelSlugOpt, ResultsOpt, TasksDirOpt, app, at_least, executor_of,
                                  err, given, say, split_list, variant_names)
from evalsuite.errors import EvalsuiteError

if TYPE_CHECKING:
    from collections.abc import Callable

    from evalsuite.analysis.gate import GateConfig
    from evalsuite.run import SweepConfig
    from evalsuite.screen.progressive import ProgressiveResult
    from evalsuite.variants import VariantSpec

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
    compositions: CompositionsOpt = None,
    model: ModelSlugOpt = None,
    tasks: CompareTasksOpt = None,
    split: JudgeSplitOpt = None,
    results_dir: ResultsOpt = None,
    run_missing: Annotated[bool, typer.Option("--run", help="Evaluate the variant (and Float32) first when its results are missing, reusing caches.")] = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="With --run: evaluate progressively and stop (exit 1) as soon as a fail is certain, printing the coverage reached and the interval; a pass is always measured in full (per-task point rule only).")] = False,
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

    at_least(1, compositions=compositions)
    model = given(model, "--model")
    asked = split_list(tasks, "--tasks")  # as given, for `run`; resolved to stored names for the gate
    task_names = _task_names(tasks, tasks_dir)
    cfg = GateConfig.load(config).override(
        max_drop=max_drop, relative=relative, rule=rule, tasks=tuple(task_names) if task_names else None, split=split,
        scope=None if per_task is None else ("per-task" if per_task else "mean"), compositions=compositions)
    results = results_dir or default_results_dir()
    if executor != "local" and not run_missing:
        raise EvalsuiteError(f"--executor {executor} needs --run (it says where missing results are computed)")
    if fail_fast and not run_missing:
        raise EvalsuiteError("--fail-fast needs --run (it decides while the missing results are computed)")
    if fail_fast and (cfg.scope != "per-task" or cfg.rule != "point"):
        raise EvalsuiteError(f"--fail-fast decides the per-task point rule; this gate is {cfg.scope} {cfg.rule}")
    runs_on = executor_of(executor, address, actors, threads_per_actor)  # checked before the gate reads anything

    def sweep(spec: VariantSpec) -> SweepConfig:
        return SweepConfig(variants=[spec], model=model or DEFAULT_MODEL, tasks=asked if asked else list(cfg.tasks or []) or None,
                           split=cfg.split, data_dir=data_dir or default_data_dir(), tasks_dir=tasks_dir,
                           cache_dir=cache_dir or default_cache_dir(), results_dir=results, compositions=cfg.compositions)

    def compute() -> tuple[str, list[str]]:  # gate --run: the same run as `evalsuite run --variant V`
        if fail_fast:
            early = _progressive_fail(sweep, VariantSpec.parse(variant), cfg)
            if early is not None:
                if as_json:
                    print(json.dumps(early.to_dict(), indent=1))
                else:
                    print("\n".join([f"gate {early.variant} vs float32 ({early.model_id}, split {cfg.split}): {cfg.describe()}",
                                     *(f"{lk.task}: {100 * lk.coverage:.0f}% of the corpus encoded, predicted delta "
                                       f"{lk.delta:+.4f}, interval [{lk.low:+.4f}, {lk.high:+.4f}] (z {lk.z:.2f})"
                                       for lk in early.looks if lk.fail), early.reason]))
                raise typer.Exit(1)
        report = run_sweep(sweep(VariantSpec.parse(variant)), say=say, executor=runs_on)  # type: ignore[arg-type]
        return report.model_id, list(report.results)

    verdict = gate(variant, cfg, results, model=model, compute=compute if run_missing else None)
    if as_json:
        print(json.dumps(verdict.to_dict(), indent=1))
    else:
        print("\n".join(verdict.lines()))
    if not verdict.passed:
        raise typer.Exit(1)


def _task_names(tasks: str | None, tasks_dir: Path | None) -> list[str] | None:
    """The ``--tasks`` values as the names results are stored under: a BEIR folder given by path is resolved as ``run``
    resolves it (``<folder>-<hash>``); any other name is matched against the stored tasks."""
    from evalsuite.data.tasks import find_task

    names = split_list(tasks, "--tasks")
    return None if names is None else [find_task(n, tasks_dir).name if Path(n).expanduser().is_dir() else n for n in names]


def _progressive_fail(sweep: Callable[[VariantSpec], SweepConfig], spec: VariantSpec, cfg: GateConfig) -> ProgressiveResult | None:
    """``gate --run --fail-fast``: Float32 in full, then ``spec`` progressively; its result when a fail was decided early."""
    from evalsuite.models import resolve_model
    from evalsuite.run import run_sweep
    from evalsuite.run.plan import plan
    from evalsuite.screen.progressive import Progressive, composition_sd
    from evalsuite.ui import Progressbars
    from evalsuite.variants import BASELINE

    base = sweep(BASELINE)
    with Progressbars(err) as bars:
        tasks = list(run_sweep(base, say=bars.say, progress=bars.update).results)
        source = resolve_model(base.model)
        specs = [t for t in plan(base).tasks if t.name in tasks]
        k = cfg.compositions if spec.kind.batch_dependent else 1
        outcome = Progressive(source, specs, data_dir=base.data_dir, cache_dir=base.cache_dir, say=bars.say,
                              progress=bars.update).evaluate(spec, cfg.max_drop, cfg.relative,
                                                             composition_sd(base.results_dir, source.model_id, tasks, cfg.compositions, cfg.split) if k > 1 else None, k)
    return outcome if outcome.outcome == "fail" else None


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
    compositions: CompositionsOpt = None,
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

    at_least(1, compositions=compositions)
    suffix = output.suffix.lower() if output else ""
    if fmt is None and suffix not in FORMAT_OF_SUFFIX:
        raise EvalsuiteError(f"--output {output}: unknown suffix {suffix!r}; name a .md, .csv, .json or .html file, or give --format")
    chosen = (fmt or FORMAT_OF_SUFFIX[suffix]).lower()
    if chosen not in FORMATS:
        raise EvalsuiteError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    names = variant_names(variant) if variant else None
    report = build_report(results_dir or default_results_dir(), model=given(model, "--model"), tasks=_task_names(tasks, None),
                          variants=[s.name for s in expand(names)] if names else None,
                          cfg=GateConfig.load(config).override(split=split, compositions=compositions),
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
