"""A fixed, seeded sample of a task's queries and documents, for sensitivity rankings.

Each task contributes the ``n_queries`` queries and ``n_documents`` documents whose ids hash lowest under the
seed (the same ids whatever the file order), read from the task's local BEIR folder.

Example:
    >>> sample = draw_sample([find_task("scifact")], Path("../shared/data/beir"))  # doctest: +SKIP
    >>> len(sample.queries), len(sample.documents)  # doctest: +SKIP
    (4, 12)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evalsuite.data.tasks import TaskSpec
from evalsuite.errors import EvalsuiteError
from evalsuite.files import sha256_text

DEFAULT_QUERIES = 4
DEFAULT_DOCUMENTS = 12


@dataclass(frozen=True)
class TextSample:
    """Queries and documents (documents as ``title text``), and where they came from."""

    queries: tuple[str, ...]
    documents: tuple[str, ...]
    origin: str  # e.g. "SciFact, NFCorpus (test): 8 queries + 24 documents each, seed 0"

    @property
    def sha256(self) -> str:
        return sha256_text("queries", *self.queries, "documents", *self.documents)

    def describe(self) -> dict[str, object]:
        return {"origin": self.origin, "queries": len(self.queries), "documents": len(self.documents), "sha256": self.sha256}


def draw_sample(tasks: Sequence[TaskSpec], data_dir: Path | None, n_queries: int = DEFAULT_QUERIES,
                n_documents: int = DEFAULT_DOCUMENTS, seed: int = 0) -> TextSample:
    """The sample of every task, in task order; tasks need local BEIR data (``--data-dir`` or a folder path)."""
    from evalsuite.data.beir import read_beir

    queries: list[str] = []
    documents: list[str] = []
    for task in tasks:
        folder = task.local_folder(data_dir)
        if folder is None:
            raise EvalsuiteError(f"task {task.name}: the text sample is read from local BEIR files; give --data-dir")
        data = read_beir(folder, task.split)
        queries += [data.queries[i] for i in _pick(data.queries, n_queries, seed)]
        documents += [f"{data.corpus[i]['title']} {data.corpus[i]['text']}".strip() for i in _pick(data.corpus, n_documents, seed)]
    names = ", ".join(f"{t.name} ({t.split})" for t in tasks)
    return TextSample(tuple(queries), tuple(documents), f"{names}: {n_queries} queries + {n_documents} documents each, seed {seed}")


def _pick(ids: Sequence[str] | dict, n: int, seed: int) -> list[str]:  # type: ignore[type-arg]
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())[:n]
