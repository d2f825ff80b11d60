"""One exception type for everything the user can fix; the CLI prints it as one line."""

from __future__ import annotations


class EvalsuiteError(Exception):
    """A problem with the user's input or environment, reported without a traceback.

    Example:
        >>> raise EvalsuiteError("unknown variant 'qint9'; did you mean 'qint8'?")
        Traceback (most recent call last):
        ...
        evalsuite.errors.EvalsuiteError: unknown variant 'qint9'; did you mean 'qint8'?
    """


class DataUnavailable(EvalsuiteError):
    """A task's data cannot be had here (missing files, Hub unreachable): a default task is skipped, a named one fails."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwinds like KeyboardInterrupt (past ``except Exception``), so every atomic write
    in progress removes its temporary file, and the CLI exits ``128 + signum`` with one line.

    Example:
        >>> Interrupted(15).exit_code
        143
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
