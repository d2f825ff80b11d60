"""The ``evalsuite.bench/1`` document (docs/bench-schema.md): typed records, the one reader and the writer."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError
from evalsuite.files import atomic_write_json
from evalsuite.machine import cpu_info, versions

SCHEMA = "evalsuite.bench/1"
TIMING_METHOD = "wall time of one onnxruntime session.run (time.perf_counter_ns), interleaved round-robin"
MEMORY_METHOD = ("one child process per variant: peak RSS (Linux VmHWM) after importing onnxruntime (baseline), then "
                 "after creating the session and running the largest (length, batch) input once (peak)")



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
        return cls.from_cpu_info(cpu_info(), threads, versions()["onnxruntime"])

    @classmethod
    def from_cpu_info(cls, info: dict[str, Any], threads: int, onnxruntime: str) -> Machine:
        """From :func:`evalsuite.machine.cpu_info`'s dict, as stored in every result's ``machine``."""
        return cls(str(info.get("model") or "unknown"), str(info.get("family_model") or ""), int(info.get("logical_cores") or 0),
                   dict(info.get("flags") or {}), bool(info.get("vnni")), threads, onnxruntime)

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
    """The bench document at ``path``; anything unreadable, foreign or incomplete is a one-line error naming the file."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalsuiteError(f"bench results not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvalsuiteError(f"{path}: unreadable bench results ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise EvalsuiteError(f"{path}: not an {SCHEMA} file (schema {found!r})")
    try:
        return BenchResult.from_dict(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EvalsuiteError(f"{path}: incomplete {SCHEMA} document ({type(exc).__name__}: {exc})") from None
