"""The release gate: thresholds on the NDCG@10 loss of a variant against Float32 -> a verdict per task and overall.

A check compares the variant's mean delta (per task, or the macro mean over tasks) with the largest loss
allowed, ``max_drop`` (absolute NDCG@10, or with ``relative`` a fraction of Float32's NDCG@10):

* rule ``point``: pass when ``delta >= -max_drop``, otherwise fail (strict: a measured loss is a loss).
* rule ``ci``: fail only when the loss is established, i.e. the whole confidence interval lies beyond the
  threshold (``ci_high < -max_drop``); pass when the whole interval is within it (``ci_low >= -max_drop``);
  otherwise "inconclusive" (the interval straddles the threshold), which does not fail the gate.

Defaults come from ``configs/gate.yaml``; command-line options override them.

Example:
    >>> cfg = GateConfig(max_drop=0.01)  # doctest: +SKIP
    >>> verdict = gate("qint8-7bit", cfg, Path("results"))  # doctest: +SKIP
    >>> verdict.outcome, verdict.reason  # doctest: +SKIP
    ('fail', 'qint8-7bit fails: SciFact drop 0.0213 > 0.0100 (rule point)')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from evalsuite.analysis.compare import VariantComparison, compare_variant
from evalsuite.analysis.stats import PairedComparison
from evalsuite.config import load_yaml_mapping, packaged_dir
from evalsuite.encode.policy import DEFAULT_COMPOSITIONS
from evalsuite.errors import EvalsuiteError
from evalsuite.results import DEFAULT_SPLIT, MissingResults, load_results
from evalsuite.variants import BASELINE, VariantSpec

Rule = Literal["point", "ci"]
Scope = Literal["per-task", "mean"]
GateOutcome = Literal["pass", "fail", "inconclusive"]
MIN_RESAMPLES = 10_000


@dataclass(frozen=True)
class GateConfig:
    """Gate thresholds and the statistics behind them (``configs/gate.yaml``).

    Args:
        max_drop: largest acceptable loss of NDCG@10 against Float32 (absolute, or a fraction with ``relative``).
        relative: ``max_drop`` is a fraction of Float32's NDCG@10 (0.01 = 1 %).
        scope: ``per-task`` (every task must pass) or ``mean`` (the macro average over tasks must pass).
        rule: ``point`` (the mean delta) or ``ci`` (the bootstrap confidence interval; see the module docstring).
        tasks: tasks to judge; None means every task with a Float32 result.
        split: the split judged (results of other splits are left out).
        confidence: coverage of the bootstrap CI; ``1 - confidence`` is the significance level of the markers.
        n_resamples: bootstrap and randomization-test resamples (at least 10,000).
        seed: seed of both; the same seed gives the same CI and p-value.
        speed_length, speed_batch: the bench point (tokens, batch) shown as the speed of a variant in reports.
        compositions: batch compositions a batch-dependent variant is judged over (its delta is their mean).
    """

    max_drop: float = 0.01
    relative: bool = False
    scope: Scope = "per-task"
    rule: Rule = "point"
    tasks: tuple[str, ...] | None = None
    split: str = DEFAULT_SPLIT
    confidence: float = 0.95
    n_resamples: int = MIN_RESAMPLES
    seed: int = 0
    speed_length: int = 128
    speed_batch: int = 1
    compositions: int = DEFAULT_COMPOSITIONS

    def __post_init__(self) -> None:
        for name in ("max_drop", "confidence", "n_resamples", "seed", "speed_length", "speed_batch", "compositions"):
            value = getattr(self, name)
            integer = name not in ("max_drop", "confidence")
            if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
                raise EvalsuiteError(f"{name} must be {'an integer' if integer else 'a number'}, not {value!r}")
        if not isinstance(self.relative, bool):
            raise EvalsuiteError(f"relative must be true or false, not {self.relative!r}")
        if not self.max_drop >= 0:  # also refuses NaN
            raise EvalsuiteError(f"max_drop must be a number >= 0 and < 1, not {self.max_drop!r}")
        if self.relative and self.max_drop >= 1:
            raise EvalsuiteError(f"a relative max_drop is a fraction of Float32's NDCG@10 (0.01 = 1 %) and must be < 1, not {self.max_drop}")
        if self.max_drop >= 1:  # NDCG@10 lies in [0, 1]: the gate could never fail
            raise EvalsuiteError(f"max_drop must be a number >= 0 and < 1: it is an NDCG@10 loss, and NDCG@10 lies in [0, 1], "
                                 f"so a drop of {self.max_drop:g} can never fail (for a fraction of Float32's NDCG@10, use relative)")
        if self.tasks is not None and not (self.tasks and all(isinstance(t, str) and t.strip() for t in self.tasks)):
            raise EvalsuiteError(f"tasks must be a non-empty list of task names, not {list(self.tasks)!r}")
        if self.scope not in ("per-task", "mean"):
            raise EvalsuiteError(f"scope must be 'per-task' or 'mean', not {self.scope!r}")
        if self.rule not in ("point", "ci"):
            raise EvalsuiteError(f"rule must be 'point' or 'ci', not {self.rule!r}")
        if not 0.5 <= self.confidence < 1:
            raise EvalsuiteError(f"confidence must be in [0.5, 1), not {self.confidence}")
        if self.n_resamples < MIN_RESAMPLES:
            raise EvalsuiteError(f"n_resamples must be at least {MIN_RESAMPLES}, not {self.n_resamples}")
        if self.speed_length < 1 or self.speed_batch < 1:
            raise EvalsuiteError("speed_length and speed_batch must be at least 1")
        if self.compositions < 1:
            raise EvalsuiteError(f"compositions must be a whole number >= 1, not {self.compositions}")

    @classmethod
    def load(cls, path: Path | None = None) -> GateConfig:
        """Read a gate YAML file; without a path, the built-in ``configs/gate.yaml`` (or the defaults)."""
        if path is None:
            path = packaged_dir("configs") / "gate.yaml"
            if not path.is_file():
                return cls()
        doc = load_yaml_mapping(path, [f.name for f in dataclasses.fields(cls)], "gate config")
        tasks = doc.get("tasks")
        if tasks is not None:
            doc["tasks"] = tuple(tasks) if isinstance(tasks, list) else (tasks,)
        try:
            return cls(**doc)
        except EvalsuiteError as exc:  # name the file the bad value came from
            raise EvalsuiteError(f"{path}: {exc}") from None

    @property
    def alpha(self) -> float:
        """The significance level of the markers: ``1 - confidence`` (0.05 for a 95% CI)."""
        return round(1.0 - self.confidence, 10)

    def override(self, **changes: object) -> GateConfig:
        """A copy with the options that were given (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]

    def describe(self) -> str:
        """``max drop 0.0100 NDCG@10 per task, rule point`` (for verdict lines and report notes)."""
        drop = f"{100 * self.max_drop:.2f}% of Float32's NDCG@10" if self.relative else f"{self.max_drop:.4f} NDCG@10"
        scope = "per task" if self.scope == "per-task" else "on the mean over tasks"
        return f"max drop {drop} {scope}, rule {self.rule}" + (f" ({100 * self.confidence:g}% CI)" if self.rule == "ci" else "")


