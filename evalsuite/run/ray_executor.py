"""An executor on Ray: the driver plans, converts and evaluates; a pool of actors runs onnxruntime on cache shards.

A run goes in three steps, so its results are those of the local executor, bit for bit:
1. The driver builds every variant (conversion once per variant, cached by content as always).
2. For each evaluation without a reusable result, the driver finds the embedding-cache shards it lacks
   (:func:`~evalsuite.run.shards.missing_shards`: the encoder's own batches, order and shard layout) and hands
   them to the actors. The ONNX bytes go through the object store once per variant (``ray.put``); each actor keeps
   one onnxruntime session with ``threads_per_actor`` threads; the embeddings come back through the object store
   and the driver writes each shard into its embedding cache as it arrives. Workers need no shared file system,
   and a killed driver resumes from the cache like a local run. A killed actor is restarted by Ray and its shard
   retried (``max_restarts``, ``max_task_retries``).
3. The driver evaluates every unit in plan order (:func:`~evalsuite.run.executor.run_units`); mteb finds every
   embedding in the cache.

Plain actors, not Ray Data ``map_batches``: Ray Data regroups rows into blocks and batches by count, so to keep
the encoder's batch boundaries a row would have to be a whole shard and ``map_batches`` would run with
``batch_size=1`` over opaque ragged payloads (a pyarrow round trip for nothing); the driver also needs each shard's
result as it finishes to store it. A pool of actors with a bounded window of shards in flight does exactly that.

Example:
    >>> run_sweep(cfg, executor=RayExecutor(RayOptions(actors=2, threads_per_actor=1)))  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evalsuite.config import first_line
from evalsuite.encode.cache import EmbeddingCache
from evalsuite.errors import DataUnavailable, EvalsuiteError
from evalsuite.machine import kernel_family
from evalsuite.run.executor import Execution, run_units
from evalsuite.run.plan import Plan
from evalsuite.run.shards import ShardJob, missing_shards, run_shard
from evalsuite.run.units import Events, UnitRunner

FAULT_ENV = "EVALSUITE_RAY_FAULT_MARKER"  # tests: the first actor call that creates this file kills its process
RESTARTS = 3  # a killed actor is restarted (and its shard retried) this many times before the run fails


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: ``address`` None starts a local cluster; ``actors`` None fills the cluster's CPUs."""

    address: str | None = None
    actors: int | None = None
    threads_per_actor: int = 1


def require_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        raise EvalsuiteError(f'--executor ray needs Ray ({first_line(exc)}): pip install "evalsuite[ray]"') from exc


class RayExecutor:
    """Runs a plan with its encoding on Ray actors (see the module docstring)."""

    def __init__(self, options: RayOptions | None = None) -> None:
        require_ray()
        self.options = options or RayOptions()
        if self.options.address:  # before anything is built or loaded
            _check_reachable(self.options.address)

    def execute(self, plan: Plan, events: Events) -> Execution:
        runner = UnitRunner(plan, events)
        for unit in plan.units:
            if unit.action == "build":
                runner.build(unit)
        work = _missing_work(runner)
        first = next(work, None)
        if first is not None:  # with everything cached, Ray is not even started
            with _cluster(self.options):
                _ShardPool(self.options, events).run(itertools.chain([first], work))
        return run_units(runner)


@dataclass
class _Work:
    """The missing shards of one evaluate unit, and where they go."""

    label: str  # "float32 on SciFact"
    variant: str
    task: str
    onnx: Path
    onnx_sha256: str
    pooling: str
    normalize: bool
    cache: EmbeddingCache
    jobs: list[ShardJob]
    done: int = 0  # texts stored so far

    @property
    def rows(self) -> int:
        return sum(j.rows for j in self.jobs)


def _missing_work(runner: UnitRunner) -> Iterator[_Work]:
    """Unit by unit, in plan order, the shards still to compute (found lazily, while actors work on earlier ones); a
    shard two units share (the queries of two batch compositions) is sent once."""
    cfg = runner.cfg
    sent: set[str] = set()
    for unit in runner.plan.units:
        if unit.action != "evaluate" or runner.stored(unit) is not None:
            continue
        try:
            loaded = runner.loaded(unit.task)  # type: ignore[arg-type]
        except DataUnavailable:
            continue  # run_units reports (or skips) it exactly as the local executor does
        art = runner.artifacts[unit.variant]
        jobs = [j for j in missing_shards(art, runner.source, runner.policy(unit), cfg.cache_dir, loaded) if j.key not in sent]
        sent.update(j.key for j in jobs)
        if jobs:
            settings = runner.source.settings
            yield _Work(str(unit).removeprefix("evaluate "), unit.variant, unit.task, art.path, art.sha256,  # type: ignore[arg-type]
                        settings.pooling, settings.normalize, EmbeddingCache(cfg.cache_dir, art.sha256), jobs)


