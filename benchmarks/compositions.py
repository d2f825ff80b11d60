"""How much a verdict depends on which documents share a batch: NDCG@10 under many seeded batch compositions.

For every variant of a model with results under ``--compositions`` compositions (``evalsuite run --compositions K``
computes them; this script runs that first unless ``--no-run``), per task: NDCG@10 of each composition, their min,
median, max and standard deviation, beside the query-bootstrap 95% CI of the canonical composition's delta (what a
single-composition verdict rests on), and the gate's verdict under each composition alone and on their mean. For the
batch-independent kinds (static8, int4, float16) a full evaluation under ``--independent-compositions`` compositions
shows that every composition gives the same per-query numbers (measured, not assumed: the encoder is run under each
composition's batches and mteb evaluates each).

    python benchmarks/compositions.py --variant seed --compositions 10 --data-dir ../shared/data/beir \
        --results-dir results --output results/bench/compositions-all-MiniLM-L6-v2.json

The JSON records the machine and each row's int8 kernel family: int8 numbers depend on it (README "Batch
composition"), the spread across compositions much less.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from evalsuite.analysis.compare import compare_variant
from evalsuite.analysis.gate import GateConfig, judge, judge_check
from evalsuite.build import build_variant
from evalsuite.config import default_cache_dir
from evalsuite.data.loading import load_task
from evalsuite.data.tasks import find_task
from evalsuite.encode import BatchPolicy, OnnxEncoder
from evalsuite.files import atomic_write_json
from evalsuite.machine import cpu_info, versions
from evalsuite.models import DEFAULT_MODEL, resolve_model
from evalsuite.results import load_results
from evalsuite.run import SweepConfig, run_sweep
from evalsuite.run.evaluate import run_mteb
from evalsuite.ui import console
from evalsuite.variants import BASELINE, expand


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--variant", action="append", default=None, help="names or sets (default: seed)")
    parser.add_argument("--tasks", default="scifact,nfcorpus")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/beir"))
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--compositions", type=int, default=10)
    parser.add_argument("--independent", default="", help="batch-independent variants to evaluate under compositions too")
    parser.add_argument("--independent-compositions", type=int, default=3)
    parser.add_argument("--max-drop", type=float, default=0.01)
    parser.add_argument("--no-run", action="store_true", help="use stored results only")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    out = console()

    specs = expand(args.variant or ["seed"])
    tasks = [t.strip() for t in args.tasks.split(",")]
    if not args.no_run:
        run_sweep(SweepConfig(variants=specs, model=args.model, tasks=tasks, data_dir=args.data_dir, cache_dir=args.cache_dir,
                              results_dir=args.results_dir, compositions=args.compositions), say=lambda m: out.print(m))
    cfg = GateConfig(max_drop=args.max_drop, compositions=args.compositions)
    single = GateConfig(max_drop=args.max_drop, compositions=1)
    data = load_results(args.results_dir, args.model, tasks)
    rows = []
    for spec in specs:
        if spec == BASELINE or not spec.kind.batch_dependent:
            continue
        both = compare_variant(data, spec.name, cfg)
        canonical = compare_variant(data, spec.name, single)
        verdict = judge(both, cfg)
        for task in data.tasks:
            draws = data.draws(task, spec.name, args.compositions)
            ndcg = [d.ndcg_at_10 for d in draws]
            c, one = both.tasks[task], canonical.tasks[task]
            check = next(x for x in verdict.checks if x.scope == task)
            rows.append({
                "variant": spec.name, "task": task, "compositions": len(ndcg), "ndcg_at_10": ndcg,
                "min": min(ndcg), "median": statistics.median(ndcg), "max": max(ndcg), "sd": statistics.stdev(ndcg),
                "float32": c.mean_baseline, "mean_delta": c.mean_delta, "ci": [c.ci_low, c.ci_high],
                "query_ci": [c.query_ci_low, c.query_ci_high], "composition_share": c.composition_share,
                "canonical_delta": one.mean_delta, "canonical_ci": [one.ci_low, one.ci_high],
                "passes_alone": check.composition_passes, "gate": check.outcome, "stable": check.stable,
                "canonical_gate": judge_check(one, single, task).outcome, "int8_kernels": draws[0].int8_kernels,
            })
    independent = [_independent(args, name.strip(), tasks) for name in args.independent.split(",") if name.strip()]
    _print(out, rows, independent, args.compositions)
    if args.output:
        atomic_write_json(args.output, {
            "schema": "evalsuite.compositions/1", "model": args.model, "tasks": data.tasks, "compositions": args.compositions,
            "max_drop": args.max_drop, "rows": rows, "independent": independent, "machine": cpu_info(), "versions": versions(),
            "command": "python benchmarks/compositions.py " + " ".join(f"{k} {v}" for k, v in _given(args))})


def _independent(args: argparse.Namespace, name: str, tasks: list[str]) -> dict[str, object]:
    """A batch-independent build evaluated end to end under several compositions: the largest per-query difference."""
    source = resolve_model(args.model)
    spec = expand([name])[0]
    artifact = build_variant(source, spec, args.cache_dir)
    worst, evaluated = 0.0, {}
    for task in tasks:
        loaded = load_task(find_task(task), args.data_dir)
        runs = []
        for k in range(args.independent_compositions):
            encoder = OnnxEncoder(artifact, source, BatchPolicy(composition=k), cache_dir=args.cache_dir, variant_name=spec.name)
            runs.append(run_mteb(encoder, loaded).per_query)
        worst = max(worst, max(abs(r[q] - runs[0][q]) for r in runs[1:] for q in runs[0]))
        evaluated[loaded.spec.name] = [float(np.mean(list(r.values()))) for r in runs]
    return {"variant": spec.name, "compositions": args.independent_compositions, "ndcg_at_10": evaluated,
            "max_abs_per_query_difference": worst}


def _print(out, rows: list[dict[str, object]], independent: list[dict[str, object]], k: int) -> None:  # noqa: ANN001
    out.print(f"{'variant':<16} {'task':<10} {'min':>7} {'median':>7} {'max':>7} {'sd':>7}  {'canonical delta [query CI]':<28} "
              f"{'mean delta [2-level CI]':<28} {'comp.':>5} {'alone':>6}  gate", highlight=False)
    for r in rows:
        out.print(f"{r['variant']:<16} {r['task']:<10} {r['min']:>7.4f} {r['median']:>7.4f} {r['max']:>7.4f} {r['sd']:>7.4f}  "
                  f"{r['canonical_delta']:+.4f} [{r['canonical_ci'][0]:+.4f}, {r['canonical_ci'][1]:+.4f}]  "  # type: ignore[index]
                  f"{r['mean_delta']:+.4f} [{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}]  {100 * (r['composition_share'] or 0):>4.0f}% "  # type: ignore[index]
                  f"{r['passes_alone']}/{k}  {r['gate']}{'' if r['stable'] else ' UNSTABLE'}", highlight=False)
    for r in independent:
        out.print(f"{r['variant']}: {r['compositions']} compositions, NDCG@10 {r['ndcg_at_10']}, largest per-query difference "
                  f"{r['max_abs_per_query_difference']:.2e}", highlight=False)


def _given(args: argparse.Namespace) -> list[tuple[str, object]]:
    return [(f"--{k.replace('_', '-')}", v) for k, v in vars(args).items() if v not in (None, False, "") and k != "output"]


if __name__ == "__main__":
    main()
