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

import datetime
import gc
import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from evalsuite.errors import EvalsuiteError
from evalsuite.machine import cpu_info, default_threads, versions
from evalsuite.models import DEFAULT_MODEL
from evalsuite.store import atomic_write_json
from evalsuite.variants import BASELINE, DEFAULT_OPT_LEVEL, OPT_LEVELS, VariantSpec

if TYPE_CHECKING:
    from rich.table import Table

    from evalsuite.models import ModelSource

SCHEMA = "evalsuite.bench/1"
DEFAULT_LENGTHS = (4, 8, 16, 32, 64, 128, 256)
DEFAULT_BATCHES = (1, 32)
DEFAULT_REPEATS = 10
DEFAULT_WARMUP = 1
# Families whose optimizer levels 0, 1, 2, 99 are measured for the optimizer-level table (the ``levels`` named set).
DEFAULT_LEVEL_FAMILIES = ("float32", "qint8-pc-7bit")
TIMING_METHOD = "wall time of one onnxruntime session.run (time.perf_counter_ns), interleaved round-robin"
MEMORY_METHOD = ("one child process per variant: peak RSS (Linux VmHWM) after importing onnxruntime (baseline), then "
                 "after creating the session and running the largest (length, batch) input once (peak)")

Say = Callable[[str], None]


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
    cache_dir: Path = field(default_factory=lambda: _default_cache_dir())
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


