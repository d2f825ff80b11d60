"""Running: a config becomes a plan of work units, which an executor does (in this process by default)."""

from evalsuite.run.executor import Execution, Executor, LocalExecutor
from evalsuite.run.plan import Plan, SweepConfig, WorkUnit, plan
from evalsuite.run.sweep import SweepReport, run_sweep
from evalsuite.run.units import Events, UnitRunner

__all__ = ["Events", "Execution", "Executor", "LocalExecutor", "Plan", "SweepConfig", "SweepReport", "UnitRunner",
           "WorkUnit", "plan", "run_sweep"]
