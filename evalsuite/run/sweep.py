"""The ``run`` job: plan the work units, execute them (in this process by default), and collect the results.

Example:
    >>> cfg = SweepConfig(variants=expand(["seed"]), tasks=["scifact"], data_dir=Path("../shared/data/beir"))  # doctest: +SKIP
    >>> report = run_sweep(cfg)  # doctest: +SKIP
    >>> report.rows()[0]["delta"]  # doctest: +SKIP
    0.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from evalsuite.errors import EvalsuiteError
from evalsuite.results import RunResult
from evalsuite.run.executor import Executor, LocalExecutor
from evalsuite.run.plan import SweepConfig, plan
from evalsuite.run.units import Events, Progress, Say
from evalsuite.variants import BASELINE


@dataclass
class SweepReport:
    """Results of a sweep, by task then variant (canonical composition), every composition of each, and what was
    computed now as (task, variant, composition)."""

    model_id: str
    results: dict[str, dict[str, RunResult]]
    skipped: dict[str, str]
    computed: list[tuple[str, str, int]]
    compositions: dict[str, dict[str, dict[int, RunResult]]] = field(default_factory=dict)

    def draws(self, task: str, variant: str) -> list[RunResult]:
        """The results of ``variant`` on ``task`` under each batch composition, canonical first."""
        stored = self.compositions.get(task, {}).get(variant) or {0: self.results[task][variant]}
        return [stored[k] for k in sorted(stored)]

    def rows(self) -> list[dict[str, object]]:
        """One row per (task, variant): the documented ``--json`` records. NDCG@10 of a variant evaluated under several
        batch compositions is the mean over them (what the gate's point rule judges)."""
        out = []
        for task, by_variant in self.results.items():
            base = by_variant[BASELINE.name].ndcg_at_10
            for name, r in by_variant.items():
                draws = self.draws(task, name)
                ndcg = math.fsum(d.ndcg_at_10 for d in draws) / len(draws)
                out.append({"task": task, "variant": name, "ndcg_at_10": ndcg, "float32_ndcg_at_10": base,
                            "delta": ndcg - base, "relative_delta": (ndcg - base) / base if base else None,
                            "split": r.task.split, "n_queries": len(r.per_query_ndcg_at_10), "batch_policy": r.batch_policy["key"],
                            "compositions": [d.ndcg_at_10 for d in draws], "int8_kernels": r.int8_kernels,
                            "onnx_sha256": r.onnx_sha256,
                            "reused": not any((task, name, d.composition) in self.computed for d in draws)})
        return out


def run_sweep(cfg: SweepConfig, say: Say | None = None, progress: Progress | None = None,
              executor: Executor | None = None) -> SweepReport:
    """Evaluate every requested variant (and the Float32 baseline) on every requested task."""
    events = Events(say or (lambda _m: None), progress)
    done = (executor or LocalExecutor()).execute(plan(cfg), events)
    if not done.results:
        raise EvalsuiteError("no task could be loaded: " + "; ".join(f"{k}: {v}" for k, v in done.skipped.items()))
    return SweepReport(done.model_id, done.results, done.skipped, done.computed, done.compositions)
