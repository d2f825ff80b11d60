"""Screen a candidate variant in seconds: embed a fixed sample with it, compare with Float32, predict its NDCG@10 loss.

Float32's embeddings of every query and document come from the embedding cache (the full evaluation wrote them) and
are kept as one checked matrix per task, so Float32 costs a file read. The candidate embeds only the sample
(:class:`ScreenSample`), under the same batch policy as a full evaluation. The numbers are described in
:mod:`evalsuite.screen.drift` and the verdict in :mod:`evalsuite.screen.verdict`.

Example:
    >>> screener = Screener(resolve_model("sentence-transformers/all-MiniLM-L6-v2"),  # doctest: +SKIP
    ...                     [find_task("scifact")], data_dir=Path("../shared/data/beir"), cache_dir=default_cache_dir())
    >>> result = screener.screen("qint8-7bit", max_drop=0.01)  # doctest: +SKIP
    >>> result.outcome, round(result.tasks[0].prediction.delta, 3)  # doctest: +SKIP
    ('fail', -0.08)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evalsuite.analysis.stats import bootstrap_ci
from evalsuite.build import Artifact, build_variant
from evalsuite.data.beir import read_beir
from evalsuite.data.loading import task_unavailable
from evalsuite.data.tasks import TaskSpec
from evalsuite.encode import BatchPolicy, OnnxEncoder
from evalsuite.encode.cache import EmbeddingCache
from evalsuite.errors import EvalsuiteError
from evalsuite.files import sha256_text
from evalsuite.models import ModelSource
from evalsuite.screen.drift import DriftStats, cosines, simulate, top_overlap, unit
from evalsuite.screen.records import ScreenResult, TaskScreen
from evalsuite.screen.sample import SampleIds, ScreenSample, draw
from evalsuite.screen.verdict import judge, overall, predict
from evalsuite.variants import BASELINE, VariantSpec

Say = Callable[[str], None]
Progress = Callable[[str, str, int, int], None]  # (variant, what, done, total), as `run` reports


@dataclass
class _Task:
    """One task's texts, judgements, sample, and Float32 embeddings of every query and document."""

    spec: TaskSpec
    query_ids: list[str]
    query_texts: list[str]
    doc_ids: list[str]
    doc_texts: list[str]
    qrels: dict[str, dict[str, int]]
    ids: SampleIds
    q_rows: np.ndarray
    d_rows: np.ndarray
    q_base: np.ndarray
    d_base: np.ndarray