@dataclass(frozen=True)
class Check:
    """The verdict on one task, or on the macro mean (``scope == "mean"``); ``decides`` when it counts for the gate."""

    scope: str
    outcome: GateOutcome
    reason: str
    limit: float  # the largest acceptable loss, in NDCG@10 (relative limits converted)
    decides: bool
    comparison: PairedComparison

    @property
    def composition_passes(self) -> int | None:
        """Under how many batch compositions alone the point rule passes (None with one composition)."""
        c = self.comparison
        return sum(d >= -self.limit for d in c.composition_deltas) if c.compositions > 1 else None

    @property
    def stable(self) -> bool:
        """False when the point rule's verdict would differ between batch compositions."""
        passes = self.composition_passes
        return passes is None or passes in (0, self.comparison.compositions)

    def line(self) -> str:
        c = self.comparison
        rel = f" ({100 * c.relative_delta:+.2f}%)" if c.relative_delta is not None else ""
        label = self.outcome.upper() if self.decides else "info"
        return (f"{label:<12} {self.scope:<12} NDCG@10 {c.mean_variant:.4f} vs {c.mean_baseline:.4f}: delta {c.mean_delta:+.4f}{rel}, "
                f"{100 * c.confidence:g}% CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}], p={c.p_value:.4f}: {self.reason}"
                + self.composition_text())

    def composition_text(self) -> str:
        """What the batch compositions add: their spread, their share of the CI, and whether the verdict holds in each."""
        c = self.comparison
        if c.compositions < 2:
            return ""
        share = c.composition_share
        text = (f"; over {c.compositions} batch compositions delta {min(c.composition_deltas):+.4f} to "
                f"{max(c.composition_deltas):+.4f} (sd {c.composition_sd:.4f})"
                + (f", {100 * share:.0f}% of the CI's width from composition" if share is not None else ""))
        if not self.stable:
            text += f"; UNSTABLE: the point rule passes under {self.composition_passes} of {c.compositions} compositions"
        return text


