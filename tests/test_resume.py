"""Resume and integrity of ``evalsuite run``: killed, damaged, concurrent, repeated and extended sweeps.

Every test runs the ``evalsuite run`` command on a tiny random BERT and a synthetic BEIR task, and compares its
numbers bit for bit with one uninterrupted reference run made in its own folders: the same command with the same
batches and one onnxruntime thread, so the same computation. Runs that are killed, and runs that must overlap, are
real processes (forked by tests/zygote.py, which saves each the seconds a new interpreter spends importing mteb);
the others go through the console entry point in this process (tests/clirun.py: ``invoke``). A run is killed where it waits on purpose
(tests/pause_at.py: after the export, before a shard is committed, after a result is stored), so no kill depends
on a poller catching a short window; the folders are then checked for what that point means. Timeouts are only a
safety net.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import pause_at
from clirun import environment, invoke
from conftest import make_beir
from zygote import Child, Zygote

from evalsuite.results import CHECKSUM_FIELD, ResultStore, content_digest
from evalsuite.files import read_blob

VARIANTS = "float16"  # the sweep is Float32 (always) and Float16
TIMEOUT = 300  # seconds; a safety net only, no test asserts on time
Key = tuple[str, str]  # (task, variant)


@dataclass
class Folders:
    """The cache and results folders of one line of runs."""

    cache: Path
    results: Path

    def result_files(self) -> dict[str, Path]:
        return {p.stem: p for p in self.results.glob("*/SciFact/*.json")}

    def shards(self) -> list[Path]:
        return sorted(self.cache.glob("embeddings/*/*.npy"))

    def artifacts(self) -> dict[str, Path]:
        """``{variant name: cache folder}`` of the committed ONNX artifacts (``export`` is the raw export)."""
        return {p.name.rsplit("-", 1)[0]: p for p in self.cache.glob("onnx/*/*") if p.is_dir() and not p.name.startswith(".")}

    def leftovers(self) -> list[Path]:
        """Temporary files or folders of interrupted writers, in the ONNX cache and the results."""
        return [p for root in (self.cache / "onnx", self.results) for p in root.rglob(".*")]

    def copy_to(self, folder: Path) -> Folders:
        shutil.copytree(self.cache, folder / "cache")
        shutil.copytree(self.results, folder / "results")
        return Folders(folder / "cache", folder / "results")


@dataclass
class Outcome:
    """What one finished run printed: its ``--json`` rows and its stderr log."""

    rows: dict[Key, dict[str, object]]
    log: str

    def ndcg(self) -> dict[Key, float]:
        return {k: float(r["ndcg_at_10"]) for k, r in self.rows.items()}  # type: ignore[arg-type]

    def computed(self) -> set[Key]:
        return {k for k, r in self.rows.items() if not r["reused"]}


@dataclass
class Run:
    """A started ``evalsuite run`` (a child of the process server) and the files its stdout and stderr go to."""

    proc: Child
    out: Path
    err: Path

    def log(self) -> str:
        return self.err.read_text(errors="replace")


@dataclass
class Setup:
    model: Path
    data: Path
    scratch: Path
    server: Zygote  # starts the real processes (tests/zygote.py)


@pytest.fixture(scope="module")
def setup(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory, process_server: Zygote) -> Setup:
    root = tmp_path_factory.mktemp("resume")
    # Enough documents for several shards of 16 batches of 4 (10 of documents, 4 of queries): a kill can fall
    # between shards, and two damaged shards leave others intact.
    make_beir(root / "data" / "scifact", n_docs=640, n_queries=60, seed=3)
    return Setup(tiny_model, root / "data", root, process_server)


@pytest.fixture(scope="module")
def reference(setup: Setup) -> tuple[Folders, Outcome]:
    """One uninterrupted sweep from empty folders: the numbers every other run must reproduce exactly."""
    folders = Folders(setup.scratch / "ref-cache", setup.scratch / "ref-results")
    outcome = run_here(setup, folders)
    assert outcome.computed() == set(outcome.rows) == {("SciFact", "float32"), ("SciFact", "float16")}
    return folders, outcome


# --- helpers -------------------------------------------------------------------------------------------

def start(setup: Setup, folders: Folders, *extra: str, variants: str = VARIANTS, pause: str | None = None) -> Run:
    """Start ``evalsuite run`` with its cache and results folders given through the environment; with ``pause``, the
    run waits at that point (tests/pause_at.py) until it is killed."""
    env = environment(EVALSUITE_CACHE_DIR=str(folders.cache), EVALSUITE_RESULTS_DIR=str(folders.results))
    logs = setup.scratch / "logs"
    logs.mkdir(exist_ok=True)
    out = logs / f"{time.monotonic_ns()}.out"
    err = out.with_suffix(".err")
    args = ["run", "-m", str(setup.model), "-t", "scifact", "--data-dir", str(setup.data), "-v", variants,
            "--batch-size", "4", "--threads", "1", "--json", *extra]
    # Files, not pipes: a run never blocks on a full pipe, and a killed run's output stays readable.
    child = setup.server.start(args, env=env, stdout=out, stderr=err, cwd=setup.scratch,
                               pause=None if pause is None else (pause, out.with_suffix(".paused")))
    return Run(child, out, err)


def run_here(setup: Setup, folders: Folders, *extra: str, variants: str = VARIANTS) -> Outcome:
    """The command of :func:`start` in this process, to the end; it must exit 0 and print its ``--json`` document."""
    env = environment(EVALSUITE_CACHE_DIR=str(folders.cache), EVALSUITE_RESULTS_DIR=str(folders.results))
    done = invoke("run", "-m", setup.model, "-t", "scifact", "--data-dir", setup.data, "-v", variants, "--batch-size", "4",
                  "--threads", "1", "--json", *extra, cwd=setup.scratch, env=env)
    assert done.returncode == 0, f"evalsuite run exited {done.returncode}:\n{done.stderr[-3000:]}"
    return Outcome({(r["task"], r["variant"]): r for r in json.loads(done.stdout)["results"]}, done.stderr)


def finish(run: Run) -> Outcome:
    """Wait for a run; it must exit 0 and print its ``--json`` document."""
    try:
        code = run.proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        run.proc.kill()
        run.proc.wait()
        pytest.fail(f"evalsuite run did not finish within {TIMEOUT} s")
    assert code == 0, f"evalsuite run exited {code}:\n{run.log()[-3000:]}"
    doc = json.loads(run.out.read_text())
    return Outcome({(r["task"], r["variant"]): r for r in doc["results"]}, run.log())


def kill_at_pause(run: Run) -> None:
    """SIGKILL a run started with ``pause`` once it waits at its point; fail if it ends first (it never got there)."""
    pause_at.wait_until_paused(run.proc, run.out.with_suffix(".paused"), run.err)
    os.kill(run.proc.pid, signal.SIGKILL)
    assert run.proc.wait(timeout=TIMEOUT) == -signal.SIGKILL


def per_query(folders: Folders) -> dict[str, dict[str, float]]:
    return {variant: json.loads(p.read_text())["per_query_ndcg_at_10"] for variant, p in folders.result_files().items()}


def stamp(path: Path) -> tuple[int, int]:
    """(inode, mtime in ns): both change when a file is rewritten, even atomically."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def readable(path: Path) -> bool:
    """Whether a result file passes ResultStore's checks (JSON, schema, checksum, fields)."""
    return ResultStore(path.parents[2]).get(path.parent.parent.name, path.parent.name, path.stem) is not None


