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

import glob
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

_DIGEST = 32  # bytes of sha256


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def file_lock(path: Path) -> Any:
    """An inter-process lock next to ``path``, so two runs never build the same thing at once.

    The lock is an ``flock`` on ``<path>.lock``: the kernel releases it when its holder dies, even by SIGKILL,
    so a killed run never blocks the next one. The lock file itself stays (removing it would break the lock).
    """
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock")


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
