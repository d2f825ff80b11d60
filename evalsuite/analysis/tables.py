"""The one table renderer: a :class:`TextTable` of strings to padded GitHub markdown, or to a rich table for terminals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table


@dataclass(frozen=True)
class TextTable:
    """A table as strings; the first ``left`` columns are labels (left-aligned), the rest numbers (right-aligned)."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""
    left: int = 1


def to_markdown(table: TextTable) -> str:
    """GitHub-flavoured markdown with padded columns: ``**title**``, the table, then ``_note_``, each when present."""
    widths = [max(len(h), *(len(r[i]) for r in table.rows)) if table.rows else len(h) for i, h in enumerate(table.header)]

    def line(cells: list[str]) -> str:
        padded = (c.ljust(w) if i < table.left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join((":" + "-" * (w + 1)) if i < table.left else ("-" * (w + 1) + ":") for i, w in enumerate(widths)) + "|"
    lines = [line(table.header), rule, *(line(r) for r in table.rows)]
    if table.title:
        lines = [f"**{table.title}**", "", *lines]
    if table.note:
        lines += ["", f"_{table.note}_"]
    return "\n".join(lines)


def to_rich(table: TextTable) -> Table:
    from rich.table import Table

    out = Table(title=table.title or None, title_justify="left", caption=table.note or None, caption_justify="left")
    for i, col in enumerate(table.header):
        out.add_column(col, justify="left" if i < table.left else "right")
    for row in table.rows:
        out.add_row(*row)
    return out
