"""PNG plots of a :class:`~evalsuite.report.Report` (matplotlib, Agg canvas, no pyplot state).

* ``delta_ci.png``: per variant, the NDCG@10 delta against Float32 with its bootstrap CI, per task and for the mean.
* ``per_query_delta.png``: per task, the distribution of per-query deltas of each variant, with better/worse/equal counts.
* ``pareto.png`` (only with bench results): mean NDCG@10 delta against speedup, the Pareto front and the gate threshold.

Example:
    >>> paths = write_plots(build_report(Path("results")), Path("docs/img"))  # doctest: +SKIP
    >>> [p.name for p in paths]  # doctest: +SKIP
    ['delta_ci.png', 'per_query_delta.png', 'pareto.png']
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evalsuite.errors import EvalsuiteError
from evalsuite.files import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from evalsuite.analysis.report import Report, Row

_DPI = 120


def write_plots(report: Report, folder: Path, dpi: int | None = None) -> list[Path]:
    """Write every plot that the report has data for into ``folder`` (``<name>.png``); returns the files written."""
    written = []
    for name, png in plot_pngs(report, dpi).items():
        path = folder / f"{name}.png"
        try:
            atomic_write_bytes(path, png)
        except OSError as exc:
            raise EvalsuiteError(f"cannot write {path}: {exc.strerror}") from None
        written.append(path)
    return written


def plot_pngs(report: Report, dpi: int | None = None) -> dict[str, bytes]:
    """PNG bytes of every plot that the report has data for, by name (``delta_ci``, ``per_query_delta``, ``pareto``).

    ``dpi`` defaults to the figures' own (120); the HTML page uses more, so plots stay sharp on high-density screens.

    Example:
        >>> sorted(plot_pngs(build_report(Path("results"))))  # doctest: +SKIP
        ['delta_ci', 'pareto', 'per_query_delta']
    """
    out = {"delta_ci": figure_png(delta_ci_figure(report), dpi), "per_query_delta": figure_png(per_query_figure(report), dpi)}
    if report.bench is not None:
        out["pareto"] = figure_png(pareto_figure(report), dpi)
    return out


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def figure_png(fig: Figure, dpi: int | None = None) -> bytes:
    """A figure as PNG bytes (Agg canvas, no pyplot state); without the "Software" tag, so equal plots give equal bytes."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or fig.dpi, metadata={"Software": None})
    return buf.getvalue()


def _compared(report: Report) -> list[Row]:
    return [r for r in report.rows if not r.is_baseline]


def _threshold(report: Report, ax: Axes, horizontal: bool) -> None:
    """Zero and, for an absolute gate, the -max_drop line."""
    line = ax.axhline if horizontal else ax.axvline
    line(0.0, color="0.3", lw=0.8)
    if not report.config.relative:
        line(-report.config.max_drop, color="tab:red", lw=0.8, ls="--", label=f"gate: -{report.config.max_drop:g}")


