"""Progressive evaluation: a candidate's corpus encoded in the full run's own shards, with a verdict as soon as a fail
is certain.

The candidate's queries are encoded first (they are short). Then its documents, shard by shard: the very cache
shards a plain ``evalsuite run`` reads and writes (same calls as mteb makes them, same batches, same batch policy,
same keys, :meth:`OnnxEncoder.plan`), in a seeded random order of shards, the task with the least coverage first.
At each look of the :class:`StoppingRule` the NDCG@10 delta of every task is predicted with an interval
(:mod:`evalsuite.screen.partial`), and the rule decides *fail* when a task's interval lies wholly beyond the largest
allowed loss. Otherwise the corpus is completed, and a plain evaluation then reads every shard from the cache: its
result file is exactly the one ``run`` writes. Nothing encoded is thrown away: a progressive evaluation that is
interrupted, or stopped by a fail, resumes from the cache, and a later ``run`` reuses every shard.

Float32's embeddings of every query and document come from the cache (its full evaluation wrote them).

Example:
    >>> prog = Progressive(source, [find_task("scifact")], data_dir=data, cache_dir=cache)  # doctest: +SKIP
    >>> outcome = prog.evaluate("qint8-7bit", max_drop=0.01)  # doctest: +SKIP
    >>> outcome.outcome, outcome.decided  # doctest: +SKIP
    ('fail', {'SciFact': 0.15})
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from evalsuite.build import Artifact, build_variant
from evalsuite.data.loading import LoadedTask, load_task
from evalsuite.data.tasks import TaskSpec
from evalsuite.encode import BatchPolicy, OnnxEncoder
from evalsuite.encode.encoder import EncodePlan, Shard, texts_of
from evalsuite.errors import EvalsuiteError
from evalsuite.models import ModelSource
from evalsuite.results import load_results
from evalsuite.run.evaluate import run_mteb
from evalsuite.screen.partial import PartialCorpus
from evalsuite.screen.stopping import StoppingRule
from evalsuite.variants import BASELINE, VariantSpec

SCHEMA = "evalsuite.progressive/1"
Say = Callable[[str], None]
Progress = Callable[[str, str, int, int], None]  # (variant, what, done, total), as `run` reports
Outcome = Literal["fail", "complete"]
# The standard deviation over batch compositions assumed for a task before any build of the model was evaluated under
# several (README "Batch composition": above every one measured there).
COMPOSITION_SD_PRIOR = 0.005


@dataclass(frozen=True)
class Look:
    """One look at one task: coverage, the predicted NDCG@10 delta with its interval, and the rule's decision."""

    task: str
    coverage: float
    shards: int
    delta: float
    sd: float
    z: float
    low: float
    high: float
    limit: float
    fail: bool

    def to_dict(self) -> dict[str, object]:
        return {"task": self.task, "coverage": self.coverage, "shards": self.shards, "delta": self.delta, "sd": self.sd,
                "z": self.z, "interval": [self.low, self.high], "limit": self.limit, "fail": self.fail}


@dataclass
class ProgressiveResult:
    """What a progressive evaluation of one candidate found: ``fail`` decided early on some task, or ``complete``."""

    model_id: str
    variant: str
    onnx_sha256: str
    outcome: Outcome
    looks: list[Look]
    coverage: dict[str, float]  # per task, the share of documents encoded when it stopped
    decided: dict[str, float]  # task -> coverage at which the rule decided fail
    rule: StoppingRule
    composition_sd: dict[str, float]
    seconds: float
    texts_encoded: int = 0

    @property
    def reason(self) -> str:
        if self.outcome == "complete":
            return f"{self.variant}: no fail certain before the whole corpus was encoded; judged on the full evaluation"
        parts = [f"{look.task} at {100 * look.coverage:.0f}%: delta {look.delta:+.4f}, interval [{look.low:+.4f}, {look.high:+.4f}] "
                 f"beyond -{look.limit:.4f}" for look in self.looks if look.fail]
        return f"FAIL decided early: {self.variant} " + "; ".join(parts)

    def to_dict(self) -> dict[str, object]:
        """The ``evalsuite.progressive/1`` record (docs/tune-schema.md)."""
        return {"schema": SCHEMA, "model": self.model_id, "variant": self.variant, "onnx_sha256": self.onnx_sha256,
                "outcome": self.outcome, "reason": self.reason, "coverage": self.coverage, "decided": self.decided,
                "rule": self.rule.to_dict(), "composition_sd": self.composition_sd, "seconds": self.seconds,
                "texts_encoded": self.texts_encoded, "looks": [look.to_dict() for look in self.looks]}


