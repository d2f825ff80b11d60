"""Two models side by side in one run, and what a missing Attention fusion costs (issue 11).

Loads every session of both models (the default all-MiniLM-L6-v2, BERT, 6 x 384; and a base-size model such as
all-mpnet-base-v2, MPNet, 12 x 768) plus two extra builds of the default model whose Float32 parent was optimized
with onnxruntime's Attention fusion turned off (``FusionOptions.enable_attention = False``: what every MPNet user
gets), and times them all interleaved round-robin with evalsuite's bench harness, so load on the machine hits every
session alike. Prints per model the speedup of each variant over that model's own Float32, per input length at
batch 1 and in batch-32 throughput, next to the reference study's base-size column (QInt8 on a VNNI CPU: 2.5-3.5x,
2.7-2.9x from 32 to 128 tokens), then the fused-vs-unfused table.

``--clock cpu --threads 1`` times the CPU seconds of the one onnxruntime thread instead of wall time: on a shared
machine this measures the work, not the neighbours (the wall clock also counts time the thread was preempted).

    python benchmarks/model_speed.py --mpnet /work/models/all-mpnet-base-v2 --clock cpu --threads 1
    python benchmarks/model_speed.py --mpnet DIR --lengths 16 --repeats 1 --no-write      # quick check of the script

Writes results/bench/model_speed.md and .json (one document: machine, clock, every cell's samples summary).
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import tempfile
import time
from pathlib import Path

from evalsuite.bench.harness import measure, schedule, summarize
from evalsuite.bench.runner import OnnxRunner, exact_length_inputs
from evalsuite.bench.schema import Machine
from evalsuite.build import build_variant
from evalsuite.config import default_cache_dir
from evalsuite.encode import make_session
from evalsuite.files import atomic_write_bytes, atomic_write_json
from evalsuite.models import DEFAULT_MODEL, resolve_model
from evalsuite.variants import VariantSpec, optimize

VARIANTS = ("float32", "float16", "quint8-pc-7bit", "qint8-pc-7bit", "qint8-pc", "qint8")
UNFUSED = ("float32", "qint8-pc-7bit")  # rebuilt from a parent without Attention fusion
REFERENCE = "QInt8 on a VNNI CPU, base-size model: 2.5-3.5x (2.7-2.9x from 32 to 128 tokens)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mpnet", required=True, type=Path, help="the assembled all-mpnet-base-v2 folder")
    parser.add_argument("--lengths", default="16,32,64,128,256", help="batch-1 lengths in tokens")
    parser.add_argument("--throughput-length", type=int, default=128, help="length of the batch-32 cell")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--out-dir", type=Path, default=Path("results/bench"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    lengths = tuple(int(n) for n in args.lengths.split(","))
    cells = [(n, 1) for n in lengths] + [(args.throughput_length, 32)]

    models = {"MiniLM": resolve_model(DEFAULT_MODEL), "MPNet": resolve_model(str(args.mpnet))}
    paths: dict[str, Path] = {}
    rows: dict[str, dict] = {}
    for label, source in models.items():
        rows[label] = exact_length_inputs(source, sorted({*lengths, args.throughput_length}))
        for name in VARIANTS:
            paths[f"{label}/{name}"] = build_variant(source, VariantSpec.parse(name), args.cache_dir, _say).path
    with tempfile.TemporaryDirectory(prefix="unfused-") as scratch:
        # Its own cache: FUSION_OFF is not part of a cache key, so these builds must never land in the real cache.
        optimize.FUSION_OFF["bert"] = ("enable_attention",)
        try:
            for name in UNFUSED:
                paths[f"MiniLM/{name} (no Attention fusion)"] = build_variant(
                    models["MiniLM"], VariantSpec.parse(name), Path(scratch), _say).path
        finally:
            del optimize.FUSION_OFF["bert"]
        sessions = {key: make_session(path, args.threads, spinning=False) for key, path in paths.items()}
        runners = {label: OnnxRunner({k: s for k, s in sessions.items() if k.startswith(label + "/")},
                                     rows[label], (1, 32)) for label in models}
        clock = time.thread_time_ns if args.clock == "cpu" else time.perf_counter_ns
        if args.clock == "cpu" and args.threads != 1:
            parser.error("--clock cpu measures the calling thread only: use it with --threads 1")
        names = list(sessions)
        steps = schedule(names, cells, args.repeats, warmup=1)
        _say(f"timing {len(names)} sessions x {len(cells)} cells x {args.repeats} rounds (+1 warm-up), clock {args.clock}")
        samples = measure(steps, lambda v, n, b: runners[v.split("/")[0]](v, n, b), clock=clock)
    ms = {key: summarize(v).median_ms for key, v in samples.items()}
    machine = Machine.current(args.threads)
    text = render(ms, models, lengths, args.throughput_length, machine, args.clock)
    print(text)
    if not args.no_write:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        command = "python " + shlex.join(["benchmarks/model_speed.py", *(argv if argv is not None else sys.argv[1:])])
        atomic_write_bytes(args.out_dir / "model_speed.md", f"`{command}`\n\n{text}\n".encode())
        atomic_write_json(args.out_dir / "model_speed.json", {
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "command": command,
            "machine": machine.to_dict(), "clock": args.clock, "repeats": args.repeats,
            "models": {label: {"model_id": s.model_id, "weights_sha256": s.weights_sha256} for label, s in models.items()},
            "median_ms": {f"{v}|{n}|{b}": t for (v, n, b), t in sorted(ms.items())},
        })
    return 0


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def render(ms: dict[tuple[str, int, int], float], models: dict, lengths: tuple[int, ...], tput: int,
           machine: Machine, clock: str) -> str:
    """Markdown: per model, Float32 ms and each variant's speedup per cell; then the fusion table."""
    cols = [f"{n} tok" for n in lengths] + [f"b32 x {tput}"]
    cells = [(n, 1) for n in lengths] + [(tput, 32)]
    out = [f"Machine: {machine.describe()}. Clock: {clock} time, median of the rounds. Reference: {REFERENCE}.", ""]
    for label, source in models.items():
        out += [f"**{label}** ({source.model_id}): Float32 ms, then speedup over Float32", "",
                "| variant | " + " | ".join(cols) + " |", "|:---|" + "---:|" * len(cols)]
        base = {c: ms[(f"{label}/float32", *c)] for c in cells}
        out.append("| float32 ms | " + " | ".join(f"{base[c]:.1f}" for c in cells) + " |")
        for name in VARIANTS[1:]:
            out.append(f"| {name} | " + " | ".join(f"{base[c] / ms[(f'{label}/{name}', *c)]:.2f}x" for c in cells) + " |")
        out.append("")
    out += ["**Attention fusion on BERT** (all-MiniLM-L6-v2): time without the fused Attention / time with it", "",
            "| build | " + " | ".join(cols) + " |", "|:---|" + "---:|" * len(cols)]
    for name in UNFUSED:
        fused, unfused = f"MiniLM/{name}", f"MiniLM/{name} (no Attention fusion)"
        out.append(f"| {name} | " + " | ".join(f"{ms[(unfused, *c)] / ms[(fused, *c)]:.2f}x" for c in cells) + " |")
    qint8_unfused = [ms[("MiniLM/float32", *c)] / ms[("MiniLM/qint8-pc-7bit (no Attention fusion)", *c)] for c in cells]
    out.append("| qint8-pc-7bit speedup over fused Float32, unfused | "
               + " | ".join(f"{r:.2f}x" for r in qint8_unfused) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
