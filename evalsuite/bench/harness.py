"""Latency and throughput of each variant against Float32, measured side by side in one process.

Every variant's onnxruntime session is loaded at once, then each repetition runs every (length, batch)
cell on every variant in round-robin, the start variant rotating from one repetition to the next, so a
burst of machine noise hits all variants alike instead of one. Inputs have exactly ``length`` tokens
(CLS + text tokens + SEP from the model's own tokenizer, attention mask all ones). A timing is the wall
time of one ``session.run`` (``time.perf_counter_ns``); a cell reports the median and the 10th/90th
percentiles of its repetitions, and the speedup ``float32 median / variant median``.

Peak memory is measured apart from the timings, one child process per variant (see :func:`probe_memory`).

Example:
    >>> cfg = BenchConfig(variants=tuple(expand(["seed"])), lengths=(16, 128), batches=(1,), repeats=5)  # doctest: +SKIP
    >>> result = run_bench(cfg)  # doctest: +SKIP
    >>> [(m.variant, m.length, round(m.speedup, 2)) for m in result.measurements][:2]  # doctest: +SKIP
    [('float32', 16, 1.0), ('float16', 16, 0.41)]
    >>> print(format_markdown(result))  # doctest: +SKIP
"""

from __future__ import annotations

from __future__ import annotations

import gc
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from evalsuite.bench.schema import LevelGain, Measurement
from evalsuite.config import default_cache_dir
from evalsuite.errors import EvalsuiteError
from evalsuite.models import DEFAULT_MODEL
from evalsuite.variants import BASELINE, DEFAULT_OPT_LEVEL, OPT_LEVELS, VariantSpec

DEFAULT_LENGTHS = (4, 8, 16, 32, 64, 128, 256)
DEFAULT_BATCHES = (1, 32)
DEFAULT_REPEATS = 10
DEFAULT_WARMUP = 1
# Families whose optimizer levels 0, 1, 2, 99 are measured for the optimizer-level table (the ``levels`` named set).
DEFAULT_LEVEL_FAMILIES = ("float32", "qint8-pc-7bit")


# --- configuration ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    """What ``evalsuite bench`` was asked to measure.

    Args:
        variants: the variants to compare with Float32 (Float32 itself is always measured).
        model: hub id or local model folder.
        lengths: token counts of the inputs, CLS and SEP included; at most the model's ``max_seq_length``.
        batches: batch sizes; 1 is single-sequence latency, larger ones give throughput.
        repeats: timed rounds; each round runs every variant once on every (length, batch) cell.
        warmup: untimed rounds before them, in the same order.
        threads: onnxruntime intra-op threads (default: every usable core, as ``evalsuite run``).
        level_families: variants (at any level) whose levels 0, 1, 2 and 99 are also measured, for the
            optimizer-level table; empty for none. Levels already among ``variants`` count as well.
        cache_dir: the ONNX artifact cache (variants are built there when missing).
        measure_memory: run the peak-memory probe (one child process per variant).
    """

    variants: tuple[VariantSpec, ...]
    model: str = DEFAULT_MODEL
    lengths: tuple[int, ...] = DEFAULT_LENGTHS
    batches: tuple[int, ...] = DEFAULT_BATCHES
    repeats: int = DEFAULT_REPEATS
    warmup: int = DEFAULT_WARMUP
    threads: int | None = None
    level_families: tuple[VariantSpec, ...] = tuple(VariantSpec.parse(n) for n in DEFAULT_LEVEL_FAMILIES)
    cache_dir: Path = field(default_factory=default_cache_dir)
    measure_memory: bool = True

    def __post_init__(self) -> None:
        if not self.variants:
            raise EvalsuiteError("no variant given")
        if not self.lengths or not self.batches:
            raise EvalsuiteError("give at least one length and one batch size")
        if min(self.lengths) < 2:
            raise EvalsuiteError(f"length {min(self.lengths)} is too short: an input holds at least CLS and SEP (2 tokens)")
        if min(self.batches) < 1:
            raise EvalsuiteError(f"batch size {min(self.batches)} must be at least 1")
        if self.repeats < 1 or self.warmup < 0:
            raise EvalsuiteError("repeats must be at least 1 and warm-up at least 0")
        if self.threads is not None and self.threads < 1:
            raise EvalsuiteError(f"threads must be at least 1, not {self.threads}")

    def measured(self) -> list[VariantSpec]:
        """Every variant timed: Float32 first, then the requested ones in order, then the level siblings."""
        out = [BASELINE]
        for spec in self.variants:
            if spec not in out:
                out.append(spec)
        for family in self.level_families:
            for level in OPT_LEVELS:
                sibling = family.with_level(level)
                if sibling not in out:
                    out.append(sibling)
        return out

    def shown(self) -> list[VariantSpec]:
        """The columns of the speedup table: Float32 and the requested variants."""
        return [BASELINE, *(s for s in dict.fromkeys(self.variants) if s != BASELINE)]


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    """``"4,8,16"`` -> ``(4, 8, 16)``, sorted and unique; anything else is a one-line error naming ``what``."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(re.fullmatch(r"\d+", p) for p in parts):
        raise EvalsuiteError(f"{what}: {text!r} is not a comma-separated list of positive integers (e.g. 4,16,128)")
    values = sorted({int(p) for p in parts})
    if values[0] < 1:
        raise EvalsuiteError(f"{what}: values must be positive, not {values[0]}")
    return tuple(values)


def parse_families(text: str) -> tuple[VariantSpec, ...]:
    """``--levels`` value: comma-separated variant names, or ``none``."""
    if text.strip().lower() in ("", "none"):
        return ()
    return tuple(dict.fromkeys(VariantSpec.parse(n).with_level(DEFAULT_OPT_LEVEL) for n in text.split(",") if n.strip()))


