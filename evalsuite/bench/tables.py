"""Bench results as tables: speedup per length and batch, optimizer-level gains, sizes and memory; and a markdown report."""

from __future__ import annotations

import math
from collections.abc import Sequence

from evalsuite.analysis.tables import TextTable, to_markdown
from evalsuite.bench.schema import MEMORY_METHOD, TIMING_METHOD, BenchResult
from evalsuite.variants import BASELINE


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
