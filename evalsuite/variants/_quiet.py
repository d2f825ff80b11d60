"""onnxruntime's quantizers talk to the root logger and to stdout; a build shows its own progress instead."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """Root logger at ERROR and stdout swallowed while a quantizer runs (quantize_dynamic's pre-processing hint,
    quantize_static's histogram progress, MatMulNBitsQuantizer's line per node); both restored afterwards."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
