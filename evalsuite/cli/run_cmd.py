"""``evalsuite run``, ``convert``, ``variants`` and ``tasks``: build and evaluate variants, list what exists."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from evalsuite.cli.common import (ActorsOpt, ActorThreadsOpt, AddressOpt, CacheOpt, CompositionsOpt, DataOpt, ExecutorOpt, JsonOpt, ModelOpt,
                                  ResultsOpt, SplitOpt, TasksDirOpt, TasksOpt, ThreadsOpt, VariantOpt, app, at_least, err,
                                  executor_of, given, one_of, out, say, split_list, variant_names)


@app.command()
def run(
    variant: VariantOpt = ["seed"],  # noqa: B006  typer needs a list default
    model: ModelOpt = "sentence-transformers/all-MiniLM-L6-v2",
    tasks: TasksOpt = None,
    split: SplitOpt = None,
    data_dir: DataOpt = None,
    tasks_dir: TasksDirOpt = None,
    cache_dir: CacheOpt = None,
    results_dir: ResultsOpt = None,
    batch_size: Annotated[int, typer.Option(help="Documents per onnxruntime call, at least 1.")] = 32,
    query_batch_size: Annotated[int, typer.Option(help="Queries per call, at least 1 (1 = online serving).")] = 1,
    order: Annotated[str, typer.Option(help="Batch order: length (sorted, little padding) or given.")] = "length",
    compositions: CompositionsOpt = None,
    threads: ThreadsOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Recompute results even when stored ones match.")] = False,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    actors: ActorsOpt = None,
    threads_per_actor: ActorThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build each variant, evaluate it and Float32 on retrieval tasks, and print NDCG@10 and the delta per task."""
    from evalsuite.analysis.render import sweep_tables
    from evalsuite.analysis.tables import to_rich
    from evalsuite.config import default_cache_dir, default_results_dir
    from evalsuite.encode import BatchPolicy
    from evalsuite.run import SweepConfig, run_sweep
    from evalsuite.ui import Progressbars
    from evalsuite.variants import expand

    from evalsuite.analysis.gate import GateConfig

    at_least(1, batch_size=batch_size, query_batch_size=query_batch_size, threads=threads, compositions=compositions)
    cfg = SweepConfig(
        variants=expand(variant_names(variant)), model=given(model, "--model"), tasks=split_list(tasks, "--tasks"),  # type: ignore[arg-type]
        split=split, data_dir=data_dir, tasks_dir=tasks_dir,
        cache_dir=cache_dir or default_cache_dir(), results_dir=results_dir or default_results_dir(),
        policy=BatchPolicy(batch_size, query_batch_size, one_of("--order", order, ("length", "given"))),  # type: ignore[arg-type]
        compositions=compositions or GateConfig.load().compositions, threads=threads, force=force,
    )
    runs_on = executor_of(executor, address, actors, threads_per_actor)
    with Progressbars(err) as bars:
        report = run_sweep(cfg, say=bars.say, progress=bars.update, executor=runs_on)  # type: ignore[arg-type]
    for name, why in report.skipped.items():
        say(f"skipped {name}: {why}", "yellow")
    if as_json:
        print(json.dumps({"model": report.model_id, "results": report.rows(), "skipped": report.skipped}, indent=1))
    else:
        for table in sweep_tables(report):
            out.print(to_rich(table))


@app.command()
def convert(
    variant: VariantOpt = ["float32"],  # noqa: B006
    model: ModelOpt = "sentence-transformers/all-MiniLM-L6-v2",
    cache_dir: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export the model to ONNX and build each variant (cached by content); print the file of each."""
    from evalsuite.build import build_variant
    from evalsuite.models import resolve_model
    from evalsuite.config import default_cache_dir
    from evalsuite.variants import expand

    source = resolve_model(given(model, "--model"))  # type: ignore[arg-type]
    built = []
    for spec in expand(variant_names(variant)):
        with err.status(f"building {spec.name}"):
            art = build_variant(source, spec, cache_dir or default_cache_dir(), say)
        built.append({"variant": spec.name, "path": str(art.path), "sha256": art.sha256, "size_bytes": art.size_bytes,
                      "export_max_abs_diff": art.meta.get("export_max_abs_diff"),
                      "optimized_max_abs_diff": art.meta.get("optimized_max_abs_diff"), "fused_ops": art.fused_ops})
    if as_json:
        print(json.dumps({"model": model, "artifacts": built}, indent=1))
    else:
        for b in built:
            out.print(f"{b['variant']:<20} {b['size_bytes'] / 1e6:7.1f} MB  {b['path']}", highlight=False)
            fused = ", ".join(f"{op} {n}" for op, n in b["fused_ops"].items()) or "none"
            out.print(f"{'':<20} fused: {fused}", highlight=False)


@app.command()
def variants(as_json: JsonOpt = False) -> None:
    """Explain the variant grammar: the registered kinds, their settings, and the named sets."""
    from evalsuite.variants import grammar, kinds, named_sets

    sets = named_sets()
    if as_json:
        described = [{"kind": k.name, "dtypes": list(k.dtypes), "summary": k.summary,
                      "options": [{"name": o.name, "label": o.label, "help": o.help, "default": o.default,
                                   "tokens": dict(o.tokens),
                                   "prefix": o.prefix or None} for o in k.options]} for k in kinds()]
        print(json.dumps({"grammar": grammar(), "kinds": described, "sets": sets}, indent=1))
        return
    out.print(grammar(), highlight=False)
    out.print("\nNamed sets (use as --variant NAME):", highlight=False)
    for name, members in sets.items():
        shown = ", ".join(members) if len(members) <= 10 else f"{', '.join(members[:6])}, ... ({len(members)} variants)"
        out.print(f"  {name:<7} {shown}", highlight=False)


@app.command(name="tasks")
def list_tasks(tasks_dir: TasksDirOpt = None, data_dir: DataOpt = None) -> None:
    """List the registered tasks and whether their local data is present."""
    from evalsuite.data.loading import task_unavailable
    from evalsuite.data.tasks import registry

    for spec in registry(tasks_dir).values():
        state = "" if data_dir is None else (task_unavailable(spec, data_dir) or "data ok")
        out.print(f"{spec.name:<12} mteb={spec.mteb_name or '-':<10} split={spec.split:<5} folder={spec.beir_folder or '-':<10} {state}", highlight=False)
