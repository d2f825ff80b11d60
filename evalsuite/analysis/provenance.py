"""Where a report's numbers come from: weights, data, batch policy, machines, software and the commands that ran.

Read from the typed result records (and bench.json) the report is built from, so the HTML page can say exactly
which inputs it describes.

Example:
    >>> p = provenance(load_results(Path("results")), ["float32", "qint8"], None)  # doctest: +SKIP
    >>> p.machines[0].describe()  # doctest: +SKIP
    'AMD EPYC (family 25 model 17), AVX-512, VNNI (avx512_vnni), no native fp16, 2 threads, onnxruntime 1.32.0'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from evalsuite.bench.schema import BenchResult, Machine
from evalsuite.results import ModelResults, TaskRef


@dataclass(frozen=True)
class Source:
    """A command that produced some of the report's inputs, and when it ran (a day or a range of days)."""

    what: str
    command: str  # empty when it was not recorded (evalsuite called as a library)
    created: str


@dataclass(frozen=True)
class Provenance:
    """The inputs behind a report's numbers."""

    weights_sha256: str
    tasks: dict[str, TaskRef]
    batch_policies: tuple[str, ...]
    machines: tuple[Machine, ...]  # distinct machines the evaluations ran on, newest first
    versions: dict[str, str]  # of the newest result
    onnx_sha256: dict[str, str]  # per variant: the evaluated file
    sources: tuple[Source, ...]


def provenance(data: ModelResults, variants: Iterable[str], bench: BenchResult | None) -> Provenance:
    """The provenance of ``variants``' results in ``data`` (and of ``bench``, when the report shows one)."""
    shown = set(variants)
    results = sorted((r for by_variant in data.results.values() for r in by_variant.values() if r.variant in shown),
                     key=lambda r: r.created, reverse=True)
    machines: dict[str, Machine] = {}
    for r in results:
        m = Machine.from_cpu_info(r.machine, int(r.timings.get("threads") or 0), r.versions.get("onnxruntime", "unknown"))
        machines.setdefault(m.describe(), m)
    by_command: dict[str, list[str]] = {}
    for r in results:
        by_command.setdefault(r.command, []).append(r.created)
    sources = [Source(f"evaluation ({len(dates)} result file{'s' if len(dates) > 1 else ''})", command, days(dates))
               for command, dates in by_command.items()]
    if bench is not None:
        sources.append(Source("speed (bench.json)", bench.command, days([bench.created])))
    return Provenance(
        weights_sha256=results[0].weights_sha256 if results else "",
        tasks={task: by_variant[next(iter(by_variant))].task for task, by_variant in data.results.items()},
        batch_policies=tuple(sorted({str(r.batch_policy.get("key")) for r in results})),
        machines=tuple(machines.values()),
        versions=dict(results[0].versions) if results else {},
        onnx_sha256={r.variant: r.onnx_sha256 for r in reversed(results)},
        sources=tuple(sources),
    )


def days(timestamps: Iterable[str]) -> str:
    """``2026-11-24``, or ``2026-11-20 to 2026-11-24`` for timestamps on several days (ISO 8601 strings).

    Example:
        >>> days(["2026-11-24T09:35:44+00:00", "2026-11-20T10:00:00+00:00"])
        '2026-11-20 to 2026-11-24'
    """
    found = sorted({t[:10] for t in timestamps if t})
    return "" if not found else found[0] if len(found) == 1 else f"{found[0]} to {found[-1]}"
