"""Write evalsuite's default calibration texts (static int8) from the English prose of Python's own documentation.

The source is ``pydoc_data.topics`` of the standard library (the help texts of ``help('topics')``, PSF licence): it
ships with every Python, holds hundreds of plain English paragraphs, and has nothing to do with any retrieval task,
so no evaluation query or document can leak into calibration. The selection is deterministic: paragraphs of 12-120
words that read as prose (no code, tables or markup), ordered by the sha256 of their text, the first 256.

Example:
    python scripts/make_calibration_text.py            # rewrites evalsuite/variants/calibration_default.txt
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import pydoc_data.topics

COUNT = 256
OUT = Path(__file__).resolve().parent.parent / "evalsuite" / "variants" / "calibration_default.txt"


def paragraphs() -> list[str]:
    out = []
    for key in sorted(pydoc_data.topics.topics):
        for block in re.split(r"\n\s*\n", pydoc_data.topics.topics[key]):
            lines = block.splitlines()
            if not lines or any(line.startswith((" ", "\t", ">>>", "*", "+", "=", "-", "|")) for line in lines):
                continue  # code, lists, tables and headings
            text = " ".join(line.strip() for line in lines)
            words = text.split()
            letters = sum(c.isalpha() or c.isspace() for c in text)
            if 12 <= len(words) <= 120 and letters >= 0.9 * len(text) and text.isascii():
                out.append(text)
    return sorted(set(out), key=lambda t: hashlib.sha256(t.encode()).hexdigest())


def main() -> None:
    texts = paragraphs()
    if len(texts) < COUNT:
        sys.exit(f"only {len(texts)} prose paragraphs in pydoc_data.topics, need {COUNT}")
    OUT.write_text("".join(t + "\n" for t in texts[:COUNT]), encoding="utf-8")
    print(f"{OUT}: {COUNT} texts of {len(texts)} candidates")


if __name__ == "__main__":
    main()
