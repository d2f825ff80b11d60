"""Render the HTML report in a real browser (headless Chromium) and check it: every section, no external reference,
every number of the markdown table.

    python benchmarks/render_html.py                          # the committed results/ -> a temporary folder
    python benchmarks/render_html.py --out-dir /tmp/page --readme-png docs/img/report.png

Needs Chromium (Debian: ``apt-get install -y chromium``; ``poppler-utils`` adds the printed-page check). The test
suite does not: tests/test_html_export.py runs the same checks (:func:`check_page`) without a browser.

Steps:
1. ``evalsuite report --format html`` of ``--results`` (the page), and ``--format md`` (the numbers to find in it).
2. Static checks of the page source (:func:`check_page`): no script, no external reference of any kind, every
   image an inline PNG, every section present, every markdown row a row of an HTML table, every number in the page.
3. Chromium, offline and with a throwaway profile: ``--dump-dom`` (the DOM after parsing and layout: every section is
   there), ``--print-to-pdf`` (pages, and with pdftotext every section heading in the printout), ``--screenshot`` of
   the whole page (cropped to its content), and with ``--readme-png`` the top of the page for README.md.
Exit status 0 only when every check passes.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from evalsuite.models import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("machine", "quality", "gate", "per-query", "speed", "recommendation", "notes")
NUMBER = re.compile(r"[+-]?\d[\d,]*(?:\.\d+)?(?:%|x)?")
URL_ATTRS = {"src", "href", "srcset", "poster", "action", "formaction", "data", "background", "cite", "longdesc",
             "usemap", "manifest", "icon", "ping", "xlink:href"}
FORBIDDEN_TAGS = {"script", "iframe", "object", "embed", "base", "frame", "frameset", "applet", "portal", "link"}
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")
PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """What the checks need of a page: offending tags and attributes, text, table rows, style text, images, sections."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.text: list[str] = []
        self.styles: list[str] = []
        self.rows: list[list[str]] = []
        self.images: list[str] = []
        self.sections: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_style = False
        self.feed(source)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        where = f"line {self.getpos()[0]}: <{tag}>"
        if tag in FORBIDDEN_TAGS:
            self.problems.append(f"{where} has no place in a self-contained page")
        for key, value in attrs:
            value = (value or "").strip()
            if key.startswith("on"):
                self.problems.append(f"{where} has an event handler {key}=")
            elif key == "style":
                self.styles.append(value)
            elif key == "http-equiv" and value.lower() == "refresh":
                self.problems.append(f"{where} refreshes to another page")
            elif key == "href" and not value.startswith("#"):
                self.problems.append(f"{where} href={value[:80]!r} is not a link inside the page")
            elif key in URL_ATTRS - {"href"} and not value.startswith("data:"):
                self.problems.append(f"{where} {key}={value[:80]!r} is not a data: URI")
            if key in ("src", "srcset", "poster") and tag == "img":
                self.images.append(value)
            if key == "id" and tag == "section":
                self.sections.append(value)
        self._in_style = tag == "style"
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


@dataclass
class PageCheck:
    """The outcome of :func:`check_page`: problems (empty when the page is fine) and what was checked."""

    problems: list[str] = field(default_factory=list)
    numbers: int = 0  # numbers of the markdown table and its footnotes found in the page
    rows: int = 0  # markdown rows (header included) found as HTML table rows
    images: int = 0
    sections: list[str] = field(default_factory=list)


def check_page(source: str, markdown: str, sections: tuple[str, ...] = SECTIONS) -> PageCheck:
    """Check a page against the markdown report of the same results (``evalsuite report --format md``)."""
    page = Page(source)
    out = PageCheck(list(page.problems), images=len(page.images), sections=page.sections)
    for css in page.styles:
        out.problems += [f"CSS url({m[:60]}) is not a data: URI" for m in re.findall(r"url\(\s*['\"]?([^'\")]*)", css, re.I)
                         if not m.startswith("data:")]
        if re.search(r"@import", css, re.I):
            out.problems.append("CSS @import")
    if re.search(r"<script\b", source, re.I):
        out.problems.append("a <script> tag")
    for uri in page.images:
        head, _, payload = uri.partition(",")
        try:
            ok = head == "data:image/png;base64" and base64.b64decode(payload, validate=True)[:8] == PNG
        except ValueError:
            ok = False
        if not ok:
            out.problems.append(f"image {uri[:40]!r}... is not an inline base64 PNG")
    out.problems += [f"section {s!r} is missing" for s in sections if s not in page.sections]
    text = " ".join(" ".join(page.text).split())
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table]
    rows = [r for r in rows if not all(re.fullmatch(r":?-+:?", c) for c in r)]  # without the alignment rule
    if len(rows) < 2:
        out.problems.append("the markdown has no table")
    for cells in rows:
        if any(r[:len(cells)] == cells for r in page.rows):
            out.rows += 1
        else:
            out.problems.append(f"markdown row {' | '.join(cells)} is not a row of an HTML table")
    notes = [line.replace("**", "") for line in markdown.splitlines() if line.strip() and not line.startswith("|")]
    for where, values in [*((f"row {r[0]!r}", r) for r in rows[1:]), *((f"footnote {n[:40]!r}", [n]) for n in notes)]:
        for number in (n for v in values for n in NUMBER.findall(v)):
            out.numbers += 1
            if number not in text:
                out.problems.append(f"{number} ({where}) is not in the page")
    return out


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    raise SystemExit("Chromium not found: apt-get install -y chromium (Debian)")


