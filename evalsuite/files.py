"""Atomic, validated files: what every cache and result in evalsuite is written with.

A reader never sees a half-written file (write to a temporary name, fsync, ``os.replace``), and a
checksummed blob that was truncated or corrupted is detected on read and treated as missing.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
    >>> write_blob(p, b"payload")
    >>> read_blob(p)
    b'payload'
"""

from __future__ import annotations

import errno
import fcntl
import glob
import hashlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from evalsuite.errors import EvalsuiteError

_DIGEST = 32  # bytes of sha256
# Below this many free bytes, a failed write is blamed on the full disk even when the library that wrote hid ENOSPC
# (onnx's C++ writers truncate silently; the failure then surfaces as "Wire format was corrupt" on the next read).
NEARLY_FULL_BYTES = 1 << 20


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary sibling ``.<name>.*.tmp``, removed again if anything fails."""
    with reporting_full_disk(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:  # an interrupt included: the next run must not find a half-written sibling
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def reporting_full_disk(path: Path) -> Iterator[None]:
    """Report a write into ``path`` that failed because its disk is full as ``no space left on device while writing PATH``.

    Other failures pass through unchanged. A failure counts as a full disk when ENOSPC (or EDQUOT) is among its
    causes, or when the file system of ``path`` has less than :data:`NEARLY_FULL_BYTES` free right after it
    (libraries that write through C++ streams lose the errno).

    Example:
        >>> with reporting_full_disk(Path("/tmp/x.onnx")):  # doctest: +SKIP
        ...     onnx.save(model, "/tmp/x.onnx")
    """
    try:
        yield
    except EvalsuiteError:
        raise
    except Exception as exc:
        if disk_full(exc, path):
            raise EvalsuiteError(f"no space left on device while writing {path}") from exc
        raise


def disk_full(exc: BaseException, path: Path) -> bool:
    """Whether ``exc``, raised while writing ``path``, comes from a full disk (see :func:`reporting_full_disk`)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    try:
        return existing is not None and shutil.disk_usage(existing).free < NEARLY_FULL_BYTES
    except OSError:
        return False


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False, ensure_ascii=False) + "\n").encode("utf-8"))


def write_blob(path: Path, payload: bytes) -> None:
    """Write ``sha256(payload) + payload`` atomically."""
    atomic_write_bytes(path, hashlib.sha256(payload).digest() + payload)


def read_blob(path: Path) -> bytes | None:
    """The payload of a blob, or None when it is missing, truncated or corrupted (a bad file is removed)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    digest, payload = data[:_DIGEST], data[_DIGEST:]
    if len(data) < _DIGEST or hashlib.sha256(payload).digest() != digest:
        path.unlink(missing_ok=True)
        return None
    return payload


def file_lock(path: Path, say: Callable[[str], None] | None = None) -> FileLock:
    """An inter-process lock next to ``path``, so two runs never build or write the same thing at once.

    The lock is an ``flock`` on ``<path>.lock``: the kernel releases it when its holder dies, even by SIGKILL,
    so a killed run never blocks the next one. The lock file itself stays (removing it would break the lock).
    A run that finds the lock held says once whom it waits for (``say``, default: a line on stderr).

    Example:
        >>> import tempfile, pathlib
        >>> with file_lock(pathlib.Path(tempfile.mkdtemp()) / "result.json"):
        ...     pass
    """
    return FileLock(Path(str(path) + ".lock"), say or _tell)


class FileLock:
    """An exclusive ``flock`` that records its holder (pid and command line) in the lock file for waiters to name.

    Not re-entrant: a process that takes the same lock twice waits for itself, as with two separate runs.
    """

    def __init__(self, path: Path, say: Callable[[str], None]) -> None:
        self.path = path
        self.say = say
        self._fd: int | None = None

    def __enter__(self) -> FileLock:
        with reporting_full_disk(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: the holder's note must survive
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.say(f"waiting for {_holder(fd)} to finish with {self.path.with_suffix('')}")
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:  # an interrupt while waiting
            os.close(fd)
            raise
        command = " ".join(shlex.quote(a) for a in ["evalsuite", *sys.argv[1:]])
        note = f"pid {os.getpid()} ({command}, started {time.strftime('%H:%M:%S')})"
        try:  # best effort: only the messages of waiters read it, and a full disk must not stop the lock
            os.ftruncate(fd, 0)
            os.pwrite(fd, note.encode("utf-8", "replace"), 0)
        except OSError:
            pass
        self._fd = fd
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def _holder(fd: int) -> str:
    try:
        note = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    except OSError:
        note = ""
    return note.splitlines()[0] if note else "another run"


def _tell(message: str) -> None:
    """One line on stderr; a closed stderr is no reason to stop (waiting silently is still correct)."""
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):
        pass


def remove_leftovers(path: Path) -> None:
    """Remove the temporary files and folders (``.<name>.*``) that killed writers of ``path`` left beside it.

    Call it only while holding ``file_lock(path)``: every writer of ``path`` holds that lock, so a temporary
    sibling is then a leftover, never another process's work in progress.
    """
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def remove_stale_temp_files(folder: Path, older_than_s: float = 600.0) -> list[Path]:
    """Remove the temporary files (``.<name>.*.tmp``) that killed writers left in ``folder``; return what was removed.

    Embedding shards are written without a lock (their names are content keys, and :func:`atomic_write_bytes`
    makes concurrent writers of one shard harmless), so a leftover cannot be told from a live writer's file by
    a lock. Age tells them apart: a live writer creates its temporary file, writes one shard (milliseconds to
    seconds) and renames it at once, so its file is never older than a shard's write; one untouched for
    ``older_than_s`` (default 10 minutes, far above any shard's write) belongs to a writer that died.
    A SIGINT or SIGTERM never leaves one: :func:`atomic_write_bytes` removes its own file on any exception.

    Example:
        >>> remove_stale_temp_files(Path("~/.cache/evalsuite/embeddings/0123abcd").expanduser())  # doctest: +SKIP
        []
    """
    removed = []
    now = time.time()
    for stale in folder.glob(".*.tmp"):
        try:
            if stale.is_file() and now - stale.stat().st_mtime > older_than_s:
                stale.unlink()
                removed.append(stale)
        except FileNotFoundError:  # another run removed or renamed it meanwhile
            continue
    return removed


def path_label(folder: Path) -> str:
    """``<name>-<8 hex of the absolute path>``: a readable name that two folders called alike never share."""
    resolved = folder.resolve()
    return f"{resolved.name}-{sha256_text(str(resolved))[:8]}"
