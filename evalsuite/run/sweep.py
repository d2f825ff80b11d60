"""The ``run`` job: plan the work units, execute them (in this process by default), and collect the results.

Example:
    >>> cfg = SweepConfig(variants=expand(["seed"]), tasks=["scifact"], data_dir=Path("../shared/data/beir"))  # doctest: +SKIP
    >>> report = run_sweep(cfg)  # doctest: +SKIP
    >>> report.rows()[0]["delta"]  # doctest: +SKIP
    0.0
"""

from __future__ import annotations

from dataclasses import dataclass

from evalsuite.errors import EvalsuiteError
from evalsuite.results import RunResult
from evalsuite.run.executor import Executor, LocalExecutor
from evalsuite.run.plan import SweepConfig, plan
from evalsuite.run.units import Events, Progress, Say
from evalsuite.variants import BASELINE


@dataclass
class SweepReport:
    """Results of a sweep, by task then variant, with the Float32 baseline of each task."""

    model_id: str
    results: dict[str, dict[str, RunResult]]
    skipped: dict[str, str]
    computed: list[tuple[str, str]]

    def rows(self) -> list[dict[str, object]]:
        """One row per (task, variant): the documented ``--json`` records."""
        out = []
        for task, by_variant in self.results.items():
            base = by_variant[BASELINE.name].ndcg_at_10
            for name, r in by_variant.items():
                out.append({"task": task, "variant": name, "ndcg_at_10": r.ndcg_at_10, "float32_ndcg_at_10": base,
                            "delta": r.ndcg_at_10 - base, "relative_delta": (r.ndcg_at_10 - base) / base if base else None,
                            "split": r.task.split, "n_queries": len(r.per_query_ndcg_at_10), "batch_policy": r.batch_policy["key"],
                            "onnx_sha256": r.onnx_sha256, "reused": (task, name) not in self.computed})
        return out


def run_sweep(cfg: SweepConfig, say: Say | None = None, progress: Progress | None = None,
              executor: Executor | None = None) -> SweepReport:
    """Evaluate every requested variant (and the Float32 baseline) on every requested task."""
    events = Events(say or (lambda _m: None), progress)
    done = (executor or LocalExecutor()).execute(plan(cfg), events)
    if not done.results:
        raise EvalsuiteError("no task could be loaded: " + "; ".join(f"{k}: {v}" for k, v in done.skipped.items()))
    return SweepReport(done.model_id, done.results, done.skipped, done.computed)
