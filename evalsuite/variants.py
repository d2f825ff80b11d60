"""The variant grammar: ``<dtype>[-pc][-7bit][-o<level>]`` <-> :class:`VariantSpec`.

Example:
    >>> spec = VariantSpec.parse("qint8-pc-7bit")
    >>> spec.dtype, spec.per_channel, spec.reduce_range, spec.opt_level
    ('qint8', True, True, 1)
    >>> spec.name
    'qint8-pc-7bit'
    >>> [v.name for v in expand(["seed"])][:3]
    ['float32', 'float16', 'quint8-pc-7bit']
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from evalsuite.errors import EvalsuiteError

Dtype = Literal["float32", "float16", "qint8", "quint8"]
DTYPES: tuple[Dtype, ...] = ("float32", "float16", "qint8", "quint8")
QUANTIZED: tuple[Dtype, ...] = ("qint8", "quint8")
OPT_LEVELS = (0, 1, 2, 99)
DEFAULT_OPT_LEVEL = 1

GRAMMAR = """\
<dtype>[-pc][-7bit][-o<level>]
  dtype   float32 | float16 | qint8 | quint8   (qint8/quint8: weight type of onnxruntime dynamic quantization)
  -pc     per-channel weight scales            (qint8/quint8 only)
  -7bit   reduce_range: 7-bit weights          (qint8/quint8 only)
  -o<N>   onnxruntime transformer-optimizer level, N in 0, 1, 2, 99 (default 1)"""

_PATTERN = re.compile(r"^(?P<dtype>[a-z0-9]+)(?P<pc>-pc)?(?P<rr>-7bit)?(?:-o(?P<level>\d+))?$")


@dataclass(frozen=True, order=True)
class VariantSpec:
    """One ONNX build of a model: dtype, quantization flags and optimizer level.

    Args:
        dtype: ``float32``, ``float16``, ``qint8`` or ``quint8``.
        per_channel: per-channel weight scales (quantized dtypes only).
        reduce_range: 7-bit weights, which avoid int16 overflow in u8s8 kernels without VNNI.
        opt_level: onnxruntime transformer-optimizer level, one of 0, 1, 2, 99.
    """

    dtype: Dtype
    per_channel: bool = False
    reduce_range: bool = False
    opt_level: int = DEFAULT_OPT_LEVEL

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise EvalsuiteError(f"unknown dtype {self.dtype!r}{_suggest(self.dtype, DTYPES)}")
        if self.dtype not in QUANTIZED and (self.per_channel or self.reduce_range):
            flag = "-pc" if self.per_channel else "-7bit"
            raise EvalsuiteError(f"{flag} applies to qint8/quint8 only, not {self.dtype}")
        if self.opt_level not in OPT_LEVELS:
            raise EvalsuiteError(f"optimizer level must be one of 0, 1, 2, 99, not {self.opt_level}")

    @classmethod
    def parse(cls, text: str) -> VariantSpec:
        """Parse a variant name; errors name the problem and the nearest valid spelling."""
        raw = text.strip().lower()
        match = _PATTERN.match(raw)
        if match is None:
            parts = raw.split("-")
            dtype = parts[0] if parts[0] in DTYPES else next(iter(difflib.get_close_matches(parts[0], DTYPES, n=1)), parts[0])
            canonical = [p for p in ("pc", "7bit") if p in parts] + [p for p in parts[1:] if p.startswith("o")]
            hint = "-".join([dtype, *canonical])
            suggestion = ""
            if _PATTERN.match(hint):  # suggest only a name that parses, in its canonical spelling
                try:
                    suggestion = f"; did you mean {cls.parse(hint).name!r}?"
                except EvalsuiteError:
                    pass
            raise EvalsuiteError(f"cannot parse variant {text!r}: expected {GRAMMAR.splitlines()[0]}{suggestion}")
        level = int(match["level"]) if match["level"] is not None else DEFAULT_OPT_LEVEL
        return cls(match["dtype"], bool(match["pc"]), bool(match["rr"]), level)  # type: ignore[arg-type]

    @property
    def name(self) -> str:
        """Canonical name; the default optimizer level is left out."""
        parts = [self.dtype]
        if self.per_channel:
            parts.append("pc")
        if self.reduce_range:
            parts.append("7bit")
        if self.opt_level != DEFAULT_OPT_LEVEL:
            parts.append(f"o{self.opt_level}")
        return "-".join(parts)

    @property
    def is_quantized(self) -> bool:
        return self.dtype in QUANTIZED

    def with_level(self, level: int) -> VariantSpec:
        return VariantSpec(self.dtype, self.per_channel, self.reduce_range, level)

    def __str__(self) -> str:
        return self.name


BASELINE = VariantSpec("float32")

# The seven configurations of the reference quality table.
NAMED_SETS: dict[str, tuple[str, ...]] = {
    "seed": ("float32", "float16", "quint8-pc-7bit", "qint8-pc-7bit", "qint8-pc", "qint8-7bit", "qint8"),
    "levels": tuple(f"float32-o{n}" for n in OPT_LEVELS) + tuple(f"qint8-pc-7bit-o{n}" for n in OPT_LEVELS),
    "all": tuple(
        VariantSpec(d, pc, rr, lvl).name
        for d in DTYPES
        for pc in ((False, True) if d in QUANTIZED else (False,))
        for rr in ((False, True) if d in QUANTIZED else (False,))
        for lvl in OPT_LEVELS
    ),
}


def expand(names: Iterable[str]) -> list[VariantSpec]:
    """Expand names and named sets (``seed``, ``levels``, ``all``; comma lists allowed) into unique specs, in order."""
    out: list[VariantSpec] = []
    for item in names:
        for name in filter(None, (n.strip() for n in item.split(","))):
            members = NAMED_SETS.get(name.lower(), (name,))
            for member in members:
                spec = VariantSpec.parse(member)
                if spec not in out:
                    out.append(spec)
    if not out:
        raise EvalsuiteError("no variant given")
    return out


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