# --- typed results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    """The machine a benchmark ran on: what decides int8 and fp16 speed, threads and onnxruntime version."""

    cpu_model: str
    cpu_id: str
    logical_cores: int
    flags: dict[str, bool]
    vnni: bool
    threads: int
    onnxruntime: str

    @classmethod
    def current(cls, threads: int) -> Machine:
        info = cpu_info()
        return cls(str(info["model"]), str(info["family_model"]), int(info["logical_cores"] or 0), dict(info["flags"]),  # type: ignore[call-overload,arg-type]
                   bool(info["vnni"]), threads, versions()["onnxruntime"])

    def describe(self) -> str:
        """One line for table headers: ``AMD EPYC (family 25 model 17), AVX2, no VNNI, 2 threads, onnxruntime 1.32.0``."""
        f = self.flags
        isa = "AVX-512" if f.get("avx512f") else "AVX2" if f.get("avx2") else "no AVX2"
        vnni_kinds = [k for k in ("avx512_vnni", "avx_vnni", "amx_int8") if f.get(k)]
        vnni = f"VNNI ({', '.join(vnni_kinds)})" if self.vnni else "no VNNI"
        fp16 = "native fp16" if f.get("avx512_fp16") else "no native fp16"
        cpu = f"{self.cpu_model} ({self.cpu_id})" if self.cpu_id else self.cpu_model
        return f"{cpu}, {isa}, {vnni}, {fp16}, {self.threads} threads, onnxruntime {self.onnxruntime}"

    def to_dict(self) -> dict[str, object]:
        return {"cpu": {"model": self.cpu_model, "id": self.cpu_id, "logical_cores": self.logical_cores,
                        "flags": dict(self.flags), "vnni": self.vnni},
                "threads": self.threads, "onnxruntime": self.onnxruntime, "description": self.describe()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Machine:
        cpu = d["cpu"]
        return cls(cpu["model"], cpu.get("id", ""), int(cpu.get("logical_cores", 0)), dict(cpu["flags"]), bool(cpu["vnni"]),
                   int(d["threads"]), d["onnxruntime"])


@dataclass(frozen=True)
class Measurement:
    """One (variant, length, batch) cell: its timing and how it compares with Float32 in the same rounds."""

    variant: str
    length: int
    batch: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    float32_median_ms: float
    speedup: float  # float32_median_ms / median_ms: above 1 is faster than Float32
    tokens_per_s: float  # batch * length / median
    runs: int


@dataclass(frozen=True)
class VariantInfo:
    """One measured ONNX file: its size, its peak memory, and why it was measured."""

    size_bytes: int
    onnx_sha256: str
    peak_rss_mb: float | None  # whole child process; None when the memory probe was skipped
    session_rss_mb: float | None  # peak minus the child's RSS before creating the session
    role: str  # "requested" (a speedup-table column, Float32 included) or "levels" (optimizer-level table only)


@dataclass(frozen=True)
class LevelGain:
    """Stacked gain of one optimizer level over level 0 of the same family: ``o0 median / oN median``."""

    family: str
    length: int
    batch: int
    level: int
    median_ms: float
    o0_median_ms: float
    gain: float


@dataclass
class BenchResult:
    """Everything one ``evalsuite bench`` run measured; saved as ``<results>/<model slug>/bench.json``."""

    model_id: str
    model_slug: str
    weights_sha256: str
    machine: Machine
    lengths: tuple[int, ...]
    batches: tuple[int, ...]
    repeats: int
    warmup: int
    requested: tuple[str, ...]  # speedup-table columns, Float32 first
    level_families: tuple[str, ...]
    measurements: list[Measurement]
    variants: dict[str, VariantInfo]
    levels: list[LevelGain]
    created: str = ""
    command: str = ""

    def cell(self, variant: str, length: int, batch: int) -> Measurement:
        for m in self.measurements:
            if (m.variant, m.length, m.batch) == (variant, length, batch):
                return m
        raise KeyError((variant, length, batch))

    def to_dict(self) -> dict[str, object]:
        """The documented ``evalsuite.bench/1`` document (docs/bench-schema.md)."""
        return {
            "schema": SCHEMA,
            "model": {"id": self.model_id, "slug": self.model_slug, "weights_sha256": self.weights_sha256},
            "machine": self.machine.to_dict(),
            "config": {"lengths": list(self.lengths), "batches": list(self.batches), "repeats": self.repeats,
                       "warmup": self.warmup, "variants": list(self.requested), "level_families": list(self.level_families),
                       "timing": TIMING_METHOD, "memory": MEMORY_METHOD},
            "results": [asdict(m) for m in self.measurements],
            "variants": {name: asdict(v) for name, v in self.variants.items()},
            "levels": [asdict(g) for g in self.levels],
            "created": self.created,
            "command": self.command,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchResult:
        if d.get("schema") != SCHEMA:
            raise EvalsuiteError(f"not an {SCHEMA} document (schema {d.get('schema')!r})")
        cfg, model = d["config"], d["model"]
        return cls(
            model_id=model["id"], model_slug=model.get("slug", ""), weights_sha256=model["weights_sha256"],
            machine=Machine.from_dict(d["machine"]), lengths=tuple(cfg["lengths"]), batches=tuple(cfg["batches"]),
            repeats=int(cfg["repeats"]), warmup=int(cfg.get("warmup", 0)),
            requested=tuple(cfg.get("variants") or [n for n, v in d["variants"].items() if v.get("role", "requested") == "requested"]),
            level_families=tuple(cfg.get("level_families", ())),
            measurements=[Measurement(**m) for m in d["results"]],
            variants={n: VariantInfo(**v) for n, v in d["variants"].items()},
            levels=[LevelGain(**g) for g in d.get("levels", [])],
            created=d.get("created", ""), command=d.get("command", ""),
        )


def bench_path(results_dir: Path, model_slug: str) -> Path:
    return results_dir / model_slug / "bench.json"


def save_bench(result: BenchResult, results_dir: Path) -> Path:
    """Write ``<results_dir>/<model slug>/bench.json`` atomically; returns its path."""
    path = bench_path(results_dir, result.model_slug)
    atomic_write_json(path, result.to_dict())
    return path


def read_bench(path: Path) -> BenchResult:
    try:
        return BenchResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise EvalsuiteError(f"cannot read benchmark {path}: {exc}") from exc


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


# --- the real thing -------------------------------------------------------------------------------------


def exact_length_inputs(source: ModelSource, lengths: Sequence[int]) -> dict[int, np.ndarray]:
    """Token ids of exactly ``L`` tokens for each length: the start of a long text, then the closing special token.

    The long text is tokenized by the model's own tokenizer (truncated at ``max_seq_length``, so it
    ends with SEP); the row for ``L`` is its first ``L - 1`` ids and its last id.
    """
    from evalsuite.encoder import TextTokenizer

    max_len = source.settings.max_seq_length
    too_long = [n for n in lengths if n > max_len]
    if too_long:
        raise EvalsuiteError(f"length {too_long[0]} is above {source.model_id}'s max_seq_length {max_len}; "
                             f"the evaluator truncates there, so use lengths up to {max_len}")
    tokenizer = TextTokenizer(source.path, max_len)
    full = tokenizer([_FILLER * (max_len // 8 + 1)]).ids[0]
    if len(full) < max(lengths):
        raise EvalsuiteError(f"the tokenizer of {source.model_id} makes only {len(full)} tokens of the filler text")
    return {n: np.concatenate([full[:n - 1], full[-1:]]).astype(np.int64) for n in lengths}


_FILLER = ("Quantized sentence embedding models trade a small loss of retrieval quality for faster inference "
           "and smaller files, and a release gate decides whether the trade is worth it. ")


class OnnxRunner:
    """Runs onnxruntime sessions on prepared inputs; the feeds are built before any timing starts."""

    def __init__(self, sessions: dict[str, Any], rows: dict[int, np.ndarray], batches: Sequence[int]) -> None:
        self.sessions = sessions
        self.feeds: dict[tuple[str, int, int], dict[str, np.ndarray]] = {}
        for name, session in sessions.items():
            names = [i.name for i in session.get_inputs()]
            for length, row in rows.items():
                for batch in batches:
                    self.feeds[(name, length, batch)] = {n: v for n, v in _feed(row, batch).items() if n in names}

    def __call__(self, variant: str, length: int, batch: int) -> None:
        self.sessions[variant].run(None, self.feeds[(variant, length, batch)])


def _feed(row: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    ids = np.ascontiguousarray(np.tile(row, (batch, 1)))
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def probe_memory(path: Path, threads: int, row: np.ndarray, batch: int) -> tuple[float, float]:
    """(peak RSS, peak RSS minus baseline) in MB of a fresh child process that loads ``path`` and runs one input.

    The child imports onnxruntime and numpy, reads its peak RSS (the baseline), creates the session with
    :func:`evalsuite.encoder.make_session`, runs ``batch`` copies of ``row`` once and reads its peak RSS
    again (see :func:`_peak_rss_kb`). A child per variant keeps variants from sharing one high-water mark,
    as they would in-process, where every session is loaded at once.
    """
    payload = json.dumps({"path": str(path), "threads": threads, "row": row.tolist(), "batch": batch})
    code = "from evalsuite.bench import _memory_child; _memory_child()"
    proc = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EvalsuiteError(f"memory probe of {path} failed: {last[:200]}")
    kb = json.loads(proc.stdout.strip().splitlines()[-1])
    return round(kb["peak_kb"] / 1024, 1), round((kb["peak_kb"] - kb["baseline_kb"]) / 1024, 1)


def _memory_child() -> None:
    import onnxruntime  # noqa: F401  part of the baseline

    from evalsuite.encoder import make_session

    args = json.loads(sys.stdin.read())
    baseline = _peak_rss_kb()
    session = make_session(Path(args["path"]), int(args["threads"]), spinning=False)
    names = [i.name for i in session.get_inputs()]
    feed = _feed(np.asarray(args["row"], dtype=np.int64), int(args["batch"]))
    session.run(None, {n: v for n, v in feed.items() if n in names})
    print(json.dumps({"baseline_kb": baseline, "peak_kb": _peak_rss_kb()}))


def _peak_rss_kb() -> int:
    """This process's peak resident set size in KiB: ``VmHWM`` on Linux, else ``ru_maxrss``.

    ``VmHWM`` belongs to the process's own address space, so it starts afresh at ``exec``; Linux's
    ``ru_maxrss`` instead carries over the high-water mark of the parent that forked the child.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    scale = 1024 if sys.platform == "darwin" else 1  # bytes on macOS, KiB elsewhere
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // scale)


def run_bench(cfg: BenchConfig, say: Say | None = None, progress: Callable[[int, int], None] | None = None,
              command: str = "") -> BenchResult:
    """Build (or reuse) every variant, probe its memory, then time all of them interleaved; silent unless ``say`` is given."""
    from evalsuite.convert import build_variant
    from evalsuite.encoder import make_session
    from evalsuite.models import resolve_model

    say = say or (lambda _m: None)
    source = resolve_model(cfg.model)
    rows = exact_length_inputs(source, cfg.lengths)
    threads = cfg.threads or default_threads()
    specs = cfg.measured()
    names = [s.name for s in specs]
    shown = {s.name for s in cfg.shown()}
    artifacts = {s.name: build_variant(source, s, cfg.cache_dir, say) for s in specs}
    memory: dict[str, tuple[float | None, float | None]] = {}
    for name, art in artifacts.items():
        if cfg.measure_memory:
            say(f"memory probe: {name}")
            memory[name] = probe_memory(art.path, threads, rows[max(cfg.lengths)], max(cfg.batches))
        else:
            memory[name] = (None, None)
    say(f"loading {len(specs)} sessions")
    runner = OnnxRunner({n: make_session(a.path, threads, spinning=False) for n, a in artifacts.items()}, rows, cfg.batches)
    cells = [(length, batch) for batch in cfg.batches for length in cfg.lengths]
    steps = schedule(names, cells, cfg.repeats, cfg.warmup)
    say(f"timing {len(names)} variants x {len(cells)} cells x {cfg.repeats} rounds (+{cfg.warmup} warm-up)")
    samples = measure(steps, runner, progress=progress)
    measurements = compare(samples, names, cells)
    variants = {n: VariantInfo(a.size_bytes, a.sha256, memory[n][0], memory[n][1], "requested" if n in shown else "levels")
                for n, a in artifacts.items()}
    return BenchResult(
        model_id=source.model_id, model_slug=source.slug, weights_sha256=source.weights_sha256,
        machine=Machine.current(threads), lengths=tuple(cfg.lengths), batches=tuple(cfg.batches),
        repeats=cfg.repeats, warmup=cfg.warmup, requested=tuple(s.name for s in cfg.shown()),
        level_families=tuple(f.name for f in cfg.level_families), measurements=measurements, variants=variants,
        levels=level_gains(measurements), created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        command=command,
    )


# --- tables ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextTable:
    """A table as strings, rendered by :func:`to_rich` or :func:`to_markdown`."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


def speedup_tables(result: BenchResult) -> list[TextTable]:
    """Per batch size: rows are lengths, columns Float32 and each requested variant; a cell is the speedup
    over Float32 and the variant's median (batch 1) or throughput (larger batches); last row the geometric mean."""
    tables = []
    for batch in result.batches:
        header = ["tokens", f"{BASELINE.name} {'ms' if batch == 1 else 'tok/s'}", *result.requested[1:]]
        rows, ratios = [], {v: [] for v in result.requested[1:]}
        for length in result.lengths:
            base = result.cell(BASELINE.name, length, batch)
            row = [str(length), _fmt_ms(base.median_ms) if batch == 1 else _fmt_rate(base.tokens_per_s)]
            for v in result.requested[1:]:
                m = result.cell(v, length, batch)
                ratios[v].append(m.speedup)
                row.append(f"{m.speedup:.2f}x ({_fmt_ms(m.median_ms) + ' ms' if batch == 1 else _fmt_rate(m.tokens_per_s) + ' tok/s'})")
            rows.append(row)
        if len(result.lengths) > 1:
            rows.append(["geomean", "", *(f"{_geomean(ratios[v]):.2f}x" for v in result.requested[1:])])
        kind = "single-sequence latency" if batch == 1 else f"throughput, batch {batch}"
        tables.append(TextTable(
            title=f"Speedup over Float32 ({kind}), {result.model_id}. CPU: {result.machine.describe()}",
            header=header, rows=rows,
            note=f"speedup = Float32 median time / variant median time, medians of {result.repeats} interleaved rounds "
                 f"after {result.warmup} warm-up; above 1.00x is faster than Float32"))
    return tables


def level_tables(result: BenchResult) -> list[TextTable]:
    """Per family and batch: rows are lengths, columns the o0 median and the gain of each level over o0."""
    tables = []
    families = list(dict.fromkeys(g.family for g in result.levels))
    for family in families:
        for batch in result.batches:
            gains = [g for g in result.levels if g.family == family and g.batch == batch]
            if not gains:
                continue
            levels = sorted({g.level for g in gains if g.level != 0})
            header = ["tokens", "o0 ms", *(f"o{lvl}" for lvl in levels)]
            rows = []
            for length in result.lengths:
                by_level = {g.level: g for g in gains if g.length == length}
                if 0 not in by_level:
                    continue
                rows.append([str(length), _fmt_ms(by_level[0].median_ms),
                             *(f"{by_level[lvl].gain:.2f}x" if lvl in by_level else "" for lvl in levels)])
            if len(rows) > 1:
                rows.append(["geomean", "", *(f"{_geomean([g.gain for g in gains if g.level == lvl]):.2f}x" for lvl in levels)])
            tables.append(TextTable(
                title=f"Optimizer levels, {family}, batch {batch}: gain over level 0",
                header=header, rows=rows,
                note="gain = o0 median / oN median; each level includes the fusions of the lower ones"))
    return tables


def variant_table(result: BenchResult) -> TextTable:
    """Size, peak memory and the noise of each measured variant."""
    rows = []
    for name, info in result.variants.items():
        spreads = [(m.p90_ms - m.p10_ms) / m.median_ms for m in result.measurements if m.variant == name and m.median_ms > 0]
        rows.append([name, f"{info.size_bytes / 1e6:.1f}",
                     "n/a" if info.peak_rss_mb is None else f"{info.peak_rss_mb:.0f}",
                     "n/a" if info.session_rss_mb is None else f"{info.session_rss_mb:.0f}",
                     f"{100 * max(spreads):.0f}%" if spreads else "", info.role])
    return TextTable(
        title="Variants: file size, peak memory, timing spread",
        header=["variant", "file MB", "peak RSS MB", "session MB", "worst spread", "role"], rows=rows,
        note=f"peak RSS: {MEMORY_METHOD}, at length {max(result.lengths)} x batch {max(result.batches)}; "
             "session MB = peak minus that baseline; worst spread = largest (p90 - p10) / median over cells")


def all_tables(result: BenchResult) -> list[TextTable]:
    return [*speedup_tables(result), *level_tables(result), variant_table(result)]


def to_rich(table: TextTable) -> Table:
    from rich.table import Table

    out = Table(title=table.title, title_justify="left", caption=table.note or None, caption_justify="left")
    for i, col in enumerate(table.header):
        out.add_column(col, justify="left" if i == 0 else "right")
    for row in table.rows:
        out.add_row(*row)
    return out


def to_markdown(table: TextTable) -> str:
    lines = [f"**{table.title}**", "", "| " + " | ".join(table.header) + " |",
             "|" + "|".join([":---", *["---:"] * (len(table.header) - 1)]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    if table.note:
        lines += ["", f"_{table.note}_"]
    return "\n".join(lines)


def format_markdown(result: BenchResult, title: str | None = None) -> str:
    """A self-contained markdown report: machine, command, method, then every table."""
    m = result.machine
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in m.flags.items())
    head = [
        f"# {title or f'Latency of ONNX variants of {result.model_id} against Float32'}",
        "",
        f"- Machine: {m.describe()}; {m.logical_cores} logical cores; flags: {flags}",
        f"- Model: `{result.model_id}` (weights sha256 {result.weights_sha256[:12]}...)",
        f"- Lengths {', '.join(map(str, result.lengths))} tokens; batches {', '.join(map(str, result.batches))}; "
        f"{result.repeats} timed rounds after {result.warmup} warm-up; measured {result.created or 'n/a'}",
        f"- Method: {TIMING_METHOD}; each round rotates which variant goes first",
    ]
    if result.command:
        head.append(f"- Command: `{result.command}`")
    return "\n".join(head) + "\n\n" + "\n\n".join(to_markdown(t) for t in all_tables(result)) + "\n"


def _fmt_ms(ms: float) -> str:
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def _fmt_rate(rate: float) -> str:
    return f"{rate / 1e3:.1f}k" if rate >= 1e3 else f"{rate:.0f}"


def _geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def _default_cache_dir() -> Path:
    from evalsuite.sweep import default_cache_dir

    return default_cache_dir()


__all__ = ["BenchConfig", "BenchResult", "LevelGain", "Machine", "Measurement", "OnnxRunner", "Runner", "Step", "TextTable",
           "Timing", "VariantInfo", "all_tables", "bench_path", "compare", "exact_length_inputs", "format_markdown",
           "level_gains", "level_tables", "measure", "parse_families", "parse_ints", "probe_memory", "read_bench", "run_bench",
           "save_bench", "schedule", "speedup_tables", "summarize", "to_markdown", "to_rich", "variant_table"]