def shard_rows(path: Path) -> int:
    payload = read_blob(path)
    assert payload is not None, f"{path} is not a valid shard"
    return int(np.load(io.BytesIO(payload)).shape[0])


def timings(folders: Folders, variant: str) -> dict[str, float]:
    return json.loads(folders.result_files()[variant].read_text())["timings"]


def assert_same_numbers(folders: Folders, outcome: Outcome, reference: tuple[Folders, Outcome]) -> None:
    ref_folders, ref_outcome = reference
    assert outcome.ndcg() == ref_outcome.ndcg()  # exact float equality: bit for bit
    assert per_query(folders) == per_query(ref_folders)
    for key, row in outcome.rows.items():
        assert row["onnx_sha256"] == ref_outcome.rows[key]["onnx_sha256"]


# --- tests -----------------------------------------------------------------------------------------------

def test_killed_at_several_points_resumes_to_same_numbers_without_redoing_work(setup: Setup, reference: tuple[Folders, Outcome],
                                                                               tmp_path: Path) -> None:
    folders = Folders(tmp_path / "cache", tmp_path / "results")

    # 1. During the ONNX export: its temporary build folder exists, nothing is committed.
    run = start(setup, folders, pause="export")
    kill_at_pause(run)
    assert any(folders.cache.glob("onnx/*/.export-*")), "killed during the export: its temporary folder is left"
    assert folders.artifacts() == {} and not folders.shards()

    # 2. Float32 embedded part-way: five shards committed, the sixth written but not renamed, no result yet.
    # (Reaching this point at all shows that the export lock held by the killed run 1 was released.)
    run = start(setup, folders, pause="shard:6")
    kill_at_pause(run)
    assert len(folders.shards()) == 5
    assert "float32" not in folders.result_files(), "killed too late: float32 was already finished"
    assert sorted(folders.artifacts()) == ["export", "float32"]
    assert not any(folders.cache.glob("onnx/*/.export-*")), "run 1's half-built export was not cleaned up"
    shards_at_kill = {p: stamp(p) for p in folders.shards()}
    artifacts_at_kill = {name: stamp(p / "model.onnx") for name, p in folders.artifacts().items()}

    # 3. After the float32 result is stored, while float16 is being built or evaluated.
    run = start(setup, folders, pause="result:float32")
    kill_at_pause(run)
    assert "float32" in folders.result_files() and readable(folders.result_files()["float32"])
    assert "float16" not in folders.result_files(), "killed too late: float16 was already finished"
    float32_result = stamp(folders.result_files()["float32"])

    # 4. Run to the end.
    outcome = run_here(setup, folders)
    assert_same_numbers(folders, outcome, reference)
    assert outcome.computed() == {("SciFact", "float16")}, "the float32 result of run 3 was recomputed"
    assert stamp(folders.result_files()["float32"]) == float32_result
    # The shards of run 2 were read, never rewritten, and saved exactly their texts from being encoded again.
    assert {p: stamp(p) for p in shards_at_kill} == shards_at_kill
    assert timings(folders, "float32")["texts_from_cache"] == sum(shard_rows(p) for p in shards_at_kill)
    assert {name: stamp(p / "model.onnx") for name, p in folders.artifacts().items() if name in artifacts_at_kill} == artifacts_at_kill
    assert "exporting" not in outcome.log and "building float32" not in outcome.log
    assert folders.leftovers() == []


