"""The ``evalsuite`` command: thin Typer commands over the library. Each command's docstring is its --help.

Exit codes: 0 success, 1 a gate failed, 2 bad input or an error (one line on stderr, no traceback).
"""

from __future__ import annotations

import os
import sys

import typer

# Importing a command module registers its commands; --help lists them in this order.
from evalsuite.cli import run_cmd  # noqa: F401, I001
from evalsuite.cli import bench_cmd, gate_cmd  # noqa: F401
from evalsuite.cli.common import app, err
from evalsuite.errors import EvalsuiteError
from evalsuite.cli import export_cmd  # noqa: F401, E402, I001  registers `export` (listed last)

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:  # typer.Exit(n), --help
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("interrupted; finished work is kept and the next run resumes from it")
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: Click's box becomes one line too
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if message:  # empty when no arguments were given and the help was already shown
            err.print(f"[red]error:[/red] {message} (see --help)", highlight=False)
        sys.exit(2)
    except EvalsuiteError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted; finished work is kept and the next run resumes from it")
        sys.exit(130)
    except Exception as exc:  # the last line of defence: never a traceback unless asked for
        if os.environ.get("EVALSUITE_DEBUG"):
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        err.print(f"[red]error:[/red] {type(exc).__name__}: {first[:300]} (set EVALSUITE_DEBUG=1 for a traceback)", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