# --- the measurement harness (pure: runner and clock are injected) -----------------------------------


class Runner(Protocol):
    """Runs one variant once on one (length, batch) input; its wall time is what gets measured."""

    def __call__(self, variant: str, length: int, batch: int) -> None: ...


@dataclass(frozen=True)
class Step:
    """One call in the measurement schedule; ``rep`` is negative for warm-up rounds."""

    rep: int
    length: int
    batch: int
    variant: str

    @property
    def timed(self) -> bool:
        return self.rep >= 0


def schedule(variants: Sequence[str], cells: Sequence[tuple[int, int]], repeats: int, warmup: int) -> list[Step]:
    """The order of every call: rounds (warm-up ones first), within a round each (length, batch) cell,
    within a cell every variant once, starting at variant ``round % n`` so each variant goes first
    equally often over ``n`` rounds.

    Example:
        >>> [s.variant for s in schedule(["a", "b", "c"], [(4, 1)], repeats=2, warmup=0)]
        ['a', 'b', 'c', 'b', 'c', 'a']
    """
    steps = []
    n = len(variants)
    for rnd in range(warmup + repeats):
        rep = rnd - warmup
        start = rnd % n
        order = [*variants[start:], *variants[:start]]
        for length, batch in cells:
            steps.extend(Step(rep, length, batch, v) for v in order)
    return steps


def measure(steps: Sequence[Step], run: Runner, clock: Callable[[], int] = time.perf_counter_ns,
            progress: Callable[[int, int], None] | None = None) -> dict[tuple[str, int, int], list[float]]:
    """Run ``steps`` in order; the milliseconds of each timed call, by (variant, length, batch), in run order.

    The garbage collector is paused while measuring, as ``timeit`` does. ``progress(round, rounds)`` is
    called between rounds, outside any timed call.
    """
    samples: dict[tuple[str, int, int], list[float]] = {}
    rounds = sorted({s.rep for s in steps})
    enabled = gc.isenabled()
    gc.disable()
    try:
        current = None
        for step in steps:
            if progress is not None and step.rep != current:
                current = step.rep
                progress(rounds.index(step.rep), len(rounds))
            start = clock()
            run(step.variant, step.length, step.batch)
            elapsed = clock() - start
            if step.timed:
                samples.setdefault((step.variant, step.length, step.batch), []).append(elapsed / 1e6)
    finally:
        if enabled:
            gc.enable()
    if progress is not None and rounds:
        progress(len(rounds), len(rounds))
    return samples


@dataclass(frozen=True)
class Timing:
    """Summary of repeated timings of one cell, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int

    @property
    def spread(self) -> float:
        """(p90 - p10) / median: the relative width of the middle 80% of runs."""
        return (self.p90_ms - self.p10_ms) / self.median_ms if self.median_ms > 0 else 0.0


def summarize(samples_ms: Sequence[float]) -> Timing:
    """Median, 10th and 90th percentile of ``samples_ms``.

    Percentiles interpolate linearly between order statistics (numpy's default, "linear" / Hyndman-Fan
    type 7): with sorted values x_0..x_{n-1}, the q-th percentile is at rank h = (n - 1) q / 100,
    x_floor(h) + (h - floor(h)) (x_ceil(h) - x_floor(h)). The median is the 50th percentile.

    Example:
        >>> summarize([4.0, 1.0, 3.0, 2.0])
        Timing(median_ms=2.5, p10_ms=1.3, p90_ms=3.7, runs=4)
    """
    if len(samples_ms) == 0:
        raise EvalsuiteError("no timings to summarize")
    x = np.asarray(samples_ms, dtype=np.float64)
    p10, median, p90 = (float(v) for v in np.percentile(x, [10, 50, 90]))
    return Timing(round(median, 6), round(p10, 6), round(p90, 6), len(x))



# --- from samples to results (pure) -------------------------------------------------------------------


def compare(samples: dict[tuple[str, int, int], list[float]], variants: Sequence[str],
            cells: Sequence[tuple[int, int]], baseline: str = BASELINE.name) -> list[Measurement]:
    """One :class:`Measurement` per (batch, length, variant), in that order, each against ``baseline``."""
    out = []
    for length, batch in sorted(cells, key=lambda c: (c[1], c[0])):
        base = summarize(samples[(baseline, length, batch)])
        for name in variants:
            t = summarize(samples[(name, length, batch)])
            out.append(Measurement(name, length, batch, t.median_ms, t.p10_ms, t.p90_ms, base.median_ms,
                                   base.median_ms / t.median_ms, batch * length / (t.median_ms / 1e3), t.runs))
    return out


def level_gains(measurements: Iterable[Measurement]) -> list[LevelGain]:
    """For every family measured at level 0 and at another level: ``o0 median / oN median`` per cell.

    "Stacked": level N includes the fusions of the levels below it, so each gain is over plain level 0.
    """
    by_cell: dict[tuple[str, int, int], dict[int, float]] = {}
    for m in measurements:
        spec = VariantSpec.parse(m.variant)
        by_cell.setdefault((spec.with_level(DEFAULT_OPT_LEVEL).name, m.length, m.batch), {})[spec.opt_level] = m.median_ms
    out = []
    for (family, length, batch), levels in by_cell.items():
        if 0 not in levels or len(levels) < 2:
            continue
        for level in sorted(levels):
            out.append(LevelGain(family, length, batch, level, levels[level], levels[0], levels[0] / levels[level]))
    return sorted(out, key=lambda g: (g.family, g.batch, g.length, g.level))
