"""Tasks are data: ``tasks/*.yaml`` name an MTEB retrieval task, its split, main score and local BEIR folder.

A task loads from ``<data-dir>/<beir_folder>/`` when a data folder is given, otherwise through mteb's own
Hub loader. A name that no YAML defines may still be any MTEB retrieval task, or a path to a BEIR folder.

Example:
    >>> spec = find_task("scifact")
    >>> spec.name, spec.mteb_name, spec.split, spec.beir_folder
    ('SciFact', 'SciFact', 'test', 'scifact')
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.config import load_yaml_mapping, packaged_dir
from evalsuite.errors import EvalsuiteError
from evalsuite.files import path_label

_FIELDS = ("name", "mteb_name", "split", "main_score", "beir_folder", "default", "description")


@dataclass(frozen=True)
class TaskSpec:
    """One retrieval task.

    Args:
        name: display name, e.g. ``SciFact``; matched case-insensitively.
        mteb_name: the MTEB task it corresponds to (its metadata and Hub loader), or None for a plain BEIR folder.
        split: evaluation split; also names ``qrels/<split>.tsv``.
        main_score: the score the table and gate use.
        beir_folder: folder name under ``--data-dir``, or an absolute path for an ad-hoc folder.
        default: part of the default task list of ``evalsuite run``.
    """

    name: str
    mteb_name: str | None
    split: str = "test"
    main_score: str = "ndcg_at_10"
    beir_folder: str | None = None
    default: bool = False
    description: str = ""

    def local_folder(self, data: Path | None) -> Path | None:
        """Where this task's BEIR files are, or None to use mteb's Hub loader."""
        if self.beir_folder and Path(self.beir_folder).is_absolute():
            return Path(self.beir_folder)
        if data is None or not self.beir_folder:
            return None
        return data / self.beir_folder


def registry(tasks_dir: Path | None = None) -> dict[str, TaskSpec]:
    """All YAML tasks, built-in first, then the user's ``--tasks-dir`` (which may override), keyed by lower-case name."""
    specs = dict(_load_dir(packaged_dir("tasks")))
    if tasks_dir is not None:
        if not tasks_dir.is_dir():
            raise EvalsuiteError(f"tasks folder not found: {tasks_dir}")
        specs.update(_load_dir(tasks_dir))
    return specs


@functools.cache
def _load_dir(folder: Path) -> tuple[tuple[str, TaskSpec], ...]:
    out = []
    for file in sorted(folder.glob("**/*.yaml")):
        doc = load_yaml_mapping(file, _FIELDS, "task file", required=("name",))
        _check_fields(doc, file)
        spec = TaskSpec(**{"mteb_name": doc["name"], **doc})
        out.append((spec.name.lower(), spec))
    return tuple(out)


def _check_fields(doc: dict[str, Any], file: Path) -> None:
    """Every value of a task file has the type its field needs; names and folders are non-empty text."""
    for key, value in doc.items():
        if key == "default":
            if not isinstance(value, bool):
                raise EvalsuiteError(f"{file}: 'default' must be true or false, not {value!r}")
        elif key == "description":
            if not isinstance(value, str):
                raise EvalsuiteError(f"{file}: 'description' must be text, not {value!r}")
        elif value is None and key in ("mteb_name", "beir_folder"):
            continue  # no MTEB counterpart / no local folder
        elif not isinstance(value, str) or not value.strip():
            raise EvalsuiteError(f"{file}: {key!r} must be non-empty text (quote it if it looks like a number), not {value!r}")


def find_task(name: str, tasks_dir: Path | None = None) -> TaskSpec:
    """A task by (case-insensitive) name, MTEB task name, or BEIR folder path."""
    specs = registry(tasks_dir)
    key = name.strip().lower()
    if key in specs:
        return specs[key]
    by_folder = {s.beir_folder.lower(): s for s in specs.values() if s.beir_folder}
    if key in by_folder:
        return by_folder[key]
    path = Path(name).expanduser()
    if path.is_dir():
        # Named after the folder and its absolute path, so two folders called alike never share results.
        resolved = path.resolve()
        return TaskSpec(name=path_label(resolved), mteb_name=None, beir_folder=str(resolved))
    mteb_task = _mteb_retrieval_task(name)
    if mteb_task is not None:
        meta = mteb_task.metadata
        return TaskSpec(name=meta.name, mteb_name=meta.name, split=meta.eval_splits[0], main_score=meta.main_score)
    close = difflib.get_close_matches(key, list(specs), n=1)
    hint = f"; did you mean {specs[close[0]].name!r}?" if close else ""
    raise EvalsuiteError(f"unknown task {name!r}{hint} (known: {', '.join(s.name for s in specs.values())}, any MTEB retrieval task, or a BEIR folder path)")


def default_tasks(tasks_dir: Path | None = None) -> list[TaskSpec]:
    return [s for s in registry(tasks_dir).values() if s.default]


def _mteb_retrieval_task(name: str) -> Any:
    import mteb

    try:
        task = mteb.get_task(name)
    except Exception:  # mteb raises KeyError/ValueError for unknown names
        return None
    return task if task.metadata.type == "Retrieval" else None