def test_damaged_cache_entries_and_results_are_rebuilt_and_never_used(setup: Setup, reference: tuple[Folders, Outcome],
                                                                      tmp_path: Path) -> None:
    folders = reference[0].copy_to(tmp_path)
    # Embedding shards of float32: one truncated, one with a flipped byte.
    float32_shards = sorted(folders.cache.glob(f"embeddings/{reference[1].rows['SciFact', 'float32']['onnx_sha256'][:16]}/*.npy"))
    truncated, flipped = float32_shards[3], float32_shards[7]
    damaged_rows = shard_rows(truncated) + shard_rows(flipped)
    truncated.write_bytes(truncated.read_bytes()[:-100])
    _flip_byte(flipped)
    # ONNX artifacts: float16's model.onnx and float32's meta.json (no longer UTF-8) damaged; a killed build's folder.
    artifacts = folders.artifacts()
    _flip_byte(artifacts["float16"] / "model.onnx")
    _flip_byte(artifacts["float32"] / "meta.json")
    half_built = artifacts["float16"].with_name(f".{artifacts['float16'].name}.killed")
    half_built.mkdir()
    (half_built / "model.onnx").write_bytes(b"partial")
    # Results: float32's truncated; float16's still valid JSON with the right fields, but one number changed.
    files = folders.result_files()
    files["float32"].write_bytes(files["float32"].read_bytes()[:500])
    text = files["float16"].read_text()
    qid, value = next(iter(json.loads(text)["per_query_ndcg_at_10"].items()))
    damaged = text.replace(f'"{qid}": {json.dumps(value)}', f'"{qid}": {json.dumps(value + 0.25)}', 1)
    assert damaged != text
    files["float16"].write_text(damaged)

    outcome = run_here(setup, folders)

    assert_same_numbers(folders, outcome, reference)
    # Both artifacts were rebuilt (from the intact export) into the same bytes as the reference's.
    assert "building float32" in outcome.log and "building float16" in outcome.log and "exporting" not in outcome.log
    for name in ("float32", "float16"):
        assert json.loads((artifacts[name] / "meta.json").read_text())["sha256"] == reference[1].rows["SciFact", name]["onnx_sha256"]
    # Both results were recomputed (their identity is unchanged: only the damage can have caused it), and are valid again.
    assert outcome.computed() == set(outcome.rows)
    for variant, path in folders.result_files().items():
        assert CHECKSUM_FIELD in json.loads(path.read_text())
        assert readable(path), variant
    # Only the two damaged shards were encoded again; every other text came from the cache.
    t = timings(folders, "float32")
    assert t["texts_encoded"] - t["texts_from_cache"] == damaged_rows
    assert shard_rows(truncated) + shard_rows(flipped) == damaged_rows  # rebuilt in place, valid again
    assert timings(folders, "float16")["texts_from_cache"] == timings(folders, "float16")["texts_encoded"]
    assert folders.leftovers() == []


