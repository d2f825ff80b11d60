"""Tables for people and machines built from stored results: the sweep tables of ``evalsuite run`` and the
comparison table of ``evalsuite report`` (markdown, CSV, JSON, HTML), with speed columns when bench results exist.

The comparison table has the layout of the reference quality table: one row per variant (Float32 and the
``seed`` variants first), its build flags, NDCG@10 per task, the macro mean over tasks, the delta of the mean
against Float32 (absolute and %), its bootstrap CI and a significance marker (see :mod:`evalsuite.stats`).
The JSON document is described in ``docs/report-schema.md``.

Example:
    >>> report = build_report(Path("results"))  # doctest: +SKIP
    >>> print(render(report, "md"))  # doctest: +SKIP
    | Variant | dtype | per-chan | 7-bit | opt | NFCorpus | SciFact | Mean | Δ | Δ % | 95% CI | sig |
    ...
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray
from rich.table import Table

from evalsuite.errors import EvalsuiteError
from evalsuite.gate import GateConfig, ModelResults, VariantComparison, Verdict, compare_variant, judge, load_results
from evalsuite.stats import CI_NAME, TEST_NAME, pair
from evalsuite.variants import BASELINE, VariantSpec

if TYPE_CHECKING:
    import pandas as pd

    from evalsuite.sweep import SweepReport

Format = Literal["md", "csv", "json", "html"]
FORMATS: tuple[Format, ...] = ("md", "csv", "json", "html")
REPORT_SCHEMA = "evalsuite.report/1"
BENCH_SCHEMA = "evalsuite.bench/1"
DASH = "—"


def sweep_tables(report: SweepReport) -> list[Table]:
    """One table per task: Float32 NDCG@10, variant NDCG@10, absolute and relative delta."""
    tables = []
    rows = report.rows()
    for task in report.results:
        first = next(r for r in rows if r["task"] == task)
        table = Table(title=f"{task}: NDCG@10 vs Float32 ({report.model_id}, {first['n_queries']} queries)", title_justify="left")
        for col in ("variant", "Float32", "variant NDCG@10", "delta", "delta %"):
            table.add_column(col, justify="left" if col == "variant" else "right")
        for r in (r for r in rows if r["task"] == task):
            rel = r["relative_delta"]
            table.add_row(str(r["variant"]), f"{r['float32_ndcg_at_10']:.5f}", f"{r['ndcg_at_10']:.5f}",
                          f"{r['delta']:+.5f}", f"{100 * rel:+.2f}%" if rel is not None else "n/a")
        tables.append(table)
    return tables


# ---------------------------------------------------------------------------------------------------- bench results


@dataclass(frozen=True)
class Speed:
    """A variant's speed at the report's bench point, and its file size."""

    speedup: float | None
    median_ms: float | None
    size_bytes: int | None
    onnx_sha256: str | None = None  # of the file that was timed


@dataclass(frozen=True)
class Bench:
    """What the report uses of ``bench.json``: the speed of each variant at one (length, batch) point."""

    path: Path
    length: int
    batch: int
    machine: dict[str, object]
    speeds: dict[str, Speed]

    def describe(self) -> str:
        if isinstance(self.machine.get("description"), str):
            return str(self.machine["description"])
        cpu = self.machine.get("cpu")
        cpu_name = cpu.get("model") if isinstance(cpu, dict) else None
        parts = [str(cpu_name)] if cpu_name else []
        if isinstance(cpu, dict) and "vnni" in cpu:
            parts.append("VNNI" if cpu["vnni"] else "no VNNI")
        if self.machine.get("threads"):
            parts.append(f"{self.machine['threads']} threads")
        if self.machine.get("onnxruntime"):
            parts.append(f"onnxruntime {self.machine['onnxruntime']}")
        return ", ".join(parts) or "unknown machine"


def read_bench(path: Path, length: int, batch: int, weights_sha256: str | None = None) -> tuple[Bench | None, list[str]]:
    """Read ``bench.json`` (schema ``evalsuite.bench/1``) tolerantly: a missing file gives no bench and no note; a
    damaged or foreign one gives no bench and a note; bad entries are skipped.

    When no entry has ``length`` at ``batch``, the nearest measured length at that batch is used (with a note).
    The speedup of an entry is its ``speedup``, else ``float32_median_ms / median_ms``.
    """
    if not path.is_file():
        return None, []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, [f"{path}: unreadable bench results ignored ({exc})"]
    if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith("evalsuite.bench/"):
        return None, [f"{path}: not an {BENCH_SCHEMA} file; ignored"]
    notes = []
    if doc.get("schema") != BENCH_SCHEMA:
        notes.append(f"{path}: schema {doc.get('schema')!r}, read as {BENCH_SCHEMA!r}")
    model = doc.get("model") if isinstance(doc.get("model"), dict) else {}
    if weights_sha256 and model.get("weights_sha256") and model["weights_sha256"] != weights_sha256:
        return None, [f"{path}: benchmarks other weights ({str(model['weights_sha256'])[:12]}...) than the results; ignored"]
    entries = [e for e in doc.get("results") or [] if isinstance(e, dict) and isinstance(e.get("variant"), str)
               and _num(e.get("length")) is not None and _num(e.get("batch")) == batch]
    lengths = sorted({int(e["length"]) for e in entries})
    if not lengths:
        return None, [*notes, f"{path}: no bench results at batch {batch}; speed columns left out"]
    used = min(lengths, key=lambda n: (abs(n - length), n))
    if used != length:
        notes.append(f"{path}: no bench results at {length} tokens, batch {batch}; showing {used} tokens (measured: {', '.join(map(str, lengths))})")
    sizes = doc.get("variants") if isinstance(doc.get("variants"), dict) else {}
    speeds: dict[str, Speed] = {}
    for e in entries:
        if int(e["length"]) != used:
            continue
        try:
            name = VariantSpec.parse(e["variant"]).name
        except EvalsuiteError:
            notes.append(f"{path}: unknown variant {e['variant']!r} skipped")
            continue
        median, base = _num(e.get("median_ms")), _num(e.get("float32_median_ms"))
        speedup = _num(e.get("speedup")) or (base / median if base and median else None)
        info = sizes.get(e["variant"]) if isinstance(sizes.get(e["variant"]), dict) else {}
        size = _num(info.get("size_bytes"))
        sha = info.get("onnx_sha256") if isinstance(info.get("onnx_sha256"), str) else None
        speeds[name] = Speed(speedup, median, int(size) if size is not None else None, sha)
    machine = doc.get("machine") if isinstance(doc.get("machine"), dict) else {}
    return Bench(path, used, batch, machine, speeds), notes


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


# ---------------------------------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Row:
    """One variant of the report: its comparison with Float32, gate verdict, speed and per-query deltas."""

    spec: VariantSpec
    comparison: VariantComparison
    verdict: Verdict | None  # None when a task has no result
    speed: Speed | None
    size_bytes: int | None
    deltas: dict[str, NDArray[np.float64]]  # per task, per-query deltas in query-id order (for plots)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_baseline(self) -> bool:
        return self.spec == BASELINE


@dataclass(frozen=True)
class Report:
    """Everything ``evalsuite report`` shows; render it with :func:`render`, plot it with :mod:`evalsuite.plots`."""

    model_id: str
    model_slug: str
    tasks: list[str]
    n_queries: dict[str, int]
    rows: list[Row]
    config: GateConfig
    bench: Bench | None
    recommended: str | None
    recommendation: str
    notes: tuple[str, ...]


def build_report(results_dir: Path, model: str | None = None, tasks: Iterable[str] | None = None,
                 variants: Iterable[str] | None = None, cfg: GateConfig | None = None,
                 bench_path: Path | None = None) -> Report:
    """Compare every stored variant of a model with Float32 and judge it with the gate.

    Args:
        results_dir: the results folder (``<results-dir>/<model-slug>/<Task>/<variant>.json``).
        model: Hub id, folder or slug; optional when the folder holds one model.
        tasks: task columns, in order; default: ``cfg.tasks``, else every task with a Float32 result.
        variants: rows (names; Float32 is always first); default: every stored variant.
        cfg: gate and statistics settings; default ``configs/gate.yaml``.
        bench_path: bench results; default ``<results-dir>/<model-slug>/bench.json`` when it exists.
    """
    cfg = cfg or GateConfig.load()
    data = load_results(results_dir, model, tasks if tasks is not None else cfg.tasks)
    stored = data.variants()
    if variants is None:
        names = stored
    else:
        wanted = [VariantSpec.parse(v).name for v in variants]
        absent = [v for v in wanted if v not in stored]
        if absent:
            raise EvalsuiteError(f"no results for {', '.join(absent)} of {data.model_id} in {results_dir}/ (have: {', '.join(stored)})")
        names = [BASELINE.name] + [v for v in dict.fromkeys(wanted) if v != BASELINE.name]
    weights = data.results[data.tasks[0]][BASELINE.name].weights_sha256
    bench, notes = read_bench(bench_path or results_dir / data.model_slug / "bench.json", cfg.speed_length, cfg.speed_batch, weights)
    rows = [_row(data, name, cfg, bench, notes) for name in names]
    recommended, why = recommend(rows, bench, cfg)
    n_queries = {t: len(data.results[t][BASELINE.name].per_query_ndcg_at_10) for t in data.tasks}
    return Report(data.model_id, data.model_slug, data.tasks, n_queries, rows, cfg, bench, recommended, why, tuple(notes))


def _row(data: ModelResults, name: str, cfg: GateConfig, bench: Bench | None, notes: list[str]) -> Row:
    comparison = compare_variant(data, name, cfg, require_all=False)
    if comparison.missing:
        notes.append(f"{name} has no result on {', '.join(comparison.missing)}: its mean and gate are left out")
    verdict = judge(comparison, cfg) if comparison.mean is not None else None
    results = [by_variant[name] for by_variant in data.results.values() if name in by_variant]
    deltas = {}
    for task, by_variant in data.results.items():
        if name in by_variant:
            v, b = pair(by_variant[name].per_query_ndcg_at_10, by_variant[BASELINE.name].per_query_ndcg_at_10)
            deltas[task] = v - b
    speed = bench.speeds.get(name) if bench else None
    if bench and speed is None:
        notes.append(f"{name} has no bench result at {bench.length} tokens, batch {bench.batch}")
    if speed and speed.onnx_sha256 and any(r.onnx_sha256 != speed.onnx_sha256 for r in results):
        notes.append(f"{name}: the bench timed another ONNX file than the one evaluated (re-run `evalsuite bench`)")
    size = speed.size_bytes if speed and speed.size_bytes else (results[0].onnx_size_bytes if results else None)
    return Row(VariantSpec.parse(name), comparison, verdict, speed, size, deltas)


def recommend(rows: list[Row], bench: Bench | None, cfg: GateConfig) -> tuple[str | None, str]:
    """The fastest variant (highest speedup; ties: the smaller file) that passes the gate, and why."""
    if bench is None:
        return None, "no bench results (run `evalsuite bench`): cannot name the fastest variant that passes the gate"
    passing = [r for r in rows if r.verdict is not None and r.verdict.passed and r.speed and r.speed.speedup]
    if not passing:
        return None, f"no variant with bench results passes the gate ({cfg.describe()})"
    best = max(passing, key=lambda r: (r.speed.speedup, -(r.size_bytes or 0)))  # type: ignore[union-attr]
    caveat = " (its CI is inconclusive)" if best.verdict and best.verdict.outcome == "inconclusive" else ""
    return best.name, (f"{best.name}: the fastest variant that passes the gate{caveat}, {best.speed.speedup:.2f}x Float32 "  # type: ignore[union-attr]
                       f"at {bench.length} tokens, batch {bench.batch} ({cfg.describe()})")


# ---------------------------------------------------------------------------------------------------- rendering


def render(report: Report, fmt: Format, digits: int = 4) -> str:
    """The report as markdown, CSV, JSON or HTML text."""
    if fmt == "md":
        return to_markdown(report, digits)
    if fmt == "csv":
        return frame(report).to_csv(index=False)
    if fmt == "json":
        return json.dumps(to_dict(report), indent=1) + "\n"
    if fmt == "html":
        return to_html(report, digits)
    raise EvalsuiteError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def display_rows(report: Report, digits: int = 4) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the human table (markdown and HTML): fixed precision, signed deltas, dashes for n/a."""
    header = ["Variant", "dtype", "per-chan", "7-bit", "opt", *report.tasks, "Mean", "Δ", "Δ %",
              f"{100 * report.config.confidence:g}% CI", "sig"]
    if report.bench:
        header += ["Size (MB)", f"Speedup @{report.bench.length} tok, b{report.bench.batch}"]
    out = []
    for row in report.rows:
        s, c = row.spec, row.comparison
        flag = (lambda on: "yes" if on else "no") if s.is_quantized else (lambda on: DASH)
        cells = [s.name, s.dtype, flag(s.per_channel), flag(s.reduce_range), str(s.opt_level)]
        cells += [f"{c.tasks[t].mean_variant:.{digits}f}" if t in c.tasks else DASH for t in report.tasks]
        m = c.mean
        if m is None:
            cells += [DASH] * 5
        else:
            cells.append(f"{m.mean_variant:.{digits}f}")
            if row.is_baseline:
                cells += [DASH] * 4
            else:
                rel = f"{100 * m.relative_delta:+.2f}%" if m.relative_delta is not None else DASH
                cells += [f"{m.mean_delta:+.{digits}f}", rel, f"[{m.ci_low:+.{digits}f}, {m.ci_high:+.{digits}f}]",
                          "*" if m.significant() else ""]
        if report.bench:
            cells.append(f"{row.size_bytes / 1e6:.1f}" if row.size_bytes else DASH)
            cells.append(f"{row.speed.speedup:.2f}x" if row.speed and row.speed.speedup else DASH)
        out.append(cells)
    return header, out


