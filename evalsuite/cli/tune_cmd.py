"""``evalsuite tune`` (the fastest build that passes the gate) and ``sensitivity`` (which int8 nodes hurt most)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from evalsuite.cli.common import (ActorsOpt, ActorThreadsOpt, AddressOpt, CacheOpt, CompositionsOpt, DataOpt, ExecutorOpt, GateConfigOpt, JsonOpt,
                                  ModelOpt, ResultsOpt, TasksDirOpt, TasksOpt, app, at_least, err, executor_of, given, invocation,
                                  one_of, out, say, split_list)
from evalsuite.errors import EvalsuiteError

StartOpt = Annotated[str, typer.Option("--start", help="Comma-separated candidates to start from; a dynamic int8 one that fails the gate gets nodes kept in float.")]
QueriesOpt = Annotated[int, typer.Option("--sample-queries", help="Queries per task in the sensitivity sample, at least 1.")]
DocsOpt = Annotated[int, typer.Option("--sample-documents", help="Documents per task in the sensitivity sample, at least 1.")]


@app.command()
def tune(
    max_drop: Annotated[Optional[float], typer.Option("--max-drop", help="Largest acceptable NDCG@10 loss vs Float32 (default from --config: 0.01).")] = None,
    rule: Annotated[Optional[str], typer.Option("--rule", help="The gate's rule: point or ci (default from --config: point).", show_default=False)] = None,
    start: StartOpt = "qint8-7bit,qint8",
    model: ModelOpt = "sentence-transformers/all-MiniLM-L6-v2",
    tasks: TasksOpt = None,
    data_dir: DataOpt = None,
    tasks_dir: TasksDirOpt = None,
    budget: Annotated[Optional[float], typer.Option("--budget", help="Minutes after which no new evaluation is started (default: no limit); re-run to continue.")] = None,
    max_nodes: Annotated[int, typer.Option("--max-nodes", help="At most this many nodes kept in float per candidate, at least 1.")] = 8,
    bench_repeats: Annotated[int, typer.Option("--bench-repeats", help="Timed rounds of the bench, at least 1.")] = 30,
    sample_queries: QueriesOpt = 4,
    sample_documents: DocsOpt = 12,
    config: GateConfigOpt = None,
    compositions: CompositionsOpt = None,
    cache_dir: CacheOpt = None,
    results_dir: ResultsOpt = None,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    actors: ActorsOpt = None,
    threads_per_actor: ActorThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find the fastest build that passes the gate: evaluate progressively (a certain fail stops early), move harmful
    nodes to float (under -7bit first to 8-bit weights), confirm with full evaluations, time.

    Writes configs/mixed/<name>.yaml for each mixed build (variant <base>-x<name>, usable by run, gate and bench),
    and <results-dir>/<model>/tune/tune.json (schema: docs/tune-schema.md). Exit 0 when a build passes, 1 when none does.
    With --executor ray the full evaluations encode on Ray actors; progressive evaluations, rankings and the bench stay
    on this machine.
    """
    from evalsuite.analysis.gate import GateConfig
    from evalsuite.config import default_cache_dir, default_results_dir
    from evalsuite.tune.outcome import tune as run_tune
    from evalsuite.tune.search import TuneConfig
    from evalsuite.ui import Progressbars
    from evalsuite.variants import VariantSpec

    at_least(1, max_nodes=max_nodes, bench_repeats=bench_repeats, sample_queries=sample_queries, sample_documents=sample_documents,
             compositions=compositions)
    if rule is not None:
        one_of("--rule", rule, ("point", "ci"))
    starts = tuple(VariantSpec.parse(s).name for s in split_list(start, "--start") or ())
    task_names = split_list(tasks, "--tasks")
    cfg = TuneConfig(
        starts=starts, model=given(model, "--model"), tasks=task_names, data_dir=data_dir, tasks_dir=tasks_dir,  # type: ignore[arg-type]
        gate=GateConfig.load(config).override(max_drop=max_drop, rule=rule, compositions=compositions), max_nodes=max_nodes, budget_minutes=budget,
        bench_repeats=bench_repeats, sample_queries=sample_queries, sample_documents=sample_documents,
        cache_dir=cache_dir or default_cache_dir(), results_dir=results_dir or default_results_dir())
    runs_on = executor_of(executor, address, actors, threads_per_actor)
    with Progressbars(err) as bars:
        outcome = run_tune(cfg, say=bars.say, progress=bars.update, command=invocation(), executor=runs_on)  # type: ignore[arg-type]
    if as_json:
        print(json.dumps(outcome.to_dict(), indent=1))
    else:
        for line in outcome.lines():
            out.print(line, highlight=False, soft_wrap=True)
    if outcome.recommended is None:
        raise typer.Exit(1)


@app.command()
def sensitivity(
    variant: Annotated[str, typer.Option("--variant", "-v", help="A dynamic int8 variant, e.g. qint8-7bit.", show_default=False)],
    model: ModelOpt = "sentence-transformers/all-MiniLM-L6-v2",
    tasks: TasksOpt = None,
    data_dir: DataOpt = None,
    tasks_dir: TasksDirOpt = None,
    sample_queries: QueriesOpt = 4,
    sample_documents: DocsOpt = 12,
    top: Annotated[Optional[int], typer.Option("--top", help="Show only the N most harmful nodes.")] = None,
    cache_dir: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rank the nodes of an int8 variant by how much each one alone moves the embeddings (1 - mean cosine to Float32)."""
    from evalsuite.config import default_cache_dir
    from evalsuite.models import resolve_model
    from evalsuite.run.plan import SweepConfig, plan
    from evalsuite.tune.sample import draw_sample
    from evalsuite.tune.sensitivity import rank_nodes
    from evalsuite.ui import Progressbars
    from evalsuite.variants import BASELINE, VariantSpec

    at_least(1, sample_queries=sample_queries, sample_documents=sample_documents, top=top)
    spec = VariantSpec.parse(variant)
    if spec.kind.name != "dynamic":
        raise EvalsuiteError(f"--variant {spec.name}: sensitivity ranks the nodes of a dynamic int8 variant (qint8/quint8)")
    source = resolve_model(given(model, "--model"))  # type: ignore[arg-type]
    specs = plan(SweepConfig(variants=[BASELINE], model=source.model_id, tasks=split_list(tasks, "--tasks"), data_dir=data_dir,
                             tasks_dir=tasks_dir)).tasks
    sample = draw_sample(specs, data_dir, sample_queries, sample_documents)
    with Progressbars(err) as bars:
        ranking = rank_nodes(source, spec, sample, cache_dir or default_cache_dir(), bars.say,
                             lambda i, n: bars.update(spec.name, "sensitivity", i, n))
    doc = ranking.to_dict()
    doc["nodes"] = doc["nodes"][:top] if top else doc["nodes"]  # type: ignore[index]
    if as_json:
        print(json.dumps(doc, indent=1))
        return
    say(f"{ranking.variant} of {source.model_id}: {sample.origin}; loss = 1 - mean cosine to Float32, one text per call")
    out.print(f"{'rank':>4} {'loss':>9} {'min cos':>8}  node", highlight=False)
    for n in doc["nodes"]:  # type: ignore[union-attr]
        out.print(f"{n['rank']:>4} {n['loss']:>9.5f} {n['min_cos']:>8.4f}  {n['node']} ({n['op_type']})", highlight=False, soft_wrap=True)
