"""A task's data as an mteb retrieval task: from a local BEIR folder, or through mteb's own Hub loader.

Example:
    >>> task = load_task(find_task("scifact"), Path("../shared/data/beir"))  # doctest: +SKIP
    >>> task.ref.n_documents, task.ref.n_queries  # doctest: +SKIP
    (5183, 300)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.config import first_line
from evalsuite.data.beir import fingerprint, missing_files, read_beir
from evalsuite.errors import DataUnavailable, EvalsuiteError
from evalsuite.results import TaskRef
from evalsuite.data.tasks import TaskSpec


@dataclass
class LoadedTask:
    """An mteb retrieval task with its data in memory, and a reference to that data for results."""

    spec: TaskSpec
    mteb_task: Any
    ref: TaskRef


def task_unavailable(spec: TaskSpec, data_dir: Path | None) -> str | None:
    """Why a task cannot be loaded from local files (None if it can, or if it will come from the Hub)."""
    folder = spec.local_folder(data_dir)
    if folder is None:
        return None
    if not folder.is_dir():
        return f"BEIR folder not found: {folder}"
    missing = missing_files(folder, spec.split)
    if missing:
        have = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        splits = f" (qrels for splits: {', '.join(have)})" if have and any(p.parent.name == "qrels" for p in missing) else ""
        return f"{folder}: missing {', '.join(str(p.relative_to(folder)) for p in missing)}{splits}"
    return None


def data_fingerprint(spec: TaskSpec, data_dir: Path | None) -> str:
    """sha256 of the local BEIR files, or the pinned Hub revision: identifies the data without loading it."""
    folder = spec.local_folder(data_dir)
    if folder is not None:
        return fingerprint(folder, spec.split)
    meta = _mteb_task(spec).metadata
    return str(meta.dataset["revision"])


def load_task(spec: TaskSpec, data_dir: Path | None) -> LoadedTask:
    """The mteb task for ``spec`` with data from the local BEIR folder, or from the Hub through mteb."""
    folder = spec.local_folder(data_dir)
    if folder is not None:
        problem = task_unavailable(spec, data_dir)
        if problem:
            raise EvalsuiteError(f"task {spec.name}: {problem}")
        data = read_beir(folder, spec.split)
        task = _mteb_task(spec).filter_eval_splits([spec.split])  # mteb evaluates the task's own splits otherwise
        task.dataset = {"default": {spec.split: _split_data(data)}}
        task.data_loaded = True
        ref = TaskRef(spec.name, spec.mteb_name, spec.split, f"local:{folder}", data_fingerprint(spec, data_dir),
                      len(data.corpus), len(data.queries))
        return LoadedTask(spec, task, ref)
    task = _mteb_task(spec).filter_eval_splits([spec.split])
    try:
        task.load_data()
    except Exception as exc:  # datasets/hub raise many types; offline is the common case
        splits = ", ".join(task.metadata.eval_splits)
        raise DataUnavailable(f"task {spec.name}: cannot load split {spec.split!r} of {task.metadata.dataset['path']} through "
                              f"mteb ({first_line(exc, 160)}; mteb evaluates it on: {splits}); pass --data-dir with a local "
                              "BEIR copy") from exc
    split = task.dataset["default"][spec.split]
    ref = TaskRef(spec.name, spec.mteb_name, spec.split, f"mteb:{task.metadata.dataset['path']}",
                  str(task.metadata.dataset["revision"]), len(split["corpus"]), len(split["relevant_docs"]))
    return LoadedTask(spec, task, ref)


def _mteb_task(spec: TaskSpec) -> Any:
    import mteb

    if spec.mteb_name:
        try:
            return mteb.get_task(spec.mteb_name)
        except Exception as exc:  # mteb raises KeyError or ValueError for unknown names
            raise EvalsuiteError(f"task {spec.name}: mteb has no task {spec.mteb_name!r}") from exc
    return _generic_task(spec)


def _generic_task(spec: TaskSpec) -> Any:
    """An mteb retrieval task for a plain BEIR folder: SciFact's metadata with this folder's name."""
    import mteb
    from mteb.abstasks.retrieval import AbsTaskRetrieval

    template = mteb.get_task("SciFact").metadata
    metadata = template.model_copy(update={
        "name": spec.name, "description": f"Local BEIR folder {spec.beir_folder}",
        "dataset": {"path": str(spec.beir_folder), "revision": "local"},
        "eval_splits": [spec.split], "main_score": spec.main_score, "reference": None, "bibtex_citation": "",
    })
    cls = type(f"Local_{spec.name}", (AbsTaskRetrieval,), {"metadata": metadata})
    return cls()


def _split_data(data: Any) -> Any:
    from datasets import Dataset
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData

    ids = list(data.corpus)
    corpus = Dataset.from_dict({"id": ids, "title": [data.corpus[i]["title"] for i in ids],
                                "text": [data.corpus[i]["text"] for i in ids]})
    qids = list(data.queries)
    queries = Dataset.from_dict({"id": qids, "text": [data.queries[q] for q in qids]})
    return RetrievalSplitData(corpus=corpus, queries=queries, relevant_docs=data.qrels, top_ranked=None)
