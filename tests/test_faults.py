"""Faults around the real ``evalsuite`` command on a tiny model: interrupts, another run's lock, a full disk, and
closed or broken standard streams.

For each: the exit code, one line on stderr that names the problem, no traceback, and, where work was under way,
that nothing finished is lost and the re-run gives per-query numbers identical to an uninterrupted run (the same
command, batches and thread count: the same computation). Full disks are real: a small tmpfs the test mounts
itself, in a user namespace of its own where the kernel allows one (no root needed), else with root; with neither
those tests skip and say why, and an in-process ENOSPC still checks the message. Runs that are interrupted or fill a
disk are real processes, forked by tests/zygote.py (no new interpreter's imports); closed and broken streams and lock
waits are tested on the real command. An interrupt is sent
while the run waits on purpose at a named point (tests/pause_at.py), never after a sleep or a race with a poller.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pause_at
import pytest
from clirun import EVALSUITE, TIMEOUT, environment, interrupted, invoke, one_problem, per_query
from conftest import make_beir
from zygote import Zygote

from evalsuite.files import file_lock, read_blob, remove_stale_temp_files


@dataclass(frozen=True)
class Small:
    """A small task with a finished run of float32 and qint8 (the reference numbers), in the shared warm cache."""

    model: Path
    data: Path
    cache: Path
    results: Path
    failing: str  # a variant whose NDCG@10 is below Float32's: ``gate --max-drop 0`` fails it

    def args(self, *extra: object) -> list[str]:
        return ["run", "-m", str(self.model), "-t", "scifact", "--data-dir", str(self.data), *map(str, extra)]


@pytest.fixture(scope="module")
def small(tiny_model: Path, shared_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Small:
    root = tmp_path_factory.mktemp("faults")
    make_beir(root / "data" / "scifact", crlf=True)
    s = Small(tiny_model, root / "data", shared_cache, root / "results", "")
    done = invoke(*s.args("-v", "qint8,qint8-7bit", "--json", "--cache-dir", shared_cache, "--results-dir", s.results))
    assert done.returncode == 0, done.stderr
    below = [r["variant"] for r in json.loads(done.stdout)["results"] if r["delta"] < 0]
    assert below, "precondition: one of qint8, qint8-7bit scores below Float32 on this task, so a gate can fail"
    return Small(tiny_model, s.data, shared_cache, s.results, below[0])


def fresh(small: Small, folder: Path) -> tuple[Path, Path]:
    """A cache with the raw export and Float32 (no other variant, no embeddings), and an empty results folder, under
    ``folder`` (a small disk holds only what a Float32 run needs)."""
    def skip(directory: str, names: list[str]) -> list[str]:
        is_variant_level = Path(directory).parent.name == "onnx"
        return [n for n in names if n.startswith(".") or n.endswith(".lock")
                or (is_variant_level and not re.fullmatch(r"(export|float32)-[0-9a-f]{12}", n))]

    shutil.copytree(small.cache / "onnx", folder / "cache" / "onnx", ignore=skip)
    return folder / "cache", folder / "results"


def leftovers(*roots: Path) -> list[Path]:
    """Temporary files and folders of interrupted writers (``.<name>.*``)."""
    return [p for root in roots if root.exists() for p in root.rglob(".*")]


# --- interrupts -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Slow:
    """A task that fills several embedding shards (2 of queries, 5 of documents in batches of 4), and one
    uninterrupted run of it: the same command the interrupted runs use."""

    small: Small
    data: Path
    reference: dict[str, dict[str, dict[str, float]]]

    def args(self, cache: Path, results: Path) -> list[str]:
        return ["run", "-m", str(self.small.model), "-t", "scifact", "--data-dir", str(self.data), "-v", "float32",
                "--batch-size", "4", "--threads", "1", "--cache-dir", str(cache), "--results-dir", str(results)]


@pytest.fixture(scope="module")
def slow(small: Small, tmp_path_factory: pytest.TempPathFactory) -> Slow:
    root = tmp_path_factory.mktemp("slow")
    make_beir(root / "data" / "scifact", n_docs=320, n_queries=30, seed=3)
    cache, results = fresh(small, root / "reference")
    s = Slow(small, root / "data", {})
    done = invoke(*s.args(cache, results))
    assert done.returncode == 0, done.stderr
    return Slow(small, s.data, per_query(results))


def start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    # Files, not pipes: a run never blocks on a full pipe, and a stopped run's output stays readable.
    with open(log.with_suffix(".out"), "wb") as out, open(log, "wb") as err:
        return subprocess.Popen(command, stdout=out, stderr=err, env=environment())


def signal_when(proc: subprocess.Popen[bytes], signum: int, reached: Callable[[], bool], what: str) -> int:
    """Send ``signum`` as soon as ``reached()`` holds and return the exit code; fail if the run ends first.

    Only for a state the run stays in until it is signalled (waiting for a lock): the poller cannot miss it."""
    deadline = time.monotonic() + TIMEOUT
    while proc.poll() is None:
        if reached():
            proc.send_signal(signum)
            return proc.wait(timeout=TIMEOUT)
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run never reached {what}")
        time.sleep(0.002)
    pytest.fail(f"the run ended (exit {proc.returncode}) before {what}")


def assert_interrupted(log: Path, code: int, expected: int) -> None:
    stderr = log.read_text(errors="replace")
    assert code == expected, stderr[-3000:]
    interrupted(stderr)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_interrupted_while_encoding_then_resumed(signum: int, code: int, slow: Slow, tmp_path: Path,
                                                  process_server: Zygote) -> None:
    cache, results = fresh(slow.small, tmp_path)
    args = slow.args(cache, results)

    def shards() -> list[Path]:
        return sorted(cache.glob("embeddings/*/*.npy"))

    # Interrupted while its fourth shard is written but not yet renamed into place: three shards are committed.
    marker = tmp_path / "paused"
    proc = process_server.start(args, env=environment(), stdout=tmp_path / "first.out", stderr=tmp_path / "first.err",
                                pause=("shard:4", marker))
    pause_at.wait_until_paused(proc, marker, tmp_path / "first.err")
    assert len(list(cache.glob("embeddings/*/.*.npy.*.tmp"))) == 1, "paused inside the write of the fourth shard"
    proc.send_signal(signum)
    assert_interrupted(tmp_path / "first.err", proc.wait(timeout=TIMEOUT), code)
    assert leftovers(cache, results) == [], "an interrupted write left its temporary file"
    assert per_query(results) == {}, "no result can be complete yet"
    kept = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in shards()}
    assert len(kept) == 3 and all(read_blob(p) is not None for p in kept), "every finished shard is whole"

    done = invoke(*args)  # the re-run, in this process (tests/clirun.py)
    assert done.returncode == 0, done.stderr[-3000:]
    assert per_query(results) == slow.reference  # exact float equality, every query: the same computation
    assert all((p.stat().st_ino, p.stat().st_mtime_ns) == stamp for p, stamp in kept.items()), "finished shards were reused"


@contextmanager
def holding_result_locks(results: Path) -> Iterator[list[Path]]:
    """Hold, from this process, the lock of every result file in ``results``, as another run evaluating them would."""
    files = sorted(p for p in results.rglob("*.json"))
    with ExitStack() as stack:
        for path in files:
            stack.enter_context(file_lock(path))
        yield files


def test_a_run_waiting_for_a_lock_says_whom_it_waits_for(small: Small, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(small.results, results)
    command = [EVALSUITE, *small.args("-v", "qint8", "--cache-dir", small.cache, "--results-dir", results)]
    log = tmp_path / "wait.err"

    def waiting() -> bool:
        return "waiting for" in log.read_text(errors="replace")

    with holding_result_locks(results) as held:
        proc = start(command, log)
        exit_code = signal_when(proc, signal.SIGINT, waiting, "the lock")  # interrupted while it waits
        text = log.read_text()
        assert exit_code == 130
        interrupted(text)
        [said] = [line for line in text.splitlines() if line.startswith("waiting for")]  # said once, not per retry
        assert said.startswith(f"waiting for pid {os.getpid()} (")
        assert any(said.endswith(f"to finish with {path}") for path in held), said

        log = tmp_path / "wait-again.err"
        proc = start(command, log)
        deadline = time.monotonic() + TIMEOUT
        while not waiting():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.01)
    assert proc.wait(timeout=TIMEOUT) == 0, log.read_text()  # the locks are released: it goes on
    text = log.read_text()
    assert [line for line in text.splitlines() if line.startswith("waiting for")] == [said]  # one line, same holder and file
    assert "Traceback" not in text and "error:" not in text
    assert per_query(results) == per_query(small.results)


def test_stale_temporary_files_are_removed_and_young_ones_kept(tmp_path: Path) -> None:
    stale, young, shard = tmp_path / ".k1.npy.abc.tmp", tmp_path / ".k2.npy.def.tmp", tmp_path / "k3.npy"
    for path in (stale, young, shard):
        path.write_bytes(b"x")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    os.utime(shard, (an_hour_ago, an_hour_ago))
    assert remove_stale_temp_files(tmp_path, older_than_s=600) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".k2.npy.def.tmp", "k3.npy"]


def test_a_killed_shard_write_leaves_nothing_after_the_next_run(small: Small, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(small.cache, cache, ignore=shutil.ignore_patterns("*.lock"))
    folder = next(p for p in sorted(cache.glob("embeddings/*")) if p.is_dir())
    stale = folder / ".0123abcd.npy.k1ll3d.tmp"  # what SIGKILL leaves in the middle of a shard write
    stale.write_bytes(b"half a shard")
    a_day_ago = time.time() - 86400
    os.utime(stale, (a_day_ago, a_day_ago))
    done = invoke(*small.args("-v", "float32", "--cache-dir", cache, "--results-dir", tmp_path / "results"))
    assert done.returncode == 0, done.stderr
    assert not stale.exists()


# --- a full disk -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Disk:
    """A small tmpfs at ``path``, mounted by the test itself for the commands it runs there (tests/zygote.py: in the
    process server's own user and mount namespace where the kernel allows one, so no root is needed)."""

    path: Path  # where the commands see it
    server: Zygote

    def outside(self, path: Path) -> Path:
        """Where this process reaches ``path`` (a path as the commands see it)."""
        return self.server.outside(path)

    def run(self, *args: object) -> subprocess.CompletedProcess[str]:
        """``evalsuite ARGS`` in a real process that sees the disk."""
        logs = self.path.parent / "logs"
        logs.mkdir(exist_ok=True)
        out, err = logs / f"{time.monotonic_ns()}.out", logs / f"{time.monotonic_ns()}.err"
        child = self.server.start([str(a) for a in args], env=environment(), stdout=out, stderr=err)
        code = child.wait(timeout=TIMEOUT)
        return subprocess.CompletedProcess(["evalsuite", *map(str, args)], code, out.read_text(), err.read_text())


@contextmanager
def tmpfs(server: Zygote, folder: Path, size: str) -> Iterator[Disk]:
    """A tmpfs of ``size`` at ``folder`` (see :class:`Disk`); the test skips, saying why, where neither a user namespace
    nor a mount is permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    why_not = server.mount_tmpfs(folder, size)
    if why_not is not None:
        pytest.skip("a full-disk test needs a small file system of its own: "
                    f"{getattr(server, 'no_namespace', 'no user namespace')}, and no right to mount one here "
                    f"(needs root or CAP_SYS_ADMIN; {why_not})")
    try:
        yield Disk(folder, server)
    finally:
        server.unmount(folder)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of ``folder`` to the last byte, then free ``leave`` bytes again; returns the filler."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    if leave:
        os.truncate(filler, filler.stat().st_size - leave)
    return filler


def no_space(proc: subprocess.CompletedProcess[str], under: Path) -> str:
    """The error line of a run that hit the full disk: it names a file under ``under``."""
    line = one_problem(proc)
    assert line.startswith(f"error: no space left on device while writing {under}/"), line
    return line


def test_full_disk_during_export(small: Small, tmp_path: Path, process_server: Zygote) -> None:
    with tmpfs(process_server, tmp_path / "disk", "64k") as disk:
        proc = disk.run(*small.args("-v", "float32", "--cache-dir", disk.path, "--results-dir", tmp_path / "results"))
        assert no_space(proc, disk.path / "onnx").endswith("/model.onnx")
        assert leftovers(disk.outside(disk.path / "onnx")) == [] and not (tmp_path / "results").exists()


def test_full_disk_while_quantizing_is_not_a_corrupt_file(small: Small, tmp_path: Path, process_server: Zygote) -> None:
    """quantize_dynamic writes through onnx's C++ code, which truncates silently on ENOSPC (once "Wire format was corrupt")."""
    with tmpfs(process_server, tmp_path / "disk", "2m") as disk:
        root = disk.outside(disk.path)
        shutil.copytree(small.cache / "onnx", root / "onnx", ignore=shutil.ignore_patterns(".*", "*.lock", "q*", "f*16*"))
        parent = next(root.glob("onnx/*/float32-*"))
        before = sorted(p.name for p in parent.iterdir())
        fill(root, leave=(parent / "model.onnx").stat().st_size + 16384)  # room for its copy, not for the quantized model
        proc = disk.run("convert", "-m", small.model, "-v", "qint8", "--cache-dir", disk.path)
        no_space(proc, disk.path / "onnx")
        assert sorted(p.name for p in parent.iterdir()) == before, "nothing is written into the parent's cache entry"
        assert leftovers(root / "onnx") == []


def test_full_disk_while_writing_embeddings_then_resumed(small: Small, tmp_path: Path, process_server: Zygote) -> None:
    with tmpfs(process_server, tmp_path / "disk", "1m") as disk:
        fresh(small, disk.outside(disk.path))
        cache = disk.path / "cache"
        filler = fill(disk.outside(disk.path))
        command = small.args("-v", "float32", "--cache-dir", cache, "--results-dir", tmp_path / "results")
        line = no_space(disk.run(*command), cache / "embeddings")
        assert line.endswith(".npy") and leftovers(disk.outside(cache)) == []
        filler.unlink()
        assert disk.run(*command).returncode == 0
    assert per_query(tmp_path / "results")["SciFact"]["float32"] == per_query(small.results)["SciFact"]["float32"]


def test_full_disk_while_writing_a_result_keeps_the_embeddings(small: Small, tmp_path: Path, process_server: Zygote) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(small.cache / "onnx", cache / "onnx", ignore=shutil.ignore_patterns(".*", "*.lock"))
    with tmpfs(process_server, tmp_path / "disk", "256k") as disk:
        filler = fill(disk.outside(disk.path))
        command = small.args("-v", "float32", "--cache-dir", cache, "--results-dir", disk.path / "results", "--json")
        line = no_space(disk.run(*command), disk.path / "results")
        assert line.endswith(".json") and leftovers(disk.outside(disk.path)) == []
        filler.unlink()
        again = disk.run(*command)
        assert again.returncode == 0, again.stderr
        row = json.loads(again.stdout)["results"][0]
        results = disk.outside(disk.path / "results")
        assert per_query(results) == {"SciFact": {"float32": per_query(small.results)["SciFact"]["float32"]}}
        stored = next(results.rglob("float32.json"))
        timings = json.loads(stored.read_text())["timings"]
        assert row["n_queries"] == 12 and timings["texts_from_cache"] == timings["texts_encoded"] > 0  # nothing re-encoded


def test_full_disk_while_writing_a_report(small: Small, tmp_path: Path, process_server: Zygote) -> None:
    with tmpfs(process_server, tmp_path / "disk", "64k") as disk:
        fill(disk.outside(disk.path))
        line = no_space(disk.run("report", "--results-dir", small.results, "--output", disk.path / "report.md"), disk.path)
        assert line.endswith(f"{disk.path / 'report.md'}") and leftovers(disk.outside(disk.path)) == []


def test_enospc_anywhere_in_a_write_names_the_file(small: Small, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """In-process, so it needs no tmpfs: the disk fills up at the fsync of the report file."""
    from evalsuite import cli

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "out" / "report.md"
    monkeypatch.setattr(sys, "argv", ["evalsuite", "report", "--results-dir", str(small.results), "--output", str(target)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [f"error: no space left on device while writing {target}"]
    assert list((tmp_path / "out").iterdir()) == []


# --- closed and broken standard streams ---------------------------------------------------------------------------

def shell(command: list[object], redirect: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``evalsuite ARGS`` under bash with ``redirect`` applied (``>&-`` closes stdout, ``2>&-`` stderr)."""
    script = f'exec "$0" "$@" {redirect}'
    return subprocess.run(["bash", "-c", script, EVALSUITE, *map(str, command)], capture_output=True, text=True,
                          env=env or environment(), timeout=TIMEOUT)


def into_broken_pipe(command: list[object], stream: str = "stdout") -> subprocess.CompletedProcess[str]:
    """``evalsuite ARGS`` writing ``stream`` into a pipe whose reader is already gone (every write fails with EPIPE)."""
    read, write = os.pipe()
    os.close(read)
    try:
        kwargs = {"stdout": write, "stderr": subprocess.PIPE} if stream == "stdout" else {"stdout": subprocess.PIPE, "stderr": write}
        return subprocess.run([EVALSUITE, *map(str, command)], text=True, env=environment(), timeout=TIMEOUT, **kwargs)  # type: ignore[call-overload]
    finally:
        os.close(write)


def gate_args(small: Small, variant: str, max_drop: str) -> list[object]:
    return ["gate", "-v", variant, "--max-drop", max_drop, "--results-dir", small.results]


def test_stdout_closed(small: Small, tmp_path: Path) -> None:
    assert (done := shell(["variants"], ">&-")).returncode == 0 and done.stderr == ""
    assert (done := shell(["--help"], ">&-")).returncode == 0 and done.stderr == ""
    assert one_problem(shell(["run", "-v", "qint9"], ">&-")).startswith("error: unknown dtype 'qint9'")
    assert shell(gate_args(small, small.failing, "0"), ">&-").returncode == 1
    assert shell(gate_args(small, "float32", "0"), ">&-").returncode == 0


def test_stdout_closed_while_evaluating_writes_the_same_result(small: Small, tmp_path: Path, process_server: Zygote) -> None:
    """With descriptor 1 closed, the next file opened would get it; nothing printed to stdout may land in a file.
    (A process forked with descriptor 1 closed, tests/zygote.py; test_stdout_closed starts the real command so.)"""
    results = tmp_path / "results"
    child = process_server.start(small.args("-v", "qint8", "--cache-dir", small.cache, "--results-dir", results, "--force"),
                                 env=environment(), stdout=tmp_path / "out", stderr=tmp_path / "err", close_stdout=True)
    done = subprocess.CompletedProcess([], child.wait(), "", (tmp_path / "err").read_text())
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert per_query(results) == {"SciFact": {v: per_query(small.results)["SciFact"][v] for v in ("float32", "qint8")}}


@pytest.mark.parametrize("redirect", [("2>&-"), (">&- 2>&-")], ids=["stderr", "both"])
def test_stderr_closed_keeps_exit_codes(redirect: str, small: Small) -> None:
    assert shell(["run", "-v", "qint9"], redirect).returncode == 2
    assert shell(gate_args(small, "float32", "0"), redirect).returncode == 0
    assert shell(gate_args(small, small.failing, "0"), redirect).returncode == 1


def test_broken_pipes_keep_exit_codes(small: Small) -> None:
    for command, code in ((["variants"], 0), (["report", "--results-dir", small.results], 0),
                          (small.args("-v", "qint8", "--json", "--cache-dir", small.cache, "--results-dir", small.results), 0),
                          (gate_args(small, small.failing, "0"), 1), (gate_args(small, "float32", "0"), 0)):
        done = into_broken_pipe(command)
        assert done.returncode == code, (command, done.stderr)
        assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    for command, code in ((["run", "-v", "qint9"], 2), (gate_args(small, small.failing, "0"), 1)):
        assert into_broken_pipe(command, "stderr").returncode == code


def test_odd_terminal_settings(small: Small) -> None:
    env = environment(COLUMNS="wide")
    done = subprocess.run([EVALSUITE, "report", "--results-dir", str(small.results)], capture_output=True, text=True, env=env,
                          timeout=TIMEOUT)
    assert done.returncode == 0 and "Traceback" not in done.stderr and "qint8" in done.stdout
    assert shell(["variants"], "<&-").returncode == 0