@dataclass
class _Call:
    """One encode call mteb makes for a task: its kind, the ids and texts of its rows."""

    kind: Literal["query", "document"]
    ids: list[str]
    texts: list[str]


@dataclass
class _Task:
    """One task ready for progressive evaluation: its calls, judgements and Float32's embeddings."""

    spec: TaskSpec
    queries: _Call
    documents: list[_Call]
    qrels: dict[str, dict[str, int]]
    judged: np.ndarray  # rows of the query call with judgements
    q_base: np.ndarray
    d_base: np.ndarray
    offsets: list[int] = field(default_factory=list)  # first corpus row of each document call


class _Recorder(OnnxEncoder):
    """mteb drives it like the real encoder; it records each call (ids and texts) and returns placeholders."""

    def __init__(self, artifact: Artifact, source: ModelSource, policy: BatchPolicy) -> None:
        super().__init__(artifact, source, policy, cache_dir=None, threads=1)
        self.calls: list[_Call] = []
        self._rng = np.random.default_rng(0)

    def encode(self, inputs: Any, *, prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
        kind = "query" if prompt_type is not None and str(getattr(prompt_type, "value", prompt_type)) == "query" else "document"
        texts = texts_of(inputs)
        dataset = getattr(inputs, "dataset", None)
        if dataset is None or "id" not in getattr(dataset, "column_names", ()):
            raise EvalsuiteError("mteb passed texts without their ids: cannot follow its calls for a progressive evaluation")
        self.calls.append(_Call(kind, [str(i) for i in dataset["id"]], texts))  # type: ignore[arg-type]
        v = self._rng.standard_normal((len(texts), 8)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


class Progressive:
    """Evaluates candidates of one model progressively on a set of tasks; the tasks and Float32 are loaded once.

    Args:
        source: the model.
        tasks: the tasks (local BEIR folders or the Hub, as ``run`` loads them).
        data_dir, cache_dir: as for ``run``; Float32's embeddings must be in the cache or are computed once.
        policy: the batch policy (composition 0 of it is what is evaluated progressively).
        rule: looks, error rate, draws and seed.
        threads: onnxruntime threads.
        say, progress: status lines and encoding progress.
    """

    def __init__(self, source: ModelSource, tasks: Sequence[TaskSpec], *, data_dir: Path | None, cache_dir: Path,
                 policy: BatchPolicy | None = None, rule: StoppingRule | None = None, threads: int | None = None,
                 say: Say | None = None, progress: Progress | None = None) -> None:
        if not tasks:
            raise EvalsuiteError("a progressive evaluation needs at least one task")
        self.source, self.specs, self.data_dir, self.cache_dir = source, list(tasks), data_dir, cache_dir
        self.policy = (policy or BatchPolicy()).with_composition(0)
        self.rule = rule or StoppingRule()
        self.threads = threads
        self.say: Say = say or (lambda _m: None)
        self.progress = progress
        self.baseline: Artifact | None = None
        self._tasks: dict[str, _Task] = {}

    def evaluate(self, variant: VariantSpec | str, max_drop: float = 0.01, relative: bool = False,
                 composition_sd: Mapping[str, float] | None = None, compositions: int = 1) -> ProgressiveResult:
        """Encode ``variant``'s corpus progressively until a fail is certain on some task (per-task point rule with
        ``max_drop``) or every document is encoded.

        For a build judged on the mean over ``compositions`` batch compositions, this evaluates composition 0 and
        widens each interval by what the other compositions may still change: ``(K - 1) / K * sd**2`` with ``sd`` the
        task's standard deviation over compositions (``composition_sd``).
        """
        spec = VariantSpec.parse(variant) if isinstance(variant, str) else variant
        started = time.perf_counter()
        tasks = [self._task(s) for s in self.specs]
        artifact = build_variant(self.source, spec, self.cache_dir, self.say)
        encoder = OnnxEncoder(artifact, self.source, self.policy, cache_dir=self.cache_dir, threads=self.threads,
                              variant_name=spec.name)
        extra = {t.spec.name: (compositions - 1) / compositions * (composition_sd or {}).get(t.spec.name, 0.0) ** 2
                 for t in tasks} if compositions > 1 else {}
        states = [_State(t, encoder, self.rule) for t in tasks]
        looks: list[Look] = []
        decided: dict[str, float] = {}
        while not decided:
            open_ = [s for s in states if not s.complete]
            if not open_:
                break
            state = min(open_, key=lambda s: s.partial.coverage)
            before = state.partial.coverage
            state.encode_next()
            if self.progress is not None:
                self.progress(spec.name, f"{state.task.spec.name} progressive", state.done_rows, state.total_rows)
            after = state.partial.coverage
            if state.complete or not self.rule.due(before, after):
                continue
            look = state.look(before, max_drop, relative, extra.get(state.task.spec.name, 0.0))
            state.last_look = after
            looks.append(look)
            self.say(f"{spec.name} {look.task} {100 * look.coverage:.0f}%: predicted delta {look.delta:+.4f} "
                     f"[{look.low:+.4f}, {look.high:+.4f}] vs -{look.limit:.4f}" + ("  FAIL" if look.fail else ""))
            if look.fail:
                decided[look.task] = look.coverage
        outcome: Outcome = "fail" if decided else "complete"
        return ProgressiveResult(self.source.model_id, spec.name, artifact.sha256, outcome, looks,
                                 {s.task.spec.name: s.partial.coverage for s in states}, decided, self.rule,
                                 dict(composition_sd or {}), time.perf_counter() - started, encoder.stats["encoded_texts"])

    def _task(self, spec: TaskSpec) -> _Task:
        if spec.name in self._tasks:
            return self._tasks[spec.name]
        loaded = load_task(spec, self.data_dir)
        if self.baseline is None:
            self.baseline = build_variant(self.source, BASELINE, self.cache_dir, self.say)
        calls = _record_calls(self.baseline, self.source, self.policy, loaded)
        queries = [c for c in calls if c.kind == "query"]
        documents = [c for c in calls if c.kind == "document"]
        if len(queries) != 1 or not documents:
            raise EvalsuiteError(f"task {spec.name}: mteb made {len(queries)} query calls and {len(documents)} document calls; "
                                 "a progressive evaluation follows one query call and at least one document call")
        qrels = _qrels(loaded)
        judged = np.array([i for i, q in enumerate(queries[0].ids) if q in qrels])
        self.say(f"Float32 embeddings of {spec.name}: read from the embedding cache (or computed) once")
        base = OnnxEncoder(self.baseline, self.source, self.policy, cache_dir=self.cache_dir, threads=self.threads)
        q_base = base.embed(queries[0].texts, "query")[judged]
        d_base = np.concatenate([base.embed(c.texts, "document") for c in documents])
        offsets = list(np.cumsum([0, *(len(c.ids) for c in documents)])[:-1])
        task = _Task(spec, queries[0], documents, qrels, judged, q_base, d_base, [int(o) for o in offsets])
        self._tasks[spec.name] = task
        return task


class _State:
    """One task of one candidate's progressive evaluation: its shards in their seeded order and the partial corpus."""

    def __init__(self, task: _Task, encoder: OnnxEncoder, rule: StoppingRule) -> None:
        self.task, self.encoder, self.rule = task, encoder, rule
        q_cand = encoder.embed(task.queries.texts, "query")[task.judged]
        query_ids = [task.queries.ids[i] for i in task.judged]
        doc_ids = [d for c in task.documents for d in c.ids]
        self.partial = PartialCorpus(q_cand, task.q_base, task.d_base, query_ids, doc_ids, task.qrels)
        self.plans: list[EncodePlan] = [encoder.plan(c.texts, "document") for c in task.documents]
        shards = [(c, s) for c, plan in enumerate(self.plans) for s in range(len(plan.shards))]
        order = np.random.default_rng((rule.seed, len(shards))).permutation(len(shards))
        self.queue = [shards[i] for i in order]
        self.total_rows = len(doc_ids)
        self.done_rows = 0
        self.looks = 0
        self.last_look = 0.0

    @property
    def complete(self) -> bool:
        return not self.queue

    def encode_next(self) -> None:
        call, index = self.queue.pop(0)
        plan = self.plans[call]
        shard: Shard = plan.shards[index]
        vectors = self.encoder.shard_vectors(plan, shard)
        self.partial.add(self.task.offsets[call] + shard.rows, vectors)
        self.done_rows += len(shard.rows)

    def look(self, previous: float, max_drop: float, relative: bool, extra_variance: float) -> Look:
        coverage = self.partial.coverage
        deltas = self.partial.predict(self.rule.draws, self.rule.seed + self.looks)
        self.looks += 1
        per_draw = deltas.mean(axis=1)
        sd = math.sqrt(float(np.var(per_draw, ddof=1)) * (1 + 1 / len(per_draw)) + extra_variance)
        z = self.rule.z(self.last_look, coverage)
        centre = float(per_draw.mean())
        f32 = float(self.partial.baseline.mean())
        limit = max_drop * f32 if relative else float(max_drop)
        low, high = centre - z * sd, centre + z * sd
        return Look(self.task.spec.name, coverage, self._shards_done(), centre, sd, z, low, high, limit, high < -limit)

    def _shards_done(self) -> int:
        return sum(len(p.shards) for p in self.plans) - len(self.queue)


def composition_sd(results_dir: Path, model: str, tasks: Sequence[str], compositions: int, split: str) -> dict[str, float]:
    """Per task, the largest standard deviation of NDCG@10 over batch compositions among the model's stored builds:
    what the compositions a progressive evaluation has not seen may still move its delta; before any build was stored
    under several compositions, :data:`COMPOSITION_SD_PRIOR`."""
    try:
        data = load_results(results_dir, model, split=split)
    except EvalsuiteError:
        return dict.fromkeys(tasks, COMPOSITION_SD_PRIOR)
    out = {}
    for task in tasks:
        spreads = [float(np.std([d.ndcg_at_10 for d in draws], ddof=1))
                   for variant in data.compositions.get(task, {})
                   if len(draws := data.draws(task, variant, compositions)) > 1]
        out[task] = max(spreads) if spreads else COMPOSITION_SD_PRIOR
    return out


def _record_calls(artifact: Artifact, source: ModelSource, policy: BatchPolicy, loaded: LoadedTask) -> list[_Call]:
    """The encode calls mteb makes to evaluate ``loaded`` (ids and texts, in order), with no model run."""
    recorder = _Recorder(artifact, source, policy)
    run_mteb(recorder, loaded)
    return recorder.calls


def _qrels(loaded: LoadedTask) -> dict[str, dict[str, int]]:
    split = loaded.mteb_task.dataset["default"][loaded.spec.split]
    return {str(q): {str(d): int(v) for d, v in docs.items()} for q, docs in split["relevant_docs"].items()}
