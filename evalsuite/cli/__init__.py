"""The ``evalsuite`` command: thin Typer commands over the library. Each command's docstring is its --help.

Exit codes: 0 success, 1 a gate failed, 2 bad input or an error (one line on stderr, no traceback), 130 / 143
interrupted by SIGINT / SIGTERM (one line: re-run the same command to resume).
"""

from __future__ import annotations

import errno
import os
import sys

import typer
from rich.markup import escape

# Importing a command module registers its commands; --help lists them in this order.
from evalsuite.cli import run_cmd  # noqa: F401, I001
from evalsuite.cli import bench_cmd, gate_cmd, screen_cmd, tune_cmd  # noqa: F401
from evalsuite.cli.common import app, err
from evalsuite.cli.process import INTERRUPTED, flush_streams, interrupts_raise, protect_streams, reserve_standard_descriptors
from evalsuite.errors import EvalsuiteError, Interrupted
from evalsuite.cli import export_cmd  # noqa: F401, E402, I001  registers `export` (listed last)

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point: run the command in ``sys.argv`` and exit with its code (see the module docstring)."""
    reserve_standard_descriptors()  # before the command opens any file that could take descriptor 1 or 2
    protect_streams()
    code = run_app()
    flush_streams()
    sys.exit(code)


def run_app() -> int:
    """Run the command line in ``sys.argv``; the exit code, with every failure reported as one line on stderr."""
    try:
        with interrupts_raise():
            code = app(standalone_mode=False)
        if code == 130:  # Typer's translation of a KeyboardInterrupt raised by a library itself
            raise Interrupted(2)
        return code if isinstance(code, int) else 0
    except Interrupted as exc:
        err.print(INTERRUPTED, highlight=False)
        return exc.exit_code
    except typer.Exit as exc:  # typer.Exit(n), --help
        return exc.exit_code
    except typer.Abort:  # EOF on a prompt
        err.print(INTERRUPTED, highlight=False)
        return 130
    except typer.TyperException as exc:  # usage errors: Click's box becomes one line too
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if message:  # empty when no arguments were given and the help was already shown
            _error(f"{message} (see --help)")
        return 2
    except EvalsuiteError as exc:
        _error(str(exc))
        return 2
    except KeyboardInterrupt:  # before the handlers were installed
        err.print(INTERRUPTED, highlight=False)
        return 130
    except Exception as exc:  # the last line of defence: never a traceback unless asked for
        if os.environ.get("EVALSUITE_DEBUG"):
            raise
        _error(_describe(exc))
        return 2


def _error(message: str) -> None:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)


def _describe(exc: Exception) -> str:
    """One line for an exception no evalsuite code anticipated; an OS error names its file."""
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename or "a file evalsuite did not name"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"no space left on device while writing {where}"
        return f"{where}: {exc.strerror}"
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first[:300]} (set EVALSUITE_DEBUG=1 for a traceback)"


if __name__ == "__main__":
    main()
