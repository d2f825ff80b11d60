"""Evaluation throughput on SciFact: a plain mteb loop, the onnxruntime kernel bound, and evalsuite's ``run``.

Three ways to the Float32 NDCG@10 of the default model, timed side by side with the same ONNX file and the
same onnxruntime threads:

(a) naive      ``mteb.evaluate`` with the encoder a user writes first (:class:`NaiveOnnxEncoder`): each
               DataLoader batch of 32 texts, in mteb's order, tokenized by the Hugging Face tokenizer with
               ``padding=True`` (to the longest text of the batch), run, mean-pooled and normalised.
(b) kernel     only ``session.run`` over the same texts, tokenized and padded beforehand, in the batches of
               evalsuite's default policy (``docs32-q1-length``): documents in length-sorted batches of 32,
               queries one at a time. No evaluation that keeps those batches can be faster.
(b') kernel    the same, with the queries in length-sorted batches of 32 too (for reference only).
(c) evalsuite  ``run_sweep`` for ``float32`` on the task, with a cold embedding cache and an empty results folder.

ONNX conversion is excluded: the artifact is built (or found) in ``--cache-dir`` before anything is timed,
and every (c) run gets a fresh cache folder that only links to it. Everything else a ``run`` does is timed:
hashing the weights and the ONNX file, reading the BEIR folder, tokenizing, creating the session, encoding,
mteb's search and scoring, writing the result. (a) is timed from the same starting point (its session,
tokenizer and task are loaded inside its clock). mteb's lazy imports are paid once, untimed, before.

Targets: (c) at least 2x faster than (a), and (c) within 1.15x of (b); (a) and (c) agree on NDCG@10 to 1e-4.
Wall times are compared (best of ``--repeats``); process CPU seconds are shown too, because they stay
meaningful when something else uses the cores (with ``--threads 1`` they are nearly the work done).

Usage (from the repository root; a quiet 2-core machine needs about 15 minutes per repeat at full size):
    .venv/bin/python benchmarks/eval_throughput.py --limit-docs 300 --threads 1      # quick check
    .venv/bin/python benchmarks/eval_throughput.py --repeats 3 --cache-dir /work/cache \\
        --output results/bench/eval_throughput.json --profile /tmp/eval_throughput.prof
"""

from __future__ import annotations

import contextlib
import cProfile
import gzip
import json
import logging
import math
import os
import pstats
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from evalsuite.encode import tokenizer as encoder_module
from evalsuite.data.beir import beir_files, read_beir
from evalsuite.build import Artifact, artifact_dir, build_variant
from evalsuite.encode import BatchPolicy, TextTokenizer, make_session, pad_batch, plan_batches
from evalsuite.data.loading import load_task
from evalsuite.machine import cpu_info, default_threads, versions
from evalsuite.models import DEFAULT_MODEL, ModelSource, resolve_model
from evalsuite.config import default_cache_dir
from evalsuite.run import SweepConfig, run_sweep
from evalsuite.data.tasks import find_task
from evalsuite.variants import BASELINE

TASK = "scifact"
NAIVE_BATCH = 32
NDCG_TOLERANCE = 1e-4
TARGET_VS_NAIVE = 2.0  # (a)/(c) at least this
TARGET_VS_KERNEL = 1.15  # (c)/(b) at most this

# Where (c)'s time goes: (label, file suffix, function) whose cumulative time cProfile reports. The entries
# do not call one another, so their sum is comparable with the total.
BREAKDOWN = (
    ("onnxruntime session.run", "onnxruntime_inference_collection.py", "run"),
    ("tokenize (TextTokenizer)", "evalsuite/encode/tokenizer.py", "__call__"),
    ("pad_batch", "evalsuite/encode/policy.py", "pad_batch"),
    ("pool + normalise", "evalsuite/encode/session.py", "pool"),
    ("batch plan", "evalsuite/encode/policy.py", "plan_batches"),
    ("texts from mteb's DataLoader", "evalsuite/encode/encoder.py", "_texts_of"),
    ("mteb dataset map (_prepare_dataset)", "mteb/_create_dataloaders.py", "_prepare_dataset"),
    ("embedding cache (hash, write)", "evalsuite/files.py", "write_blob"),
    ("similarity (cos_sim)", "mteb/similarity_functions.py", "cos_sim"),
    ("scoring (pytrec_eval)", "mteb/_evaluators/retrieval_evaluator.py", "evaluate"),
    ("make_session", "evalsuite/encode/session.py", "make_session"),
    ("load_task (BEIR -> datasets)", "evalsuite/data/loading.py", "load_task"),
    ("resolve_model (weights hash)", "evalsuite/models.py", "resolve_model"),
    ("build_variant (ONNX hash check)", "evalsuite/build/artifacts.py", "build_variant"),
    ("result file", "evalsuite/results/store.py", "put"),
)
TOTAL = ("evalsuite/run/sweep.py", "run_sweep")


