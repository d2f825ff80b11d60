"""Quality vs speed vs size of the builds tune confirmed: the Pareto front and the recommended build.

Quality is the worst per-task NDCG@10 delta against Float32 (the per-task gate judges each task), speed the
bench speedup over Float32 at the gate's speed point, size the ONNX file. A build is on the front when no other
build is at least as good on all three and better on one. The recommended build is the fastest one the gate
passes (ties: the smaller file).

Example:
    >>> a = Point("qint8", "qint8", (), "fail", -0.0101, 2.03, 23_000_000)
    >>> b = Point("qint8-xf1", "qint8", ("n",), "pass", -0.004, 1.95, 24_000_000)
    >>> [p.variant for p in front([a, b])], recommend([a, b]).variant
    (['qint8', 'qint8-xf1'], 'qint8-xf1')
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Point:
    """One build on the quality/speed/size axes, with its gate outcome."""

    variant: str
    base: str
    float_nodes: tuple[str, ...]
    gate: str  # pass | fail | inconclusive (the gate's outcome on full results)
    worst_delta: float  # the lowest per-task mean NDCG@10 delta against Float32
    speedup: float  # Float32 median / this build's median at the bench point
    size_bytes: int
    full_range: tuple[str, ...] = ()  # nodes of a -7bit base with 8-bit weights

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "float_nodes": list(self.float_nodes), "full_range": list(self.full_range)}


def dominates(a: Point, b: Point) -> bool:
    """``a`` is at least as good as ``b`` on quality, speed and size, and better on one."""
    no_worse = a.worst_delta >= b.worst_delta and a.speedup >= b.speedup and a.size_bytes <= b.size_bytes
    better = a.worst_delta > b.worst_delta or a.speedup > b.speedup or a.size_bytes < b.size_bytes
    return no_worse and better


def front(points: list[Point]) -> list[Point]:
    """The builds no other build dominates, fastest first."""
    kept = [p for p in points if not any(dominates(q, p) for q in points if q is not p)]
    return sorted(kept, key=lambda p: (-p.speedup, p.size_bytes, p.variant))


def recommend(points: list[Point]) -> Point | None:
    """The fastest build the gate does not fail, the smaller file on a tie; None when every build fails."""
    passing = [p for p in points if p.gate != "fail"]
    return min(passing, key=lambda p: (-p.speedup, p.size_bytes, p.variant)) if passing else None
