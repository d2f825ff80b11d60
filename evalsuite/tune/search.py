"""The tune loop: evaluate candidates progressively, fall back their most harmful nodes to float, confirm with the gate.

Every build is evaluated progressively (:mod:`evalsuite.screen.progressive`): its corpus is encoded in the full run's
own shards, and the NDCG@10 delta of each task is predicted with an interval after each look. A build whose fail is
certain under the stopping rule stops there and the ladder moves on; any other build is completed, then evaluated in
full (for a batch-dependent build, under every batch composition the gate judges) and judged by the gate, so every
number tune recommends or stores is exact. Progressive decisions follow the gate's per-task point rule; under another
rule or scope every build is evaluated in full.

1. Float32 is evaluated in full (reused from the result store when stored). Each start candidate (e.g.
   ``qint8-7bit``) is judged: with reusable stored full results by the gate on them, otherwise progressively first.
   A candidate that does not fail is kept as it is.
2. A dynamic int8 candidate that fails gets its nodes ranked (:mod:`sensitivity`) and climbs a ladder of builds
   (:mod:`ladder`, ``configs/mixed/<name>.yaml``, variant ``<base>-x<name>``): the top k nodes in float for
   k = 1, 2, ...; for a ``-7bit`` candidate, also ranked at 8 bits, a greedy climb where the most harmful node
   first gets 8-bit weights (free on VNNI) and goes to float only if it still hurts. Each build is judged as in 1;
   on a fail it takes the next step.
3. Float32, the evaluated builds and their start candidates are timed side by side with ``bench`` at the gate's
   speed point (128 tokens, batch 1 by default), and :mod:`pareto` picks the front and the recommended build.

Every step is cached (artifacts, embedding shards, results, rankings, config files named by their content), so an
interrupted tune resumes where it stopped; ``budget_minutes`` stops starting new evaluations after that long.

Example:
    >>> outcome = tune(TuneConfig(starts=("qint8-7bit", "qint8"), tasks=["scifact", "nfcorpus"], data_dir=Path("beir")))  # doctest: +SKIP
    >>> outcome.recommended.variant  # doctest: +SKIP
    'qint8-xf1a2b3c4d'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from evalsuite.analysis.gate import GateConfig, Verdict, gate
from evalsuite.config import default_cache_dir, default_results_dir
from evalsuite.errors import EvalsuiteError
from evalsuite.files import sha256_text
from evalsuite.models import DEFAULT_MODEL, ModelSource, resolve_model
from evalsuite.run import SweepConfig, run_sweep
from evalsuite.run.executor import Executor
from evalsuite.run.plan import plan
from evalsuite.run.units import UnitRunner
from evalsuite.run.units import Progress
from evalsuite.screen.progressive import Progressive, ProgressiveResult, composition_sd
from evalsuite.screen.stopping import StoppingRule
from evalsuite.tune.sample import DEFAULT_DOCUMENTS, DEFAULT_QUERIES, TextSample, draw_sample
from evalsuite.tune.sensitivity import Sensitivity, rank_nodes
from evalsuite.variants import BASELINE, VariantSpec
from evalsuite.tune import ladder
from evalsuite.variants.float_nodes import MixedConfig, has_weight, quantizable_nodes, with_float_nodes

Say = Callable[[str], None]


@dataclass(frozen=True)
class TuneConfig:
    """What ``evalsuite tune`` was asked: start candidates, tasks, the gate, the bench point and the budget."""

    starts: tuple[str, ...] = ("qint8-7bit", "qint8")
    model: str = DEFAULT_MODEL
    tasks: list[str] | None = None
    data_dir: Path | None = None
    tasks_dir: Path | None = None
    gate: GateConfig = field(default_factory=GateConfig)
    max_nodes: int = 8  # at most this many nodes kept in float per candidate
    budget_minutes: float | None = None
    bench_repeats: int = 30
    sample_queries: int = DEFAULT_QUERIES
    sample_documents: int = DEFAULT_DOCUMENTS
    stopping: StoppingRule = field(default_factory=StoppingRule)  # looks and error rate of progressive evaluation
    cache_dir: Path = field(default_factory=default_cache_dir)
    results_dir: Path = field(default_factory=default_results_dir)

    def __post_init__(self) -> None:
        if not self.starts:
            raise EvalsuiteError("tune needs at least one start candidate")
        if self.max_nodes < 1:
            raise EvalsuiteError(f"--max-nodes must be a whole number >= 1, not {self.max_nodes}")
        if self.budget_minutes is not None and not self.budget_minutes > 0:
            raise EvalsuiteError(f"--budget must be a number of minutes > 0, not {self.budget_minutes}")


@dataclass
class Build:
    """One build tune looked at: where it came from, what its progressive evaluation found, what the gate said on full
    results (``verdict`` None: not evaluated in full)."""

    variant: str
    base: str
    float_nodes: tuple[str, ...] = ()
    config_file: str | None = None
    full_range: tuple[str, ...] = ()  # nodes of a -7bit start whose weights keep 8 bits
    progressive: ProgressiveResult | None = None
    verdict: Verdict | None = None
    size_bytes: int | None = None


@dataclass
class Search:
    """Everything the loop found, before timing: the builds, the rankings and whether the budget ran out."""

    source: ModelSource
    tasks: list[str]
    builds: dict[str, Build]
    rankings: dict[str, Sensitivity]
    sample: TextSample | None
    budget_exhausted: bool = False
    notes: list[str] = field(default_factory=list)


class _Clock:
    def __init__(self, minutes: float | None) -> None:
        self.deadline = None if minutes is None else time.monotonic() + 60 * minutes

    def out(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


def search(cfg: TuneConfig, say: Say | None = None, progress: Progress | None = None,
           executor: Executor | None = None) -> Search:
    """Steps 1 and 2 of the module docstring: the builds that pass the gate on full evaluations, and the others seen.
    Full evaluations run on ``executor`` (default: this process); progressive evaluations and rankings run here."""
    from evalsuite.build import build_variant

    say = say or (lambda _m: None)
    clock = _Clock(cfg.budget_minutes)
    starts = [VariantSpec.parse(s) for s in cfg.starts]
    source = resolve_model(cfg.model)
    done = Search(source, [], {}, {}, None)
    task_specs = plan(_sweep(cfg, BASELINE)).tasks

    def evaluate(spec: VariantSpec) -> Verdict:
        report = run_sweep(_sweep(cfg, spec), say=say, progress=progress, executor=executor)
        done.tasks = list(report.results)
        gate_cfg = cfg.gate.override(tasks=tuple(done.tasks))
        verdict = gate(spec.name, gate_cfg, cfg.results_dir, model=report.model_id)
        say(verdict.reason)
        return verdict

    # Progressive evaluation decides the per-task point rule; under another rule or scope a fail it predicts may still
    # pass the gate.
    early = cfg.gate.scope == "per-task" and cfg.gate.rule == "point"
    if not early:
        done.notes.append(f"progressive evaluation decides the per-task point rule, the gate is {cfg.gate.scope} "
                          f"{cfg.gate.rule}: every build was evaluated in full")

    def judge(build: Build) -> bool:
        """Evaluate ``build`` (progressively first, unless its full results are stored) and say whether it failed."""
        spec = VariantSpec.parse(build.variant)
        if early and not _reusable(cfg, spec):
            k = cfg.gate.compositions if spec.kind.batch_dependent else 1
            build.progressive = progressive.evaluate(spec, cfg.gate.max_drop, cfg.gate.relative,
                                                     composition_sd(cfg.results_dir, source.model_id, done.tasks, cfg.gate.compositions, cfg.gate.split) if k > 1 else None, k)
            say(f"progressive {build.progressive.reason}")
            if build.progressive.outcome == "fail":
                return True
        build.verdict = evaluate(spec)
        return build.verdict.outcome == "fail"

    # Float32's full results first: the gate compares against them and progressive evaluation reads their embeddings.
    done.tasks = list(run_sweep(_sweep(cfg, BASELINE), say=say, progress=progress, executor=executor).results)
    task_specs = [t for t in task_specs if t.name in done.tasks]  # a task `run` skipped (no data) is not evaluated
    progressive = Progressive(source, task_specs, data_dir=cfg.data_dir, cache_dir=cfg.cache_dir, rule=cfg.stopping,
                              say=say, progress=progress)
    for start in starts:
        if clock.out():
            done.budget_exhausted = True
            break
        build = Build(start.name, start.name)
        done.builds[start.name] = build
        failed = judge(build)
        build.size_bytes = build_variant(source, start, cfg.cache_dir).size_bytes
        if not failed:
            continue
        if start.kind.name != "dynamic" or start.settings.get("float_nodes"):
            done.notes.append(f"{start.name} fails and is not a dynamic int8 base: no nodes to fall back")
            continue
        _probe_rungs(source, start, cfg.cache_dir, say)  # a rung that cannot be built fails here, before any ranking
        if done.sample is None:
            done.sample = draw_sample(task_specs, cfg.data_dir, cfg.sample_queries, cfg.sample_documents)
        for spec in (start, _eight_bit(start)) if start.settings.get("reduce_range") else (start,):
            say(f"ranking the nodes of {spec.name} by sensitivity ({len(done.sample.queries) + len(done.sample.documents)} texts)")
            done.rankings[spec.name] = rank_nodes(source, spec, done.sample, cfg.cache_dir, say, None if progress is None
                                                  else lambda i, n, name=spec.name: progress(name, "sensitivity", i, n))
        ranking = done.rankings[start.name]
        _fall_back(cfg, done, start, ranking, judge, clock)
    return done


def _reusable(cfg: TuneConfig, spec: VariantSpec) -> bool:
    """Whether every result a full evaluation of ``spec`` needs is stored and reusable as it is."""
    runner = UnitRunner(plan(_sweep(cfg, spec)))
    return all(runner.stored(u) is not None for u in runner.plan.units if u.action == "evaluate" and u.variant == spec.name)


def _fall_back(cfg: TuneConfig, done: Search, start: VariantSpec, ranking: Sensitivity, judge: Callable[[Build], bool],
               clock: _Clock) -> None:
    """Climb the ladder of ``start`` (:mod:`ladder`): ``judge(build)`` evaluates each build (progressively first) and
    says whether it failed; the climb stops at the first that does not."""
    from evalsuite.build import build_variant

    eight = done.rankings.get(_eight_bit(start).name) if start.settings.get("reduce_range") else None
    if eight is None:
        steps = ladder.to_float(ranking.top(len(ranking.ranked)), cfg.max_nodes)
    else:
        steps = ladder.climb({n.node: n.loss for n in ranking.ranked}, {n.node: n.loss for n in eight.ranked},
                             {n.node for n in ranking.ranked if has_weight(n.op_type)}, cfg.max_nodes)
    for k, step in enumerate(steps, 1):
        if clock.out():
            done.budget_exhausted = True
            done.notes.append(f"budget exhausted before step {k} of {start.name} was evaluated")
            return
        mixed = _config(done.source, start, step, ranking, eight, k)
        spec = with_float_nodes(start, mixed.name)
        build = Build(spec.name, start.name, step.float_nodes, f"configs/mixed/{mixed.name}.yaml", full_range=step.full_range)
        done.builds[spec.name] = build
        mixed.write()  # building the variant reads its config file
        build.size_bytes = build_variant(done.source, spec, cfg.cache_dir).size_bytes
        if not judge(build):
            return
    done.notes.append(f"{start.name}: no build with at most {cfg.max_nodes} float nodes passed the gate")


def _probe_rungs(source: ModelSource, start: VariantSpec, cache_dir: Path, say: Say) -> None:
    """Build ``start`` with one node on each rung its ladder can use (a node in float and, under ``-7bit``, one with 8-bit
    weights), so that a rung onnxruntime refuses stops tune before the (long) rankings rather than after them."""
    import onnx

    from evalsuite.build import build_variant

    parent = build_variant(source, start.kind.parent(start) or BASELINE, cache_dir)
    graph = onnx.load(str(parent.path), load_external_data=False)
    ops = {n.name: n.op_type for n in graph.graph.node}
    weighted = [n for n in quantizable_nodes(graph) if has_weight(ops[n])]
    if len(weighted) < 2:
        return
    full = (weighted[1],) if start.settings.get("reduce_range") else ()
    name = "p" + sha256_text(source.weights_sha256, start.name, weighted[0], *full)[:8]
    MixedConfig(name, source.model_id, source.weights_sha256, start.name, (weighted[0],),
                {"method": "probe: one node per rung of the ladder, built before the rankings", "tool": "evalsuite tune"},
                full).write()
    say(f"checking that every rung of {start.name}'s ladder builds")
    build_variant(source, with_float_nodes(start, name), cache_dir)


def _eight_bit(spec: VariantSpec) -> VariantSpec:
    """``spec`` with 8-bit weights (``qint8-7bit`` -> ``qint8``): where a 7-bit start's nodes can go before float."""
    return VariantSpec(spec.dtype, {**dict(spec.options), "reduce_range": False}, spec.opt_level)