def footnotes(report: Report) -> list[str]:
    """The lines under the table: what the columns mean, the gate's verdicts, the recommendation, notes."""
    cfg = report.config
    tasks = ", ".join(f"{t} ({report.n_queries[t]} queries)" for t in report.tasks)
    lines = [f"NDCG@10 of {report.model_id} ONNX variants on {tasks}. Mean: macro average over tasks; "
             f"Δ: Mean minus Float32's Mean; {100 * cfg.confidence:g}% CI: {CI_NAME}, stratified by task "
             f"({cfg.n_resamples:,} resamples, seed {cfg.seed}); *: p < {cfg.alpha:g}, {TEST_NAME}."]
    judged = [r for r in report.rows if r.verdict is not None and not r.is_baseline]
    if judged:
        by_outcome = {o: [r.name for r in judged if r.verdict.outcome == o] for o in ("pass", "inconclusive", "fail")}  # type: ignore[union-attr]
        shown = "; ".join(f"{o}: {', '.join(v)}" for o, v in by_outcome.items() if v)
        lines.append(f"Gate ({cfg.describe()}): {shown}.")
    if report.bench:
        lines.append(f"Speed: median latency of Float32 / the variant's at {report.bench.length} tokens, batch {report.bench.batch}, "
                     f"on {report.bench.describe()}. Size: ONNX file.")
        lines.append(f"Recommended: {report.recommendation}." if report.recommended else f"No recommendation: {report.recommendation}.")
    return lines


