"""Read a local BEIR folder (corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv) into mteb's retrieval format.

Real files are messy: CRLF line endings, stray whitespace, blank lines, ids that look numeric
but are strings. Every problem is reported as ``file:line: what is wrong``.

Example:
    >>> data = read_beir(Path("../shared/data/beir/scifact"), split="test")  # doctest: +SKIP
    >>> len(data.corpus), len(data.queries), len(data.qrels)  # doctest: +SKIP
    (5183, 300, 300)
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from evalsuite.errors import EvalsuiteError
from evalsuite.files import sha256_file

CORPUS_NAMES = ("corpus.jsonl", "corpus.jsonl.gz")


@dataclass
class BeirData:
    """Documents and queries as ``{id: ...}`` and graded relevance as ``{query_id: {doc_id: grade}}``."""

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def beir_files(folder: Path, split: str) -> dict[str, Path]:
    """The three files of a BEIR folder; a folder with both ``corpus.jsonl`` and ``corpus.jsonl.gz`` is ambiguous (an error)."""
    present = [folder / n for n in CORPUS_NAMES if (folder / n).is_file()]
    if len(present) > 1:
        raise EvalsuiteError(f"{folder}: holds both {' and '.join(p.name for p in present)}; "
                             "which one is the corpus is ambiguous: remove one of them")
    corpus = present[0] if present else folder / CORPUS_NAMES[0]
    return {"corpus": corpus, "queries": folder / "queries.jsonl", "qrels": folder / "qrels" / f"{split}.tsv"}


def missing_files(folder: Path, split: str) -> list[Path]:
    """The required files of a BEIR folder that are not there."""
    return [p for p in beir_files(folder, split).values() if not p.is_file()]


def fingerprint(folder: Path, split: str) -> str:
    """sha256 over the folder's three files: results are tied to the exact data they were computed on."""
    from evalsuite.files import sha256_text

    return sha256_text(*(sha256_file(p) for p in beir_files(folder, split).values()))


def read_beir(folder: Path, split: str = "test") -> BeirData:
    """Parse and cross-check a BEIR folder; queries without judgements are dropped, as mteb does."""
    if not folder.is_dir():
        raise EvalsuiteError(f"BEIR folder not found: {folder}")
    missing = missing_files(folder, split)
    if missing:
        names = ", ".join(str(p.relative_to(folder)) for p in missing)
        raise EvalsuiteError(f"{folder}: missing {names}" + (" (corpus.jsonl or corpus.jsonl.gz)" if any("corpus" in str(p) for p in missing) else ""))
    files = beir_files(folder, split)
    corpus = {}
    for path, line, row in _jsonl(files["corpus"]):
        doc_id, text = _field(row, "_id", path, line), _field(row, "text", path, line)
        title = row.get("title") or ""
        if not isinstance(title, str):
            raise EvalsuiteError(f"{path}:{line}: 'title' must be a string")
        if doc_id in corpus:
            raise EvalsuiteError(f"{path}:{line}: duplicate document id {doc_id!r}")
        corpus[doc_id] = {"title": title, "text": text}
    if not corpus:
        raise EvalsuiteError(f"{files['corpus']}: empty corpus (no documents)")
    queries: dict[str, str] = {}
    for path, line, row in _jsonl(files["queries"]):
        query_id = _field(row, "_id", path, line)
        if query_id in queries:
            raise EvalsuiteError(f"{path}:{line}: duplicate query id {query_id!r}")
        queries[query_id] = _field(row, "text", path, line)
    qrels = _read_qrels(files["qrels"], queries, corpus)
    if not qrels:
        raise EvalsuiteError(f"{files['qrels']}: no relevance judgements")
    return BeirData(corpus, {q: queries[q] for q in queries if q in qrels}, qrels)


def _read_qrels(path: Path, queries: dict[str, str], corpus: dict[str, dict[str, str]]) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for line_no, raw in _lines(path):
        line = raw.strip()
        if not line:
            continue
        cols = [c.strip() for c in line.split("\t")]
        if line_no == 1 and cols[0].lower() in ("query-id", "query_id", "qid"):
            continue  # header
        if len(cols) != 3:
            raise EvalsuiteError(f"{path}:{line_no}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(cols)}")
        qid, did, score = cols
        try:
            grade = int(float(score))
        except (ValueError, OverflowError):  # "x", "nan", "inf"
            raise EvalsuiteError(f"{path}:{line_no}: score {score!r} is not a number") from None
        if qid not in queries:
            raise EvalsuiteError(f"{path}:{line_no}: query id {qid!r} is not in queries.jsonl")
        if did not in corpus:
            raise EvalsuiteError(f"{path}:{line_no}: document id {did!r} is not in the corpus")
        qrels.setdefault(qid, {})[did] = grade
    return qrels


def _jsonl(path: Path) -> Iterator[tuple[Path, int, dict]]:  # type: ignore[type-arg]
    for line_no, raw in _lines(path):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise EvalsuiteError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise EvalsuiteError(f"{path}:{line_no}: expected a JSON object")
        if "\\u" in raw:  # only a \u escape can make a lone surrogate: the bytes were checked to be UTF-8
            _check_unicode(row, path, line_no)
        yield path, line_no, row


def _check_unicode(row: dict, path: Path, line: int) -> None:  # type: ignore[type-arg]
    """A lone surrogate (``"\\ud800"``) is valid JSON but not text: no tokenizer can encode it."""
    for key, value in row.items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise EvalsuiteError(f"{path}:{line}: {key!r} holds a lone surrogate \\u{ord(value[exc.start]):04x} "
                                     f"at character {exc.start + 1}, which is not valid Unicode text") from None


def _field(row: dict, key: str, path: Path, line: int) -> str:  # type: ignore[type-arg]
    value = row.get(key)
    if value is None or isinstance(value, (dict, list, bool)):
        raise EvalsuiteError(f"{path}:{line}: missing or invalid {key!r}")
    # Ids like 4983 may arrive as JSON numbers; BEIR ids are strings.
    return str(value).strip() if key == "_id" else str(value)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines of a UTF-8 text file, gzipped or not; undecodable bytes and damaged gzip data become ``file:line`` errors."""
    line_no = 0
    try:
        with _open(path) as f:
            for line_no, line in enumerate(f, start=1):
                if not line.isascii():
                    try:
                        line.encode("utf-8")
                    except UnicodeEncodeError as exc:  # a byte that surrogateescape kept: not UTF-8
                        byte = ord(line[exc.start]) - 0xDC00
                        raise EvalsuiteError(f"{path}:{line_no}: not valid UTF-8 (byte 0x{byte:02x} at column {exc.start + 1})") from None
                yield line_no, line
    except gzip.BadGzipFile:
        raise EvalsuiteError(f"{path}: not a gzip file") from None
    except (EOFError, zlib.error) as exc:
        raise EvalsuiteError(f"{path}:{line_no + 1}: damaged or truncated gzip data ({exc})") from None
    except OSError as exc:
        raise EvalsuiteError(f"cannot read {path}: {exc.strerror or exc}") from None


def _open(path: Path) -> TextIO:
    # Universal newlines turn CRLF into LF; utf-8-sig drops a byte-order mark; bad bytes are kept to be reported by line.
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline=None)
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline=None)  # noqa: SIM115
