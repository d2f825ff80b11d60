"""What a screen returns: one :class:`TaskScreen` per task and a :class:`ScreenResult` per candidate (``evalsuite.screen/1``)."""

from __future__ import annotations

from dataclasses import dataclass

from evalsuite.screen.drift import DriftStats
from evalsuite.screen.sample import ScreenSample
from evalsuite.screen.verdict import Prediction, ScreenOutcome

SCHEMA = "evalsuite.screen/1"


@dataclass(frozen=True)
class TaskScreen:
    """The screen of one candidate on one task.

    Attributes:
        queries, judged_queries: queries screened, and judged queries the task has (the full evaluation's).
        documents, corpus: documents embedded with the candidate, and the corpus size.
        query_cosine, document_cosine: cosine of candidate to Float32 embeddings of the screened texts.
        top10_overlap, top10_overlap_ci: mean top-10 agreement with Float32 on the sample index (screened queries
            against the sampled documents), with a bootstrap CI over queries.
        float32_ndcg_at_10: Float32's NDCG@10 on the screened queries over the whole corpus.
        prediction: predicted NDCG@10 delta of the full evaluation, with its interval.
        limit: the largest allowed loss in NDCG@10 (a relative max drop converted with Float32's NDCG@10).
        outcome: pass, fail or uncertain against ``limit``.
        seconds: wall time of this task's candidate work (embedding and simulation).
    """

    task: str
    split: str
    queries: int
    judged_queries: int
    documents: int
    corpus: int
    query_cosine: DriftStats
    document_cosine: DriftStats
    top10_overlap: float
    top10_overlap_ci: tuple[float, float]
    float32_ndcg_at_10: float
    prediction: Prediction
    limit: float
    outcome: ScreenOutcome
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {"task": self.task, "split": self.split, "queries": self.queries, "judged_queries": self.judged_queries,
                "documents": self.documents, "corpus": self.corpus, "query_cosine": self.query_cosine.to_dict(),
                "document_cosine": self.document_cosine.to_dict(), "top10_overlap": self.top10_overlap,
                "top10_overlap_ci": list(self.top10_overlap_ci), "float32_ndcg_at_10": self.float32_ndcg_at_10,
                "predicted_delta": self.prediction.delta, "predicted_sd": self.prediction.sd,
                "predicted_ci": [self.prediction.ci_low, self.prediction.ci_high], "limit": self.limit,
                "outcome": self.outcome, "seconds": self.seconds}


@dataclass(frozen=True)
class ScreenResult:
    """The screen of one candidate: a verdict per task and overall, with the settings that produced it."""

    model_id: str
    variant: str
    onnx_sha256: str
    max_drop: float
    relative: bool
    sample: ScreenSample
    tasks: tuple[TaskScreen, ...]
    outcome: ScreenOutcome
    reason: str
    seconds: float

    @property
    def predicted_macro_delta(self) -> float:
        """The mean of the tasks' predicted deltas (each task weighs the same, as the gate's macro mean)."""
        return sum(t.prediction.delta for t in self.tasks) / len(self.tasks)

    def to_dict(self) -> dict[str, object]:
        """The ``screen --json`` record of one candidate (docs/screen-schema.md)."""
        return {"schema": SCHEMA, "model": self.model_id, "variant": self.variant, "onnx_sha256": self.onnx_sha256,
                "max_drop": self.max_drop, "relative": self.relative, "sample": self.sample.to_dict(),
                "outcome": self.outcome, "reason": self.reason, "predicted_macro_delta": self.predicted_macro_delta,
                "seconds": self.seconds, "tasks": [t.to_dict() for t in self.tasks]}