def run_chromium(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Chromium, headless and offline, with a throwaway profile, on ``page``."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=300, check=True)


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 12000) -> tuple[int, int]:
    """The whole page as a PNG: a window taller than the page, then cropped below the last non-white row."""
    from PIL import Image, ImageChops

    run_chromium(page, f"--screenshot={png.resolve()}", f"--window-size={width},{height}")
    with Image.open(png) as image:
        shot = image.convert("RGB")
    box = ImageChops.difference(shot, Image.new("RGB", shot.size, "white")).getbbox()
    if box is None or box[3] >= height - 1:
        raise SystemExit(f"{png}: the page is blank or taller than {height} px")
    shot = shot.crop((0, 0, width, box[3] + 24))
    shot.save(png, optimize=True)
    return shot.size


def readme_png(full: Path, out: Path, height: int) -> Path:
    """The top ``height`` pixels of the page screenshot, at full resolution (lossless; about 350 KB for 1480 px)."""
    from PIL import Image

    with Image.open(full) as image:
        image.crop((0, 0, image.width, min(height, image.height))).save(out, optimize=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="whose results (results/ holds more than one model)")
    ap.add_argument("--out-dir", type=Path, default=None, help="where report.html, report.pdf and page.png go (default: a temporary folder)")
    ap.add_argument("--readme-png", type=Path, default=None, help="also write the top of the page here (e.g. docs/img/report.png)")
    ap.add_argument("--readme-height", type=int, default=1480, help="pixels of the page in --readme-png (default: down to the "
                    "quality table's footnotes of the committed results)")
    args = ap.parse_args()
    from evalsuite.analysis.html import SECTIONS as HEADINGS
    from evalsuite.analysis.render import render
    from evalsuite.analysis.report import build_report

    out = args.out_dir or Path(tempfile.mkdtemp(prefix="evalsuite-page-"))
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(args.results, model=args.model)
    command = shlex.join(["evalsuite", "report", "--format", "html", "--results-dir", os.path.relpath(args.results),
                         "--model", args.model])
    page, md = out / "report.html", render(report, "md")
    page.write_text(render(report, "html", command=command), encoding="utf-8")
    expected = tuple(s for s in SECTIONS if s != "speed" or report.bench is not None)
    check = check_page(page.read_text(encoding="utf-8"), md, expected)
    print(f"{page}: {page.stat().st_size / 1e6:.2f} MB, sections {', '.join(check.sections)}; {check.images} inline PNG "
          f"images; {check.rows} markdown rows and {check.numbers} numbers of the markdown report found; "
          f"{len(check.problems)} problem(s) in the source")

    dom = Page(run_chromium(page, "--dump-dom").stdout)
    missing = [s for s in expected if s not in dom.sections]
    check.problems += [f"Chromium's DOM has no section {s!r}" for s in missing]
    print(f"chromium --dump-dom: sections {', '.join(dom.sections)}; {len(dom.rows)} table rows")
    pdf = out / "report.pdf"
    run_chromium(page, "--no-pdf-header-footer", f"--print-to-pdf={pdf.resolve()}")
    if shutil.which("pdftotext"):
        raw = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
        printed = " ".join(raw.split())
        absent = [HEADINGS[s] for s in expected if HEADINGS[s] not in printed]
        check.problems += [f"the printout has no heading {h!r}" for h in absent]
        print(f"chromium --print-to-pdf: {pdf} ({raw.count(chr(12))} A4 pages); section headings in the printed text: "
              f"{len(expected) - len(absent)}/{len(expected)}")
    size = screenshot(page, out / "page.png")
    print(f"chromium --screenshot: {out / 'page.png'} ({size[0]}x{size[1]} px)")
    if args.readme_png:
        png = readme_png(out / "page.png", args.readme_png, args.readme_height)
        print(f"README screenshot: {png} ({png.stat().st_size / 1e3:.0f} KB)")
    for problem in check.problems:
        print(f"FAIL {problem}")
    print("OK" if not check.problems else f"FAILED: {len(check.problems)} problem(s)")
    return 1 if check.problems else 0


if __name__ == "__main__":
    sys.exit(main())
