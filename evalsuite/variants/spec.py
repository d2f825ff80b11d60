"""Variant names <-> :class:`VariantSpec`: ``<dtype>[-<option>...][-o<level>]``, options as the dtype's kind declares.

Example:
    >>> spec = VariantSpec.parse("qint8-pc-7bit")
    >>> spec.dtype, spec.settings, spec.opt_level
    ('qint8', {'per_channel': True, 'reduce_range': True}, 1)
    >>> spec.name
    'qint8-pc-7bit'
    >>> [v.name for v in expand(["seed"])][:3]
    ['float32', 'float16', 'quint8-pc-7bit']
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from evalsuite.config import suggest
from evalsuite.errors import EvalsuiteError
from evalsuite.variants import registry
from evalsuite.variants.registry import DEFAULT_OPT_LEVEL, OPT_LEVELS, VariantKind

_SHAPE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_LEVEL = re.compile(r"^o(\d+)$")


def grammar() -> str:
    """The grammar, one line for the shape and one per kind (``evalsuite variants`` prints it)."""
    rows = [(kind.grammar(), kind.summary) for kind in registry.kinds()]
    rows += [("|".join(f"-{t}" for t in option.spellings()), option.help) for option in registry.options()]
    width = max(44, *(len(left) for left, _ in rows))
    lines = ["<dtype>[-<option>...][-o<level>]", *(f"  {left:<{width}} {right}" for left, right in rows)]
    levels = ", ".join(map(str, OPT_LEVELS))
    lines.append(f"  {'-o<N>':<{width}} onnxruntime transformer-optimizer level, N in {levels} (default {DEFAULT_OPT_LEVEL})")
    return "\n".join(lines)


@dataclass(frozen=True, init=False)
class VariantSpec:
    """One ONNX build of a model: a dtype (which names its kind), that kind's settings, and the optimizer level.

    Args:
        dtype: e.g. ``float32``, ``float16``, ``qint8``; the registered kind that owns it decides the rest.
        settings: the kind's options; defaults may be left out (they are dropped from the stored form).
        opt_level: onnxruntime transformer-optimizer level of the Float32 parent, one of 0, 1, 2, 99.
    """

    dtype: str
    options: tuple[tuple[str, Any], ...]  # non-default settings, in the kind's option order
    opt_level: int

    def __init__(self, dtype: str, settings: Mapping[str, Any] | None = None, opt_level: int = DEFAULT_OPT_LEVEL,
                 **kwargs: Any) -> None:
        kind = registry.kind_of(dtype)
        if kind is None:
            raise EvalsuiteError(f"unknown dtype {dtype!r}{suggest(dtype, registry.dtypes())}")
        given = {**(settings or {}), **kwargs}
        known = {o.name: o for o in kind.options}
        for name, value in given.items():
            if name not in known and value:
                owner = next((o for o in registry.options() if o.name == name), None)
                token = next(iter(owner.tokens), name) if owner else name
                raise EvalsuiteError(f"-{token} applies to {'/'.join(registry.option_owners(token))} only, not {dtype}")
            if name in known and not known[name].accepts(value):
                raise EvalsuiteError(f"{name} of {dtype} cannot be {value!r}")
        if opt_level not in OPT_LEVELS:
            raise EvalsuiteError(f"optimizer level must be one of {', '.join(map(str, OPT_LEVELS))}, not {opt_level}")
        options = tuple((o.name, given[o.name]) for o in kind.options if given.get(o.name, o.default) != o.default)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "options", options)
        object.__setattr__(self, "opt_level", opt_level)
        kind.validate(self)

    @classmethod
    def parse(cls, text: str) -> VariantSpec:
        """Parse a variant name; errors name the problem and the nearest valid spelling."""
        raw = text.strip().lower()
        tokens = raw.split("-") if _SHAPE.match(raw) else []
        if not tokens:
            raise _unparsable(text, None)
        dtype, rest = tokens[0], tokens[1:]
        kind = registry.kind_of(dtype)
        if kind is None:
            guess = registry.kind_of(_closest_dtype(dtype))
            try:
                readable = guess is not None and _read(guess, dtype, rest) is not None
            except EvalsuiteError:  # options of another kind: the dtype is still the first thing to fix
                readable = True
            if readable:
                raise EvalsuiteError(f"unknown dtype {dtype!r}{suggest(dtype, registry.dtypes())}")
            raise _unparsable(text, _canonical_guess(dtype, rest))
        read = _read(kind, dtype, rest)
        if read is None:
            raise _unparsable(text, _canonical_guess(dtype, rest))
        settings, level = read
        return cls(dtype, settings, level)

    @property
    def kind(self) -> VariantKind:
        kind = registry.kind_of(self.dtype)
        assert kind is not None  # checked at construction
        return kind

    @property
    def settings(self) -> dict[str, Any]:
        """Every option of the kind with its value (defaults included)."""
        given = dict(self.options)
        return {o.name: given.get(o.name, o.default) for o in self.kind.options}

    @property
    def name(self) -> str:
        """Canonical name; default settings and the default optimizer level are left out."""
        given = dict(self.options)
        parts = [self.dtype, *(o.token_for(given[o.name]) for o in self.kind.options if o.name in given)]
        if self.opt_level != DEFAULT_OPT_LEVEL:
            parts.append(f"o{self.opt_level}")
        return "-".join(p for p in parts if p)

    @property
    def is_baseline(self) -> bool:
        return self == BASELINE

    def with_level(self, level: int) -> VariantSpec:
        return VariantSpec(self.dtype, dict(self.options), level)

    def sort_key(self) -> tuple[int, int, int, str, int]:
        """Table order: the reference table's variants first (in its order), then by kind, dtype, settings, level."""
        seed = registry.named_sets()["seed"]
        kinds = registry.kinds()
        rank = seed.index(self.name) if self.name in seed else len(seed)
        flags = "".join(str(o.values().index(v)) if v in o.values() else f"{len(o.values())}{v}"
                        for o, v in zip(self.kind.options, self.settings.values(), strict=True))
        return rank, kinds.index(self.kind), self.kind.dtypes.index(self.dtype), flags, self.opt_level

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"VariantSpec({self.name!r})"


