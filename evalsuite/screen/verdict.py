"""From simulated deltas to a predicted NDCG@10 delta with an interval, and from that to pass, fail or uncertain.

The screen predicts the delta the full evaluation will *measure* on the task (the point rule of the gate judges
that number). Its interval adds two variances:

* the spread of the simulated corpora, as for a new draw: ``sd_draws**2 * (1 + 1/draws)``;
* when only ``n`` of the task's ``N`` judged queries were sampled, the sampling error of their mean with the
  finite-population correction ``(N - n) / (N - 1)``: zero when every query was screened.

``pred +- z * sd`` with ``z`` the normal quantile of the confidence. Against a largest allowed loss ``limit``
(the gate's point rule: a delta ``>= -limit`` passes): **pass** when the whole interval is at or above ``-limit``,
**fail** when it lies wholly below, **uncertain** otherwise (go to full evaluation).

Example:
    >>> p = Prediction(delta=-0.002, sd=0.003, ci_low=-0.008, ci_high=0.004, confidence=0.95)
    >>> judge(p, 0.01), judge(p, 0.005)
    ('pass', 'uncertain')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.stats import norm

ScreenOutcome = Literal["pass", "fail", "uncertain"]


@dataclass(frozen=True)
class Prediction:
    """Predicted NDCG@10 delta of the candidate against Float32 on one task, with its interval."""

    delta: float
    sd: float
    ci_low: float
    ci_high: float
    confidence: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def predict(deltas: NDArray[np.float64], n_total: int, confidence: float) -> Prediction:
    """The prediction from simulated per-query deltas of shape (draws, sampled queries); ``n_total`` judged queries."""
    draws, n = deltas.shape
    if draws < 2 or n < 1 or n > n_total:
        raise ValueError(f"need at least 2 draws and 1..{n_total} queries, not {draws} x {n}")
    per_draw = deltas.mean(axis=1)
    var = float(np.var(per_draw, ddof=1)) * (1 + 1 / draws)
    if n > 1 and n < n_total:
        var += (n_total - n) / (n_total - 1) * float(np.var(deltas.mean(axis=0), ddof=1)) / n
    sd = math.sqrt(var)
    centre = float(per_draw.mean())
    z = float(norm.ppf(0.5 + confidence / 2))
    return Prediction(centre, sd, centre - z * sd, centre + z * sd, confidence)


def judge(p: Prediction, limit: float) -> ScreenOutcome:
    """pass, fail or uncertain against the largest allowed loss ``limit`` (see the module docstring)."""
    if p.ci_low >= -limit:
        return "pass"
    if p.ci_high < -limit:
        return "fail"
    return "uncertain"


def overall(outcomes: Sequence[ScreenOutcome]) -> ScreenOutcome:
    """Every task must pass (the gate's per-task scope): one fail fails, else one uncertain leaves it uncertain."""
    if "fail" in outcomes:
        return "fail"
    return "uncertain" if "uncertain" in outcomes else "pass"
