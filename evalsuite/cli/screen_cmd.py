"""``evalsuite screen``: predict each candidate's NDCG@10 loss from a small sample, in seconds, with pass/fail/uncertain."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from evalsuite.cli.common import (CacheOpt, DataOpt, JsonOpt, ModelOpt, TasksDirOpt, TasksOpt, ThreadsOpt, VariantOpt, app,
                                  at_least, err, given, out, split_list, variant_names)
from evalsuite.errors import EvalsuiteError


@app.command()
def screen(
    variant: VariantOpt = ["seed"],  # noqa: B006  typer needs a list default
    model: ModelOpt = "sentence-transformers/all-MiniLM-L6-v2",
    tasks: TasksOpt = None,
    data_dir: DataOpt = None,
    tasks_dir: TasksDirOpt = None,
    cache_dir: CacheOpt = None,
    max_drop: Annotated[float, typer.Option("--max-drop", help="Largest acceptable NDCG@10 loss per task vs Float32, >= 0 and < 1.")] = 0.01,
    relative: Annotated[bool, typer.Option("--relative/--absolute", help="--max-drop is a fraction of Float32's NDCG@10.")] = False,
    queries: Annotated[int, typer.Option(help="Judged queries embedded per task, at least 1 (all when fewer).")] = 400,
    documents: Annotated[int, typer.Option(help="Documents embedded per task, at least 2.")] = 96,
    draws: Annotated[int, typer.Option(help="Simulated corpora behind the prediction, at least 2.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the sample and the simulation, >= 0.")] = 0,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Screen candidates against Float32 on a sample: cosine drift, top-10 agreement, predicted NDCG@10 delta with an
    interval, and pass, fail or uncertain for the per-task point rule (uncertain: run the full evaluation)."""
    from evalsuite.analysis.tables import TextTable, to_rich
    from evalsuite.config import default_cache_dir, default_data_dir
    from evalsuite.data.loading import task_unavailable
    from evalsuite.data.tasks import default_tasks, find_task
    from evalsuite.models import resolve_model
    from evalsuite.screen import SCHEMA, Screener, ScreenSample
    from evalsuite.ui import Progressbars
    from evalsuite.variants import expand

    at_least(1, queries=queries, threads=threads)
    at_least(2, documents=documents, draws=draws)
    at_least(0, seed=seed)
    if not 0 <= max_drop < 1:
        raise EvalsuiteError(f"--max-drop must be a number >= 0 and < 1, not {max_drop}")
    specs = expand(variant_names(variant))
    names = split_list(tasks, "--tasks")
    data = data_dir or default_data_dir()
    if names:
        task_specs = [find_task(t, tasks_dir) for t in names]
    else:  # the default tasks that have local data, as `run` skips the others
        task_specs = [t for t in default_tasks(tasks_dir) if t.local_folder(data) is not None and not task_unavailable(t, data)]
        if not task_specs:
            raise EvalsuiteError("no default task has local data: the screen reads local BEIR folders; pass --data-dir or --tasks")
    source = resolve_model(given(model, "--model"))  # type: ignore[arg-type]
    results = []
    with Progressbars(err) as bars:
        screener = Screener(source, task_specs, data_dir=data, cache_dir=cache_dir or default_cache_dir(),
                            sample=ScreenSample(queries, documents, draws, seed), threads=threads, say=bars.say,
                            progress=bars.update)
        for spec in specs:
            bars.say(f"screening {spec.name}")
            results.append(screener.screen(spec, max_drop, relative))
    if as_json:
        print(json.dumps({"schema": SCHEMA, "model": source.model_id, "float32_load_s": screener.baseline_seconds,
                          "results": [r.to_dict() for r in results]}, indent=1))
        return
    rows = [[r.variant, t.task, f"{t.queries}/{t.judged_queries}", f"{t.documents}/{t.corpus}",
             f"{t.query_cosine.mean:.4f} ({t.query_cosine.min:.3f})", f"{t.document_cosine.mean:.4f} ({t.document_cosine.min:.3f})",
             f"{t.top10_overlap:.3f}", f"{t.float32_ndcg_at_10:.4f}",
             f"{t.prediction.delta:+.4f} [{t.prediction.ci_low:+.4f}, {t.prediction.ci_high:+.4f}]", t.outcome.upper(),
             f"{t.seconds:.1f}"] for r in results for t in r.tasks]
    limit = f"{100 * max_drop:.2f}% of Float32" if relative else f"{max_drop:.4f}"
    out.print(to_rich(TextTable(
        f"Screen vs float32 ({source.model_id}), max drop {limit} per task",
        ["variant", "task", "queries", "docs", "query cos mean (min)", "doc cos mean (min)", "top-10 overlap",
         "float32 NDCG@10", "predicted delta [interval]", "screen", "s"],
        rows, note=f"{100 * screener.sample.confidence:g}% intervals; UNCERTAIN: run `evalsuite run` / `gate` for the full evaluation",
        left=2)))
    for r in results:
        out.print(f"{r.reason} ({r.seconds:.1f} s)", highlight=False)