class Screener:
    """Screens candidates of one model on a set of tasks; Float32 and the task data are loaded once and shared.

    Args:
        source: the model.
        tasks: tasks with a local BEIR folder under ``data_dir`` (or an absolute one).
        data_dir: folder of BEIR folders.
        cache_dir: ONNX artifacts and embeddings (Float32's must be there or are computed once).
        sample: what is embedded per task and how the prediction is drawn.
        policy: batch policy of the candidate's embeddings; a full evaluation's default.
        threads: onnxruntime threads (default: all cores).
        say, progress: status lines and encoding progress.
    """

    def __init__(self, source: ModelSource, tasks: Sequence[TaskSpec], *, data_dir: Path | None, cache_dir: Path,
                 sample: ScreenSample | None = None, policy: BatchPolicy | None = None, threads: int | None = None,
                 say: Say | None = None, progress: Progress | None = None) -> None:
        if not tasks:
            raise EvalsuiteError("a screen needs at least one task")
        self.source, self.specs, self.data_dir, self.cache_dir = source, list(tasks), data_dir, cache_dir
        self.sample = sample or ScreenSample()
        self.policy = policy or BatchPolicy()
        self.threads = threads
        self.say: Say = say or (lambda _m: None)
        self.progress = progress
        self.baseline: Artifact | None = None
        self.baseline_seconds = 0.0  # wall time spent loading tasks and Float32 embeddings
        self._tasks: dict[str, _Task] = {}

    def prepare(self) -> None:
        """Load every task and Float32's embeddings now (the first :meth:`screen` does it otherwise)."""
        for spec in self.specs:
            self._task(spec)

    def screen(self, variant: VariantSpec | str, max_drop: float = 0.01, relative: bool = False) -> ScreenResult:
        """Screen one candidate against the gate's per-task point rule with ``max_drop`` (absolute, or a fraction
        of Float32's NDCG@10 with ``relative``)."""
        if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not 0 <= max_drop < 1:
            raise EvalsuiteError(f"max drop must be a number >= 0 and < 1, not {max_drop!r}")
        spec = VariantSpec.parse(variant) if isinstance(variant, str) else variant
        tasks = [self._task(s) for s in self.specs]
        started = time.perf_counter()
        artifact = build_variant(self.source, spec, self.cache_dir, self.say)
        assert self.baseline is not None
        same_file = artifact.sha256 == self.baseline.sha256
        encoder = None if same_file else OnnxEncoder(artifact, self.source, self.policy, cache_dir=self.cache_dir,
                                                     threads=self.threads, variant_name=spec.name)
        screens = [self._screen_task(t, spec.name, encoder, max_drop, relative) for t in tasks]
        outcome = overall([s.outcome for s in screens])
        reason = _reason(spec.name, screens, outcome, max_drop, relative)
        return ScreenResult(self.source.model_id, spec.name, artifact.sha256, float(max_drop), relative, self.sample,
                            tuple(screens), outcome, reason, time.perf_counter() - started)

    def _screen_task(self, t: _Task, name: str, encoder: OnnxEncoder | None, max_drop: float, relative: bool) -> TaskScreen:
        started = time.perf_counter()
        q_base, d_sample = t.q_base[t.q_rows], t.d_base[t.d_rows]
        if encoder is None:  # the candidate is Float32's own file: its embeddings are Float32's
            q_cand, d_cand = q_base, d_sample
        else:
            if self.progress is not None:
                report = self.progress
                encoder.progress = lambda kind, done, total: report(name, f"{t.spec.name} {kind}", done, total)
            q_cand = encoder.embed([t.query_texts[i] for i in t.q_rows], "query")
            d_cand = encoder.embed([t.doc_texts[i] for i in t.d_rows], "document")
        s = self.sample
        overlap = top_overlap(q_base, d_sample, q_cand, d_cand)
        low, high = bootstrap_ci(overlap, s.confidence, seed=s.seed) if len(overlap) > 1 else (overlap[0], overlap[0])
        base, deltas = simulate(q_base, q_cand, t.d_base, unit(d_cand) - unit(d_sample), list(t.ids.queries), t.doc_ids,
                                t.qrels, s.draws, s.seed)
        prediction = predict(deltas, len(t.query_ids), s.confidence)
        f32 = float(base.mean())
        limit = max_drop * f32 if relative else float(max_drop)
        return TaskScreen(t.spec.name, t.spec.split, len(t.q_rows), len(t.query_ids), len(t.d_rows), len(t.doc_ids),
                          DriftStats.of(cosines(q_cand, q_base)), DriftStats.of(cosines(d_cand, d_sample)),
                          float(overlap.mean()), (float(low), float(high)), f32, prediction, limit,
                          judge(prediction, limit), time.perf_counter() - started)

    def _task(self, spec: TaskSpec) -> _Task:
        if spec.name in self._tasks:
            return self._tasks[spec.name]
        started = time.perf_counter()
        folder = spec.local_folder(self.data_dir)
        if folder is None:
            raise EvalsuiteError(f"task {spec.name}: the screen reads a local BEIR folder; pass --data-dir")
        problem = task_unavailable(spec, self.data_dir)
        if problem:
            raise EvalsuiteError(f"task {spec.name}: {problem}")
        data = read_beir(folder, spec.split)
        query_ids, doc_ids = list(data.queries), list(data.corpus)
        query_texts = [data.queries[q] for q in query_ids]
        # A document is its title and text joined, exactly as mteb hands it to the encoder (so the cache matches).
        doc_texts = [(d["title"] + " " + d["text"]).strip() if d["title"] else d["text"].strip()
                     for d in (data.corpus[i] for i in doc_ids)]
        ids = draw(query_ids, doc_ids, self.sample)
        q_index, d_index = {q: i for i, q in enumerate(query_ids)}, {d: i for i, d in enumerate(doc_ids)}
        if self.baseline is None:
            self.baseline = build_variant(self.source, BASELINE, self.cache_dir, self.say)
        q_base = self._baseline(spec.name, query_texts, "query")
        d_base = self._baseline(spec.name, doc_texts, "document")
        self._tasks[spec.name] = _Task(spec, query_ids, query_texts, doc_ids, doc_texts, data.qrels, ids,
                                       np.array([q_index[q] for q in ids.queries]), np.array([d_index[d] for d in ids.documents]),
                                       q_base, d_base)
        self.baseline_seconds += time.perf_counter() - started
        return self._tasks[spec.name]

    def _baseline(self, task: str, texts: list[str], kind: str) -> np.ndarray:
        """Float32's embeddings of all ``texts`` as one checked cache entry; built once from the evaluation's shards."""
        assert self.baseline is not None
        batch = self.policy.query_batch_size if kind == "query" else self.policy.batch_size
        key = sha256_text("screen-baseline/1", self.baseline.sha256, self.source.tokenizer_sha256,
                          json.dumps(self.source.settings.to_dict(), sort_keys=True), f"{kind}-{batch}-{self.policy.order}", *texts)
        cache = EmbeddingCache(self.cache_dir, self.baseline.sha256)
        stored = cache.get(key, len(texts))
        if stored is not None:
            return stored
        self.say(f"Float32 embeddings of {task} {kind}s: read from the embedding cache (or computed) once")
        report = self.progress
        encoder = OnnxEncoder(self.baseline, self.source, self.policy, cache_dir=self.cache_dir, threads=self.threads,
                              progress=None if report is None else (lambda k, d, n: report(BASELINE.name, f"{task} {k}", d, n)))
        vectors = encoder.embed(texts, kind)  # type: ignore[arg-type]
        cache.put(key, vectors)
        return vectors


def _reason(variant: str, screens: list[TaskScreen], outcome: str, max_drop: float, relative: bool) -> str:
    limit = f"{100 * max_drop:.2f}% of Float32's NDCG@10" if relative else f"{max_drop:.4f} NDCG@10"
    parts = ", ".join(f"{s.task} {s.prediction.delta:+.4f} [{s.prediction.ci_low:+.4f}, {s.prediction.ci_high:+.4f}]"
                      for s in screens)
    what = {"pass": "PASS: every predicted interval is within", "fail": "FAIL: a predicted interval lies wholly beyond",
            "uncertain": "UNCERTAIN (evaluate fully): a predicted interval straddles"}[outcome]
    return f"{what} max drop {limit} per task: {variant} {parts}"


def screen(source: ModelSource, spec: VariantSpec | str, tasks: Sequence[TaskSpec], *, data_dir: Path | None,
           cache_dir: Path, max_drop: float = 0.01, relative: bool = False, sample: ScreenSample | None = None,
           policy: BatchPolicy | None = None, threads: int | None = None) -> ScreenResult:
    """Screen one candidate (see :class:`Screener`; use it directly to screen several and load Float32 once)."""
    return Screener(source, tasks, data_dir=data_dir, cache_dir=cache_dir, sample=sample, policy=policy,
                    threads=threads).screen(spec, max_drop, relative)
