"""A :class:`~evalsuite.analysis.report.Report` as text: markdown, CSV, JSON (docs/report-schema.md) or HTML
(a self-contained page, :mod:`evalsuite.analysis.html`).

The build-setting columns come from the variant kinds of the rows shown (``per-chan`` and ``7-bit`` for
dynamic int8, and whatever a new kind declares), so a new kind needs no change here.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Literal

from evalsuite.analysis import tables
from evalsuite.analysis.report import Report
from evalsuite.analysis.stats import CI_NAME, TEST_NAME, PairedComparison
from evalsuite.analysis.tables import TextTable
from evalsuite.errors import EvalsuiteError
from evalsuite.variants import BASELINE, Option, VariantSpec
from evalsuite.variants.registry import options as registry_options

if TYPE_CHECKING:
    import pandas as pd

    from evalsuite.run.sweep import SweepReport

Format = Literal["md", "csv", "json", "html"]
FORMATS: tuple[Format, ...] = ("md", "csv", "json", "html")
REPORT_SCHEMA = "evalsuite.report/1"
DASH = "—"
KERNELS_MARK = "†"  # a row computed with int8 kernels of another family than the reference one


def sweep_tables(report: SweepReport) -> list[TextTable]:
    """One table per task: Float32 NDCG@10, variant NDCG@10, absolute and relative delta."""
    tables = []
    rows = report.rows()
    for task in report.results:
        mine = [r for r in rows if r["task"] == task]
        cells = [[str(r["variant"]), f"{r['float32_ndcg_at_10']:.5f}", f"{r['ndcg_at_10']:.5f}", f"{r['delta']:+.5f}",
                  f"{100 * r['relative_delta']:+.2f}%" if r["relative_delta"] is not None else "n/a"] for r in mine]
        tables.append(TextTable(f"{task}: NDCG@10 vs Float32 ({report.model_id}, split {mine[0]['split']}, {mine[0]['n_queries']} queries)",
                                ["variant", "Float32", "variant NDCG@10", "delta", "delta %"], cells))
    return tables


def render(report: Report, fmt: Format, digits: int = 4, command: str = "") -> str:
    """The report as markdown, CSV, JSON or a self-contained HTML page (``command``: the one that asked for the page)."""
    if fmt == "md":
        return to_markdown(report, digits)
    if fmt == "csv":
        return frame(report).to_csv(index=False)
    if fmt == "json":
        return json.dumps(to_dict(report), indent=1) + "\n"
    if fmt == "html":
        from evalsuite.analysis.html import to_html_page

        return to_html_page(report, command=command, digits=digits)
    raise EvalsuiteError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def display_rows(report: Report, digits: int = 4) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the human table (markdown and HTML): fixed precision, signed deltas, dashes for n/a."""
    options = setting_columns(report)
    header = ["Variant", "dtype", *(o.label for o in options), "opt", *report.tasks, "Mean", "Δ", "Δ %",
              f"{100 * report.config.confidence:g}% CI", "sig"]
    if report.bench:
        header += ["Size (MB)", f"Speedup @{report.bench.length} tok, b{report.bench.batch}"]
    out = []
    for row in report.rows:
        s, c = row.spec, row.comparison
        settings = s.settings
        name = s.name + (KERNELS_MARK if row.off_reference else "")
        cells = [name, s.dtype, *(_setting(settings[o.name]) if o.name in settings else DASH for o in options), str(s.opt_level)]
        cells += [_task_cell(c.tasks[t], digits) if t in c.tasks else DASH for t in report.tasks]
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


def _task_cell(c: PairedComparison, digits: int) -> str:
    """A task's NDCG@10; under several batch compositions their mean and standard deviation (``0.6350 ±0.0021``)."""
    sd = c.composition_sd  # the baseline is one number, so this is also the spread of the variant's NDCG@10
    return f"{c.mean_variant:.{digits}f}" + (f" ±{sd:.{digits}f}" if sd is not None else "")


def setting_columns(report: Report) -> list[Option]:
    """The options of the kinds shown, in registry order: each is one column of the table. A valued option (``-x<NAME>``)
    is a column only when a row has a value, so tables without mixed builds keep their columns."""
    shown = {o.name for row in report.rows for o in row.spec.kind.options
             if not o.prefix or row.spec.settings.get(o.name) != o.default}
    return [o for o in registry_options() if o.name in shown]


def _setting(value: object) -> str:
    return ("yes" if value else "no") if isinstance(value, bool) else DASH if value is None else str(value)


