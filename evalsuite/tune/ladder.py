"""The builds tune tries for a failing int8 start, cheapest first: which nodes leave the start's precision, and how far.

Without 7-bit weights a node has one step up, to float: step k keeps the top k nodes of the sensitivity ranking in
float. With 7-bit weights (``-7bit``) a node with a weight input has two: first to 8-bit weights, which costs no
speed on a VNNI CPU (the int8 kernels are the same), then to float. There tune climbs greedily: each step moves
the node with the largest loss *at its current precision* one step up, its loss at 8 bits taken from the ranking of
the 8-bit counterpart (``qint8`` for ``qint8-7bit``). A node that hurts at 7 bits but not at 8 stops at 8 bits;
one that still hurts at 8 bits goes on to float.

Example:
    >>> r7 = {"a": 0.09, "b": 0.03, "c": 0.001}
    >>> r8 = {"a": 0.025, "b": 0.002, "c": 0.0005}
    >>> [(s.float_nodes, s.full_range) for s in climb(r7, r8, {"a", "b", "c"}, max_float=1)][:3]
    [((), ('a',)), ((), ('a', 'b')), (('a',), ('b',))]
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One build of the ladder: nodes in float and nodes with 8-bit weights, each in the order they moved."""

    float_nodes: tuple[str, ...]
    full_range: tuple[str, ...] = ()
    moved: str = ""  # the node that moved at this step


def to_float(ranking: list[str], max_float: int) -> Iterator[Step]:
    """Step k: the top k nodes of ``ranking`` in float, k = 1 .. max_float."""
    for k in range(1, min(max_float, len(ranking)) + 1):
        yield Step(tuple(ranking[:k]), (), ranking[k - 1])


def climb(loss7: Mapping[str, float], loss8: Mapping[str, float], has_weight: Collection[str], max_float: int) -> Iterator[Step]:
    """The greedy ladder of a 7-bit start. ``loss7``/``loss8``: each node's loss quantized alone at 7 and 8 bits
    (ordered by the 7-bit ranking, which breaks ties); ``has_weight``: the nodes that can keep 8-bit weights (the
    others go straight to float). Stops before a step would put more than ``max_float`` nodes in float."""
    order = {n: i for i, n in enumerate(loss7)}
    level = dict.fromkeys(loss7, 7)
    floated: list[str] = []
    widened: list[str] = []

    def current(n: str) -> float:
        return loss7[n] if level[n] == 7 else loss8.get(n, 0.0)

    while True:
        left = [n for n in loss7 if level[n] != 0]
        if not left:
            return
        node = max(left, key=lambda n: (current(n), -order[n]))
        if level[node] == 7 and node in has_weight and node in loss8:
            level[node] = 8
            widened.append(node)
        else:
            if len(floated) == max_float:
                return
            level[node] = 0
            floated.append(node)
            if node in widened:
                widened.remove(node)
        yield Step(tuple(floated), tuple(widened), node)
