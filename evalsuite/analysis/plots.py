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

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from evalsuite.analysis.report import Report, Row

_DPI = 120


def write_plots(report: Report, folder: Path) -> list[Path]:
    """Write every plot that the report has data for into ``folder``; returns the files written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvalsuiteError(f"cannot create plot folder {folder}: {exc.strerror}") from None
    written = [_save(delta_ci_figure(report), folder / "delta_ci.png"),
               _save(per_query_figure(report), folder / "per_query_delta.png")]
    if report.bench is not None:
        written.append(_save(pareto_figure(report), folder / "pareto.png"))
    return written


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _save(fig: Figure, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, format="png")
    return path


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
        for k, i in enumerate(sorted(range(len(rows)), key=lambda i: pts[i][0])):  # alternate above/below: close points stay legible
            bold = rows[i].name == report.recommended
            # Labels go left of points on the right half so they stay inside the axes; close points alternate up/down.
            right = pts[i][0] > (min(p[0] for p in pts) + max(p[0] for p in pts)) / 2
            ax.annotate(rows[i].name + (" (recommended)" if bold else ""), pts[i], xytext=(-6 if right else 6, 5 if k % 2 == 0 else -12),
                        textcoords="offset points", fontsize=8, fontweight="bold" if bold else "normal",
                        ha="right" if right else "left")
    _threshold(report, ax, horizontal=True)
    ax.set_xlabel(f"speedup vs Float32 at {report.bench.length} tokens, batch {report.bench.batch}")
    ax.set_ylabel("mean NDCG@10 delta vs Float32")
    machine = textwrap.fill(report.bench.describe(), 95)
    ax.set_title(f"{report.model_id}: quality vs speed\n{machine}", loc="left", fontsize=8)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    return fig
