"""Calibration texts for static int8: where they come from, what identifies them, and the feeds made of them.

The default source is ``calibration_default.txt`` beside this module: 256 paragraphs of English prose from Python's
own documentation (``pydoc_data.topics`` of the standard library, selected deterministically by
``scripts/make_calibration_text.py``). It ships with the package, needs no network, and shares no text with any
retrieval task, so a static build is never calibrated on the queries or documents it is then judged on. A user's
file (one text per line, UTF-8) replaces it: ``configs/calibration/<name>.txt`` under the working directory.

The texts, in order, are part of the variant's identity: their sha256 and count go into the artifact's cache key
and its ``meta.json``.

Example:
    >>> cal = load_calibration(None)
    >>> cal.source, cal.count
    ('default', 256)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evalsuite.errors import EvalsuiteError
from evalsuite.files import sha256_text

if TYPE_CHECKING:
    from evalsuite.models import ModelSource

DEFAULT_FILE = Path(__file__).with_name("calibration_default.txt")
USER_DIR = Path("configs") / "calibration"  # relative to the working directory
DEFAULT = "default"  # the packaged texts (so configs/calibration/default.txt is never read)
_NAME = re.compile(r"^[a-z0-9]+$")


@dataclass(frozen=True)
class Calibration:
    """A list of calibration texts and where they came from.

    Args:
        source: ``default`` or the user's name (``-cal<NAME>``).
        path: the file read.
        texts: one per line, in file order (the order calibration runs them in).
    """

    source: str
    path: Path
    texts: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.texts)

    @property
    def sha256(self) -> str:
        return sha256_text(*self.texts)

    def identity(self) -> tuple[str, ...]:
        """What of the calibration decides the built file (the path does not: the same texts give the same build)."""
        return ("calibration", self.source, self.sha256, str(self.count))

    def to_dict(self) -> dict[str, object]:
        return {"source": self.source, "path": str(self.path), "sha256": self.sha256, "count": self.count}


def calibration_path(name: str | None) -> Path:
    """The file of a calibration source: the packaged default, or ``configs/calibration/<name>.txt``."""
    if name in (None, DEFAULT):
        return DEFAULT_FILE
    if not _NAME.match(name):
        raise EvalsuiteError(f"calibration name {name!r} must be lower-case letters and digits")
    return USER_DIR / f"{name}.txt"


def load_calibration(name: str | None = None) -> Calibration:
    """Read a calibration file; a missing file, bad UTF-8 or an empty line is one error naming the file and line."""
    path = calibration_path(name)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EvalsuiteError(f"{path}: cannot read calibration texts ({exc.strerror or exc}); "
                             f"-cal<name> reads {USER_DIR}/<name>.txt, one text per line") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise EvalsuiteError(f"{path}:{line}: not UTF-8") from exc
    texts = text.splitlines()
    for number, line in enumerate(texts, 1):
        if not line.strip():
            raise EvalsuiteError(f"{path}:{number}: empty line; calibration files hold one text per line")
    if not texts:
        raise EvalsuiteError(f"{path}: no calibration texts")
    return Calibration(name or DEFAULT, path, tuple(texts))


def calibration_feeds(source: ModelSource, cal: Calibration, input_names: list[str]) -> list[dict[str, np.ndarray]]:
    """One unpadded feed per text, tokenized as the encoder tokenizes documents (prefix, lower-casing, truncation).

    Unpadded, because padded batches put the hidden states of padding (which pooling ignores) into the ranges.
    """
    from evalsuite.encode.session import model_inputs
    from evalsuite.encode.tokenizer import TextTokenizer

    settings = source.settings
    tokenizer = TextTokenizer(source.path, settings.max_seq_length, settings.lowercase)
    feeds = []
    tokenized = tokenizer([settings.document_prefix + t for t in cal.texts])
    for i in range(len(tokenized)):
        row = tokenized.row(i).astype(np.int64)[None, :]
        feeds.append(model_inputs(row, np.ones_like(row), input_names))
    return feeds


class FeedReader:
    """onnxruntime's CalibrationDataReader over a list of feeds, with the ``__len__``/``set_range`` that strided
    calibration (``CalibStridedMinMax``) needs: one feed per pass keeps histogram methods working on texts of
    different lengths and memory flat."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = feeds
        self._iter: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def __len__(self) -> int:
        return len(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iter = iter(self._feeds[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)