def test_result_with_wrong_fields_is_treated_as_missing(tmp_path: Path, reference: tuple[Folders, Outcome]) -> None:
    path = next(iter(reference[0].result_files().values()))
    store = ResultStore(tmp_path)
    data = json.loads(path.read_text())
    data.pop(CHECKSUM_FIELD)
    target = tmp_path / "m" / "SciFact" / "float32.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(data))
    assert store.get("m", "SciFact", "float32") is None  # no checksum: edited by hand or written by something else
    assert "no content_sha256" in store.damaged[target]
    target.write_text(json.dumps({**data, CHECKSUM_FIELD: content_digest(data)}))
    assert store.get("m", "SciFact", "float32") is not None
    # Wrong fields are refused even behind a valid checksum.
    for broken in ({k: v for k, v in data.items() if k != "per_query_ndcg_at_10"}, {**data, "ndcg_at_10": "0.5"},
                   {**data, "task": "SciFact"}, {**data, "per_query_ndcg_at_10": {}}):
        target.write_text(json.dumps({**broken, CHECKSUM_FIELD: content_digest(broken)}))
        assert store.get("m", "SciFact", "float32") is None, broken
    target.write_text(json.dumps([data]))
    assert store.get("m", "SciFact", "float32") is None
    assert list(store.all()) == []


def test_two_runs_at_once_share_the_work(setup: Setup, reference: tuple[Folders, Outcome], tmp_path: Path) -> None:
    folders = Folders(tmp_path / "cache", tmp_path / "results")
    first, second = start(setup, folders), start(setup, folders)  # two processes, started together
    outcomes = [finish(first), finish(second)]

    for outcome in outcomes:
        assert_same_numbers(folders, outcome, reference)
    # Every artifact was built, and every result computed, by exactly one of the two runs.
    logs = outcomes[0].log + outcomes[1].log
    for step in ("exporting Float32 ONNX", "building float32", "building float16",
                 "evaluating float32 on SciFact", "evaluating float16 on SciFact"):
        assert logs.count(step) == 1, step
    assert sorted(k for o in outcomes for k in o.computed()) == sorted(reference[1].rows)
    assert all(readable(p) for p in folders.result_files().values())
    assert all(read_blob(p) is not None for p in folders.shards())
    assert folders.leftovers() == []


def test_forced_rerun_is_bit_identical(setup: Setup, reference: tuple[Folders, Outcome], tmp_path: Path) -> None:
    folders = reference[0].copy_to(tmp_path)
    shutil.rmtree(folders.cache / "embeddings")  # encode everything again, not only recompute the scores

    outcome = run_here(setup, folders, "--force")

    assert outcome.computed() == set(outcome.rows)
    assert all(timings(folders, v)["texts_from_cache"] == 0 for v in ("float32", "float16"))
    assert_same_numbers(folders, outcome, reference)


def test_adding_a_variant_costs_only_that_variant(setup: Setup, reference: tuple[Folders, Outcome], tmp_path: Path) -> None:
    folders = reference[0].copy_to(tmp_path)
    before = {variant: stamp(p) for variant, p in folders.result_files().items()}
    task_dir = folders.result_files()["float32"].parent
    for variant in ("float16", "qint8"):  # temporary files of runs killed while writing these results
        (task_dir / f".{variant}.json.killed.tmp").write_text('{"schema": "evalsuite.result/1", "nd')

    outcome = run_here(setup, folders, variants=f"{VARIANTS},qint8")

    assert outcome.computed() == {("SciFact", "qint8")}
    assert {variant: stamp(folders.result_files()[variant]) for variant in before} == before
    assert {k: v for k, v in outcome.ndcg().items() if k[1] != "qint8"} == reference[1].ndcg()
    assert "building qint8" in outcome.log and "evaluating qint8 on SciFact" in outcome.log
    for step in ("exporting", "building float32", "building float16", "evaluating float32", "evaluating float16"):
        assert step not in outcome.log, step
    assert folders.leftovers() == []


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
