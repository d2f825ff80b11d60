"""``evalsuite`` that stops at a named point of its work and waits there, so that a test can signal or kill it at
exactly that point instead of racing a poller against a short window.

Usage (what :func:`command` builds)::

    python tests/pause_at.py POINT MARKER run --model ... (the evalsuite arguments)

POINT is one of

- ``export``: the Float32 export has written its file into the temporary build folder, which is not committed yet;
- ``shard:N``: the N-th embedding shard of the process is written and synced under its temporary name, and is about
  to be renamed into place (N - 1 shards are committed);
- ``result:VARIANT``: the result of VARIANT is stored.

At the point the process writes MARKER (holding its pid) and sleeps until a signal arrives; SIGINT and SIGTERM
then unwind it exactly as they would unwind the command anywhere else (evalsuite's handlers raise in the sleep).
Nothing else is changed: the command is ``evalsuite.cli.main()`` with the given arguments. A run that finishes
without reaching the point writes no marker, and :func:`wait_until_paused` fails at once.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

TIMEOUT = 300  # seconds; a safety net only, no test asserts on time


def command(point: str, marker: Path, *args: object) -> list[str]:
    """The command line of ``evalsuite ARGS`` that pauses at ``point`` (see the module docstring)."""
    return [sys.executable, str(Path(__file__).resolve()), point, str(marker), *map(str, args)]


def wait_until_paused(proc: Any, marker: Path, log: Path | None = None) -> None:
    """Return once ``proc`` (a ``subprocess.Popen`` or a tests/zygote.py child) is waiting at its point; fail if it
    ends first (it never reached the point)."""
    import pytest

    deadline = time.monotonic() + TIMEOUT
    while not marker.exists():
        if proc.poll() is not None:
            text = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
            pytest.fail(f"the run ended (exit {proc.returncode}) before it reached its pause point:\n{text}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"the run did not reach its pause point within {TIMEOUT} s")
        time.sleep(0.005)


def _pause(marker: Path) -> None:
    tmp = marker.with_name(f".{marker.name}.tmp")
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, marker)
    parent = os.getppid()
    # Until a signal: SIGINT/SIGTERM raise here (evalsuite's handlers), SIGKILL ends the process. A run whose parent
    # is gone (a test that failed before it killed the run) ends itself instead of waiting for ever.
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(3)


def _install(point: str, marker: Path) -> None:
    kind, _, arg = point.partition(":")
    if kind == "export":
        from evalsuite.build import artifacts

        export = artifacts.export_onnx

        def export_then_pause(*args: Any, **kwargs: Any) -> Any:
            info = export(*args, **kwargs)
            _pause(marker)
            return info

        artifacts.export_onnx = export_then_pause  # type: ignore[assignment]
    elif kind == "shard":
        from evalsuite import files

        replace, wanted, seen = os.replace, int(arg), [0]

        def replace_or_pause(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            if str(dst).endswith(".npy"):
                seen[0] += 1
                if seen[0] == wanted:
                    _pause(marker)
            replace(src, dst, *args, **kwargs)

        files.os = _Os(replace_or_pause)  # type: ignore[attr-defined]
    elif kind == "result":
        from evalsuite.results.store import ResultStore

        put = ResultStore.put

        def put_then_pause(self: ResultStore, result: Any) -> Path:
            path = put(self, result)
            if result.variant == arg:
                _pause(marker)
            return path

        ResultStore.put = put_then_pause  # type: ignore[method-assign]
    else:
        raise SystemExit(f"pause_at.py: unknown point {point!r}")


class _Os:
    """``os`` for evalsuite.files, with ``replace`` swapped (the rest of the process keeps the real one)."""

    def __init__(self, replace: Any) -> None:
        self.replace = replace

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


if __name__ == "__main__":
    _install(sys.argv[1], Path(sys.argv[2]))
    sys.argv = ["evalsuite", *sys.argv[3:]]
    from evalsuite.cli import main

    main()
