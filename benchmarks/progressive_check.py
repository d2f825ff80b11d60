"""Progressive evaluation replayed on every build with full results: when it decides, and whether the gate agrees.

For each build with stored full results (every ``--results-dir``) and each seed of the shard order, the build is
evaluated progressively from the embedding cache (its shards were written by its full evaluation, so nothing is
encoded) against the gate's per-task point rule, and the outcome is compared with the gate on the full results:
- a task decided *fail* early must be a task the gate fails (a contradiction otherwise: the measured false-fail rate);
- the coverage at which the decision came, per build and task (median over seeds);
- builds whose worst measured task delta lies 0.005 or more beyond the threshold should be decided by 25% coverage.

    python benchmarks/progressive_check.py --data-dir ../shared/data/beir --seeds 5 \
        --results-dir results --results-dir results/kinds --results-dir results/tune \
        --output results/screen/progressive-all-MiniLM-L6-v2.json

Run it from the repository root (mixed builds read ``configs/mixed/``) on the machine whose cache holds the shards.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from evalsuite.analysis.gate import GateConfig, gate
from evalsuite.config import default_cache_dir
from evalsuite.data.tasks import find_task
from evalsuite.files import atomic_write_json
from evalsuite.machine import cpu_info, versions
from evalsuite.models import DEFAULT_MODEL, resolve_model
from evalsuite.results import load_results
from evalsuite.screen.progressive import Progressive, composition_sd
from evalsuite.screen.stopping import StoppingRule
from evalsuite.ui import console
from evalsuite.variants import BASELINE, VariantSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/beir"))
    parser.add_argument("--results-dir", type=Path, action="append", help="repeatable (default: results)")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--max-drop", type=float, default=0.01)
    parser.add_argument("--compositions", type=int, default=GateConfig.load().compositions)
    parser.add_argument("--seeds", type=int, default=5, help="shard orders per build")
    parser.add_argument("--variant", action="append", help="only these builds (default: every build with full results)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    out = console()

    source = resolve_model(args.model)
    cfg = GateConfig(max_drop=args.max_drop, compositions=args.compositions)
    folders = args.results_dir or [Path("results")]
    where: dict[str, Path] = {}
    for folder in folders:
        for v in load_results(folder, args.model).variants():
            if v != BASELINE.name and (not args.variant or v in args.variant):
                where.setdefault(v, folder)
    tasks = load_results(folders[0], args.model).tasks
    specs = [find_task(t) for t in tasks]
    rows = []
    for variant, folder in where.items():
        spec = VariantSpec.parse(variant)
        k = cfg.compositions if spec.kind.batch_dependent else 1
        judged = cfg if load_results(folder, args.model).draws(tasks[0], variant, k)[k - 1:] else cfg.override(compositions=1)
        verdict = gate(variant, judged, folder, model=args.model)
        checks = {c.scope: c for c in verdict.checks if c.scope != "mean"}
        sds = composition_sd(folder, args.model, tasks, cfg.compositions, cfg.split) if k > 1 else None
        for seed in range(args.seeds):
            prog = Progressive(source, specs, data_dir=args.data_dir, cache_dir=args.cache_dir, rule=StoppingRule(seed=seed))
            started = time.process_time()
            result = prog.evaluate(spec, args.max_drop, False, sds, k)
            cpu = time.process_time() - started
            for task in tasks:
                c = checks[task]
                decided = task in result.decided
                rows.append({"variant": variant, "task": task, "seed": seed, "decided_fail": decided,
                             "coverage": result.decided.get(task, result.coverage[task]),
                             "gate": c.outcome, "measured_delta": c.comparison.mean_delta, "limit": c.limit,
                             "margin": c.comparison.mean_delta + c.limit, "contradicted": decided and c.outcome != "fail",
                             "encoded": result.texts_encoded, "cpu_s": round(cpu, 1), "judged_compositions": judged.compositions})
            out.print(f"{variant} seed {seed}: {result.outcome} {result.decided} ({cpu:.0f} CPU s)", highlight=False)
    summary = _summary(rows)
    for line in summary["lines"]:  # type: ignore[union-attr]
        out.print(line, highlight=False)
    if args.output:
        atomic_write_json(args.output, {"schema": "evalsuite.progressive-check/1", "model": args.model, "tasks": tasks,
                                        "max_drop": args.max_drop, "compositions": args.compositions, "seeds": args.seeds,
                                        "rule": StoppingRule().to_dict(), "rows": rows, "summary": summary,
                                        "machine": cpu_info(), "versions": versions()})


def _summary(rows: list[dict[str, object]]) -> dict[str, object]:
    """Contradictions, the measured false-fail rate, and the median coverage at decision of the clear fails."""
    fails_early = [r for r in rows if r["decided_fail"]]
    passing = [r for r in rows if r["gate"] != "fail"]
    contradicted = [r for r in rows if r["contradicted"]]
    clear = [r for r in rows if r["margin"] <= -0.005]  # type: ignore[operator]
    clear_cov = [r["coverage"] if r["decided_fail"] else 1.0 for r in clear]
    lines = [f"decided fail early: {len(fails_early)} of {len(rows)} (build, task, seed); contradicted by the gate: {len(contradicted)}",
             f"false-fail rate measured: {len(contradicted)} / {len(passing)} passing (build, task, seed)",
             f"clear fails (0.005 or more beyond the threshold): {len(clear)}; median coverage at decision "
             f"{statistics.median(clear_cov):.2f}" if clear else "clear fails: none"]
    return {"decided_fail": len(fails_early), "rows": len(rows), "contradicted": len(contradicted), "passing": len(passing),
            "clear": len(clear), "clear_median_coverage": statistics.median(clear_cov) if clear else None, "lines": lines}


if __name__ == "__main__":
    main()