class NaiveOnnxEncoder:
    """The mteb encoder a user writes first: tokenize, run, mean-pool and normalise each DataLoader batch as it comes.

    Args:
        onnx_path: the ONNX file (inputs ``input_ids``, ``attention_mask``, ``token_type_ids``).
        tokenizer_path: the model folder, for ``AutoTokenizer``.
        threads: onnxruntime intra-op threads.
        max_length: truncation length in tokens.

    Example:
        >>> enc = NaiveOnnxEncoder(artifact.path, source.path, threads=2)  # doctest: +SKIP
        >>> mteb.evaluate(enc, task, cache=None)  # doctest: +SKIP
    """

    def __init__(self, onnx_path: Path, tokenizer_path: Path, threads: int, max_length: int = 256) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        self.max_length = max_length

    @property
    def mteb_model_meta(self) -> Any:
        return _meta("benchmark/naive-onnx-float32")

    def encode(self, inputs: Any, *, task_metadata: Any = None, hf_split: str = "", hf_subset: str = "",
               prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
        out = []
        for batch in inputs:
            enc = self.tokenizer(batch["text"], padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
            hidden = self.session.run(None, {name: enc[name] for name in self.input_names})[0]
            mask = enc["attention_mask"][..., None].astype(np.float32)
            emb = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            out.append(emb / np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None))
        return np.concatenate(out).astype(np.float32)

    def similarity(self, a: Any, b: Any) -> Any:
        from mteb.similarity_functions import cos_sim

        return cos_sim(a, b)

    def similarity_pairwise(self, a: Any, b: Any) -> Any:
        from mteb.similarity_functions import pairwise_cos_sim

        return pairwise_cos_sim(a, b)


class RandomEncoder:
    """Random unit vectors at no cost: runs mteb's whole retrieval path once, untimed, so lazy imports are done."""

    mteb_model_meta = property(lambda self: _meta("benchmark/random"))
    similarity = NaiveOnnxEncoder.similarity
    similarity_pairwise = NaiveOnnxEncoder.similarity_pairwise

    def encode(self, inputs: Any, **kwargs: Any) -> np.ndarray:
        n = len(inputs.dataset)
        vectors = np.random.default_rng(n).standard_normal((n, 8)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@dataclass
class Setup:
    """What the three paths share: the model, its Float32 artifact, the data folder, threads."""

    source: ModelSource
    artifact: Artifact
    data_dir: Path  # holds ``scifact/``
    threads: int
    n_docs: int
    n_queries: int


def trim_beir(src: Path, dst: Path, limit_docs: int, split: str = "test") -> None:
    """Write a BEIR folder with the first ``limit_docs`` documents of ``src`` plus every document judged in ``split``."""
    files = beir_files(src, split)
    judged = set()  # may hold the header's "corpus-id" too, which names no document
    for line in files["qrels"].read_text(encoding="utf-8").splitlines():
        cols = line.strip().split("\t")
        if len(cols) == 3:
            judged.add(cols[1].strip())
    (dst / "qrels").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(files["queries"], dst / "queries.jsonl")
    shutil.copyfile(files["qrels"], dst / "qrels" / files["qrels"].name)
    opener = gzip.open if files["corpus"].suffix == ".gz" else open
    with opener(files["corpus"], "rt", encoding="utf-8") as f, open(dst / "corpus.jsonl", "w", encoding="utf-8") as out:
        kept = 0
        for line in f:
            if not line.strip():
                continue
            if kept < limit_docs or str(json.loads(line)["_id"]).strip() in judged:
                out.write(line if line.endswith("\n") else line + "\n")
                kept += 1


def prepare(task_dir: Path, work: Path, limit_docs: int | None, cache_dir: Path, threads: int) -> Setup:
    """Find the model, build (or find) its Float32 ONNX file, and lay out ``work/data/scifact``."""
    source = resolve_model(DEFAULT_MODEL)
    artifact = build_variant(source, BASELINE, cache_dir)
    data_dir = work / "data"
    folder = data_dir / find_task(TASK).beir_folder  # type: ignore[operator]
    if limit_docs is None:
        data_dir.mkdir(parents=True)
        folder.symlink_to(task_dir.resolve(), target_is_directory=True)
    else:
        trim_beir(task_dir, folder, limit_docs)
    data = read_beir(folder, find_task(TASK).split)
    _evaluate(RandomEncoder(), load_task(find_task(TASK), data_dir))  # imports and registries, untimed
    return Setup(source, artifact, data_dir, threads, len(data.corpus), len(data.queries))


@dataclass
class Timing:
    """One timed run: wall and process CPU seconds (all threads), the part spent evaluating, and NDCG@10."""

    wall: float
    cpu: float
    evaluate: float
    ndcg: float = math.nan


def run_naive(setup: Setup) -> Timing:
    """(a): session, tokenizer and task are loaded inside the clock, then ``mteb.evaluate`` runs."""
    started, cpu = time.perf_counter(), time.process_time()
    encoder = NaiveOnnxEncoder(setup.artifact.path, setup.source.path, setup.threads, setup.source.settings.max_seq_length)
    loaded = load_task(find_task(TASK), setup.data_dir)
    evaluating = time.perf_counter()
    ndcg = _evaluate(encoder, loaded)
    done = time.perf_counter()
    return Timing(done - started, time.process_time() - cpu, done - evaluating, ndcg)


def _evaluate(encoder: Any, loaded: Any) -> float:
    """``mteb.evaluate`` as a user calls it (no result cache, batches of 32); the exact mean of per-query NDCG@10."""
    import datasets
    import mteb

    datasets.disable_progress_bars()
    per_query: dict[str, float] = {}

    def capture(scores: dict[str, dict[str, float]], *args: Any, **kwargs: Any) -> dict[str, float]:
        per_query.update({qid: float(v["ndcg_cut_10"]) for qid, v in scores.items()})
        return {}

    loaded.mteb_task.task_specific_scores = capture  # exact per-query values instead of mteb's rounded mean
    with _quiet():
        mteb.evaluate(encoder, loaded.mteb_task, cache=None, co2_tracker=False, show_progress_bar=False,
                      encode_kwargs={"batch_size": NAIVE_BATCH, "show_progress_bar": False})
    return math.fsum(per_query.values()) / len(per_query)


def kernel_feeds(setup: Setup, policy: BatchPolicy, tokenizer: TextTokenizer) -> list[dict[str, np.ndarray]]:
    """(b)'s inputs: every text of the task tokenized and padded into the batches ``policy`` makes, documents first."""
    spec = find_task(TASK)
    data = read_beir(setup.data_dir / spec.beir_folder, spec.split)  # type: ignore[operator]
    settings = setup.source.settings
    # The texts mteb hands an encoder: title and text joined and stripped, queries as they are.
    docs = [settings.document_prefix + ((d["title"] + " " + d["text"]).strip() if d["title"] else d["text"].strip())
            for d in data.corpus.values()]
    queries = [settings.query_prefix + q for q in data.queries.values()]
    feeds = []
    for texts, size in ((docs, policy.batch_size), (queries, policy.query_batch_size)):
        tokenized = tokenizer(texts)
        for rows in plan_batches(tokenized.lengths, size, policy.order):
            ids, mask = pad_batch(tokenized, rows, tokenizer.pad_id)
            feeds.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    return feeds


def run_kernel(setup: Setup, feeds: list[dict[str, np.ndarray]]) -> Timing:
    """(b): ``session.run`` alone over ``feeds`` (one untimed warm-up call first)."""
    session = make_session(setup.artifact.path, setup.threads)
    names = [i.name for i in session.get_inputs()]
    feeds = [{n: f[n] for n in names} for f in feeds]
    session.run(None, feeds[-1])
    started, cpu = time.perf_counter(), time.process_time()
    for feed in feeds:
        session.run(None, feed)
    wall = time.perf_counter() - started
    return Timing(wall, time.process_time() - cpu, wall)


def cold_cache(setup: Setup, root: Path) -> Path:
    """A new cache folder holding only links to the Float32 artifact: conversion is skipped, embeddings are cold."""
    cache = Path(tempfile.mkdtemp(dir=root, prefix="cache-"))
    folder = artifact_dir(setup.source, BASELINE.name, cache)
    folder.mkdir(parents=True)
    for name in ("model.onnx", "meta.json"):
        (folder / name).symlink_to(setup.artifact.path.parent / name)
    return cache


def run_evalsuite(setup: Setup, root: Path, profile: Path | None = None) -> tuple[Timing, dict[str, float]]:
    """(c): ``run_sweep`` as a new ``evalsuite run`` process would do it; the profile breakdown if asked."""
    cache = cold_cache(setup, root)
    results = Path(tempfile.mkdtemp(dir=root, prefix="results-"))
    cfg = SweepConfig(variants=[BASELINE], tasks=[TASK], data_dir=setup.data_dir, cache_dir=cache, results_dir=results,
                      threads=setup.threads)
    encoder_module._shared_tokenizer.cache_clear()  # a new process has no token ids memoised yet
    profiler = cProfile.Profile() if profile else None
    started, cpu = time.perf_counter(), time.process_time()
    with _quiet():
        if profiler:
            profiler.enable()
        report = run_sweep(cfg)
        if profiler:
            profiler.disable()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    result = report.results[find_task(TASK).name][BASELINE.name]
    breakdown = {}
    if profiler and profile:
        profiler.dump_stats(str(profile))
        breakdown = profile_breakdown(pstats.Stats(profiler))
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(results, ignore_errors=True)
    return Timing(wall, cpu, float(result.timings["evaluate_s"]), result.ndcg_at_10), breakdown


def profile_breakdown(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds of each :data:`BREAKDOWN` entry, the total of ``run_sweep`` and the rest."""
    cumulative: dict[str, float] = {}
    total = 0.0
    for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        path = filename.replace(os.sep, "/")
        if path.endswith(TOTAL[0]) and func == TOTAL[1]:
            total = max(total, ct)
        for label, suffix, name in BREAKDOWN:
            if func == name and path.endswith(suffix):
                cumulative[label] = cumulative.get(label, 0.0) + ct
    out = {label: round(cumulative.get(label, 0.0), 3) for label, _s, _n in BREAKDOWN}
    out["rest"] = round(total - sum(out.values()), 3)
    out["total (run_sweep, profiled)"] = round(total, 3)
    return out


def benchmark(task_dir: Path, *, limit_docs: int | None = None, repeats: int = 1, cache_dir: Path | None = None,
              threads: int | None = None, profile: Path | None = None) -> dict[str, Any]:
    """Time (a), (b) and (c) ``repeats`` times each, interleaved; return the numbers, best times, ratios and verdicts.

    Silent: it prints nothing, so it can be imported and called from tests or notebooks.
    """
    threads = threads or default_threads()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="eval-throughput-") as tmp:
        work = Path(tmp)
        setup = prepare(task_dir, work, limit_docs, cache_dir or default_cache_dir(), threads)
        policy = BatchPolicy()
        tokenizer = TextTokenizer(setup.source.path, setup.source.settings.max_seq_length)
        same = kernel_feeds(setup, policy, tokenizer)
        all32 = kernel_feeds(setup, BatchPolicy(policy.batch_size, policy.batch_size, policy.order), tokenizer)
        # Token positions each path feeds the model: what padding in the given order can cost at most.
        given = kernel_feeds(setup, BatchPolicy(NAIVE_BATCH, NAIVE_BATCH, "given"), tokenizer)
        tokens = {"naive_given_order": _positions(given), "evalsuite": _positions(same),
                  "unpadded": sum(int(f["attention_mask"].sum()) for f in same)}
        del given
        runs: dict[str, list[Timing]] = {"naive": [], "kernel": [], "kernel_all32": [], "evalsuite": []}
        for _ in range(repeats):
            runs["naive"].append(run_naive(setup))
            runs["kernel"].append(run_kernel(setup, same))
            runs["kernel_all32"].append(run_kernel(setup, all32))
            runs["evalsuite"].append(run_evalsuite(setup, work)[0])
        breakdown = run_evalsuite(setup, work, profile)[1] if profile else {}
    times = {k: [t.wall for t in v] for k, v in runs.items()}
    times |= {f"{k}_cpu": [t.cpu for t in v] for k, v in runs.items()}
    times |= {"naive_evaluate": [t.evaluate for t in runs["naive"]], "evalsuite_evaluate": [t.evaluate for t in runs["evalsuite"]]}
    ndcg = {"naive": runs["naive"][-1].ndcg, "evalsuite": runs["evalsuite"][-1].ndcg}
    best = {k: min(v) for k, v in times.items()}
    ratios = {"naive_over_evalsuite": best["naive"] / best["evalsuite"],
              "evalsuite_over_kernel": best["evalsuite"] / best["kernel"],
              "evalsuite_over_kernel_all32": best["evalsuite"] / best["kernel_all32"],
              # CPU seconds of the whole process: steadier than wall time when something else uses the cores.
              "cpu_naive_over_evalsuite": best["naive_cpu"] / best["evalsuite_cpu"],
              "cpu_evalsuite_over_kernel": best["evalsuite_cpu"] / best["kernel_cpu"]}
    diff = abs(ndcg["naive"] - ndcg["evalsuite"])
    checks = {"speedup_vs_naive": ratios["naive_over_evalsuite"] >= TARGET_VS_NAIVE,
              "overhead_vs_kernel": ratios["evalsuite_over_kernel"] <= TARGET_VS_KERNEL,
              "same_ndcg": diff <= NDCG_TOLERANCE}
    return {
        "task": find_task(TASK).name, "model": DEFAULT_MODEL, "variant": BASELINE.name, "onnx_sha256": setup.artifact.sha256,
        "documents": setup.n_docs, "queries": setup.n_queries, "limit_docs": limit_docs, "repeats": repeats,
        "threads": threads, "batch_policy": policy.to_dict(), "naive_batch_size": NAIVE_BATCH,
        "times_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "best_s": {k: round(v, 3) for k, v in best.items()},
        "median_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "ndcg_at_10": {**ndcg, "abs_difference": diff},
        "token_positions": tokens,
        "targets": {"naive_over_evalsuite_min": TARGET_VS_NAIVE, "evalsuite_over_kernel_max": TARGET_VS_KERNEL,
                    "ndcg_tolerance": NDCG_TOLERANCE},
        "pass": {**checks, "all": all(checks.values())},
        "profile_breakdown_s": breakdown, "profile_file": str(profile) if profile else None,
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "machine": cpu_info(), "versions": versions(),
    }


def tables(report: dict[str, Any]) -> list[Table]:
    """The report as rich tables: times, ratios and checks, and the profile breakdown when there is one."""
    best, med, ndcg, ok = report["best_s"], report["median_s"], report["ndcg_at_10"], report["pass"]
    title = (f"{report['task']}: {report['documents']} documents, {report['queries']} queries, {report['threads']} threads, "
             f"best of {report['repeats']}")
    times = Table(title=title)
    for col in ("path", "wall s", "median s", "CPU s", "NDCG@10"):
        times.add_column(col, justify="left" if col == "path" else "right")
    rows = (
        ("(a) naive: mteb.evaluate, given order, batches of 32", "naive", f"{ndcg['naive']:.5f}"),
        ("    of which mteb.evaluate", "naive_evaluate", ""),
        ("(b) kernel: session.run only, evalsuite's batches", "kernel", ""),
        ("(b') kernel, all texts in sorted batches of 32", "kernel_all32", ""),
        ("(c) evalsuite run_sweep, cold embedding cache", "evalsuite", f"{ndcg['evalsuite']:.5f}"),
        ("    of which run_mteb", "evalsuite_evaluate", ""),
    )
    for label, key, score in rows:
        cpu = f"{best[key + '_cpu']:.2f}" if key + "_cpu" in best else ""
        times.add_row(label, f"{best[key]:.2f}", f"{med[key]:.2f}", cpu, score)
    verdict = {True: "[green]PASS[/green]", False: "[red]FAIL[/red]"}
    checks = Table(title=f"targets (batches of (b) and (c): {report['batch_policy']['key']})")
    for col in ("check", "value", "target", ""):
        checks.add_column(col, justify="left" if col == "check" else "right")
    r = report["ratios"]
    checks.add_row("(a)/(c) speed-up over the naive loop", f"{r['naive_over_evalsuite']:.2f}x", f">= {TARGET_VS_NAIVE}x", verdict[ok["speedup_vs_naive"]])
    checks.add_row("(c)/(b) overhead over the kernel", f"{r['evalsuite_over_kernel']:.3f}x", f"<= {TARGET_VS_KERNEL}x", verdict[ok["overhead_vs_kernel"]])
    checks.add_row("(c)/(b') over the kernel, all in 32s", f"{r['evalsuite_over_kernel_all32']:.3f}x", "", "")
    checks.add_row("CPU seconds (a)/(c), for a busy machine", f"{r['cpu_naive_over_evalsuite']:.2f}x", "", "")
    checks.add_row("CPU seconds (c)/(b), for a busy machine", f"{r['cpu_evalsuite_over_kernel']:.3f}x", "", "")
    checks.add_row("|NDCG@10 (a) - (c)|", f"{ndcg['abs_difference']:.1e}", f"<= {NDCG_TOLERANCE:.0e}", verdict[ok["same_ndcg"]])
    tok = report["token_positions"]
    checks.caption = (f"token positions fed to the model: (a) {tok['naive_given_order']:,}, (b)/(c) {tok['evalsuite']:,}, "
                      f"unpadded {tok['unpadded']:,}; (a) pads {tok['naive_given_order'] / tok['evalsuite'] - 1:.1%} more")
    out = [times, checks]
    if report["profile_breakdown_s"]:
        prof = Table(title="(c) under cProfile: cumulative seconds (profiling inflates Python-heavy parts)")
        prof.add_column("where")
        prof.add_column("s", justify="right")
        for label, seconds in report["profile_breakdown_s"].items():
            prof.add_row(label, f"{seconds:.3f}")
        out.append(prof)
    return out


def main(
    task_dir: Annotated[Path, typer.Option(help="SciFact BEIR folder.", exists=True, file_okay=False)] = Path("../shared/data/beir/scifact"),
    limit_docs: Annotated[Optional[int], typer.Option(help="Keep only the first N documents plus every judged one (quick runs).", min=1)] = None,
    repeats: Annotated[int, typer.Option(help="Runs of each path; the best is compared.", min=1)] = 1,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Where the Float32 ONNX file is built or found (default: evalsuite's cache folder).", file_okay=False)] = None,
    threads: Annotated[Optional[int], typer.Option(help="onnxruntime threads for all three paths (default: all usable cores).", min=1)] = None,
    output: Annotated[Optional[Path], typer.Option(help="Also write the report as JSON here.", dir_okay=False)] = None,
    profile: Annotated[Optional[Path], typer.Option(help="Profile one more (c) run with cProfile; save the stats here.", dir_okay=False)] = None,
) -> None:
    """Time SciFact evaluation three ways: (a) a naive mteb loop, (b) onnxruntime alone, (c) evalsuite's run."""
    console = Console(stderr=True)
    with console.status("benchmarking (a) naive, (b) kernel, (c) evalsuite"):
        report = benchmark(task_dir, limit_docs=limit_docs, repeats=repeats, cache_dir=cache_dir, threads=threads, profile=profile)
    for table in tables(report):
        Console().print(table)
    load = report["load_average"]
    Console().print(f"load average before/after: {load['before'][0]:.2f} / {load['after'][0]:.2f} on {os.cpu_count()} cores; "
                    "the benchmark keeps every core busy itself; a load well above 0 before it means other work competed", highlight=False, style="dim")
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    raise typer.Exit(0 if report["pass"]["all"] else 1)


def _positions(feeds: list[dict[str, np.ndarray]]) -> int:
    return sum(int(f["input_ids"].size) for f in feeds)


def _meta(name: str) -> Any:
    from mteb.models.model_meta import ModelMeta

    return ModelMeta.create_empty({"name": name, "revision": "1", "similarity_fn_name": "cosine", "framework": ["ONNX"]})


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("mteb").setLevel(logging.ERROR)
        yield


if __name__ == "__main__":
    typer.run(main)