def to_markdown(report: Report, digits: int = 4) -> str:
    """A GitHub-flavoured markdown table (numbers right-aligned, columns padded) followed by its footnotes."""
    header, rows = display_rows(report, digits)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    left = {0, 1, 2, 3}

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"

    rule = "|" + "|".join((":" + "-" * (w + 1)) if i in left else ("-" * (w + 1) + ":") for i, w in enumerate(widths)) + "|"
    notes = footnotes(report)
    if report.recommended:
        notes[-1] = notes[-1].replace(f"Recommended: {report.recommended}", f"Recommended: **{report.recommended}**", 1)
    return "\n".join([line(header), rule, *(line(r) for r in rows), "", *notes]) + "\n"


def to_html(report: Report, digits: int = 4) -> str:
    """A static HTML page: the table and its footnotes, no scripts."""
    header, rows = display_rows(report, digits)
    import pandas as pd

    table = pd.DataFrame(rows, columns=header).to_html(index=False, border=0, escape=True, classes="evalsuite")
    notes = "\n".join(f"<p>{html.escape(n)}</p>" for n in [*footnotes(report), *report.notes])
    title = html.escape(f"{report.model_id}: ONNX variants vs Float32")
    style = ("body{font-family:sans-serif}table{border-collapse:collapse}th,td{padding:3px 8px;border-bottom:1px solid #ddd;"
             "text-align:right}th:nth-child(-n+4),td:nth-child(-n+4){text-align:left}")
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title><style>{style}</style></head>\n"
            f"<body>\n<h1>{title}</h1>\n{table}\n{notes}\n</body></html>\n")


