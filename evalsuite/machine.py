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


# The int8 kernels onnxruntime picks on this CPU decide a quantized file's numbers: not only whether u8 x s8 products
# are summed exactly (VNNI, AMX) or in saturating int16 pairs (VPMADDUBSW on AVX2 or AVX-512 without VNNI, when signed
# weights leave [-64, 64]), but also the float kernels between the int8 ones, whose rounding moves activations across
# quantization steps. Measured: qint8-7bit of all-MiniLM-L6-v2 (no saturation possible) changes the NDCG@10 of 32 of
# SciFact's 300 queries between AVX-512 VNNI and AVX2 CPUs, while Float32 changes none. Results of AVX-512 VNNI/AMX
# CPUs (Intel Xeon, AMD Zen 4) agree bit for bit: that family is the reference, the others are named in identities.
REFERENCE_KERNELS = "avx512-vnni"
SATURATION_FREE_PEAK = 64  # |w| <= 64: 255 * 64 * 2 fits in an int16


def kernel_family() -> str:
    """This CPU's int8 kernel family: ``avx512-vnni``, ``avx512``, ``avx2-vnni``, ``avx2``, ... (``<machine>`` off x86)."""
    info = cpu_info()
    flags: dict[str, bool] = info["flags"]  # type: ignore[assignment]
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return platform.machine().lower() or "unknown"
    base = "avx512" if flags.get("avx512f") else "avx2" if flags.get("avx2") else "sse"
    return base + ("-vnni" if info["vnni"] else "")


def int8_kernels(quantizes: bool, weight_peak: int) -> str | None:
    """The kernels a file with this int8 profile runs through here: None when it quantizes nothing (its numbers do not
    depend on the int8 family), else the family, with ``-saturating`` when signed weights beyond 64 meet a u8s8 kernel
    without VNNI."""
    if not quantizes:
        return None
    family = kernel_family()
    saturating = weight_peak > SATURATION_FREE_PEAK and not cpu_info()["vnni"] and family != platform.machine().lower()
    return family + ("-saturating" if saturating else "")


def distinct_kernels(kernels: str | None) -> tuple[str, ...]:
    """What a result's identity and a shard's key hold of ``kernels``: nothing for the reference family or for a file that
    quantizes nothing (so every identity made before this was recorded holds), else the family."""
    return () if kernels in (None, REFERENCE_KERNELS) else (kernels,)  # type: ignore[return-value]
