"""When a progressive evaluation may stop: a fail decided early, at a stated error rate over repeated looks.

A progressive evaluation looks at its prediction each time the encoded share of a task's corpus (its coverage
``t``) crosses a multiple of :attr:`StoppingRule.step`, from :attr:`StoppingRule.min_coverage` on. Only a *fail* is
ever decided early (a build that passes is always measured in full), so the error to bound is one-sided: stopping
with "fail" for a build whose full evaluation passes. The rule spends ``alpha`` over the looks with the Lan-DeMets
Pocock-type function ``alpha(t) = alpha * ln(1 + (e - 1) t)``: the look at coverage ``t_j`` may use
``alpha(t_j) - alpha(t_{j-1})`` (Bonferroni within the spending, so the total is at most ``alpha`` whatever the
correlation between looks), i.e. it decides *fail* when the upper end of ``prediction + z_j sd`` lies below the
largest allowed loss, with ``z_j`` the upper quantile of that increment. The nominal false-fail rate is therefore
at most ``alpha`` per task, if the prediction's sd is right; ``benchmarks/progressive_check.py`` measures the real
one on every build with full results.

Example:
    >>> rule = StoppingRule()
    >>> round(rule.z(0.0, 0.1), 2), round(rule.z(0.1, 0.15), 2)
    (2.95, 3.19)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from scipy.stats import norm

from evalsuite.errors import EvalsuiteError


@dataclass(frozen=True)
class StoppingRule:
    """The looks of a progressive evaluation and the error it may spend on them (see the module docstring).

    Args:
        alpha: the largest rate of early fails that the full evaluation would not confirm, per task.
        min_coverage: no decision before this share of a task's corpus is encoded.
        step: a look each time the coverage crosses a multiple of this.
        draws: simulated corpora per look.
        seed: seed of the shard order and of the draws.
    """

    alpha: float = 0.01
    min_coverage: float = 0.05
    step: float = 0.05
    draws: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 0.5:
            raise EvalsuiteError(f"alpha must be in (0, 0.5), not {self.alpha}")
        if not 0 < self.min_coverage <= 1 or not 0 < self.step <= 1:
            raise EvalsuiteError("min_coverage and step must be in (0, 1]")
        if self.draws < 2:
            raise EvalsuiteError(f"draws must be at least 2, not {self.draws}")

    def spent(self, coverage: float) -> float:
        """``alpha(t)``: the error spent by the looks up to coverage ``t``."""
        return self.alpha * math.log(1 + (math.e - 1) * min(max(coverage, 0.0), 1.0))

    def z(self, previous: float, coverage: float) -> float:
        """The one-sided quantile of a look at ``coverage`` after one at ``previous`` (0: none before)."""
        return float(norm.isf(max(self.spent(coverage) - self.spent(previous), 1e-300)))

    def due(self, previous: float, coverage: float) -> bool:
        """Whether reaching ``coverage`` (from ``previous``) is a look: at least min_coverage, and a new step crossed."""
        if coverage < self.min_coverage:
            return False
        return previous < self.min_coverage or math.floor(coverage / self.step + 1e-9) > math.floor(previous / self.step + 1e-9)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "spending": "Lan-DeMets Pocock-type alpha * ln(1 + (e - 1) t), one-sided, fail only"}
