"""Running the real ``evalsuite`` command for the bad-input and fault tests, and reading what it printed.

The contract every failing command is held to: its exit code, exactly one line on stderr that names the problem,
and no traceback anywhere. Status lines that evalsuite prints on purpose while it works (``loading SciFact``,
progress bars, onnxruntime's optimizer note) may come before the error; :func:`problem_lines` leaves them out,
by an explicit list of their shapes, so that any other line still counts against the one-line rule.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

EVALSUITE = str(Path(sys.executable).with_name("evalsuite"))
TIMEOUT = 300  # seconds; a safety net only, no test asserts on time

# The lines evalsuite prints while it works, before it can hit a problem (see the module docstring).
STATUS_LINE = re.compile(r"^(exporting Float32 ONNX|building \S+|loading \S+|evaluating \S+ on \S+|"
                         r"word_embedding_table \(.*|.*━.*|"
                         # a progress bar at 0 has no bar glyph without colour, only its count and clocks
                         r".* \d+/\d+ +[-\d:]+ +[-\d:]+)$")


def environment(**extra: str) -> dict[str, str]:
    """The environment of a test run: offline, no colour, no width from the terminal, no debug tracebacks."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("EVALSUITE_DEBUG", "EVALSUITE_DATA_DIR", "COLUMNS", "LINES")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", NO_COLOR="1")
    env.update(extra)
    return env


def run(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None, **popen: Any) -> subprocess.CompletedProcess[str]:
    """``evalsuite ARGS`` in a subprocess; stdout and stderr are captured unless ``popen`` redirects them."""
    kwargs: dict[str, Any] = {"capture_output": True} if "stdout" not in popen and "stderr" not in popen else {}
    return subprocess.run([EVALSUITE, *map(str, args)], text=True, env=env or environment(), cwd=cwd, timeout=TIMEOUT,
                          **kwargs, **popen)


def problem_lines(stderr: str) -> list[str]:
    """The non-empty lines of ``stderr`` that are not status lines."""
    return [line for line in stderr.splitlines() if line.strip() and not STATUS_LINE.match(line)]


def one_problem(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The one line a failed command printed about its problem; asserts the exit code and that no traceback appeared."""
    assert "Traceback" not in (proc.stderr or "") and "Traceback" not in (proc.stdout or ""), proc.stderr
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}:\n{proc.stderr[-3000:]}"
    lines = problem_lines(proc.stderr)
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{proc.stderr[-3000:]}"
    assert "set EVALSUITE_DEBUG" not in lines[0], f"an exception no evalsuite code anticipated: {lines[0]}"
    return lines[0]


def per_query(results: Path) -> dict[str, dict[str, dict[str, float]]]:
    """``{task: {variant: {query id: NDCG@10}}}`` of every result file under ``results``."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for path in sorted(results.rglob("*.json")):
        doc = json.loads(path.read_text())
        if isinstance(doc, dict) and "per_query_ndcg_at_10" in doc:
            out.setdefault(doc["task"]["name"], {})[doc["variant"]] = doc["per_query_ndcg_at_10"]
    return out