def frame(report: Report) -> pd.DataFrame:
    """The table as numbers (the CSV): one row per variant, full precision, empty cells for n/a."""
    import pandas as pd

    records = []
    for row in report.rows:
        s, c, m = row.spec, row.comparison, row.comparison.mean
        rec: dict[str, object] = {"variant": s.name, "dtype": s.dtype, "per_channel": s.per_channel,
                                  "reduce_range": s.reduce_range, "opt_level": s.opt_level}
        rec.update({t: c.tasks[t].mean_variant if t in c.tasks else None for t in report.tasks})
        rec.update({"mean": m.mean_variant if m else None, "delta": m.mean_delta if m else None,
                    "delta_pct": 100 * m.relative_delta if m and m.relative_delta is not None else None,
                    "ci_low": m.ci_low if m else None, "ci_high": m.ci_high if m else None,
                    "p_value": m.p_value if m else None, "significant": m.significant() if m else None,
                    "better": m.better if m else None, "worse": m.worse if m else None, "equal": m.equal if m else None,
                    "gate": row.verdict.outcome if row.verdict else None})
        if report.bench:
            rec.update({"size_bytes": row.size_bytes, "speedup": row.speed.speedup if row.speed else None,
                        "median_ms": row.speed.median_ms if row.speed else None})
        records.append(rec)
    return pd.DataFrame.from_records(records)