def delta_ci_figure(report: Report) -> Figure:
    """A forest plot: one line per variant, a marker and CI bar per task and for the macro mean."""
    rows = _compared(report)
    scopes = [*report.tasks, "mean"]
    fig = _figure(7.5, 1.2 + 0.5 * max(1, len(rows)) * (0.6 + 0.15 * len(scopes)))
    ax = fig.add_subplot()
    step = 0.8 / len(scopes)
    for k, scope in enumerate(scopes):
        ys, xs, lo, hi = [], [], [], []
        for i, row in enumerate(rows):
            c = row.comparison.mean if scope == "mean" else row.comparison.tasks.get(scope)
            if c is None:
                continue
            ys.append(i - 0.4 + step * (k + 0.5))
            xs.append(c.mean_delta)
            lo.append(c.mean_delta - c.ci_low)
            hi.append(c.ci_high - c.mean_delta)
        ax.errorbar(xs, ys, xerr=[lo, hi], fmt="D" if scope == "mean" else "o", ms=4, capsize=2, lw=1,
                    color="black" if scope == "mean" else None, label=scope)
    _threshold(report, ax, horizontal=False)
    ax.set_yticks(range(len(rows)), [r.name for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"NDCG@10 delta vs Float32 ({100 * report.config.confidence:g}% paired bootstrap CI)")
    ax.set_title(f"{report.model_id}: NDCG@10 delta per variant", loc="left", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(axis="x", alpha=0.3)
    return fig


def per_query_figure(report: Report) -> Figure:
    """Per task, a box plot (whiskers at the 5th/95th percentile) of each variant's per-query deltas."""
    rows = _compared(report)
    tasks = report.tasks
    fig = _figure(4.0 * len(tasks) + 1.5, 1.5 + 0.45 * max(1, len(rows)))
    axes = fig.subplots(1, len(tasks), sharey=True, squeeze=False)[0]
    for ax, task in zip(axes, tasks, strict=True):
        present = [r for r in rows if task in r.deltas]
        data = [r.deltas[task] for r in present]
        if data:
            ax.boxplot(data, positions=range(len(present)), **_horizontal(), whis=(5, 95), widths=0.45,
                       flierprops={"marker": ".", "ms": 2, "alpha": 0.4}, medianprops={"color": "tab:orange"})
            for i, r in enumerate(present):  # counts in the gap above each box
                c = r.comparison.tasks[task]
                ax.annotate(f"better {c.better}, worse {c.worse}, equal {c.equal}", (0.01, i - 0.36),
                            xycoords=("axes fraction", "data"), ha="left", va="center", fontsize=7, color="0.3")
        _threshold(report, ax, horizontal=False)
        ax.set_yticks(range(len(rows)), [r.name for r in rows])
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_title(f"{task} ({report.n_queries[task]} queries)", fontsize=10)
        ax.set_xlabel("per-query NDCG@10 delta")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{report.model_id}: per-query NDCG@10 delta vs Float32 (better / worse / equal queries)", fontsize=10)
    return fig


def _horizontal() -> dict[str, object]:
    """``orientation="horizontal"`` (matplotlib >= 3.10), or ``vert=False`` before it."""
    import matplotlib

    major, minor = (int(p) for p in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated in (speedup higher, delta higher), sorted by speedup.

    Example:
        >>> pareto_front([(1.0, 0.0), (2.0, -0.01), (1.5, -0.02), (3.0, -0.05)])
        [0, 1, 3]
    """
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return sorted(front, key=lambda i: points[i][0])


def pareto_figure(report: Report) -> Figure:
    """Mean NDCG@10 delta (with CI) against speedup at the report's bench point; Pareto front and recommendation marked."""
    if report.bench is None:
        raise EvalsuiteError("a Pareto plot needs bench results (run `evalsuite bench`)")
    rows = [r for r in report.rows if r.comparison.mean is not None and r.speed and r.speed.speedup]
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot()
    if rows:
        pts = [(r.speed.speedup, r.comparison.mean.mean_delta) for r in rows]  # type: ignore[union-attr]
        lo = [r.comparison.mean.mean_delta - r.comparison.mean.ci_low for r in rows]  # type: ignore[union-attr]
        hi = [r.comparison.mean.ci_high - r.comparison.mean.mean_delta for r in rows]  # type: ignore[union-attr]
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[lo, hi], fmt="o", ms=5, capsize=2, lw=1, color="tab:blue")
        front = pareto_front(pts)
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], color="tab:green", lw=1, label="Pareto front")
        bars = [(p[0], p[1] - d_lo, p[1] + d_hi) for p, d_lo, d_hi in zip(pts, lo, hi, strict=True)]
        names = [r.name + (" (recommended)" if r.name == report.recommended else "") for r in rows]
    _threshold(report, ax, horizontal=True)
    ax.set_xlabel(f"speedup vs Float32 at {report.bench.length} tokens, batch {report.bench.batch}")
    ax.set_ylabel("mean NDCG@10 delta vs Float32")
    machine = textwrap.fill(report.bench.describe(), 95)
    ax.set_title(f"{report.model_id}: quality vs speed\n{machine}", loc="left", fontsize=8)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    if rows:  # last: labels are placed in pixels, once the title, axis labels and legend have fixed the layout
        _place_labels(ax, pts, bars, names, bold={i for i, r in enumerate(rows) if r.name == report.recommended})
    return fig


