"""The command's process and what surrounds it: standard streams that may be closed or broken, and signals.

A closed or broken stdout/stderr must never produce a traceback or change the exit code (a caller piping into
``head``, or a service manager that closed stderr, still needs 0 / 1 / 2). SIGINT and SIGTERM must unwind the
work like an exception, so atomic writes clean up after themselves, and end in one line and exit 130 / 143.

Example:
    >>> reserve_standard_descriptors()  # doctest: +SKIP
    >>> protect_streams()  # doctest: +SKIP
    >>> with interrupts_raise():  # doctest: +SKIP
    ...     run_the_command()
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TextIO

from evalsuite.errors import Interrupted

INTERRUPTED = "interrupted; re-run the same command to resume"
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def reserve_standard_descriptors() -> None:
    """Point closed descriptors 0, 1 and 2 at /dev/null before anything else is opened.

    Otherwise the next file evalsuite opens (a lock, an ONNX file, a result) would get descriptor 1 or 2, and
    anything a C library prints to "stdout" or "stderr" (onnxruntime, torch) would be written into it.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: this one, since lower ones are open
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


class QuietStream:
    """A text stream that falls silent, instead of raising, once its reader is gone (EPIPE, closed descriptor).

    On the first failure its descriptor is pointed at /dev/null, so that the interpreter's last flush at exit
    does not fail again (which would print "Exception ignored" and exit 120).
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self._stream.write(text)
            except UnicodeEncodeError:  # a terminal that cannot show a character: show a stand-in, keep going
                encoding = self._stream.encoding or "ascii"
                self.write(text.encode(encoding, "replace").decode(encoding))
            except (OSError, ValueError):  # EPIPE, EBADF; ValueError: the file object was closed
                self._silence()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._silence()

    def _silence(self) -> None:
        self.broken = True
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)
        except (OSError, ValueError):
            pass

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ... of the real stream
        return getattr(self._stream, name)


def protect_streams() -> None:
    """Wrap sys.stdout and sys.stderr in :class:`QuietStream` (a closed one is None and stays None: writes to it are dropped)."""
    if sys.stdout is not None and not isinstance(sys.stdout, QuietStream):
        sys.stdout = QuietStream(sys.stdout)  # type: ignore[assignment]
    if sys.stderr is not None and not isinstance(sys.stderr, QuietStream):
        sys.stderr = QuietStream(sys.stderr)  # type: ignore[assignment]


def flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):
                pass


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """Inside, SIGINT and SIGTERM raise :class:`Interrupted` (Typer would turn a KeyboardInterrupt into a silent exit 130).

    Once one arrived, further ones are ignored until the process ends, so that neither the cleanup (removing
    temporary files) nor the final message is cut short by a second Ctrl-C; SIGKILL still ends it at once.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in _SIGNALS}
    try:
        yield
    except Interrupted:
        previous.clear()  # the signals stay ignored
        raise
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