@dataclass(frozen=True)
class Verdict:
    """The gate's answer for one variant: ``outcome`` of the deciding checks, and a one-line ``reason``."""

    model_id: str
    variant: str
    config: GateConfig
    outcome: GateOutcome
    reason: str
    checks: tuple[Check, ...] = field(default=())

    @property
    def passed(self) -> bool:
        """True unless a deciding check failed (an inconclusive CI does not fail the gate)."""
        return self.outcome != "fail"

    def lines(self) -> list[str]:
        """One line per task (and the mean), then the one-line reason."""
        head = f"gate {self.variant} vs float32 ({self.model_id}, split {self.config.split}): {self.config.describe()}"
        return [head, *(c.line() for c in self.checks), self.reason]

    def to_dict(self) -> dict[str, object]:
        """The ``gate --json`` document (see docs/ci-gate.md)."""
        cfg = dataclasses.asdict(self.config)
        cfg["tasks"] = list(self.config.tasks) if self.config.tasks else None
        return {"schema": "evalsuite.gate/1", "model": self.model_id, "variant": self.variant, "baseline": BASELINE.name,
                "outcome": self.outcome, "passed": self.passed, "stable": self.stable, "reason": self.reason, "config": cfg,
                "checks": [{"scope": c.scope, "outcome": c.outcome, "decides": c.decides, "limit": c.limit,
                            "reason": c.reason, "stable": c.stable, "composition_passes": c.composition_passes,
                            "composition_share": c.comparison.composition_share, **c.comparison.to_dict()}
                           for c in self.checks]}

    @property
    def stable(self) -> bool:
        """False when a deciding check's verdict would differ between batch compositions."""
        return all(c.stable for c in self.checks if c.decides)


def judge_check(c: PairedComparison, cfg: GateConfig, scope: str, decides: bool = True) -> Check:
    """Apply the rule of ``cfg`` to one comparison (see the module docstring)."""
    limit = cfg.max_drop * c.mean_baseline if cfg.relative else cfg.max_drop
    shown = f"{100 * cfg.max_drop:.2f}% ({limit:.4f})" if cfg.relative else f"{limit:.4f}"
    outcome: GateOutcome
    if cfg.rule == "point":
        change = f"drop {-c.mean_delta:.4f}" if c.mean_delta < 0 else f"gain {c.mean_delta:.4f}"
        if c.mean_delta >= -limit:
            outcome, reason = "pass", f"{change} within max drop {shown}"
        else:
            outcome, reason = "fail", f"{change} > max drop {shown}"
    elif c.ci_high < -limit:
        outcome, reason = "fail", f"drop established: CI upper bound {c.ci_high:+.4f} < -{shown}"
    elif c.ci_low >= -limit:
        outcome, reason = "pass", f"CI lower bound {c.ci_low:+.4f} >= -{shown}"
    else:
        outcome, reason = "inconclusive", f"CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}] straddles -{shown}"
    return Check(scope, outcome, reason, limit, decides, c)


def judge(comparison: VariantComparison, cfg: GateConfig) -> Verdict:
    """The verdict of the gate on a complete comparison (every task and the mean)."""
    if comparison.mean is None:
        raise MissingResults(f"{comparison.variant} has no results on {', '.join(comparison.missing)}: cannot gate it")
    per_task = cfg.scope == "per-task"
    checks = [judge_check(c, cfg, task, per_task) for task, c in comparison.tasks.items()]
    checks.append(judge_check(comparison.mean, cfg, "mean", not per_task))
    deciding = [c for c in checks if c.decides]
    failed = [c.scope for c in deciding if c.outcome == "fail"]
    unsure = [c.scope for c in deciding if c.outcome == "inconclusive"]
    unstable = [c.scope for c in deciding if not c.stable]
    v = comparison.variant
    if failed:
        outcome: GateOutcome = "fail"
        reason = f"FAIL: {v} loses more NDCG@10 than allowed on {', '.join(failed)} ({cfg.describe()})"
    elif unsure:
        outcome = "inconclusive"
        reason = f"INCONCLUSIVE (not failing): {v}'s CI straddles the threshold on {', '.join(unsure)} ({cfg.describe()})"
    else:
        outcome = "pass"
        reason = f"PASS: {v} is within the allowed NDCG@10 loss on {', '.join(c.scope for c in deciding)} ({cfg.describe()})"
    if unstable:
        reason += (f"; UNSTABLE on {', '.join(unstable)}: the verdict differs between batch compositions "
                   f"(judged on their mean over {comparison.mean.compositions})")
    return Verdict(comparison.model_id, v, cfg, outcome, reason, tuple(checks))


def gate(variant: str, cfg: GateConfig, results_dir: Path, model: str | None = None,
         compute: Callable[[], tuple[str, list[str]]] | None = None) -> Verdict:
    """Judge a variant from stored results; when they are missing, ``compute`` (if given) evaluates them first.

    Args:
        variant: variant name, e.g. ``qint8-pc-7bit``.
        cfg: thresholds and statistics.
        results_dir: where results are stored.
        model: Hub id, folder or slug of the model; optional when ``results_dir`` holds one model.
        compute: evaluates the variant and Float32 (``gate --run``) and returns the model id and the tasks it
            evaluated; None to fail instead.
    """
    name = VariantSpec.parse(variant).name
    try:
        comparison = compare_variant(load_results(results_dir, model, cfg.tasks, cfg.split), name, cfg)
    except MissingResults:
        if compute is None:
            raise
        model, tasks = compute()
        comparison = compare_variant(load_results(results_dir, model, cfg.tasks or tasks, cfg.split), name, cfg)
    return judge(comparison, cfg)
