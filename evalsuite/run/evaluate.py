"""One evaluation: mteb on (encoder, task) -> a typed :class:`RunResult` with NDCG@10 per query.

mteb computes the metric of record with pytrec_eval; we only capture the per-query values it already
computes (through the task's ``task_specific_scores`` hook), so the mean of our per-query NDCG@10 is
mteb's NDCG@10 by construction. The encoder batches by its own :class:`BatchPolicy`, so mteb's
``batch_size`` plays no part.

Retrieval is mteb's own exact search in blocks (``SearchEncoderWrapper``): each block of
:data:`CORPUS_BLOCK` documents is encoded, scored against all queries and cut to each query's top
k + 1, and a heap per query keeps the top k over all blocks. Memory therefore grows with the block
(its texts, embeddings and the queries x block score matrix), not with the corpus.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

from evalsuite.build import Artifact
from evalsuite.data.loading import LoadedTask
from evalsuite.encode import OnnxEncoder
from evalsuite.errors import EvalsuiteError
from evalsuite.machine import cpu_info, versions
from evalsuite.models import ModelSource
from evalsuite.results import RunResult


# Documents per retrieval block: mteb's own default, so results made before it was set here are unchanged. The
# length-sorted batching of the encoder applies within one encode call, that is within one block, so for a
# corpus larger than a block this number decides int8 batches: changing it changes numbers (and must change
# the result identity).
CORPUS_BLOCK = 50_000


@dataclass
class MtebOutcome:
    """What mteb measured on one split: its scores, NDCG@10 per query, and its own result document."""

    scores: dict[str, float]
    per_query: dict[str, float]
    mteb_scores: dict[str, object]
    seconds: float



def run_mteb(encoder: Any, loaded: LoadedTask, corpus_block: int = CORPUS_BLOCK) -> MtebOutcome:
    """Evaluate ``encoder`` (any model mteb accepts) on the task; returns the split's scores and per-query NDCG@10.

    An mteb encoder (one with ``mteb_model_meta``) searches in blocks of ``corpus_block`` documents; other models
    (a SentenceTransformer) get mteb's own wrapper.
    """
    import datasets
    import mteb
    from mteb.models.search_wrappers import SearchEncoderWrapper

    datasets.disable_progress_bars()
    per_query: dict[str, float] = {}

    def capture(scores: dict[str, dict[str, float]], *args: Any, **kwargs: Any) -> dict[str, float]:
        per_query.update({qid: float(v["ndcg_cut_10"]) for qid, v in scores.items()})
        return {}

    task = loaded.mteb_task
    task.task_specific_scores = capture  # the hook mteb calls with pytrec_eval's per-query scores
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("mteb").setLevel(logging.ERROR)
        model = SearchEncoderWrapper(encoder, corpus_chunk_size=corpus_block) if hasattr(encoder, "mteb_model_meta") else encoder
        result = mteb.evaluate(model, task, cache=None, overwrite_strategy="always", show_progress_bar=False,
                               co2_tracker=False, encode_kwargs={"show_progress_bar": False})
    seconds = time.perf_counter() - started
    task_result = result.task_results[0]
    split_scores = task_result.scores[loaded.spec.split][0]
    scores = {k: float(v) for k, v in split_scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if not per_query:
        raise EvalsuiteError(f"task {loaded.spec.name}: mteb returned no per-query scores")
    mteb_scores = json.loads(json.dumps(task_result.to_dict(), default=str))  # dates become ISO strings
    return MtebOutcome(scores, per_query, mteb_scores, seconds)


def evaluate(encoder: OnnxEncoder, lt: LoadedTask, source: ModelSource, artifact: Artifact, ident: str,
             command: str) -> RunResult:
    """Evaluate ``encoder`` on ``lt`` and describe the result with everything that decided it."""
    before = dict(encoder.stats)
    started = time.perf_counter()
    outcome = run_mteb(encoder, lt)
    # mteb rounds its scores to 5 decimals; deltas are taken between exact means of pytrec_eval's per-query values.
    ndcg = math.fsum(outcome.per_query.values()) / len(outcome.per_query)
    reported = outcome.scores.get("ndcg_at_10")
    if reported is None or abs(reported - ndcg) > 1e-5:
        raise EvalsuiteError(f"task {lt.spec.name}: per-query NDCG@10 mean {ndcg:.6f} does not match mteb's {reported}")
    return RunResult(
        model_id=source.model_id, model_slug=source.slug, weights_sha256=source.weights_sha256,
        variant=artifact.variant.name, onnx_sha256=artifact.sha256, onnx_size_bytes=artifact.size_bytes,
        task=lt.ref, encoding=source.settings.to_dict(), batch_policy=encoder.policy.to_dict(),
        main_score=lt.spec.main_score, ndcg_at_10=ndcg, scores=outcome.scores,
        per_query_ndcg_at_10=outcome.per_query,
        timings={"evaluate_s": round(time.perf_counter() - started, 3),
                 "inference_s": round(encoder.stats["inference_s"] - before["inference_s"], 3),
                 "texts_encoded": encoder.stats["texts"] - before["texts"],
                 "texts_from_cache": encoder.stats["cached_texts"] - before["cached_texts"],
                 "threads": encoder.threads},
        versions=versions(), machine=cpu_info(), created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        command=command, identity=ident, mteb_scores=outcome.mteb_scores, tokenizer_sha256=source.tokenizer_sha256,
        graph={"fused_ops": artifact.fused_ops, "int8": dataclasses.asdict(artifact.int8)}, int8_kernels=artifact.kernels,
    )
