"""What machine and software a number was measured on: CPU flags that decide int8 speed, and versions."""

from __future__ import annotations

import functools
import os
import platform
from importlib import metadata

from evalsuite.errors import EvalsuiteError

FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16", "f16c", "avx512_fp16")
PACKAGES = ("evalsuite", "onnxruntime", "onnx", "torch", "transformers", "sentence-transformers", "mteb", "tokenizers", "numpy")


@functools.cache
def cpu_info() -> dict[str, object]:
    """CPU model, core count and the instruction-set flags that matter for quantized inference."""
    model, flags, ids = platform.processor() or "unknown", set(), {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", "unknown", platform.machine()):
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
                elif key in ("cpu family", "model") and key not in ids:
                    ids[key] = value.strip()
    except OSError:
        pass
    return {
        "model": model,
        # A VM may hide the model name ("AMD EPYC"); family/model still name the micro-architecture.
        "family_model": f"family {ids['cpu family']} model {ids['model']}" if len(ids) == 2 else "",
        "logical_cores": os.cpu_count(),
        "flags": {flag: flag in flags for flag in FLAGS_OF_INTEREST},
        "vnni": bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"}),
    }


@functools.cache
def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


THREADS_ENV = "EVALSUITE_THREADS"


def default_threads() -> int:
    """Threads for onnxruntime when ``--threads`` is not given: ``EVALSUITE_THREADS`` if set, else every core this
    process may use.

    The variable reaches every command and every process a command starts (the test suite sets it to 1, so that
    two test workers on two cores do not run four spinning onnxruntime threads).

    Example:
        >>> os.environ["EVALSUITE_THREADS"] = "1"; default_threads()  # doctest: +SKIP
        1
    """
    value = os.environ.get(THREADS_ENV)
    if value is not None:
        text = value.strip()
        if not (text.isascii() and text.isdigit() and int(text) >= 1):
            raise EvalsuiteError(f"{THREADS_ENV} must be a whole number >= 1, not {value!r}")
        return int(text)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
