"""The tables of the HTML report (:mod:`evalsuite.analysis.html`): escaped cells, classes for alignment and colour.

The comparison table takes its header and cells from :func:`~evalsuite.analysis.render.display_rows`, the strings
of the markdown table, so the page and the README show the same numbers; the speed tables come from the bench
module's own :class:`~evalsuite.analysis.tables.TextTable` s.

Example:
    >>> table([txt("Variant"), num("Mean")], [("", [txt("float32", head=True), num("0.4805")])], "NDCG@10")
    '<div class="table-wrap"><table class="data"><caption>NDCG@10</caption><thead><tr><th scope="col" class="txt">Variant</th><th scope="col" class="num">Mean</th></tr></thead><tbody><tr><th scope="row" class="txt">float32</th><td class="num">0.4805</td></tr></tbody></table></div>'
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evalsuite.analysis.render import DASH, display_rows, setting_columns
from evalsuite.analysis.tables import TextTable

if TYPE_CHECKING:
    from evalsuite.analysis.report import Report, Row

TableRow = tuple[str, list["Cell"]]  # (class of the <tr>, its cells)


class Markup(str):
    """HTML built here from escaped parts: :func:`esc` leaves it as it is."""


def esc(value: object) -> str:
    """Escape anything for text and attributes (quotes included), except :class:`Markup`."""
    return value if isinstance(value, Markup) else html.escape(str(value), quote=True)


@dataclass(frozen=True)
class Cell:
    """One ``<td>`` (or ``<th>`` with ``head``): its content, CSS classes and row span."""

    value: object
    cls: str = ""
    head: bool = False
    rowspan: int = 1


def num(value: object, extra: str = "", **kw: object) -> Cell:
    return Cell(value, f"num {extra}".strip(), **kw)  # type: ignore[arg-type]


def txt(value: object, extra: str = "", **kw: object) -> Cell:
    return Cell(value, f"txt {extra}".strip(), **kw)  # type: ignore[arg-type]


def _attr(name: str, value: object) -> str:
    return f' {name}="{esc(value)}"' if value else ""


def _cell(c: Cell, scope: str = "") -> str:
    """A ``<th scope=...>`` when ``scope`` is given, else a ``<td>``."""
    span = _attr("rowspan", c.rowspan if c.rowspan > 1 else "")
    tag = "th" if scope else "td"
    return f"<{tag}{_attr('scope', scope)}{span}{_attr('class', c.cls)}>{esc(c.value)}</{tag}>"


def table(head: list[Cell], rows: list[TableRow], caption: str, cls: str = "",
          bodies: list[tuple[str, list[TableRow]]] | None = None, wrap: str = "") -> Markup:
    """A ``<table>`` in a scrolling wrapper; ``bodies`` (class, rows) gives one ``<tbody>`` per group instead of ``rows``."""
    heads = "".join(_cell(c, "col") for c in head)
    body = "".join(f"<tbody{_attr('class', group)}>" + "".join(
        f"<tr{_attr('class', tr)}>" + "".join(_cell(c, "row" if c.head else "") for c in cells) + "</tr>" for tr, cells in trs)
        + "</tbody>" for group, trs in (bodies if bodies is not None else [("", rows)]))
    return Markup(f'<div class="{esc(("table-wrap " + wrap).strip())}"><table class="{esc(("data " + cls).strip())}">'
                  f"<caption>{esc(caption)}</caption><thead><tr>{heads}</tr></thead>{body}</table></div>")


def badge(outcome: str, text: str | None = None) -> Markup:
    return Markup(f'<span class="badge {esc(outcome)}">{esc(text or outcome)}</span>')


def row_badge(row: Row) -> Markup:
    if row.is_baseline:
        return badge("base", "baseline")
    return badge(row.verdict.outcome) if row.verdict else badge("none", DASH)


def tone(shown: str) -> str:
    """``neg`` or ``pos`` for a signed number as shown; nothing when it rounds to zero (``-0.0000``)."""
    digits = shown.strip("+-−%x ")
    if not any(ch.isdigit() for ch in digits) or float(digits) == 0:
        return ""
    return "neg" if shown.startswith(("-", "−")) else "pos"


def comparison_table(report: Report, digits: int = 4) -> Markup:
    """The markdown table, cell for cell, plus the gate's verdict; Δ coloured, significance marked."""
    header, cells = display_rows(report, digits)
    left = 2 + len(setting_columns(report))
    signed = {header.index("Δ"), header.index("Δ %")}
    sig = header.index("sig")
    head = [Cell(h, "txt" if i < left else "num") for i, h in enumerate(header)] + [txt("Gate")]
    rows = []
    for row, values in zip(report.rows, cells, strict=True):
        out = [txt(values[0], "variant", head=True)]
        for i, v in enumerate(values[1:], start=1):
            extra = tone(v) if i in signed else ("sig" if i == sig and v == "*" else "")
            out.append(txt(v, extra) if i < left else num(v, extra))
        out.append(txt(row_badge(row)))
        classes = [c for c, on in (("baseline", row.is_baseline), ("recommended", row.name == report.recommended)) if on]
        rows.append((" ".join(classes), out))
    return table(head, rows, "NDCG@10 per task, macro mean and its change against Float32, per build", "comparison")