def _place_labels(ax: Axes, pts: list[tuple[float, float]], bars: list[tuple[float, float, float]], names: list[str],
                  bold: set[int], fontsize: float = 8.0) -> None:
    """Label each point without overlapping another label, a marker or an error bar.

    Greedy, in display space: labels go right of a point (left of it in the right half of the axes, so they stay
    inside); a label that would collide is moved up or down in steps of one text line and joined to its point by a
    thin leader line. Deterministic: the same points give the same picture.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = ax.figure
    if fig.canvas is None or not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    fig.canvas.draw()  # fixes the layout and the axis limits, so data -> pixel is final
    px = fig.dpi / 72.0
    to_px = ax.transData.transform
    line_h = fontsize * 1.35 * px
    char_w = fontsize * 0.58 * px
    gap = 5 * px
    x_mid = sum(ax.get_xlim()) / 2
    obstacles = []  # (x0, y0, x1, y1) in pixels: markers and error bars
    for (x, y), (_, y_lo, y_hi) in zip(pts, bars, strict=True):
        (cx, cy), (_, b_lo), (_, b_hi) = to_px((x, y)), to_px((x, y_lo)), to_px((x, y_hi))
        obstacles.append((cx - 4 * px, cy - 4 * px, cx + 4 * px, cy + 4 * px))
        obstacles.append((cx - 3 * px, min(b_lo, b_hi), cx + 3 * px, max(b_lo, b_hi)))
    legend = ax.get_legend()
    if legend is not None:
        lb = legend.get_window_extent()
        obstacles.append((lb.x0, lb.y0, lb.x1, lb.y1))
    box_of_axes = ax.get_window_extent()

    def collides(box: tuple[float, float, float, float], placed: list[tuple[float, float, float, float]]) -> bool:
        x0, y0, x1, y1 = box
        if x0 < box_of_axes.x0 or x1 > box_of_axes.x1 or y0 < box_of_axes.y0 or y1 > box_of_axes.y1:
            return True
        return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in placed)

    placed: list[tuple[float, float, float, float]] = []
    for i in sorted(range(len(pts)), key=lambda i: (-pts[i][1], pts[i][0])):  # top first
        cx, cy = to_px(pts[i])
        width = len(names[i]) * char_w * (1.08 if i in bold else 1.0)
        left = pts[i][0] > x_mid
        choice = None
        for step in (0, -1, 1, -2, 2, -3, 3, -4, 4, -5, 5, -6, 6):
            for side_left in (left, not left):
                x0 = cx - gap - width if side_left else cx + gap
                y0 = cy + 2 * px + step * line_h
                box = (x0, y0, x0 + width, y0 + line_h * 0.8)
                if not collides(box, placed + obstacles):
                    choice = (box, side_left, step)
                    break
            if choice:
                break
        if choice is None:  # nowhere free: the plain position
            x0 = cx - gap - width if left else cx + gap
            choice = ((x0, cy + 2 * px, x0 + width, cy + 2 * px + line_h * 0.8), left, 0)
        box, side_left, step = choice
        placed.append(box)
        anchor_x = box[2] if side_left else box[0]
        offset = ((anchor_x - cx) / px, (box[1] - cy) / px)
        label = ax.annotate(names[i], pts[i], xytext=offset, textcoords="offset points", fontsize=fontsize,
                            fontweight="bold" if i in bold else "normal", ha="right" if side_left else "left", va="bottom",
                            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.55", "shrinkA": 0, "shrinkB": 3} if step else None)
        label.set_in_layout(False)  # the layout is final: a label must not move the axes it was placed in