def _config(source: ModelSource, start: VariantSpec, step: ladder.Step, ranking: Sensitivity, eight: Sensitivity | None,
            k: int) -> MixedConfig:
    """The config of ``start`` at ladder step ``k``, named by its content (the same node sets give the same name)."""
    full = ("full_range", *sorted(step.full_range)) if step.full_range else ()
    name = "f" + sha256_text(source.weights_sha256, start.name, *sorted(step.float_nodes), *full)[:8]
    own = {n.node: round(n.loss, 6) for n in ranking.ranked}  # each node's loss at the start's own precision
    if eight is None:
        method = f"top {k} of the per-node sensitivity ranking of {start.name} (loss = 1 - mean cosine to Float32)"
        losses: dict[str, object] = {n: own[n] for n in step.float_nodes}
    else:
        method = (f"step {k} of the greedy climb over the per-node sensitivity rankings of {start.name} and {eight.variant} "
                  f"(loss = 1 - mean cosine to Float32): each step moves the node with the largest loss at its current "
                  f"precision one step up, 7-bit -> 8-bit weights -> float")
        loss8 = {n.node: round(n.loss, 6) for n in eight.ranked}
        losses = {n: {"7bit": own[n], "8bit": loss8.get(n)} for n in (*step.float_nodes, *step.full_range)}
    chosen = {"method": method, "sample": ranking.sample.describe(), "losses": losses, "tool": "evalsuite tune"}
    return MixedConfig(name, source.model_id, source.weights_sha256, start.name, step.float_nodes, chosen, step.full_range)


def _sweep(cfg: TuneConfig, spec: VariantSpec) -> SweepConfig:
    return SweepConfig(variants=[spec], model=cfg.model, tasks=cfg.tasks, split=cfg.gate.split, data_dir=cfg.data_dir,
                       tasks_dir=cfg.tasks_dir, cache_dir=cfg.cache_dir, results_dir=cfg.results_dir,
                       compositions=cfg.gate.compositions)


__all__ = ["BASELINE", "Build", "Search", "TuneConfig", "search"]
