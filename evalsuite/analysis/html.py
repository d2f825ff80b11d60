"""The report as one self-contained HTML page: no scripts, no network, no other file; plots are inline PNG data URIs.

Sections: summary cards; model and machine (data, CPU flags, software, the commands that produced the numbers);
quality (the markdown table's cells and footnotes, with each build's gate verdict, and the delta plot); the release
gate (rule, threshold, every check); per-query deltas; speed (only with bench results: speedup per input length,
files and memory, the Pareto plot); the recommended build and why; notes. Every input string is escaped. The style
(``report.css``, next to this module) fits a laptop screen and prints on A4 landscape.

Example:
    >>> page = to_html_page(build_report(Path("results")), command="evalsuite report --format html")  # doctest: +SKIP
    >>> page.startswith("<!doctype html>")  # doctest: +SKIP
    True
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from evalsuite.analysis.html_tables import checks_table, comparison_table, counts_table, esc, passing_table, text_table
from evalsuite.analysis.render import footnotes

if TYPE_CHECKING:
    from evalsuite.analysis.report import Report
    from evalsuite.bench.schema import Machine

FIGURE_DPI = 200  # sharp on high-density laptop screens and in print; shown at the plot's design size
CSS = Path(__file__).with_name("report.css")
SECTIONS = {"machine": "Model and machine", "quality": "Quality: NDCG@10 against Float32", "gate": "Release gate",
            "per-query": "Per-query deltas", "speed": "Speed", "recommendation": "Recommended build", "notes": "Notes"}
# The CPU flags that decide int8 and fp16 speed (evalsuite.machine.FLAGS_OF_INTEREST): label and meaning.
FLAGS = {"avx2": ("AVX2", "256-bit SIMD"), "avx512f": ("AVX-512", "512-bit SIMD"),
         "avx512_vnni": ("AVX-512 VNNI", "int8 dot products in one instruction"),
         "avx_vnni": ("AVX-VNNI", "int8 dot products in one instruction (256-bit)"),
         "amx_int8": ("AMX-INT8", "int8 matrix tiles"), "amx_bf16": ("AMX-BF16", "bfloat16 matrix tiles"),
         "f16c": ("F16C", "fp16 <-> fp32 conversion only"), "avx512_fp16": ("AVX-512 FP16", "native fp16 arithmetic")}
FIGURES = {
    "delta_ci": "NDCG@10 delta against Float32 per build, per task and for the macro mean, with the paired bootstrap "
                "confidence interval; the dashed red line is the gate's allowed loss.",
    "per_query_delta": "Per-query NDCG@10 delta against Float32, per task: box = quartiles, whiskers = 5th/95th "
                       "percentile, dots = queries beyond them; counts of queries that got better, worse or stayed equal.",
    "pareto": "Quality against speed: mean NDCG@10 delta (with CI) against the speedup over Float32 at the report's "
              "bench point; the green line is the Pareto front.",
}


def to_html_page(report: Report, *, command: str = "", figures: Mapping[str, bytes] | None = None, digits: int = 4) -> str:
    """The whole report as one HTML document.

    Args:
        report: from :func:`~evalsuite.analysis.report.build_report`.
        command: the command line that wrote this page (listed with the commands that produced the data).
        figures: PNG bytes by plot name; default: every plot of :func:`~evalsuite.analysis.plots.plot_pngs`.
        digits: decimals of NDCG@10 and deltas in the comparison table (as in the markdown).
    """
    if figures is None:
        from evalsuite.analysis.plots import plot_pngs

        figures = plot_pngs(report, FIGURE_DPI)
    numbered = {key: i for i, key in enumerate((k for k in FIGURES if k in figures), start=1)}

    def figure(key: str) -> str:
        return _figure(key, figures[key], numbered[key]) if key in figures else ""

    bodies = {
        "machine": _machine(report, command),
        "quality": comparison_table(report, digits) + '<div class="footnotes">'
                   + "".join(f"<p>{esc(line)}</p>" for line in footnotes(report)) + "</div>" + figure("delta_ci"),
        "gate": _gate(report),
        "per-query": "<p>Each build's NDCG@10 minus Float32's on the same query. A build can keep its mean and still move "
                     "many queries: the counts say how many got better, worse or stayed equal.</p>"
                     + counts_table(report) + figure("per_query_delta"),
        "speed": _speed(report) + figure("pareto") if report.bench is not None else "",
        "recommendation": _recommendation(report),
        "notes": _notes(report),
    }
    shown = [k for k in SECTIONS if bodies[k]]
    nav = "".join(f'<a href="#{k}">{esc(SECTIONS[k])}</a>' for k in shown)
    title = f"{report.model_id}: ONNX builds against Float32"
    tasks = ", ".join(f"{t} ({report.n_queries[t]} queries)" for t in report.tasks)
    versions = report.provenance.versions if report.provenance else {}
    made_with = ", ".join(f"{k} {versions[k]}" for k in ("evalsuite", "mteb", "onnxruntime") if versions.get(k))
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n<meta name="color-scheme" content="light">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS.read_text(encoding='utf-8')}</style>\n</head>\n<body>\n"
        f'<header class="page-head"><div class="kicker">evalsuite report</div><h1>{esc(title)}</h1>'
        f'<p class="sub">{esc(f"{len(report.rows)} builds of {report.model_id}, NDCG@10 on {tasks}, judged against Float32.")}</p>'
        f'<nav aria-label="Sections">{nav}</nav></header>\n'
        f"<main>\n{_summary(report)}\n"
        + "".join(f'<section id="{k}"><h2>{esc(SECTIONS[k])}</h2>{bodies[k]}</section>\n' for k in shown)
        + "</main>\n"
        f'<footer class="page-foot">{esc(f"Written by evalsuite ({made_with}). " if made_with else "Written by evalsuite. ")}'
        "One self-contained file: no scripts, no network.</footer>\n</body>\n</html>\n"
    )


def _figure(key: str, png: bytes, number: int) -> str:
    """A plot at its design size (from the PNG's pixels and dpi), so a 200 dpi plot is sharp but not huge."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        (width, height), dpi = image.size, float(image.info.get("dpi", (96, 96))[0]) or 96.0
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    caption = FIGURES.get(key, key)
    return (f'<figure class="plot" id="fig-{esc(key)}"><img src="{uri}" alt="{esc(caption)}" '
            f'width="{round(width * 96 / dpi)}" height="{round(height * 96 / dpi)}">'
            f"<figcaption><b>Figure {number}.</b> {esc(caption)}</figcaption></figure>")


def _dl(rows: Iterable[tuple[str, object]]) -> str:
    return '<dl class="kv">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows) + "</dl>"


def _card(label: str, value: str, detail: str, tone: str) -> str:
    return (f'<div class="card {tone}"><div class="label">{esc(label)}</div><div class="value">{esc(value)}</div>'
            f'<div class="detail">{esc(detail)}</div></div>')


def _machine_of(report: Report) -> Machine | None:
    """The machine of the speed numbers when there are any, else the newest evaluation's."""
    if report.bench is not None and report.bench.result is not None:
        return report.bench.result.machine
    return report.provenance.machines[0] if report.provenance and report.provenance.machines else None


def _summary(report: Report) -> str:
    judged = [r.verdict.outcome for r in report.rows if r.verdict is not None and not r.is_baseline]
    rec = next((r for r in report.rows if r.name == report.recommended), None)
    if rec is not None:
        detail = [f"{rec.speed.speedup:.2f}x Float32's speed" if rec.speed and rec.speed.speedup else "",
                  f"mean NDCG@10 {rec.comparison.mean.mean_delta:+.4f}" if rec.comparison.mean else "",
                  f"{rec.size_bytes / 1e6:.1f} MB" if rec.size_bytes else ""]
        cards = [_card("Recommended build", rec.name, " · ".join(d for d in detail if d), "good")]
    else:
        cards = [_card("Recommended build", "none", report.recommendation, "neutral")]
    tally = " · ".join(f"{judged.count(o)} {o}" for o in ("pass", "fail", "inconclusive") if judged.count(o) or o != "inconclusive")
    cards.append(_card("Release gate", tally, report.config.describe(), "bad" if "fail" in judged else "good"))
    m = _machine_of(report)
    if m is not None:
        isa = [FLAGS[k][0] for k in ("avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_fp16") if m.flags.get(k)]
        cards.append(_card("Machine", f"{m.cpu_model}, {m.threads} threads", ", ".join(isa) or "no AVX-512, no VNNI", "neutral"))
    cards.append(_card("Evidence", f"{sum(report.n_queries.values()):,} queries", ", ".join(report.tasks), "neutral"))
    return '<section class="summary" aria-label="Summary">' + "".join(cards) + "</section>"


def _machine(report: Report, command: str) -> str:
    p = report.provenance
    model = [("Model", report.model_id)]
    if p is not None:
        model.append(("Weights sha256", p.weights_sha256))
        for t in report.tasks:
            ref = p.tasks.get(t)
            if ref is not None:
                model.append((f"Task {t}", f"{ref.n_queries} queries, {ref.n_documents:,} documents, split {ref.split}, "
                                           f"data {ref.source}"))
        model.append(("Batch policy", ", ".join(p.batch_policies)))
        builds = ", ".join(f"{v} {sha[:12]}" for v, sha in p.onnx_sha256.items())
        model.append(("ONNX sha256 (12)", builds))
    machines = list(p.machines) if p else []
    bench = report.bench.result.machine if report.bench and report.bench.result else None
    if bench is not None and all(m.describe() != bench.describe() for m in machines):
        machines.append(bench)
    rows: list[tuple[str, object]] = []
    for m in machines:
        role = "Speed" if m is bench else "Evaluation"
        rows.append((f"{role} CPU" if len(machines) > 1 else "CPU", f"{m.cpu_model} ({m.cpu_id})" if m.cpu_id else m.cpu_model))
        rows.append(("Cores, threads", f"{m.logical_cores} logical cores, onnxruntime on {m.threads} threads"))
    if p is not None and p.versions:
        rows.append(("Software", ", ".join(f"{k} {v}" for k, v in p.versions.items())))
    m = _machine_of(report)
    flags = "".join(f'<span class="flag {"on" if m.flags.get(k) else "off"}" title="{esc(what)}">'
                    f'{"✓" if m.flags.get(k) else "✗"} {esc(label)}</span>'
                    for k, (label, what) in FLAGS.items() if k in m.flags) if m else ""
    sources = [(s.what + (f" · {s.created}" if s.created else ""), s.command or "(not recorded: evalsuite called as a library)")
               for s in (p.sources if p else ())]
    if command:
        sources.append(("this page", command))
    commands = "".join(f'<div class="cmd"><div class="cmd-what">{esc(what)}</div><pre><code>{esc(cmd)}</code></pre></div>'
                       for what, cmd in sources)
    return (f'<div class="two-col"><div><h3>Model and data</h3>{_dl(model)}</div><div><h3>Machine</h3>{_dl(rows)}'
            f'<div class="flags" aria-label="CPU flags">{flags or "no CPU flags recorded"}</div>'
            f'<p class="isa">{esc(_isa(m))}</p></div></div>'
            f'<h3>Commands that produced this report</h3>{commands or "<p>No commands recorded.</p>"}')


def _isa(m: Machine | None) -> str:
    if m is None or not m.flags:
        return ""
    int8 = ("VNNI: onnxruntime's int8 kernels multiply and add int8 in one instruction" if m.vnni
            else "No VNNI: int8 products take several instructions, so int8 builds gain less")
    fp16 = ("native fp16 arithmetic: Float16 can compute in half precision" if m.flags.get("avx512_fp16")
            else "no native fp16 arithmetic: Float16 halves the file but computes in Float32")
    return f"{int8}; {fp16}."


def _gate(report: Report) -> str:
    cfg = report.config
    rule = ("point: a check passes when the measured mean delta is at least −max drop (a measured loss is a loss)"
            if cfg.rule == "point" else
            f"ci: a check fails only when the whole {100 * cfg.confidence:g}% CI lies below −max drop, passes when the "
            "whole CI is above it, and is inconclusive (not failing) otherwise")
    drop = f"{100 * cfg.max_drop:.2f}% of Float32's NDCG@10 (relative)" if cfg.relative else f"{cfg.max_drop:.4f} NDCG@10 (absolute)"
    scope = ("every task must pass (the mean is shown for information)" if cfg.scope == "per-task"
             else "the macro mean over tasks must pass (tasks are shown for information)")
    stats = (f"{100 * cfg.confidence:g}% paired bootstrap CI over queries, {cfg.n_resamples:,} resamples, seed {cfg.seed}; "
             "p: paired randomization test (sign flip), two-sided")
    return _dl([("Rule", rule), ("Threshold", f"max drop {drop}"), ("Scope", scope), ("Statistics", stats)]) + checks_table(report)


def _speed(report: Report) -> str:
    from evalsuite.bench.tables import speedup_tables, variant_table

    b = report.bench
    assert b is not None
    intro = (f"<p>{esc(f'Speedup = Float32 median time / the build’s, on {b.describe()}.')} The report's bench point, "
             f"{b.length} tokens at batch {b.batch}, is highlighted; the recommended build's column is tinted, and a grey "
             "header marks a build that fails the gate.</p>")
    if b.result is None:
        return intro
    failed = {r.name for r in report.rows if r.verdict is not None and r.verdict.outcome == "fail"}

    def col(name: str) -> str:
        return "rec" if name == report.recommended else "failed" if name in failed else ""

    tables = [text_table(t, lambda r, batch=batch: "point" if batch == b.batch and r[0] == str(b.length) else "", col)
              for batch, t in zip(b.result.batches, speedup_tables(b.result), strict=True)]
    return intro + "".join(tables) + text_table(variant_table(b.result), col_cls=col)


def _recommendation(report: Report) -> str:
    rec = next((r for r in report.rows if r.name == report.recommended), None)
    if rec is None:
        return f'<div class="callout neutral"><p><strong>No recommendation:</strong> {esc(report.recommendation)}.</p></div>'
    why = report.recommendation.removeprefix(f"{rec.name}: ")
    facts = [f"Gate: {rec.verdict.reason}" if rec.verdict else ""]
    m = rec.comparison.mean
    if m is not None:
        facts.append(f"Mean NDCG@10 {m.mean_variant:.4f} against Float32's {m.mean_baseline:.4f}: delta {m.mean_delta:+.4f}"
                     + (f" ({100 * m.relative_delta:+.2f}%)" if m.relative_delta is not None else "")
                     + f", {100 * m.confidence:g}% CI [{m.ci_low:+.4f}, {m.ci_high:+.4f}], p = {m.p_value:.4f} "
                     f"({'significant' if m.significant() else 'not significant'}).")
    if rec.speed and rec.speed.speedup:
        facts.append(f"{rec.speed.speedup:.2f}x Float32's speed at the bench point"
                     + (f", {rec.size_bytes / 1e6:.1f} MB on disk." if rec.size_bytes else "."))
    items = "".join(f"<li>{esc(f)}</li>" for f in facts if f)
    return (f'<div class="callout good"><div class="rec-name">{esc(rec.name)}</div><p>{esc(why[:1].upper() + why[1:])}.</p>'
            f"<ul>{items}</ul></div>" + (passing_table(report) or ""))


def _notes(report: Report) -> str:
    notes = [*report.notes, "NDCG@10 is mteb's metric of record (pytrec_eval). A task's NDCG@10 here is the exact mean "
             "of its per-query values; mteb's own result files store it rounded to 5 decimals."]
    if report.provenance and report.provenance.batch_policies:
        notes.append(f"Batch policy {', '.join(report.provenance.batch_policies)}: dynamic int8 quantization scales "
                     "activations per batch, so an int8 embedding depends on its batch neighbours. Numbers under another "
                     "policy are not comparable cell by cell.")
    m = _machine_of(report)
    if report.bench is not None and m is not None:
        notes.append(f"Speed depends on the CPU: the speedups hold for a CPU like this one ({_isa(m).rstrip('.')}).")
    return '<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>"
