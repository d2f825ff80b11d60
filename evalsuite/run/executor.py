"""Executors run a plan's work units; the in-process one is the default, others implement the same protocol.

An executor receives a :class:`Plan` (units plus a serialisable config) and returns an :class:`Execution`:
every evaluated (task, variant) result, which of them were computed now, and tasks skipped for lack of data.
Results are written to the store by whoever evaluates them, under the result file's lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from evalsuite.errors import DataUnavailable
from evalsuite.results import RunResult
from evalsuite.run.plan import Plan
from evalsuite.run.units import Events, UnitRunner


@dataclass
class Execution:
    """What an executor did: ``results[task][variant]`` under the canonical batch composition, every composition in
    ``compositions[task][variant][k]``, the (task, variant, composition) computed now, and skipped tasks."""

    model_id: str
    results: dict[str, dict[str, RunResult]] = field(default_factory=dict)
    computed: list[tuple[str, str, int]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    compositions: dict[str, dict[str, dict[int, RunResult]]] = field(default_factory=dict)


class Executor(Protocol):
    def execute(self, plan: Plan, events: Events) -> Execution: ...


class LocalExecutor:
    """Runs every unit in this process, in plan order (the default)."""

    def execute(self, plan: Plan, events: Events) -> Execution:
        return run_units(UnitRunner(plan, events))


def run_units(runner: UnitRunner) -> Execution:
    """Do every unit of the runner's plan in this process, in plan order (builds and results already made are reused)."""
    plan = runner.plan
    done = Execution(runner.source.model_id, {t.name: {} for t in plan.tasks}, skipped=dict(plan.skipped))
    for unit in plan.units:
        if unit.action == "build":
            if unit.variant not in runner.artifacts:  # another executor may have built it already
                runner.build(unit)
            continue
        if unit.task in done.skipped:
            continue
        try:
            result, computed = runner.evaluate(unit)
        except DataUnavailable as exc:  # malformed data is an error even in a default task
            if plan.config.tasks is not None:
                raise
            done.skipped[unit.task] = str(exc)  # type: ignore[index]
            done.results.pop(unit.task, None)  # type: ignore[arg-type]
            done.compositions.pop(unit.task, None)  # type: ignore[arg-type]
            continue
        task: str = unit.task  # type: ignore[assignment]
        done.compositions.setdefault(task, {}).setdefault(unit.variant, {})[unit.composition] = result
        if unit.composition == 0:
            done.results[task][unit.variant] = result
        if computed:
            done.computed.append((task, unit.variant, unit.composition))
    return done