class _ShardPool:
    """Actors that encode shards; at most ``2 x actors`` shards in flight, so the object store holds little."""

    def __init__(self, options: RayOptions, events: Events) -> None:
        import ray
        from ray.util import ActorPool

        threads = options.threads_per_actor
        cpus = int(ray.cluster_resources().get("CPU", 0))
        count = options.actors or max(1, cpus // threads)
        if count * threads > cpus:  # actors that can never be placed would wait forever
            raise EvalsuiteError(f"--actors {count} x --threads-per-actor {threads} needs {count * threads} CPUs; "
                                 f"the Ray cluster has {cpus}")
        worker = ray.remote(num_cpus=threads, max_restarts=RESTARTS, max_task_retries=RESTARTS)(ShardWorker)
        self.actors = [worker.remote(threads) for _ in range(count)]
        self.pool = ActorPool(self.actors)
        self.window = 2 * count
        placed = ray.get([a.node.remote() for a in self.actors])
        nodes = len({node for node, _ in placed})
        families = sorted({family for _, family in placed} | {kernel_family()})
        if len(families) > 1:
            # Shard keys name the driver's int8 kernel family; an actor of another family would store numbers under a
            # key that does not describe them.
            raise EvalsuiteError(f"the Ray cluster and this driver mix CPUs of different int8 kernel families ({', '.join(families)}), "
                                 "whose int8 builds give different numbers; run on nodes of one kind")
        events.say(f"Ray: {count} actors x {threads} onnxruntime thread{'s' if threads > 1 else ''} on {nodes} node{'s' if nodes > 1 else ''}")
        self.events = events
        self.tokens = itertools.count()
        self.onnx_ref: tuple[str, Any] | None = None  # (sha256, object ref) of the variant being sent

    def run(self, work: Iterator[_Work]) -> None:
        import ray

        in_flight: dict[int, tuple[_Work, ShardJob]] = {}
        try:
            for w in work:
                self.events.say(f"encoding {w.label} on {len(self.actors)} Ray actors: {len(w.jobs)} shards, {w.rows} texts")
                for job in w.jobs:
                    while len(in_flight) >= self.window:
                        self._store(in_flight)
                    token = next(self.tokens)
                    in_flight[token] = (w, job)
                    self.pool.submit(lambda actor, args: actor.encode.remote(*args),
                                     (token, job.batches, [self._onnx_ref(w)], w.onnx_sha256, w.pooling, w.normalize))
            while in_flight:
                self._store(in_flight)
        finally:
            for actor in self.actors:
                ray.kill(actor)
            self.onnx_ref = None

    def _onnx_ref(self, w: _Work) -> Any:
        """The variant's ONNX bytes in the object store, put once per variant (actors fetch them when they switch)."""
        import ray

        if self.onnx_ref is None or self.onnx_ref[0] != w.onnx_sha256:
            self.onnx_ref = (w.onnx_sha256, ray.put(w.onnx.read_bytes()))
        return self.onnx_ref[1]

    def _store(self, in_flight: dict[int, tuple[_Work, ShardJob]]) -> None:
        token, vectors = self.pool.get_next_unordered()
        w, job = in_flight.pop(token)
        if vectors.shape[0] != job.rows:
            raise EvalsuiteError(f"{w.label}: a Ray actor returned {vectors.shape[0]} embeddings for {job.rows} texts")
        w.cache.put(job.key, vectors)  # the driver owns the cache: a killed run resumes from here
        w.done += job.rows
        if self.events.progress:
            self.events.progress(w.variant, f"{w.task} on Ray", w.done, w.rows)


class ShardWorker:
    """A Ray actor: one onnxruntime session (of the variant it last saw), shards in, embeddings out."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.onnx_sha256: str | None = None
        self.session: Any = None

    def node(self) -> tuple[str, str]:
        """This actor's node, and its CPU's int8 kernel family."""
        import ray

        return ray.get_runtime_context().get_node_id(), kernel_family()

    def encode(self, token: int, batches: list[tuple[np.ndarray, np.ndarray]], onnx: list[Any], onnx_sha256: str,
               pooling: str, normalize: bool) -> tuple[int, np.ndarray]:
        _fault_injection()
        if onnx_sha256 != self.onnx_sha256:
            import ray

            from evalsuite.encode.session import make_session

            with tempfile.TemporaryDirectory(prefix="evalsuite-ray-") as folder:  # onnxruntime reads it into memory
                path = Path(folder) / "model.onnx"
                path.write_bytes(ray.get(onnx[0]))
                self.session = make_session(path, self.threads)
            self.onnx_sha256 = onnx_sha256
        return token, run_shard(self.session, batches, pooling, normalize)


def _fault_injection() -> None:
    marker = os.environ.get(FAULT_ENV)
    if not marker:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(1)  # a worker killed mid-shard, once per marker file


QUIET = {"log_to_driver": False, "logging_level": logging.ERROR, "include_dashboard": False}
LOCAL_STARTS = 3  # Ray gives a new node 30 s to register; on a busy machine a second try usually makes it


def start_local_ray(cpus: int) -> None:
    """``ray.init`` of a local cluster with ``cpus`` CPUs, tried again when its node does not come up in time."""
    import ray

    for attempt in range(1, LOCAL_STARTS + 1):
        try:
            ray.init(num_cpus=cpus, **QUIET)
            return
        except Exception:
            ray.shutdown()
            if attempt == LOCAL_STARTS:
                raise


@contextmanager
def _cluster(options: RayOptions) -> Iterator[None]:
    """Connected to Ray for the run: a session already open in this process, ``options.address``, or a local cluster."""
    import ray

    if ray.is_initialized():
        yield
        return
    try:
        if options.address:
            ray.init(address=options.address, **QUIET)
        else:
            start_local_ray(options.actors * options.threads_per_actor if options.actors else os.cpu_count() or 1)
    except Exception as exc:  # ray.init raises plain Exception too (a node that did not register in time)
        where = f"--address {options.address}" if options.address else "a local Ray cluster"
        raise EvalsuiteError(f"{where}: cannot start or connect to Ray: {first_line(exc)}") from exc
    try:
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail at once on a ``HOST:PORT`` nothing listens on; Ray itself retries such an address for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in host:
        return  # "auto", "ray://..." and other forms are Ray's to judge
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise EvalsuiteError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
                             "start one with: ray start --head") from exc
