"""What a run was asked to do, and the work units it becomes: build each variant, evaluate it on each task.

A :class:`WorkUnit` holds names only (no live objects), so an executor can ship it to another process
or machine together with the :class:`SweepConfig`, which holds only names, paths and numbers.

Example:
    >>> p = plan(SweepConfig(variants=expand(["qint8"]), tasks=["scifact"], data_dir=Path("data")))  # doctest: +SKIP
    >>> [str(u) for u in p.units]  # doctest: +SKIP
    ['build float32', 'evaluate float32 on SciFact', 'build qint8', 'evaluate qint8 on SciFact']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from evalsuite.config import default_cache_dir, default_results_dir
from evalsuite.data.loading import task_unavailable
from evalsuite.data.tasks import TaskSpec, default_tasks, find_task
from evalsuite.encode import BatchPolicy
from evalsuite.encode.policy import DEFAULT_COMPOSITIONS
from evalsuite.errors import EvalsuiteError
from evalsuite.models import DEFAULT_MODEL
from evalsuite.variants import BASELINE, VariantSpec


@dataclass
class SweepConfig:
    """What ``evalsuite run`` (or ``gate --run``) was asked to do."""

    variants: list[VariantSpec]
    model: str = DEFAULT_MODEL
    tasks: list[str] | None = None  # None: the default tasks, skipping those without data
    split: str | None = None  # evaluate this split of every task instead of the split its spec names
    data_dir: Path | None = None
    tasks_dir: Path | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    results_dir: Path = field(default_factory=default_results_dir)
    policy: BatchPolicy = field(default_factory=BatchPolicy)
    compositions: int = DEFAULT_COMPOSITIONS  # batch compositions a batch-dependent variant is evaluated under
    threads: int | None = None
    force: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.compositions, bool) or not isinstance(self.compositions, int) or self.compositions < 1:
            raise EvalsuiteError(f"--compositions must be a whole number >= 1, not {self.compositions!r}")


@dataclass(frozen=True)
class WorkUnit:
    """Build ``variant`` (``task`` None), or evaluate it on ``task`` (a task name of the plan) under a batch composition."""

    action: Literal["build", "evaluate"]
    variant: str
    task: str | None = None
    composition: int = 0

    def __str__(self) -> str:
        if self.action == "build":
            return f"build {self.variant}"
        return f"evaluate {self.variant} on {self.task}" + (f" (composition {self.composition})" if self.composition else "")


@dataclass
class Plan:
    """The units of a run in execution order, variant by variant (Float32 first): its build, then its evaluations."""

    config: SweepConfig
    tasks: list[TaskSpec]
    units: list[WorkUnit]
    skipped: dict[str, str]  # task name -> why it cannot run here

    def task(self, name: str) -> TaskSpec:
        return next(t for t in self.tasks if t.name == name)


def plan(cfg: SweepConfig) -> Plan:
    """The work units of ``cfg``; default tasks without local data are skipped, named ones are an error."""
    specs = _task_specs(cfg)
    skipped = {s.name: why for s, why in specs if why}
    runnable = [s for s, why in specs if not why]
    if not runnable:
        raise EvalsuiteError("no task can run: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    variants = [BASELINE] + [v for v in cfg.variants if v != BASELINE]
    units = [u for v in variants for u in (
        WorkUnit("build", v.name),
        *(WorkUnit("evaluate", v.name, t.name, k) for k in range(cfg.policy.compositions(v.kind.batch_dependent, cfg.compositions))
          for t in runnable))]
    return Plan(cfg, runnable, units, skipped)


def _task_specs(cfg: SweepConfig) -> list[tuple[TaskSpec, str | None]]:
    if cfg.tasks is None:
        return [(spec, task_unavailable(spec, cfg.data_dir)) for spec in map(_with_split(cfg), default_tasks(cfg.tasks_dir))]
    specs = []
    for name in cfg.tasks:
        spec = _with_split(cfg)(find_task(name, cfg.tasks_dir))
        why = task_unavailable(spec, cfg.data_dir)
        if why:
            raise EvalsuiteError(f"task {spec.name}: {why}")
        if spec not in specs:
            specs.append(spec)
    return [(s, None) for s in specs]


def _with_split(cfg: SweepConfig) -> Callable[[TaskSpec], TaskSpec]:
    return lambda spec: dataclasses.replace(spec, split=cfg.split) if cfg.split else spec
