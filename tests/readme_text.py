"""Reading README.md's sections and markdown tables, for the tests that check README's numbers against results/."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_section(heading: str) -> str:
    """The README text from the line starting with ``heading`` to the next ``## `` heading."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end >= 0 else None]


def md_rows(text: str) -> list[list[str]]:
    """The cells of every markdown table line (``| a | b |``) in ``text``, header and rule lines included."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]