def checks_table(report: Report) -> Markup:
    """One row group per judged variant: its verdict, then one row per check (each task and the mean)."""
    cfg = report.config
    head = [txt("Variant"), txt("Verdict"), txt("Check"), num("NDCG@10"), num("Float32"), num("Δ"), num("Δ %"),
            num(f"{100 * cfg.confidence:g}% CI"), num("p"), num("better / worse / equal"), txt("Why")]
    bodies = []
    for row in report.rows:
        if row.is_baseline:
            continue
        if row.verdict is None:
            missing = f"not judged: no result on {', '.join(row.comparison.missing)}"
            bodies.append(("group", [("", [txt(row.name, "variant", head=True), txt(row_badge(row)), txt(missing)])]))
            continue
        v = row.verdict
        lines = []
        for k, c in enumerate(v.checks):
            p = c.comparison
            delta = f"{p.mean_delta:+.4f}"
            lead = [txt(row.name, "variant", head=True, rowspan=len(v.checks)),
                    txt(Markup(row_badge(row) + f'<div class="why">{esc(_summary(row))}</div>'), "verdict-cell",
                        rowspan=len(v.checks))] if k == 0 else []
            label = c.outcome if c.decides else "info"
            lines.append(("" if c.decides else "info", [
                *lead, txt(Markup(f"{badge(label)} {esc(c.scope)}"), "check"), num(f"{p.mean_variant:.4f}"),
                num(f"{p.mean_baseline:.4f}"), num(delta, tone(delta)),
                num(f"{100 * p.relative_delta:+.2f}%" if p.relative_delta is not None else DASH, tone(delta)),
                num(f"[{p.ci_low:+.4f}, {p.ci_high:+.4f}]"), num(f"{p.p_value:.4f}"),
                num(f"{p.better} / {p.worse} / {p.equal}"), txt(c.reason, "reason")]))
        bodies.append((f"group {v.outcome}", lines))
    decides = "tasks decide, the mean is information" if cfg.scope == "per-task" else "the mean decides, tasks are information"
    return table(head, [], f"One row per check: each task and the macro mean ({decides})", "checks", bodies=bodies)


def _summary(row: Row) -> str:
    deciding = [c for c in row.verdict.checks if c.decides] if row.verdict else []
    failed = [c.scope for c in deciding if c.outcome == "fail"]
    unsure = [c.scope for c in deciding if c.outcome == "inconclusive"]
    if failed:
        return f"fails on {', '.join(failed)}"
    if unsure:
        return f"CI straddles the limit on {', '.join(unsure)}"
    return f"within the limit on {'every task' if len(deciding) > 1 else ', '.join(c.scope for c in deciding)}"


def counts_table(report: Report) -> Markup:
    """Per variant and task: how many queries got better, worse or stayed equal."""
    rows = []
    for row in report.rows:
        if not row.is_baseline:
            counts = [row.comparison.tasks.get(t) for t in report.tasks]
            rows.append(("", [txt(row.name, "variant", head=True),
                              *(num(f"{c.better} / {c.worse} / {c.equal}" if c else DASH) for c in counts)]))
    return table([txt("Variant"), *(num(t) for t in report.tasks)], rows,
                 "Queries better / worse / equal than Float32", wrap="narrow")


def text_table(t: TextTable, row_cls: Callable[[list[str]], str] = lambda _r: "",
               col_cls: Callable[[str], str] = lambda _h: "") -> Markup:
    """A :class:`TextTable` (the bench module's tables): label columns left, numbers right, its title as caption."""
    def cls(i: int) -> str:  # alignment, then the class of the column (the first one is the row's label)
        return f"{'txt' if i < t.left else 'num'} {col_cls(t.header[i]) if i else ''}".strip()

    head = [Cell(h, cls(i)) for i, h in enumerate(t.header)]
    rows = [(row_cls(r), [Cell(v, cls(i), head=i == 0) for i, v in enumerate(r)]) for r in t.rows]
    caption = t.title + (f". {t.note[:1].upper()}{t.note[1:]}." if t.note else "")
    return table(head, rows, caption, "bench")


def passing_table(report: Report) -> Markup | None:
    """Every build that passes the gate and has a speed, fastest first (None when fewer than two)."""
    passing = sorted((r for r in report.rows if not r.is_baseline and r.verdict is not None and r.verdict.passed
                      and r.speed and r.speed.speedup and r.comparison.mean is not None),
                     key=lambda r: -r.speed.speedup)  # type: ignore[union-attr]
    if len(passing) < 2:
        return None
    rows = [("recommended" if r.name == report.recommended else "", [
        txt(r.name, "variant", head=True), num(f"{r.speed.speedup:.2f}x"),  # type: ignore[union-attr]
        num(f"{r.comparison.mean.mean_delta:+.4f}"),  # type: ignore[union-attr]
        num(f"[{r.comparison.mean.ci_low:+.4f}, {r.comparison.mean.ci_high:+.4f}]"),  # type: ignore[union-attr]
        num(f"{r.size_bytes / 1e6:.1f}" if r.size_bytes else DASH)]) for r in passing]
    return table([txt("Variant"), num("Speedup"), num("Mean Δ"), num("CI"), num("Size (MB)")], rows,
                 "Every build that passes the gate, fastest first", wrap="narrow")
