"""What tune asks before a full evaluation: does this candidate probably pass the gate? (pass | fail | uncertain)

:class:`Screener` is the interface tune uses. :class:`ScaledScreen` is the built-in one: it scales the base
variant's measured per-task NDCG@10 delta by the share of the base's sensitivity loss that the candidate still
quantizes (per-node losses add up nearly, see docs/research/quantization-kinds.md section 4), and calls a task
``pass`` when the predicted loss is under half the allowed drop, ``fail`` when it is over 1.5 times it, else
``uncertain``. It is a guide for choosing what to evaluate; every build tune recommends is judged by the gate on
full evaluations.

Example:
    >>> screen = ScaledScreen({"SciFact": -0.056}, total_loss=0.14, max_drop=0.01)
    >>> screen.predict("qint8-7bit-xa", remaining_loss=0.01).verdict
    'pass'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

Verdict = Literal["pass", "fail", "uncertain"]


@dataclass(frozen=True)
class TaskScreen:
    """A task's predicted NDCG@10 delta against Float32, with the interval the screen gives it."""

    task: str
    delta: float
    low: float
    high: float
    verdict: Verdict


@dataclass(frozen=True)
class ScreenResult:
    """The screen's answer for one candidate: ``fail`` if any task fails, ``pass`` if all pass, else ``uncertain``."""

    variant: str
    verdict: Verdict
    tasks: tuple[TaskScreen, ...]
    method: str

    def to_dict(self) -> dict[str, object]:
        return {"variant": self.variant, "verdict": self.verdict, "method": self.method, "tasks": [asdict(t) for t in self.tasks]}


class Screener(Protocol):
    """Predicts the gate's verdict of a candidate cheaply."""

    def __call__(self, variant: str, remaining_loss: float) -> ScreenResult: ...


def combine(variant: str, tasks: list[TaskScreen], method: str) -> ScreenResult:
    verdicts = {t.verdict for t in tasks}
    overall: Verdict = "fail" if "fail" in verdicts else "pass" if verdicts == {"pass"} else "uncertain"
    return ScreenResult(variant, overall, tuple(tasks), method)


@dataclass(frozen=True)
class ScaledScreen:
    """The base's measured per-task deltas, scaled by the sensitivity loss a candidate keeps (see the module docstring)."""

    base_deltas: Mapping[str, float]
    total_loss: float
    max_drop: float
    pass_below: float = 0.5  # fraction of max_drop
    fail_above: float = 1.5

    def predict(self, variant: str, remaining_loss: float) -> ScreenResult:
        share = remaining_loss / self.total_loss if self.total_loss > 0 else 1.0
        tasks = []
        for task, delta in self.base_deltas.items():
            predicted = min(delta, 0.0) * share
            low, high = predicted * self.fail_above, predicted * self.pass_below
            verdict: Verdict = ("pass" if -predicted <= self.pass_below * self.max_drop
                                else "fail" if -predicted > self.fail_above * self.max_drop else "uncertain")
            tasks.append(TaskScreen(task, predicted, low, high, verdict))
        return combine(variant, tasks, "base delta x remaining sensitivity loss")

    def __call__(self, variant: str, remaining_loss: float) -> ScreenResult:
        return self.predict(variant, remaining_loss)
