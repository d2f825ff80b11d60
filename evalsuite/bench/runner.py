"""The real measurement: exact-length inputs, every variant's session loaded at once, timed interleaved; memory probes.

Example:
    >>> result = run_bench(BenchConfig(variants=tuple(expand(["seed"])), lengths=(16, 128), batches=(1,)))  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evalsuite.bench.harness import BenchConfig, compare, level_gains, measure, schedule
from evalsuite.bench.schema import BenchResult, Machine, VariantInfo
from evalsuite.errors import EvalsuiteError
from evalsuite.machine import default_threads

if TYPE_CHECKING:
    from evalsuite.models import ModelSource

Say = Callable[[str], None]


def exact_length_inputs(source: ModelSource, lengths: Sequence[int]) -> dict[int, np.ndarray]:
    """Token ids of exactly ``L`` tokens for each length: the start of a long text, then the closing special token.

    The long text is tokenized by the model's own tokenizer (truncated at ``max_seq_length``, so it
    ends with SEP); the row for ``L`` is its first ``L - 1`` ids and its last id.
    """
    from evalsuite.encode import TextTokenizer

    max_len = source.settings.max_seq_length
    too_long = [n for n in lengths if n > max_len]
    if too_long:
        raise EvalsuiteError(f"length {too_long[0]} is above {source.model_id}'s max_seq_length {max_len}; "
                             f"the evaluator truncates there, so use lengths up to {max_len}")
    tokenizer = TextTokenizer(source.path, max_len)
    full = tokenizer([_FILLER * (max_len // 8 + 1)]).row(0)
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
                    self.feeds[(name, length, batch)] = _feed(row, batch, names)

    def __call__(self, variant: str, length: int, batch: int) -> None:
        self.sessions[variant].run(None, self.feeds[(variant, length, batch)])


def _feed(row: np.ndarray, batch: int, names: list[str]) -> dict[str, np.ndarray]:
    from evalsuite.encode.session import model_inputs

    ids = np.ascontiguousarray(np.tile(row, (batch, 1)))
    return model_inputs(ids, np.ones_like(ids), names)


def probe_memory(path: Path, threads: int, row: np.ndarray, batch: int) -> tuple[float, float]:
    """(peak RSS, peak RSS minus baseline) in MB of a fresh child process that loads ``path`` and runs one input.

    The child imports onnxruntime and numpy, reads its peak RSS (the baseline), creates the session with
    :func:`evalsuite.encoder.make_session`, runs ``batch`` copies of ``row`` once and reads its peak RSS
    again (see :func:`_peak_rss_kb`). A child per variant keeps variants from sharing one high-water mark,
    as they would in-process, where every session is loaded at once.
    """
    payload = json.dumps({"path": str(path), "threads": threads, "row": row.tolist(), "batch": batch})
    code = "from evalsuite.bench.runner import _memory_child; _memory_child()"
    proc = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EvalsuiteError(f"memory probe of {path} failed: {last[:200]}")
    kb = json.loads(proc.stdout.strip().splitlines()[-1])
    return round(kb["peak_kb"] / 1024, 1), round((kb["peak_kb"] - kb["baseline_kb"]) / 1024, 1)


def _memory_child() -> None:
    import onnxruntime  # noqa: F401  part of the baseline

    from evalsuite.encode import make_session

    args = json.loads(sys.stdin.read())
    baseline = _peak_rss_kb()
    session = make_session(Path(args["path"]), int(args["threads"]), spinning=False)
    names = [i.name for i in session.get_inputs()]
    session.run(None, _feed(np.asarray(args["row"], dtype=np.int64), int(args["batch"]), names))
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
    from evalsuite.build import build_variant
    from evalsuite.encode import make_session
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