def _read(kind: VariantKind, dtype: str, rest: list[str]) -> tuple[dict[str, Any], int] | None:
    """Settings and level from the tokens after the dtype, or None when they are not in the kind's canonical order.

    A token that only other kinds know is an error of its own ("-pc applies to qint8/quint8 only").
    """
    level = DEFAULT_OPT_LEVEL
    if rest and _LEVEL.match(rest[-1]):
        level = int(_LEVEL.match(rest[-1])[1])  # type: ignore[index]
        rest = rest[:-1]
    settings: dict[str, Any] = {}
    position = -1
    foreign = None
    previous = ""
    for token in rest:
        index = next((i for i, o in enumerate(kind.options) if o.read(token)[0]), None)
        if index is None:
            if registry.option_owners(token):
                foreign = foreign or token
                continue
            return None
        if index == position and token != previous:  # two values of one option (-entropy and -pct)
            raise EvalsuiteError(f"-{previous} and -{token} are alternatives; give one")
        if index <= position:
            return None
        position, previous = index, token
        settings[kind.options[index].name] = kind.options[index].read(token)[1]
    if foreign is not None:
        raise EvalsuiteError(f"-{foreign} applies to {'/'.join(registry.option_owners(foreign))} only, not {dtype}")
    return settings, level


def _closest_dtype(dtype: str) -> str:
    return next(iter(difflib.get_close_matches(dtype, registry.dtypes(), n=1)), dtype)


def _canonical_guess(dtype: str, rest: list[str]) -> str | None:
    """The tokens of a misspelt name in canonical order, with the closest dtype, if that spelling parses."""
    kind = registry.kind_of(_closest_dtype(dtype))
    if kind is None:
        return None
    firsts = (next((t for t in rest if o.read(t)[0]), None) for o in kind.options)
    tokens = [t for t in firsts if t is not None]
    levels = [t for t in rest if _LEVEL.match(t)]
    hint = "-".join([dtype if dtype in kind.dtypes else _closest_dtype(dtype), *tokens, *levels[:1]])
    try:
        return VariantSpec.parse(hint).name
    except EvalsuiteError:
        return None


def _unparsable(text: str, suggestion: str | None) -> EvalsuiteError:
    hint = f"; did you mean {suggestion!r}?" if suggestion else ""
    return EvalsuiteError(f"cannot parse variant {text!r}: expected {grammar().splitlines()[0]}{hint}")


BASELINE = VariantSpec("float32")


def named_sets() -> dict[str, tuple[str, ...]]:
    return registry.named_sets()


def expand(names: Iterable[str]) -> list[VariantSpec]:
    """Expand names and named sets (``seed``, ``levels``, ``all``; comma lists allowed) into unique specs, in order."""
    sets = registry.named_sets()
    out: list[VariantSpec] = []
    for item in names:
        for name in filter(None, (n.strip() for n in item.split(","))):
            for member in sets.get(name.lower(), (name,)):
                spec = VariantSpec.parse(member)
                if spec not in out:
                    out.append(spec)
    if not out:
        raise EvalsuiteError("no variant given")
    return out


def variant_order(names: Iterable[str]) -> list[str]:
    """Variant names in table order (see :meth:`VariantSpec.sort_key`)."""
    return sorted(set(names), key=lambda n: VariantSpec.parse(n).sort_key())
