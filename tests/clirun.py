"""Running the ``evalsuite`` command for the bad-input and fault tests, and reading what it printed.

Two ways to run it, with the same result type (:class:`subprocess.CompletedProcess`):

- :func:`invoke` calls the console entry point ``evalsuite.cli.main()`` in this process, with its own arguments,
  environment and working directory, and captures what it prints. A bad-input case costs milliseconds instead of
  the seconds a new interpreter needs for its imports.
- :func:`run` starts the real command in a subprocess: what only a real process shows (exit codes through the
  interpreter, signals, closed or broken descriptors, ``python -m evalsuite``).

The contract every failing command is held to (:func:`one_problem`): its exit code, exactly one ``error:`` line
on stderr, which is the last thing the command printed, no traceback anywhere, and an error evalsuite anticipated
(not the catch-all for unexpected exceptions). Whatever else came before the error line (status lines such as
``loading SciFact``, progress bars, a warning a library prints while it works) is not held against it: the check
does not depend on a list of the shapes of other libraries' messages, so a new warning in a dependency cannot
break it, while a second error, a wrapped or multi-line error, a traceback or a missing error still fail it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EVALSUITE = str(Path(sys.executable).with_name("evalsuite"))
TIMEOUT = 300  # seconds; a safety net only, no test asserts on time
INTERRUPTED = "interrupted; re-run the same command to resume"

# Variables of the developer's shell that would change what a command does or prints; a test never inherits them
# (conftest.py removes them from the test process too).
NOT_INHERITED = ("EVALSUITE_DEBUG", "EVALSUITE_DATA_DIR", "COLUMNS", "LINES", "RAY_ADDRESS", "FORCE_COLOR", "TTY_COMPATIBLE",
                 "TTY_INTERACTIVE", "CLICOLOR_FORCE")
# A Python warning as the warnings module prints it ("path:line: SomeWarning: text"); the interpreter may print one
# at exit, after the command's last line (multiprocessing's resource tracker does).
_PY_WARNING = re.compile(r"^\S.*:\d+: [A-Za-z_]*Warning: ")


def environment(**extra: str) -> dict[str, str]:
    """The environment of a test run: offline, no colour, no width from the terminal, no debug tracebacks, no Ray
    cluster of the developer's, one onnxruntime thread unless a test says otherwise."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", NO_COLOR="1")
    env.setdefault("EVALSUITE_THREADS", "1")
    env.update(extra)
    return env


def run(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None, **popen: Any) -> subprocess.CompletedProcess[str]:
    """``evalsuite ARGS`` in a subprocess; stdout and stderr are captured unless ``popen`` redirects them."""
    kwargs: dict[str, Any] = {"capture_output": True} if "stdout" not in popen and "stderr" not in popen else {}
    return subprocess.run([EVALSUITE, *map(str, args)], text=True, env=env or environment(), cwd=cwd, timeout=TIMEOUT,
                          **kwargs, **popen)


def invoke(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``evalsuite ARGS`` through the console entry point ``evalsuite.cli.main()`` in this process.

    ``env`` replaces the whole environment for the call, as for :func:`run` (default: :func:`environment`); the
    working directory, ``sys.argv`` and the standard streams are restored afterwards.
    """
    from evalsuite import cli

    argv = [EVALSUITE, *map(str, args)]
    out, err = io.StringIO(), io.StringIO()
    with _environment(env or environment()), _cwd(cwd), _streams(out, err), _argv(argv):
        try:
            cli.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _cwd(cwd: Path | None) -> Iterator[None]:
    saved = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved)


@contextlib.contextmanager
def _streams(out: io.StringIO, err: io.StringIO) -> Iterator[None]:
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err  # main() wraps them in its QuietStream; the wrappers go with them afterwards
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


@contextlib.contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


def last_line(stderr: str) -> str:
    """The last line the command printed on ``stderr``: the last non-blank line, past any Python warning (and the
    source line it quotes) that the interpreter printed at exit."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    while len(lines) >= 2 and _PY_WARNING.match(lines[-2]) and lines[-1].startswith(" "):
        lines = lines[:-2]
    while lines and _PY_WARNING.match(lines[-1]):
        lines = lines[:-1]
    return lines[-1] if lines else ""


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    for stream in (proc.stderr or "", proc.stdout or ""):
        assert "Traceback" not in stream, stream[-3000:]


def one_problem(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The one line a failed command printed about its problem (see the module docstring for what is asserted)."""
    stderr = proc.stderr or ""
    no_traceback(proc)
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}:\n{stderr[-3000:]}"
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"expected one error line on stderr, got {len(errors)}:\n{stderr[-3000:]}"
    assert last_line(stderr) == errors[0], f"the error line is not the last line printed (wrapped, or more after it):\n{stderr[-3000:]}"
    assert "set EVALSUITE_DEBUG" not in errors[0], f"an exception no evalsuite code anticipated: {errors[0]}"
    return errors[0]


def interrupted(stderr: str) -> None:
    """An interrupted command's stderr: the interrupt line once, as the last line, and no traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    assert stderr.count(INTERRUPTED) == 1 and last_line(stderr) == INTERRUPTED, stderr[-3000:]
    assert not [line for line in stderr.splitlines() if line.startswith("error:")], stderr[-3000:]


def per_query(results: Path) -> dict[str, dict[str, dict[str, float]]]:
    """``{task: {variant: {query id: NDCG@10}}}`` of every result file under ``results``."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for path in sorted(results.rglob("*.json")):
        doc = json.loads(path.read_text())
        if isinstance(doc, dict) and "per_query_ndcg_at_10" in doc:
            out.setdefault(doc["task"]["name"], {})[doc["variant"]] = doc["per_query_ndcg_at_10"]
    return out