def to_dict(report: Report) -> dict[str, object]:
    """The ``--format json`` document (``evalsuite.report/1``, described in docs/report-schema.md)."""
    cfg = report.config
    variants = []
    for row in report.rows:
        s, c = row.spec, row.comparison
        variants.append({
            "variant": s.name, "dtype": s.dtype, "per_channel": s.per_channel, "reduce_range": s.reduce_range,
            "opt_level": s.opt_level, "size_bytes": row.size_bytes,
            "tasks": {t: c.tasks[t].to_dict() for t in report.tasks if t in c.tasks},
            "mean": c.mean.to_dict() if c.mean else None,
            "significant": c.mean.significant() if c.mean else None,
            "gate": ({"outcome": row.verdict.outcome, "passed": row.verdict.passed, "reason": row.verdict.reason}
                     if row.verdict else None),
            "speed": ({"speedup": row.speed.speedup, "median_ms": row.speed.median_ms} if row.speed else None),
        })
    return {
        "schema": REPORT_SCHEMA, "model": {"id": report.model_id, "slug": report.model_slug}, "baseline": BASELINE.name,
        "tasks": [{"name": t, "n_queries": report.n_queries[t]} for t in report.tasks],
        "statistics": {"ci": CI_NAME, "test": TEST_NAME, "confidence": cfg.confidence, "alpha": cfg.alpha,
                       "n_resamples": cfg.n_resamples, "seed": cfg.seed, "mean": "macro average over tasks"},
        "gate": {"max_drop": cfg.max_drop, "relative": cfg.relative, "scope": cfg.scope, "rule": cfg.rule,
                 "description": cfg.describe()},
        "speed": ({"length": report.bench.length, "batch": report.bench.batch, "source": str(report.bench.path),
                   "machine": report.bench.machine} if report.bench else None),
        "variants": variants,
        "recommended": report.recommended, "recommendation": report.recommendation,
        "notes": list(report.notes),
    }
