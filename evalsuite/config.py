"""Where things live and how configuration files are read: default folders, environment, YAML with key checks.

Every command resolves its folders here, so ``--cache-dir`` / ``EVALSUITE_CACHE_DIR`` (and the results and
data folders) mean the same thing everywhere.

Example:
    >>> load_yaml_mapping(Path("configs/gate.yaml"), {"max_drop", "rule"}, "gate config")  # doctest: +SKIP
    {'max_drop': 0.01, 'rule': 'point'}
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evalsuite.errors import EvalsuiteError


def default_cache_dir() -> Path:
    return Path(os.environ.get("EVALSUITE_CACHE_DIR") or Path.home() / ".cache" / "evalsuite")


def default_results_dir() -> Path:
    return Path(os.environ.get("EVALSUITE_RESULTS_DIR") or "results")


def default_data_dir() -> Path | None:
    value = os.environ.get("EVALSUITE_DATA_DIR")
    return Path(value) if value else None


def packaged_dir(kind: str) -> Path:
    """A built-in data folder (``tasks`` or ``configs``): inside the wheel, or at the repository root."""
    packaged = Path(__file__).parent / "_data" / kind
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / kind


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when it has none), cut to ``limit`` characters."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


def load_yaml(path: Path, what: str) -> Any:
    """``yaml.safe_load`` of ``path``; a missing or malformed file is a one-line error naming it."""
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalsuiteError(f"{what} not found: {path}") from None
    except UnicodeDecodeError:
        raise EvalsuiteError(f"{path}: {what} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise EvalsuiteError(f"{path}{where}: invalid YAML in {what} ({first_line(exc)})") from None
    except OSError as exc:
        raise EvalsuiteError(f"{path}: cannot read {what} ({exc.strerror})") from None


def load_yaml_mapping(path: Path, allowed: Iterable[str], what: str, required: Iterable[str] = ()) -> dict[str, Any]:
    """A YAML file that must hold a mapping with only ``allowed`` keys (and every ``required`` one).

    Unknown keys get a "did you mean" hint; an empty file is an empty mapping.
    """
    doc = load_yaml(path, what)
    if doc is None:
        doc = {}
    allowed = list(allowed)
    if not isinstance(doc, dict):
        raise EvalsuiteError(f"{path}: {what} must be a mapping of keys ({', '.join(allowed)}), not a {type(doc).__name__}")
    unknown = [str(k) for k in doc if k not in allowed]
    if unknown:
        hints = "".join(f"; did you mean {m[0]!r} for {k!r}?" for k in unknown if (m := difflib.get_close_matches(k, allowed, n=1)))
        raise EvalsuiteError(f"{path}: unknown key {', '.join(map(repr, unknown))} in {what} (allowed: {', '.join(allowed)}){hints}")
    missing = [k for k in required if k not in doc]
    if missing:
        raise EvalsuiteError(f"{path}: {what} needs {', '.join(map(repr, missing))}")
    return doc


def suggest(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def invocation() -> str:
    """The command line as typed (for results and reports), or empty when not run as ``evalsuite``."""
    import shlex
    import sys

    return " ".join(shlex.quote(a) for a in ["evalsuite", *sys.argv[1:]]) if sys.argv[0].endswith("evalsuite") else ""
