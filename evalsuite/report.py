"""Tables for people (rich / markdown) built from stored results."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from evalsuite.sweep import SweepReport


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