def footnotes(report: Report) -> list[str]:
    """The lines under the table: what the columns mean, the gate's verdicts, the recommendation, notes."""
    cfg = report.config
    tasks = ", ".join(f"{t} ({report.n_queries[t]} queries)" for t in report.tasks)
    lines = [f"NDCG@10 of {report.model_id} ONNX variants on {tasks}, split {cfg.split}. Mean: macro average over tasks; "
             f"Δ: Mean minus Float32's Mean; {100 * cfg.confidence:g}% CI: {CI_NAME}, stratified by task "
             f"({cfg.n_resamples:,} resamples, seed {cfg.seed}); *: p < {cfg.alpha:g}, {TEST_NAME}."]
    k = max((c.compositions for r in report.rows for c in r.comparison.tasks.values()), default=1)
    if k > 1:
        lines.append(f"±: standard deviation of a task's NDCG@10 over the {k} batch compositions a batch-dependent build is "
                     f"evaluated under; its NDCG@10, Δ and CI are over them (the CI resamples compositions and queries).")
    families = sorted({r.kernels for r in report.rows if r.kernels})
    if families:
        lines.append(f"{KERNELS_MARK}: computed with onnxruntime's {', '.join(families)} int8 kernels, not the reference "
                     f"AVX-512 VNNI/AMX ones: int8 numbers depend on the CPU's kernel family, and these hold for that one.")
    judged = [r for r in report.rows if r.verdict is not None and not r.is_baseline]
    if judged:
        by_outcome = {o: [r.name for r in judged if r.verdict.outcome == o] for o in ("pass", "inconclusive", "fail")}  # type: ignore[union-attr]
        shown = "; ".join(f"{o}: {', '.join(v)}" for o, v in by_outcome.items() if v)
        unstable = [r.name for r in judged if not r.verdict.stable]  # type: ignore[union-attr]
        lines.append(f"Gate ({cfg.describe()}): {shown}." + (f" Unstable across batch compositions: {', '.join(unstable)}."
                                                              if unstable else ""))
    if report.bench:
        lines.append(f"Speed: median latency of Float32 / the variant's at {report.bench.length} tokens, batch {report.bench.batch}, "
                     f"on {report.bench.describe()}. Size: ONNX file.")
        lines.append(f"Recommended: {report.recommendation}." if report.recommended else f"No recommendation: {report.recommendation}.")
    return lines


def to_markdown(report: Report, digits: int = 4) -> str:
    """A GitHub-flavoured markdown table (numbers right-aligned, columns padded) followed by its footnotes."""
    header, rows = display_rows(report, digits)
    notes = footnotes(report)
    if report.recommended:
        notes[-1] = notes[-1].replace(f"Recommended: {report.recommended}", f"Recommended: **{report.recommended}**", 1)
    table = TextTable("", header, rows, left=2 + len(setting_columns(report)))
    return "\n".join([tables.to_markdown(table), "", *notes]) + "\n"


def frame(report: Report) -> pd.DataFrame:
    """The table as numbers (the CSV): one row per variant, full precision, empty cells for n/a."""
    import pandas as pd

    records = []
    for row in report.rows:
        s, c, m = row.spec, row.comparison, row.comparison.mean
        rec: dict[str, object] = {"variant": s.name, "dtype": s.dtype, **_settings(report, s), "opt_level": s.opt_level}
        rec.update({t: c.tasks[t].mean_variant if t in c.tasks else None for t in report.tasks})
        rec.update({"mean": m.mean_variant if m else None, "delta": m.mean_delta if m else None,
                    "delta_pct": 100 * m.relative_delta if m and m.relative_delta is not None else None,
                    "ci_low": m.ci_low if m else None, "ci_high": m.ci_high if m else None,
                    "p_value": m.p_value if m else None, "significant": m.significant() if m else None,
                    "better": m.better if m else None, "worse": m.worse if m else None, "equal": m.equal if m else None,
                    "gate": row.verdict.outcome if row.verdict else None,
                    "gate_stable": row.verdict.stable if row.verdict else None, "int8_kernels": row.kernels})
        rec.update({f"{t} sd": c.tasks[t].composition_sd if t in c.tasks else None for t in report.tasks
                    if any(r.comparison.tasks.get(t) and r.comparison.tasks[t].compositions > 1 for r in report.rows)})
        if report.bench:
            rec.update({"size_bytes": row.size_bytes, "speedup": row.speed.speedup if row.speed else None,
                        "median_ms": row.speed.median_ms if row.speed else None})
        records.append(rec)
    return pd.DataFrame.from_records(records)


def _settings(report: Report, spec: VariantSpec) -> dict[str, object]:
    """Every shown option's value for ``spec``; an option its kind does not have takes the option's default."""
    settings = spec.settings
    return {o.name: settings.get(o.name, o.default) for o in setting_columns(report)}


def to_dict(report: Report) -> dict[str, object]:
    """The ``--format json`` document (``evalsuite.report/1``, described in docs/report-schema.md)."""
    cfg = report.config
    variants = []
    for row in report.rows:
        s, c = row.spec, row.comparison
        variants.append({
            "variant": s.name, "dtype": s.dtype, **_settings(report, s), "opt_level": s.opt_level, "size_bytes": row.size_bytes,
            "tasks": {t: c.tasks[t].to_dict() for t in report.tasks if t in c.tasks},
            "mean": c.mean.to_dict() if c.mean else None,
            "significant": c.mean.significant() if c.mean else None,
            "int8_kernels": row.kernels,
            "gate": ({"outcome": row.verdict.outcome, "passed": row.verdict.passed, "stable": row.verdict.stable,
                      "reason": row.verdict.reason} if row.verdict else None),
            "speed": ({"speedup": row.speed.speedup, "median_ms": row.speed.median_ms} if row.speed else None),
        })
    return {
        "schema": REPORT_SCHEMA, "model": {"id": report.model_id, "slug": report.model_slug}, "baseline": BASELINE.name,
        "tasks": [{"name": t, "n_queries": report.n_queries[t]} for t in report.tasks],
        "statistics": {"ci": CI_NAME, "test": TEST_NAME, "confidence": cfg.confidence, "alpha": cfg.alpha,
                       "n_resamples": cfg.n_resamples, "seed": cfg.seed, "mean": "macro average over tasks",
                       "compositions": cfg.compositions},
        "gate": {"max_drop": cfg.max_drop, "relative": cfg.relative, "scope": cfg.scope, "rule": cfg.rule,
                 "description": cfg.describe()},
        "speed": ({"length": report.bench.length, "batch": report.bench.batch, "source": str(report.bench.path),
                   "machine": report.bench.machine} if report.bench else None),
        "variants": variants,
        "recommended": report.recommended, "recommendation": report.recommendation,
        "notes": list(report.notes),
    }
